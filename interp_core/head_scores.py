"""Scores that name an attention head's job, computed from its pattern.

Definitions (``../shared/GUIDE.md`` §3), for one head's pattern ``A[query, key]``:

- previous-token: mean over queries ``i >= 1`` of ``A[i, i-1]``;
- first-token (sink): mean over queries of ``A[i, 0]``;
- duplicate-token: mean of ``A[i, j]`` over pairs where token ``j == token i`` and ``j < i``
  (NaN when the prompt repeats no token);
- induction, on ``BOS + r + r`` with ``r`` of length ``T``: mean over second-half queries ``i``
  of ``A[i, i-T+1]`` (the token after the previous occurrence of the current token);
- entropy: mean over queries of ``-sum_j A[i, j] log A[i, j]`` (nats).

Every function takes patterns shaped ``(..., query, key)`` (any leading axes, e.g.
``(layer, head)``) and returns the leading axes.
"""

from __future__ import annotations

import numpy as np


def previous_token_score(pattern: np.ndarray) -> np.ndarray:
    n = pattern.shape[-1]
    if n < 2:
        return np.full(pattern.shape[:-2], np.nan)
    return np.diagonal(pattern, offset=-1, axis1=-2, axis2=-1).mean(-1)


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


def repeated_induction_score(pattern: np.ndarray, half_length: int) -> np.ndarray:
    """The GUIDE's induction score on ``BOS + r + r``: mean over second-half queries of
    ``A[i, i - T + 1]`` with ``T = half_length`` (pattern has ``2T + 1`` positions)."""
    n = pattern.shape[-1]
    if n != 2 * half_length + 1:
        raise ValueError(f"pattern has {n} positions; BOS + 2 x {half_length} needs {2 * half_length + 1}")
    return np.diagonal(pattern, offset=-(half_length - 1), axis1=-2, axis2=-1)[..., -half_length:].mean(-1)


def attention_entropy(pattern: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(pattern > 0, -pattern * np.log(pattern), 0.0)
    return terms.sum(-1).mean(-1)
