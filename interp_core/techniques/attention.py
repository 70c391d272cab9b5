"""Attention patterns: what each head looks at, which heads have a job, and a check from the weights.

Context. Head ``h`` of layer ``L`` builds, for every query position ``i``, a probability
distribution ``A[i, j]`` over the key positions ``j <= i`` (the *pattern*). It is
``softmax_j(scale * q_i . k_j)`` with ``q = x W_Q + b_Q`` and ``k = x W_K + b_K`` read from the
block's normalised input ``x``, rotated by position first under rotary embeddings, and with keys
after the query masked out. The pattern says where the head *reads* from; it does not say what
it moves or whether that matters for the output (patching and ablation answer that).

Intuition. Many heads have a recognisable job that shows in the pattern alone: a stripe just
below the diagonal is a previous-token head; a bright first column is a "sink" that parks
attention on the first token; attending to the token after an earlier copy of the current
token is the induction signature. :func:`classify_heads` scores every head of every layer for
these jobs (definitions in :mod:`interp_core.techniques.head_scores`) from ONE forward pass.

Three entry points, all from a single forward:

- :func:`attention_patterns`: every pattern, ``(layer, head, query, key)``;
- :func:`classify_heads`: previous-token, first-token, duplicate-token, induction and entropy
  scores, ``(layer, head)`` each; :func:`token_attention` is the token-centric view;
- :func:`verify_patterns`: recompute every head's pattern from the weights (q, k, rotary,
  grouped-query KV sharing, causal mask, ``1/sqrt(d_head)`` scaling, softmax) and report the
  largest absolute difference from the pattern the model produced ("zero difference" check).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import torch

from interp_core.core.errors import OutOfRangeError, WorkbenchError, check_index
from interp_core.core.model import LoadedModel
from interp_core.core.names import hook_name
from interp_core.core.recent_runs import recorded_run
from interp_core.techniques import head_scores as hs
from interp_core.techniques.contract import Progress, Request
from interp_core.techniques.frames import grid_frame

SCORE_NAMES: tuple[str, ...] = ("previous_token", "first_token", "duplicate_token", "induction", "entropy")
"""Score keys, also the CLI's JSON keys. Entropy is in nats; the others are attention weights."""

SCORE_LABELS: dict[str, str] = {
    "previous_token": "previous-token",
    "first_token": "first-token (sink)",
    "duplicate_token": "duplicate-token",
    "induction": "induction",
    "entropy": "entropy (nats)",
}

# float32 softmax of the same logits computed in a different order: differences of a few ulps.
VERIFY_TOLERANCE = 1e-5


