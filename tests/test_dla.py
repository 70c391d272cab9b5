"""Direct logit attribution: the pieces must add up to the model's own logit (difference)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from page_harness import open_page
from streamlit.testing.v1 import AppTest

from interp_core.cli import main
from interp_core.core.errors import NotSingleTokenError, OutOfRangeError
from interp_core.techniques.contract import run
from interp_core.techniques.dla import (
    DlaRequest,
    HeadSourceRequest,
    SameTokenError,
    direct_logit_attribution,
    head_source_attribution,
)

PROMPT = "When Mary and John went to the store, John gave a drink to"
# float32 forward vs float64 sums of float32 pieces: the gap is float32 rounding of logits of size ~10.
ATOL = 1e-4
PAGE = "pages/07_direct_logit_attribution.py"


def attn_values(result) -> np.ndarray:
    return np.array([v for label, v in zip(result.labels, result.values) if label.endswith("attn")])


class TestClosure:
    @pytest.mark.parametrize("wrong", [None, " John"])
    @pytest.mark.parametrize("position", [-1, 3])
    def test_sum_plus_bias_equals_model_logit(self, tiny_model, wrong, position):
        """Components + norm/unembedding bias == the model's logit (difference), for every family and position."""
        result = direct_logit_attribution(tiny_model, PROMPT, " Mary", wrong, position=position)
        logits = tiny_model.forward(tiny_model.tokenize(PROMPT))[0, result.position].double()
        mary, john = tiny_model.single_token_id(" Mary"), tiny_model.single_token_id(" John")
        expected = float(logits[mary] - (logits[john] if wrong else 0.0))
        assert result.model_logit_diff == pytest.approx(expected, abs=1e-6)
        assert result.total == pytest.approx(expected, abs=ATOL)
        assert result.running[-1] + result.bias_term == pytest.approx(result.total, abs=1e-9)

    def test_labels_follow_the_residual(self, tiny_model):
        """embed (+ pos_embed for learned positions), then attn and mlp per layer."""
        result = direct_logit_attribution(tiny_model, PROMPT, " Mary")
        head = ["embed", "pos_embed"] if tiny_model.info.positional == "learned" else ["embed"]
        layers = [f"L{layer} {kind}" for layer in range(tiny_model.info.n_layers) for kind in ("attn", "mlp")]
        assert list(result.labels) == head + layers
        assert np.unique(np.round(result.values, 6)).size > 1  # not degenerate

    def test_bias_term_only_where_the_model_has_biases(self, tiny_model):
        """RMSNorm without lm_head bias has no bias term; LayerNorm models have one."""
        result = direct_logit_attribution(tiny_model, PROMPT, " Mary", " John")
        if tiny_model.info.norm == "rmsnorm":
            assert result.bias_term == 0.0
        else:
            assert result.bias_term != 0.0

    def test_embed_matches_hand_computation(self, tiny_gpt2):
        """The embedding's share equals W_E[token] through a hand-built LayerNorm with frozen scale."""
        result = direct_logit_attribution(tiny_gpt2, PROMPT, " Mary", " John")
        ids = tiny_gpt2.tokenize(PROMPT)[0]
        w = tiny_gpt2.weights
        x = w.W_E[ids[-1]].double()
        x = x - x.mean()
        u = (w.W_U[:, tiny_gpt2.single_token_id(" Mary")] - w.W_U[:, tiny_gpt2.single_token_id(" John")]).double()
        expected = float((x / result.scale * w.ln_final_w.double()) @ u)
        assert result.values[0] == pytest.approx(expected, rel=1e-6)  # summation order differs

    def test_default_answer_is_top_prediction_at_position(self, tiny_llama):
        """Without an answer, the answer is the argmax of the model's logits at that position."""
        logits = tiny_llama.forward(tiny_llama.tokenize(PROMPT))[0]
        for position in (2, -1):
            result = direct_logit_attribution(tiny_llama, PROMPT, position=position)
            assert result.answer_id == int(logits[position].argmax())
            assert result.total == pytest.approx(float(logits[position, result.answer_id]), abs=ATOL)


