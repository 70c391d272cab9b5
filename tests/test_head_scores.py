"""Head scores on hand-built patterns with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from interp_core import head_scores as hs


def _previous_token_pattern(n: int) -> np.ndarray:
    a = np.zeros((n, n))
    a[0, 0] = 1
    for i in range(1, n):
        a[i, i - 1] = 1
    return a


def test_previous_token_head_scores_one():
    a = _previous_token_pattern(6)
    assert hs.previous_token_score(a) == pytest.approx(1.0)
    assert hs.first_token_score(a) == pytest.approx(2 / 6)
    assert hs.attention_entropy(a) == pytest.approx(0.0)


def test_uniform_causal_pattern():
    n = 5
    a = np.tril(np.ones((n, n)))
    a /= a.sum(-1, keepdims=True)
    assert hs.first_token_score(a) == pytest.approx(np.mean([1 / (i + 1) for i in range(n)]))
    assert hs.attention_entropy(a) == pytest.approx(np.mean([np.log(i + 1) for i in range(n)]))


def test_duplicate_and_induction_on_repeated_sequence():
    T = 4
    tokens = np.array([0, 10, 11, 12, 13, 10, 11, 12, 13])  # BOS + r + r
    n = len(tokens)
    induction = np.zeros((n, n))
    duplicate = np.zeros((n, n))
    for i in range(n):
        induction[i, i - T + 1 if i > T else 0] = 1
        duplicate[i, i - T if i > T else 0] = 1
    assert hs.repeated_induction_score(induction, T) == pytest.approx(1.0)
    assert hs.induction_score(induction, tokens) == pytest.approx(1.0)
    assert hs.duplicate_token_score(duplicate, tokens) == pytest.approx(1.0)
    assert hs.induction_score(duplicate, tokens) == pytest.approx(0.0)
    assert hs.repeated_induction_score(duplicate, T) == pytest.approx(0.0)


def test_leading_axes_and_no_repeats():
    a = np.stack([_previous_token_pattern(4)] * 3)[None]  # (1, 3, q, k)
    assert hs.previous_token_score(a).shape == (1, 3)
    assert np.isnan(hs.duplicate_token_score(a, np.arange(4))).all()
