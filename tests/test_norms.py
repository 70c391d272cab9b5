"""Norm arithmetic is the adapter's: every technique calls these methods, so they must match the model."""

from __future__ import annotations

import pytest
import torch

from interp_core import load_model
from interp_core.core.model import LoadedModel
from interp_core.testing.tiny_models import FAMILIES, save_tiny_model

TOL = dict(atol=1e-5, rtol=1e-5)  # float32 norms recomputed outside the model's own kernels


@pytest.fixture(scope="module", params=FAMILIES)
def uneven(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """A tiny model of each family whose norm weights are not all ones."""
    directory = save_tiny_model(request.param, tmp_path_factory.mktemp(f"norms_{request.param}"), uneven_norms=True)
    return load_model(str(directory), device="cpu")


class TestAdapterNorms:
    def test_final_norm_matches_the_model(self, uneven):
        """apply_final_norm from canonical weights equals the model's own final norm module."""
        x = torch.randn(3, 5, uneven.info.d_model) * 2 + 0.3
        torch.testing.assert_close(uneven.adapter.apply_final_norm(x, uneven.weights), uneven.apply_final_norm(x).float(), **TOL)

    def test_block_norm_matches_the_model(self, uneven):
        """apply_block_norm equals the block's ln1 output captured from a real forward pass."""
        tokens = uneven.tokenize("the cat sat on the mat")
        _, cache = uneven.run_with_cache(tokens, ["blocks.1.hook_resid_pre", "blocks.1.attn.hook_q"])
        x = uneven.adapter.apply_block_norm(cache["blocks.1.hook_resid_pre"], uneven.weights.blocks[1])
        b = uneven.weights.blocks[1]
        q = torch.einsum("bpd,hde->bphe", x, b.W_Q.float()) + b.b_Q.float()
        torch.testing.assert_close(q, cache["blocks.1.attn.hook_q"].float(), **TOL)

    def test_folded_reader_is_norm_then_read(self, uneven):
        """norm(x) @ W == x @ fold(W) / scale(x) + b @ W: folding moves the norm's weight and centring into W."""
        adapter, w = uneven.adapter, uneven.weights
        x = torch.randn(4, uneven.info.d_model)
        W = torch.randn(uneven.info.d_model, 7)
        bias = w.ln_final_b.float() @ W if w.ln_final_b is not None else 0.0
        folded = x @ adapter.fold_norm_into_reader(W, w.ln_final_w.float()) / adapter.norm_scale(x) + bias
        torch.testing.assert_close(folded, adapter.apply_final_norm(x, w) @ W, **TOL)

    def test_centred_writer_drops_only_what_the_norm_ignores(self, uneven):
        """LayerNorm: a writer's mean over d_model is invisible to the norm, and centre_writer drops it.
        RMSNorm: the mean is visible, and centre_writer keeps the writer unchanged."""
        adapter = uneven.adapter
        W = torch.randn(3, uneven.info.d_model) + 1.0
        resid = torch.randn(3, uneven.info.d_model)
        mean_dropped = W - W.mean(-1, keepdim=True)
        invisible = torch.allclose(adapter.apply_norm(resid + W), adapter.apply_norm(resid + mean_dropped), **TOL)
        assert invisible == adapter.centres
        torch.testing.assert_close(adapter.centre_writer(W), mean_dropped if adapter.centres else W)

    def test_attention_scale_reads_gpt2_config(self, tmp_path):
        """GPT-2's adapter honours scale_attn_weights / scale_attn_by_inverse_layer_idx; d_head = 16 here."""
        plain = load_model(str(save_tiny_model("gpt2", tmp_path / "a")), device="cpu")
        assert plain.adapter.attention_scale(1) == pytest.approx(0.25)
        by_layer = load_model(str(save_tiny_model("gpt2", tmp_path / "b", scale_attn_by_inverse_layer_idx=True)), device="cpu")
        assert [by_layer.adapter.attention_scale(layer) for layer in range(2)] == pytest.approx([0.25, 0.125])
        off = load_model(str(save_tiny_model("gpt2", tmp_path / "c", scale_attn_weights=False)), device="cpu")
        assert off.adapter.attention_scale(0) == 1.0
