"""Activation patching over a dataset of prompt pairs: the mean grid, its spread, and each pair's own grid.

Averaging follows the IOI paper and TransformerLens' tutorials: the metric is averaged over
pairs first, then normalised, ``grid = (mean patched - mean corrupted) / (mean clean - mean corrupted)``;
``grid_std`` is the standard deviation over pairs of each pair's own normalised grid.

Batched execution. The pairs of a dataset share one token length, so every pair's cells are
simply more rows of the exact sweep of :mod:`interp_core.techniques.patching`: one cached run of
all clean and corrupted prompts together (one batch, no padding needed), then each block runs once
over the rows of every pair, each row from its own patched position on, its attention reading the
keys and values of *its own* pair's corrupted run (``prefix_rows`` of
:meth:`LoadedModel.run_block_rows`). Pairs go in groups whose rows stay under :data:`ROWS_PER_GROUP`
(memory). Every pair's numbers equal its single-pair :func:`exact_patching` (tested to 1e-4).
Where the flattened rows do not reproduce the model's blocks (an unknown family variant), and for
``method="attribution"`` (about two passes per pair), pairs run one by one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from interp_core.core.head_id import head_label
from interp_core.core.model import LoadedModel
from interp_core.core.names import hook_name
from interp_core.core.prefix import KeyValueRecorder, PrefixKeyValues
from interp_core.techniques.attribution import attribution_patching
from interp_core.techniques.datasets import PairDataset
from interp_core.techniques.patch_pair import POINT_OF, PatchPair, check_target, grid_axes, normalise
from interp_core.techniques.patching import (
    _flat_rows_agree,
    _joining_rows,
    _same_at,
    _to_grid,
    exact_patching,
    layer_cells,
    token_budget_cuts,
    write_cells,
)

Progress = Callable[[float, str], None]
ROWS_PER_GROUP = 4096  # rows (cells x pairs) of one batched sweep: bounds the memory of the rows' residuals


@dataclass(frozen=True)
class DatasetPatchingResult:
    """Patching grids of every pair of a dataset, and their mean and spread.

    Attributes:
        dataset: the pairs; target, method: as for one pair.
        per_pair_patched: each pair's patched metric per cell ``(pairs, *grid)``.
        per_pair_clean_metric, per_pair_corrupt_metric: ``(pairs,)`` the unpatched runs' logit differences.
        axes, labels: the grid's axes, position labels from the first pair; tokens: the first pair's clean tokens.
    """

    dataset: PairDataset
    target: str
    method: str
    per_pair_patched: np.ndarray
    per_pair_clean_metric: np.ndarray
    per_pair_corrupt_metric: np.ndarray
    axes: tuple[str, ...]
    labels: tuple[tuple[str, ...], ...]
    tokens: tuple[str, ...]

    @property
    def clean_metric(self) -> float:
        return float(self.per_pair_clean_metric.mean())

    @property
    def corrupt_metric(self) -> float:
        return float(self.per_pair_corrupt_metric.mean())

    @property
    def patched(self) -> np.ndarray:
        """Mean patched metric per cell ``(*grid)``."""
        return self.per_pair_patched.mean(0)

    @property
    def grid(self) -> np.ndarray:
        """``(mean patched - mean corrupted) / (mean clean - mean corrupted)`` ``(*grid)``."""
        return normalise(self.patched, self.clean_metric, self.corrupt_metric)

    @property
    def per_pair_grid(self) -> np.ndarray:
        """Each pair normalised by its own clean and corrupted metrics ``(pairs, *grid)`` (NaN where they are equal)."""
        return np.stack([normalise(p, c, x) for p, c, x in
                         zip(self.per_pair_patched, self.per_pair_clean_metric, self.per_pair_corrupt_metric)])

    @property
    def grid_std(self) -> np.ndarray:
        """Standard deviation over pairs (ddof 0) of each pair's normalised grid ``(*grid)``; pairs with nothing to recover are left out."""
        grids = self.per_pair_grid
        if np.isnan(grids).all():
            return np.full(grids.shape[1:], np.nan)
        return np.nanstd(grids, axis=0)

    @property
    def disagreement(self) -> np.ndarray:
        """``(pairs,)`` root-mean-square distance of each pair's normalised grid from the mean grid (NaN: nothing to recover)."""
        diff = self.per_pair_grid - self.grid[None]
        flat = diff.reshape(len(diff), -1)
        out = np.full(len(flat), np.nan)
        for i, row in enumerate(flat):
            if not np.isnan(row).all():
                out[i] = float(np.sqrt(np.nanmean(row**2)))
        return out

    def ranked(self) -> list[int]:
        """Pair indices, the most disagreeing with the mean first (pairs with nothing to recover last)."""
        d = self.disagreement
        return sorted(range(len(d)), key=lambda i: (np.isnan(d[i]), -np.nan_to_num(d[i])))

    def to_json(self) -> dict:
        return {
            "pairs": self.dataset.to_json(),
            "target": self.target,
            "method": self.method,
            "clean_metric": self.clean_metric,
            "corrupt_metric": self.corrupt_metric,
            "per_pair_clean_metric": self.per_pair_clean_metric,
            "per_pair_corrupt_metric": self.per_pair_corrupt_metric,
            "tokens": list(self.tokens),
            "axes": list(self.axes),
            "labels": [list(labels) for labels in self.labels],
            "grid": self.grid,
            "grid_std": self.grid_std,
            "patched": self.patched,
            "per_pair_disagreement": self.disagreement,
        }

    def tables(self) -> dict[str, pd.DataFrame]:
        """``patch_dataset_<target>``: one row per cell (row label, column label, mean ``recovery``, ``recovery_std``,
        mean ``patched_metric``); ``patch_dataset_pairs``: one row per pair with its metrics and disagreement."""
        grid, std, patched = self.grid, self.grid_std, self.patched
        if grid.ndim == 3:
            rows = [head_label(int(layer), int(head)) for layer in self.labels[0] for head in self.labels[1]]
            names, cols = ("head", "pos"), self.labels[2]
        else:
            rows, cols, names = list(self.labels[0]), self.labels[1], self.axes
        r, c = np.meshgrid(np.arange(len(rows)), np.arange(len(cols)), indexing="ij")
        cells = pd.DataFrame({names[0]: [rows[i] for i in r.ravel()], names[1]: [cols[j] for j in c.ravel()],
                              "recovery": grid.ravel(), "recovery_std": std.ravel(), "patched_metric": patched.ravel()})
        pairs = self.dataset.frame()
        pairs.insert(0, "pair", range(len(pairs)))
        pairs["clean_metric"], pairs["corrupt_metric"] = self.per_pair_clean_metric, self.per_pair_corrupt_metric
        pairs["disagreement"] = self.disagreement
        return {f"patch_dataset_{self.target}": cells, "patch_dataset_pairs": pairs}


