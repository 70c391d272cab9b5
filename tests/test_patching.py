"""Activation patching: batched grids equal the one-forward-per-cell loop, exact invariants of
denoising hold, attribution patching is the first-order estimate it claims to be, and the CLI and
the page work."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from page_harness import open_page
from streamlit.testing.v1 import AppTest

from interp_core.cli import main as cli_main
from interp_core.core.errors import BadHeadIdError, BadPromptError, NotSingleTokenError, OutOfRangeError, WorkbenchError
from interp_core.core.head_id import head_label
from interp_core.core.names import hook_name
from interp_core.techniques import patching
from interp_core.techniques.ablation import ablation_hooks
from interp_core.techniques.attribution import agreement, attribution_patching
from interp_core.techniques.contract import run
from interp_core.techniques.patching import (
    TARGETS,
    _caches,
    _flat_rows_agree,
    ablation_effect,
    exact_patching,
    logit_diff,
    naive_patching,
    patch,
    prepare_pair,
)
from interp_core.techniques.patching_requests import (
    AblationEffectRequest,
    AttributionRequest,
    PatchRequest,
    component_labels,
    component_target,
)

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"
APP_TIMEOUT = 300  # the first run imports torch and transformers; generous for busy shared CPUs
TOL = dict(atol=1e-5, rtol=0)  # float32 batched vs single-row matmuls differ by ~1e-6 on these logits


@pytest.fixture(scope="module")
def ioi_pair(tiny_model):
    return prepare_pair(tiny_model, CLEAN, CORRUPT, " Mary", " John")


def _first_diff(pair) -> int:
    return int((pair.clean_tokens != pair.corrupt_tokens)[0].nonzero()[0])


# Pairs of equal token counts under the tiny tokenizer, named by where they differ.
PAIRS = {
    "second_token": ("The cat sat on the mat", "The dog sat on the mat"),
    "first_and_last_tokens": ("Mary and John went to the park", "John and Mary went to the store"),  # 0, 1, 3, 7
    "last_token": ("The cat sat on the mat", "The cat sat on the log"),
}


class TestExactPatching:
    @pytest.mark.parametrize("where", PAIRS)
    @pytest.mark.parametrize("target", TARGETS)
    def test_batched_equals_naive_loop(self, tiny_model, target, where):
        """Every cell of the batched grid, started at the patched layer and run only from the patched
        position on (the earlier positions' keys and values from the corrupted run), equals one full
        forward per cell: gpt2, llama (GQA, rotary) and NeoX (partial rotary, parallel residual), pairs
        whose first differing token is at position 0, 1 and the last."""
        clean, corrupt = PAIRS[where]
        pair = prepare_pair(tiny_model, clean, corrupt, " Mary", " John")
        fast = exact_patching(tiny_model, pair, target, chunk_size=5)  # chunks that split a layer and mix starts
        slow = naive_patching(tiny_model, pair, target)
        np.testing.assert_allclose(fast.patched, slow.patched, **TOL)
        np.testing.assert_allclose(fast.grid, slow.grid, atol=1e-4)
        assert fast.grid.shape == tuple(len(labels) for labels in fast.labels)
        assert np.ptp(fast.grid) > 1e-3  # not all values identical

    @pytest.mark.parametrize("target", TARGETS)
    def test_model_block_path_equals_naive_loop(self, tiny_model, target):
        """The fallback (the model's own blocks through their KV-cache argument, chunks from their smallest
        start) equals the naive loop too, on the pair whose rows start at positions 0 to 7."""
        pair = prepare_pair(tiny_model, *PAIRS["first_and_last_tokens"], " Mary", " John")
        fast = exact_patching(tiny_model, pair, target, chunk_size=5, flat_rows=False)
        np.testing.assert_allclose(fast.patched, naive_patching(tiny_model, pair, target).patched, **TOL)

    def test_flattened_blocks_in_small_calls_give_the_same_grid(self, tiny_model, ioi_pair, monkeypatch):
        """Long prompts split a block's rows into calls of at most FLAT_TOKENS tokens: the grid is the same."""
        whole = exact_patching(tiny_model, ioi_pair, "resid_pre")
        monkeypatch.setattr(patching, "FLAT_TOKENS", 7)  # fewer than one row's positions: one row per call
        np.testing.assert_allclose(exact_patching(tiny_model, ioi_pair, "resid_pre").patched, whole.patched, **TOL)

    def test_flattened_blocks_reproduce_the_models_blocks(self, tiny_model, ioi_pair):
        """The sweep takes the flattened path on every supported family (else the tests above test the fallback twice)."""
        _, _, _, corrupt_cache, prefix = _caches(tiny_model, ioi_pair, "resid_pre")
        assert _flat_rows_agree(tiny_model, prefix, corrupt_cache)

    def test_head_out_equals_a_hand_written_loop(self, tiny_model, ioi_pair):
        """head_out: the batched grid equals one corrupted forward per (layer, head) with that head's z
        replaced by the clean z at every position, written here with plain hooks (no engine patch code)."""
        model, pair = tiny_model, ioi_pair
        fast = exact_patching(model, pair, "head_out", chunk_size=3)  # chunks that split a layer
        names = [hook_name("attn.hook_z", layer) for layer in range(model.info.n_layers)]
        _, clean = model.run_with_cache(pair.clean_tokens, names)
        expected = np.zeros((model.info.n_layers, model.info.n_heads))
        for layer, name in enumerate(names):
            for head in range(model.info.n_heads):
                def patch_head(z: torch.Tensor, _: str, head: int = head, source: torch.Tensor = clean[name]) -> torch.Tensor:
                    z = z.clone()
                    z[:, :, head] = source[:, :, head].to(z.dtype)  # (batch, pos, head, d_head): every position
                    return z

                logits = model.forward(pair.corrupt_tokens, hooks=[(name, patch_head)])
                expected[layer, head] = float(logits[0, -1, pair.answer_id] - logits[0, -1, pair.wrong_id])
        np.testing.assert_allclose(fast.patched, expected, **TOL)
        assert np.ptp(fast.grid) > 1e-3  # not all values identical

    def test_metrics_are_the_models_own_logit_diffs(self, tiny_model, ioi_pair):
        result = exact_patching(tiny_model, ioi_pair, "mlp_out")
        clean = tiny_model.forward(ioi_pair.clean_tokens)[0, -1]
        corrupt = tiny_model.forward(ioi_pair.corrupt_tokens)[0, -1]
        a, w = ioi_pair.answer_id, ioi_pair.wrong_id
        assert result.clean_metric == pytest.approx(float(clean[a] - clean[w]), abs=1e-5)
        assert result.corrupt_metric == pytest.approx(float(corrupt[a] - corrupt[w]), abs=1e-5)

    @pytest.mark.parametrize("target", [t for t in TARGETS if t != "head_out"])  # head_out has no position axis
    def test_positions_before_the_difference_recover_nothing(self, tiny_model, ioi_pair, target):
        """Clean and corrupted activations are equal before the first differing token: patching them is a no-op."""
        first = _first_diff(ioi_pair)
        result = exact_patching(tiny_model, ioi_pair, target)
        before = result.grid[..., :first]
        np.testing.assert_allclose(before, 0.0, atol=1e-4)

    def test_resid_pre_at_layer_zero_at_the_only_differing_token_restores_fully(self, tiny_model, ioi_pair):
        """With one differing token, the corrupted run with that embedding patched IS the clean run."""
        first = _first_diff(ioi_pair)
        assert int((ioi_pair.clean_tokens != ioi_pair.corrupt_tokens).sum()) == 1
        grid = exact_patching(tiny_model, ioi_pair, "resid_pre").grid
        assert grid[0, first] == pytest.approx(1.0, abs=1e-4)
        np.testing.assert_allclose(np.delete(grid[0], first), 0.0, atol=1e-4)

    def test_last_token_pair_restores_fully_at_every_layer(self, tiny_llama):
        """Prompts differing only in the last token: patching resid_pre there at any layer gives the clean run."""
        pair = prepare_pair(tiny_llama, "The cat sat on the mat", "The cat sat on the log", " Mary", " John")
        grid = exact_patching(tiny_llama, pair, "resid_pre").grid
        np.testing.assert_allclose(grid[:, -1], 1.0, atol=1e-4)
        np.testing.assert_allclose(grid[:, :-1], 0.0, atol=1e-4)

    def test_progress_reaches_one(self, tiny_gpt2):
        pair = prepare_pair(tiny_gpt2, CLEAN, CORRUPT, " Mary", " John")
        seen: list[float] = []
        exact_patching(tiny_gpt2, pair, "head_out_by_pos", chunk_size=16, on_progress=lambda f, m: seen.append(f))
        assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)


