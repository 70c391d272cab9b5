"""Composition between attention heads of different layers, read from the weights.

A head in an earlier layer writes ``x W_OV^1`` into the residual stream; a later head can read
that output three ways (Elhage et al. 2021): through its queries (**Q-composition**), its keys
(**K-composition**: how an induction head finds "the token after the previous copy", reading
a previous-token head's output at the key side) or its values (**V-composition**: virtual
heads). The composition score measures how much of the earlier head's output space the later
head's reading matrix picks up:

    score = ||left @ right||_F / (||left||_F ||right||_F)

with ``left = W_OV`` of the earlier head and ``right = W_QK`` (Q), ``W_QK^T`` (K) or ``W_OV``
(V) of the later one (row-vector convention, as TransformerLens). Two random rank-``d_head``
maps of ``d_model`` already score well above 0, so every score is shown next to the mean score
of random Gaussian matrices of the same factored shapes (seeded, averaged).

All matrices are ``d_model x d_model`` of rank ``d_head`` and stay factored: with
``left = a1 a2`` and ``right = b1 b2`` (``a1, b1 (d_model, d_head)``, ``a2, b2 (d_head, d_model)``),
``||a1 a2 b1 b2||_F^2 = tr(C (b2 b2^T) C^T (a1^T a1))`` with ``C = a2 b1``: only
``d_head x d_head`` products. Norm folding as in :mod:`interp_core.techniques.circuits`. With rotary
positions, ``W_QK`` ignores the rotation the model applies between the two reads.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from interp_core.core.errors import OutOfRangeError
from interp_core.core.head_id import head_label
from interp_core.core.model import LoadedModel
from interp_core.techniques.circuits import check_head, layer_heads, ov_weights
from interp_core.techniques.contract import Progress, Request
from interp_core.techniques.head_scores import head_table

KINDS = ("q", "k", "v")


def factored_frobenius(a1: torch.Tensor, a2: torch.Tensor, b1: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    """``||a1 @ a2 @ b1 @ b2||_F`` without forming the ``d_model x d_model`` product.

    Args:
        a1: ``(..., d, r)``; a2: ``(..., r, d)``; b1: ``(..., d, s)``; b2: ``(..., s, d)`` (broadcast).

    Returns:
        ``(...)`` float64 norms.
    """
    a1, a2, b1, b2 = (t.double() for t in (a1, a2, b1, b2))
    inner = a2 @ b1  # (..., r, s)
    gram_a = a1.transpose(-1, -2) @ a1  # (..., r, r)
    gram_b = b2 @ b2.transpose(-1, -2)  # (..., s, s)
    squared = (inner @ gram_b @ inner.transpose(-1, -2) * gram_a).sum((-1, -2))  # tr(X Y) = sum(X * Y^T), Y symmetric
    return squared.clamp_min(0).sqrt()


def factored_norm(a1: torch.Tensor, a2: torch.Tensor) -> torch.Tensor:
    """``||a1 @ a2||_F`` for ``a1 (..., d, r)``, ``a2 (..., r, d)``; ``(...)`` float64."""
    a1, a2 = a1.double(), a2.double()
    squared = ((a2 @ a2.transpose(-1, -2)) * (a1.transpose(-1, -2) @ a1)).sum((-1, -2))
    return squared.clamp_min(0).sqrt()


def composition_score(left: tuple[torch.Tensor, torch.Tensor], right: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``||L R||_F / (||L||_F ||R||_F)`` for factored ``L = left[0] @ left[1]``, ``R = right[0] @ right[1]``."""
    top = factored_frobenius(left[0], left[1], right[0], right[1])
    return top / (factored_norm(*left) * factored_norm(*right))


class RandomBaseline(NamedTuple):
    """Composition score of random Gaussian matrices: ``mean`` and (sample) ``std`` over the draws."""

    mean: float
    std: float


