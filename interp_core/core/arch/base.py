"""What every architecture adapter provides.

An adapter maps the hook-point vocabulary of :mod:`interp_core.core.names` onto modules of one
family of Hugging Face models, and reads the family's weights into one canonical layout
(TransformerLens's): ``W_Q[head, d_model, d_head]``, ``W_O[head, d_head, d_model]``, and so on.
Techniques only ever see names and canonical weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Literal

import torch
from torch import nn

from interp_core.core.devices import execution_device, real_tensor
from interp_core.core.errors import UnknownHookError

Reader = Callable[[torch.Tensor], torch.Tensor]
Writer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Site:
    """Where a hook point lives in the HF module tree.

    Attributes:
        module: the module whose input or output carries the activation.
        where: ``"output"`` (forward hook) or ``"input"`` (forward pre-hook on the first
            positional argument, or the ``hidden_states`` keyword).
        read: raw tensor -> the canonical shape given in :mod:`interp_core.core.names`.
        write: (raw tensor, new canonical value) -> new raw tensor; ``None`` when the point
            can be read but not edited.
        tuple_index: which element of a tuple output holds the raw tensor.
    """

    module: nn.Module
    where: Literal["output", "input"]
    read: Reader
    write: Writer | None
    tuple_index: int = 0


def identity_site(module: nn.Module, where: Literal["output", "input"], editable: bool = True, tuple_index: int = 0) -> Site:
    """A site whose raw tensor is already canonical (residual-stream points)."""
    return Site(module, where, lambda raw: raw, (lambda raw, new: new) if editable else None, tuple_index)


def heads_site(module: nn.Module, where: Literal["output", "input"], d_head: int) -> Site:
    """A site whose raw tensor is ``(batch, pos, n * d_head)``, read as ``(batch, pos, n, d_head)``."""
    return Site(
        module,
        where,
        lambda raw: raw.unflatten(-1, (-1, d_head)),
        lambda raw, new: new.flatten(-2).to(raw.dtype),
    )


@dataclass(frozen=True)
class BlockWeights:
    """One block's weights in canonical layout (KV heads already expanded for GQA).

    Shapes: ``W_Q, W_K, W_V (head, d_model, d_head)``; ``b_Q, b_K, b_V (head, d_head)``;
    ``W_O (head, d_head, d_model)``; ``b_O (d_model,)``; ``W_out (d_mlp, d_model)``;
    ``b_out (d_model,)``; norm weights ``(d_model,)``, norm biases ``(d_model,)`` or ``None``
    for RMSNorm.
    """

    W_Q: torch.Tensor
    W_K: torch.Tensor
    W_V: torch.Tensor
    b_Q: torch.Tensor
    b_K: torch.Tensor
    b_V: torch.Tensor
    W_O: torch.Tensor
    b_O: torch.Tensor
    W_out: torch.Tensor
    b_out: torch.Tensor
    ln1_w: torch.Tensor
    ln1_b: torch.Tensor | None
    ln2_w: torch.Tensor
    ln2_b: torch.Tensor | None


@dataclass(frozen=True)
class ModelWeights:
    """The whole model's weights in canonical layout.

    Shapes: ``W_E (d_vocab, d_model)``, ``W_pos (n_ctx, d_model)`` or ``None`` (rotary),
    ``W_U (d_model, d_vocab)``, ``b_U (d_vocab,)``, ``ln_final_w/_b (d_model,)``.
    """

    W_E: torch.Tensor
    W_pos: torch.Tensor | None
    W_U: torch.Tensor
    b_U: torch.Tensor
    ln_final_w: torch.Tensor
    ln_final_b: torch.Tensor | None
    blocks: Sequence[BlockWeights]


class LazyBlockWeights(Sequence):
    """``blocks[layer]``: each block's :class:`BlockWeights` read on first access and kept, on one device.

    A model offloaded to disk then materialises only the blocks a technique reads, not all of them.
    """

    def __init__(self, adapter: Adapter, device: torch.device) -> None:
        self._adapter, self._device = adapter, device
        self._done: dict[int, BlockWeights] = {}

    def __len__(self) -> int:
        return self._adapter.n_layers

    def __getitem__(self, index: int | slice) -> BlockWeights | list[BlockWeights]:  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        layer = range(len(self))[index]  # IndexError past the end; negative indices count from the end
        if layer not in self._done:
            block = self._adapter.block_weights(layer)
            moved = {f.name: _on(getattr(block, f.name), self._device) for f in fields(block)}
            self._done[layer] = BlockWeights(**moved)
        return self._done[layer]

    def __iter__(self) -> Iterator[BlockWeights]:
        return (self[i] for i in range(len(self)))


def _on(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """``tensor`` on ``device`` in float32 (a view where it already is; a half-precision weight is copied)."""
    return None if tensor is None else tensor.to(device, torch.float32)


@dataclass(frozen=True)
class BlockParts:
    """One decoder block taken apart, for running many rows' tokens through it flattened.

    Attributes:
        ln1, ln2: the attention-input and MLP-input norms (token-wise modules, ``(..., d_model)``).
        mlp: the MLP (token-wise), ``(..., d_model) -> (..., d_model)``.
        qkv: normed ``(tokens, d_model)`` -> ``q (tokens, head, d_head)``, ``k, v (tokens, kv_head, d_head)``
            before any rotation, as the block's projections compute them.
        out: ``z (tokens, head * d_head)`` -> the attention output ``(tokens, d_model)`` (bias included).
    """

    ln1: nn.Module
    ln2: nn.Module
    mlp: nn.Module
    qkv: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    out: Callable[[torch.Tensor], torch.Tensor]


class Adapter:
    """Base class: subclasses set the module paths of one architecture family."""

    family: str = ""
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    positional: Literal["learned", "rotary"] = "learned"
    parallel_residual: bool = False
    gated_mlp: bool = False  # three MLP matrices (gate, up, down) rather than two

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.config = model.config

    # --- shape facts -------------------------------------------------------------------
    @property
    def layers(self) -> nn.ModuleList:
        raise NotImplementedError

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_heads(self) -> int:
        return int(self.config.num_attention_heads)

    @property
    def n_kv_heads(self) -> int:
        return int(getattr(self.config, "num_key_value_heads", None) or self.n_heads)

    @property
    def d_model(self) -> int:
        return int(self.config.hidden_size)

    @property
    def d_head(self) -> int:
        return int(getattr(self.config, "head_dim", None) or self.d_model // self.n_heads)

    @property
    def d_mlp(self) -> int:
        return int(self.config.intermediate_size)

    @property
    def d_vocab(self) -> int:
        return int(self.config.vocab_size)

    @property
    def n_ctx(self) -> int:
        return int(self.config.max_position_embeddings)

    def kv_head_of(self, head: int) -> int:
        """The KV head that query head ``head`` reads (grouped-query attention)."""
        return head // (self.n_heads // self.n_kv_heads)

    # --- modules ------------------------------------------------------------------------
    @property
    def embed(self) -> nn.Embedding:
        raise NotImplementedError

    @property
    def final_norm(self) -> nn.Module:
        raise NotImplementedError

    @property
    def norm_eps(self) -> float:
        norm = self.final_norm
        return float(getattr(norm, "eps", None) or norm.variance_epsilon)

    @property
    def lm_head(self) -> nn.Linear:
        return self.model.lm_head

    def block_site(self, point: str, layer: int) -> Site:
        """The site of ``blocks.{layer}.{point}``; raise UnknownHookError if absent here."""
        raise NotImplementedError

    def global_site(self, point: str) -> Site:
        if point == "hook_embed":
            return identity_site(self.embed, "output")
        if point == "ln_final.hook_normalized":
            return identity_site(self.final_norm, "output")
        if point == "ln_final.hook_scale":
            return Site(self.final_norm, "input", self.norm_scale, None)
        raise UnknownHookError(f"'{point}' does not exist in {self.family} models.")

    # --- norm arithmetic ----------------------------------------------------------------
    # Techniques never re-derive a norm: they call these. A norm here is ``x -> centre(x) / scale(x)
    # * w + b``; LayerNorm centres (subtracts the mean over d_model) and has a bias, RMSNorm does
    # neither. HF families share one epsilon between block and final norms.
    @property
    def centres(self) -> bool:
        """Whether this family's norms subtract the mean over ``d_model`` (LayerNorm) or not (RMSNorm)."""
        return self.norm == "layernorm"

    def centre(self, x: torch.Tensor) -> torch.Tensor:
        """``x (..., d_model)`` with its mean over ``d_model`` removed when the norm centres; else ``x``."""
        return x - x.mean(-1, keepdim=True) if self.centres else x

    def norm_scale(self, x: torch.Tensor) -> torch.Tensor:
        """The divisor the norm applies to ``x (..., d_model)`` (float32); shape ``(..., 1)``."""
        x = x.float()
        if not self.centres:
            return (x.pow(2).mean(-1, keepdim=True) + self.norm_eps).sqrt()
        return (x.var(-1, keepdim=True, unbiased=False) + self.norm_eps).sqrt()

    def apply_norm(self, x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``centre(x) / norm_scale(x) * weight + bias`` in float32 from explicit weights, ``(..., d_model)``.

        Pure tensor maths (differentiable, and never meets a hook on the model's norm module).
        ``weight=None`` gives the unit-scale direction the norm produces before its affine part.
        """
        x = x.float()
        out = self.centre(x) / self.norm_scale(x)
        if weight is not None:
            out = out * weight
        return out + bias if bias is not None else out

    def apply_final_norm(self, resid: torch.Tensor, weights: ModelWeights) -> torch.Tensor:
        """The final norm applied to ``resid (..., d_model)`` with ``weights``' ``ln_final_w/_b``."""
        return self.apply_norm(resid, weights.ln_final_w, weights.ln_final_b)

    def apply_block_norm(self, resid: torch.Tensor, block: BlockWeights) -> torch.Tensor:
        """A block's attention-input norm (``ln1``) applied to ``resid (..., d_model)``."""
        return self.apply_norm(resid, block.ln1_w, block.ln1_b)

    def fold_norm_into_reader(self, W: torch.Tensor, norm_w: torch.Tensor) -> torch.Tensor:
        """Fold a norm into a matrix that reads its output: ``W (..., d_model, n) -> (..., d_model, n)``.

        ``diag(w) W``, then centred over ``d_model`` when the norm centres (``x P diag(w) W`` with
        ``P = I - 11^T/d``), so ``norm(x) W == x fold(W) / scale(x)`` up to the norm's bias.
        """
        folded = W * norm_w[:, None]  # row i of W reads residual coordinate i, scaled by w_i
        return folded - folded.mean(dim=-2, keepdim=True) if self.centres else folded

    def centre_writer(self, W: torch.Tensor) -> torch.Tensor:
        """A matrix that writes to the residual, ``(..., d_model)``, with the mean over ``d_model``
        removed when the norm centres (the part every later norm throws away)."""
        return W - W.mean(dim=-1, keepdim=True) if self.centres else W

    def attention_scale(self, layer: int) -> float:
        """The factor the attention logits ``q . k`` of ``layer`` are multiplied by: ``1/sqrt(d_head)``."""
        return self.d_head ** -0.5

    # --- weights ------------------------------------------------------------------------
    def block_weights(self, layer: int) -> BlockWeights:
        raise NotImplementedError

    def block_parts(self, layer: int) -> BlockParts:
        """Block ``layer`` as its norms, projections and MLP (the model's own modules)."""
        raise NotImplementedError

    def model_weights(self, device: torch.device | None = None) -> ModelWeights:
        """Every weight in canonical layout, in float32, on ``device`` (default: where the embedding computes).

        Weights are views of the parameters where they already live there, and copies read from
        accelerate's offload store where the model is dispatched (:func:`real_tensor`); blocks are
        read on first access (:class:`LazyBlockWeights`).
        """
        device = device or execution_device(self.embed)
        lm_bias = real_tensor(self.lm_head, "bias")
        norm = self.final_norm
        return ModelWeights(
            W_E=_on(real_tensor(self.embed, "weight"), device),
            W_pos=_on(self.pos_embed_weight(), device),
            W_U=_on(real_tensor(self.lm_head, "weight"), device).T,
            b_U=_on(lm_bias, device) if lm_bias is not None else torch.zeros(self.d_vocab, device=device),
            ln_final_w=_on(real_tensor(norm, "weight"), device),
            ln_final_b=_on(real_tensor(norm, "bias"), device),
            blocks=LazyBlockWeights(self, device),
        )

    def pos_embed_weight(self) -> torch.Tensor | None:
        return None

    def expand_kv(self, per_kv_head: torch.Tensor) -> torch.Tensor:
        """``(kv_head, ...) -> (head, ...)``: give each query head its KV head's slice."""
        index = torch.tensor([self.kv_head_of(h) for h in range(self.n_heads)], device=per_kv_head.device)
        return per_kv_head.index_select(0, index)

    def rotary(self, layer: int, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply this family's positional rotation to ``q (batch, pos, head, d_head)`` and
        ``k (batch, pos, kv_head, d_head)`` at ``positions (pos,)``; identity for learned positions."""
        return q, k


def norm_bias(module: nn.Module) -> torch.Tensor | None:
    return real_tensor(module, "bias")