class TestAttribution:
    def test_no_gradients_left_on_the_shared_model(self, tiny_llama):
        pair = prepare_pair(tiny_llama, CLEAN, CORRUPT, " Mary", " John")
        attribution_patching(tiny_llama, pair)
        assert all(p.grad is None and not p.requires_grad for p in tiny_llama.hf_model.parameters())

    def test_effect_is_the_directional_derivative(self, tiny_llama):
        """The estimate for one cell equals a finite difference of the metric along (clean - corrupt)."""
        pair = prepare_pair(tiny_llama, CLEAN, CORRUPT, " Mary", " John")
        attr = attribution_patching(tiny_llama, pair)["attn_out"]
        layer, pos = 1, pair.n_pos - 1
        name = hook_name("hook_attn_out", layer)
        _, clean_cache = tiny_llama.run_with_cache(pair.clean_tokens, [name])
        _, corrupt_cache = tiny_llama.run_with_cache(pair.corrupt_tokens, [name])
        delta = clean_cache[name][0, pos] - corrupt_cache[name][0, pos]
        eps = 1e-3

        def nudge(value: torch.Tensor, _: str) -> torch.Tensor:
            new = value.clone()
            new[0, pos] += eps * delta
            return new

        up = logit_diff(tiny_llama.forward(pair.corrupt_tokens, hooks=[(name, nudge)]), pair.answer_id, pair.wrong_id)
        finite = (float(up[0]) - attr.corrupt_metric) / eps
        assert attr.patched[layer, pos] - attr.corrupt_metric == pytest.approx(finite, rel=2e-2, abs=1e-3)

    def test_agrees_with_exact_patching(self, tiny_llama):
        """Correlation with the exact grid is clearly positive where the model is near-linear (heads, attn_out)."""
        pair = prepare_pair(tiny_llama, CLEAN, CORRUPT, " Mary", " John")
        attr = attribution_patching(tiny_llama, pair)
        for target in ("attn_out", "head_out_by_pos"):
            assert agreement(exact_patching(tiny_llama, pair, target), attr[target]) > 0.7
        first = _first_diff(pair)
        np.testing.assert_allclose(attr["resid_pre"].grid[:, :first], 0.0, atol=1e-6)

    def test_normalised_like_the_exact_grid(self, tiny_gpt2):
        pair = prepare_pair(tiny_gpt2, CLEAN, CORRUPT, " Mary", " John")
        result = attribution_patching(tiny_gpt2, pair)["head_out"]
        exact = exact_patching(tiny_gpt2, pair, "head_out")
        assert result.clean_metric == pytest.approx(exact.clean_metric, abs=1e-5)
        assert result.corrupt_metric == pytest.approx(exact.corrupt_metric, abs=1e-5)
        expected = (result.patched - result.corrupt_metric) / (result.clean_metric - result.corrupt_metric)
        np.testing.assert_allclose(result.grid, expected)
        assert result.method == "attribution"


