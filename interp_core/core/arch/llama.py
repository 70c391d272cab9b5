"""Llama-family adapter (Llama, Qwen2, Mistral, SmolLM2): RMSNorm, rotary positions,
separate q/k/v projections, grouped-query attention, gated MLP."""

from __future__ import annotations

import torch
from torch import nn

from interp_core.core.arch.base import Adapter, BlockParts, BlockWeights, Site, heads_site, identity_site
from interp_core.core.devices import execution_device, real_tensor
from interp_core.core.errors import UnknownHookError


def _zeros_or_bias(linear: nn.Linear, shape: tuple[int, ...]) -> torch.Tensor:
    if linear.bias is None:
        return torch.zeros(shape, device=execution_device(linear), dtype=linear.weight.dtype)
    return real_tensor(linear, "bias").reshape(shape)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class LlamaAdapter(Adapter):
    family = "llama"
    norm = "rmsnorm"
    positional = "rotary"
    gated_mlp = True

    @property
    def base(self) -> nn.Module:
        return self.model.model

    @property
    def layers(self) -> nn.ModuleList:
        return self.base.layers

    @property
    def embed(self) -> nn.Embedding:
        return self.base.embed_tokens

    @property
    def final_norm(self) -> nn.Module:
        return self.base.norm

    def block_site(self, point: str, layer: int) -> Site:
        block = self.layers[layer]
        attn, d_head = block.self_attn, self.d_head
        sites = {
            "hook_resid_pre": lambda: identity_site(block, "input"),
            "hook_resid_mid": lambda: identity_site(block.post_attention_layernorm, "input", editable=False),
            "hook_resid_post": lambda: identity_site(block, "output"),
            "attn.hook_q": lambda: heads_site(attn.q_proj, "output", d_head),
            "attn.hook_k": lambda: heads_site(attn.k_proj, "output", d_head),
            "attn.hook_v": lambda: heads_site(attn.v_proj, "output", d_head),
            "attn.hook_pattern": lambda: identity_site(attn, "output", editable=False, tuple_index=1),
            "attn.hook_z": lambda: heads_site(attn.o_proj, "input", d_head),
            "hook_attn_out": lambda: identity_site(attn, "output"),
            "mlp.hook_post": lambda: identity_site(block.mlp.down_proj, "input"),
            "hook_mlp_out": lambda: identity_site(block.mlp, "output"),
        }
        if point not in sites:
            raise UnknownHookError(f"'blocks.{layer}.{point}' does not exist in llama-family models.")
        return sites[point]()

    def block_weights(self, layer: int) -> BlockWeights:
        block = self.layers[layer]
        attn = block.self_attn
        n_heads, n_kv, d_model, d_head = self.n_heads, self.n_kv_heads, self.d_model, self.d_head

        def in_proj(linear: nn.Linear, heads: int) -> torch.Tensor:
            # nn.Linear stores (out, in): (heads * d_head, d_model) -> (heads, d_model, d_head)
            return real_tensor(linear, "weight").reshape(heads, d_head, d_model).transpose(1, 2)

        return BlockWeights(
            W_Q=in_proj(attn.q_proj, n_heads),
            W_K=self.expand_kv(in_proj(attn.k_proj, n_kv)),
            W_V=self.expand_kv(in_proj(attn.v_proj, n_kv)),
            b_Q=_zeros_or_bias(attn.q_proj, (n_heads, d_head)),
            b_K=self.expand_kv(_zeros_or_bias(attn.k_proj, (n_kv, d_head))),
            b_V=self.expand_kv(_zeros_or_bias(attn.v_proj, (n_kv, d_head))),
            # o_proj.weight is (d_model, heads * d_head): transpose, then split the input axis by head.
            W_O=real_tensor(attn.o_proj, "weight").T.reshape(n_heads, d_head, d_model),
            b_O=_zeros_or_bias(attn.o_proj, (d_model,)),
            W_out=real_tensor(block.mlp.down_proj, "weight").T,
            b_out=_zeros_or_bias(block.mlp.down_proj, (d_model,)),
            ln1_w=real_tensor(block.input_layernorm, "weight"), ln1_b=None,
            ln2_w=real_tensor(block.post_attention_layernorm, "weight"), ln2_b=None,
        )

    def block_parts(self, layer: int) -> BlockParts:
        block = self.layers[layer]
        attn, d_head = block.self_attn, self.d_head

        def qkv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return tuple(proj(x).unflatten(-1, (-1, d_head)) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))  # type: ignore[return-value]

        return BlockParts(block.input_layernorm, block.post_attention_layernorm, block.mlp, qkv, attn.o_proj)

    def rotary(self, layer: int, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate ``q (batch, pos, head, d_head)`` and ``k (batch, pos, kv_head, d_head)`` as the model does."""
        cos, sin = self.base.rotary_emb(q, positions.unsqueeze(0))  # (1, pos, d_head) each
        cos, sin = cos.unsqueeze(2).to(q.device), sin.unsqueeze(2).to(q.device)  # broadcast over the head axis
        return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
