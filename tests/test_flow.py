"""Information flow (#16): parts that sum to their wholes, contributions, the route, the edge test, CLI and page."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from page_harness import open_page

from interp_core import load_model
from interp_core.cli.main import main
from interp_core.core.errors import BadPromptError, OutOfRangeError
from interp_core.core.names import hook_name
from interp_core.techniques import induction as ind
from interp_core.techniques.contract import run
from interp_core.techniques.flow import EdgeLensRequest, EdgeTestRequest, FlowRequest, route
from interp_core.techniques.flow.contributions import EPS, attention_parts, capture, resid_mid, value_outputs
from interp_core.testing.tiny_models import save_tiny_model

PROMPT = "When Mary and John went to the store, John gave a drink to"
PAGE = "pages/12_information_flow.py"
KEYS = {"tokens", "attn_contrib", "attn_resid_contrib", "mlp_contrib", "mlp_resid_contrib", "edges", "threshold"}


@pytest.fixture(scope="module")
def sequential_neox(tmp_path_factory):
    """A GPT-NeoX without the parallel residual: it has a real resid_mid hook point."""
    directory = save_tiny_model("gpt_neox", tmp_path_factory.mktemp("neox_seq"), use_parallel_residual=False)
    return load_model(str(directory), device="cpu")


def _whole_from_hooks(model, layer: int) -> torch.Tensor:
    """resid_mid as the model has it: its own hook, or resid_post - mlp_out for a parallel block (pos, d_model)."""
    ids = model.tokenize(PROMPT)
    if not model.info.parallel_residual:
        _, cache = model.run_with_cache(ids, [hook_name("hook_resid_mid", layer)])
        return cache[hook_name("hook_resid_mid", layer)][0]
    names = [hook_name("hook_resid_post", layer), hook_name("hook_mlp_out", layer)]
    _, cache = model.run_with_cache(ids, names)
    return cache[names[0]][0] - cache[names[1]][0]


def _direct_parts(model, cache, layer: int, q: int) -> tuple[list[tuple[int, int, torch.Tensor]], torch.Tensor]:
    """Every attention part of (layer, q) one at a time from the canonical weights, and the residual part."""
    w = model.weights.blocks[layer]
    v = cache[hook_name("attn.hook_v", layer)][0]
    pattern = cache[hook_name("attn.hook_pattern", layer)][0]
    parts = [(k, h, pattern[h, q, k] * (v[k, model.adapter.kv_head_of(h)] @ w.W_O[h]))
             for k in range(q + 1) for h in range(model.info.n_heads)]
    return parts, cache[hook_name("hook_resid_pre", layer)][0, q] + w.b_O


class TestParts:
    def test_attention_parts_sum_to_resid_mid(self, tiny_model):
        """Per block and per query: sum over (key, head) of the parts, plus resid_pre + b_O, is resid_mid."""
        ids = tiny_model.tokenize(PROMPT)
        _, cache = capture(tiny_model, ids)
        for layer in range(tiny_model.info.n_layers):
            vo = value_outputs(tiny_model, cache, layer)
            pattern = cache[hook_name("attn.hook_pattern", layer)][0]
            parts = attention_parts(pattern, vo, slice(0, ids.shape[1]))  # (query, key, head, d_model)
            total = parts.sum((1, 2)) + cache[hook_name("hook_resid_pre", layer)][0] + tiny_model.weights.blocks[layer].b_O
            torch.testing.assert_close(total, _whole_from_hooks(tiny_model, layer), atol=1e-4, rtol=1e-4)
            assert parts.abs().sum() > 0

    def test_sequential_neox_parts_sum_to_its_resid_mid_hook(self, sequential_neox):
        """The same on a GPT-NeoX with sequential blocks, against its own resid_mid hook."""
        ids = sequential_neox.tokenize(PROMPT)
        _, cache = capture(sequential_neox, ids)
        for layer in range(sequential_neox.info.n_layers):
            torch.testing.assert_close(resid_mid(sequential_neox, cache, layer), _whole_from_hooks(sequential_neox, layer),
                                       atol=1e-5, rtol=1e-5)

    def test_mlp_parts_sum_to_resid_post(self, tiny_model):
        """mlp_out + resid_mid == resid_post at every block."""
        _, cache = capture(tiny_model, tiny_model.tokenize(PROMPT))
        for layer in range(tiny_model.info.n_layers):
            torch.testing.assert_close(cache[hook_name("hook_mlp_out", layer)][0] + resid_mid(tiny_model, cache, layer),
                                       cache[hook_name("hook_resid_post", layer)][0], atol=1e-5, rtol=1e-5)

    def test_bias_goes_to_the_residual_part(self, tiny_gpt2):
        """Not vacuous: GPT-2's output projection has a bias, and without it the parts would not close."""
        assert tiny_gpt2.weights.blocks[0].b_O.abs().sum() > 0