# --- patterns -----------------------------------------------------------------------------
@dataclass(frozen=True)
class AttentionPatterns:
    """Every attention pattern of one prompt.

    Attributes:
        tokens: the prompt's tokens as text, ``(pos,)``.
        token_ids: their ids, ``(pos,)``.
        patterns: ``(layer, head, query, key)`` float32; rows sum to 1, zero above the diagonal.
    """

    tokens: tuple[str, ...]
    token_ids: np.ndarray
    patterns: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.tokens)
        assert self.patterns.ndim == 4 and self.patterns.shape[2:] == (n, n), self.patterns.shape
        assert self.token_ids.shape == (n,)

    @property
    def n_layers(self) -> int:
        return int(self.patterns.shape[0])

    @property
    def n_heads(self) -> int:
        return int(self.patterns.shape[1])

    def head(self, layer: int, head: int) -> np.ndarray:
        """One head's pattern ``(query, key)``; OutOfRangeError for a bad layer or head."""
        check_index("layer", layer, self.n_layers)
        check_index("head", head, self.n_heads)
        return self.patterns[layer, head]

    @property
    def token_labels(self) -> list[str]:
        """``"3 ' cat'"`` (position, then the token's repr) per position: the ``query``/``key`` labels of the tables below."""
        return [f"{i} {t!r}" for i, t in enumerate(self.tokens)]

    def head_table(self, layer: int, head: int) -> pd.DataFrame:
        """One head's pattern as one row per (query, key) cell, the masked ones (key after query, weight 0) included:
        ``query_pos``, ``key_pos``, ``query``, ``key`` (:attr:`token_labels`), ``weight``."""
        pattern, labels = self.head(layer, head), self.token_labels
        q, k = np.meshgrid(np.arange(len(labels)), np.arange(len(labels)), indexing="ij")
        return pd.DataFrame({"query_pos": q.ravel(), "key_pos": k.ravel(), "query": [labels[i] for i in q.ravel()],
                             "key": [labels[j] for j in k.ravel()], "weight": pattern.ravel().astype(float)})

    def layer_table(self, layer: int) -> pd.DataFrame:
        """Every head of ``layer`` over the causal half (key <= query; the rest is zero): ``head``, ``query_pos``,
        ``key_pos``, ``query``, ``key`` (:attr:`token_labels`), ``weight``, head by head."""
        check_index("layer", layer, self.n_layers)
        labels = self.token_labels
        q, k = np.tril_indices(len(labels))
        n_heads = self.n_heads
        return pd.DataFrame({"head": np.repeat(np.arange(n_heads), len(q)), "query_pos": np.tile(q, n_heads),
                             "key_pos": np.tile(k, n_heads), "query": [labels[i] for i in q] * n_heads,
                             "key": [labels[j] for j in k] * n_heads, "weight": self.patterns[layer][:, q, k].ravel().astype(float)})

    def token_table(self, query: int, keys: Sequence[int]) -> pd.DataFrame:
        """:func:`token_attention` of ``query`` to ``keys`` as one row per head: ``layer``, ``head``, ``attention``."""
        values = token_attention(self, query, list(keys))
        return grid_frame(values, list(range(self.n_layers)), list(range(self.n_heads)), "layer", "head", "attention")

    def score_table(self) -> pd.DataFrame:
        """Every head's job scores (:attr:`scores`), one row per head: their ``head_scores`` table."""
        return self.scores.tables()["head_scores"]

    @cached_property
    def scores(self) -> HeadScores:
        """Every head's job scores, computed from these patterns once (no forward pass) and kept with them."""
        return scores_from_patterns(self)

    def to_json(self) -> dict:
        return {"tokens": list(self.tokens), "token_ids": self.token_ids, "patterns": self.patterns}

    def tables(self) -> dict[str, pd.DataFrame]:
        """``patterns``: one row per layer, head, query and key position at or before the query, with the weight."""
        return {"patterns": pattern_frame(self.tokens, self.patterns)}


def pattern_frame(tokens: Sequence[str], patterns: np.ndarray) -> pd.DataFrame:
    """``(layer, head, query, key)`` patterns as a long frame over the causal half (key <= query)."""
    n_layers, n_heads, n, _ = patterns.shape
    q, k = np.tril_indices(n)
    layer, head, cell = np.meshgrid(np.arange(n_layers), np.arange(n_heads), np.arange(len(q)), indexing="ij")
    return pd.DataFrame({
        "layer": layer.ravel(), "head": head.ravel(), "query_pos": q[cell.ravel()], "key_pos": k[cell.ravel()],
        "query": [tokens[i] for i in q[cell.ravel()]], "key": [tokens[j] for j in k[cell.ravel()]],
        "weight": patterns[:, :, q, k].ravel().astype(float),
    })


def _check_max_tokens(max_tokens: object) -> None:
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, (int, np.integer)) or max_tokens < 1):
        raise OutOfRangeError(f"max_tokens (the longest prompt, in tokens) must be 1 or more, or None for no limit; got {max_tokens!r}.")


@dataclass(frozen=True)
class PatternsRequest(Request):
    """Every head's pattern on ``prompt`` (one forward pass); ``max_tokens`` caps the prompt (None: the model's context).

    The result (:class:`AttentionPatterns`) also carries the head job scores (``.scores``)."""

    prompt: str
    max_tokens: int | None = None
    label = "Running the model once to record every head's pattern"

    def __post_init__(self) -> None:
        _check_max_tokens(self.max_tokens)

    def compute(self, model: LoadedModel, on_progress: Progress) -> AttentionPatterns:
        return attention_patterns(model, self.prompt, max_tokens=self.max_tokens, on_progress=on_progress)


