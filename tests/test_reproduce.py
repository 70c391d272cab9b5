"""Reproduce anywhere: snippets, command lines, notebooks and experiment files, checked against the pages."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from page_harness import APP
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

from interp_core import load_model
from interp_core.cli.experiment import (
    COMMAND_PAGES,
    ExperimentError,
    PageRecord,
    build_experiment,
    check_model_spec,
    dumps,
    parse_experiment,
)
from interp_core.cli.main import main as cli_main
from interp_core.cli.notebook import notebook_text
from interp_core.cli.reproduce import command_argv, command_line, python_snippet
from interp_core.core.errors import WorkbenchError
from interp_core.core.load_options import LoadOptions
from interp_core.techniques.attention import AttentionPatterns, PatternsRequest
from interp_core.techniques.contract import Step, recording, run
from interp_core.techniques.predict import PredictRequest
from interp_core.techniques.steering import SteerRequest
from interp_core.techniques.view_step import ViewStep
from ui.navigation import page_files, page_slug
from ui.reproduce import OPEN

ROOT = Path(__file__).resolve().parent.parent
PAGES = [str(p.relative_to(ROOT)) for p in page_files()]
SLUGS = [page_slug(p) for p in page_files()]
TOY = "toy:induction"
@pytest.fixture()
def navigation_app(monkeypatch: pytest.MonkeyPatch):
    """AppTest runs of app.py that always go through its st.navigation.

    AppTest resets ``PagesManager.uses_pages_directory`` before each run, and with a ``pages/``
    folder Streamlit then runs a switched-to page file alone, without app.py (so without the
    sidebar or the code after ``navigation.run()``). A real server runs v1 mode only until app.py's
    first ``st.navigation`` turns it off; this does the same for every AppTest run.
    """
    init = PagesManager.__init__

    def navigation_only(self, *args, **kwargs):
        init(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", navigation_only)

    def make(model: str, **state: object) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=300)
        at.query_params["model"] = model
        at.session_state["model"] = model
        for key, value in state.items():
            at.session_state[key] = value
        return at

    return make


def visit(at: AppTest, page: str) -> AppTest:
    """Run ``page`` in ``at`` (the home page first, as switch_page needs one run)."""
    if not getattr(at, "ran_once", False):
        at.run()
        at.ran_once = True
    if page != PAGES[0]:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def same_data(download: pd.DataFrame, table: pd.DataFrame) -> None:
    """``download`` is exactly ``table``: same columns, index, dtypes and values, bit for bit."""
    pd.testing.assert_frame_equal(download, table, check_exact=True)


def reproduces_downloads(at: AppTest, page: str, *, shown: bool = True) -> str:
    """Execute the page's snippet and compare every download of the page with its ``tables``; return the snippet."""
    steps = at.session_state["_repro_steps"]
    snippet = python_snippet(steps)
    if shown:
        (expander,) = [e for e in at.expander if e.label == "Reproduce in Python"]
        if not at.session_state[OPEN]:
            assert not expander.code  # drawn only once opened
            at.session_state[OPEN] = True
            at.run()
            assert not at.exception, [e.value for e in at.exception]
            (expander,) = [e for e in at.expander if e.label == "Reproduce in Python"]
        assert expander.code[0].value.strip() == snippet.strip()
    namespace: dict = {}
    exec(compile(snippet, f"<{page} snippet>", "exec"), namespace)  # noqa: S102 (the generated code under test)
    tables = namespace["tables"]
    items = at.session_state["_report_items"]
    assert items, f"{page}: no download to compare"
    assert {item["name"] for item in items} <= set(tables)  # every download, the ones a view widget picked included
    for item in items:
        same_data(item["data"], tables[item["name"]])
    views = [s for s in steps if isinstance(s, ViewStep)]
    view_names = [n for v in views for n in v.names]
    assert len(view_names) == len(set(view_names)) and set(view_names) <= {item["name"] for item in items}, view_names
    return snippet


