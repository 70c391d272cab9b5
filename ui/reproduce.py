"""Reproduce anywhere: the "Reproduce in Python" expander under every page, and the sidebar's experiments.

Nothing here is written per page. :mod:`ui.runner` records every step a page shows (model,
request, result); after the page ran, :func:`after_page` keeps the visit (widget inputs, steps,
charts) and draws the page's snippet, command lines and notebook downloads from those steps.
:func:`experiment_sidebar` saves every visited page as one experiment file and opens one:
its widget inputs are restored and its results put in the runner's cache (when the loaded
weights have the saved fingerprint), so the page shows them without recomputing.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from interp_core import WorkbenchError
from interp_core.cli.experiment import (
    Experiment,
    PageRecord,
    build_experiment,
    check_model_spec,
    dumps,
    library_versions,
    parse_experiment,
)
from interp_core.cli.notebook import ChartCell, NotebookPage, notebook_text
from interp_core.cli.reproduce import command_line, python_snippet
from interp_core.core.load_options import LoadOptions
from interp_core.techniques.contract import Step
from interp_core.techniques.view_step import ViewStep
from ui import jobs, runner, state
from ui.charts import chart_spec
from ui.config import allowed_models
from ui.loading_views import set_options
from ui.navigation import page_files, page_question, page_slug

VISITED = "_repro_visited"  # session state: page slug -> {"title", "inputs", "steps", "charts"}
PENDING = "_repro_pending"  # a page to switch to once an experiment was opened
NOTICE = "_repro_notice"  # (kind, message) shown once on the opened page
OPEN = "repro_open"  # widget key: whether the "Reproduce in Python" expander is open
PLAIN = (str, int, float, bool, type(None))
_TRIGGERS = {"trigger_value", "json_trigger_value", "string_trigger_value", "file_uploader_state_value"}


def _widget_kinds() -> dict[str, str]:
    """Widget key -> the kind of value it holds (``trigger_value`` for a button), as far as Streamlit tells."""
    try:
        from streamlit.runtime.state.session_state_proxy import get_session_state

        inner = get_session_state()._state
        metadata = inner._new_widget_state.widget_metadata
        return {key: metadata[wid].value_type for key, wid in inner._key_id_mapping.items() if wid in metadata}
    except (AttributeError, KeyError, RuntimeError):  # another Streamlit: keep every plain value, buttons filtered below
        return {}


def _plain(value: object) -> bool:
    if isinstance(value, (list, tuple)):
        return all(isinstance(v, PLAIN) for v in value)
    return isinstance(value, PLAIN)


def _restorable(key: object) -> bool:
    return (isinstance(key, str) and not key.startswith(("_", "repro_")) and "_preset_" not in key
            and not key.endswith(("-csv", "-json")) and key not in ("report_download", "load_offload_folder"))


def widget_inputs() -> dict[str, object]:
    """The page's inputs: every widget value in session state that a later run can set again (no buttons, no uploads)."""
    kinds = _widget_kinds()
    return {key: value for key, value in st.session_state.to_dict().items()
            if _restorable(key) and _plain(value) and kinds.get(key) not in _TRIGGERS}


def _chart_cells(items: list[dict], tables: dict[str, pd.DataFrame]) -> tuple[ChartCell, ...]:
    cells = []
    for item in items:
        chart = item["chart"]
        if isinstance(chart, alt.TopLevelMixin):
            spec = chart_spec(chart)  # the page drew it whole; the notebook does too
        else:
            spec = dict(chart)
        table, top = tables.get(item["name"]), spec.get("data") or {}
        rows = top.get("values") or (spec.get("datasets") or {}).get(top.get("name")) or []
        # the chart plots the technique's own table (not a frame the page reshaped): the notebook plots tables[name]
        rebind = table is not None and bool(rows) and len(rows) == len(table) and set(rows[0]) <= set(table.columns)
        cells.append(ChartCell(item["name"], item.get("caption", ""), item.get("explain", ""), spec, rebind))
    return tuple(cells)


