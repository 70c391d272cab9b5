"""QK and OV circuits of attention heads, read from the weights alone (Elhage et al. 2021).

An attention head does two separable things. Its **QK circuit** ``W_QK = W_Q W_K^T``
(``d_model x d_model``) decides where it looks: the attention score between a query residual
``x_q`` and a key residual ``x_k`` is ``x_q W_QK x_k^T / sqrt(d_head)``. Its **OV circuit**
``W_OV = W_V W_O`` (``d_model x d_model``, rank ``d_head``) decides what it writes once it
looks. Sandwiched between the embedding and the unembedding, ``W_E W_OV W_U`` is the *full OV
circuit*, a ``d_vocab x d_vocab`` map "attending to token t raises the logit of token u by
...". A head that copies (an induction head, a name mover) raises the logit of the token it
attends to, so its full OV circuit has mostly positive eigenvalues; the **copying score**
``sum(Re lambda) / sum(|lambda|)`` is 1 for a perfect copier and -1 for a perfect
anti-copier. Everything here stays factored: the non-zero eigenvalues of ``W_E W_V W_O W_U``
equal those of the ``d_head x d_head`` matrix ``W_O (W_U W_E) W_V`` (``AB`` and ``BA`` share
their non-zero spectrum), and ``W_U W_E`` (``d_model x d_model``) is computed once per model,
so no vocab x vocab matrix is ever built.

Norm folding (``fold_norms=True``, the default, as TransformerLens does): a head reads the
*normalised* residual, ``norm(x) = x / scale * w`` (LayerNorm also subtracts the mean first), and
the unembedding reads the final norm's output. Folding multiplies each reading matrix by its
norm weight (``diag(ln1_w) W_Q``, ``diag(ln_final_w) W_U``) and, for LayerNorm, projects out the
all-ones direction the norm removes (writers ``W_E``, ``W_O`` are centred too, which changes
norms but no products). The per-token ``1/scale`` is a positive number that rescales but never
changes a sign or a copying score, so it is left out. Biases are left out too: circuits are the
linear part. The arithmetic is the architecture adapter's (``Adapter.fold_norm_into_reader``,
``Adapter.centre_writer``), shared with DLA and composition. RMSNorm weights of trained models
are far from 1 and uneven, so with RMSNorm the unfolded numbers describe a different map than
the one the model runs; keep folding on unless you are comparing with raw-weight numbers.

Axis glossary: ``head`` query heads of one layer (GQA KV weights already expanded, so query
head ``h`` carries KV head ``h // (n_heads // n_kv_heads)``'s ``W_K``/``W_V``), ``d_model``
residual width, ``d_head`` head width, ``d_vocab`` vocabulary.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from interp_core.core.errors import OutOfRangeError, WorkbenchError, check_index
from interp_core.core.model import LoadedModel
from interp_core.techniques.contract import Progress, Request
from interp_core.techniques.head_scores import head_table


@dataclass(frozen=True)
class LayerHeads:
    """One layer's attention weights as circuits see them (float32, norms folded or not).

    Shapes: ``W_Q, W_K, W_V (head, d_model, d_head)``, ``W_O (head, d_head, d_model)``.
    """

    W_Q: torch.Tensor
    W_K: torch.Tensor
    W_V: torch.Tensor
    W_O: torch.Tensor


def layer_heads(model: LoadedModel, layer: int, *, fold_norms: bool = True) -> LayerHeads:
    """The reading and writing matrices of every head of ``layer``."""
    check_index("layer", layer, model.info.n_layers)
    block = model.weights.blocks[layer]
    W_Q, W_K = (_read(model, W, block.ln1_w, fold_norms) for W in (block.W_Q, block.W_K))
    return LayerHeads(W_Q, W_K, *ov_weights(model, layer, fold_norms=fold_norms))


def ov_weights(model: LoadedModel, layer: int, *, fold_norms: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``W_V (head, d_model, d_head)`` and ``W_O (head, d_head, d_model)`` of ``layer`` (the OV half of :func:`layer_heads`)."""
    check_index("layer", layer, model.info.n_layers)
    block = model.weights.blocks[layer]
    W_O = block.W_O.float()
    return _read(model, block.W_V, block.ln1_w, fold_norms), model.adapter.centre_writer(W_O) if fold_norms else W_O


