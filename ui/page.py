"""Building blocks every technique page uses, so pages look and behave alike.

- :func:`header`: title and the question the page answers.
- :func:`explain`: how to read a chart; an expander, collapsed in presenter mode.
- :func:`show_chart`: an Altair chart with CSV/JSON downloads of its data next to it; the
  chart is also recorded for the page's one-file report.
- :func:`forget_charts`: a fragment's charts leave the report before the fragment draws them again.
- :func:`caution`: the line on what a picture does and does not show.
- :func:`presets`: the one preset mechanism: buttons that fill the page's inputs, one of them on first visit.
- :func:`url_names_options`: let a link name an option of a formatted widget by its value.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd
import streamlit as st

from interp_core import LoadedModel
from ui import runner
from ui.charts import download_buttons


def presenter_mode() -> bool:
    """Presenter mode (bigger fonts, explanations collapsed): ``?presenter=1`` in the URL."""
    return st.query_params.get("presenter", "0") in ("1", "true", "yes")


def header(title: str, question: str) -> None:
    st.title(title)
    st.markdown(f"*{question}*")
    st.session_state["_report_items"] = []
    st.session_state["_report_title"] = title


def explain(markdown: str, *, label: str = "How to read this") -> None:
    """A short explanation next to a chart (collapsed in presenter mode); the notebook export reuses it for that chart."""
    items = st.session_state.get("_report_items")
    if items and "explain" not in items[-1]:
        items[-1]["explain"] = markdown
    with st.expander(label, expanded=not presenter_mode()):
        st.markdown(markdown)


def forget_charts(names: set[str] | None = None) -> None:
    """Drop the charts named ``names`` (None: every chart) from the page report, and their view steps: a fragment
    calls this first, since a rerun of the fragment alone draws its charts again (and :func:`header`, which
    starts the list afresh, does not run)."""
    items = st.session_state.setdefault("_report_items", [])
    items[:] = [item for item in items if names is not None and item["name"] not in names]
    runner.forget_views(names)


def caution(markdown: str) -> None:
    st.warning(markdown, icon="⚠️")


def show_chart(chart: alt.TopLevelMixin | dict, data: pd.DataFrame, name: str, *, caption: str = "", key: str | None = None,
               chart_data: pd.DataFrame | None = None) -> None:
    """Render ``chart``, then CSV/JSON downloads of ``data``; record both for the page report.

    Args:
        chart: an Altair chart, or a Vega-Lite spec without data (a cached template: building and
            validating an Altair chart takes tens of milliseconds, too slow for a slider move); a
            spec is drawn with ``chart_data`` (default: ``data``) as its data.
        name: a file-name stem for the downloads, e.g. ``"logit_lens_grid"``; unique on the page.
    """
    if isinstance(chart, dict):
        drawn = data if chart_data is None else chart_data
        st.vega_lite_chart(drawn, chart, width="stretch")
        chart = {**chart, "data": {"values": drawn.to_dict(orient="records")}}  # self-contained, for the report
    else:
        st.altair_chart(chart, width="stretch")
    if caption:
        st.caption(caption)
    download_buttons(data, name, key=key or name)
    items = st.session_state.setdefault("_report_items", [])
    items.append({"name": name, "caption": caption, "chart": chart, "data": data})


def presets(choices: dict[str, dict[str, object]], *, key: str, default: str | None = None,
            label: str = "Presets", help_of: str | None = None) -> None:
    """Every page's presets: a row of buttons, one per named preset, that fill the page's inputs.

    Args:
        choices: preset name -> ``{widget session-state key: value}``; the sidebar prompt's key
            is ``"prompt"``. A click writes the values before the rerun, so the widgets show them.
        key: a prefix for the buttons' keys, unique on the page.
        default: the preset that fills the inputs on a session's first visit; a key that the URL
            sets (a shared link) or that the session already holds keeps its value.
        help_of: the key whose value each button shows as its tooltip (default: the first key).
    """
    if not choices:
        return
    if default is not None:
        for field, value in choices[default].items():
            if field not in st.session_state and field not in st.query_params:
                st.session_state[field] = value
    st.markdown(f"**{label}**")
    for i, (column, (name, values)) in enumerate(zip(st.columns(len(choices)), choices.items())):
        tip = values.get(help_of) if help_of else next(iter(values.values()), "")
        column.button(name, key=f"{key}_preset_{i}", on_click=_apply_preset, args=(values,), help=str(tip), width="stretch")


def _apply_preset(values: dict[str, object]) -> None:
    for field, value in values.items():
        st.session_state[field] = value


def url_names_options(key: str, options: list[str]) -> None:
    """Accept ``?key=VALUE`` for a widget bound to the URL that shows ``options`` through a ``format_func``.

    Streamlit writes such a widget's *label* into the URL and drops a value it cannot match
    among the labels, so a hand-written or shared link with the option's value (``probe_set=upload``)
    silently fell back to the default. Call this before creating the widget.
    """
    wanted = st.query_params.get(key)
    if wanted in options and st.session_state.get(key) != wanted:
        st.session_state[key] = wanted


def relabel(key: str, labels: Sequence[str]) -> None:
    """Before a keyed select widget whose option labels come from the prompt (token positions): when the labels
    changed since the last run, set its value again, so that the browser shows the new labels.

    Streamlit 1.67 keeps a select widget's chosen label in the browser and sends a new one only when the value
    changes: after a new prompt, the Information Flow page's Output position read "last token (' to')" (the old
    prompt's) over a list ending in "last token (' is')". Call this before creating the widget.
    """
    memo, labels = f"_labels_{key}", tuple(labels)
    if st.session_state.get(memo, labels) != labels and key in st.session_state:
        st.session_state[key] = st.session_state[key]
    st.session_state[memo] = labels


def warn_unknown_words(model: LoadedModel, text: str, what: str = "the prompt") -> None:
    """A warning when words of ``text`` are unknown to ``model`` (toy models read only their own symbols)."""
    unknown, total = model.unknown_tokens(text)
    if unknown:
        st.warning(f"{unknown} of the {total} tokens of {what} are unknown to this model and became UNK. "
                   "Toy models read only their own symbols, separated by spaces, e.g. `BOS 0 1 2 3`.")
