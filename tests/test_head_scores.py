"""Head scores on hand-built patterns with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from interp_core.techniques import head_scores as hs


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


class TestOneInductionDefinition:
    """The induction stripe is defined once (head_scores) for the engine, the Induction page and the toys."""

    def test_stripe_mask_is_the_induction_mask_of_a_repeated_sequence(self):
        """On BOS + r + r the stripe key = query - T + 1 over the second copy is exactly induction_mask
        (with more copies induction_mask also marks the copies before the previous one)."""
        T = 4
        tokens = np.array([0, *range(10, 10 + T), *range(10, 10 + T)])  # BOS + r + r
        assert (hs.induction_stripe_mask(len(tokens), T) == hs.induction_mask(tokens)).all()

    def test_repeated_score_on_three_copies(self):
        """An ideal head over three copies scores 1, a previous-token head 0; malformed lengths raise."""
        T, n = 4, 13
        ideal, prev = np.zeros((n, n)), np.zeros((n, n))
        for i in range(n):
            ideal[i, hs.induction_key(i, T) if i > T else 0] = 1
            prev[i, max(i - 1, 0)] = 1
        assert hs.repeated_induction_score(ideal, T) == pytest.approx(1.0)
        assert hs.repeated_induction_score(prev, T) == pytest.approx(0.0)
        with pytest.raises(ValueError, match="1 \\+ n"):
            hs.repeated_induction_score(np.zeros((12, 12)), T)  # 12 - 1 is not a multiple of 4
        with pytest.raises(ValueError):
            hs.repeated_induction_score(np.zeros((5, 5)), T)  # one copy only

    def test_batch_helpers_agree_with_the_per_pattern_scores(self):
        """mean_attention_at on a stripe and previous_token_attention averaged equal the per-pattern scores."""
        rng = np.random.default_rng(0)
        T, n_pos = 3, 7
        patterns = rng.random((5, 2, n_pos, n_pos))  # (batch, heads, q, k)
        queries = np.tile(np.arange(T + 1, n_pos), 5)
        rows = np.repeat(np.arange(5), n_pos - T - 1)
        stripe = hs.mean_attention_at(patterns, rows, queries, hs.induction_key(queries, T))
        np.testing.assert_allclose(stripe, hs.repeated_induction_score(patterns, T).mean(0))
        np.testing.assert_allclose(hs.previous_token_attention(patterns).mean((0, 2)), hs.previous_token_score(patterns).mean(0))