class TestContributions:
    def test_equal_a_direct_per_part_computation(self, tiny_model):
        """Each contribution is max(|w|_1 - |w - p|_1, 1e-5) normalised over the whole's parts, part by part."""
        result = run(tiny_model, FlowRequest(PROMPT))
        ids = tiny_model.tokenize(PROMPT)
        _, cache = capture(tiny_model, ids)
        for layer in range(tiny_model.info.n_layers):
            whole = _whole_from_hooks(tiny_model, layer)
            for q in (0, ids.shape[1] // 2, ids.shape[1] - 1):
                parts, resid = _direct_parts(tiny_model, cache, layer, q)
                def score(p, w=whole[q]):
                    return max(float(w.abs().sum() - (w - p).abs().sum()), EPS)

                raw = {(k, h): score(p) for k, h, p in parts}
                total = sum(raw.values()) + score(resid)
                expected = np.zeros_like(result.attn[layer, q])
                for (k, h), value in raw.items():
                    expected[k, h] = value / total
                np.testing.assert_allclose(result.attn[layer, q], expected, atol=2e-5)
                assert result.attn_resid[layer, q] == pytest.approx(score(resid) / total, abs=2e-5)
            post = tiny_model.run_with_cache(ids, [hook_name("hook_resid_post", layer)])[1][hook_name("hook_resid_post", layer)][0]
            mlp_out = cache[hook_name("hook_mlp_out", layer)][0]
            for q in range(ids.shape[1]):
                a = max(float(post[q].abs().sum() - (post[q] - mlp_out[q]).abs().sum()), EPS)
                b = max(float(post[q].abs().sum() - (post[q] - whole[q]).abs().sum()), EPS)
                assert result.mlp[layer, q] == pytest.approx(a / (a + b), abs=2e-5)

    def test_each_whole_sums_to_one_and_future_keys_are_zero(self, tiny_model):
        """attn over (key, head) + attn_resid == 1, mlp + mlp_resid == 1; keys after the query get 0."""
        result = run(tiny_model, FlowRequest(PROMPT))
        np.testing.assert_allclose(result.attn.sum((2, 3)) + result.attn_resid, 1.0, atol=1e-5)
        np.testing.assert_allclose(result.mlp + result.mlp_resid, 1.0, atol=1e-5)
        n = len(result.tokens)
        future = np.triu(np.ones((n, n), dtype=bool), k=1)
        assert (result.attn[:, future] == 0).all()
        assert (result.attn[:, ~future] > 0).all() and result.attn.std() > 0  # not degenerate

    def test_chunked_queries_give_the_same_numbers(self, tiny_llama, monkeypatch):
        """Memory bound: computing one query at a time changes nothing."""
        whole = run(tiny_llama, FlowRequest(PROMPT))
        monkeypatch.setattr("interp_core.techniques.flow.contributions.CHUNK_ELEMENTS", 1)
        one_by_one = run(tiny_llama, FlowRequest(PROMPT))
        np.testing.assert_allclose(one_by_one.attn, whole.attn, atol=1e-6)


class TestRoute:
    def test_route_reaches_back_from_the_output_position(self, tiny_model):
        """Every edge is at or above the threshold and leads, edge by edge, to the output node."""
        result = run(tiny_model, FlowRequest(PROMPT, threshold=0.05, position=3))
        assert result.edges and result.position == 3
        reached = {(tiny_model.info.n_layers, 3)}
        for edge in result.edges:  # ordered from the last block down
            assert edge.weight >= 0.05 and edge.target in reached and edge.source[0] == edge.target[0] - 1
            reached.add(edge.source)

    def test_with_route_redraws_without_the_model(self, tiny_gpt2):
        """A higher threshold keeps a subset of the edges; the contributions are the same arrays."""
        low = run(tiny_gpt2, FlowRequest(PROMPT, threshold=0.01))
        high = low.with_route(0.3)
        assert set(high.edges) <= set(low.edges) and len(high.edges) < len(low.edges)
        assert high.attn is low.attn
        assert high.edges == route(low.attn, low.attn_resid, low.mlp, 0.3, len(low.tokens) - 1)
        assert low.with_route(1.0).edges == ()

    def test_induction_route_goes_through_a_layer1_head_to_the_token_after_the_earlier_copy(self):
        """Trained toy, BOS + r + r: from the last position, layer 1 reads the position after r's earlier copy of
        the last token, and layer 0 brings that position its previous token (the copy itself)."""
        toy = load_model("toy:induction", device="cpu")
        length = 20
        for seed in (1, 2):
            tokens = ind.run_repeated(toy, length, 2, seed=seed).tokens
            result = run(toy, FlowRequest(" ".join(toy.token_strings(tokens)), threshold=0.1))
            last = len(result.tokens) - 1
            after_copy = last - length + 1
            attn_edges = {(e.layer, e.source[1], e.target[1]) for e in result.edges if e.kind == "attn"}
            assert (1, after_copy, last) in attn_edges
            strongest = result.attn[1, last].sum(-1).argmax()
            assert strongest == after_copy
            assert (0, after_copy - 1, after_copy) in attn_edges


class TestEdge:
    def test_edge_ablation_removes_exactly_the_part_from_resid_mid(self, tiny_gpt2):
        """With the edge ablated, resid_mid[q] of that block moves by exactly minus the part; other positions stay."""
        ids = tiny_gpt2.tokenize(PROMPT)
        layer, q, k, h = 1, ids.shape[1] - 1, 2, 1
        request = EdgeTestRequest(PROMPT, layer=layer, query=q, source=k, head=h, mode="edge")
        name = hook_name("hook_resid_mid", layer)
        _, clean = tiny_gpt2.run_with_cache(ids, [name])
        _, edited = tiny_gpt2.run_with_cache(ids, [name], hooks=request.hooks(tiny_gpt2, ids))
        _, cache = capture(tiny_gpt2, ids)
        part = dict(((kk, hh), p) for kk, hh, p in _direct_parts(tiny_gpt2, cache, layer, q)[0])[(k, h)]
        torch.testing.assert_close(edited[name][0, q], clean[name][0, q] - part, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(edited[name][0, :q], clean[name][0, :q])

    def test_head_ablation_removes_every_source_of_that_head(self, tiny_llama):
        """Zeroing the head's z at q equals subtracting its parts from every source (GQA model)."""
        ids = tiny_llama.tokenize(PROMPT)
        layer, q, h = 0, ids.shape[1] - 2, 3
        head = EdgeTestRequest(PROMPT, layer=layer, query=q, head=h, mode="head")
        part = EdgeLensRequest(PROMPT, layer=layer, query=q, head=h).part(tiny_llama, ids)  # the head, every source

        def remove(out, name):
            out = out.clone()
            out[:, q] -= part
            return out

        expected = tiny_llama.forward(ids, hooks=[(hook_name("hook_attn_out", layer), remove)])
        torch.testing.assert_close(tiny_llama.forward(ids, hooks=head.hooks(tiny_llama, ids)), expected, atol=1e-5, rtol=1e-5)

    def test_result_reports_the_change(self, tiny_gpt2):
        """The result's numbers are the runs' own: clean log-prob of the clean top token, and a change."""
        ids = tiny_gpt2.tokenize(PROMPT)
        test = run(tiny_gpt2, EdgeTestRequest(PROMPT, layer=1, query=-1, source=0, head=0, mode="head"))
        clean = tiny_gpt2.forward(ids)[0, -1].double().log_softmax(-1)
        assert test.clean_logprob == pytest.approx(float(clean.max()), abs=1e-6)
        assert test.target == tiny_gpt2.token_strings([int(clean.argmax())])[0]
        assert test.change != 0 and test.kl > 0
        lens = run(tiny_gpt2, EdgeLensRequest(PROMPT, layer=1, query=-1, source=0, head=0))
        assert lens.norm > 0 and len(lens.tokens) == 8

    def test_bad_edge_requests(self, tiny_gpt2):
        """A source after the query, a missing head, an unknown mode or head index are refused clearly."""
        with pytest.raises(OutOfRangeError, match="source must be"):
            run(tiny_gpt2, EdgeTestRequest(PROMPT, layer=0, query=2, source=5, head=0))
        with pytest.raises(OutOfRangeError, match="needs a head"):
            EdgeTestRequest(PROMPT, layer=0, query=2, source=1)
        with pytest.raises(OutOfRangeError, match="mode"):
            EdgeTestRequest(PROMPT, layer=0, query=2, source=1, head=0, mode="zero")
        with pytest.raises(OutOfRangeError, match="head must be"):
            run(tiny_gpt2, EdgeTestRequest(PROMPT, layer=0, query=2, source=1, head=9))


class TestBadInput:
    def test_empty_prompt(self):
        with pytest.raises(BadPromptError, match="empty"):
            FlowRequest("  ")

    @pytest.mark.parametrize("threshold", [-0.1, 1.5, float("nan"), "a"])
    def test_threshold_outside_0_1(self, threshold):
        with pytest.raises(OutOfRangeError, match="threshold must be a number from 0 to 1"):
            FlowRequest(PROMPT, threshold=threshold)

    def test_prompt_over_the_context(self, tiny_gpt2):
        with pytest.raises(BadPromptError, match="limit here is 128"):
            run(tiny_gpt2, FlowRequest("one two three " * 100))

    def test_position_outside_the_prompt(self, tiny_gpt2):
        with pytest.raises(OutOfRangeError, match="position must be a token index"):
            run(tiny_gpt2, FlowRequest(PROMPT, position=500))


class TestCli:
    def test_json_has_exactly_the_issue_keys(self, tiny_model_dirs, capsys):
        """flow --prompt P --threshold T --json: the issue's keys, nested [layer][query][key][head]."""
        code = main(["flow", "--model", str(tiny_model_dirs["llama"]), "--prompt", PROMPT, "--threshold", "0.1", "--json"])
        out = json.loads(capsys.readouterr().out)
        assert code == 0 and set(out) == KEYS and out["threshold"] == 0.1
        n = len(out["tokens"])
        attn = np.array(out["attn_contrib"])
        assert attn.shape == (2, n, n, 4) and np.array(out["mlp_contrib"]).shape == (2, n)
        assert out["edges"] and set(out["edges"][0]) == {"from", "to", "kind", "weight"}
        assert all(e["weight"] >= 0.1 for e in out["edges"])

    def test_bad_threshold_is_one_json_error(self, tiny_model_dirs, capsys):
        code = main(["flow", "--model", str(tiny_model_dirs["gpt2"]), "--prompt", PROMPT, "--threshold", "2", "--json"])
        assert code == 2 and "threshold" in json.loads(capsys.readouterr().out)["error"]


class TestPage:
    def test_page_draws_the_route_and_tests_an_edge(self, tiny_model_dirs):
        """First load: the IOI preset's route is drawn; the threshold slider redraws; Test this edge shows a result."""
        at = open_page(PAGE, tiny_model_dirs["llama"])
        at.run()
        assert not at.exception, at.exception
        assert not at.error, [e.value for e in at.error]
        assert at.session_state["prompt"] == PROMPT
        assert at.get("vega_lite_chart"), "no chart on the page"
        before = next(c.value for c in at.caption if "edges above" in c.value)
        at.slider(key="flow_threshold").set_value(0.2).run()
        assert not at.exception
        after = next(c.value for c in at.caption if "edges above" in c.value)
        assert "above 0.200" in after and int(after.split()[0]) < int(before.split()[0])  # redrawn with fewer edges
        at.button(key="flow_test").click().run()
        assert not at.exception and not at.error
        assert any("log-probability of" in c.value for c in at.caption)  # the test's result is on screen
        assert [m.label for m in at.metric][0] == "Contribution (correlational)"

    def test_a_node_can_be_inspected_and_its_head_ablated(self, tiny_model_dirs):
        """Inspecting a node offers only the whole-head ablation, and its test runs."""
        at = open_page(PAGE, tiny_model_dirs["gpt2"])
        at.run()
        at.radio(key="flow_inspect").set_value("a node").run()
        assert not at.exception, at.exception
        assert len(at.radio(key="flow_mode").options) == 1  # a node has no single source: only the whole head
        at.button(key="flow_test").click().run()
        assert not at.exception and not at.error
        assert at.metric[0].label == "Contribution (correlational)"

    def test_a_low_threshold_on_a_long_prompt_draws_the_strongest_edges_only(self, tiny_model_dirs):
        """Threshold 0 keeps every edge; the page draws a bounded number of them and says so."""
        at = open_page(PAGE, tiny_model_dirs["gpt2"], prompt="one two three four five six seven eight nine ten " * 8,
                       flow_threshold=0.0)
        at.run()
        assert not at.exception and not at.error
        assert any("strongest 4000 drawn" in c.value for c in at.caption)
        assert len(at.selectbox(key="flow_edge").options) == 500

    def test_an_empty_prompt_is_one_error_box(self, tiny_model_dirs):
        at = open_page(PAGE, tiny_model_dirs["gpt2"], prompt=" ")
        at.run()
        assert not at.exception and at.error and "empty" in at.error[0].value
