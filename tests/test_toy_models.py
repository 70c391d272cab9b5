"""Toy models: data, seeded training, the shipped reverse-increment model's known behaviour, CLI, page."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from page_harness import APP, open_page

from interp_core import WorkbenchError, load_model
from interp_core.cli import main
from interp_core.cli.support import to_jsonable
from interp_core.core.loading import SHIPPED_TOY_DIR, toy_model_dir, user_toy_dir
from interp_core.techniques.contract import run
from interp_core.techniques.predict import PredictRequest
from interp_core.techniques.toy.analysis import (
    ToyAnalysisRequest,
    analyse_copying,
    analyse_reverse_increment,
    bias_only_hooks,
    example_prompt,
)
from interp_core.techniques.toy.tasks import get_task, make_dataset
from interp_core.techniques.toy.train import ToyTrainRequest, read_task_record, save_name_problem, train_toy

SHIPPED = ("reverse-increment", "pattern-copy", "induction")


@pytest.fixture(scope="module")
def reverse_increment() -> object:
    """The shipped reverse-increment model, loaded as the app loads it."""
    return load_model("toy:reverse-increment", device="cpu")


@pytest.fixture(scope="module")
def ri_analysis(reverse_increment: object) -> object:
    return analyse_reverse_increment(reverse_increment, seed=0)


class TestTasks:
    def test_reverse_increment_data_follows_the_rule(self) -> None:
        """Every sequence is BOS, x, then y_i = (x_{7-i} + 1) mod 4; the split is 60,000 / 5,536 of all 4^8 inputs."""
        data = make_dataset("reverse-increment", 0)
        assert data.train.shape == (60_000, 17) and data.holdout.shape == (5_536, 17)
        every = torch.cat([data.train, data.holdout])
        assert (every[:, 0] == 4).all()
        torch.testing.assert_close(every[:, 9:], (every[:, 1:9].flip(1) + 1) % 4)
        codes = (every[:, 1:9] * 4 ** torch.arange(7, -1, -1)).sum(1)
        assert len(torch.unique(codes)) == 4**8  # all inputs, none twice
        assert data.holdout_eval_mask[0].nonzero().flatten().tolist() == list(range(8, 16))

    def test_pattern_copy_sequences_repeat_with_their_period(self) -> None:
        """Each sequence is its first `period` tokens repeated; the holdout shares no sequence with training."""
        data = make_dataset("pattern-copy", 1)
        body = data.holdout[:, 1:].numpy()
        for row, period in zip(body[:50], data.holdout_period[:50]):
            assert 3 <= period <= 5
            np.testing.assert_array_equal(row, np.resize(row[:period], len(row)))
        train = {tuple(r) for r in data.train.tolist()}
        assert not any(tuple(r) in train for r in data.holdout.tolist())

    def test_induction_second_copy_is_predictable(self) -> None:
        """At each accuracy position the answer equals the token one period earlier."""
        data = make_dataset("induction", 2)
        rows, logits = data.holdout_eval_mask.nonzero(as_tuple=True)
        answers = data.holdout[rows, logits + 1]
        earlier = data.holdout[rows, logits + 1 - torch.from_numpy(data.holdout_period)[rows]]
        assert len(rows) > 0
        torch.testing.assert_close(answers, earlier)

    def test_unknown_task_is_a_clear_error(self) -> None:
        """An unknown task names the known ones."""
        with pytest.raises(WorkbenchError, match="reverse-increment"):
            get_task("sorting")


class TestTraining:
    def test_same_seed_same_losses(self) -> None:
        """Two short CPU runs with one seed give identical losses; another seed gives different ones."""
        kwargs = dict(epochs=1, batch_size=64, max_steps=8, device="cpu")
        a = train_toy("reverse-increment", seed=3, **kwargs)
        b = train_toy("reverse-increment", seed=3, **kwargs)
        c = train_toy("reverse-increment", seed=4, **kwargs)
        np.testing.assert_array_equal(a.step_loss, b.step_loss)
        assert a.final_loss == b.final_loss
        assert not np.array_equal(a.step_loss, c.step_loss)

    def test_rotary_induction_model_is_reproducible_too(self) -> None:
        """The induction task's llama-family model: same seed, same losses and the same final loss."""
        kwargs = dict(epochs=1, batch_size=32, max_steps=3, seed=1, device="cpu")
        a, b = train_toy("induction", **kwargs), train_toy("induction", **kwargs)
        np.testing.assert_array_equal(a.step_loss, b.step_loss)
        assert a.final_loss == b.final_loss

    def test_a_few_steps_move_the_loss_down(self) -> None:
        """40 steps on reverse-increment take the loss well below its starting value."""
        result = train_toy("reverse-increment", epochs=1, batch_size=512, max_steps=40, seed=0, device="cpu")
        assert result.step_loss[-5:].mean() < result.step_loss[:5].mean() - 0.2

    def test_curve_points_cover_the_run(self) -> None:
        """The curve ends at the last step; each point's training loss is the mean of its window of steps."""
        result = train_toy("reverse-increment", epochs=1, batch_size=512, max_steps=30, seed=0, device="cpu")
        steps = [p.step for p in result.history]
        assert steps[-1] == 30 and steps == sorted(set(steps)) and len(steps) <= 25
        bounds = [0, *steps]
        for point, lo, hi in zip(result.history, bounds, bounds[1:]):
            assert point.train_loss == pytest.approx(result.step_loss[lo:hi].mean(), rel=1e-6)
            assert 0.0 <= point.holdout_accuracy <= 1.0
        assert result.epochs_run == 1

    def test_bad_hyperparameters_are_refused(self) -> None:
        """A zero batch size or a learning rate of 5 is refused before any work."""
        with pytest.raises(WorkbenchError, match="batch size"):
            train_toy("reverse-increment", batch_size=0)
        with pytest.raises(WorkbenchError, match="learning rate"):
            train_toy("reverse-increment", lr=5.0)


