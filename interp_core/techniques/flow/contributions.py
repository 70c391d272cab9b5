"""Contributions of every part of every block's output (Ferrando & Voita 2024, "Information flow routes").

Context. A block adds its output to the residual stream: the attention block writes a sum of one
vector per (source position, head), the MLP block one vector per position. How much of the result
(the *whole*) does each summand (the *part*) make up? The proximity score of a part to its whole is

    c = max(|whole|_1 - |whole - part|_1, 1e-5),  normalised so the parts of one whole sum to 1.

It is large when removing the part would move the whole far (in L1), small for a part that is
tiny or points elsewhere. It is a correlational score, not a causal one: the ablation in
:mod:`interp_core.techniques.flow.edge` is the causal test of an edge.

Definitions (field guide §7), block ``l``, query position ``q``:

- Attention block. Parts: ``A[h, q, k] * (v[k, g(h)] @ W_O[h])`` for every key ``k <= q`` and head
  ``h`` (``g(h)`` is the KV head query head ``h`` reads under grouped-query attention), and the
  residual ``resid_pre[q] + b_O`` (the output projection's bias, where the family has one, goes to
  the residual part so that the parts sum to the whole exactly). Whole: ``resid_mid[q]``.
- MLP block. Parts ``mlp_out[q]`` and ``resid_mid[q]``; whole ``resid_post[q]``.

``resid_mid`` for a parallel-residual model (GPT-NeoX/Pythia with ``use_parallel_residual``, where
attention and MLP both read ``resid_pre`` and the block returns ``resid_pre + attn_out + mlp_out``)
is not an activation the model computes (the adapter has no ``hook_resid_mid`` there). We take it
as ``resid_pre + attn_out``, the stream as the attention block leaves it, so the two wholes keep
their meaning: the attention block's whole is what attention made of ``resid_pre``, the MLP block's
whole is ``resid_post`` = that plus ``mlp_out``. (The MLP then reads ``resid_pre``, not this
``resid_mid``; the decomposition of its output's sum is still exact.)

Cost. One forward records what is needed. Per layer, ``v @ W_O`` is computed once per (key, head)
``(key, head, d_model)``; the parts and their L1 distances are then one broadcast over
``(query chunk, key, head, d_model)``, chunked over queries (and only keys up to the chunk's last
query) so memory stays bounded for long prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from interp_core.core.model import LoadedModel
from interp_core.core.names import hook_name

EPS = 1e-5
CHUNK_ELEMENTS = 1 << 22  # floats in one (query chunk, key, head, d_model) block: 16 MB in float32


@dataclass(frozen=True)
class Contributions:
    """Normalised contributions of one prompt, every block and every query position.

    Shapes: ``attn (layer, query, key, head)`` (0 for ``key > query``); ``attn_resid``, ``mlp``,
    ``mlp_resid`` ``(layer, query)``. For each (layer, query): ``attn.sum((key, head)) + attn_resid
    == 1`` and ``mlp + mlp_resid == 1``.
    """

    attn: np.ndarray
    attn_resid: np.ndarray
    mlp: np.ndarray
    mlp_resid: np.ndarray


def capture_names(model: LoadedModel, layer: int) -> list[str]:
    """The hook points block ``layer``'s contributions need."""
    points = ["hook_resid_pre", "attn.hook_v", "attn.hook_pattern", "hook_attn_out", "hook_mlp_out", "hook_resid_post"]
    return [hook_name(p, layer) for p in points]


