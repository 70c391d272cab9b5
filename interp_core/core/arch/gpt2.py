"""GPT-2 adapter: LayerNorm, learned positions, fused ``c_attn``, Conv1D weights stored (in, out)."""

from __future__ import annotations

import torch
from torch import nn

from interp_core.core.arch.base import Adapter, BlockParts, BlockWeights, Site, heads_site, identity_site, norm_bias
from interp_core.core.devices import real_tensor
from interp_core.core.errors import UnknownHookError


class GPT2Adapter(Adapter):
    family = "gpt2"
    norm = "layernorm"
    positional = "learned"

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.transformer.h

    @property
    def d_mlp(self) -> int:
        return int(self.config.n_inner or 4 * self.d_model)

    @property
    def n_ctx(self) -> int:
        return int(self.config.n_positions)

    @property
    def embed(self) -> nn.Embedding:
        return self.model.transformer.wte

    @property
    def final_norm(self) -> nn.Module:
        return self.model.transformer.ln_f

    def attention_scale(self, layer: int) -> float:
        """``1/sqrt(d_head)``, unless the config switches it off (``scale_attn_weights=False``); divided
        further by ``layer + 1`` with ``scale_attn_by_inverse_layer_idx=True`` (some Mistral/Stanford GPT-2 runs)."""
        scale = super().attention_scale(layer)
        if not getattr(self.config, "scale_attn_weights", True):
            scale = 1.0
        if getattr(self.config, "scale_attn_by_inverse_layer_idx", False):
            scale /= float(layer + 1)
        return scale

    def global_site(self, point: str) -> Site:
        if point == "hook_pos_embed":
            return identity_site(self.model.transformer.wpe, "output")
        return super().global_site(point)

    def _qkv_site(self, block: nn.Module, index: int) -> Site:
        """q, k or v out of the fused ``c_attn`` output ``(batch, pos, 3 * d_model)``."""
        d_model, d_head = self.d_model, self.d_head

        def read(raw: torch.Tensor) -> torch.Tensor:
            return raw.split(d_model, dim=-1)[index].unflatten(-1, (-1, d_head))

        def write(raw: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
            parts = list(raw.split(d_model, dim=-1))
            parts[index] = new.flatten(-2).to(raw.dtype)
            return torch.cat(parts, dim=-1)

        return Site(block.attn.c_attn, "output", read, write)

    def block_site(self, point: str, layer: int) -> Site:
        block = self.layers[layer]
        sites = {
            "hook_resid_pre": lambda: identity_site(block, "input"),
            "hook_resid_mid": lambda: identity_site(block.ln_2, "input", editable=False),
            "hook_resid_post": lambda: identity_site(block, "output"),
            "attn.hook_q": lambda: self._qkv_site(block, 0),
            "attn.hook_k": lambda: self._qkv_site(block, 1),
            "attn.hook_v": lambda: self._qkv_site(block, 2),
            "attn.hook_pattern": lambda: identity_site(block.attn, "output", editable=False, tuple_index=1),
            "attn.hook_z": lambda: heads_site(block.attn.c_proj, "input", self.d_head),
            "hook_attn_out": lambda: identity_site(block.attn, "output"),
            "mlp.hook_post": lambda: identity_site(block.mlp.c_proj, "input"),
            "hook_mlp_out": lambda: identity_site(block.mlp, "output"),
        }
        if point not in sites:
            raise UnknownHookError(f"'blocks.{layer}.{point}' does not exist in GPT-2 models.")
        return sites[point]()

    def pos_embed_weight(self) -> torch.Tensor | None:
        return real_tensor(self.model.transformer.wpe, "weight")

    def block_weights(self, layer: int) -> BlockWeights:
        block = self.layers[layer]
        n_heads, d_model, d_head = self.n_heads, self.d_model, self.d_head
        # Conv1D stores (in_features, out_features): columns are outputs.
        w_qkv = real_tensor(block.attn.c_attn, "weight")  # (d_model, 3 * d_model)
        b_qkv = real_tensor(block.attn.c_attn, "bias")  # (3 * d_model,)
        W_Q, W_K, W_V = (w.reshape(d_model, n_heads, d_head).permute(1, 0, 2) for w in w_qkv.split(d_model, dim=1))
        b_Q, b_K, b_V = (b.reshape(n_heads, d_head) for b in b_qkv.split(d_model))
        return BlockWeights(
            W_Q=W_Q, W_K=W_K, W_V=W_V, b_Q=b_Q, b_K=b_K, b_V=b_V,
            W_O=real_tensor(block.attn.c_proj, "weight").reshape(n_heads, d_head, d_model),
            b_O=real_tensor(block.attn.c_proj, "bias"),
            W_out=real_tensor(block.mlp.c_proj, "weight"),  # (d_mlp, d_model)
            b_out=real_tensor(block.mlp.c_proj, "bias"),
            ln1_w=real_tensor(block.ln_1, "weight"), ln1_b=norm_bias(block.ln_1),
            ln2_w=real_tensor(block.ln_2, "weight"), ln2_b=norm_bias(block.ln_2),
        )

    def block_parts(self, layer: int) -> BlockParts:
        block = self.layers[layer]
        d_model, d_head = self.d_model, self.d_head

        def qkv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return tuple(part.unflatten(-1, (-1, d_head)) for part in block.attn.c_attn(x).split(d_model, dim=-1))  # type: ignore[return-value]

        return BlockParts(block.ln_1, block.ln_2, block.mlp, qkv, block.attn.c_proj)