@dataclass(frozen=True)
class HeadPattern:
    """One head's pattern on a prompt (the ``pattern`` CLI's result), with the weight check if asked for.

    Attributes:
        tokens: the prompt's tokens, ``(pos,)``.
        pattern: ``(query, key)``.
        verification: :meth:`PatternCheck.to_json` for this head, or None.
    """

    tokens: tuple[str, ...]
    layer: int
    head: int
    pattern: np.ndarray
    verification: dict | None = None

    def to_json(self) -> dict:
        found = {"tokens": list(self.tokens), "layer": self.layer, "head": self.head, "pattern": self.pattern}
        if self.verification is not None:
            found["verification"] = self.verification
        return found

    def tables(self) -> dict[str, pd.DataFrame]:
        """``pattern``: query and key positions and tokens with the weight, over the causal half."""
        frame = pattern_frame(self.tokens, self.pattern[None, None]).drop(columns=["layer", "head"])
        return {"pattern": frame}


@dataclass(frozen=True)
class HeadPatternRequest(Request):
    """One head's pattern (only the blocks up to ``layer`` run); ``verify`` also recomputes it from the weights."""

    prompt: str
    layer: int
    head: int
    verify: bool = False
    max_tokens: int | None = None
    label = "Recording one head's pattern"

    def __post_init__(self) -> None:
        _check_max_tokens(self.max_tokens)

    def check(self, model: LoadedModel) -> None:
        _layer_and_head(model, self.layer, self.head)

    def compute(self, model: LoadedModel, on_progress: Progress) -> HeadPattern:
        found = attention_patterns(model, self.prompt, layers=[self.layer], max_tokens=self.max_tokens)
        check = verify_patterns(model, self.prompt, max_tokens=self.max_tokens).to_json(self.layer, self.head) if self.verify else None
        return HeadPattern(found.tokens, self.layer, self.head, found.patterns[0, self.head], check)


def _layer_and_head(model: LoadedModel, layer: int, head: int) -> None:
    check_index("layer", layer, model.info.n_layers)
    check_index("head", head, model.info.n_heads)


def attention_patterns(
    model: LoadedModel, prompt: str, *, layers: Sequence[int] | None = None, max_tokens: int | None = None,
    on_progress: Progress | None = None,
) -> AttentionPatterns:
    """Run ``prompt`` once and record the pattern of every head of ``layers`` (default: all).

    Only the blocks up to the last requested layer run. Returns patterns shaped
    ``(len(layers), head, query, key)``.
    """
    every = layers is None
    layers = list(range(model.info.n_layers)) if layers is None else [check_index("layer", layer, model.info.n_layers) for layer in layers]
    ids = model.tokenize(prompt, max_tokens=max_tokens)
    if on_progress:
        on_progress(0.0, "one forward pass")
    names = [hook_name("attn.hook_pattern", layer) for layer in layers]
    if every:  # the run the weight check of the same prompt reads too (the Attention page asks for both)
        _, cache = _shared_run(model, ids)
    else:
        _, cache = model.run_with_cache(ids, names, stop_at_layer=max(layers) + 1)
    patterns = np.stack([cache[name][0].float().cpu().numpy() for name in names])
    if on_progress:
        on_progress(1.0, "done")
    return AttentionPatterns(tuple(model.token_strings(ids[0])), ids[0].cpu().numpy(), patterns)


def head_pattern(model: LoadedModel, prompt: str, layer: int, head: int) -> dict:
    """``{"tokens", "pattern", "layer", "head"}`` for one head (the ``pattern`` CLI's JSON)."""
    request = HeadPatternRequest(prompt, layer, head)
    request.check(model)
    return request.compute(model, lambda *_: None).to_json()