def _read(model: LoadedModel, W: torch.Tensor, norm_w: torch.Tensor, fold: bool) -> torch.Tensor:
    """A reading matrix in float32, the norm with weight ``norm_w`` folded in when ``fold``."""
    return model.adapter.fold_norm_into_reader(W.float(), norm_w.float()) if fold else W.float()


def embed_unembed(model: LoadedModel, *, fold_norms: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``W_E (d_vocab, d_model)`` and ``W_U (d_model, d_vocab)``, float32, final norm folded or not."""
    weights = model.weights
    W_E, W_U = weights.W_E.float(), weights.W_U.float()
    if fold_norms:
        W_E = model.adapter.centre_writer(W_E)
        W_U = model.adapter.fold_norm_into_reader(W_U, weights.ln_final_w.float())
    return W_E, W_U


_token_gram_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_token_gram_lock = threading.Lock()


def unembed_embed(model: LoadedModel, *, fold_norms: bool = True) -> torch.Tensor:
    """``W_U W_E`` (``d_model x d_model``), the token-space sandwich of every full OV circuit.

    Computed once per model and folding choice (``d_vocab`` x ``d_model``^2 multiply-adds), then
    kept beside the model (not on it: the shared model is never mutated).
    """
    with _token_gram_lock:
        per_model = _token_gram_cache.setdefault(model, {})
        if fold_norms not in per_model:
            W_E, W_U = embed_unembed(model, fold_norms=fold_norms)
            per_model[fold_norms] = W_U @ W_E
        return per_model[fold_norms]


# --- eigenvalues and copying ------------------------------------------------------------------


def eigenvalues(square: torch.Tensor) -> np.ndarray:
    """Eigenvalues of ``(..., n, n)`` in float64, sorted by descending magnitude; complex ``(..., n)``."""
    values = torch.linalg.eigvals(square.detach().cpu().double()).numpy()
    order = np.argsort(-np.abs(values), axis=-1, kind="stable")
    return np.take_along_axis(values, order, axis=-1)


def copying_score(values: np.ndarray) -> np.ndarray:
    """``sum(Re lambda) / sum(|lambda|)`` over the last axis; 1 copies, -1 anti-copies."""
    values = np.asarray(values)
    total = np.abs(values).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, values.real.sum(-1) / total, np.nan)


def full_ov_eigenvalues(W_E: torch.Tensor, W_V: torch.Tensor, W_O: torch.Tensor, W_U: torch.Tensor) -> np.ndarray:
    """Non-zero spectrum of the full OV circuit ``W_E W_V W_O W_U`` without building it.

    Args:
        W_E: ``(d_vocab, d_model)``; W_V: ``(..., d_model, d_head)``; W_O: ``(..., d_head, d_model)``;
        W_U: ``(d_model, d_vocab)``.

    Returns:
        complex ``(..., d_head)``: eigenvalues of ``W_O (W_U W_E) W_V``.
    """
    return eigenvalues(W_O @ (W_U @ W_E) @ W_V)


def basic_ov_eigenvalues(W_V: torch.Tensor, W_O: torch.Tensor) -> np.ndarray:
    """Non-zero spectrum of the residual-space ``W_OV = W_V W_O`` via ``W_O W_V``; complex ``(..., d_head)``."""
    return eigenvalues(W_O @ W_V)


@dataclass(frozen=True)
class CopyingScores:
    """Copying score of every head. ``full``/``basic``: ``(layer, head)``; ``seconds``: wall time."""

    full: np.ndarray
    basic: np.ndarray
    fold_norms: bool
    seconds: float

    def __post_init__(self) -> None:
        if self.full.shape != self.basic.shape:
            raise ValueError(f"full {self.full.shape} and basic {self.basic.shape} copying grids differ in shape")

    def tables(self) -> dict[str, pd.DataFrame]:
        """``copying_full`` / ``copying_basic``: one row per head with its full-OV / residual-space copying score."""
        return {"copying_full": head_table(self.full, "copying"), "copying_basic": head_table(self.basic, "copying")}

    def to_json(self) -> dict:
        return {"copying_score": self.full, "basic_copying_score": self.basic, "fold_norms": self.fold_norms, "seconds": self.seconds}


def copying_scores(model: LoadedModel, *, fold_norms: bool = True, on_progress: Progress | None = None) -> CopyingScores:
    """Full-OV and residual-space copying scores of every head (one batched eig per layer)."""
    started = time.perf_counter()
    n_layers = model.info.n_layers
    with torch.no_grad():
        gram = unembed_embed(model, fold_norms=fold_norms)
        full, basic = [], []
        for layer in range(n_layers):
            W_V, W_O = ov_weights(model, layer, fold_norms=fold_norms)
            full.append(copying_score(eigenvalues(W_O @ gram @ W_V)))
            basic.append(copying_score(basic_ov_eigenvalues(W_V, W_O)))
            if on_progress:
                on_progress((layer + 1) / n_layers, f"layer {layer + 1}/{n_layers}")
    return CopyingScores(np.stack(full), np.stack(basic), fold_norms, time.perf_counter() - started)


# --- one head's OV circuit ----------------------------------------------------------------------


@dataclass(frozen=True)
class OVCircuit:
    """One head's OV circuit.

    Attributes:
        full_eigenvalues / basic_eigenvalues: complex ``(d_head,)``, by descending magnitude.
        input_tokens: ``(n_tokens,)`` ids of the tokens attended to; ``input_strings`` their text.
        top_ids / top_values: ``(n_tokens, top_k)`` tokens whose logits attending to each input
            token raises most, and by how much (``W_E[t] W_OV W_U``, per unit of norm scale).
        self_rank: ``(n_tokens,)`` rank of the input token itself in its own row (0 = top).
    """

    layer: int
    head: int
    full_eigenvalues: np.ndarray
    basic_eigenvalues: np.ndarray
    input_tokens: np.ndarray
    input_strings: tuple[str, ...]
    top_ids: np.ndarray
    top_strings: tuple[tuple[str, ...], ...]
    top_values: np.ndarray
    self_rank: np.ndarray
    fold_norms: bool
    seconds: float

    @property
    def full_copying(self) -> float:
        return float(copying_score(self.full_eigenvalues))

    @property
    def basic_copying(self) -> float:
        return float(copying_score(self.basic_eigenvalues))

    def tables(self) -> dict[str, pd.DataFrame]:
        """``ov_eigenvalues_basic`` / ``ov_eigenvalues_full``: one row per eigenvalue (by magnitude);
        ``ov_top_tokens``: per input token, its own rank and the tokens it raises most."""
        out = {f"ov_eigenvalues_{stem}": _eigen_frame(values) for stem, values in (("basic", self.basic_eigenvalues), ("full", self.full_eigenvalues))}
        out["ov_top_tokens"] = pd.DataFrame({
            "input token": [repr(s) for s in self.input_strings],
            "rank of itself": self.self_rank,
            "raises most (W_E[t] W_OV W_U)": [" · ".join(repr(t) for t in row) for row in self.top_strings],
            "top value": self.top_values[:, 0] if len(self.top_values) else [],
        })
        return out

    def to_json(self) -> dict:
        return {
            "layer": self.layer, "head": self.head, "fold_norms": self.fold_norms, "seconds": self.seconds,
            "eigenvalues": {"real": self.full_eigenvalues.real, "imag": self.full_eigenvalues.imag},
            "basic_eigenvalues": {"real": self.basic_eigenvalues.real, "imag": self.basic_eigenvalues.imag},
            "full_copying_score": self.full_copying, "basic_copying_score": self.basic_copying,
            "top_tokens": [
                {"token": s, "id": int(t), "self_rank": int(r), "raises": list(strings), "values": vals}
                for s, t, r, strings, vals in zip(self.input_strings, self.input_tokens, self.self_rank, self.top_strings, self.top_values)
            ],
        }


def _eigen_frame(values: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"rank": range(len(values)), "real": values.real, "imag": values.imag, "magnitude": np.abs(values)})
    frame["sign"] = np.where(frame["real"] >= 0, "Re λ ≥ 0", "Re λ < 0")
    return frame


def check_head(model: LoadedModel, layer: int, head: int) -> None:
    check_index("layer", layer, model.info.n_layers)
    check_index("head", head, model.info.n_heads)


def token_ids(model: LoadedModel, words: Sequence[str], *, leading_space: bool = True) -> list[int]:
    """Single-token ids of ``words`` (each stripped, with a leading space added when asked).

    Raises:
        WorkbenchError: no words given; NotSingleTokenError: a word is several tokens.
    """
    cleaned = [w.strip() for w in words if w.strip()]
    if not cleaned:
        raise WorkbenchError("No tokens given: type a few words separated by commas, e.g. 'Paris, cat, Mary'.")
    if len(cleaned) > 64:
        raise WorkbenchError(f"{len(cleaned)} tokens given; at most 64 fit on one chart. Remove some.")
    return [model.single_token_id((" " if leading_space else "") + w) for w in cleaned]


def ov_circuit(
    model: LoadedModel, layer: int, head: int, tokens: Sequence[int] = (), *, top_k: int = 10, fold_norms: bool = True
) -> OVCircuit:
    """Eigenvalues of one head's full and residual-space OV circuits, and what chosen tokens raise."""
    check_head(model, layer, head)
    if not 1 <= top_k <= 100:
        raise OutOfRangeError(f"top_k must be between 1 and 100, got {top_k}.")
    ids = torch.tensor(list(tokens), dtype=torch.long)
    if len(ids) and (ids.min() < 0 or ids.max() >= model.info.d_vocab):
        raise OutOfRangeError(f"token ids must be between 0 and {model.info.d_vocab - 1}.")
    started = time.perf_counter()
    with torch.no_grad():
        W_V, W_O = (W[head] for W in ov_weights(model, layer, fold_norms=fold_norms))
        W_E, W_U = embed_unembed(model, fold_norms=fold_norms)
        full = eigenvalues(W_O @ unembed_embed(model, fold_norms=fold_norms) @ W_V)
        basic = basic_ov_eigenvalues(W_V, W_O)
        rows = W_E[ids.to(W_E.device)] @ W_V @ W_O @ W_U  # (n_tokens, d_vocab): one row of the full OV circuit each
        top = rows.topk(min(top_k, rows.shape[-1]), dim=-1) if len(ids) else None
        own = rows.gather(1, ids.to(rows.device)[:, None]) if len(ids) else rows[:, :1]
        self_rank = (rows > own).sum(-1).cpu().numpy()
    top_ids = top.indices.cpu().numpy() if top is not None else np.zeros((0, top_k), dtype=int)
    return OVCircuit(
        layer, head, full, basic, ids.numpy(), tuple(model.token_strings(ids)), top_ids,
        tuple(tuple(model.token_strings(row)) for row in top_ids),
        top.values.cpu().numpy() if top is not None else np.zeros((0, top_k)), self_rank,
        fold_norms, time.perf_counter() - started,
    )


# --- QK circuit -------------------------------------------------------------------------------


@dataclass(frozen=True)
class QKCircuit:
    """Attention scores a head's weights give pairs of inputs, position and biases ignored.

    ``scores (n_query, n_key)`` = ``x_q W_QK x_k^T / sqrt(d_head)``; NaN where the key is
    after the query (positional view only). ``query_labels``/``key_labels`` name the axes.
    """

    layer: int
    head: int
    scores: np.ndarray
    query_labels: tuple[str, ...]
    key_labels: tuple[str, ...]
    kind: str
    fold_norms: bool
    seconds: float

    def __post_init__(self) -> None:
        if self.scores.shape != (len(self.query_labels), len(self.key_labels)):
            raise ValueError(f"scores {self.scores.shape} do not match {len(self.query_labels)} x {len(self.key_labels)} labels")

    def to_json(self) -> dict:
        return {"kind": self.kind, "scores": self.scores, "query": list(self.query_labels), "key": list(self.key_labels)}

    def tables(self) -> dict[str, pd.DataFrame]:
        """``qk_tokens`` (rows ``"i:'token'"``) or ``qk_positions``: one row per (query, key) cell with its score;
        positions: only keys up to the query."""
        if self.kind == "position":
            q, k = np.meshgrid(np.arange(len(self.query_labels)), np.arange(len(self.key_labels)), indexing="ij")
            frame = pd.DataFrame({"query position": q.ravel(), "key position": k.ravel(), "score": self.scores.ravel()})
            return {"qk_positions": frame.dropna().reset_index(drop=True)}
        queries, keys = self.axis_labels()
        q, k = np.meshgrid(np.arange(len(queries)), np.arange(len(keys)), indexing="ij")
        return {"qk_tokens": pd.DataFrame({"query": [queries[i] for i in q.ravel()], "key": [keys[j] for j in k.ravel()],
                                           "score": self.scores.ravel()})}

    def axis_labels(self) -> tuple[list[str], list[str]]:
        """Unique axis names ``"i:'token'"`` (a token may be asked for twice)."""
        return ([f"{i}:{s!r}" for i, s in enumerate(self.query_labels)], [f"{i}:{s!r}" for i, s in enumerate(self.key_labels)])


def _qk_scores(model: LoadedModel, layer: int, head: int, x_q: torch.Tensor, x_k: torch.Tensor, fold_norms: bool) -> np.ndarray:
    heads = layer_heads(model, layer, fold_norms=fold_norms)
    q = x_q @ heads.W_Q[head]  # (n_query, d_head)
    k = x_k @ heads.W_K[head]  # (n_key, d_head)
    return (q @ k.T / math.sqrt(model.info.d_head)).cpu().numpy()


def qk_circuit(
    model: LoadedModel, layer: int, head: int, query_tokens: Sequence[int], key_tokens: Sequence[int], *, fold_norms: bool = True
) -> QKCircuit:
    """Token x token attention scores ``W_E[q] W_QK W_E[k]^T / sqrt(d_head)`` (position ignored:
    for rotary models the real score also rotates q and k by their positions)."""
    check_head(model, layer, head)
    if not query_tokens or not key_tokens:
        raise WorkbenchError("The QK circuit needs at least one query token and one key token.")
    started = time.perf_counter()
    with torch.no_grad():
        W_E, _ = embed_unembed(model, fold_norms=fold_norms)
        q = W_E[torch.tensor(list(query_tokens), device=W_E.device)]
        k = W_E[torch.tensor(list(key_tokens), device=W_E.device)]
        scores = _qk_scores(model, layer, head, q, k, fold_norms)
    return QKCircuit(
        layer, head, scores, tuple(model.token_strings(query_tokens)), tuple(model.token_strings(key_tokens)),
        "token", fold_norms, time.perf_counter() - started,
    )


def positional_qk(model: LoadedModel, layer: int, head: int, *, n_positions: int = 64, fold_norms: bool = True) -> QKCircuit:
    """Position x position scores ``W_pos W_QK W_pos^T / sqrt(d_head)`` over the first
    ``n_positions`` learned positions (keys after the query masked to NaN)."""
    check_head(model, layer, head)
    W_pos = model.weights.W_pos
    if W_pos is None:
        raise WorkbenchError(
            f"{model.info.name} has {model.info.positional} positions, not a learned position embedding: "
            "there is no positional QK matrix to show."
        )
    n = min(n_positions, W_pos.shape[0])
    if n < 2:
        raise OutOfRangeError(f"n_positions must be at least 2, got {n_positions}.")
    started = time.perf_counter()
    with torch.no_grad():
        pos = model.adapter.centre_writer(W_pos[:n].float()) if fold_norms else W_pos[:n].float()
        scores = _qk_scores(model, layer, head, pos, pos, fold_norms)
    scores[np.triu_indices(n, k=1)] = np.nan  # a query never sees later keys
    labels = tuple(str(i) for i in range(n))
    return QKCircuit(layer, head, scores, labels, labels, "position", fold_norms, time.perf_counter() - started)


# --- requests: what the Circuits page and the CLI run ----------------------------------------


@dataclass(frozen=True)
class CopyingRequest(Request):
    """Full-OV and residual-space copying scores of every head."""

    fold_norms: bool = True
    label = "Eigenvalues of every head's OV circuit"
    heavy = True

    def compute(self, model: LoadedModel, on_progress: Progress) -> CopyingScores:
        return copying_scores(model, fold_norms=self.fold_norms, on_progress=on_progress)


@dataclass(frozen=True)
class OVRequest(Request):
    """One head's OV eigenvalues, and the tokens each of ``tokens`` (ids) raises most."""

    layer: int
    head: int
    tokens: tuple[int, ...] = ()
    top_k: int = 10
    fold_norms: bool = True
    label = "Eigenvalues of the head's OV circuit"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(int(t) for t in self.tokens))
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, (int, np.integer)) or not 1 <= self.top_k <= 100:
            raise OutOfRangeError(f"top_k must be between 1 and 100, got {self.top_k}.")

    def check(self, model: LoadedModel) -> None:
        check_head(model, self.layer, self.head)

    def compute(self, model: LoadedModel, on_progress: Progress) -> OVCircuit:
        return ov_circuit(model, self.layer, self.head, self.tokens, top_k=self.top_k, fold_norms=self.fold_norms)


