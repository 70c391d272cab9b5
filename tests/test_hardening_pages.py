"""Hardening (issue #22, the app side): workshop limits, bad links and uploads, data loss, cost.

Each test here failed before its fix. Pages run under AppTest on the tiny GPT-2 (context 128)
or on the shipped toy models; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from page_harness import APP, open_page
from streamlit.testing.v1 import AppTest

INDUCTION = "pages/05_induction_heads.py"
PROBING = "pages/08_probing.py"
PATCHING = "pages/06_activation_patching.py"
TOYS = "pages/10_toy_models.py"


def _no_errors(at: AppTest) -> None:
    assert not at.exception
    assert [e.value for e in at.error] == []


class FakeTraining:
    """Stands in for ``train_toy``: records its arguments and saves a bare model folder, in no time."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, task: str, **kwargs: object) -> SimpleNamespace:
        self.calls.append({"task": task, **kwargs})
        out = Path(kwargs["out_dir"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text("{}")  # no toy_task.json: the page does not try to analyse it
        return SimpleNamespace(seconds=0.0, device="cpu", final_loss=0.5, holdout_accuracy=0.5)


@pytest.fixture()
def fake_training(monkeypatch, tmp_path) -> FakeTraining:
    """Trained toys go to an empty workbench home; training is faked (the page imports it per run)."""
    import interp_core.techniques.toy.train as train

    monkeypatch.setenv("INTERP_WORKBENCH_HOME", str(tmp_path))
    fake = FakeTraining()
    monkeypatch.setattr(train, "train_toy", fake)
    return fake


def _toys(tiny_model_dirs) -> AppTest:
    return open_page(TOYS, tiny_model_dirs["gpt2"], timeout=180)


def _train(at: AppTest, name: str, seed: int = 0) -> AppTest:
    at.text_input(key="toy_name_reverse-increment").set_value(name)
    at.number_input(key="toy_seed_reverse-increment").set_value(seed)
    return at.button(key="toy_train").click().run()


class TestInductionLimit:
    def test_link_asking_for_800_tokens_is_clamped_to_the_workshop_limit(self, tiny_model_dirs, monkeypatch):
        """?ind_len=200&ind_rep=4 with a 32-token limit runs at most 32 tokens and says it clamped."""
        monkeypatch.setenv("WORKBENCH_MAX_PROMPT_TOKENS", "32")
        at = open_page(INDUCTION, tiny_model_dirs["gpt2"], timeout=120)
        at.query_params["ind_len"] = "200"
        at.query_params["ind_rep"] = "4"
        at.run()
        assert not at.exception and [e.value for e in at.error] == []
        length = at.slider(key="ind_len").value
        repeats = at.slider(key="ind_rep").value if "ind_rep" in [s.key for s in at.slider] else 2
        assert 1 + length * repeats <= 32
        assert length == 15  # the longest that still fits two copies
        assert any("using 15" in c.value for c in at.caption)
        expander = [e.label for e in at.expander if e.label.startswith("The token sequence")]
        assert expander and int(expander[0].split("(")[1].split()[0]) <= 32


class TestToyModelsInWorkshopMode:
    def test_only_allowed_toys_are_analysed_and_training_is_off(self, tiny_model_dirs, monkeypatch, tmp_path):
        """With WORKBENCH_ALLOWED_MODELS set, no Train button, and only listed toy models can be picked."""
        monkeypatch.setenv("INTERP_WORKBENCH_HOME", str(tmp_path))
        monkeypatch.setenv("WORKBENCH_ALLOWED_MODELS", f"{tiny_model_dirs['gpt2']},toy:pattern-copy")
        at = _toys(tiny_model_dirs).run()
        _no_errors(at)
        assert "toy_train" not in [b.key for b in at.button]
        assert any("Training is off on this workshop server" in i.value for i in at.info)
        assert any("offers no reverse-increment toy model" in i.value for i in at.info)
        assert "toy_pick" not in [s.key for s in at.selectbox]  # nothing analysed
        at.selectbox(key="toy_task").set_value("pattern-copy").run()
        _no_errors(at)
        assert at.selectbox(key="toy_pick").options == ["toy:pattern-copy"]


class TestToyModelNames:
    def test_default_save_name_differs_between_sessions(self, tiny_model_dirs, fake_training):
        """Two participants who keep the default name do not write to the same folder."""
        first = _toys(tiny_model_dirs).run().text_input(key="toy_name_reverse-increment").value
        second = _toys(tiny_model_dirs).run().text_input(key="toy_name_reverse-increment").value
        assert first.startswith("reverse-increment-") and second.startswith("reverse-increment-")
        assert first != second

    def test_shipped_name_is_refused(self, tiny_model_dirs, fake_training):
        """Saving as 'induction' would hide the shipped model: refused with a message, nothing trained."""
        at = _train(_toys(tiny_model_dirs).run(), "induction")
        assert not at.exception
        assert any("shipped model" in e.value for e in at.error)
        assert fake_training.calls == []

    def test_another_sessions_model_is_not_overwritten(self, tiny_model_dirs, fake_training):
        """A name saved by another session is refused; the session that trained it retrains in place."""
        mine = _train(_toys(tiny_model_dirs).run(), "shared-name")
        _no_errors(mine)
        assert [c["overwrite"] for c in fake_training.calls] == [False]
        theirs = _train(_toys(tiny_model_dirs).run(), "shared-name")
        assert not theirs.exception
        assert any("already exists" in e.value for e in theirs.error)
        assert len(fake_training.calls) == 1
        _train(mine, "shared-name", seed=1)
        _no_errors(mine)
        assert [c["overwrite"] for c in fake_training.calls] == [False, True]


CSV_HEADER = "text,label\n"
GOOD_ROWS = "".join(f"sentence number {i},{'a' if i % 2 else 'b'}\n" for i in range(12))


def _probing(tiny_model_dirs, **query: str) -> AppTest:
    at = open_page(PROBING, tiny_model_dirs["gpt2"], timeout=180)
    for key, value in query.items():
        at.query_params[key] = value
    return at


class TestProbingInputs:
    def test_link_with_upload_asks_for_the_file_and_runs_nothing(self, tiny_model_dirs):
        """?probe_set=upload shows the uploader and a prompt for a file, not the bundled 410-sentence job."""
        at = _probing(tiny_model_dirs, probe_set="upload").run()
        _no_errors(at)
        assert at.selectbox(key="probe_set").value == "upload"
        assert any("Upload a CSV" in i.value for i in at.info)
        assert not any("410 sentences" in m.value for m in at.markdown)
        assert len(at.get("vega_lite_chart")) + len(at.get("arrow_vega_lite_chart")) == 0

    def test_unclosed_quote_is_named_with_its_line(self, tiny_model_dirs):
        """A quote opened on line 5 and never closed is reported as such, not as '1 data rows'."""
        at = _probing(tiny_model_dirs, probe_set="upload").run()
        rows = GOOD_ROWS.splitlines(keepends=True)
        content = CSV_HEADER + "".join(rows[:3]) + '"an unclosed sentence,a\n' + "".join(rows[3:])
        at.text_area(key="probe_paste").set_value(content).run()
        assert not at.exception
        errors = [e.value for e in at.error]
        assert len(errors) == 1 and "line 5 has an opening quote that is never closed" in errors[0]

    def test_upload_over_the_token_limit_names_the_limit(self, tiny_model_dirs, monkeypatch):
        """With a 32-token limit a 47-token sentence is refused, naming 32 (not 128), before any job."""
        monkeypatch.setenv("WORKBENCH_MAX_PROMPT_TOKENS", "32")
        long_sentence = " ".join(["word"] * 47)  # 47 tokens on GPT-2's tokenizer
        at = _probing(tiny_model_dirs, probe_set="upload").run()
        at.text_area(key="probe_paste").set_value(CSV_HEADER + GOOD_ROWS + f"{long_sentence},a\n").run()
        assert not at.exception
        errors = [e.value for e in at.error]
        assert len(errors) == 1 and "Sentence 13" in errors[0] and "1 to 32 tokens" in errors[0]
        assert len(at.get("vega_lite_chart")) + len(at.get("arrow_vega_lite_chart")) == 0


class TestModelErrorOnce:
    @pytest.mark.parametrize("spec", ["./no-such-model-dir", "no/such/model/anywhere"])
    def test_load_error_is_shown_once(self, spec):
        """The sidebar and the page used to show the same load error twice (home page, sidebar visible)."""
        at = AppTest.from_file(APP, default_timeout=60)  # no switch_page: after it AppTest cannot see the sidebar
        at.query_params["model"] = spec
        at.run()
        assert not at.exception
        errors = [e.value for e in at.error]
        assert len(errors) == 1 and f"Could not load model '{spec}'" in errors[0]
        assert any("Pick another model" in i.value for i in at.info)


# --- the cost of an exact patching sweep -------------------------------------------------------
SMOLLM2 = dict(n_layers=30, n_heads=9, d_model=576, d_mlp=1536, d_vocab=49152)  # the default model's shape
GPT2_SMALL = dict(n_layers=12, n_heads=12, d_model=768, d_mlp=3072, d_vocab=50257, gated_mlp=False)


class TestSweepCost:
    def test_calibration_point_and_cells(self):
        """Default shape, 20 tokens differing from the first, resid_pre: 600 cells in about 6 s
        (benchmarks/patching.py --calibrate)."""
        from interp_core.techniques.patching import estimate_exact_cost

        cost = estimate_exact_cost(**SMOLLM2, n_tokens=20, target="resid_pre")
        assert cost.cells == cost.run_cells == 600
        assert cost.seconds == pytest.approx(6.2, rel=0.01)
        assert cost.describe() == "about 6 s"

    def test_other_measurements_are_reproduced(self):
        """Measured on the same run as the calibration point: 10, 40 and 80 tokens took 1.7, 27.0 and
        128 s (x4 to x5 per doubling); GPT-2-small's 240 cells on 20 tokens took 1.85 s."""
        from interp_core.techniques.patching import estimate_exact_cost

        ten, twenty, forty, eighty = (estimate_exact_cost(**SMOLLM2, n_tokens=n, target="resid_pre").seconds
                                      for n in (10, 20, 40, 80))
        assert ten == pytest.approx(1.7, rel=0.15)
        assert forty / twenty == pytest.approx(27.0 / 6.2, rel=0.1)
        assert eighty / twenty == pytest.approx(128 / 6.2, rel=0.15)
        gpt2 = estimate_exact_cost(**GPT2_SMALL, n_tokens=20, target="resid_pre")
        assert gpt2.cells == 240 and gpt2.seconds == pytest.approx(1.85, rel=0.25)

    def test_a_10000_character_prompt_is_far_over_the_threshold(self):
        """2,223 tokens on SmolLM2: 66,690 cells, hours rather than seconds."""
        from interp_core.techniques.patching import CONFIRM_SECONDS, estimate_exact_cost

        cost = estimate_exact_cost(**SMOLLM2, n_tokens=2223, target="resid_pre")
        assert cost.cells == 66_690
        assert cost.seconds > 100 * CONFIRM_SECONDS
        assert cost.describe().endswith(" h")

    def test_targets_and_skipped_positions(self):
        """Heads count heads, not positions; positions before the first difference are not run."""
        from interp_core.techniques.patching import estimate_exact_cost

        heads = estimate_exact_cost(**SMOLLM2, n_tokens=20, target="head_out")
        assert heads.cells == heads.run_cells == 30 * 9
        by_pos = estimate_exact_cost(**SMOLLM2, n_tokens=20, target="head_out_by_pos", n_positions=5)
        assert by_pos.cells == 30 * 9 * 20 and by_pos.run_cells == 30 * 9 * 5
        full, late = (estimate_exact_cost(**SMOLLM2, n_tokens=20, target="mlp_out", n_positions=n) for n in (20, 5))
        assert late.seconds < full.seconds

    def test_matches_the_sweep_it_describes(self, tiny_gpt2):
        """On a real pair the grid's cells are those of the exact result."""
        from interp_core.techniques.patching import exact_patching, prepare_pair, sweep_cost

        pair = prepare_pair(tiny_gpt2, "When Mary and John went", "When John and John went", " Mary", " John")
        for target in ("resid_pre", "head_out_by_pos"):
            cost = sweep_cost(tiny_gpt2, pair, target)
            assert cost.cells == exact_patching(tiny_gpt2, pair, target).grid.size
            assert cost.run_cells == cost.cells // pair.n_pos * (pair.n_pos - 1)  # position 0 is the same in both


class TestPatchCli:
    ARGS = ["--clean", "When Mary and John went", "--corrupt", "When John and John went", "--answer", " Mary",
            "--wrong", " John", "--target", "resid_pre"]

    def test_text_mode_prints_the_estimate_on_stderr(self, tiny_model_dirs, capsys):
        from interp_core.cli import main

        assert main(["patch", "--model", str(tiny_model_dirs["gpt2"]), *self.ARGS]) == 0
        captured = capsys.readouterr()
        assert "exact patching of resid_pre: 10 cells over 5 tokens, about 1 s" in captured.err
        assert "normalised recovery" in captured.out

    def test_json_mode_is_unchanged(self, tiny_model_dirs, tiny_gpt2, capsys):
        """--json prints exactly the result's JSON and no estimate."""
        import json

        from interp_core.cli import main, to_jsonable
        from interp_core.techniques.patching import patch

        assert main(["patch", "--model", str(tiny_model_dirs["gpt2"]), *self.ARGS, "--json"]) == 0
        captured = capsys.readouterr()
        assert "exact patching of" not in captured.err  # (the loader's progress bar may be there)
        expected = patch(tiny_gpt2, "When Mary and John went", "When John and John went", " Mary", " John", "resid_pre")
        assert captured.out == json.dumps(to_jsonable(expected.to_json())) + "\n"


class TestPatchingPageCost:
    PAIR = dict(patch_clean="When Mary and John went to the park, John gave a ball to",  # not a preset: nothing cached
                patch_corrupt="When Mary and John went to the park, Mary gave a ball to",
                patch_answer=" Mary", patch_wrong=" John")

    def test_slow_sweep_waits_for_confirmation(self, tiny_model_dirs, monkeypatch):
        """Over the threshold the exact sweep asks 'Run anyway (about N s)' first; the preview still runs."""
        import interp_core.techniques.patching as patching

        monkeypatch.setattr(patching, "CONFIRM_SECONDS", 0.0)  # every sweep counts as slow
        at = open_page(PATCHING, tiny_model_dirs["gpt2"], timeout=180, **self.PAIR).run()
        _no_errors(at)
        assert "cells, about" in at.toggle(key="patch_exact").label
        assert at.button(key="patch_run_anyway").label.startswith("Run anyway (about ")
        assert any("This exact sweep runs" in i.value for i in at.info)
        charts = len(at.get("vega_lite_chart")) + len(at.get("arrow_vega_lite_chart"))
        assert charts == 1  # the attribution preview only
        at.button(key="patch_run_anyway").click().run()
        _no_errors(at)
        assert [i.value for i in at.info] == []
        assert len(at.get("vega_lite_chart")) + len(at.get("arrow_vega_lite_chart")) >= 3  # + exact grid, agreement
        at.run()  # a later rerun shows the kept result without asking again
        assert "patch_run_anyway" not in [b.key for b in at.button]


class TestProbeEngineChecks:
    def test_unclosed_quote_and_unquoted_comma(self):
        """parse_csv names the line of a quote never closed, and refuses a row with more fields than the header."""
        from interp_core.core.errors import WorkbenchError
        from interp_core.techniques.probe_data import parse_csv

        with pytest.raises(WorkbenchError, match="line 2 has an opening quote that is never closed"):
            parse_csv(CSV_HEADER + '"never closed,a\n' + GOOD_ROWS)
        with pytest.raises(WorkbenchError, match="line 3 has 3 fields but the header has 2"):
            parse_csv(CSV_HEADER + GOOD_ROWS[:20] + "one, two,a\n" + GOOD_ROWS[20:])

    def test_length_message_names_the_models_own_limit(self):
        """On a toy model with context 41 the limit named is 41, not 128."""
        from interp_core import load_model
        from interp_core.core.errors import WorkbenchError
        from interp_core.techniques.probe_data import parse_csv
        from interp_core.techniques.probing import encode_dataset

        toy = load_model("toy:induction", device="cpu")
        assert toy.info.n_ctx == 41
        rows = "".join(f"BOS {i} {i + 1},{'a' if i % 2 else 'b'}\n" for i in range(12))
        dataset = parse_csv(CSV_HEADER + rows + "BOS " + " ".join(str(i % 9) for i in range(45)) + ",a\n")
        with pytest.raises(WorkbenchError, match="Sentence 13 is 46 tokens long; probing takes 1 to 41 tokens here"):
            encode_dataset(toy, dataset)


def test_link_names_the_patching_target_by_its_value(tiny_model_dirs):
    """?patch_target=head_out opens the head grid (the formatted control used to drop the value and patch resid_pre)."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    page = Path(__file__).resolve().parent.parent / "pages" / "06_activation_patching.py"
    at = AppTest.from_file(str(page), default_timeout=120)
    at.session_state["model"] = str(tiny_model_dirs["gpt2"])
    at.query_params["patch_target"] = "head_out"
    at.run()
    assert not at.exception
    assert at.session_state["patch_target"] == "head_out"