def dataset_patching(model: LoadedModel, dataset: PairDataset, pairs: list[PatchPair], target: str, *, method: str = "exact",
                     on_progress: Progress | None = None, batched: bool = True) -> DatasetPatchingResult:
    """Patch ``target`` on every pair (``pairs``: :func:`~interp_core.techniques.datasets.prepare_dataset` of ``dataset``).

    ``batched=False`` runs :func:`exact_patching` pair by pair (the reference the benchmark compares with).
    """
    check_target(target)
    n = len(pairs)
    if method == "attribution" or not batched:
        patched, clean, corrupt = [], [], []
        for i, pair in enumerate(pairs):
            one = (attribution_patching(model, pair)[target] if method == "attribution" else exact_patching(model, pair, target))
            patched.append(one.patched)
            clean.append(one.clean_metric)
            corrupt.append(one.corrupt_metric)
            if on_progress is not None:
                on_progress((i + 1) / n, f"pair {i + 1} of {n}")
        per_pair, clean_a, corrupt_a = np.stack(patched), np.array(clean), np.array(corrupt)
    else:
        per_pair, clean_a, corrupt_a = _batched_exact(model, pairs, target, on_progress)
    axes, labels = grid_axes(model, pairs[0], target)
    return DatasetPatchingResult(dataset, target, method, per_pair.astype(np.float64), clean_a, corrupt_a, axes, labels,
                                 pairs[0].tokens)


