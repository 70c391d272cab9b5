"""Induction heads: the repeated sequence, scores, losses, ablation evidence, K-composition, CLI and page.

Two correctness anchors: the shipped 2-layer induction toy (trained by the project's own code on
repeated random segments, ``toy_models/induction``), whose top induction head must sit in layer
1 and top previous-token head in layer 0; and the real SmolLM2-135M (tests below).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from page_harness import open_page
from streamlit.testing.v1 import AppTest

from interp_core import cli, load_model
from interp_core.core.errors import BadPromptError, OutOfRangeError, WorkbenchError
from interp_core.core.model import LoadedModel
from interp_core.techniques import induction as ind
from interp_core.techniques import induction_ablation as abl
from interp_core.techniques.ablation import ablation_hooks
from interp_core.techniques.head_scores import repeated_induction_score
from interp_core.testing.tiny_models import save_tiny_model

PAGE = "pages/05_induction_heads.py"

# --- the trained toy -----------------------------------------------------------------------
TOY_LENGTH = 20  # the shipped toy's context is 41 = BOS + 2 x 20


@pytest.fixture(scope="module")
def trained_toy() -> LoadedModel:
    """The shipped induction toy (2 layers, 2 heads, rotary), loaded through the app's own path."""
    return load_model("toy:induction", device="cpu")


class TestTrainedToy:
    def test_heads_sit_in_the_right_layers(self, trained_toy: LoadedModel) -> None:
        """Top induction head in layer 1, top previous-token head in layer 0, repeated half far easier."""
        for seed in (1, 2):
            result = ind.run_repeated(trained_toy, TOY_LENGTH, 2, seed=seed)
            top = result.top_heads(1)[0]
            assert top["layer"] == 1 and top["induction"] > 0.5
            assert result.induction[0].max() < 0.1  # layer 0 cannot do induction on its own
            assert result.top_previous_token(1)[0][0] == 0
            assert result.previous_token[0].max() > 0.4 > result.previous_token[1].max()
            assert result.loss_first_half > np.log(64) - 0.5  # the first copy is random over 64 symbols
            assert result.loss_repeated_half < 0.25 * result.loss_first_half

    def test_previous_token_heads_feed_the_induction_heads(self, trained_toy: LoadedModel) -> None:
        """Zeroing layer 0's heads breaks the repeated half (induction needs them); the first half barely moves."""
        result = ind.run_repeated(trained_toy, TOY_LENGTH, 2, seed=1)
        tokens = torch.as_tensor(result.tokens)[None]
        hooks = ablation_hooks(trained_toy, [("head", 0, h) for h in range(trained_toy.info.n_heads)], "zero")
        loss = ind.token_losses(trained_toy.forward(tokens, hooks=hooks), tokens)[0].numpy()
        first, repeated = ind.half_means(loss, TOY_LENGTH)
        assert repeated - result.loss_repeated_half > 2.0
        assert abs(first - result.loss_first_half) < 0.5

    def test_weights_wire_layer0_into_layer1(self, trained_toy: LoadedModel) -> None:
        """K-composition of the top previous-token head into the top induction head stands far above random."""
        result = ind.run_repeated(trained_toy, TOY_LENGTH, 2, seed=1)
        top = result.top_heads(1)[0]
        comp = ind.k_composition(trained_toy, top["layer"], top["head"])
        prev_layer, prev_head = result.top_previous_token(1)[0][:2]
        assert comp.scores[prev_layer, prev_head] > comp.baseline_mean + 10 * comp.baseline_std


