"""Ablation: knock out heads or MLPs and see what changes.

A head is ablated through its ``attn.hook_z`` slice (the input of the output projection, so
nothing else of the layer changes); an MLP through ``hook_mlp_out``. Three methods:

- ``zero``: replace with zeros;
- ``mean``: replace with the mean over a reference batch (all its prompts and positions);
- ``resample``: replace with the activation at the same position of another prompt of the
  reference batch (row ``i`` of the batch takes reference row ``(i + 1) % n_ref``).

Targets are written ``("head", layer, head)`` or ``("mlp", layer)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from interp_core.core.errors import OutOfRangeError, WorkbenchError, check_index
from interp_core.core.hooks import HookFn
from interp_core.core.model import LoadedModel
from interp_core.core.names import hook_name

Method = Literal["zero", "mean", "resample"]
METHODS: tuple[str, ...] = ("zero", "mean", "resample")
Target = tuple  # ("head", layer, head) | ("mlp", layer)


def target_hook_name(target: Target) -> str:
    return hook_name("attn.hook_z", target[1]) if target[0] == "head" else hook_name("hook_mlp_out", target[1])


def validate_targets(model: LoadedModel, targets: Sequence[Target]) -> None:
    """Raise a clear error for unknown kinds or out-of-range layers and heads."""
    for target in targets:
        if not target or target[0] not in ("head", "mlp"):
            raise WorkbenchError(f"Ablation targets are ('head', layer, head) or ('mlp', layer), got {target!r}.")
        check_index("layer", target[1], model.info.n_layers)
        if target[0] == "head":
            if len(target) != 3:
                raise OutOfRangeError(f"A head target needs a layer and a head, got {target!r}.")
            check_index("head", target[2], model.info.n_heads)


def reference_activations(model: LoadedModel, reference_tokens: torch.Tensor, targets: Sequence[Target]) -> dict[str, torch.Tensor]:
    """The targets' activations on ``reference_tokens (n_ref, pos)`` (for mean and resample)."""
    names = sorted({target_hook_name(t) for t in targets})
    _, cache = model.run_with_cache(reference_tokens, names)
    return cache


def ablation_hooks(
    model: LoadedModel,
    targets: Sequence[Target],
    method: Method = "zero",
    reference: dict[str, torch.Tensor] | None = None,
) -> list[tuple[str, HookFn]]:
    """Hooks that ablate ``targets`` with ``method``; ``reference`` from :func:`reference_activations`.

    With ``mean``, the replacement is the reference mean over prompts and positions, so it fits
    prompts of any length; ``resample`` needs reference prompts of the batch's length.
    """
    if method not in METHODS:
        raise WorkbenchError(f"method must be one of {METHODS}, got {method!r}")
    validate_targets(model, targets)
    if method != "zero" and reference is None:
        raise WorkbenchError(f"'{method}' ablation needs reference activations (a reference batch of prompts).")
    by_name: dict[str, list[Target]] = {}
    for target in targets:
        by_name.setdefault(target_hook_name(target), []).append(target)

    def make(name: str, group: list[Target]) -> HookFn:
        heads = [t[2] for t in group if t[0] == "head"]
        whole = any(t[0] == "mlp" for t in group)

        def replacement(value: torch.Tensor) -> torch.Tensor:
            if method == "zero":
                return torch.zeros_like(value)
            ref = reference[name].to(value.device)  # type: ignore[index]
            if method == "mean":
                return ref.mean(dim=(0, 1), keepdim=True).expand_as(value)
            if ref.shape[1] != value.shape[1]:
                raise WorkbenchError(f"Resample ablation needs reference prompts of {value.shape[1]} tokens, got {ref.shape[1]}.")
            rows = (torch.arange(value.shape[0]) + 1) % ref.shape[0]
            return ref[rows.to(ref.device)]

        def hook(value: torch.Tensor, hook_point: str) -> torch.Tensor:
            new = value.clone()
            source = replacement(value)
            if whole:
                return source.to(value.dtype)
            new[:, :, heads] = source[:, :, heads].to(value.dtype)  # z is (batch, pos, head, d_head)
            return new

        return hook

    return [(name, make(name, group)) for name, group in by_name.items()]
