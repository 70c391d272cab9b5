"""GPT-NeoX adapter (Pythia): LayerNorm, partial rotary positions, fused per-head
``query_key_value``, usually a parallel residual (attention and MLP both read resid_pre)."""

from __future__ import annotations

import torch
from torch import nn

from interp_core.core.arch.base import Adapter, BlockParts, BlockWeights, Site, heads_site, identity_site, norm_bias
from interp_core.core.arch.llama import rotate_half
from interp_core.core.devices import real_tensor
from interp_core.core.errors import UnknownHookError


class NeoXAdapter(Adapter):
    family = "gpt_neox"
    norm = "layernorm"
    positional = "rotary"

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.parallel_residual = bool(self.config.use_parallel_residual)

    @property
    def base(self) -> nn.Module:
        return self.model.gpt_neox

    @property
    def layers(self) -> nn.ModuleList:
        return self.base.layers

    @property
    def embed(self) -> nn.Embedding:
        return self.base.embed_in

    @property
    def final_norm(self) -> nn.Module:
        return self.base.final_layer_norm

    def _qkv_site(self, block: nn.Module, index: int) -> Site:
        """q, k or v out of ``query_key_value``, laid out per head as [q | k | v]."""
        d_head = self.d_head

        def read(raw: torch.Tensor) -> torch.Tensor:
            per_head = raw.unflatten(-1, (-1, 3 * d_head))  # (batch, pos, head, 3 * d_head)
            return per_head[..., index * d_head : (index + 1) * d_head]

        def write(raw: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
            per_head = raw.unflatten(-1, (-1, 3 * d_head)).clone()
            per_head[..., index * d_head : (index + 1) * d_head] = new.to(raw.dtype)
            return per_head.flatten(-2)

        return Site(block.attention.query_key_value, "output", read, write)

    def block_site(self, point: str, layer: int) -> Site:
        block = self.layers[layer]
        sites = {
            "hook_resid_pre": lambda: identity_site(block, "input"),
            "hook_resid_post": lambda: identity_site(block, "output"),
            "attn.hook_q": lambda: self._qkv_site(block, 0),
            "attn.hook_k": lambda: self._qkv_site(block, 1),
            "attn.hook_v": lambda: self._qkv_site(block, 2),
            "attn.hook_pattern": lambda: identity_site(block.attention, "output", editable=False, tuple_index=1),
            "attn.hook_z": lambda: heads_site(block.attention.dense, "input", self.d_head),
            "hook_attn_out": lambda: identity_site(block.attention, "output"),
            "mlp.hook_post": lambda: identity_site(block.mlp.dense_4h_to_h, "input"),
            "hook_mlp_out": lambda: identity_site(block.mlp, "output"),
        }
        if not self.parallel_residual:
            sites["hook_resid_mid"] = lambda: identity_site(block.post_attention_layernorm, "input", editable=False)
        if point not in sites:
            why = " (this model has a parallel residual: attention and MLP both read resid_pre)" if point == "hook_resid_mid" else ""
            raise UnknownHookError(f"'blocks.{layer}.{point}' does not exist in GPT-NeoX models{why}.")
        return sites[point]()

    def block_weights(self, layer: int) -> BlockWeights:
        block = self.layers[layer]
        n_heads, d_model, d_head = self.n_heads, self.d_model, self.d_head
        qkv = block.attention.query_key_value
        # weight rows are laid out (head, [q|k|v], d_head); nn.Linear stores (out, in).
        w = real_tensor(qkv, "weight").reshape(n_heads, 3, d_head, d_model).transpose(2, 3)
        b = real_tensor(qkv, "bias").reshape(n_heads, 3, d_head)
        dense = block.attention.dense
        return BlockWeights(
            W_Q=w[:, 0], W_K=w[:, 1], W_V=w[:, 2], b_Q=b[:, 0], b_K=b[:, 1], b_V=b[:, 2],
            W_O=real_tensor(dense, "weight").T.reshape(n_heads, d_head, d_model),
            b_O=real_tensor(dense, "bias"),
            W_out=real_tensor(block.mlp.dense_4h_to_h, "weight").T,
            b_out=real_tensor(block.mlp.dense_4h_to_h, "bias"),
            ln1_w=real_tensor(block.input_layernorm, "weight"), ln1_b=norm_bias(block.input_layernorm),
            ln2_w=real_tensor(block.post_attention_layernorm, "weight"), ln2_b=norm_bias(block.post_attention_layernorm),
        )

    def block_parts(self, layer: int) -> BlockParts:
        block = self.layers[layer]
        d_head = self.d_head

        def qkv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            per_head = block.attention.query_key_value(x).unflatten(-1, (-1, 3 * d_head))  # (tokens, head, [q|k|v])
            return tuple(per_head.split(d_head, dim=-1))  # type: ignore[return-value]

        return BlockParts(block.input_layernorm, block.post_attention_layernorm, block.mlp, qkv, block.attention.dense)

    def rotary(self, layer: int, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate the first ``rotary_ndims`` dims of ``q`` and ``k (batch, pos, head, d_head)``."""
        cos, sin = self.base.rotary_emb(q, positions.unsqueeze(0))
        cos, sin = cos.unsqueeze(2).to(q.device), sin.unsqueeze(2).to(q.device)
        n_rot = cos.shape[-1]

        def rotate(x: torch.Tensor) -> torch.Tensor:
            x_rot, x_pass = x[..., :n_rot], x[..., n_rot:]
            return torch.cat((x_rot * cos + rotate_half(x_rot) * sin, x_pass), dim=-1)

        return rotate(q), rotate(k)