# --- the sequence and the scores ------------------------------------------------------------
class TestRepeatedTokens:
    def test_shape_bos_and_copies(self, tiny_gpt2):
        """BOS then identical copies; ids inside the vocabulary and never BOS; the seed decides them."""
        tokens = ind.repeated_tokens(tiny_gpt2, 7, 3, seed=4)[0]
        assert tokens.shape == (22,) and tokens[0] == ind.bos_id(tiny_gpt2)
        assert torch.equal(tokens[1:8], tokens[8:15]) and torch.equal(tokens[1:8], tokens[15:22])
        assert (tokens[1:] < tiny_gpt2.info.d_vocab).all() and (tokens[1:] != tokens[0]).all()
        assert torch.equal(tokens, ind.repeated_tokens(tiny_gpt2, 7, 3, seed=4)[0])
        assert not torch.equal(tokens, ind.repeated_tokens(tiny_gpt2, 7, 3, seed=5)[0])

    def test_bad_lengths(self, tiny_gpt2):
        """Too long for the context, too short, or a single copy: clear errors."""
        with pytest.raises(BadPromptError, match="context"):
            ind.repeated_tokens(tiny_gpt2, 100, 2)
        with pytest.raises(BadPromptError, match="at least 2"):
            ind.repeated_tokens(tiny_gpt2, 1, 2)
        with pytest.raises(BadPromptError, match="repeats"):
            ind.repeated_tokens(tiny_gpt2, 5, 1)


class TestRunRepeated:
    def test_losses_match_the_model(self, tiny_model):
        """Per-position loss equals cross-entropy of the model's own logits; halves are their means."""
        result = ind.run_repeated(tiny_model, 9, 2, seed=2)
        tokens = torch.as_tensor(result.tokens)[None]
        logits = tiny_model.forward(tokens)[0]
        expected = torch.nn.functional.cross_entropy(logits[:-1], tokens[0, 1:], reduction="none").numpy()
        np.testing.assert_allclose(result.loss, expected, rtol=1e-5, atol=1e-5)
        assert result.loss_first_half == pytest.approx(expected[:9].mean(), abs=1e-5)
        assert result.loss_repeated_half == pytest.approx(expected[9:].mean(), abs=1e-5)

    def test_induction_is_the_guide_score(self, tiny_gpt2):
        """run_repeated's induction grid is head_scores.repeated_induction_score of its own patterns."""
        result = ind.run_repeated(tiny_gpt2, 12, 2, seed=0)
        np.testing.assert_array_equal(result.induction, repeated_induction_score(result.patterns, 12))
        assert result.induction.std() > 0  # not degenerate

    def test_top_heads_sorted(self, tiny_gpt2):
        result = ind.run_repeated(tiny_gpt2, 6, 2, seed=0)
        scores = [h["induction"] for h in result.top_heads(8)]
        assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(result.induction.max())


class TestPromptInduction:
    def test_pattern_and_mask(self, tiny_llama):
        """The head's pattern is the model's own; the mask marks the token after an earlier copy."""
        prompt = "The cat sat. The cat sat."
        got = ind.prompt_induction(tiny_llama, prompt, 1, 2)
        _, cache = tiny_llama.run_with_cache(tiny_llama.tokenize(prompt), ["blocks.1.attn.hook_pattern"])
        np.testing.assert_allclose(got.pattern, cache["blocks.1.attn.hook_pattern"][0, 2].numpy(), rtol=1e-6)
        assert got.mask.any() and got.scores.shape == (2, 4)

    def test_out_of_range_head(self, tiny_gpt2):
        with pytest.raises(OutOfRangeError, match="head"):
            ind.prompt_induction(tiny_gpt2, "a b a b", 0, 7)