class TestErrors:
    def test_different_token_lengths_show_both_tokenisations(self, tiny_gpt2):
        with pytest.raises(BadPromptError, match="same number of tokens") as info:
            prepare_pair(tiny_gpt2, "When Mary went", "When Mary and John went", " Mary", " John")
        assert "' John'" in str(info.value) and "'When'" in str(info.value)

    def test_answers_must_be_single_tokens(self, tiny_gpt2):
        with pytest.raises(NotSingleTokenError, match="not one"):
            prepare_pair(tiny_gpt2, CLEAN, CORRUPT, " Maryxyzzy", " John")
        with pytest.raises(NotSingleTokenError):
            prepare_pair(tiny_gpt2, CLEAN, CORRUPT, " Mary", " Johnqqq")

    def test_identical_prompts(self, tiny_gpt2):
        with pytest.raises(BadPromptError, match="identical"):
            prepare_pair(tiny_gpt2, CLEAN, CLEAN, " Mary", " John")

    def test_same_answer_and_bad_target(self, tiny_gpt2):
        with pytest.raises(WorkbenchError, match="same token"):
            prepare_pair(tiny_gpt2, CLEAN, CORRUPT, " Mary", " Mary")
        with pytest.raises(WorkbenchError, match="target must be one of"):
            patch(tiny_gpt2, CLEAN, CORRUPT, " Mary", " John", "resid_post")


