"""Steering (#17): activation addition, contrastive pairs, directional ablation, the sweep, the CLI and the page."""

from __future__ import annotations

import json

import pytest
import torch
from page_harness import open_page

from interp_core.cli.main import main
from interp_core.core.errors import BadPromptError, NotSingleTokenError, OutOfRangeError, WorkbenchError
from interp_core.core.names import hook_name
from interp_core.techniques.contract import run
from interp_core.techniques.steering import (
    Ablation,
    Addition,
    SteeringOverflowError,
    SteerRequest,
    SweepRequest,
    edited_logits,
    generate,
    generate_pair,
    parse_pairs,
    steering_vector,
)

PROMPT, POS, NEG = "hello world, the cat", "a big red fox", "a small blue owl"
PAIR = ((POS, NEG),)


def _resid_names(model) -> list[str]:
    n = model.info.n_layers
    return [hook_name("hook_resid_pre", layer) for layer in range(n)] + [f"blocks.{n - 1}.hook_resid_post"]


def _greedy_without_cache(model, ids, n, edit=None) -> list[int]:
    """The reference: every step a full forward from position 0 (no KV cache), the edit told offset 0."""
    out = ids
    for _ in range(n):
        logits, _ = edited_logits(model, out, edit)
        token = int(logits[0, -1].argmax())
        if token == model.tokenizer.eos_token_id:
            break
        out = torch.cat([out, torch.tensor([[token]])], dim=1)
    return out[0, ids.shape[1]:].tolist()


class TestVector:
    def test_vector_is_the_difference_of_captured_activations(self, tiny_model):
        """v = resid_pre[L](positive)[last] - resid_pre[L](negative)[last], from two full runs."""
        layer = tiny_model.info.n_layers - 1
        name = hook_name("hook_resid_pre", layer)
        _, pos = tiny_model.run_with_cache(tiny_model.tokenize(POS), [name])
        _, neg = tiny_model.run_with_cache(tiny_model.tokenize(NEG), [name])
        expected = pos[name][0, -1] - neg[name][0, -1]
        assert expected.norm() > 0
        torch.testing.assert_close(steering_vector(tiny_model, PAIR, layer), expected)

    def test_pairs_are_averaged(self, tiny_gpt2):
        """Contrastive activation addition: the mean of each pair's difference."""
        other = ("one two three", "four five six")
        both = steering_vector(tiny_gpt2, (PAIR[0], other), 1)
        mean = (steering_vector(tiny_gpt2, PAIR, 1) + steering_vector(tiny_gpt2, (other,), 1)) / 2
        torch.testing.assert_close(both, mean)

    def test_parse_pairs(self):
        """CSV lines, an optional header, quoted commas; a line with three fields is refused."""
        assert parse_pairs('positive,negative\nA b,C d\n\n"x, y",z\n') == (("A b", "C d"), ("x, y", "z"))
        with pytest.raises(BadPromptError, match="Line 2"):
            parse_pairs("a,b\na,b,c\n")


