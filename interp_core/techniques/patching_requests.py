"""The patching family's requests: what the Activation Patching page and the ``patch`` command ask for.

Each request holds one experiment's inputs (the clean and corrupted prompts, the answer and the
wrong answer, and what to patch or ablate), is checked on creation, and says how it is computed
by calling the engine in :mod:`interp_core.techniques.patching` and
:mod:`interp_core.techniques.attribution`; nothing here computes a grid itself.

- :class:`PatchRequest`: one target's grid, exact (a heavy sweep) or by attribution; the CLI's ``patch``.
- :class:`AttributionRequest`: every target's attribution grid from one forward and one backward
  pass (the page's instant preview; :class:`PatchRequest` with ``method="attribution"`` reads one of them).
- :class:`AblationEffectRequest`: the clean run with heads and MLPs ablated.

Components to ablate are named as on the page and in links: heads ``"L3H7"``
(:class:`~interp_core.core.head_id.HeadId`), MLPs ``"MLP3"``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from interp_core.core.errors import BadHeadIdError, WorkbenchError
from interp_core.core.head_id import HeadId
from interp_core.core.model import LoadedModel
from interp_core.techniques import patching
from interp_core.techniques.ablation import METHODS as ABLATION_METHODS
from interp_core.techniques.ablation import validate_targets
from interp_core.techniques.attribution import attribution_patching
from interp_core.techniques.contract import Progress, Request
from interp_core.techniques.patch_pair import METHODS, TARGETS, PatchingResult, PatchPair, check_target, prepare_pair
from interp_core.techniques.patching import AblationEffect, SweepCost, ablation_effect, patch, sweep_cost

_MLP = re.compile(r"MLP([0-9]+)")


@dataclass(frozen=True)
class _PairRequest(Request):
    """The pair every patching experiment runs on; :meth:`check` tokenises and validates it
    (same token counts, prompts that differ, single-token answers that differ)."""

    clean: str
    corrupt: str
    answer: str
    wrong: str

    def pair(self, model: LoadedModel) -> PatchPair:
        """The tokenised, validated pair (cheap: no model run)."""
        return prepare_pair(model, self.clean, self.corrupt, self.answer, self.wrong)

    def check(self, model: LoadedModel) -> None:
        self.pair(model)


@dataclass(frozen=True)
class PatchRequest(_PairRequest):
    """Denoising patching of every cell of ``target``: ``method`` ``"exact"`` runs the model once per
    cell (batched; heavy), ``"attribution"`` estimates the grid from one forward and one backward pass."""

    target: str = "resid_pre"
    method: str = "exact"

    def __post_init__(self) -> None:
        check_target(self.target)
        if self.method not in METHODS:
            raise WorkbenchError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}.")

    @property
    def heavy(self) -> bool:  # type: ignore[override]  # an exact sweep queues; an attribution grid does not
        return self.method == "exact"

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"{'Exact' if self.method == 'exact' else 'Attribution'} patching of {self.target}"

    def cost(self, model: LoadedModel) -> SweepCost:
        """What the exact sweep of ``target`` will do and roughly take, estimated before it runs."""
        return sweep_cost(model, self.pair(model), self.target)

    def compute(self, model: LoadedModel, on_progress: Progress) -> PatchingResult:
        return patch(model, self.clean, self.corrupt, self.answer, self.wrong, self.target, method=self.method,
                     on_progress=on_progress)


def needs_confirmation(cost: SweepCost) -> bool:
    """Whether a page should ask before starting this sweep (estimated over ``patching.CONFIRM_SECONDS``)."""
    return cost.seconds > patching.CONFIRM_SECONDS


@dataclass(frozen=True)
class AttributionGrids:
    """Every target's attribution grid for one pair (:data:`TARGETS` order); all share the two unpatched runs."""

    grids: dict[str, PatchingResult]

    def __post_init__(self) -> None:
        if tuple(self.grids) != TARGETS:
            raise ValueError(f"attribution grids must cover {TARGETS}, got {tuple(self.grids)}")

    def of(self, target: str) -> PatchingResult:
        check_target(target)
        return self.grids[target]

    @property
    def first(self) -> PatchingResult:
        """The residual-stream grid: its metrics and tokens are those of every grid."""
        return self.grids[TARGETS[0]]

    def agreement_table(self, exact: PatchingResult) -> pd.DataFrame:
        """The exact patching grid ``exact`` beside this estimate of the same target, one row per cell
        (:meth:`PatchingResult.agreement_table`: the labels, ``exact``, ``exact_metric``, ``attribution``)."""
        return exact.agreement_table(self.of(exact.target))

    def to_json(self) -> dict:
        return {target: grid.to_json() for target, grid in self.grids.items()}

    def tables(self) -> dict[str, pd.DataFrame]:
        return {name: table for grid in self.grids.values() for name, table in grid.tables().items()}


@dataclass(frozen=True)
class AttributionRequest(_PairRequest):
    """Attribution patching of every target at once (about two forward passes)."""

    label = "Attribution patching (1 forward + 1 backward)"

    def compute(self, model: LoadedModel, on_progress: Progress) -> AttributionGrids:
        return AttributionGrids(attribution_patching(model, self.pair(model), on_progress=on_progress))


# --- ablation on the same pair ----------------------------------------------------------------
def component_labels(n_layers: int, n_heads: int) -> list[str]:
    """Every head (``"L0H0"`` ...) then every MLP (``"MLP0"`` ...) of a model of this shape."""
    return [str(h) for h in HeadId.grid(n_layers, n_heads)] + [f"MLP{layer}" for layer in range(n_layers)]


def component_target(label: str) -> tuple:
    """``"L3H7"`` -> ``("head", 3, 7)``, ``"MLP2"`` -> ``("mlp", 2)`` (the ablation targets' form)."""
    mlp = _MLP.fullmatch(label) if isinstance(label, str) else None
    if mlp is not None:
        return ("mlp", int(mlp.group(1)))
    try:
        head = HeadId.parse(label)
    except BadHeadIdError:
        raise BadHeadIdError(f"A component is a head like 'L3H7' (layer 3, head 7) or an MLP like 'MLP2', got {label!r}.") from None
    return ("head", head.layer, head.head)


@dataclass(frozen=True)
class AblationEffectRequest(_PairRequest):
    """The clean prompt's logit difference with ``targets`` (``("head", L, H)`` / ``("mlp", L)``) ablated
    by ``method`` (zero; mean over both prompts; resample = the corrupted prompt's activation)."""

    targets: tuple[tuple, ...] = ()
    method: str = "zero"
    label = "Ablating on the clean prompt"

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(tuple(t) for t in self.targets))
        if self.method not in ABLATION_METHODS:
            raise WorkbenchError(f"method must be one of {ABLATION_METHODS}, got {self.method!r}")

    @classmethod
    def of_labels(cls, clean: str, corrupt: str, answer: str, wrong: str, labels: Sequence[str], method: str = "zero",
                  ) -> AblationEffectRequest:
        """The request for components named ``"L3H7"`` / ``"MLP2"``."""
        return cls(clean, corrupt, answer, wrong, tuple(component_target(label) for label in labels), method)

    def check(self, model: LoadedModel) -> None:
        super().check(model)
        validate_targets(model, self.targets)

    def compute(self, model: LoadedModel, on_progress: Progress) -> AblationEffect:
        return ablation_effect(model, self.pair(model), list(self.targets), self.method)  # type: ignore[arg-type]