class TestAblation:
    def test_no_targets_changes_nothing(self, tiny_gpt2):
        pair = prepare_pair(tiny_gpt2, CLEAN, CORRUPT, " Mary", " John")
        effect = ablation_effect(tiny_gpt2, pair, [], "zero")
        assert effect.ablated_metric == pytest.approx(effect.clean_metric, abs=1e-5)
        assert effect.recovery == pytest.approx(1.0, abs=1e-5)

    def test_resample_takes_the_corrupted_activation(self, tiny_gpt2):
        """Resampling an MLP gives the clean run the corrupted run's MLP output at that layer."""
        pair = prepare_pair(tiny_gpt2, CLEAN, CORRUPT, " Mary", " John")
        effect = ablation_effect(tiny_gpt2, pair, [("mlp", 1)], "resample")
        name = hook_name("hook_mlp_out", 1)
        _, corrupt_cache = tiny_gpt2.run_with_cache(pair.corrupt_tokens, [name])
        logits = tiny_gpt2.forward(pair.clean_tokens, hooks=[(name, lambda v, n: corrupt_cache[name])])
        assert effect.ablated_metric == pytest.approx(float(logit_diff(logits, pair.answer_id, pair.wrong_id)[0]), abs=1e-4)

    def test_zero_ablation_matches_single_prompt_run(self, tiny_gpt2):
        pair = prepare_pair(tiny_gpt2, CLEAN, CORRUPT, " Mary", " John")
        targets = [("head", 0, 1), ("head", 1, 3), ("mlp", 0)]
        effect = ablation_effect(tiny_gpt2, pair, targets, "zero")
        logits = tiny_gpt2.forward(pair.clean_tokens, hooks=ablation_hooks(tiny_gpt2, targets, "zero"))
        assert effect.ablated_metric == pytest.approx(float(logit_diff(logits, pair.answer_id, pair.wrong_id)[0]), abs=1e-4)
        assert abs(effect.ablated_metric - effect.clean_metric) > 1e-4