# --- head classification ------------------------------------------------------------------
@dataclass(frozen=True)
class HeadScores:
    """Job scores of every head on one prompt.

    Attributes:
        tokens: the prompt's tokens, ``(pos,)``.
        scores: ``{name: (layer, head)}`` for every name in :data:`SCORE_NAMES`; NaN where a
            score is undefined on this prompt (duplicate/induction when no token repeats,
            previous-token on one token).
    """

    tokens: tuple[str, ...]
    scores: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        assert set(self.scores) == set(SCORE_NAMES), sorted(self.scores)
        shapes = {v.shape for v in self.scores.values()}
        assert len(shapes) == 1 and len(next(iter(shapes))) == 2, shapes

    @property
    def n_layers(self) -> int:
        return int(self.scores["entropy"].shape[0])

    @property
    def n_heads(self) -> int:
        return int(self.scores["entropy"].shape[1])

    def ranked(self, name: str, top: int = 10) -> list[tuple[int, int, float]]:
        """The ``top`` heads for score ``name`` as ``(layer, head, value)``, best first.

        Best is highest, except entropy where the most focused (lowest) heads come first.
        NaN scores are left out.
        """
        if name not in SCORE_NAMES:
            raise WorkbenchError(f"score must be one of {', '.join(SCORE_NAMES)}, got {name!r}.")
        values = self.scores[name]
        keyed = values if name == "entropy" else -values
        order = np.argsort(keyed, axis=None, kind="stable")  # NaN sorts last
        cells = [np.unravel_index(i, values.shape) for i in order]
        return [(int(layer), int(h), float(values[layer, h])) for layer, h in cells if not np.isnan(values[layer, h])][:top]

    def to_json(self) -> dict:
        return {"layers": self.n_layers, "heads": self.n_heads, "tokens": list(self.tokens), **self.scores}

    def tables(self) -> dict[str, pd.DataFrame]:
        """``head_scores``: one row per layer and head, a column per score (NaN where undefined)."""
        layer, head = np.meshgrid(np.arange(self.n_layers), np.arange(self.n_heads), indexing="ij")
        frame = pd.DataFrame({"layer": layer.ravel(), "head": head.ravel()})
        for name in SCORE_NAMES:
            frame[name] = self.scores[name].ravel()
        return {"head_scores": frame}


@dataclass(frozen=True)
class HeadScoresRequest(Request):
    """Every head's job scores on ``prompt`` (one forward pass)."""

    prompt: str
    max_tokens: int | None = None
    label = "Scoring every head"

    def __post_init__(self) -> None:
        _check_max_tokens(self.max_tokens)

    def compute(self, model: LoadedModel, on_progress: Progress) -> HeadScores:
        return classify_heads(model, self.prompt, max_tokens=self.max_tokens, on_progress=on_progress)


def scores_from_patterns(patterns: AttentionPatterns) -> HeadScores:
    """Score every head of ``patterns`` (no forward pass: pure numpy on the patterns)."""
    p = patterns.patterns.astype(np.float64)
    ids = patterns.token_ids
    scores = {
        "previous_token": hs.previous_token_score(p),
        "first_token": hs.first_token_score(p),
        "duplicate_token": hs.duplicate_token_score(p, ids),
        "induction": hs.induction_score(p, ids),
        "entropy": hs.attention_entropy(p),
    }
    return HeadScores(patterns.tokens, scores)


def classify_heads(model: LoadedModel, prompt: str, *, max_tokens: int | None = None, on_progress: Progress | None = None) -> HeadScores:
    """Every head's job scores on ``prompt``, from one forward pass."""
    return scores_from_patterns(attention_patterns(model, prompt, max_tokens=max_tokens, on_progress=on_progress))


def token_attention(patterns: AttentionPatterns, query: int, keys: Sequence[int]) -> np.ndarray:
    """How much query position ``query`` attends to the positions ``keys``, in every head.

    Returns ``(layer, head)``: the sum over ``keys`` of ``A[query, key]`` (1 = all of the
    query's attention goes to those keys).

    Raises:
        OutOfRangeError: a position outside the prompt, no key given, or a key after the query
            (a causal model cannot attend forwards).
    """
    n = len(patterns.tokens)
    check_index("query position", query, n)
    if not keys:
        raise OutOfRangeError("Pick at least one key token to measure attention to.")
    for key in keys:
        check_index("key position", key, n)
        if key > query:
            raise OutOfRangeError(
                f"Key token {key} ({patterns.tokens[key]!r}) comes after the query token {query} "
                f"({patterns.tokens[query]!r}); a causal model only attends backwards. Pick an earlier key."
            )
    return patterns.patterns[:, :, query, list(keys)].sum(-1)


