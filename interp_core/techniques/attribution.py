"""Attribution patching: a first-order approximation of every patching grid at once.

Exact patching (:mod:`interp_core.techniques.patching`) runs the model once per patched cell. Attribution
patching (Nanda 2023; Syed et al. 2023) replaces each of those runs by a linear estimate:
the change of the metric when activation ``a`` is moved from its corrupted value to its
clean value is approximately

    effect(a) ~= (a_clean - a_corrupt) . d metric / d a,

with the gradient taken on the corrupted run. One forward and one backward pass give the
gradient at every layer, position and head together, so the whole family of grids costs
about as much as two forward passes. It is an approximation: it is exact only where the
model is linear in ``a`` between the two values, and it is known to underestimate large
effects (for example at the residual stream where the prompts differ, where attention
patterns change). Show it as a preview and compare it with exact patching.

Gradients are taken with respect to a zero tensor added at each hook point (``a + 0``), so
the model's parameters are never touched (they stay frozen) and no ``.grad`` is left behind.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from interp_core.core.hooks import HookFn
from interp_core.core.model import LoadedModel
from interp_core.core.names import hook_name
from interp_core.techniques.patch_pair import TARGETS, PatchingResult, PatchPair, logit_diff, make_result

Progress = Callable[[float, str], None]
POINTS: tuple[str, ...] = ("hook_resid_pre", "attn.hook_z", "hook_attn_out", "hook_mlp_out")


def _leaf_hook(leaves: dict[str, torch.Tensor], values: dict[str, torch.Tensor]) -> HookFn:
    """A hook that records the activation and adds a zero leaf, so d metric / d leaf = d metric / d a."""

    def hook(value: torch.Tensor, name: str) -> torch.Tensor:
        values[name] = value.detach().clone()
        leaves[name] = torch.zeros_like(value, requires_grad=True)
        return value + leaves[name]

    return hook


def _effects(clean: torch.Tensor, corrupt: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``(a_clean - a_corrupt) . grad`` summed over the last axis: ``(1, pos[, head], d) -> (pos[, head])``."""
    return ((clean.to(grad.device) - corrupt) * grad).sum(-1)[0]


def attribution_patching(model: LoadedModel, pair: PatchPair, *, on_progress: Progress | None = None) -> dict[str, PatchingResult]:
    """Estimate every target's patching grid with one forward and one backward pass.

    Args:
        pair: from :func:`interp_core.techniques.patch_pair.prepare_pair`.

    Returns:
        ``{target: PatchingResult}`` for every target in :data:`interp_core.techniques.patch_pair.TARGETS`,
        method ``"attribution"``; ``patched`` holds corrupted metric + estimated effect and
        ``grid`` the estimate normalised by (clean - corrupted) like the exact grid.
    """
    names = [hook_name(point, layer) for layer in range(model.info.n_layers) for point in POINTS]
    clean_logits, clean_cache = model.run_with_cache(pair.clean_tokens, names)
    if on_progress is not None:
        on_progress(0.3, "clean run")
    leaves: dict[str, torch.Tensor] = {}
    values: dict[str, torch.Tensor] = {}
    hook = _leaf_hook(leaves, values)
    with model.lock:  # the leaves must be read by the same request that made them
        logits = model.forward(pair.corrupt_tokens, hooks=[(name, hook) for name in names], grad=True)
        metric = logit_diff(logits, pair.answer_id, pair.wrong_id)[0]
        with torch.enable_grad():
            grads = dict(zip(names, torch.autograd.grad(metric, [leaves[n] for n in names])))
    if on_progress is not None:
        on_progress(0.9, "backward pass")
    clean_metric = float(logit_diff(clean_logits, pair.answer_id, pair.wrong_id)[0])
    corrupt_metric = float(metric.detach())
    effect = {name: _effects(clean_cache[name], values[name], grads[name]).detach().cpu().numpy() for name in names}
    results = {}
    for target in TARGETS:
        estimate = corrupt_metric + _target_grid(model, effect, target)
        results[target] = make_result(model, pair, target, "attribution", estimate, clean_metric, corrupt_metric)
    if on_progress is not None:
        on_progress(1.0, "done")
    return results


def _target_grid(model: LoadedModel, effect: dict[str, np.ndarray], target: str) -> np.ndarray:
    """Stack per-layer effects into ``target``'s grid (layer, pos) / (layer, head) / (layer, head, pos)."""
    layers = range(model.info.n_layers)
    if target == "head_out":
        return np.stack([effect[hook_name("attn.hook_z", layer)].sum(0) for layer in layers])  # sum over positions
    if target == "head_out_by_pos":
        return np.stack([effect[hook_name("attn.hook_z", layer)].T for layer in layers])  # (pos, head) -> (head, pos)
    point = {"resid_pre": "hook_resid_pre", "attn_out": "hook_attn_out", "mlp_out": "hook_mlp_out"}[target]
    return np.stack([effect[hook_name(point, layer)] for layer in layers])


def agreement(exact: PatchingResult, approx: PatchingResult) -> float:
    """Pearson correlation of two grids of the same target over their cells (NaN if either is constant)."""
    if exact.grid.shape != approx.grid.shape:
        raise ValueError(f"grids differ in shape: {exact.grid.shape} vs {approx.grid.shape}")
    a, b = exact.patched.ravel(), approx.patched.ravel()
    if a.std() < 1e-12 or b.std() < 1e-12:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])