@functools.lru_cache(maxsize=32)
def random_baseline(d_model: int, d_head: int, *, n_samples: int = 64, seed: int = 0) -> RandomBaseline:
    """Composition score of ``n_samples`` random Gaussian ``(d_model, d_head) @ (d_head, d_model)`` pairs.

    Q-, K- and V-composition pair matrices of the same factored shapes, so one baseline serves all
    three (and the Induction page's K-composition). Pages that show one number take ``.mean``.
    """
    generator = torch.Generator().manual_seed(seed)
    a1, b1 = (torch.randn(n_samples, d_model, d_head, generator=generator, dtype=torch.float64) for _ in range(2))
    a2, b2 = (torch.randn(n_samples, d_head, d_model, generator=generator, dtype=torch.float64) for _ in range(2))
    scores = composition_score((a1, a2), (b1, b2))  # (n_samples,)
    return RandomBaseline(float(scores.mean()), float(scores.std()) if n_samples > 1 else 0.0)


def _prepare_right(b1: torch.Tensor, b2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(b1, b2 b2^T, ||b1 b2||_F)`` for a right map ``b1 (d, s) @ b2 (s, d)``, computed once."""
    gram_b = b2 @ b2.T  # (s, s)
    return b1, gram_b, ((b1.T @ b1) * gram_b).sum().clamp_min(0).sqrt()


def _scores_into(left: tuple[torch.Tensor, torch.Tensor], rights: dict[str, tuple]) -> dict[str, np.ndarray]:
    """Composition of every left map (batched ``a1 (n, d, r)``, ``a2 (n, r, d)``) with each
    prepared right map, sharing the left side's Gram matrix and norm across kinds (the formula of
    :func:`factored_frobenius`; float32 is plenty for a ratio of norms)."""
    a1, a2 = left
    gram_a = a1.transpose(-1, -2) @ a1  # (n, r, r)
    norm_a = ((a2 @ a2.transpose(-1, -2)) * gram_a).sum((-1, -2)).clamp_min(0).sqrt()
    out = {}
    for kind, (b1, gram_b, norm_b) in rights.items():
        inner = a2 @ b1  # (n, r, s)
        squared = (inner @ gram_b @ inner.transpose(-1, -2) * gram_a).sum((-1, -2))
        out[kind] = (squared.clamp_min(0).sqrt() / (norm_a * norm_b)).double().cpu().numpy()
    return out


_PAIR_COLUMNS = ("from", "to", "kind", "score", "baseline", "excess", "ratio")


@dataclass(frozen=True)
class CompositionScores:
    """Q-, K- and V-composition from every head of layers ``0 .. layer-1`` into ``(layer, head)``.

    Attributes:
        q, k, v: ``(layer, n_heads)``: row ``l``, column ``h`` = score of head ``l.h`` into the
            chosen head (empty ``(0, n_heads)`` for layer 0).
        baseline: mean score of random matrices of the same shapes, per kind (one number: the shapes are
            the same); baseline_std: the spread of those random scores.
        labels: ``(layer, n_heads)`` names ``"L{l}H{h}"`` of the earlier heads.
    """

    layer: int
    head: int
    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    baseline: dict[str, float]
    labels: np.ndarray
    fold_norms: bool
    seconds: float
    n_random: int = field(default=64)
    baseline_std: float = field(default=float("nan"))

    def __post_init__(self) -> None:
        for kind in KINDS:
            if getattr(self, kind).shape != self.labels.shape:
                raise ValueError(f"{kind} scores {getattr(self, kind).shape} do not match labels {self.labels.shape}")

    def top_pairs(self, n: int = 10) -> list[dict]:
        """The ``n`` strongest (earlier head, kind) pairs by score over baseline."""
        rows = []
        for kind in KINDS:
            scores = getattr(self, kind)
            for (layer, head), score in np.ndenumerate(scores):
                base = self.baseline[kind]
                rows.append({
                    "from": str(self.labels[layer, head]), "to": head_label(self.layer, self.head), "kind": kind.upper(),
                    "score": float(score), "baseline": base, "excess": float(score) - base, "ratio": float(score) / base,
                })
        return sorted(rows, key=lambda r: -r["excess"])[:n]

    def tables(self) -> dict[str, pd.DataFrame]:
        """``composition_q`` / ``_k`` / ``_v``: one row per earlier head (``label``, ``score`` and the score
        over the random baseline); ``composition_top_pairs``: the strongest 12 pairs (:meth:`top_pairs`)."""
        out = {}
        for kind in KINDS:
            frame = head_table(getattr(self, kind), "score")
            frame["times_random"] = frame["score"] / self.baseline[kind]
            out[f"composition_{kind}"] = frame
        out["composition_top_pairs"] = pd.DataFrame(self.top_pairs(12), columns=list(_PAIR_COLUMNS))
        return out

    def to_json(self) -> dict:
        return {"q": self.q, "k": self.k, "v": self.v, "baseline": self.baseline, "labels": self.labels.tolist(), "seconds": self.seconds}


def composition_scores(
    model: LoadedModel,
    layer: int,
    head: int,
    *,
    fold_norms: bool = True,
    n_random: int = 64,
    seed: int = 0,
    on_progress: Progress | None = None,
) -> CompositionScores:
    """Q/K/V composition scores of every earlier head into head ``head`` of ``layer``."""
    check_head(model, layer, head)
    if not 1 <= n_random <= 10_000:
        raise OutOfRangeError(f"n_random must be between 1 and 10000, got {n_random}.")
    started = time.perf_counter()
    n_heads = model.info.n_heads
    scores = {kind: np.zeros((layer, n_heads)) for kind in KINDS}
    with torch.no_grad():
        late = layer_heads(model, layer, fold_norms=fold_norms)
        W_Q, W_K, W_V, W_O = late.W_Q[head], late.W_K[head], late.W_V[head], late.W_O[head]
        # right = b1 @ b2: W_QK = W_Q W_K^T, W_QK^T = W_K W_Q^T, W_OV = W_V W_O
        rights = {kind: _prepare_right(*pair) for kind, pair in {"q": (W_Q, W_K.T), "k": (W_K, W_Q.T), "v": (W_V, W_O)}.items()}
        for earlier in range(layer):
            W_V_early, W_O_early = ov_weights(model, earlier, fold_norms=fold_norms)
            # every head of the earlier layer at once: left = W_V W_O, (n_heads, d_model, d_head) @ (n_heads, d_head, d_model)
            for kind, row in _scores_into((W_V_early, W_O_early), rights).items():
                scores[kind][earlier] = row
            if on_progress:
                on_progress((earlier + 1) / (layer + 1), f"layer {earlier + 1}/{layer}")
        info = model.info
        random = random_baseline(info.d_model, info.d_head, n_samples=n_random, seed=seed)
        baseline = {kind: random.mean for kind in KINDS}
    if on_progress:
        on_progress(1.0, "random baseline")
    labels = np.array([[head_label(i, h) for h in range(n_heads)] for i in range(layer)], dtype=object).reshape(layer, n_heads)
    return CompositionScores(
        layer, head, scores["q"], scores["k"], scores["v"], baseline, labels, fold_norms, time.perf_counter() - started, n_random,
        baseline_std=random.std,
    )


@dataclass(frozen=True)
class CompositionRequest(Request):
    """Q-, K- and V-composition of every earlier head into head ``(layer, head)``, with the random baseline.

    The one request both the Circuits page (all three kinds) and the Induction page (the K column)
    run, so the two pages share one cache entry and can never show different numbers.
    """

    layer: int
    head: int
    fold_norms: bool = True
    n_random: int = 64
    seed: int = 0
    label = "Reading composition scores from the weights"

    def __post_init__(self) -> None:
        if isinstance(self.n_random, bool) or not isinstance(self.n_random, (int, np.integer)) or not 1 <= self.n_random <= 10_000:
            raise OutOfRangeError(f"n_random must be between 1 and 10000, got {self.n_random}.")

    def check(self, model: LoadedModel) -> None:
        check_head(model, self.layer, self.head)

    def compute(self, model: LoadedModel, on_progress: Progress) -> CompositionScores:
        return composition_scores(model, self.layer, self.head, fold_norms=self.fold_norms, n_random=self.n_random,
                                  seed=self.seed, on_progress=on_progress)