class TestAddition:
    def test_coefficient_zero_changes_nothing(self, tiny_model):
        """c = 0 gives exactly the unsteered logits and text."""
        v = steering_vector(tiny_model, PAIR, 1)
        ids = tiny_model.tokenize(PROMPT)
        logits, _ = edited_logits(tiny_model, ids, Addition(v, 1, 0.0))
        assert torch.equal(logits, tiny_model.forward(ids))
        result = run(tiny_model, SteerRequest(PROMPT, POS, NEG, 1, coefficient=0.0, max_new_tokens=8))
        assert result.steered == result.unsteered and result.unsteered

    def test_hook_touches_only_layer_L_and_never_position_0(self, tiny_model):
        """Layers before L are unchanged, resid_pre[L] moves by exactly c * v at positions >= 1, and position 0 of
        every point is unchanged (nothing at position 0 can see later positions)."""
        layer, c = 1, 2.5
        v = steering_vector(tiny_model, PAIR, layer)
        ids = tiny_model.tokenize(PROMPT)
        names = _resid_names(tiny_model)
        _, plain = edited_logits(tiny_model, ids, None, names)
        edit = Addition(v, layer, c)
        assert [name for name, _ in edit.hooks()] == [hook_name("hook_resid_pre", layer)]
        # a recording hook after the edit on the same point sees the edited value
        _, after = tiny_model.run_with_cache(ids, names, hooks=edit.hooks())
        for name in names:
            torch.testing.assert_close(after[name][0, 0], plain[name][0, 0], rtol=0, atol=0)
        for earlier in range(layer):
            assert torch.equal(after[hook_name("hook_resid_pre", earlier)], plain[hook_name("hook_resid_pre", earlier)])
        delta = after[hook_name("hook_resid_pre", layer)][0, 1:] - plain[hook_name("hook_resid_pre", layer)][0, 1:]
        torch.testing.assert_close(delta, (c * v).expand_as(delta), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(after[names[-1]][0, 1:], plain[names[-1]][0, 1:])  # the edit does reach the output

    def test_kv_cache_generation_steers_by_absolute_position(self, tiny_model):
        """Greedy generation with the KV cache equals full forwards from position 0, steered and unsteered:
        each cached step is steered (its absolute position is >= 1), position 0 never."""
        v = steering_vector(tiny_model, PAIR, 0)
        ids = tiny_model.tokenize(PROMPT)
        for edit in (None, Addition(v, 0, 3.0), Ablation(v, tiny_model.info.n_layers)):
            _, cached = generate(tiny_model, ids, 10, edit)
            assert cached == _greedy_without_cache(tiny_model, ids, 10, edit)
            assert len(cached) >= 3

    def test_pair_generation_equals_two_separate_generations(self, tiny_model):
        """Both continuations as one batch of two rows (the page's path) equal the unsteered and the steered
        generation run alone, token for token, and stream each row's text as it grows."""
        v = steering_vector(tiny_model, PAIR, 0)
        ids = tiny_model.tokenize(PROMPT)
        for c in (0.0, 3.0):
            edit = Addition(v, 0, c)
            streamed: dict[int, list[str]] = {0: [], 1: []}
            pair = generate_pair(tiny_model, ids, 10, edit, lambda row, text, into=streamed: into[row].append(text))
            assert pair == (generate(tiny_model, ids, 10, None), generate(tiny_model, ids, 10, edit))
            assert [streamed[0][-1], streamed[1][-1]] == [pair[0][0], pair[1][0]]
        assert pair[0] != pair[1]  # c = 3 does steer: the rows are not one run twice

    def test_steering_changes_the_continuation(self, tiny_gpt2):
        """Not vacuous: a large coefficient changes the tiny model's text."""
        result = run(tiny_gpt2, SteerRequest(PROMPT, POS, NEG, 0, coefficient=8.0, max_new_tokens=8))
        assert result.steered != result.unsteered

    def test_hooks_are_gone_afterwards(self, tiny_gpt2):
        """After a steered run, also one that failed, the model runs unedited."""
        ids = tiny_gpt2.tokenize(PROMPT)
        before = tiny_gpt2.forward(ids)
        run(tiny_gpt2, SteerRequest(PROMPT, POS, NEG, 0, coefficient=5.0, max_new_tokens=3))
        with pytest.raises(SteeringOverflowError):
            run(tiny_gpt2, SteerRequest(PROMPT, POS, NEG, 0, coefficient=1e30, max_new_tokens=3))
        assert torch.equal(tiny_gpt2.forward(ids), before)


class TestAblation:
    def test_the_direction_is_zero_at_every_block(self, tiny_model):
        """After the projection, resid_pre of every block has no component along v, at every position."""
        v = steering_vector(tiny_model, PAIR, 1)
        names = [hook_name("hook_resid_pre", layer) for layer in range(tiny_model.info.n_layers)]
        ids = tiny_model.tokenize(PROMPT)
        _, plain = tiny_model.run_with_cache(ids, names)
        _, after = tiny_model.run_with_cache(ids, names, hooks=Ablation(v, tiny_model.info.n_layers).hooks())
        unit = v / v.norm()
        for name in names:
            assert (plain[name] @ unit).abs().max() > 1e-3  # there was something to remove
            torch.testing.assert_close(after[name] @ unit, torch.zeros_like(after[name][..., 0]), atol=1e-4, rtol=0)


class TestSweep:
    def test_sweep_equals_separate_runs(self, tiny_model):
        """The batched sweep gives each coefficient's own single run (float tolerance: batch kernels differ)."""
        coefficients = (0.0, 0.5, 2.0, -1.0)
        target = tiny_model.token_strings([7])[0]
        batched = run(tiny_model, SweepRequest(PROMPT, POS, NEG, 1, coefficients=coefficients, target=target))
        v = steering_vector(tiny_model, PAIR, 1)
        ids = tiny_model.tokenize(PROMPT)
        for c, prob, top in zip(coefficients, batched.target_prob, batched.top_tokens):
            single = run(tiny_model, SweepRequest(PROMPT, POS, NEG, 1, coefficients=(c,), target=target))
            assert single.target_prob[0] == pytest.approx(prob, rel=1e-4, abs=1e-7) and single.top_tokens[0] == top
            logits, _ = edited_logits(tiny_model, ids, Addition(v, 1, c))
            assert float(logits[0, -1].double().softmax(-1)[7]) == pytest.approx(prob, rel=1e-4, abs=1e-7)
        assert len(set(batched.target_prob.round(6))) > 1  # the coefficients do move it

    def test_steer_request_carries_the_sweep(self, tiny_gpt2):
        """With coefficients, the CLI's result holds the same sweep as a SweepRequest."""
        target = tiny_gpt2.token_strings([7])[0]
        result = run(tiny_gpt2, SteerRequest(PROMPT, POS, NEG, 1, coefficients=(0.0, 1.0), target=target, max_new_tokens=2))
        alone = run(tiny_gpt2, SweepRequest(PROMPT, POS, NEG, 1, coefficients=(0.0, 1.0), target=target))
        assert result.to_json()["sweep"] == alone.to_json()["sweep"]
        assert set(result.tables()) >= {"steering_sweep", "steering_lens", "steering_promoted"}


class TestBadInput:
    @pytest.mark.parametrize("fields, error, match", [
        (dict(prompt=""), BadPromptError, "prompt to steer is empty"),
        (dict(positive=" "), BadPromptError, "positive prompt is empty"),
        (dict(negative=""), BadPromptError, "negative prompt is empty"),
        (dict(max_new_tokens=-1), OutOfRangeError, "max-new-tokens"),
        (dict(coefficients="0,x"), OutOfRangeError, "numbers separated by commas"),
        (dict(coefficient=float("nan")), OutOfRangeError, "finite"),
    ])
    def test_refused_before_any_model(self, fields, error, match):
        with pytest.raises(error, match=match):
            SteerRequest(**{**dict(prompt=PROMPT, positive=POS, negative=NEG, layer=0), **fields})

    def test_layer_out_of_range(self, tiny_gpt2):
        with pytest.raises(OutOfRangeError, match="layer must be between 0 and 1"):
            run(tiny_gpt2, SteerRequest(PROMPT, POS, NEG, 5))

    def test_huge_coefficient_says_why(self, tiny_model):
        """A coefficient that overflows the residual stream stops with a message, not NaN text."""
        with pytest.raises(SteeringOverflowError, match="coefficient 1e\\+30.*smaller coefficient"):
            run(tiny_model, SteerRequest(PROMPT, POS, NEG, 1, coefficient=1e30))
        with pytest.raises(SteeringOverflowError, match="coefficient 1e\\+30"):
            run(tiny_model, SweepRequest(PROMPT, POS, NEG, 1, coefficients=(0.0, 1e30)))

    def test_single_token_contrast_prompt(self, tiny_gpt2):
        """Its last token would be position 0, the attention sink."""
        one = tiny_gpt2.token_strings([300])[0]
        with pytest.raises(BadPromptError, match="single token"):
            run(tiny_gpt2, SteerRequest(PROMPT, one, NEG, 0))

    def test_target_not_one_token(self, tiny_gpt2):
        with pytest.raises(NotSingleTokenError):
            run(tiny_gpt2, SteerRequest(PROMPT, POS, NEG, 0, coefficients=(0.0,), target=" Rome and Paris"))


class TestCli:
    def test_json_keys(self, tiny_model_dirs, capsys):
        """The public contract: steer --json gives these keys, sweep entries with these fields."""
        code = main(["steer", "--model", str(tiny_model_dirs["gpt2"]), "--prompt", PROMPT, "--positive", POS, "--negative", NEG,
                     "--layer", "1", "--coefficient", "2", "--coefficients", "0,1,2", "--max-new-tokens", "4", "--json"])
        out = json.loads(capsys.readouterr().out)
        assert code == 0
        assert {"unsteered", "steered", "vector_norm", "promoted", "sweep"} <= set(out)
        assert [set(e) for e in out["sweep"]] == [{"coefficient", "target_prob", "top_token"}] * 3
        assert [e["coefficient"] for e in out["sweep"]] == [0.0, 1.0, 2.0]

    def test_no_sweep_without_coefficients_and_errors_exit_2(self, tiny_model_dirs, capsys):
        base = ["steer", "--model", str(tiny_model_dirs["gpt2"]), "--prompt", PROMPT, "--positive", POS, "--negative", NEG, "--json"]
        assert main([*base, "--layer", "0", "--max-new-tokens", "2", "--ablate"]) == 0
        assert "sweep" not in json.loads(capsys.readouterr().out)
        assert main([*base, "--layer", "9"]) == 2
        assert "layer must be between" in json.loads(capsys.readouterr().out)["error"]


class TestPage:
    def test_page_renders_and_reports_bad_input(self, tiny_model_dirs):
        """First visit: both continuations and the three charts, no exception; an empty prompt and bad pairs give red boxes."""
        at = open_page("pages/11_steering.py", tiny_model_dirs["gpt2"], steer_target="")
        at.run()
        assert not at.exception and not at.error
        assert [c.value.startswith("The capital of France is") for c in at.code] == [True, True]
        assert len(at.get("vega_lite_chart")) >= 3
        at.toggle(key="steer_ablate").set_value(True).run()
        assert not at.exception and not at.error and len(at.code) == 2
        at.text_input(key="steer_neg").set_value("").run()
        assert not at.exception and any("negative prompt is empty" in e.value for e in at.error)
        at.radio(key="steer_mode").set_value("Several pairs (CAA)").run()
        at.text_area(key="steer_pairs").set_value("a b,c d,e f").run()
        assert not at.exception and any("3 fields" in e.value for e in at.error)

    @pytest.mark.slow
    def test_default_preset_continuations_equal_separate_generations(self, default_model):
        """Paris -> Rome on the default model: the page's batched pair gives the texts of two separate generations
        (a near-tie read differently by a batch of two would show here)."""
        ids = default_model.tokenize("The capital of France is")
        vector = steering_vector(default_model, (("The capital of Italy", "The capital of France"),), 16)
        edit = Addition(vector, 16, 0.75)
        (unsteered, _), (steered, _) = generate_pair(default_model, ids, 30, edit)
        assert (unsteered, steered) == (generate(default_model, ids, 30, None)[0], generate(default_model, ids, 30, edit)[0])
        assert unsteered.startswith(" Paris") and steered.startswith(" Rome")

    @pytest.mark.slow
    def test_default_preset_reads_the_issue_numbers(self, default_model):
        """The Paris -> Rome preset on the default model: P(' Rome') 0.0005 at c = 0, about 0.17 at c = 0.75 (GUIDE §8)."""
        sweep = run(default_model, SweepRequest("The capital of France is", "The capital of Italy", "The capital of France", 16,
                                                coefficients=(0.0, 0.75, 1.5), target=" Rome"))
        assert sweep.target_prob.tolist() == pytest.approx([0.0005, 0.173, 0.008], abs=5e-4)
        assert sweep.top_tokens[:2] == (" Paris", " Rome")


def test_requests_are_hashable_and_equal():
    """One cache entry per request: equal fields, equal hash; the page's empty target equals the CLI's missing one."""
    a = SteerRequest(PROMPT, POS, NEG, 1, coefficients="0, 1", target="")
    b = SteerRequest(PROMPT, POS, NEG, 1, coefficients=(0, 1.0), target=None)
    assert a == b and hash(a) == hash(b)
    assert isinstance(SweepRequest(PROMPT, pairs=[["x y", "z w"]], coefficients=(1,)).pairs, tuple)
    with pytest.raises(WorkbenchError):
        SweepRequest(PROMPT, POS, NEG, 0, coefficients=())