def _tables(steps: list[Step | ViewStep]) -> dict[str, pd.DataFrame]:
    """The page's downloads as the snippet computes them: every step's tables, then the view steps' tables."""
    found: dict[str, pd.DataFrame] = {}
    for step in sorted(steps, key=lambda s: isinstance(s, ViewStep)):
        try:
            found.update(step.result.tables() if isinstance(step, Step) else dict.fromkeys(step.names, step.table()))
        except Exception:  # a result without tables (a training run) adds none
            continue
    return found


def page_name(page: object) -> str:
    """A navigation page's name as experiment files and page_slug() know it (the default page has an empty URL path)."""
    return getattr(page, "url_path", "") or page_slug(page_files()[0])


def after_page(page: object) -> None:
    """Record this visit and draw the "Reproduce in Python" expander (app.py, after the page ran)."""
    slug = page_name(page)
    steps = runner.live_steps()  # the list itself: the downloads follow a fragment's reruns (a slider moved since)
    visited = st.session_state.setdefault(VISITED, {})
    if steps:
        items = list(st.session_state.get("_report_items") or [])
        visited[slug] = {"title": getattr(page, "title", slug), "inputs": widget_inputs(), "steps": steps,
                         "charts": _chart_cells(items, _tables(steps))}
    notice = st.session_state.pop(NOTICE, None)
    if notice:
        (st.warning if notice[0] == "warning" else st.success)(notice[1])
    if not steps:
        return
    # Drawn only while open (a click reruns the page from its cached results): the highlighted snippet and its
    # buttons were about a tenth of the browser's work to show a page (Induction Heads, 2-core machine), for a
    # box most visits never open.
    box = st.expander("Reproduce in Python", icon="🐍", key=OPEN, on_change="rerun")
    if box.open:
        with box:
            _draw_reproduce(slug, steps)


def _draw_reproduce(slug: str, steps: list[Step | ViewStep]) -> None:
    """The snippet as of this run; its download (and the notebooks) as of the click, after any fragment rerun."""
    snippet = python_snippet(steps)
    st.markdown("This code computes exactly what the page shows, from the same model and inputs; "
                "`tables` holds the page's downloads by name. A slider that only changes the view redraws its "
                "own part of the page, not this box: **Download .py** always has the view as it is now.")
    st.code(snippet, language="python")
    lines, missing = [], []
    for step in (s for s in steps if isinstance(s, Step)):
        line = command_line(step.request, step.model, step.options)
        (lines.append(line) if line else missing.append(type(step.request).__name__))
    if lines:
        st.markdown("**Command line** (prints the same result as JSON; add `--save FILE` to keep it as an experiment):")
        st.code("\n".join(dict.fromkeys(lines)), language="bash")
    if missing:
        st.caption(f"No CLI subcommand computes exactly {', '.join(dict.fromkeys(missing))}; the Python snippet does.")
    a, b, c = st.columns(3)
    a.download_button("Download .py", lambda: python_snippet(list(steps)), f"{slug}.py", "text/x-python", key="repro_py", on_click="ignore")
    b.download_button("Notebook: this page", lambda: _notebook([slug]), f"{slug}.ipynb", "application/x-ipynb+json",
                      key="repro_nb_page", on_click="ignore")
    c.download_button("Notebook: every visited page", lambda: _notebook(list(st.session_state.get(VISITED, {}))),
                      "workbench_session.ipynb", "application/x-ipynb+json", key="repro_nb_all", on_click="ignore")


def notebook_pages(slugs: list[str]) -> list[NotebookPage]:
    visited = st.session_state.get(VISITED, {})
    questions = {page_slug(p): page_question(p) for p in page_files()}
    return [NotebookPage(visited[s]["title"], questions.get(s, ""), python_snippet(visited[s]["steps"]), visited[s]["charts"])
            for s in slugs if s in visited]


def _notebook(slugs: list[str]) -> str:
    return notebook_text(state.model_spec(), notebook_pages(slugs), library_versions())