class TestRequests:
    def test_validated_on_creation_and_hashable(self):
        """A bad target or method fails before any model; equal requests are one cache key; exact sweeps are heavy."""
        with pytest.raises(WorkbenchError, match="target must be one of"):
            PatchRequest(CLEAN, CORRUPT, " Mary", " John", "resid_post")
        with pytest.raises(WorkbenchError, match="method must be one of"):
            PatchRequest(CLEAN, CORRUPT, " Mary", " John", "head_out", "naive")
        with pytest.raises(WorkbenchError, match="method must be one of"):
            AblationEffectRequest(CLEAN, CORRUPT, " Mary", " John", (("mlp", 0),), "shuffle")
        a = PatchRequest(CLEAN, CORRUPT, " Mary", " John", "head_out")
        assert a == PatchRequest(CLEAN, CORRUPT, " Mary", " John", "head_out", "exact") and hash(a) == hash(
            PatchRequest(CLEAN, CORRUPT, " Mary", " John", "head_out", "exact"))
        assert a.heavy and not PatchRequest(CLEAN, CORRUPT, " Mary", " John", "head_out", "attribution").heavy
        assert not AttributionRequest(CLEAN, CORRUPT, " Mary", " John").heavy

    def test_bad_pair_fails_in_check(self, tiny_gpt2):
        """run() refuses prompts of different token counts before computing anything."""
        with pytest.raises(BadPromptError, match="same number of tokens"):
            run(tiny_gpt2, AttributionRequest("When Mary", CORRUPT, " Mary", " John"))

    @pytest.mark.parametrize("method", ["exact", "attribution"])
    def test_run_equals_patch_and_the_table_holds_the_grid(self, tiny_gpt2, method):
        """run(PatchRequest) is patch(); its table is the grid cell by cell, heads by position labelled 'L1H2'."""
        result = run(tiny_gpt2, PatchRequest(CLEAN, CORRUPT, " Mary", " John", "head_out_by_pos", method))
        expected = patch(tiny_gpt2, CLEAN, CORRUPT, " Mary", " John", "head_out_by_pos", method=method)
        np.testing.assert_allclose(result.patched, expected.patched, atol=1e-5)
        (name, table), = result.tables().items()
        assert name == f"patch_{'attr' if method == 'attribution' else 'exact'}_head_out_by_pos"
        np.testing.assert_array_equal(table["recovery"].to_numpy(), result.grid.ravel())
        np.testing.assert_array_equal(table["patched_metric"].to_numpy(), result.patched.ravel())
        n_heads, n_pos = tiny_gpt2.info.n_heads, len(result.tokens)
        assert list(table.columns[:2]) == ["head", "pos"]
        assert table["head"].iloc[n_pos * (n_heads + 2)] == head_label(1, 2)  # row-major: (layer 1, head 2, pos 0)
        assert table["pos"].iloc[3] == result.labels[2][3]

    def test_attribution_request_holds_every_target(self, tiny_llama):
        """One request gives every target's attribution grid, each the one PatchRequest(method='attribution') reads."""
        grids = run(tiny_llama, AttributionRequest(CLEAN, CORRUPT, " Mary", " John"))
        assert set(grids.grids) == set(TARGETS) and grids.first is grids.of("resid_pre")
        one = run(tiny_llama, PatchRequest(CLEAN, CORRUPT, " Mary", " John", "attn_out", "attribution"))
        np.testing.assert_allclose(grids.of("attn_out").patched, one.patched, atol=1e-6)
        assert set(grids.tables()) == {f"patch_attr_{t}" for t in TARGETS}

    def test_ablation_request_names_components_like_the_page(self, tiny_gpt2):
        """'L1H3' and 'MLP0' become the engine's targets; the result is ablation_effect's, with its table."""
        assert component_target("L1H3") == ("head", 1, 3) and component_target("MLP0") == ("mlp", 0)
        assert "L0H0" in component_labels(2, 4) and component_labels(2, 4)[-1] == "MLP1"
        with pytest.raises(BadHeadIdError, match="an MLP like 'MLP2'"):
            component_target("mlp0")
        request = AblationEffectRequest.of_labels(CLEAN, CORRUPT, " Mary", " John", ["L1H3", "MLP0"], "mean")
        effect = run(tiny_gpt2, request)
        pair = prepare_pair(tiny_gpt2, CLEAN, CORRUPT, " Mary", " John")
        assert effect.to_json() == ablation_effect(tiny_gpt2, pair, [("head", 1, 3), ("mlp", 0)], "mean").to_json()
        bars = effect.tables()["patch_ablation"]
        assert list(bars["logit_diff"]) == [effect.clean_metric, effect.ablated_metric, effect.corrupt_metric]

    def test_ablation_of_a_missing_head_fails_in_check(self, tiny_gpt2):
        with pytest.raises(OutOfRangeError):
            run(tiny_gpt2, AblationEffectRequest.of_labels(CLEAN, CORRUPT, " Mary", " John", [f"L0H{tiny_gpt2.info.n_heads}"]))


class TestCli:
    @pytest.mark.parametrize("method", ["exact", "attribution"])
    def test_json_contract(self, tiny_model_dirs, tiny_gpt2, capsys, method):
        code = cli_main(["patch", "--model", str(tiny_model_dirs["gpt2"]), "--clean", CLEAN, "--corrupt", CORRUPT,
                         "--answer", " Mary", "--wrong", " John", "--target", "head_out", "--method", method, "--json"])
        assert code == 0
        out = json.loads(capsys.readouterr().out)
        assert {"clean_metric", "corrupt_metric", "tokens", "grid"} <= set(out)
        expected = patch(tiny_gpt2, CLEAN, CORRUPT, " Mary", " John", "head_out", method=method)
        np.testing.assert_allclose(np.array(out["grid"]), expected.grid, atol=1e-5)
        assert out["tokens"] == list(expected.tokens)
        assert out["clean_metric"] == pytest.approx(expected.clean_metric, abs=1e-6)

    def test_error_is_json(self, tiny_model_dirs, capsys):
        code = cli_main(["patch", "--model", str(tiny_model_dirs["gpt2"]), "--clean", "When Mary", "--corrupt", CORRUPT,
                         "--answer", " Mary", "--wrong", " John", "--target", "resid_pre", "--json"])
        assert code == 2
        assert "same number of tokens" in json.loads(capsys.readouterr().out)["error"]


