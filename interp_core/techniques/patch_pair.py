"""The pair a patching experiment runs on, its metric, and the result grid.

Shared by exact patching (:mod:`interp_core.techniques.patching`) and attribution patching
(:mod:`interp_core.techniques.attribution`), which both import it: neither technique reaches into the
other's internals. :mod:`interp_core.techniques.patching` re-exports every name for its callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from interp_core.core.errors import BadPromptError, WorkbenchError
from interp_core.core.head_id import head_label
from interp_core.core.model import LoadedModel

TARGETS: tuple[str, ...] = ("resid_pre", "attn_out", "mlp_out", "head_out", "head_out_by_pos")
METHODS: tuple[str, ...] = ("exact", "attribution")
POINT_OF: dict[str, str] = {
    "resid_pre": "hook_resid_pre",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
    "head_out": "attn.hook_z",
    "head_out_by_pos": "attn.hook_z",
}


@dataclass(frozen=True)
class PatchPair:
    """A validated clean/corrupted pair: token ids ``(1, pos)`` each, answer and wrong ids."""

    clean_tokens: torch.Tensor
    corrupt_tokens: torch.Tensor
    answer_id: int
    wrong_id: int
    tokens: tuple[str, ...]
    corrupt_token_strs: tuple[str, ...]
    answer: str
    wrong: str

    @property
    def n_pos(self) -> int:
        return int(self.clean_tokens.shape[1])

    def position_labels(self) -> tuple[str, ...]:
        """``"9 ' John'→' Mary'"`` where the prompts differ, ``"3 ' and'"`` where they agree."""
        out = []
        for i, (a, b) in enumerate(zip(self.tokens, self.corrupt_token_strs)):
            out.append(f"{i} {a!r}" if a == b else f"{i} {a!r}→{b!r}")
        return tuple(out)


def prepare_pair(model: LoadedModel, clean: str, corrupt: str, answer: str, wrong: str) -> PatchPair:
    """Tokenise and validate a pair before any expensive work.

    Raises:
        BadPromptError: empty or over-long prompts, identical prompts, or prompts whose token
            counts differ (both tokenisations are shown).
        NotSingleTokenError: the answer or the wrong answer is not one token.
        WorkbenchError: the answer and the wrong answer are the same token.
    """
    clean_ids, corrupt_ids = model.tokenize(clean), model.tokenize(corrupt)
    clean_strs, corrupt_strs = model.token_strings(clean_ids[0]), model.token_strings(corrupt_ids[0])
    if clean_ids.shape != corrupt_ids.shape:
        raise BadPromptError(
            "Patching by position needs prompts of the same number of tokens, but the clean prompt has "
            f"{clean_ids.shape[1]} tokens {_show(clean_strs)} and the corrupted one {corrupt_ids.shape[1]} "
            f"{_show(corrupt_strs)}. Change words so that both have the same token count."
        )
    if torch.equal(clean_ids, corrupt_ids):
        raise BadPromptError("The clean and corrupted prompts are identical: change the detail the model should be sensitive to.")
    answer_id, wrong_id = model.single_token_id(answer), model.single_token_id(wrong)
    if answer_id == wrong_id:
        raise WorkbenchError(f"The answer and the wrong answer are the same token ({answer!r}); pick two different tokens.")
    return PatchPair(clean_ids, corrupt_ids, answer_id, wrong_id, tuple(clean_strs), tuple(corrupt_strs), answer, wrong)


def _show(strs: Sequence[str]) -> str:
    return "[" + " | ".join(repr(s) for s in strs) + "]"


def logit_diff(logits: torch.Tensor, answer_id: int, wrong_id: int) -> torch.Tensor:
    """``logits (batch, pos, d_vocab)`` -> ``(batch,)`` logit(answer) - logit(wrong) at the last position."""
    last = logits[:, -1].float()
    return last[:, answer_id] - last[:, wrong_id]


@dataclass(frozen=True)
class PatchingResult:
    """A patching grid with labels aligned to its axes.

    Attributes:
        target: one of :data:`TARGETS`; method: ``"exact"`` or ``"attribution"`` (approximation).
        grid: normalised recovery, shape ``tuple(len(l) for l in labels)``; NaN when the clean
            and corrupted metrics are equal (nothing to recover).
        patched: the metric of each patched run (exact), or corrupted metric + estimated change
            (attribution); same shape as ``grid``.
        axes: axis names, e.g. ``("layer", "pos")``; labels: one tuple of strings per axis.
        clean_metric, corrupt_metric: the logit difference on the unpatched runs.
        tokens, corrupt_tokens: the two prompts' tokens as text.
    """

    target: str
    method: str
    grid: np.ndarray
    patched: np.ndarray
    axes: tuple[str, ...]
    labels: tuple[tuple[str, ...], ...]
    clean_metric: float
    corrupt_metric: float
    tokens: tuple[str, ...]
    corrupt_tokens: tuple[str, ...]
    answer: str
    wrong: str

    def __post_init__(self) -> None:
        shape = tuple(len(labels) for labels in self.labels)
        if self.grid.shape != shape or self.patched.shape != shape or len(self.axes) != len(shape):
            raise ValueError(f"grid {self.grid.shape} / patched {self.patched.shape} do not match labels {shape}")

    def to_json(self) -> dict:
        return {
            "target": self.target,
            "method": self.method,
            "clean_metric": self.clean_metric,
            "corrupt_metric": self.corrupt_metric,
            "tokens": list(self.tokens),
            "corrupt_tokens": list(self.corrupt_tokens),
            "answer": self.answer,
            "wrong": self.wrong,
            "axes": list(self.axes),
            "labels": [list(labels) for labels in self.labels],
            "grid": self.grid,
            "patched": self.patched,
        }

    def tables(self) -> dict[str, pd.DataFrame]:
        """``patch_attr_<target>`` or ``patch_exact_<target>``: one row per cell with its row label (a layer,
        or a head ``"L3H7"`` for ``head_out_by_pos``), its column label, ``recovery`` and ``patched_metric``."""
        if self.grid.ndim == 3:  # (layer, head, pos) -> rows "L{layer}H{head}" x pos
            rows = [head_label(int(layer), int(head)) for layer in self.labels[0] for head in self.labels[1]]
            names, cols = ("head", "pos"), self.labels[2]
        else:
            rows, cols, names = list(self.labels[0]), self.labels[1], self.axes
        r, c = np.meshgrid(np.arange(len(rows)), np.arange(len(cols)), indexing="ij")
        frame = pd.DataFrame({names[0]: [rows[i] for i in r.ravel()], names[1]: [cols[j] for j in c.ravel()],
                              "recovery": self.grid.ravel(), "patched_metric": self.patched.ravel()})
        return {f"patch_{'attr' if self.method == 'attribution' else 'exact'}_{self.target}": frame}


    def agreement_table(self, estimate: PatchingResult) -> pd.DataFrame:
        """This exact grid beside ``estimate`` (attribution patching of the same target and prompts), one row per
        cell: the row and column labels of :meth:`tables`, ``exact`` (recovery), ``exact_metric`` (patched metric)
        and ``attribution`` (the estimate's recovery)."""
        if estimate.grid.shape != self.grid.shape or estimate.target != self.target:
            raise WorkbenchError(f"The estimate patches {estimate.target} over a grid of shape {estimate.grid.shape}; this grid "
                                 f"patches {self.target} over {self.grid.shape}. Compare grids of the same target and prompts.")
        both = next(iter(self.tables().values())).rename(columns={"recovery": "exact", "patched_metric": "exact_metric"})
        both["attribution"] = next(iter(estimate.tables().values()))["recovery"].to_numpy()
        return both


def normalise(patched: np.ndarray, clean: float, corrupt: float) -> np.ndarray:
    """``(patched - corrupt) / (clean - corrupt)``; all NaN when clean == corrupt."""
    denominator = clean - corrupt
    if abs(denominator) < 1e-9:
        return np.full_like(patched, np.nan, dtype=np.float64)
    return (patched - corrupt) / denominator


def grid_axes(model: LoadedModel, pair: PatchPair, target: str) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """Axis names and labels of ``target``'s grid."""
    layers = tuple(str(layer) for layer in range(model.info.n_layers))
    heads = tuple(str(head) for head in range(model.info.n_heads))
    if target == "head_out":
        return ("layer", "head"), (layers, heads)
    if target == "head_out_by_pos":
        return ("layer", "head", "pos"), (layers, heads, pair.position_labels())
    return ("layer", "pos"), (layers, pair.position_labels())


def check_target(target: str) -> None:
    if target not in TARGETS:
        raise WorkbenchError(f"target must be one of {', '.join(TARGETS)}; got {target!r}.")


def make_result(model: LoadedModel, pair: PatchPair, target: str, method: str, patched: np.ndarray, clean: float, corrupt: float) -> PatchingResult:
    """Wrap a raw grid of patched metrics with its labels and normalised recovery."""
    axes, labels = grid_axes(model, pair, target)
    patched = patched.astype(np.float64)
    return PatchingResult(
        target, method, normalise(patched, clean, corrupt), patched, axes, labels,
        float(clean), float(corrupt), pair.tokens, pair.corrupt_token_strs, pair.answer, pair.wrong,
    )