def capture(model: LoadedModel, ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One forward of ``ids (1, pos)`` recording every block's captures; returns ``(logits, cache)``."""
    names = [n for layer in range(model.info.n_layers) for n in capture_names(model, layer)]
    logits, cache = model.run_with_cache(ids, names)
    return logits, cache


def resid_mid(model: LoadedModel, cache: dict[str, torch.Tensor], layer: int) -> torch.Tensor:
    """``resid_pre + attn_out`` at block ``layer``, ``(pos, d_model)``: the stream between the two
    sub-blocks (for a sequential block exactly what its second norm reads; see the module docstring)."""
    return cache[hook_name("hook_resid_pre", layer)][0] + cache[hook_name("hook_attn_out", layer)][0]


def value_outputs(model: LoadedModel, cache: dict[str, torch.Tensor], layer: int) -> torch.Tensor:
    """``v[k, g(h)] @ W_O[h]`` for every key and query head, ``(key, head, d_model)``."""
    v = cache[hook_name("attn.hook_v", layer)][0]  # (key, kv_head, d_head)
    kv_of = torch.tensor([model.adapter.kv_head_of(h) for h in range(model.info.n_heads)], device=v.device)
    v = v.index_select(1, kv_of)  # (key, head, d_head): each query head gets its KV head's values
    W_O = model.weights.blocks[layer].W_O.to(v.dtype)  # (head, d_head, d_model)
    return torch.einsum("khd,hdm->khm", v, W_O)


def attention_parts(pattern: torch.Tensor, vo: torch.Tensor, queries: slice) -> torch.Tensor:
    """The parts ``A[h, q, k] * vo[k, h]`` for the queries in ``queries`` and keys up to the last of
    them, ``(query, key, head, d_model)``. ``pattern (head, query, key)``, ``vo (key, head, d_model)``."""
    n_keys = queries.stop
    return torch.einsum("hqk,khm->qkhm", pattern[:, queries, :n_keys], vo[:n_keys])


def proximity(whole: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
    """``max(|whole|_1 - |whole - part|_1, EPS)``: ``whole (..., d_model)``, ``parts (..., n, d_model)``
    where ``...`` matches -> ``(..., n)``."""
    distance = (whole.unsqueeze(-2) - parts).abs().sum(-1)
    return (whole.abs().sum(-1, keepdim=True) - distance).clamp_min(EPS)


def attention_proximity(whole: torch.Tensor, weights: torch.Tensor, vo: torch.Tensor) -> torch.Tensor:
    """:func:`proximity` of every attention part, without building the parts apart:
    ``whole (query, d_model)``, ``weights (query, key, head)`` = ``A[h, q, k]``, ``vo (key, head, d_model)``
    -> ``(query, key, head)``. ``whole - A * vo`` is one fused multiply-subtract (about 2.5x faster than
    building the parts first and subtracting them)."""
    diff = torch.addcmul(whole[:, None, None, :], weights.unsqueeze(-1), vo.unsqueeze(0), value=-1.0)  # (q, k, h, d_model)
    distance = diff.abs_().sum(-1)
    return (whole.abs().sum(-1)[:, None, None] - distance).clamp_min(EPS)


def attention_block(model: LoadedModel, cache: dict[str, torch.Tensor], layer: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised contributions to ``resid_mid`` of block ``layer``: ``attn (query, key, head)`` and
    ``resid (query,)``."""
    whole = resid_mid(model, cache, layer)  # (pos, d_model)
    n_pos, d_model = whole.shape
    resid_part = cache[hook_name("hook_resid_pre", layer)][0] + model.weights.blocks[layer].b_O.to(whole.dtype)
    vo = value_outputs(model, cache, layer)
    pattern = cache[hook_name("attn.hook_pattern", layer)][0].to(whole.dtype)  # (head, query, key)
    n_heads = vo.shape[1]
    attn = np.zeros((n_pos, n_pos, n_heads), dtype=np.float32)
    resid = np.zeros(n_pos, dtype=np.float32)
    chunk = max(1, CHUNK_ELEMENTS // (n_pos * n_heads * d_model))
    for start in range(0, n_pos, chunk):
        queries = slice(start, min(start + chunk, n_pos))
        weights = pattern[:, queries, : queries.stop].permute(1, 2, 0)  # (qc, kc, head): keys up to the chunk's last query
        qc, kc = weights.shape[:2]
        w = whole[queries]
        raw_attn = attention_proximity(w, weights, vo[:kc])
        future = torch.arange(kc)[None, :] > torch.arange(start, start + qc)[:, None]  # (qc, kc): key after query
        raw_attn = raw_attn.masked_fill(future[:, :, None].to(raw_attn.device), 0.0)
        raw_resid = proximity(w, resid_part[queries].unsqueeze(1))[:, 0]  # (qc,)
        total = raw_attn.sum((1, 2)) + raw_resid
        attn[queries, :kc] = (raw_attn / total[:, None, None]).float().cpu().numpy()
        resid[queries] = (raw_resid / total).float().cpu().numpy()
    return attn, resid


def mlp_block(model: LoadedModel, cache: dict[str, torch.Tensor], layer: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised contributions to ``resid_post`` of block ``layer``: ``mlp (query,)`` and ``resid (query,)``."""
    whole = cache[hook_name("hook_resid_post", layer)][0]
    parts = torch.stack([cache[hook_name("hook_mlp_out", layer)][0], resid_mid(model, cache, layer)], dim=1)
    raw = proximity(whole, parts)  # (pos, 2)
    normed = (raw / raw.sum(-1, keepdim=True)).float().cpu().numpy()
    return normed[:, 0], normed[:, 1]


def contributions(model: LoadedModel, ids: torch.Tensor, on_layer: object = None) -> Contributions:
    """Every block's contributions for ``ids (1, pos)``, from one forward; ``on_layer(layer)`` after each block."""
    with torch.no_grad():
        _, cache = capture(model, ids)
        per_layer = []
        for layer in range(model.info.n_layers):
            attn, attn_resid = attention_block(model, cache, layer)
            mlp, mlp_resid = mlp_block(model, cache, layer)
            per_layer.append((attn, attn_resid, mlp, mlp_resid))
            for name in capture_names(model, layer):  # free this block's captures as we go
                cache.pop(name, None)
            if callable(on_layer):
                on_layer(layer)
    return Contributions(*(np.stack(arrays) for arrays in zip(*per_layer)))
