"""Activation patching: which activations *cause* the model's answer?

Context. Two prompts differ in one detail: the clean one ("...John gave a drink to" -> " Mary")
and the corrupted one ("...Mary gave a drink to" -> " John"). The metric is the logit
difference ``logit(answer) - logit(wrong)`` at the last position.

Intuition (denoising). Run the corrupted prompt, but overwrite one activation (one layer,
one position, one head) with its value from the clean run, and read the metric. If that one
activation carries the information that the prompts differ in, the answer comes back. The
result is reported normalised: ``(patched - corrupted) / (clean - corrupted)``, so 1 means the
clean behaviour is fully restored and 0 means the patch did nothing.

Speed. The naive way (TransformerLens's ``patching`` module) runs one full forward pass per
cell. Here the cells of one layer run together as a batch through
``model.run_blocks``, starting at the patched layer from the corrupted run's cached residual
(layers before the patch cannot change), and only the last position is unembedded. The
numbers are those of the naive loop (tested to 1e-5). A patch at position ``p`` also leaves
every position before ``p`` unchanged under causal attention, so their keys and values could
be reused too; that is not done here (the batched replay already gives the 10x).

Targets, with the grid axes they give (``grid`` holds normalised recovery):

- ``resid_pre``: ``blocks.{L}.hook_resid_pre`` at one position -> ``(layer, pos)``;
- ``attn_out`` / ``mlp_out``: ``hook_attn_out`` / ``hook_mlp_out`` at one position -> ``(layer, pos)``;
- ``head_out``: one head's ``attn.hook_z`` slice at every position -> ``(layer, head)``;
- ``head_out_by_pos``: one head's ``attn.hook_z`` at one position -> ``(layer, head, pos)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from interp_core.core.errors import WorkbenchError
from interp_core.core.hooks import HookFn
from interp_core.core.model import LayerContext, LoadedModel
from interp_core.core.names import hook_name
from interp_core.core.prefix import KeyValueRecorder, PrefixKeyValues
from interp_core.techniques.ablation import Method, ablation_hooks, reference_activations, validate_targets
from interp_core.techniques.attribution import attribution_patching
from interp_core.techniques.patch_pair import (  # noqa: F401  (re-exported: pages, commands and tests import them from here)
    METHODS,
    POINT_OF,
    TARGETS,
    PatchingResult,
    PatchPair,
    check_target,
    grid_axes,
    logit_diff,
    make_result,
    normalise,
    prepare_pair,
)

Progress = Callable[[float, str], None]
DEFAULT_CHUNK = 64  # larger batches got slower on a 2-core CPU (GUIDE.md §6)
FLAT_TOKENS = 8192  # tokens per call of the flattened block: bounds memory on long prompts


# --- what an exact sweep costs ---------------------------------------------------------------
CONFIRM_SECONDS = 60.0  # pages ask before starting an exact sweep estimated to take longer
# Calibration (benchmarks/patching.py --calibrate, 2026-12-02, quiet 2-core CPU): a random model of the
# default's shape (SmolLM2-135M) on a pair differing at its first token (every cell runs), resid_pre:
# 10, 20, 40 and 80 tokens took 1.7, 6.2, 27.0 and 128 s; GPT-2-small's shape on 20 tokens 1.85 s.
_CALIBRATION = dict(n_layers=30, n_heads=9, d_model=576, d_mlp=1536, d_vocab=49152, n_tokens=20, target="resid_pre")
_CALIBRATION_SECONDS = 6.2
# Attention runs per row over every position as small batched products and a softmax: per
# multiply-add several times slower than the big flattened matrix products (fitted to the 80 tokens).
_ATTENTION_SLOWDOWN = 8


@dataclass(frozen=True)
class SweepCost:
    """What :func:`exact_patching` of one target will do, estimated before it runs.

    Attributes:
        cells: cells of the grid (``n_layers`` x cells per layer), as the page shows them.
        run_cells: cells that are really run (positions before the first differing token are skipped).
        block_passes: one row through one block; a cell patched at layer ``L`` passes ``n_layers - L`` blocks.
        seconds: rough wall time on the project's 2-core CPU (a GPU is many times faster).
    """

    cells: int
    run_cells: int
    block_passes: int
    seconds: float

    def describe(self) -> str:
        """``"about 12 s"``, ``"about 4 min"``, ``"about 3.5 h"``."""
        s = self.seconds
        if s < 90:
            return f"about {max(1, round(s))} s"
        if s < 90 * 60:
            return f"about {round(s / 60)} min"
        return f"about {s / 3600:.1f} h"


def _sweep_work(n_layers: int, n_heads: int, d_model: int, d_mlp: int, d_vocab: int, n_tokens: int, target: str,
                n_positions: int | None = None, gated_mlp: bool = True) -> tuple[int, int, int, float]:
    """``(cells, run_cells, block_passes, work)``; work in multiply-adds, roughly."""
    check_target(target)
    positions = n_tokens if n_positions is None else max(0, min(n_positions, n_tokens))
    if target == "head_out":
        grid_per_layer, run_per_layer = n_heads, n_heads
    elif target == "head_out_by_pos":
        grid_per_layer, run_per_layer = n_heads * n_tokens, n_heads * positions
    else:
        grid_per_layer, run_per_layer = n_tokens, positions
    # Rows of layer L join at block L and run every later block: a triangle over the layers.
    triangle = n_layers * (n_layers + 1) // 2
    block_passes = run_per_layer * triangle
    # A row patched at position p runs positions p.. only: a row per run position q from the first
    # differing one (n_tokens - positions) gives n_tokens - q tokens; a head at every position runs them all.
    if target == "head_out":
        tokens_per_layer = n_heads * n_tokens
    else:
        tokens_per_layer = (run_per_layer // positions if positions else 0) * positions * (positions + 1) // 2
    # One token through one block: the weights once (attention 4 d^2, an MLP 3 d d_mlp when gated as
    # in llama, else 2); one row's attention over every position: 2 n^2 d, at its slower rate.
    per_token = 4 * d_model**2 + (3 if gated_mlp else 2) * d_model * d_mlp
    attention = _ATTENTION_SLOWDOWN * 2 * n_tokens**2 * d_model
    cached_runs = 2 * n_layers * n_tokens * per_token + 2 * d_model * d_vocab  # the clean and corrupted runs
    work = tokens_per_layer * triangle * per_token + block_passes * attention + cached_runs
    return n_layers * grid_per_layer, n_layers * run_per_layer, block_passes, work


_SECONDS_PER_WORK = _CALIBRATION_SECONDS / _sweep_work(**_CALIBRATION)[3]


def estimate_exact_cost(*, n_layers: int, n_heads: int, d_model: int, d_mlp: int, d_vocab: int, n_tokens: int,
                        target: str, n_positions: int | None = None, gated_mlp: bool = True) -> SweepCost:
    """Estimate an exact (batched) patching sweep from the model's shape alone, before running it.

    Args:
        n_tokens: tokens of each prompt.
        n_positions: positions from the first token where the prompts differ to the end
            (default: all); cells before it cannot change anything and are skipped.
        gated_mlp: three MLP matrices (llama family) rather than two (GPT-2, Pythia).

    The time is the work (tokens through blocks x the cost of one token, plus each row's attention)
    scaled to the measured calibration point above. A cell runs only from its position on, so the
    work grows with the square of the differing part of the prompt (cells x tokens per cell), faster
    once attention dominates, and with the square of the layer count (rows patched at layer 0 pass
    every block). Checked against the other measurements: 10, 40 and 80 tokens estimated 1.6, 26
    and 120 s (measured 1.7, 27.0, 128); GPT-2-small's shape, 20 tokens, 1.8 s (measured 1.85).
    """
    cells, run_cells, passes, work = _sweep_work(n_layers, n_heads, d_model, d_mlp, d_vocab, n_tokens, target,
                                                 n_positions, gated_mlp)
    return SweepCost(cells=cells, run_cells=run_cells, block_passes=passes, seconds=work * _SECONDS_PER_WORK)


def sweep_cost(model: LoadedModel, pair: PatchPair, target: str) -> SweepCost:
    """:func:`estimate_exact_cost` for ``model`` and a prepared pair."""
    info = model.info
    first = next((i for i, (a, b) in enumerate(zip(pair.tokens, pair.corrupt_token_strs)) if a != b), 0)
    return estimate_exact_cost(n_layers=info.n_layers, n_heads=info.n_heads, d_model=info.d_model, d_mlp=info.d_mlp,
                               d_vocab=info.d_vocab, n_tokens=pair.n_pos, target=target, n_positions=pair.n_pos - first,
                               gated_mlp=model.adapter.gated_mlp)


# --- cells and how to patch them ---------------------------------------------------------
def layer_cells(model: LoadedModel, pair: PatchPair, target: str) -> list[tuple[int, ...]]:
    """The cells of one layer, as index tuples after the layer: ``(pos,)``, ``(head,)`` or ``(head, pos)``."""
    if target == "head_out":
        return [(h,) for h in range(model.info.n_heads)]
    if target == "head_out_by_pos":
        return [(h, p) for h in range(model.info.n_heads) for p in range(pair.n_pos)]
    return [(p,) for p in range(pair.n_pos)]


def write_cells(target: str, value: torch.Tensor, clean: torch.Tensor, cells: Sequence[tuple[int, ...]]) -> torch.Tensor:
    """Row ``i`` of ``value`` gets ``clean``'s values at ``cells[i]``.

    Args:
        value: the corrupted activation, ``(n_cells, pos, d_model)`` or ``(n_cells, pos, head, d_head)`` for z.
        clean: the clean run's activation at the same point, ``(1, ...)``.
    """
    new = value.clone()
    clean = clean[0].to(new.device, new.dtype)
    for row, cell in enumerate(cells):
        if target == "head_out":
            new[row, :, cell[0]] = clean[:, cell[0]]  # one head, every position
        elif target == "head_out_by_pos":
            new[row, cell[1], cell[0]] = clean[cell[1], cell[0]]
        else:
            new[row, cell[0]] = clean[cell[0]]
    return new


def _cell_hook(target: str, clean: torch.Tensor, cells: Sequence[tuple[int, ...]]) -> HookFn:
    def hook(value: torch.Tensor, name: str) -> torch.Tensor:
        return write_cells(target, value, clean, cells)

    return hook


def _caches(model: LoadedModel, pair: PatchPair, target: str) -> tuple[float, float, dict, dict, PrefixKeyValues]:
    """Clean and corrupted metrics, the clean target activations, the corrupted residuals and target
    activations, and the corrupted run's keys and values (for runs over the positions after a patch)."""
    n_layers = model.info.n_layers
    point = POINT_OF[target]
    # Both prompts in one batch: one pass's fixed cost instead of two (row 0 clean, row 1 corrupted).
    names = {hook_name(p, layer) for p in ("hook_resid_pre", point) for layer in range(n_layers)}
    recorder = KeyValueRecorder()
    logits, cache = model.run_with_cache(torch.cat([pair.clean_tokens, pair.corrupt_tokens]), sorted(names),
                                         key_values=recorder, last_position_only=True)
    clean_cache = {name: value[:1] for name, value in cache.items() if name.endswith(point)}
    corrupt_cache = {name: value[1:] for name, value in cache.items()}
    metrics = logit_diff(logits, pair.answer_id, pair.wrong_id)
    clean_metric, corrupt_metric = float(metrics[0]), float(metrics[1])
    return clean_metric, corrupt_metric, clean_cache, corrupt_cache, recorder.recorded().row(1)


def exact_patching(
    model: LoadedModel,
    pair: PatchPair,
    target: str,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    on_progress: Progress | None = None,
    flat_rows: bool = True,
) -> PatchingResult:
    """Denoising patching of every cell of ``target``, batched, from the patched layer and position on.

    A patch at layer ``L`` and position ``p`` leaves every block before ``L`` as in the corrupted
    run, and, under causal attention, every position before ``p`` in every block too. So each
    cell starts from the corrupted run's ``blocks.{L}.hook_resid_pre`` and, in each block from
    ``L`` on, only positions ``>= p`` are computed; attention reads the keys and values of the
    earlier positions from the corrupted run (recorded during that run, after any rotation).
    The rows travel through the blocks as one growing batch. Each block runs as the adapter's
    parts (:meth:`LoadedModel.run_block_rows`): every linear map over all rows' own positions
    flattened into one batch of tokens, attention per row with the real (rotary) positions.
    Where that does not reproduce the model's own blocks on the corrupted run (checked each sweep;
    or ``flat_rows=False``), the model's own blocks run instead, through their KV-cache argument,
    on rows sorted by their start in chunks of ``chunk_size``, each chunk from its smallest start.
    ``head_out`` patches a head at every position: it has no position to cut, so its rows run
    every position.
    For ``resid_pre`` the patched residual is built directly; for the other targets a hook writes
    the clean values while the new rows pass block ``L``. Only the last position is read out,
    through the two unembedding columns the metric needs.

    Returns:
        a :class:`PatchingResult` whose ``patched`` equals :func:`naive_patching`'s (tested).
    """
    check_target(target)
    clean_metric, corrupt_metric, clean_cache, corrupt_cache, prefix = _caches(model, pair, target)
    context = model.layer_context(pair.corrupt_tokens)
    all_cells = layer_cells(model, pair, target)
    n_layers = model.info.n_layers
    # A cell whose clean and corrupted values are identical (e.g. every position before the first
    # token that differs) cannot change anything: its result is the corrupted metric, exactly.
    changed = [[i for i, cell in enumerate(all_cells) if not _same_at(target, layer, cell, clean_cache, corrupt_cache)]
               for layer in range(n_layers)]
    work_total = sum(len(changed[layer]) * (n_layers - layer) for layer in range(n_layers)) or 1
    work_done = 0
    flat = flat_rows and _flat_rows_agree(model, prefix, corrupt_cache)
    rows = _Rows.empty(pair.n_pos, model.info.d_model, corrupt_cache[hook_name("hook_resid_pre", 0)])
    for layer in range(n_layers):
        cells = [all_cells[i] for i in changed[layer]]
        ids = [layer * len(all_cells) + i for i in changed[layer]]
        joining = _joining_rows(model, context, prefix, target, layer, cells, ids, clean_cache, corrupt_cache, chunk_size)
        if target == "resid_pre":
            rows = rows.join(joining)  # patched before block L: it runs block L with the others
        rows = _run_block(model, context, prefix, rows, layer, corrupt_cache, chunk_size, flat)
        if target != "resid_pre":
            rows = rows.join(joining)  # already through block L, with the patch applied inside it
        work_done += sum(len(changed[start]) for start in range(layer + 1))
        if on_progress is not None:
            on_progress(min(work_done / work_total, 1.0), f"block {layer + 1} of {n_layers}")
    out = np.full((n_layers, len(all_cells)), corrupt_metric)
    if len(rows.ids):
        out.reshape(-1)[rows.ids.numpy()] = _metric_of_last_position(model, pair, rows.resid[:, -1]).cpu().numpy()
    return make_result(model, pair, target, "exact", _to_grid(out, model, pair, target), clean_metric, corrupt_metric)


@dataclass(frozen=True)
class _Rows:
    """Patched runs under way: ``resid (rows, pos, d_model)``, each row's first position that can
    differ from the corrupted run ``starts (rows,)``, and its flat index in the grid ``ids (rows,)``.
    Rows are kept sorted by ``starts``. Before a row's start its ``resid`` may be stale: the
    flattened blocks never read it there, the model's own blocks get it refilled from the corrupted run."""

    resid: torch.Tensor
    starts: torch.Tensor
    ids: torch.Tensor

    @staticmethod
    def empty(n_pos: int, d_model: int, like: torch.Tensor) -> _Rows:
        none = torch.zeros(0, dtype=torch.long)
        return _Rows(like.new_zeros(0, n_pos, d_model), none, none)

    def join(self, other: _Rows) -> _Rows:
        starts = torch.cat([self.starts, other.starts])
        order = torch.argsort(starts, stable=True)
        return _Rows(torch.cat([self.resid, other.resid])[order], starts[order], torch.cat([self.ids, other.ids])[order])


def _same_at(target: str, layer: int, cell: tuple[int, ...], clean_cache: dict, corrupt_cache: dict) -> bool:
    """Whether the clean and corrupted runs hold identical values at this cell."""
    name = hook_name(POINT_OF[target], layer)
    clean, corrupt = clean_cache[name][0], corrupt_cache[name][0]  # (pos, d_model) or (pos, head, d_head)
    if target == "head_out":
        index: tuple = (slice(None), cell[0])
    elif target == "head_out_by_pos":
        index = (cell[1], cell[0])
    else:
        index = (cell[0],)
    return bool(torch.equal(clean[index], corrupt[index]))


def _start_of(target: str, cell: tuple[int, ...]) -> int:
    """The first position a cell's patch can change: its position, or 0 for a head at every position."""
    if target == "head_out":
        return 0
    return cell[-1]


def _shifted(target: str, cell: tuple[int, ...], start: int) -> tuple[int, ...]:
    """The cell's index in a run over positions ``start..``."""
    if target == "head_out":
        return cell
    return (*cell[:-1], cell[-1] - start)


def _joining_rows(model: LoadedModel, context: LayerContext, prefix: PrefixKeyValues, target: str, layer: int, cells: list,
                  ids: list[int], clean_cache: dict, corrupt_cache: dict, chunk_size: int) -> _Rows:
    """The rows of layer ``layer``'s cells: ``(n_cells, pos, d_model)``, entering block ``layer``
    for ``resid_pre``, leaving it (patched inside) for the other targets."""
    corrupt = corrupt_cache[hook_name("hook_resid_pre", layer)]  # (1, pos, d_model)
    clean = clean_cache[hook_name(POINT_OF[target], layer)]
    starts = torch.tensor([_start_of(target, cell) for cell in cells], dtype=torch.long)
    order = torch.argsort(starts, stable=True)
    cells = [cells[i] for i in order.tolist()]
    starts, ids_t = starts[order], torch.tensor(ids, dtype=torch.long)[order]
    resid = corrupt.expand(len(cells), -1, -1)
    if target == "resid_pre" or not cells:
        return _Rows(write_cells(target, resid, clean, cells), starts, ids_t)
    resid = resid.clone()
    for chunk in _chunks(len(cells), chunk_size):
        start = int(starts[chunk.start])
        shifted = [_shifted(target, cell, start) for cell in cells[chunk]]
        hooks = [(hook_name(POINT_OF[target], layer), _cell_hook(target, clean[:, start:], shifted))]
        resid[chunk, start:] = model.run_blocks(resid[chunk, start:], layer, context, hooks=hooks, end_layer=layer + 1,
                                                prefix=prefix, start_pos=start)
    return _Rows(resid, starts, ids_t)


def token_budget_cuts(lengths: list[int], budget: int = FLAT_TOKENS) -> list[int]:
    """Boundaries ``[0, ..., len(lengths)]`` cutting rows of ``lengths`` tokens into consecutive calls of at most
    ``budget`` tokens each (a row longer than the budget gets a call of its own)."""
    cuts, tokens = [0], 0
    for i, length in enumerate(lengths):
        if tokens + length > budget and i > cuts[-1]:
            cuts.append(i)
            tokens = 0
        tokens += length
    cuts.append(len(lengths))
    return cuts


def _run_block(model: LoadedModel, context: LayerContext, prefix: PrefixKeyValues, rows: _Rows, layer: int,
               corrupt_cache: dict, chunk_size: int, flat: bool) -> _Rows:
    """Run block ``layer`` over every row from the row's own start.

    ``flat``: all rows' positions as one batch of tokens (:meth:`LoadedModel.run_block_rows`);
    else the model's own block, ``chunk_size`` rows at a time, each chunk from its smallest start.
    """
    if not len(rows.ids):
        return rows
    if flat:
        cuts = token_budget_cuts((rows.resid.shape[1] - rows.starts).tolist())
        last = layer == model.info.n_layers - 1  # only the last position is read after the last block
        parts = [model.run_block_rows(rows.resid[a:b], rows.starts[a:b], layer, prefix, last_position_only=last)
                 for a, b in zip(cuts, cuts[1:])]
        return _Rows(torch.cat(parts), rows.starts, rows.ids)
    corrupt = corrupt_cache[hook_name("hook_resid_pre", layer)]  # (1, pos, d_model)
    positions = torch.arange(corrupt.shape[1], device=corrupt.device)
    before_start = positions[None, :, None] < rows.starts.to(corrupt.device)[:, None, None]
    resid = torch.where(before_start, corrupt, rows.resid)  # a new tensor: the chunks write into it
    for chunk in _chunks(len(resid), chunk_size):
        start = int(rows.starts[chunk.start])  # sorted: the chunk's smallest
        resid[chunk, start:] = model.run_blocks(resid[chunk, start:], layer, context, end_layer=layer + 1,
                                                prefix=prefix, start_pos=start)
    return _Rows(resid, rows.starts, rows.ids)


def _flat_rows_agree(model: LoadedModel, prefix: PrefixKeyValues, corrupt_cache: dict) -> bool:
    """Whether :meth:`LoadedModel.run_block_rows` gives the model's own blocks' values here: on the
    corrupted run, from position 0 and from the middle (reading the recorded keys and values),
    at the first two layers and the last but one. A family variant it does not know (a sliding
    window, another attention) fails this, and the sweep takes the model's own blocks instead."""
    n_layers = model.info.n_layers
    for layer in sorted({0, 1, n_layers - 2} & set(range(n_layers - 1))):
        resid = corrupt_cache[hook_name("hook_resid_pre", layer)]
        want = corrupt_cache[hook_name("hook_resid_pre", layer + 1)].expand(2, -1, -1)
        starts = torch.tensor([0, resid.shape[1] // 2])
        try:
            got = model.run_block_rows(resid.expand(2, -1, -1), starts, layer, prefix)
        except NotImplementedError:
            return False
        own = (torch.arange(resid.shape[1])[None, :] >= starts[:, None]).to(got.device)  # what the rows computed
        if not torch.allclose(got[own].float(), want[own].float(), rtol=1e-3, atol=1e-4 * float(want.abs().max()) + 1e-5):
            return False
    return True


def _chunks(n_rows: int, chunk_size: int) -> list[slice]:
    """Consecutive chunks of at most ``chunk_size`` rows. (Cutting rows sorted by start further, where
    the start changes, saved no time on the IOI grid: the smaller batches ran less efficiently.)"""
    return [slice(first, first + chunk_size) for first in range(0, n_rows, chunk_size)]


def _metric_of_last_position(model: LoadedModel, pair: PatchPair, last: torch.Tensor) -> torch.Tensor:
    """``last (rows, d_model)``, the residual leaving the final block -> the logit difference ``(rows,)``,
    through the final norm and only the answer's and the wrong answer's unembedding columns."""
    weights = model.weights
    columns = [pair.answer_id, pair.wrong_id]
    normed = model.apply_final_norm(last)
    logits = (normed @ weights.W_U[:, columns].to(normed.dtype) + weights.b_U[columns].to(normed.dtype)).float()
    return logits[:, 0] - logits[:, 1]


def _to_grid(flat: np.ndarray, model: LoadedModel, pair: PatchPair, target: str) -> np.ndarray:
    """``(layer, n_cells)`` -> the target's grid shape."""
    if target == "head_out_by_pos":
        return flat.reshape(model.info.n_layers, model.info.n_heads, pair.n_pos)
    return flat


def naive_patching(model: LoadedModel, pair: PatchPair, target: str, *, on_progress: Progress | None = None) -> PatchingResult:
    """The reference: one full forward pass of the corrupted prompt per cell (as TransformerLens does).

    Slow on purpose; kept as the ground truth the batched grid is tested and benchmarked against.
    """
    check_target(target)
    clean_metric, corrupt_metric, clean_cache, _, _ = _caches(model, pair, target)
    cells = layer_cells(model, pair, target)
    n_layers = model.info.n_layers
    out = np.zeros((n_layers, len(cells)))
    for layer in range(n_layers):
        name = hook_name(POINT_OF[target], layer)
        for i, cell in enumerate(cells):
            hook = _cell_hook(target, clean_cache[name], [cell])
            logits = model.forward(pair.corrupt_tokens, hooks=[(name, hook)])
            out[layer, i] = float(logit_diff(logits, pair.answer_id, pair.wrong_id)[0])
        if on_progress is not None:
            on_progress((layer + 1) / n_layers, f"layer {layer + 1} of {n_layers}")
    return make_result(model, pair, target, "exact", _to_grid(out, model, pair, target), clean_metric, corrupt_metric)


def patch(
    model: LoadedModel,
    clean: str,
    corrupt: str,
    answer: str,
    wrong: str,
    target: str,
    *,
    method: str = "exact",
    on_progress: Progress | None = None,
) -> PatchingResult:
    """Validate the inputs, then run exact (batched) or attribution patching of ``target``."""
    check_target(target)
    if method not in METHODS:
        raise WorkbenchError(f"method must be one of {', '.join(METHODS)}; got {method!r}.")
    pair = prepare_pair(model, clean, corrupt, answer, wrong)
    if method == "attribution":
        return attribution_patching(model, pair, on_progress=on_progress)[target]
    return exact_patching(model, pair, target, on_progress=on_progress)


# --- ablation on the same pair ----------------------------------------------------------------
@dataclass(frozen=True)
class AblationEffect:
    """The metric on the clean prompt with ``targets`` ablated, next to the unablated runs."""

    targets: tuple[tuple, ...]
    method: str
    clean_metric: float
    corrupt_metric: float
    ablated_metric: float

    @property
    def recovery(self) -> float:
        """Where the ablated run sits between corrupted (0) and clean (1)."""
        d = self.clean_metric - self.corrupt_metric
        return float("nan") if abs(d) < 1e-9 else (self.ablated_metric - self.corrupt_metric) / d

    def tables(self) -> dict[str, pd.DataFrame]:
        """``patch_ablation``: the logit difference of the clean, ablated and corrupted runs."""
        return {"patch_ablation": pd.DataFrame({
            "run": ["clean", "ablated", "corrupted"],
            "logit_diff": [self.clean_metric, self.ablated_metric, self.corrupt_metric],
        })}

    def to_json(self) -> dict:
        return {
            "targets": [list(t) for t in self.targets], "method": self.method, "clean_metric": self.clean_metric,
            "corrupt_metric": self.corrupt_metric, "ablated_metric": self.ablated_metric, "recovery": self.recovery,
        }


def ablation_effect(model: LoadedModel, pair: PatchPair, targets: Sequence[tuple], method: Method = "zero") -> AblationEffect:
    """Run the clean prompt with ``targets`` (``("head", L, H)`` / ``("mlp", L)``) ablated.

    The reference batch for ``mean`` and ``resample`` is the pair itself ``[clean, corrupted]``:
    mean over both prompts and all positions; resample gives the clean run the corrupted
    prompt's activation (row 0 takes reference row 1).
    """
    validate_targets(model, targets)
    batch = torch.cat([pair.clean_tokens, pair.corrupt_tokens])
    reference = reference_activations(model, batch, targets) if method != "zero" and targets else None
    hooks = ablation_hooks(model, targets, method, reference) if targets else []
    base = logit_diff(model.forward(batch, last_position_only=True), pair.answer_id, pair.wrong_id)
    ablated = logit_diff(model.forward(batch, hooks=hooks, last_position_only=True), pair.answer_id, pair.wrong_id)
    return AblationEffect(tuple(tuple(t) for t in targets), method, float(base[0]), float(base[1]), float(ablated[0]))
