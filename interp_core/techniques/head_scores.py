"""Scores that name an attention head's job, computed from its pattern.

Definitions (``../shared/GUIDE.md`` §3), for one head's pattern ``A[query, key]``:

- previous-token: mean over queries ``i >= 1`` of ``A[i, i-1]``;
- first-token (sink): mean over queries of ``A[i, 0]``;
- duplicate-token: mean of ``A[i, j]`` over pairs where token ``j == token i`` and ``j < i``
  (NaN when the prompt repeats no token);
- induction, on ``BOS + r + r`` with ``r`` of length ``T``: mean over second-half queries ``i``
  of ``A[i, i-T+1]`` (the token after the previous occurrence of the current token; more copies:
  every query in a later copy);
- entropy: mean over queries of ``-sum_j A[i, j] log A[i, j]`` (nats).

Every function takes patterns shaped ``(..., query, key)`` (any leading axes, e.g.
``(layer, head)``) and returns the leading axes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from interp_core.core.head_id import head_label


def previous_token_attention(pattern: np.ndarray) -> np.ndarray:
    """``(..., query, key) -> (..., query - 1)``: ``A[i, i-1]`` for every query ``i >= 1``."""
    queries = np.arange(1, pattern.shape[-1])
    return pattern[..., queries, queries - 1]


def previous_token_score(pattern: np.ndarray) -> np.ndarray:
    n = pattern.shape[-1]
    if n < 2:
        return np.full(pattern.shape[:-2], np.nan)
    return np.diagonal(pattern, offset=-1, axis1=-2, axis2=-1).mean(-1)  # == previous_token_attention(pattern).mean(-1)


def first_token_score(pattern: np.ndarray) -> np.ndarray:
    return pattern[..., :, 0].mean(-1)


def duplicate_token_mask(tokens: np.ndarray) -> np.ndarray:
    """``(pos,) -> (query, key)`` bool: key is an earlier copy of the query's token."""
    tokens = np.asarray(tokens)
    same = tokens[:, None] == tokens[None, :]
    return same & np.tril(np.ones_like(same, dtype=bool), k=-1)


def duplicate_token_score(pattern: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    mask = duplicate_token_mask(tokens)
    if not mask.any():
        return np.full(pattern.shape[:-2], np.nan)
    return pattern[..., mask].mean(-1)


def induction_mask(tokens: np.ndarray) -> np.ndarray:
    """``(pos,) -> (query, key)`` bool: key follows an earlier occurrence of the query's token.

    On ``BOS + r + r`` this is exactly the stripe ``key = query - T + 1`` over the second half.
    """
    dup = duplicate_token_mask(tokens)
    mask = np.zeros_like(dup)
    mask[:, 1:] = dup[:, :-1]  # shift one key to the right: the token after the earlier copy
    return mask


def induction_score(pattern: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Mean attention from each query to the token after earlier copies of the query's token.

    For prompts that repeat nothing the score is NaN.
    """
    mask = induction_mask(tokens)
    if not mask.any():
        return np.full(pattern.shape[:-2], np.nan)
    return pattern[..., mask].mean(-1)


def induction_key(query: np.ndarray | int, period: np.ndarray | int) -> np.ndarray | int:
    """The key an induction head attends to from ``query`` in a sequence that repeats every
    ``period`` tokens: the token right after the previous copy of the query's token."""
    return query - period + 1


def induction_stripe_mask(n_pos: int, period: int) -> np.ndarray:
    """``(query, key)`` bool: the induction targets of ``BOS + r * n`` with ``len(r) == period``,
    i.e. ``key = induction_key(query, period)`` for every query in a later copy (``query > period``)."""
    mask = np.zeros((n_pos, n_pos), dtype=bool)
    queries = np.arange(period + 1, n_pos)
    mask[queries, induction_key(queries, period)] = True
    return mask


def repeated_induction_score(pattern: np.ndarray, half_length: int) -> np.ndarray:
    """The GUIDE's induction score on ``BOS + r * n`` (``n >= 2`` copies of ``r``, ``T = half_length``
    tokens each): mean over queries ``i`` in the later copies of ``A[i, i - T + 1]``.

    Raises:
        ValueError: the pattern does not have ``1 + n * T`` positions for some ``n >= 2``.
    """
    n = pattern.shape[-1]
    if half_length < 1 or n < 2 * half_length + 1 or (n - 1) % half_length:
        raise ValueError(f"pattern has {n} positions; BOS + n x {half_length} (n >= 2) needs 1 + n * {half_length}")
    # the diagonal key = query - (T - 1) starts at query T - 1; its first two queries (T - 1, T) are in the first copy
    return np.diagonal(pattern, offset=-(half_length - 1), axis1=-2, axis2=-1)[..., 2:].mean(-1)


def mean_attention_at(patterns: np.ndarray, rows: np.ndarray, queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Mean attention on chosen cells of a batch: ``patterns (batch, heads, query, key)`` and aligned
    index arrays ``rows, queries, keys (n,)`` -> ``(heads,)``, the mean of ``patterns[row, :, query, key]``.

    For stripe scores whose keys depend on the sequence (a toy batch with a period per sequence:
    ``keys = induction_key(queries, period[rows])``).
    """
    return patterns[rows, :, queries, keys].mean(0)


def attention_entropy(pattern: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(pattern > 0, -pattern * np.log(pattern), 0.0)
    return terms.sum(-1).mean(-1)


def head_table(values: np.ndarray, name: str) -> pd.DataFrame:
    """``(layer, head) -> `` a long frame, one row per head: ``layer``, ``head``, ``label`` (``"L3H7"``) and ``name``.

    The table every per-head grid of scores is drawn and downloaded from.
    """
    layers, heads = np.meshgrid(np.arange(values.shape[0]), np.arange(values.shape[1]), indexing="ij")
    frame = pd.DataFrame({"layer": layers.ravel().tolist(), "head": heads.ravel().tolist(), name: np.asarray(values).ravel()})
    frame["label"] = [head_label(layer, head) for layer, head in zip(frame["layer"], frame["head"])]
    return frame
