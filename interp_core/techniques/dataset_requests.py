"""Requests for evidence over a dataset of prompt pairs: patching and DLA averaged over pairs.

The dataset is named, not carried: ``dataset`` ``"ioi"`` / ``"factual"`` (generated for the loaded
model's tokenizer from ``n``, ``seed`` and ``template``) or ``"csv"`` (the table's text in ``csv``),
so a request stays small, hashable and reproducible. The page and the ``patch`` / ``dla``
commands' ``--dataset`` build the same requests.
"""

from __future__ import annotations

from dataclasses import dataclass

from interp_core.core.errors import WorkbenchError
from interp_core.core.model import LoadedModel
from interp_core.techniques.contract import Progress, Request
from interp_core.techniques.dataset_dla import DatasetDlaResult, dataset_dla
from interp_core.techniques.dataset_patching import DatasetPatchingResult, dataset_patching
from interp_core.techniques.datasets import MAX_PAIRS, MIN_PAIRS, SOURCES, PairDataset, build_dataset, prepare_dataset
from interp_core.techniques.patch_pair import METHODS, PatchPair, check_target
from interp_core.techniques.patching import SweepCost, sweep_cost


@dataclass(frozen=True)
class _DatasetRequest(Request):
    """Which pairs: a generator (``"ioi"``, ``"factual"``) with ``n``, ``seed`` and ``template``, or ``"csv"`` text."""

    dataset: str = "ioi"
    n: int = 32
    seed: int = 0
    template: int = 0
    csv: str = ""

    def __post_init__(self) -> None:
        if self.dataset not in SOURCES:
            raise WorkbenchError(f"The dataset is one of {', '.join(SOURCES)}; got {self.dataset!r}.")
        for name in ("n", "seed", "template"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise WorkbenchError(f"{name} must be a whole number, got {value!r}.")
        if self.dataset != "csv" and not MIN_PAIRS <= self.n <= MAX_PAIRS:
            raise WorkbenchError(f"n (pairs) must be between {MIN_PAIRS} and {MAX_PAIRS}, got {self.n}.")
        if self.dataset == "csv" and not self.csv.strip():
            raise WorkbenchError("The CSV dataset is empty: upload a table with columns clean, corrupt, answer, wrong.")

    def pairs_of(self, model: LoadedModel) -> PairDataset:
        """The dataset's pairs (generated or parsed; cheap: no model run)."""
        return build_dataset(model, self.dataset, self.n, self.seed, self.template, self.csv)

    def prepared(self, model: LoadedModel) -> tuple[PairDataset, list[PatchPair]]:
        """The pairs and their tokenised, validated form (one token length; rows named on failure)."""
        data = self.pairs_of(model)
        return data, prepare_dataset(model, data)

    def check(self, model: LoadedModel) -> None:
        self.prepared(model)


@dataclass(frozen=True)
class DatasetPatchRequest(_DatasetRequest):
    """Denoising patching of ``target`` on every pair; the mean grid, its spread and each pair's metrics."""

    target: str = "resid_pre"
    method: str = "exact"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_target(self.target)
        if self.method not in METHODS:
            raise WorkbenchError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}.")

    @property
    def heavy(self) -> bool:  # type: ignore[override]  # every pair's sweep: queued
        return self.method == "exact"

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"{'Exact' if self.method == 'exact' else 'Attribution'} patching of {self.target} over the dataset"

    def cost(self, model: LoadedModel) -> SweepCost:
        """An upper bound: one pair's estimated sweep times the number of pairs (batching makes it faster)."""
        data, pairs = self.prepared(model)
        one = sweep_cost(model, pairs[0], self.target)
        n = len(pairs)
        return SweepCost(one.cells, one.run_cells * n, one.block_passes * n, one.seconds * n)

    def compute(self, model: LoadedModel, on_progress: Progress) -> DatasetPatchingResult:
        data, pairs = self.prepared(model)
        return dataset_patching(model, data, pairs, self.target, method=self.method, on_progress=on_progress)


@dataclass(frozen=True)
class DatasetDlaRequest(_DatasetRequest):
    """DLA of every pair's clean prompt (answer minus wrong answer at the last position): mean, spread, per pair."""

    label = "Running every pair's clean prompt and splitting the logit difference"

    def compute(self, model: LoadedModel, on_progress: Progress) -> DatasetDlaResult:
        data = self.prepared(model)[0]
        return dataset_dla(model, data, on_progress=on_progress)