class TestSnippets:
    @pytest.mark.parametrize("page", PAGES)
    def test_snippet_reproduces_page_downloads(self, page, navigation_app, tiny_model_dirs):
        """Every page's snippet, executed on the tiny model, gives exactly the data the page offers for download."""
        reproduces_downloads(visit(navigation_app(str(tiny_model_dirs["gpt2"])), page), page)

    @pytest.mark.parametrize("page, widgets, picked", [
        ("pages/04_attention.py", {"attn_layer": 0, "attn_head": 1, "attn_query": 3, "attn_keys": [1, 2]},
         "tables['attention_L0H1'] = patterns.head_table(layer=0, head=1)"),
        ("pages/03_logit_lens.py", {"lens_layers": ("L0", "L1")}, "logit_lens.grid_table(first=1, last=2)"),
        ("pages/12_information_flow.py", {"flow_threshold": 0.0}, "route_table(threshold=0.0, position=-1)"),
        ("pages/11_steering.py", {"steer_lens_k": 2}, "lens_table(k=2)"),
    ], ids=["attention head", "lens layer range", "flow threshold", "steering lens k"])
    def test_view_widgets_moved(self, page, widgets, picked, navigation_app, tiny_model_dirs):
        """With the view widgets away from their defaults, the snippet still gives exactly the downloads, by the view's method."""
        at = visit(navigation_app(str(tiny_model_dirs["gpt2"]), **widgets), page)
        assert picked in reproduces_downloads(at, page)

    def test_fragment_rerun_replaces_its_view_steps(self, monkeypatch):
        """A fragment's rerun (forget_charts, then its views again for another head) leaves one view step per download."""
        import streamlit as st

        from ui import page, runner

        monkeypatch.setattr(st, "session_state", {})
        patterns = AttentionPatterns(("a", "b", "a"), np.arange(3), np.tril(np.full((2, 3, 3, 3), 0.5, dtype=np.float32)))
        runner.record(None, PatternsRequest("a b a"), patterns)

        def fragment(head: int) -> None:
            page.forget_charts()
            runner.view(f"attention_L0H{head}", patterns, "head_table", layer=0, head=head)
            runner.view("head_scores", patterns, "score_table")

        fragment(1)
        fragment(2)
        assert [s.names for s in runner.page_steps() if isinstance(s, ViewStep)] == [("attention_L0H2",), ("head_scores",)]
        runner.view("attention_L0H2", patterns, "head_table", layer=0, head=2)  # the same download again: replaced
        page.forget_charts({"head_scores"})  # a fragment that redraws only this chart
        assert [s.names for s in runner.page_steps() if isinstance(s, ViewStep)] == [("attention_L0H2",)]
        assert len(runner.page_steps()) == 2

    def test_view_steps_follow_the_sliders(self, navigation_app, tiny_model_dirs):
        """Moving the head slider twice leaves one view step per download, for the head now shown."""
        at = visit(navigation_app(str(tiny_model_dirs["gpt2"])), "pages/04_attention.py")
        for head in (2, 0):
            at.slider(key="attn_head").set_value(head).run()
        names = [n for s in at.session_state["_repro_steps"] if isinstance(s, ViewStep) for n in s.names]
        layer = at.slider(key="attn_layer").value
        assert [n for n in names if n.startswith("attention_L")] == [f"attention_L{layer}H0"]
        reproduces_downloads(at, "pages/04_attention.py", shown=False)

    def test_snippet_loads_with_the_apps_load_options(self, navigation_app, tiny_model_dirs):
        """A bfloat16 session: the snippet loads in bfloat16 (not float32) and gives exactly the page's downloads."""
        directory = str(tiny_model_dirs["gpt2"])
        at = visit(navigation_app(directory, load_dtype="bfloat16"), PAGES[0])
        steps = at.session_state["_repro_steps"]
        assert {s.options for s in steps if isinstance(s, Step)} == {LoadOptions(dtype="bfloat16")}
        snippet = reproduces_downloads(at, PAGES[0])
        assert f"model = load_model({directory!r}, options=LoadOptions(dtype='bfloat16'))" in snippet
        step = next(s for s in steps if isinstance(s, Step))
        argv = command_argv(step.request, step.model, step.options)
        assert argv[argv.index("--dtype") + 1] == "bfloat16"
        assert command_argv(step.request, step.model) != argv  # the float32 line differs

    def test_snippet_writes_view_steps_and_options(self):
        """Load options other than the defaults become LoadOptions(...); a view step becomes tables[name] = var.method(...)."""
        result = object.__new__(type("Fake", (), {"tables": lambda self: {}, "to_json": lambda self: {}}))
        step = Step("toy:x", "f", PredictRequest("a b"), result, LoadOptions(dtype="float16", device_map="auto"))
        patterns = AttentionPatterns(("a", "b"), np.arange(2), np.full((1, 1, 2, 2), 0.5, dtype=np.float32))
        view = ViewStep(("one", "two"), patterns, "head_table", {"layer": np.int64(0), "head": 0})
        text = python_snippet([step, Step("toy:x", "f", PatternsRequest("a b"), patterns), view])
        assert "model = load_model('toy:x', options=LoadOptions(dtype='float16', device_map='auto'))" in text
        assert "model_2 = load_model('toy:x')" in text
        assert "tables['one'] = tables['two'] = patterns.head_table(layer=0, head=0)" in text
        with pytest.raises(WorkbenchError, match="not a public, documented"):
            ViewStep(("x",), patterns, "to_json", {})

    def test_snippet_uses_only_non_default_fields(self):
        """The snippet names only what differs from a request's defaults, and feeds earlier results forward."""
        from interp_core.techniques.contract import Step

        step = Step("toy:x", "f", PredictRequest("a b", top_k=10), object())
        text = python_snippet([step])
        assert "PredictRequest(prompt='a b')" in text and "load_model('toy:x')" in text