# --- the batched exact sweep ------------------------------------------------------------------
@dataclass(frozen=True)
class _Rows:
    """Patched runs of several pairs: ``resid (rows, pos, d_model)``, ``starts``, flat grid index ``ids``
    into ``(pairs, layers, cells)``, and each row's pair ``pairs`` (all ``(rows,)``), sorted by start."""

    resid: torch.Tensor
    starts: torch.Tensor
    ids: torch.Tensor
    pairs: torch.Tensor

    def join(self, other: _Rows) -> _Rows:
        starts = torch.cat([self.starts, other.starts])
        order = torch.argsort(starts, stable=True)
        return _Rows(torch.cat([self.resid, other.resid])[order], starts[order], torch.cat([self.ids, other.ids])[order],
                     torch.cat([self.pairs, other.pairs])[order])


def _group_caches(model: LoadedModel, pairs: list[PatchPair], target: str) -> tuple[np.ndarray, np.ndarray, list[dict], list[dict], PrefixKeyValues]:
    """One cached run of every clean then every corrupted prompt: metrics ``(pairs,)`` x 2, per pair its clean
    target activations and corrupted residuals/activations (``(1, ...)`` views), and the corrupted runs' keys and values."""
    n, n_layers, point = len(pairs), model.info.n_layers, POINT_OF[target]
    names = {hook_name(p, layer) for p in ("hook_resid_pre", point) for layer in range(n_layers)}
    recorder = KeyValueRecorder()
    tokens = torch.cat([p.clean_tokens for p in pairs] + [p.corrupt_tokens for p in pairs])
    logits, cache = model.run_with_cache(tokens, sorted(names), key_values=recorder, last_position_only=True)
    answers = torch.tensor([p.answer_id for p in pairs] * 2)
    wrongs = torch.tensor([p.wrong_id for p in pairs] * 2)
    last = logits[:, -1].float()
    rows = torch.arange(2 * n, device=last.device)
    metrics = (last[rows, answers.to(last.device)] - last[rows, wrongs.to(last.device)]).cpu().numpy()
    clean = [{k: v[i : i + 1] for k, v in cache.items() if k.endswith(point)} for i in range(n)]
    corrupt = [{k: v[n + i : n + i + 1] for k, v in cache.items()} for i in range(n)]
    recorded = recorder.recorded()
    prefix = PrefixKeyValues({k: v[n:] for k, v in recorded.keys.items()}, {k: v[n:] for k, v in recorded.values.items()})
    return metrics[:n].astype(np.float64), metrics[n:].astype(np.float64), clean, corrupt, prefix


