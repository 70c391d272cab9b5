"""Attention page engine: patterns from one forward, head scores, token view, recomputation from weights, CLI, page."""

from __future__ import annotations

import json
from dataclasses import astuple

import numpy as np
import pytest
import torch
from page_harness import open_page
from streamlit.testing.v1 import AppTest

from interp_core import load_model
from interp_core.cli import main
from interp_core.core.errors import BadPromptError, OutOfRangeError
from interp_core.core.head_id import HeadId
from interp_core.techniques.attention import (
    SCORE_NAMES,
    AttentionPatterns,
    attention_patterns,
    attention_scale,
    block_norm,
    classify_heads,
    head_pattern,
    pattern_from_qk,
    scores_from_patterns,
    token_attention,
    verify_patterns,
)
from interp_core.testing.tiny_models import save_tiny_model

PROMPT = "When Mary and John went to the store, John gave a drink to"
REPEATED = "The cat sat on the mat. The cat sat on the mat."
PAGE = "pages/04_attention.py"
# Recomputing softmax(q.k) in float32 with the same steps in a different order: a few ulps.
TOL = 1e-5


def _hand_patterns(tokens: list[int], layers: list[list[np.ndarray]]) -> AttentionPatterns:
    return AttentionPatterns(tuple(str(t) for t in tokens), np.array(tokens), np.array(layers, dtype=np.float32))


def _previous(n: int) -> np.ndarray:
    a = np.zeros((n, n))
    a[0, 0] = 1
    a[np.arange(1, n), np.arange(n - 1)] = 1
    return a


def _first(n: int) -> np.ndarray:
    a = np.zeros((n, n))
    a[:, 0] = 1
    return a


class TestScoresOnHandBuiltPatterns:
    def test_each_job_ranks_its_head_first(self):
        """A previous-token head and a sink head get score 1 for their job and are ranked first."""
        n = 6
        found = scores_from_patterns(_hand_patterns(list(range(n)), [[_previous(n), _first(n)]]))
        assert found.scores["previous_token"][0].tolist() == pytest.approx([1.0, 1 / (n - 1)])  # query 1 of the sink reads key 0
        assert found.scores["first_token"][0].tolist() == pytest.approx([2 / n, 1.0])  # queries 0 and 1 of the previous-token head read key 0
        assert found.ranked("previous_token", 1) == [(0, 0, pytest.approx(1.0))]
        assert found.ranked("first_token", 1) == [(0, 1, pytest.approx(1.0))]
        assert np.isnan(found.scores["duplicate_token"]).all()  # nothing repeats
        assert found.ranked("duplicate_token") == []

    def test_entropy_ranks_focused_heads_first(self):
        """Entropy ranks ascending: a one-hot head (0 nats) before a uniform one (mean log(i+1))."""
        n = 5
        uniform = np.tril(np.ones((n, n)))
        uniform /= uniform.sum(-1, keepdims=True)
        found = scores_from_patterns(_hand_patterns(list(range(n)), [[uniform, _previous(n)]]))
        assert found.ranked("entropy") == [(0, 1, pytest.approx(0.0)), (0, 0, pytest.approx(np.mean(np.log(np.arange(1, n + 1)))))]

    def test_induction_and_duplicate_on_repeat(self):
        """On BOS + r + r an induction stripe scores 1 for induction, 0 for duplicate; and vice versa."""
        tokens = [0, 10, 11, 12, 10, 11, 12]
        n, T = len(tokens), 3
        induction, duplicate = np.zeros((n, n)), np.zeros((n, n))
        for i in range(n):
            induction[i, i - T + 1 if i > T else 0] = 1
            duplicate[i, i - T if i > T else 0] = 1
        found = scores_from_patterns(_hand_patterns(tokens, [[induction, duplicate]]))
        assert found.scores["induction"][0].tolist() == pytest.approx([1.0, 0.0])
        assert found.scores["duplicate_token"][0].tolist() == pytest.approx([0.0, 1.0])

    def test_token_attention_sums_keys_and_rejects_future(self):
        n = 4
        uniform = np.tril(np.ones((n, n)))
        uniform /= uniform.sum(-1, keepdims=True)
        found = _hand_patterns(list(range(n)), [[uniform, _previous(n)]])
        assert token_attention(found, 3, [0, 2]).tolist() == [[pytest.approx(0.5), pytest.approx(1.0)]]
        with pytest.raises(OutOfRangeError, match="after the query"):
            token_attention(found, 1, [2])
        with pytest.raises(OutOfRangeError, match="between 0 and 3"):
            token_attention(found, 9, [0])
        with pytest.raises(OutOfRangeError, match="at least one"):
            token_attention(found, 3, [])


