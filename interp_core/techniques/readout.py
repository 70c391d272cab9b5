"""The readout every lens shares: the residual stream at each layer boundary, and the model's
own ``unembed(final_norm(resid))`` from canonical weights.

The logit lens reads boundaries directly; the tuned lens (:mod:`interp_core.techniques.tuned_lens`) first
moves each one through a trained translator, any object with the :class:`Translator` methods.
Both import this module and neither imports the other (tuned-lens keeps its ``Unembed`` apart
from its lenses the same way).

Boundaries (field guide §3): ``b = 0..n_layers``, ``resid_b`` is ``blocks.{b}.hook_resid_pre``
for ``b < n_layers`` and ``blocks.{n_layers-1}.hook_resid_post`` for ``b = n_layers``.
"""

from __future__ import annotations

from typing import Protocol

import torch

from interp_core.core.model import LoadedModel
from interp_core.core.recent_runs import recorded_run


class Translator(Protocol):
    """What a lens applies to a boundary's residual before the readout (a trained tuned lens)."""

    def translate(self, resid: torch.Tensor, boundary: int) -> torch.Tensor:
        """``(..., d_model) -> (..., d_model)`` at ``boundary``."""
        ...

    def check_fits(self, model: LoadedModel) -> None:
        """Raise a WorkbenchError unless this translator was made for ``model``."""
        ...


def boundary_labels(n_layers: int) -> tuple[str, ...]:
    """``("embed", "L0", ..., "L{n_layers-1}")``: one label per layer boundary."""
    return ("embed", *(f"L{k}" for k in range(n_layers)))


def boundary_names(n_layers: int) -> list[str]:
    """The hook points holding the residual stream at each of the ``n_layers + 1`` boundaries."""
    return [f"blocks.{b}.hook_resid_pre" for b in range(n_layers)] + [f"blocks.{n_layers - 1}.hook_resid_post"]


def residual_boundaries(model: LoadedModel, tokens: torch.Tensor, *, shared: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``tokens (batch, pos)`` once; return the model's logits ``(batch, pos, d_vocab)`` and
    the residual stream at every boundary, ``(n_layers + 1, batch, pos, d_model)``.

    With ``shared`` the run is one of the model's recent runs (:func:`~interp_core.core.recent_runs.recorded_run`):
    the logit lens and the tuned lens of one prompt share it. The logits are then shared too: read-only."""
    names = boundary_names(model.info.n_layers)
    logits, cache = recorded_run(model, tokens, names) if shared else model.run_with_cache(tokens, names)
    return logits, torch.stack([cache[n] for n in names])


def readout(model: LoadedModel, resid: torch.Tensor, vocab: torch.Tensor | None = None) -> torch.Tensor:
    """``unembed(final_norm(resid))`` from canonical weights: ``(..., d_model) -> (..., d_vocab)``
    (or ``(..., len(vocab))``). Pure tensor maths, so it differentiates and never meets a hook
    another session attached to the final norm's module."""
    w = model.weights
    x = model.adapter.apply_final_norm(resid, w)
    W_U, b_U = (w.W_U, w.b_U) if vocab is None else (w.W_U[:, vocab], w.b_U[vocab])
    return x @ W_U + b_U