# --- verification from the weights --------------------------------------------------------
def attention_scale(model: LoadedModel, layer: int) -> float:
    """The factor the attention logits ``q . k`` are multiplied by in ``layer``: ``1/sqrt(d_head)``
    unless the family's config says otherwise (the adapter knows; see ``Adapter.attention_scale``)."""
    return model.adapter.attention_scale(layer)


def block_norm(model: LoadedModel, layer: int, resid: torch.Tensor) -> torch.Tensor:
    """The block's attention-input norm (``ln1``) from the canonical weights, ``(..., d_model)``."""
    return model.adapter.apply_block_norm(resid, model.weights.blocks[layer])


def pattern_from_qk(model: LoadedModel, layer: int, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``softmax(scale * rot(q) . rot(k))`` with the causal mask.

    Args:
        q: ``(pos, head, d_head)`` queries before rotary.
        k: ``(pos, head, d_head)`` keys before rotary, already one per QUERY head (GQA expanded).

    Returns:
        ``(head, query, key)`` patterns.
    """
    n = q.shape[0]
    positions = torch.arange(n, device=q.device)
    q_rot, k_rot = model.adapter.rotary(layer, positions, q[None], k[None])  # identity for learned positions
    logits = torch.einsum("qhd,khd->hqk", q_rot[0], k_rot[0]) * attention_scale(model, layer)
    future = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)  # key after query
    return logits.masked_fill(future, float("-inf")).softmax(-1)


@dataclass(frozen=True)
class PatternCheck:
    """Patterns recomputed two ways beside the ones the model produced.

    Attributes:
        tokens: ``(pos,)`` token strings.
        captured: ``(layer, head, query, key)`` from ``attn.hook_pattern``.
        from_weights: recomputed from ``resid_pre`` with the canonical weights (norm, W_Q, W_K).
        diff_weights: ``(layer, head)`` max |from_weights - captured|.
        diff_hooks: ``(layer, head)`` max |pattern from hook_q / hook_k - captured|.
        scales: ``(layer,)`` the logit scale used in each layer.
    """

    tokens: tuple[str, ...]
    captured: np.ndarray
    from_weights: np.ndarray
    diff_weights: np.ndarray
    diff_hooks: np.ndarray
    scales: np.ndarray

    def __post_init__(self) -> None:
        assert self.captured.shape == self.from_weights.shape
        assert self.diff_weights.shape == self.diff_hooks.shape == self.captured.shape[:2]

    @property
    def max_diff(self) -> float:
        """The largest difference over every head and both recomputations."""
        return float(max(self.diff_weights.max(), self.diff_hooks.max()))

    def passed(self, tolerance: float = VERIFY_TOLERANCE) -> bool:
        return self.max_diff <= tolerance

    def to_json(self, layer: int | None = None, head: int | None = None) -> dict:
        """One head's differences and its layer's scale; with no head given, every head's (``(layer, head)`` lists)."""
        if layer is None or head is None:
            return {"tokens": list(self.tokens), "max_abs_diff": self.max_diff, "max_abs_diff_from_weights": self.diff_weights,
                    "max_abs_diff_from_hooks": self.diff_hooks, "scale": self.scales}
        return {
            "max_abs_diff_from_weights": float(self.diff_weights[layer, head]),
            "max_abs_diff_from_hooks": float(self.diff_hooks[layer, head]),
            "scale": float(self.scales[layer]),
        }

    def tables(self) -> dict[str, pd.DataFrame]:
        """``pattern_check``: one row per layer and head with both differences and the layer's scale."""
        layer, head = np.meshgrid(np.arange(self.diff_weights.shape[0]), np.arange(self.diff_weights.shape[1]), indexing="ij")
        return {"pattern_check": pd.DataFrame({
            "layer": layer.ravel(), "head": head.ravel(), "max_abs_diff_from_weights": self.diff_weights.ravel().astype(float),
            "max_abs_diff_from_hooks": self.diff_hooks.ravel().astype(float), "scale": self.scales[layer.ravel()].astype(float),
        })}


@dataclass(frozen=True)
class VerifyRequest(Request):
    """Recompute every head's pattern from the weights and from hook_q/hook_k, beside the model's own."""

    prompt: str
    max_tokens: int | None = None
    label = "Recomputing every pattern from the weights"

    def __post_init__(self) -> None:
        _check_max_tokens(self.max_tokens)

    def compute(self, model: LoadedModel, on_progress: Progress) -> PatternCheck:
        return verify_patterns(model, self.prompt, max_tokens=self.max_tokens, on_progress=on_progress)


def _shared_run(model: LoadedModel, ids: torch.Tensor) -> tuple[None, dict[str, torch.Tensor]]:
    """One run of every block (no unembedding) recording what :func:`attention_patterns` and
    :func:`verify_patterns` read, shared between them (:func:`recorded_run`): read-only."""
    n_layers = model.info.n_layers
    names = [hook_name(p, layer) for layer in range(n_layers) for p in ("hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_pattern")]
    return recorded_run(model, ids, names, stop_at_layer=n_layers)  # type: ignore[return-value]


def _recompute_layer(model: LoadedModel, layer: int, cache: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(from_weights, from_hooks)`` patterns of every head of ``layer``, each ``(head, q, k)``."""
    w = model.weights.blocks[layer]
    x = block_norm(model, layer, cache[hook_name("hook_resid_pre", layer)][0])  # (pos, d_model)
    q = torch.einsum("pm,hmd->phd", x, w.W_Q.float()) + w.b_Q.float()
    k = torch.einsum("pm,hmd->phd", x, w.W_K.float()) + w.b_K.float()  # W_K already expanded per query head
    kv_of = [model.adapter.kv_head_of(h) for h in range(model.info.n_heads)]
    q_hook = cache[hook_name("attn.hook_q", layer)][0].float()
    k_hook = cache[hook_name("attn.hook_k", layer)][0][:, kv_of].float()  # (pos, kv_head) -> (pos, head)
    return pattern_from_qk(model, layer, q, k), pattern_from_qk(model, layer, q_hook, k_hook)


def verify_patterns(model: LoadedModel, prompt: str, *, max_tokens: int | None = None, on_progress: Progress | None = None) -> PatternCheck:
    """Recompute every head's pattern and compare with the model's own (one forward pass).

    Two recomputations: from the weights (block norm of ``resid_pre``, ``W_Q``/``W_K`` and
    biases, rotary, GQA sharing, scale, causal mask, softmax) and from the captured
    ``hook_q``/``hook_k`` (same steps after the projection). Both should match to float
    tolerance; a real gap means the recomputation misses a step the model takes.
    """
    ids = model.tokenize(prompt, max_tokens=max_tokens)
    n_layers = model.info.n_layers
    _, cache = _shared_run(model, ids)
    captured, rebuilt, d_w, d_h = [], [], [], []
    with torch.no_grad():
        for layer in range(n_layers):
            if on_progress:
                on_progress(layer / n_layers, f"layer {layer}")
            own = cache[hook_name("attn.hook_pattern", layer)][0].float()
            from_w, from_h = _recompute_layer(model, layer, cache)
            captured.append(own.cpu().numpy())
            rebuilt.append(from_w.cpu().numpy())
            d_w.append((from_w - own).abs().amax((-2, -1)).cpu().numpy())
            d_h.append((from_h - own).abs().amax((-2, -1)).cpu().numpy())
    return PatternCheck(
        tokens=tuple(model.token_strings(ids[0])),
        captured=np.stack(captured),
        from_weights=np.stack(rebuilt),
        diff_weights=np.stack(d_w),
        diff_hooks=np.stack(d_h),
        scales=np.array([attention_scale(model, layer) for layer in range(n_layers)]),
    )