class TestHeads:
    def test_heads_plus_output_bias_equal_attention(self, tiny_model):
        """Per layer, sum over heads + the b_O term == the attention output's contribution."""
        result = direct_logit_attribution(tiny_model, PROMPT, " Mary", " John")
        np.testing.assert_allclose(result.heads.sum(1) + result.attn_bias, attn_values(result), atol=1e-6, rtol=0)
        assert result.heads.shape == (tiny_model.info.n_layers, tiny_model.info.n_heads)
        assert np.unique(np.round(result.heads, 6)).size > 1

    @pytest.mark.parametrize("position", [-1, 5])
    def test_sources_sum_to_head(self, tiny_model, position):
        """Per source position, A[q,k] v_kv(h)[k] pieces sum to the head's contribution (GQA included)."""
        result = direct_logit_attribution(tiny_model, PROMPT, " Mary", " John", position=position)
        for head in range(tiny_model.info.n_heads):
            source = head_source_attribution(tiny_model, PROMPT, 1, head, " Mary", " John", position=position)
            assert source.kv_head == tiny_model.adapter.kv_head_of(head)
            assert source.values.sum() == pytest.approx(source.head_total, abs=1e-6)
            assert source.head_total == pytest.approx(result.heads[1, head], abs=1e-9)
            assert np.all(source.values[source.position + 1 :] == 0)  # causal: nothing from the future
            assert source.attention.sum() == pytest.approx(1.0, abs=1e-5)

    def test_gqa_heads_share_values(self, tiny_llama):
        """Heads 0 and 1 of the tiny llama read KV head 0, heads 2 and 3 read KV head 1."""
        kv = [head_source_attribution(tiny_llama, PROMPT, 0, h, " Mary").kv_head for h in range(4)]
        assert kv == [0, 0, 1, 1]


class TestErrors:
    def test_multi_token_answer(self, tiny_gpt2):
        with pytest.raises(NotSingleTokenError, match="tokens for this model"):
            direct_logit_attribution(tiny_gpt2, PROMPT, " Marylebone station")

    def test_multi_token_wrong(self, tiny_gpt2):
        with pytest.raises(NotSingleTokenError):
            direct_logit_attribution(tiny_gpt2, PROMPT, " Mary", " Johnny Walker")

    def test_same_wrong_as_answer(self, tiny_gpt2):
        with pytest.raises(SameTokenError, match="same token"):
            direct_logit_attribution(tiny_gpt2, PROMPT, " Mary", " Mary")

    def test_position_out_of_range(self, tiny_gpt2):
        n = tiny_gpt2.tokenize(PROMPT).shape[1]
        with pytest.raises(OutOfRangeError, match="position"):
            direct_logit_attribution(tiny_gpt2, PROMPT, " Mary", position=n)

    def test_head_out_of_range(self, tiny_gpt2):
        with pytest.raises(OutOfRangeError, match="head"):
            head_source_attribution(tiny_gpt2, PROMPT, 0, 4, " Mary")
        with pytest.raises(OutOfRangeError, match="layer"):
            head_source_attribution(tiny_gpt2, PROMPT, 2, 0, " Mary")


class TestCli:
    def test_json_contract(self, tiny_model_dirs, tiny_gpt2, capsys):
        """`dla --json` prints layers (name, value), heads (layers x heads), total and model_logit_diff."""
        code = main(["dla", "--model", str(tiny_model_dirs["gpt2"]), "--device", "cpu", "--prompt", PROMPT,
                     "--answer", " Mary", "--wrong", " John", "--json"])
        assert code == 0
        out = json.loads(capsys.readouterr().out)
        assert {"layers", "heads", "total", "model_logit_diff"} <= set(out)
        assert [e["name"] for e in out["layers"]][:3] == ["embed", "pos_embed", "L0 attn"]
        assert np.array(out["heads"]).shape == (2, 4)
        logits = tiny_gpt2.forward(tiny_gpt2.tokenize(PROMPT))[0, -1]
        expected = float(logits[tiny_gpt2.single_token_id(" Mary")] - logits[tiny_gpt2.single_token_id(" John")])
        assert out["model_logit_diff"] == pytest.approx(expected, abs=1e-5)
        assert out["total"] == pytest.approx(expected, abs=ATOL)
        assert sum(e["value"] for e in out["layers"]) + out["bias_term"] == pytest.approx(out["total"], abs=1e-9)

    def test_bad_answer_is_an_error(self, tiny_model_dirs, capsys):
        code = main(["dla", "--model", str(tiny_model_dirs["llama"]), "--prompt", PROMPT, "--answer", " Marylebone station", "--json"])
        assert code == 2
        assert "not one" in json.loads(capsys.readouterr().out)["error"]

    def test_text_output(self, tiny_model_dirs, capsys):
        assert main(["dla", "--model", str(tiny_model_dirs["gpt_neox"]), "--prompt", PROMPT]) == 0
        text = capsys.readouterr().out
        assert "top heads:" in text and "gap" in text