def _charts(at: AppTest) -> list:
    return list(at.get("vega_lite_chart")) + list(at.get("arrow_vega_lite_chart"))


def _page(tiny_model_dirs) -> AppTest:
    return open_page("pages/06_activation_patching.py", tiny_model_dirs["gpt2"], timeout=APP_TIMEOUT).run()


class TestPage:
    def test_renders_with_grid_and_metrics(self, tiny_model_dirs):
        at = _page(tiny_model_dirs)
        assert not at.exception
        assert [e.value for e in at.error] == []
        assert len(_charts(at)) >= 1
        assert any("Clean" in m.label for m in at.metric)

    def test_unequal_lengths_show_error(self, tiny_model_dirs):
        at = _page(tiny_model_dirs)
        at.text_input(key="patch_corrupt").set_value("When Mary went to").run()
        assert not at.exception
        assert any("same number of tokens" in e.value for e in at.error)

    def test_grids_are_the_requests_results(self, tiny_model_dirs, tiny_gpt2):
        """The page charts the exact and attribution grids of its requests (cached: the same objects), and their agreement."""
        at = _page(tiny_model_dirs)
        at.segmented_control(key="patch_target").set_value("head_out").run()
        assert not at.exception and [e.value for e in at.error] == []
        assert len(_charts(at)) >= 3  # attribution, exact, agreement
        exact = run(tiny_gpt2, PatchRequest(CLEAN, CORRUPT, " Mary", " John", "head_out"))
        shown = {m.label: m.value for m in at.metric}
        assert shown["Clean logit diff"] == f"{exact.clean_metric:.3f}"
        corr = agreement(exact, attribution_patching(tiny_gpt2, prepare_pair(tiny_gpt2, CLEAN, CORRUPT, " Mary", " John"))["head_out"])
        assert shown["Correlation, attribution vs exact"] == ("n/a" if np.isnan(corr) else f"{corr:.3f}")

    def test_shared_colour_scale(self, tiny_model_dirs):
        """The colour-scale choice puts both grids on −1 … 1 without changing what is shown."""
        def domains(at: AppTest) -> list:
            return [json.loads(c.proto.spec)["encoding"]["color"]["scale"]["domain"] for c in _charts(at)[:2]]

        at = _page(tiny_model_dirs)
        assert domains(at)[0] != [-1.0, 1.0]  # its own scale: this tiny model's attribution grid reaches beyond 1
        at.radio(key="patch_scale").set_value("shared").run()
        assert not at.exception
        assert domains(at) == [[-1.0, 1.0], [-1.0, 1.0]]

    def test_ablation_shows_the_requests_numbers(self, tiny_model_dirs, tiny_gpt2):
        """Picking a head and an MLP shows the clean run's logit difference with them ablated."""
        at = _page(tiny_model_dirs)
        at.multiselect(key="patch_ablate").set_value(["L1H3", "MLP0"]).run()
        assert not at.exception and [e.value for e in at.error] == []
        pair = prepare_pair(tiny_gpt2, CLEAN, CORRUPT, " Mary", " John")
        effect = ablation_effect(tiny_gpt2, pair, [("head", 1, 3), ("mlp", 0)], "zero")
        assert {m.label: m.value for m in at.metric}["Ablated logit diff"] == f"{effect.ablated_metric:.3f}"


@pytest.mark.slow
def test_default_model_ioi(default_model):
    """On SmolLM2 with the IOI pair: the name token's embedding restores fully, the answer flips, attribution correlates."""
    pair = prepare_pair(default_model, CLEAN, CORRUPT, " Mary", " John")
    exact = exact_patching(default_model, pair, "resid_pre")
    assert exact.clean_metric > 3 and exact.corrupt_metric < -3  # measured: 6.12 and -5.49
    first = _first_diff(pair)
    assert exact.grid[0, first] == pytest.approx(1.0, abs=1e-3)
    assert exact.grid[-1, -1] > 0.8  # by the last layer the information has moved to the last position
    attr = attribution_patching(default_model, pair)
    assert agreement(exact, attr["resid_pre"]) > 0.3