@dataclass(frozen=True)
class QKRequest(Request):
    """One head's token x token QK scores (position ignored) for query and key token ids."""

    layer: int
    head: int
    query_tokens: tuple[int, ...]
    key_tokens: tuple[int, ...]
    fold_norms: bool = True
    label = "Reading the head's QK circuit"

    def __post_init__(self) -> None:
        object.__setattr__(self, "query_tokens", tuple(int(t) for t in self.query_tokens))
        object.__setattr__(self, "key_tokens", tuple(int(t) for t in self.key_tokens))

    def check(self, model: LoadedModel) -> None:
        check_head(model, self.layer, self.head)

    def compute(self, model: LoadedModel, on_progress: Progress) -> QKCircuit:
        return qk_circuit(model, self.layer, self.head, self.query_tokens, self.key_tokens, fold_norms=self.fold_norms)


@dataclass(frozen=True)
class PositionalQKRequest(Request):
    """One head's position x position QK scores over the first ``n_positions`` learned positions."""

    layer: int
    head: int
    n_positions: int = 64
    fold_norms: bool = True
    label = "Reading the head's positional QK circuit"

    def check(self, model: LoadedModel) -> None:
        check_head(model, self.layer, self.head)

    def compute(self, model: LoadedModel, on_progress: Progress) -> QKCircuit:
        return positional_qk(model, self.layer, self.head, n_positions=self.n_positions, fold_norms=self.fold_norms)