class TestCommandLines:
    def test_command_line_parses_back_to_the_same_request(self):
        """A steering request with a sweep, a negative coefficient and a target becomes flags that rebuild it."""
        request = SteerRequest(prompt="a", positive="b", negative="c", layer=1, coefficient=-0.5,
                               coefficients=(0.0, 0.5, 1.25), target=" x", ablate=True)
        argv = command_argv(request, TOY)
        assert argv[:3] == ["steer", "--model", TOY] and "--ablate" in argv and "--coefficient=-0.5" in argv
        line = command_line(request, TOY)
        assert line.startswith("python -m interp_core steer") and line.endswith("--json")

    def test_request_without_subcommand_has_no_line(self):
        """A request no subcommand computes exactly gets no command line (the page says so)."""
        from interp_core.techniques.attention import PatternsRequest

        assert command_line(PatternsRequest("a b"), TOY) is None

    def test_cli_line_prints_the_pages_json(self, capsys):
        """The command line of a request prints exactly its result's JSON."""
        model = load_model(TOY, device="cpu")
        request = PredictRequest("BOS 1 2 3 1 2", top_k=3)
        assert cli_main([*command_argv(request, TOY), "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(run(model, request).to_json()))


class TestNotebook:
    def test_notebook_executes_end_to_end(self, navigation_app, tiny_model_dirs, tmp_path):
        """The notebook of two visited pages runs top to bottom and redraws every chart from the recomputed tables."""
        from nbclient import NotebookClient

        from ui.reproduce import VISITED
        from ui.reproduce import notebook_pages as pages_of

        at = visit(navigation_app(str(tiny_model_dirs["gpt2"])), PAGES[0])
        visit(at, "pages/11_steering.py")
        visited = at.session_state[VISITED]
        assert set(visited) == {"home", "steering"}
        charts = [c for v in visited.values() for c in v["charts"]]
        assert any(c.rebind for c in charts)
        # notebook_pages reads session state; give it this session's
        import streamlit as st

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(st, "session_state", {VISITED: visited})
            pages = pages_of(["home", "steering"])
        notebook = nbformat.reads(notebook_text(str(tiny_model_dirs["gpt2"]), pages), as_version=4)
        NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
        code = [c for c in notebook.cells if c.cell_type == "code"]
        drawn = [c for c in code if c.source.startswith("spec = json.loads(")]
        assert len(drawn) == len(charts)
        for cell in drawn:
            shown = [out.get("data", {}) for out in cell.outputs if out.get("output_type") == "execute_result"]
            assert any("vegaEmbed" in d.get("text/html", "") or any("vegalite" in k for k in d) for d in shown), cell.source[:80]
        markdown = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
        assert "How to read it." in markdown


def _visited_experiment(at: AppTest, model: str) -> str:
    from ui.reproduce import VISITED

    visited = at.session_state[VISITED]
    fingerprint = load_model(model, device="cpu").fingerprint
    records = [PageRecord(slug, v["title"], v["inputs"], tuple(v["steps"])) for slug, v in visited.items()]
    return dumps(build_experiment(model, fingerprint, records))


def _specs(at: AppTest) -> list[str]:
    return [c.proto.spec for c in list(at.get("vega_lite_chart")) + list(at.get("arrow_vega_lite_chart"))]


class TestExperiments:
    def test_saved_experiment_reopens_with_identical_charts(self, navigation_app, monkeypatch):
        """Save two views on a toy model, open the file in a fresh session: same charts, nothing recomputed."""
        from ui import jobs, runner

        at = visit(navigation_app(TOY, prompt="BOS 1 2 3 1 2 3", top_k=7), PAGES[0])
        home_specs = _specs(at)
        visit(at, "pages/09_circuits.py")
        circuit_specs = _specs(at)
        text = _visited_experiment(at, TOY)

        jobs._results.clear()  # noqa: SLF001 (a fresh server: nothing cached)
        fresh = navigation_app(TOY)
        fresh.run()  # the home page on its default prompt
        monkeypatch.setattr(runner, "run_technique", lambda *a, **k: pytest.fail("recomputed instead of reopening"))
        fresh.file_uploader(key="repro_upload").set_value(("experiment.json", text.encode(), "application/json")).run()
        assert not fresh.sidebar.error, [e.value for e in fresh.sidebar.error]
        fresh.button(key="repro_open_1").click().run()  # the Circuits view
        assert not fresh.exception, [e.value for e in fresh.exception]
        assert _specs(fresh) == circuit_specs
        assert any("nothing recomputed" in s.value for s in fresh.success)
        fresh.file_uploader(key="repro_upload").set_value(("experiment.json", text.encode(), "application/json")).run()
        fresh.button(key="repro_open_0").click().run()
        assert _specs(fresh) == home_specs
        assert fresh.session_state["top_k"] == 7 and fresh.session_state["prompt"] == "BOS 1 2 3 1 2 3"

    def test_other_weights_warn_and_recompute(self, navigation_app):
        """A fingerprint that differs from the loaded model's: a warning, and the page computes afresh."""
        model = load_model(TOY, device="cpu")
        with recording() as steps:
            run(model, PredictRequest("BOS 1 2", top_k=4))
        text = dumps(build_experiment(TOY, "not-these-weights", [PageRecord("home", "Home", {"top_k": 4, "prompt": "BOS 1 2"},
                                                                            tuple(s.__class__(s.model, "not-these-weights", s.request, s.result) for s in steps))]))
        at = navigation_app(TOY)
        at.run()
        at.file_uploader(key="repro_upload").set_value(("e.json", text.encode(), "application/json")).run()
        at.button(key="repro_open_0").click().run()
        assert any("weights differ" in w.value for w in at.warning), ([w.value for w in at.warning], [e.value for e in at.error],
                                                                      [e.value for e in at.success])
        assert not at.exception

    def test_bfloat16_experiment_reopens_in_bfloat16(self, navigation_app, monkeypatch):
        """An experiment computed in bfloat16 reopens with the sidebar's precision set to it: its saved results, nothing recomputed."""
        from ui import jobs, runner

        model = load_model(TOY, device="cpu", options=LoadOptions(dtype="bfloat16"))
        with recording() as steps:
            run(model, PredictRequest("BOS 1 2", top_k=4))
        text = dumps(build_experiment(TOY, model.fingerprint, [PageRecord("home", "Home", {"top_k": 4, "prompt": "BOS 1 2"}, tuple(steps))]))
        jobs._results.clear()  # noqa: SLF001 (a fresh server: nothing cached)
        at = navigation_app(TOY)
        at.run()
        monkeypatch.setattr(runner, "run_technique", lambda *a, **k: pytest.fail("recomputed instead of reopening"))
        at.file_uploader(key="repro_upload").set_value(("e.json", text.encode(), "application/json")).run()
        at.button(key="repro_open_0").click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.session_state["load_dtype"] == "bfloat16"
        assert any("nothing recomputed" in s.value for s in at.success), [w.value for w in at.warning]
        (step,) = [s for s in at.session_state["_repro_steps"] if isinstance(s, Step)]
        assert step.options == LoadOptions(dtype="bfloat16")


BAD_FILES = {
    "bad JSON": (b'{"format": "interp-workbench-experiment", "version": 1, "pages": [', "not valid JSON"),
    "not UTF-8": (b"\xff\xfe\x00", "not UTF-8"),
    "another JSON file": (b'{"hello": 1}', "not an experiment file"),
    "a path as the model": (b'{"format": "interp-workbench-experiment", "version": 1, "model": "/etc/passwd", "pages": []}', "file path"),
    "a directory as the model": (b'{"format": "interp-workbench-experiment", "version": 1, "model": "../models/x", "pages": []}', "file path"),
}


def _tampered(change) -> bytes:
    model = load_model(TOY, device="cpu")
    with recording() as steps:
        run(model, PredictRequest("BOS 1 2", top_k=4))
    data = json.loads(dumps(build_experiment(TOY, model.fingerprint, [PageRecord("home", "Home", {"top_k": 4}, tuple(steps))])))
    change(data)
    return json.dumps(data).encode()


class TestMalformedFiles:
    @pytest.mark.parametrize("name", list(BAD_FILES))
    def test_bad_file_refused(self, name):
        """Malformed files: one clear ExperimentError saying what is wrong."""
        raw, message = BAD_FILES[name]
        with pytest.raises(ExperimentError, match=message):
            parse_experiment(raw, SLUGS)

    @pytest.mark.parametrize("change, message", [
        (lambda d: d["pages"][0].update(page="admin"), "does not have"),
        (lambda d: d["pages"][0]["steps"][0]["request"]["fields"].update(top_k="four"), "top_k: expected int"),
        (lambda d: d["pages"][0]["steps"][0]["request"]["fields"].update(top_k=-3), "not valid"),
        (lambda d: d["pages"][0]["steps"][0]["request"].update(__dataclass__="os:system"), "not a workbench type"),
        (lambda d: d["pages"][0]["steps"][0]["result"]["fields"].pop("tokens"), "has fields"),
        (lambda d: d["pages"][0]["steps"][0]["result"]["fields"]["top_probs"].update(data="AAAA"), "do not fill"),
        (lambda d: d["pages"][0]["steps"][0].update(model="/tmp/evil"), "file path"),
        (lambda d: d["pages"][0].update(inputs={"__dict__": [["top_k", {"__bytes__": "AA=="}]]}), "inputs must map"),
        (lambda d: d.update(pages="all"), "must be a list"),
    ], ids=["unknown page", "wrong type", "invalid request", "foreign class", "missing field", "short array", "path in step",
            "bad input", "pages not a list"])
    def test_tampered_file_refused(self, change, message):
        """Tampered files: wrong types, unknown pages, foreign classes, paths: refused before anything is loaded."""
        with pytest.raises(ExperimentError, match=message):
            parse_experiment(_tampered(change), SLUGS)

    def test_untampered_file_round_trips(self):
        """The same file, unchanged, parses, and its result is bit-for-bit the saved one."""
        experiment = parse_experiment(_tampered(lambda d: None), SLUGS)
        step = experiment.pages[0].steps[0]
        assert step.request == PredictRequest("BOS 1 2", top_k=4)
        model = load_model(TOY, device="cpu")
        assert json.dumps(step.result.to_json()) == json.dumps(run(model, step.request).to_json())

    def test_app_shows_the_message_and_loads_nothing(self, navigation_app):
        """In the app: a red box in the sidebar, no view buttons, the model unchanged."""
        at = navigation_app(TOY)
        at.run()
        at.file_uploader(key="repro_upload").set_value(("e.json", BAD_FILES["a path as the model"][0], "application/json")).run()
        assert any("file path" in e.value and "Nothing was loaded" in e.value for e in at.sidebar.error)
        assert not [b for b in at.button if (b.key or "").startswith("repro_open_")]
        assert at.session_state["model"] == TOY and not at.exception

    @pytest.mark.parametrize("spec", ["smollm2-135m", "toy:induction", "gpt2", "EleutherAI/pythia-70m"])
    def test_model_names_accepted(self, spec):
        assert check_model_spec(spec) == spec


def _with_views(options: LoadOptions | None = None) -> dict:
    """An experiment of one attention step, loaded with ``options``, and two view steps on its result."""
    model = load_model(TOY, device="cpu", options=options)
    with recording() as steps:
        patterns = run(model, PatternsRequest("BOS 1 2 3 1 2"))
        run(model, PredictRequest("BOS 1 2", top_k=4))
    views = [ViewStep(("attention_L0H1",), patterns, "head_table", {"layer": 0, "head": 1}),
             ViewStep(("attention_from_token",), patterns, "token_table", {"query": 4, "keys": [1, 2]})]
    record = PageRecord("attention", "Attention", {}, (*steps, *views))
    return json.loads(dumps(build_experiment(TOY, model.fingerprint, [record])))


class TestViewsAndOptionsInFiles:
    def test_views_and_options_round_trip(self):
        """View steps and load options are saved and read back: the reopened page's snippet is the saved one."""
        data = _with_views(LoadOptions(dtype="bfloat16"))
        assert "views" in data["pages"][0] and data["pages"][0]["steps"][0]["options"]
        (page,) = parse_experiment(json.dumps(data), SLUGS).pages
        steps = [s for s in page.steps if isinstance(s, Step)]
        assert {s.options for s in steps} == {LoadOptions(dtype="bfloat16")}
        views = [s for s in page.steps if isinstance(s, ViewStep)]
        assert [(v.names, v.method, v.arguments) for v in views] == [
            (("attention_L0H1",), "head_table", {"layer": 0, "head": 1}), (("attention_from_token",), "token_table", {"query": 4, "keys": [1, 2]})]
        assert all(v.result is steps[0].result for v in views)
        text = python_snippet(page.steps)
        assert "options=LoadOptions(dtype='bfloat16')" in text and "tables['attention_L0H1'] = patterns.head_table(layer=0, head=1)" in text
        namespace: dict = {}
        exec(compile(text, "<reopened snippet>", "exec"), namespace)  # noqa: S102 (the generated code under test)
        same_data(namespace["tables"]["attention_L0H1"], views[0].table())

    def test_file_without_views_or_options_opens(self):
        """A file written before view steps and load options existed opens, its steps with the default options."""
        data = _with_views()
        data["pages"][0].pop("views")
        assert all("options" not in s for s in data["pages"][0]["steps"])
        (page,) = parse_experiment(json.dumps(data), SLUGS).pages
        assert all(isinstance(s, Step) and s.options == LoadOptions() for s in page.steps)

    @pytest.mark.parametrize("change, message", [
        (lambda d: d["pages"][0]["views"][0].update(method="__class__"), "not a public, documented"),
        (lambda d: d["pages"][0]["views"][0].update(method="to_json"), "not a public, documented"),
        (lambda d: d["pages"][0]["views"][0].update(step=7), "refers to step 7"),
        (lambda d: d["pages"][0]["views"][0].update(names="x"), "list of download names"),
        (lambda d: d["pages"][0]["views"][0]["arguments"].append(["evil", {"__step__": -1}]), "refers to step -1"),
        (lambda d: d["pages"][0]["views"][0].pop("arguments"), "must have exactly"),
        (lambda d: d["pages"][0]["steps"][0].update(options={"__dataclass__": "interp_core.core.load_options:LoadOptions", "fields": {
            "dtype": "float32", "device_map": None, "max_memory": None, "offload_folder": "/tmp/x"}}), "offload folder"),
        (lambda d: d["pages"][0]["steps"][0].update(options={"__dataclass__": "interp_core.core.load_options:LoadOptions", "fields": {
            "dtype": "float64", "device_map": None, "max_memory": None, "offload_folder": None}}), "float64"),
        (lambda d: d["pages"][0]["steps"][0].update(options=3), "not the model's load options"),
    ], ids=["dunder method", "not a view method", "step out of range", "names not a list", "bad argument reference",
            "missing key", "offload folder", "unknown dtype", "options not options"])
    def test_tampered_views_and_options_refused(self, change, message):
        """A view naming a private or foreign method, a missing step, or options naming a folder: refused, nothing loaded."""
        data = _with_views()
        change(data)
        with pytest.raises(ExperimentError, match=message):
            parse_experiment(json.dumps(data), SLUGS)


class TestCliSave:
    def test_save_writes_an_experiment_that_parses(self, tmp_path, capsys):
        """``--save FILE``: the CLI writes the same kind of file, on its page, with the command line and results."""
        target = tmp_path / "run.json"
        assert cli_main(["predict", "--model", TOY, "--prompt", "BOS 1 2 3", "--top-k", "3", "--json", "--save", str(target)]) == 0
        out = capsys.readouterr()
        experiment = parse_experiment(target.read_bytes(), SLUGS)
        (page,) = experiment.pages
        assert page.page == COMMAND_PAGES["predict"] and page.command == ("predict", "--model", TOY, "--prompt", "BOS 1 2 3", "--top-k", "3")
        assert json.loads(out.out) == json.loads(json.dumps(page.steps[0].result.to_json()))
        assert experiment.fingerprint == load_model(TOY, device="cpu").fingerprint

    def test_save_to_missing_folder_fails_before_work(self, tmp_path, capsys):
        """A --save path whose folder is missing: status 2 and a message, before any model is loaded."""
        argv = ["predict", "--model", TOY, "--prompt", "BOS 1", "--json", "--save", str(tmp_path / "nope" / "x.json")]
        assert cli_main(argv) == 2
        assert "cannot write" in json.loads(capsys.readouterr().out)["error"]