def experiment_text() -> str:
    """Every visited page of this session as one experiment file."""
    visited = st.session_state.get(VISITED, {})
    model = state.get_model(state.model_spec()) if st.session_state.get("_model_failed") != state.model_spec() else None
    records = [PageRecord(slug, v["title"], v["inputs"], tuple(v["steps"])) for slug, v in visited.items()]
    return dumps(build_experiment(state.model_spec(), None if model is None else model.fingerprint, records))


def experiment_sidebar() -> None:
    """The sidebar's "Experiment" expander: save every visited page; open a saved experiment."""
    with st.sidebar.expander("Experiment"):
        if st.session_state.get(VISITED):
            st.download_button("Save experiment", experiment_text, "experiment.json", "application/json", key="repro_save",
                               on_click="ignore", help="Every visited page's inputs and results, the model and its fingerprint, in one JSON file.")
        upload = st.file_uploader("Open experiment", type=["json"], key="repro_upload")
        if upload is None:
            return
        try:
            experiment = parse_experiment(upload.getvalue(), [page_slug(p) for p in page_files()])
            _check_allowed(experiment.model)
        except WorkbenchError as error:
            st.error(f"Could not open this experiment: {error} Nothing was loaded.")
            return
        st.caption(f"Model {experiment.model}, saved {experiment.created or 'at an unknown time'}. Open a view:")
        for i, record in enumerate(experiment.pages):
            st.button(record.title, key=f"repro_open_{i}", on_click=_open, args=(experiment, record), width="stretch")


def _check_allowed(spec: str) -> None:
    fixed = allowed_models()
    if fixed and spec not in fixed:
        raise WorkbenchError(f"this workshop server only offers {', '.join(fixed)}, and the experiment used {spec}.")


def _open(experiment: Experiment, record: PageRecord) -> None:
    """Button callback: restore the view's inputs, hand its saved results to the runner's cache, switch to its page."""
    st.session_state["model"] = check_model_spec(experiment.model)
    for key, value in record.inputs.items():
        if _restorable(key) and key != "model":
            st.session_state[key] = value
    restored, differs = 0, []
    steps = [s for s in record.steps if isinstance(s, Step)]
    loaded = next((s.options for s in steps if s.model is not None), LoadOptions())
    if loaded != LoadOptions() and not allowed_models():  # the page loads the model as the experiment did
        set_options(loaded)
    for step in steps:
        try:
            spec = None if step.model is None else check_model_spec(step.model)
            model = None if spec is None else (state.get_model(spec) if step.options == LoadOptions() else state.get_model(spec, step.options))
        except WorkbenchError as error:
            differs.append(f"{step.model} could not be loaded ({error})")
            continue
        if model is not None and model.fingerprint != step.fingerprint:
            differs.append(f"{step.model}: saved weights {step.fingerprint}, loaded {model.fingerprint}")
            continue
        jobs.remember(runner.cache_key(model, step.request), step.result)
        restored += 1
    if differs:
        st.session_state[NOTICE] = ("warning", "The loaded model's weights differ from the experiment's ("
                                    + "; ".join(dict.fromkeys(differs)) + "), so this page recomputes on the loaded weights "
                                    "instead of showing the saved results.")
    else:
        st.session_state[NOTICE] = ("success", f"Opened '{record.title}' from the experiment: {restored} saved result(s), nothing recomputed.")
    st.session_state[PENDING] = record.page


def follow_pending(pages: list) -> None:
    """Switch to the page an opened experiment asked for (app.py, after st.navigation)."""
    slug = st.session_state.pop(PENDING, None)
    target = next((p for p in pages if page_name(p) == slug), None)
    if target is not None:
        # switch_page's default clears the query string, which Streamlit refuses while widgets are bound to it;
        # given a mapping it replaces only unbound parameters, and each restored widget writes its own back
        kept = {key: value for key, value in st.query_params.to_dict().items() if key == "presenter"}
        st.switch_page(target, query_params=kept)