# --- evidence ---------------------------------------------------------------------------------
class TestAblationEvidence:
    def test_random_heads_share_layers_and_avoid_targets(self):
        """Random heads come from the targets' layers, never the targets, reproducibly."""
        targets = [(3, 1), (3, 4), (7, 0)]
        a = abl.random_heads_like(targets, 10, 9, np.random.default_rng(0))
        b = abl.random_heads_like(targets, 10, 9, np.random.default_rng(0))
        assert a == b and len(set(a)) == 3 and not set(a) & set(targets)
        assert sorted(L for L, _ in a) == [3, 3, 7]

    def test_full_layer_falls_back_to_other_layers(self):
        """When a layer has no other heads left, the draw still returns distinct non-target heads."""
        targets = [(1, 0), (1, 1), (1, 2)]
        heads = abl.random_heads_like(targets, 2, 4, np.random.default_rng(1))
        assert len(set(heads)) == 3 and not set(heads) & set(targets) and (1, 3) in heads

    def test_losses_match_direct_ablation(self, tiny_gpt2):
        """The recorded ablated losses equal a forward with the same ablation hooks."""
        ev = abl.ablation_evidence(tiny_gpt2, 8, 2, seed=3, k=2, method="mean", n_draws=2)
        tokens = ind.repeated_tokens(tiny_gpt2, 8, 2, 3)
        assert ev.loss_clean == pytest.approx(ind.run_repeated(tiny_gpt2, 8, 2, 3).loss, abs=1e-5)
        top = [(h["layer"], h["head"]) for h in ind.run_repeated(tiny_gpt2, 8, 2, 3).top_heads(2)]
        heads = [abl.random_heads_like(top, 2, 4, np.random.default_rng(0))]
        assert [ind.head_label(*h) for h in heads[0]] == list(ev.random_sets[0])
        ref_batch = torch.cat([ind.repeated_tokens(tiny_gpt2, 8, 2, 3 + 1 + i) for i in range(8)])
        from interp_core.techniques.ablation import reference_activations

        ref = reference_activations(tiny_gpt2, ref_batch, [("head", 0, 0), ("head", 1, 0)])
        hooks = ablation_hooks(tiny_gpt2, [("head", L, h) for L, h in heads[0]], "mean", ref)
        direct = ind.token_losses(tiny_gpt2.forward(tokens, hooks=hooks), tokens)[0].numpy()
        np.testing.assert_allclose(ev.loss_random[0], direct, rtol=1e-5, atol=1e-5)
        assert json.dumps(cli.to_jsonable(ev.to_json()))

    def test_bad_k(self, tiny_gpt2):
        with pytest.raises(OutOfRangeError, match="k must be"):
            abl.ablation_evidence(tiny_gpt2, 8, 2, k=5)
        with pytest.raises(WorkbenchError, match="method"):
            abl.ablation_evidence(tiny_gpt2, 8, 2, k=1, method="resample")


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def uneven_norms(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """A tiny model whose norm weights are drawn from U(0.5, 1.5), saved and loaded like any other."""
    directory = save_tiny_model(request.param, tmp_path_factory.mktemp(f"uneven_{request.param}"), uneven_norms=True)
    return load_model(str(directory), device="cpu")


class TestKComposition:
    def test_matches_dense_formula(self, tiny_llama):
        """Without folding: ||W_OV W_QK^T||_F / (||W_OV||_F ||W_QK||_F) built densely from the raw weights."""
        kc = ind.k_composition(tiny_llama, 1, 3, fold_norm=False)
        b0, b1 = tiny_llama.weights.blocks
        W_QK = b1.W_Q[3].double() @ b1.W_K[3].double().T
        for h in range(4):
            W_OV = b0.W_V[h].double() @ b0.W_O[h].double()
            dense = torch.linalg.norm(W_OV @ W_QK.T) / (torch.linalg.norm(W_OV) * torch.linalg.norm(W_QK))
            # float32 ratio of norms (composition._scores_into) against a float64 reference: ~100x float32 eps
            assert kc.scores[0, h] == pytest.approx(float(dense), rel=1e-5)
        assert np.isnan(kc.scores[1]).all()

    def test_pairs_agree_with_map(self, tiny_gpt2):
        """The pair matrix reads the same numbers as the per-head map; non-earlier sources are NaN."""
        kc = ind.k_composition(tiny_gpt2, 1, 0)
        pairs = ind.k_composition_pairs(tiny_gpt2, [(0, 2), (1, 1)], [(1, 0)])
        assert pairs[0, 0] == pytest.approx(kc.scores[0, 2]) and np.isnan(pairs[1, 0])
        assert 0 < kc.baseline_mean < 1 and kc.baseline_std > 0

    def test_norm_folding_matters(self, uneven_norms):
        """With norm weights not all ones, folding changes every score, and the folded score is the
        GUIDE's definition with each norm folded in (readers P diag(w) W, writers W P; P centres for LayerNorm)."""
        model = uneven_norms
        assert not torch.allclose(model.weights.blocks[1].ln1_w, torch.ones(model.info.d_model))
        folded = ind.k_composition(model, 1, 1, fold_norm=True).scores[0]
        raw = ind.k_composition(model, 1, 1, fold_norm=False).scores[0]
        assert np.all(np.abs(folded - raw) > 1e-3 * np.abs(raw)), (folded, raw)
        d = model.info.d_model
        P = torch.eye(d, dtype=torch.float64)
        if model.info.norm == "layernorm":
            P -= 1.0 / d
        b0, b1 = model.weights.blocks
        w0, w1 = torch.diag(b0.ln1_w.double()), torch.diag(b1.ln1_w.double())
        W_QK = (P @ w1 @ b1.W_Q[1].double()) @ (P @ w1 @ b1.W_K[1].double()).T
        for h in range(model.info.n_heads):
            W_OV = (P @ w0 @ b0.W_V[h].double()) @ (b0.W_O[h].double() @ P)
            reference = torch.linalg.norm(W_OV @ W_QK.T) / (torch.linalg.norm(W_OV) * torch.linalg.norm(W_QK))
            assert folded[h] == pytest.approx(float(reference), rel=1e-5)  # float32 ratio vs float64 reference


class TestRequests:
    def test_requests_validate_before_any_model(self):
        """Bad lengths, copies, seeds and ablation options fail when the request is built; equal requests are one key."""
        assert ind.InductionRequest(10, 2, 3) == ind.InductionRequest(10, 2, 3)
        assert hash(ind.InductionRequest(10, 2, 3)) == hash(ind.InductionRequest(10, 2, 3))
        with pytest.raises(BadPromptError, match="at least 2"):
            ind.InductionRequest(1)
        with pytest.raises(BadPromptError, match="repeats"):
            ind.InductionRequest(5, 1)
        with pytest.raises(OutOfRangeError, match="seed"):
            ind.InductionRequest(5, 2, -(2**64))
        with pytest.raises(WorkbenchError, match="method"):
            abl.AblationRequest(8, method="resample")
        with pytest.raises(OutOfRangeError, match="draws"):
            abl.AblationRequest(8, draws=0)

    def test_run_equals_the_functions(self, tiny_gpt2):
        """run() gives the engine functions' results; k beyond half the heads is refused against the model."""
        from interp_core.techniques.contract import run

        got = run(tiny_gpt2, ind.InductionRequest(8, 2, 3))
        expected = ind.run_repeated(tiny_gpt2, 8, 2, 3)
        assert cli.to_jsonable(got.to_json(4)) == cli.to_jsonable(expected.to_json(4))
        tables = got.tables()
        np.testing.assert_array_equal(tables["induction_scores"]["induction"], got.induction.ravel())
        assert list(tables["induction_loss_by_position"]["part"]).count("first copy") == 8
        assert got.pattern_table(1, 2)["target"].sum() == 8  # one stripe cell per query of the second copy
        ev = run(tiny_gpt2, abl.AblationRequest(8, 2, 3, k=2, draws=2))
        bars = ev.tables()["induction_ablation"]
        assert list(bars["loss"]) == [ev.clean_repeated, ev.top_repeated, *ev.random_repeated]
        with pytest.raises(OutOfRangeError, match="k must be"):
            run(tiny_gpt2, abl.AblationRequest(8, k=5))


class TestCli:
    def test_json_contract(self, tiny_model_dirs, capsys):
        """`induction --json` prints the contract keys, equal to the engine's values."""
        code = cli.main(["induction", "--model", str(tiny_model_dirs["gpt2"]), "--length", "10", "--seed", "3", "--json"])
        out = json.loads(capsys.readouterr().out)
        assert code == 0
        for key in ("induction", "previous_token", "loss_first_half", "loss_repeated_half", "top_heads"):
            assert key in out
        model = load_model(str(tiny_model_dirs["gpt2"]), device="cpu")
        expected = ind.run_repeated(model, 10, 2, 3)
        np.testing.assert_allclose(np.array(out["induction"]), expected.induction, rtol=1e-5)
        assert np.array(out["previous_token"]).shape == (2, 4)
        assert out["loss_repeated_half"] == pytest.approx(expected.loss_repeated_half, abs=1e-5)
        assert out["top_heads"][0]["label"] == expected.top_heads(1)[0]["label"]

    def test_ablation_and_error(self, tiny_model_dirs, capsys):
        model = str(tiny_model_dirs["gpt2"])
        assert cli.main(["induction", "--model", model, "--length", "6", "--ablate", "1", "--draws", "2", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert len(out["ablation"]["random_heads"]) == 2
        assert cli.main(["induction", "--model", model, "--length", "500", "--json"]) == 2
        assert "context" in json.loads(capsys.readouterr().out)["error"]


# --- the page ---------------------------------------------------------------------------------
class TestPage:
    @pytest.fixture()
    def page(self, tiny_model_dirs) -> AppTest:
        return open_page(PAGE, tiny_model_dirs["gpt2"], ind_len=12)

    def test_renders_and_ablates(self, page):
        """The page draws its charts; one click on Ablate adds the ablation chart."""
        page.run()
        assert not page.exception and [e.value for e in page.error] == []
        assert "L1H" in page.selectbox(key="ind_head").value or "L0H" in page.selectbox(key="ind_head").value  # the tiny model
        charts = len(page.get("arrow_vega_lite_chart")) + len(page.get("vega_lite_chart"))
        assert charts >= 5
        page.button(key="ind_go").click().run()
        assert not page.exception and [e.value for e in page.error] == []
        assert len(page.get("arrow_vega_lite_chart")) + len(page.get("vega_lite_chart")) == charts + 1

    def test_picking_a_head_redraws_only_its_section(self, page):
        """Another head: its pattern and K-composition are drawn again, once each in the report; the scores stay."""
        page.run()
        other = page.selectbox(key="ind_head").options[-1]
        page.selectbox(key="ind_head").set_value(other).run()
        assert not page.exception and [e.value for e in page.error] == []
        names = [item["name"] for item in page.session_state["_report_items"]]
        assert len(names) == len(set(names)) and "induction_scores" in names
        pattern = next(item for item in page.session_state["_report_items"] if item["name"] == "induction_head_pattern")
        assert pattern["chart"].layer[0].title.startswith(other)

    def test_too_long_is_shortened_to_fit(self, page):
        """A length kept from a longer-context model is cut to what two copies allow, with a note."""
        page.session_state["ind_len"] = 100  # BOS + 2 x 100 > the tiny model's 128 positions
        page.run()
        assert not page.exception and not page.error
        assert page.slider(key="ind_len").value == 63
        assert any("do not fit" in t.value for t in page.toast)

    def test_too_many_copies_are_cut_to_fit(self, page):
        """Copies that do not fit are lowered with a note; the engine is never asked for more (it used to error)."""
        page.session_state["ind_len"] = 60
        page.session_state["ind_rep"] = 3  # BOS + 3 x 60 > 128
        page.run()
        assert not page.exception and not page.error
        assert any("Copies: 3 do not fit the limit of 128" in c.value for c in page.caption)
        assert any(e.label.startswith("The token sequence (121 tokens: BOS + 2 x 60)") for e in page.expander)
        assert page.title[0].value == "Induction Heads"


# --- the real default model -------------------------------------------------------------------
@pytest.mark.slow
def test_default_model_copies_and_its_induction_heads_matter(default_model):
    """SmolLM2-135M: repeated half several nats easier; ablating the top induction heads hurts more than random ones."""
    ev = abl.ablation_evidence(default_model, 50, 2, seed=0, k=5, method="zero", n_draws=3)
    first, repeated = ind.half_means(ev.loss_clean, 50)
    assert first - repeated > 5.0  # measured 12.96 vs 2.29
    assert ev.top == ("L18H6", "L17H3", "L17H4", "L17H5", "L18H7")
    assert ev.top_repeated - ev.clean_repeated > 3 * (ev.random_repeated.max() - ev.clean_repeated)