class TestShippedModels:
    @pytest.mark.parametrize("task", SHIPPED)
    def test_shipped_model_is_small_and_recorded(self, task: str) -> None:
        """Each shipped copy is an HF directory under 2 MB with its tokenizer and training record."""
        directory = toy_model_dir(task)
        assert directory.parent == SHIPPED_TOY_DIR
        assert (directory / "model.safetensors").stat().st_size < 2_000_000
        assert (directory / "tokenizer.json").is_file()
        assert read_task_record(directory)["task"] == task

    def test_prompt_is_one_token_per_symbol(self, reverse_increment: object) -> None:
        """'BOS 0 1 2 3' is five tokens with ids 4, 0, 1, 2, 3; an unknown word becomes UNK."""
        assert reverse_increment.tokenize("BOS 0 1 2 3").tolist() == [[4, 0, 1, 2, 3]]
        assert reverse_increment.token_strings(reverse_increment.tokenize("BOS 7")) == ["BOS", "UNK"]

    def test_reverse_increment_is_perfect_on_the_holdout(self, ri_analysis: object) -> None:
        """The shipped reverse-increment model gets every holdout output right."""
        assert ri_analysis.holdout_accuracy == 1.0
        assert ri_analysis.sequence_accuracy == 1.0

    def test_ablations_break_it(self, ri_analysis: object) -> None:
        """Zeroing W_out or W_O drops holdout accuracy far below 100 % (the write-up: 17.67 % and 29.19 %)."""
        assert ri_analysis.ablations["mlp_weights_zero"] < 0.6
        assert ri_analysis.ablations["attn_weights_zero"] < 0.6

    def test_bias_only_hook_equals_zeroed_weights(self, reverse_increment: object) -> None:
        """The W_out = 0 hook gives the same logits as a copy of the model whose c_proj weight is zero."""
        tokens = make_dataset("reverse-increment", 0).holdout[:64]
        hooked = reverse_increment.forward(tokens, hooks=bias_only_hooks(reverse_increment, "mlp"))
        copy = load_model("toy:reverse-increment", device="cpu")
        with torch.no_grad():
            copy.hf_model.transformer.h[0].mlp.c_proj.weight.zero_()
        torch.testing.assert_close(hooked, copy.forward(tokens))

    def test_attention_is_anti_diagonal(self, ri_analysis: object) -> None:
        """Output y_i's position (i >= 1) puts most attention on x_{7-i} (key 8 - i).

        y0's position already holds x7 itself, so it needs no attention and is left out."""
        picks = ri_analysis.attention.argmax(1)
        assert picks[1:].tolist() == [8 - i for i in range(1, 8)]
        assert ri_analysis.attention[np.arange(1, 8), 8 - np.arange(1, 8)].mean() > 0.7

    def test_after_the_mlp_reads_the_answer(self, ri_analysis: object) -> None:
        """Read through the unembedding, resid_post gives the model's own (perfect) answers."""
        np.testing.assert_allclose(ri_analysis.post_mlp_accuracy, 1.0)

    def test_pattern_copy_continues_patterns(self) -> None:
        """The shipped pattern-copy model continues holdout patterns and some head reads the answer's earlier copies."""
        model = load_model("toy:pattern-copy", device="cpu")
        result = analyse_copying(model, "pattern-copy", seed=0, n_patterns=64)
        assert result.holdout_accuracy > 0.95
        assert result.on_answer.max() > 0.3
        assert read_task_record(toy_model_dir("pattern-copy"))["final_loss"] < 0.4  # the write-up: about 0.32

    def test_induction_model_copies_the_second_segment(self) -> None:
        """The shipped induction model predicts second copies almost always, with a layer-1 head on the stripe."""
        model = load_model("toy:induction", device="cpu")
        result = analyse_copying(model, "induction", seed=0, n_patterns=64)
        assert result.holdout_accuracy > 0.95  # chance is 1/64
        best = int(np.argmax(result.induction))
        assert result.head_labels[best].startswith("L1") and result.induction[best] > 0.5
        assert result.head_labels[int(np.argmax(result.previous_token))].startswith("L0")
        for scores in (result.previous_token, result.induction, result.first_token, result.on_answer):
            assert ((scores >= 0) & (scores <= 1 + 1e-6)).all()

    def test_analysis_refuses_a_foreign_model(self, tiny_gpt2: object) -> None:
        """A non-toy model gets a clear error, not a crash."""
        with pytest.raises(WorkbenchError, match="not a reverse-increment toy model"):
            analyse_reverse_increment(tiny_gpt2)