class TestRequests:
    def test_dla_request_equals_the_direct_call_and_tables_match_the_json(self, tiny_model):
        """run(DlaRequest) gives the engine's own JSON; its tables hold the JSON's numbers."""
        result = run(tiny_model, DlaRequest(PROMPT, " Mary", " John", 4))
        data = result.to_json()
        assert data == direct_logit_attribution(tiny_model, PROMPT, " Mary", " John", position=4).to_json()
        tables = result.tables()
        components = tables["dla_components"]
        assert list(components["component"]) == [entry["name"] for entry in data["layers"]]
        assert list(components["contribution"]) == [entry["value"] for entry in data["layers"]]
        assert list(components["running_total"]) == data["running"]
        heads = tables["dla_heads"]
        assert list(heads["contribution"]) == [v for row in data["heads"] for v in row]
        assert list(heads["name"][:2]) == ["L0H0", "L0H1"]

    def test_head_source_request_equals_the_direct_call_and_tables_match_the_json(self, tiny_model):
        result = run(tiny_model, HeadSourceRequest(PROMPT, 1, 0, " Mary", None, 3))
        data = result.to_json()
        assert data == head_source_attribution(tiny_model, PROMPT, 1, 0, " Mary", position=3).to_json()
        table = result.tables()["dla_head_sources"]
        assert list(table["source"]) == [0, 1, 2, 3]  # up to the query position
        assert list(table["contribution"]) == data["values"][:4]
        assert list(table["attention"]) == data["attention"][:4]

    def test_empty_answer_is_no_answer(self):
        """The page's empty text boxes and the CLI's missing flags are one request (one cache entry)."""
        assert DlaRequest(PROMPT, "", "") == DlaRequest(PROMPT) and hash(DlaRequest(PROMPT, "", "")) == hash(DlaRequest(PROMPT))

    def test_bad_values(self, tiny_gpt2):
        with pytest.raises(OutOfRangeError, match="position"):
            DlaRequest(PROMPT, position=1.5)  # type: ignore[arg-type]
        with pytest.raises(OutOfRangeError, match="head must be between"):
            run(tiny_gpt2, HeadSourceRequest(PROMPT, 0, 99))


class TestPage:
    @pytest.fixture()
    def app(self, tiny_model_dirs) -> AppTest:
        return open_page(PAGE, tiny_model_dirs["gpt2"])

    def test_renders_charts_and_closing_check(self, app):
        """Default view: component bars, head heatmap, source bars, and the check's metrics."""
        app.run()
        assert not app.exception
        assert [e.value for e in app.error] == []
        assert len(app.get("vega_lite_chart")) + len(app.get("arrow_vega_lite_chart")) == 3
        labels = [m.label for m in app.metric]
        assert "Gap" in labels and "Sum + bias" in labels
        gap = float(next(m.value for m in app.metric if m.label == "Gap"))
        assert abs(gap) < ATOL

    def test_wrong_answer_and_position(self, app):
        app.run()
        app.text_input(key="dla_answer").set_value(" Mary")
        app.text_input(key="dla_wrong").set_value(" John")
        app.number_input(key="dla_pos").set_value(4).run()
        assert not app.exception
        assert [e.value for e in app.error] == []
        assert any("logit(' Mary') - logit(' John')" in m.value for m in app.markdown)

    def test_bad_answer_shows_error(self, app):
        app.run()
        app.text_input(key="dla_answer").set_value(" Marylebone station").run()
        assert not app.exception
        assert any("not one" in e.value for e in app.error)

    def test_position_out_of_range_shows_error(self, app):
        app.run()
        app.number_input(key="dla_pos").set_value(500).run()
        assert not app.exception
        assert any("position must be between" in e.value for e in app.error)


@pytest.mark.slow
def test_default_model_closes_on_paris(default_model):
    """SmolLM2-135M: ' Paris' is the top prediction and logit(Paris) - logit(Rome) decomposes exactly."""
    result = direct_logit_attribution(default_model, "The capital of France is", wrong=" Rome")
    assert result.answer == " Paris"
    assert result.gap == pytest.approx(0.0, abs=1e-3)  # 30 layers, residual norms ~100: float32 rounding
    np.testing.assert_allclose(result.heads.sum(1) + result.attn_bias, attn_values(result), atol=1e-5, rtol=0)
    top = int(np.abs(result.heads).argmax())
    layer, head = divmod(top, default_model.info.n_heads)
    source = head_source_attribution(default_model, "The capital of France is", layer, head, wrong=" Rome")
    assert source.values.sum() == pytest.approx(result.heads[layer, head], abs=1e-5)
    assert torch.isfinite(torch.tensor(result.values)).all()


class TestSharedRun:
    def test_head_split_and_top_answer_reuse_the_attribution_run(self, tiny_gpt2, monkeypatch):
        """A DLA with the top prediction as answer, then a head split of it, cost one forward in all, and
        the split still sums to the head's contribution in the attribution."""
        calls = []
        original = type(tiny_gpt2).run_with_cache
        monkeypatch.setattr(type(tiny_gpt2), "run_with_cache", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
        monkeypatch.setattr(type(tiny_gpt2), "forward", lambda *a, **k: pytest.fail("no forward of its own for the top answer"))
        prompt = PROMPT + " again"  # a prompt no other test has run on this model
        result = direct_logit_attribution(tiny_gpt2, prompt)
        split = head_source_attribution(tiny_gpt2, prompt, 1, 0)
        assert len(calls) == 1
        assert split.head_total == pytest.approx(float(result.heads[1, 0]), abs=1e-6)
        assert split.values.sum() == pytest.approx(split.head_total, abs=1e-5)