class TestOnTinyModels:
    def test_patterns_equal_hf_attentions(self, tiny_model):
        """All layers' patterns from one forward equal HF's output_attentions."""
        found = attention_patterns(tiny_model, PROMPT)
        ids = tiny_model.tokenize(PROMPT)
        with torch.no_grad():
            expected = torch.stack(tiny_model.hf_model(ids, output_attentions=True).attentions)[:, 0].numpy()
        assert found.patterns.shape == (tiny_model.info.n_layers, tiny_model.info.n_heads, ids.shape[1], ids.shape[1])
        np.testing.assert_allclose(found.patterns, expected, atol=1e-6)

    def test_one_forward_for_all_scores(self, tiny_gpt2, monkeypatch):
        """classify_heads runs the model exactly once."""
        calls = []
        original = tiny_gpt2.hf_model.forward
        monkeypatch.setattr(tiny_gpt2.hf_model, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
        found = classify_heads(tiny_gpt2, REPEATED)
        assert len(calls) == 1
        assert set(found.scores) == set(SCORE_NAMES)
        assert all(v.shape == (2, 4) for v in found.scores.values())
        assert not np.isnan(found.scores["induction"]).any()  # the prompt repeats, so defined

    def test_scores_match_definitions_on_model_patterns(self, tiny_llama):
        """The previous-token score of each head is the mean of its pattern's sub-diagonal."""
        found = attention_patterns(tiny_llama, REPEATED)
        scores = scores_from_patterns(found)
        for layer in range(2):
            for head in range(4):
                sub = np.diagonal(found.patterns[layer, head], offset=-1)
                assert scores.scores["previous_token"][layer, head] == pytest.approx(sub.mean(), abs=1e-6)
        assert len(set(np.round(scores.scores["previous_token"].ravel(), 6))) > 1  # non-degenerate

    def test_bad_input(self, tiny_gpt2):
        with pytest.raises(BadPromptError):
            attention_patterns(tiny_gpt2, "  ")
        with pytest.raises(OutOfRangeError, match="layer must be between 0 and 1"):
            head_pattern(tiny_gpt2, PROMPT, 2, 0)
        with pytest.raises(OutOfRangeError, match="head must be between 0 and 3"):
            head_pattern(tiny_gpt2, PROMPT, 0, 4)


class TestVerification:
    def test_recomputed_patterns_match(self, tiny_model):
        """Every head of gpt2, llama (RoPE, GQA 4 heads on 2 KV heads) and NeoX (partial RoPE) recomputes to ~0 difference."""
        check = verify_patterns(tiny_model, PROMPT)
        assert check.diff_weights.shape == (tiny_model.info.n_layers, tiny_model.info.n_heads)
        assert check.diff_weights.max() < TOL
        assert check.diff_hooks.max() < TOL
        assert check.passed()
        assert check.captured.max() > 0.3  # real patterns, not all-uniform

    def test_check_detects_missing_steps(self, tiny_llama):
        """Leaving out RoPE or the scale gives a large difference: the check can fail."""
        _, cache = tiny_llama.run_with_cache(tiny_llama.tokenize(PROMPT))
        own = cache["blocks.1.attn.hook_pattern"][0]
        q = cache["blocks.1.attn.hook_q"][0]
        kv_of = [tiny_llama.adapter.kv_head_of(h) for h in range(4)]
        k = cache["blocks.1.attn.hook_k"][0][:, kv_of]
        assert (pattern_from_qk(tiny_llama, 1, q, k) - own).abs().max() < TOL
        no_rope = (torch.einsum("qhd,khd->hqk", q, k) * attention_scale(tiny_llama, 1)).masked_fill(
            torch.ones(q.shape[0], q.shape[0], dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
        assert (no_rope - own).abs().max() > 1e-3
        wrong_kv = cache["blocks.1.attn.hook_k"][0][:, [0, 1, 0, 1]]  # heads 1 and 2 read the wrong KV head
        assert (pattern_from_qk(tiny_llama, 1, q, wrong_kv) - own).abs().max() > 1e-3

    def test_gpt2_inverse_layer_scaling(self, tmp_path):
        """With scale_attn_by_inverse_layer_idx the scale of layer 1 halves, and the recomputation still matches."""
        model = load_model(str(save_tiny_model("gpt2", tmp_path / "g", scale_attn_by_inverse_layer_idx=True)), device="cpu")
        assert [attention_scale(model, layer) for layer in range(2)] == pytest.approx([0.25, 0.125])
        assert verify_patterns(model, PROMPT).max_diff < TOL

    def test_block_norm_matches_model(self, tiny_model):
        """The canonical ln1 reproduces the block's own input norm."""
        _, cache = tiny_model.run_with_cache(tiny_model.tokenize(PROMPT), ["blocks.1.hook_resid_pre"])
        block = tiny_model.adapter.layers[1]
        ln1 = getattr(block, "ln_1", None) or block.input_layernorm
        torch.testing.assert_close(block_norm(tiny_model, 1, cache["blocks.1.hook_resid_pre"]), ln1(cache["blocks.1.hook_resid_pre"]), atol=1e-5, rtol=1e-5)


class TestRequests:
    def test_requests_run_the_same_techniques(self, tiny_gpt2):
        """The contract's requests give the direct calls' results, and their tables hold the same numbers."""
        from interp_core.techniques.attention import HeadPatternRequest, HeadScoresRequest, PatternsRequest, VerifyRequest
        from interp_core.techniques.contract import run

        patterns = run(tiny_gpt2, PatternsRequest(PROMPT, 128))
        direct = attention_patterns(tiny_gpt2, PROMPT, max_tokens=128)
        np.testing.assert_array_equal(patterns.patterns, direct.patterns)
        n = len(patterns.tokens)
        assert len(patterns.tables()["patterns"]) == patterns.n_layers * patterns.n_heads * n * (n + 1) // 2
        scores = run(tiny_gpt2, HeadScoresRequest(PROMPT))
        np.testing.assert_array_equal(scores.scores["entropy"], patterns.scores.scores["entropy"])
        assert list(scores.tables()["head_scores"].columns) == ["layer", "head", *SCORE_NAMES]
        one = run(tiny_gpt2, HeadPatternRequest(PROMPT, 1, 2, verify=True)).to_json()
        assert list(one) == ["tokens", "layer", "head", "pattern", "verification"]
        np.testing.assert_array_equal(one["pattern"], head_pattern(tiny_gpt2, PROMPT, 1, 2)["pattern"])
        check = run(tiny_gpt2, VerifyRequest(PROMPT))
        assert len(check.tables()["pattern_check"]) == patterns.n_layers * patterns.n_heads and check.passed()

    def test_bad_requests_fail_before_any_model(self, tiny_gpt2):
        from interp_core.techniques.attention import HeadPatternRequest, PatternsRequest
        from interp_core.techniques.contract import run

        with pytest.raises(OutOfRangeError, match="max_tokens"):
            PatternsRequest(PROMPT, 0)
        assert PatternsRequest(PROMPT, 128) == PatternsRequest(PROMPT, 128) and hash(PatternsRequest(PROMPT)) == hash(PatternsRequest(PROMPT))
        with pytest.raises(OutOfRangeError, match="between 0 and"):
            run(tiny_gpt2, HeadPatternRequest(PROMPT, 99, 0))


class TestCli:
    def test_heads_json(self, tiny_model_dirs, capsys):
        assert main(["heads", "--model", str(tiny_model_dirs["llama"]), "--prompt", REPEATED, "--json", "--device", "cpu"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["layers"] == 2 and out["heads"] == 4
        model = load_model(str(tiny_model_dirs["llama"]), device="cpu")
        expected = classify_heads(model, REPEATED)
        for name in SCORE_NAMES:
            np.testing.assert_allclose(np.array(out[name], dtype=float), expected.scores[name], atol=1e-9)

    def test_pattern_json(self, tiny_model_dirs, capsys):
        directory = str(tiny_model_dirs["gpt2"])
        assert main(["pattern", "--model", directory, "--prompt", PROMPT, "--layer", "1", "--head", "2", "--json", "--verify"]) == 0
        out = json.loads(capsys.readouterr().out)
        model = load_model(directory, device="cpu")
        assert out["tokens"] == model.token_strings(model.tokenize(PROMPT)[0])
        np.testing.assert_allclose(np.array(out["pattern"]), attention_patterns(model, PROMPT).patterns[1, 2], atol=1e-7)
        assert out["verification"]["max_abs_diff_from_weights"] < TOL

    @pytest.mark.parametrize("flags", [["--layer", "2", "--head", "0"], ["--layer", "0", "--head", "4"], ["--layer", "-1", "--head", "0"]])
    def test_pattern_out_of_range(self, tiny_model_dirs, capsys, flags):
        code = main(["pattern", "--model", str(tiny_model_dirs["gpt2"]), "--prompt", PROMPT, "--json", *flags])
        assert code == 2
        assert "between 0 and" in json.loads(capsys.readouterr().out)["error"]


def _charts(at: AppTest) -> list:
    return list(at.get("vega_lite_chart")) + list(at.get("arrow_vega_lite_chart"))


@pytest.fixture()
def page(tiny_model_dirs) -> AppTest:
    return open_page(PAGE, tiny_model_dirs["gpt2"])


class TestPage:
    def test_renders_all_views(self, page):
        """The page shows the head pattern, layer multiples, token view and score charts, and the check passes."""
        page.run()
        assert not page.exception, page.exception
        assert [e.value for e in page.error] == []
        assert len(_charts(page)) >= 5
        (check,) = [s.value for s in page.success if "float precision" in s.value]
        assert "0.2500" in check and "RoPE" not in check  # the tiny GPT-2 (d_head 16), not the default model

    def test_jump_from_picker_sets_head(self, page):
        """Picking a ranked head and pressing the button moves the layer/head sliders to it."""
        page.run()
        choice = next(o for o in page.selectbox(key="attn_jump").options if "previous-token" in o)
        page.selectbox(key="attn_jump").set_value(choice).run()
        page.button(key="attn_open").click().run()
        assert not page.exception
        layer, head = astuple(HeadId.parse(choice.split(": ")[1].split(" ")[0]))
        assert (page.slider(key="attn_layer").value, page.slider(key="attn_head").value) == (layer, head)
        assert page.session_state["attn_view"] == "One head"  # the tab with the enlarged pattern opens

    def test_future_key_shows_error(self, page):
        page.run()
        page.selectbox(key="attn_query").set_value(0)
        page.multiselect(key="attn_keys").set_value([3]).run()
        assert not page.exception
        assert any("only attends backwards" in e.value for e in page.error)
        assert len(_charts(page)) >= 4  # the other views keep working

    def test_long_prompt_draws_every_view(self, page, tiny_gpt2):
        """Past 70 tokens one head's grid passes Altair's 5000-row limit: the page still draws every view, no error."""
        prompt = "Mary had a little lamb. " * 5
        assert 70 < tiny_gpt2.unknown_tokens(prompt)[1] <= 128
        page.session_state["prompt"] = prompt
        page.run()
        assert not page.exception, page.exception
        assert [e.value for e in page.error] == []
        assert len(_charts(page)) >= 5

    def test_overlong_prompt_shows_error(self, page):
        page.session_state["prompt"] = "Mary " * 200  # the sidebar is not reachable after switch_page in AppTest
        page.run()
        assert not page.exception
        assert any("limit here is 128" in e.value for e in page.error)


@pytest.mark.slow
def test_default_model_verifies_and_finds_known_heads(default_model):
    """SmolLM2-135M: every pattern recomputes from the weights (RoPE, 9 heads on 3 KV heads); L16H0 is a top previous-token head."""
    check = verify_patterns(default_model, PROMPT)
    assert check.max_diff < TOL
    scores = classify_heads(default_model, PROMPT)
    assert (16, 0) in [(layer, head) for layer, head, _ in scores.ranked("previous_token", 3)]


class TestCachedSpec:
    def test_template_draws_what_the_altair_chart_draws(self):
        """The cached Vega-Lite template plus one head's rows is the Altair chart's spec, data included."""
        from ui.attention_views import pattern_chart, pattern_frame, pattern_spec

        labels = ["0 'a'", "1 'b'", "2 'c'"]
        pattern = np.array([[1.0, 0, 0], [0.3, 0.7, 0], [0.2, 0.3, 0.5]])
        chart, _ = pattern_chart(pattern, labels, "L0H1")
        full = chart.to_dict()
        expected_rows = full["datasets"][full["data"]["name"]]
        template = pattern_spec(tuple(labels))
        assert {k: v for k, v in full.items() if k not in ("data", "datasets", "title")} == template
        assert pattern_frame(pattern, labels).to_dict(orient="records") == expected_rows

    def test_report_renders_a_spec_with_its_data(self):
        from ui.attention_views import pattern_frame, pattern_spec
        from ui.report import build_html_report

        labels = ["0 'a'", "1 'b'"]
        df = pattern_frame(np.array([[1.0, 0], [0.25, 0.75]]), labels)
        spec = {**pattern_spec(tuple(labels)), "title": "t", "data": {"values": df.to_dict(orient="records")}}
        text = build_html_report("Attention", {}, [{"name": "attention_L0H0", "caption": "", "chart": spec, "data": df}])
        assert "<svg" in text and "could not be rendered" not in text


class TestSliderMoveCost:
    @pytest.mark.parametrize("family", ["gpt2", "llama"])
    def test_loaded_model_is_freed_without_the_cycle_collector(self, tiny_model_dirs, family):
        """A loaded model holds no reference cycles: ui.state freezes the heap after each load (gc.freeze, so
        Streamlit's gc.collect after every script run stops walking it), which leaks only what a cycle holds."""
        import gc
        import weakref

        model = load_model(str(tiny_model_dirs[family]))
        refs = [weakref.ref(model), weakref.ref(model.hf_model), weakref.ref(model.adapter)]
        gc.collect()
        gc.disable()
        try:
            del model
            assert [ref() is None for ref in refs] == [True, True, True]
        finally:
            gc.enable()