class TestRequests:
    def test_analysis_request_equals_the_direct_call(self, reverse_increment: object, ri_analysis: object) -> None:
        """run() gives analyse_reverse_increment's result; its tables hold the JSON's numbers."""
        result = run(reverse_increment, ToyAnalysisRequest("reverse-increment", 0))
        assert to_jsonable(result.to_json()) == to_jsonable(ri_analysis.to_json())
        tables = result.tables()
        ablations = tables["toy_ri_ablations"]
        assert dict(zip(ablations["ablation"], ablations["accuracy"])) == result.to_json()["ablations"]
        np.testing.assert_array_equal(tables["toy_ri_attention"]["attention"].to_numpy().reshape(8, 17), result.attention)
        reads = tables["toy_ri_pre_post_mlp"]
        np.testing.assert_array_equal(reads[reads["read"] == "after MLP = answer"]["fraction"], result.post_mlp_accuracy)
        assert result.example_prompt == example_prompt("reverse-increment")

    def test_copying_tables_match_the_json(self) -> None:
        """Every head score in the table is the JSON's; the example patterns are the result's, head by head."""
        result = run(load_model("toy:pattern-copy", device="cpu"), ToyAnalysisRequest("pattern-copy"))
        tables = result.tables()
        scores = tables["toy_head_scores"].set_index(["head", "score"])["mean attention"]
        for head, values in result.to_json()["head_scores"].items():
            assert scores[(head, "induction (q - period + 1)")] == values["induction"]
            assert scores[(head, "previous-token")] == values["previous_token"]
        patterns = tables["toy_example_patterns"]
        n_pos = len(result.example_tokens)
        for i, head in enumerate(result.head_labels):
            block = patterns[patterns["head"] == head]["attention"].to_numpy().reshape(n_pos, n_pos)
            np.testing.assert_array_equal(block, result.example_patterns.reshape(-1, n_pos, n_pos)[i])
        assert result.example_prompt.split() == result.example_tokens and result.n_scored == 256

    def test_analysis_request_is_validated(self, tiny_gpt2: object) -> None:
        """An unknown task or a negative seed fails on creation; a model of another task fails in check()."""
        with pytest.raises(WorkbenchError, match="reverse-increment"):
            ToyAnalysisRequest("sorting")
        with pytest.raises(WorkbenchError, match="seed"):
            ToyAnalysisRequest("induction", -1)
        with pytest.raises(WorkbenchError, match="not a induction toy model"):
            run(tiny_gpt2, ToyAnalysisRequest("induction"))

    def test_train_request(self) -> None:
        """The live callback is not part of the request's identity, a click id is; bad values fail on creation;
        run(None, ...) trains and reports every curve point as it is measured."""
        points: list = []
        request = ToyTrainRequest("reverse-increment", batch_size=512, max_steps=3, device="cpu", on_point=points.append)
        same = dataclasses.replace(request, on_point=None)
        assert request == same and hash(request) == hash(same)
        assert request != dataclasses.replace(request, run_id="another click")
        with pytest.raises(WorkbenchError, match="learning rate"):
            ToyTrainRequest("reverse-increment", lr=5.0)
        with pytest.raises(WorkbenchError, match="maximum number of steps"):
            ToyTrainRequest("reverse-increment", max_steps=0)
        result = run(None, request)
        assert [p.step for p in points] == [p.step for p in result.history] == [1, 2, 3]
        curve = result.tables()["toy_training_curve"]
        assert list(curve["holdout_accuracy"]) == [p.holdout_accuracy for p in result.history]

    def test_save_name_rules(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Bad and shipped names are refused; a taken name only for a caller that trained it."""
        monkeypatch.setenv("INTERP_WORKBENCH_HOME", str(tmp_path))
        assert "cannot be a model name" in save_name_problem("my model!")
        assert "shipped" in save_name_problem("induction", may_replace=True)
        assert save_name_problem("mine") is None
        (user_toy_dir() / "mine").mkdir(parents=True)
        (user_toy_dir() / "mine" / "config.json").write_text("{}")
        assert "already exists" in save_name_problem("mine")
        assert save_name_problem("mine", may_replace=True) is None


class TestRetraining:
    def test_a_retrained_toy_gets_a_new_fingerprint(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Retraining toy:NAME in place changes its fingerprint, so results cached for the old weights are not served."""
        monkeypatch.setenv("INTERP_WORKBENCH_HOME", str(tmp_path))
        out = str(user_toy_dir() / "mine")
        run(None, ToyTrainRequest("reverse-increment", out, batch_size=512, max_steps=2, device="cpu"))
        first = load_model("toy:mine", device="cpu")
        assert first.fingerprint == load_model("toy:mine", device="cpu").fingerprint  # stable while the files are
        run(None, ToyTrainRequest("reverse-increment", out, overwrite=True, batch_size=512, max_steps=2, seed=1, device="cpu"))
        second = load_model("toy:mine", device="cpu")
        assert second.fingerprint != first.fingerprint
        request = PredictRequest("BOS 0 1 2 3 0 1 2 3", 3)
        assert run(first, request).to_json() != run(second, request).to_json()  # the old numbers would be stale


class TestCli:
    def test_train_toy_end_to_end(self, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
        """train-toy --epochs 1 saves a loadable model and prints accuracy, loss and ablations that match it."""
        out = tmp_path / "ri"
        code = main(["train-toy", "--task", "reverse-increment", "--out", str(out), "--epochs", "1",
                     "--batch-size", "4096", "--device", "cpu", "--quiet", "--json"])
        assert code == 0
        result = json.loads(capsys.readouterr().out)
        assert {"holdout_accuracy", "final_loss", "ablations"} <= set(result)
        model = load_model(str(out), device="cpu")
        again = analyse_reverse_increment(model, seed=0)
        assert result["holdout_accuracy"] == pytest.approx(again.holdout_accuracy, abs=1e-9)
        assert set(result["ablations"]) == {"none", "mlp_weights_zero", "attn_weights_zero"}
        assert 0 < result["final_loss"] < 2.0

    def test_unknown_task_exits_with_usage(self, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
        """argparse refuses a task that is not one of the three: status 2 and the choices, no traceback."""
        assert main(["train-toy", "--task", "sorting", "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert "invalid choice: 'sorting'" in err and "reverse-increment" in err


class TestPage:
    def _app(self, tiny_model_dirs: dict) -> object:
        return open_page("pages/10_toy_models.py", tiny_model_dirs["gpt2"])

    def test_page_analyses_the_shipped_model(self, tiny_model_dirs: dict) -> None:
        """On first load the page shows the shipped reverse-increment analysis with charts and no error."""
        at = self._app(tiny_model_dirs).run()
        assert not at.exception
        assert not at.error
        assert len(at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")) >= 3
        assert any("100.00%" in m.value for m in at.metric)
        assert example_prompt("reverse-increment").startswith("BOS ")

    def test_pattern_copy_view(self, tiny_model_dirs: dict) -> None:
        """Switching the task to pattern-copy shows its head scores and example patterns."""
        at = self._app(tiny_model_dirs).run()
        at.selectbox(key="toy_task").set_value("pattern-copy").run()
        assert not at.exception
        assert not at.error
        assert len(at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")) >= 3

    def test_training_and_retraining_show_the_new_weights(self, tiny_model_dirs: dict, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
        """Train on the page, then retrain the same name with another seed: each time the page analyses the new weights."""
        monkeypatch.setenv("INTERP_WORKBENCH_HOME", str(tmp_path))
        at = self._app(tiny_model_dirs).run()
        at.number_input(key="toy_ep_reverse-increment").set_value(1)
        at.number_input(key="toy_bs_reverse-increment").set_value(8192)
        at.text_input(key="toy_name_reverse-increment").set_value("mine")
        shown = []
        for seed in (0, 1):
            at.number_input(key="toy_seed_reverse-increment").set_value(seed)
            at.button(key="toy_train").click().run()
            assert not at.exception and not at.error
            assert at.selectbox(key="toy_pick").value == "toy:mine"
            assert any("Trained `toy:mine`" in s.value for s in at.success)
            fresh = analyse_reverse_increment(load_model("toy:mine", device="cpu"), seed=seed)
            shown.append(next(m.value for m in at.metric if m.label.startswith("Holdout accuracy")))
            assert shown[-1] == f"{fresh.holdout_accuracy:.2%}"
        assert shown[0] != shown[1]  # else the check above could not tell old weights from new

    def test_a_preset_opens_a_shipped_model(self, tiny_model_dirs: dict) -> None:
        """The induction preset switches the task and the model, and the page analyses it."""
        at = self._app(tiny_model_dirs).run()
        at.button(key="toy_preset_2").click().run()
        assert not at.exception and not at.error
        assert (at.selectbox(key="toy_task").value, at.selectbox(key="toy_pick").value) == ("induction", "toy:induction")
        assert any(m.label.startswith("Holdout accuracy") for m in at.metric)

    def test_bad_model_name_shows_an_error(self, tiny_model_dirs: dict) -> None:
        """A save name with spaces is refused on the page, which keeps working."""
        at = self._app(tiny_model_dirs).run()
        at.text_input(key="toy_name_reverse-increment").set_value("my model!").run()
        at.button(key="toy_train").click().run()
        assert not at.exception
        assert any("cannot be a model name" in e.value for e in at.error)

    def test_english_prompt_on_a_toy_model_is_flagged(self) -> None:
        """With a toy model and an English prompt the sidebar says the words became UNK; symbols pass quietly."""
        from streamlit.testing.v1 import AppTest

        def home(prompt: str) -> AppTest:  # no switch_page: after it AppTest cannot see the sidebar
            at = AppTest.from_file(APP, default_timeout=60)
            at.query_params["model"] = str(toy_model_dir("induction"))
            at.query_params["prompt"] = prompt
            return at.run()

        at = home("The capital of France is")
        assert not at.exception
        assert any("5 of the 5 tokens" in w.value for w in at.sidebar.warning)
        at = home("BOS 1 2 3 1 2")
        assert not at.exception and not at.sidebar.warning

    def test_unknown_tokens_counts_only_a_real_unk(self, tiny_gpt2: object) -> None:
        """Word-level toy tokenizers count UNK; GPT-2's UNK is its BOS/EOS, so nothing is counted there."""
        toy = load_model("toy:pattern-copy", device="cpu")
        assert toy.unknown_tokens("BOS 1 cat 2 dog") == (2, 5)
        assert tiny_gpt2.unknown_tokens("The cat sat")[0] == 0