def _batched_exact(model: LoadedModel, pairs: list[PatchPair], target: str,
                   on_progress: Progress | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(per_pair_patched (pairs, *grid), clean (pairs,), corrupt (pairs,))`` in groups of pairs."""
    cells_per_pair = model.info.n_layers * len(layer_cells(model, pairs[0], target))
    size = max(1, ROWS_PER_GROUP // max(1, cells_per_pair))
    outs, cleans, corrupts = [], [], []
    for first in range(0, len(pairs), size):
        group = pairs[first : first + size]

        def progress(fraction: float, message: str, first: int = first, group: list = group) -> None:
            if on_progress is not None:
                on_progress((first + fraction * len(group)) / len(pairs), f"pairs {first + 1}-{first + len(group)} of {len(pairs)}: {message}")

        out, clean, corrupt = _sweep_group(model, group, target, progress)
        outs.append(out)
        cleans.append(clean)
        corrupts.append(corrupt)
    return np.concatenate(outs), np.concatenate(cleans), np.concatenate(corrupts)


def _sweep_group(model: LoadedModel, pairs: list[PatchPair], target: str, progress: Progress) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact sweep of :func:`~interp_core.techniques.patching.exact_patching`, every pair's cells as rows of one sweep."""
    clean_metric, corrupt_metric, clean_caches, corrupt_caches, prefix = _group_caches(model, pairs, target)
    if not _flat_rows_agree(model, prefix.row(0), corrupt_caches[0]):  # an unknown block variant: pair by pair
        results = [exact_patching(model, pair, target) for pair in pairs]
        return (np.stack([r.patched for r in results]), np.array([r.clean_metric for r in results]),
                np.array([r.corrupt_metric for r in results]))
    context = model.layer_context(pairs[0].corrupt_tokens)
    all_cells = layer_cells(model, pairs[0], target)
    n_layers, n_cells, n_pos = model.info.n_layers, len(all_cells), pairs[0].n_pos
    first_resid = corrupt_caches[0][hook_name("hook_resid_pre", 0)]
    none = torch.zeros(0, dtype=torch.long)
    rows = _Rows(first_resid.new_zeros(0, n_pos, model.info.d_model), none, none, none)
    for layer in range(n_layers):
        joining = []
        for p, (clean, corrupt) in enumerate(zip(clean_caches, corrupt_caches)):
            changed = [i for i, cell in enumerate(all_cells) if not _same_at(target, layer, cell, clean, corrupt)]
            cells = [all_cells[i] for i in changed]
            ids = [(p * n_layers + layer) * n_cells + i for i in changed]
            if target == "resid_pre":
                joining.append(_resid_rows(target, layer, cells, ids, clean, corrupt, p))
            else:
                one = _joining_rows(model, context, prefix.row(p), target, layer, cells, ids, clean, corrupt, 64)
                joining.append(_Rows(one.resid, one.starts, one.ids, torch.full_like(one.ids, p)))
        new = joining[0]
        for more in joining[1:]:
            new = new.join(more)
        if target == "resid_pre":
            rows = rows.join(new)
        rows = _run_block(model, prefix, rows, layer)
        if target != "resid_pre":
            rows = rows.join(new)
        progress((layer + 1) / n_layers, f"block {layer + 1} of {n_layers}")
    out = np.repeat(corrupt_metric[:, None], n_layers * n_cells, axis=1).reshape(-1)
    if len(rows.ids):
        out[rows.ids.numpy()] = _metrics(model, pairs, rows).cpu().numpy()
    grids = [_to_grid(block, model, pairs[0], target) for block in out.reshape(len(pairs), n_layers, n_cells)]
    return np.stack(grids), clean_metric, corrupt_metric


def _resid_rows(target: str, layer: int, cells: list, ids: list[int], clean: dict, corrupt: dict, pair: int) -> _Rows:
    """Rows of one pair's ``resid_pre`` cells at ``layer``: the corrupted residual with one clean position each."""
    starts = torch.tensor([cell[-1] for cell in cells], dtype=torch.long)
    order = torch.argsort(starts, stable=True)
    cells = [cells[i] for i in order.tolist()]
    resid = corrupt[hook_name("hook_resid_pre", layer)].expand(len(cells), -1, -1)
    new = write_cells(target, resid, clean[hook_name(POINT_OF[target], layer)], cells)
    ids_t = torch.tensor(ids, dtype=torch.long)[order]
    return _Rows(new, starts[order], ids_t, torch.full_like(ids_t, pair))


def _run_block(model: LoadedModel, prefix: PrefixKeyValues, rows: _Rows, layer: int) -> _Rows:
    """Block ``layer`` over every row from its own start, reading its own pair's recorded keys and values,
    in calls of at most :data:`~interp_core.techniques.patching.FLAT_TOKENS` tokens."""
    if not len(rows.ids):
        return rows
    cuts = token_budget_cuts((rows.resid.shape[1] - rows.starts).tolist())
    last = layer == model.info.n_layers - 1
    parts = [model.run_block_rows(rows.resid[a:b], rows.starts[a:b], layer, prefix, last_position_only=last,
                                  prefix_rows=rows.pairs[a:b]) for a, b in zip(cuts, cuts[1:])]
    return _Rows(torch.cat(parts), rows.starts, rows.ids, rows.pairs)


def _metrics(model: LoadedModel, pairs: list[PatchPair], rows: _Rows) -> torch.Tensor:
    """Each row's logit difference at the last position, with its own pair's answer and wrong answer ``(rows,)``."""
    weights = model.weights
    normed = model.apply_final_norm(rows.resid[:, -1])
    answers = torch.tensor([pairs[p].answer_id for p in rows.pairs.tolist()], device=normed.device)
    wrongs = torch.tensor([pairs[p].wrong_id for p in rows.pairs.tolist()], device=normed.device)
    w_u, b_u = weights.W_U.to(normed.dtype), weights.b_U.to(normed.dtype)
    diff = ((normed * (w_u[:, answers] - w_u[:, wrongs]).T).sum(-1) + b_u[answers] - b_u[wrongs]).float()
    return diff

