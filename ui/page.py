"""Building blocks every technique page uses, so pages look and behave alike.

- :func:`header`: title and the question the page answers.
- :func:`explain`: how to read a chart; an expander, collapsed in presenter mode.
- :func:`show_chart`: an Altair chart with CSV/JSON downloads of its data next to it; the
  chart is also recorded for the page's one-file report.
- :func:`caution`: the line on what a picture does and does not show.
- :func:`preset_picker`: presets that fill the page's inputs.
- :func:`url_names_options`: let a link name an option of a formatted widget by its value.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from interp_core import LoadedModel
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
    """A short explanation next to a chart (collapsed in presenter mode)."""
    with st.expander(label, expanded=not presenter_mode()):
        st.markdown(markdown)


def caution(markdown: str) -> None:
    st.warning(markdown, icon="⚠️")


def show_chart(chart: alt.Chart, data: pd.DataFrame, name: str, *, caption: str = "", key: str | None = None) -> None:
    """Render ``chart``, then CSV/JSON downloads of ``data``; record both for the page report.

    Args:
        name: a file-name stem for the downloads, e.g. ``"logit_lens_grid"``; unique on the page.
    """
    st.altair_chart(chart, width="stretch")
    if caption:
        st.caption(caption)
    download_buttons(data, name, key=key or name)
    items = st.session_state.setdefault("_report_items", [])
    items.append({"name": name, "caption": caption, "chart": chart, "data": data})


def preset_picker(presets: dict[str, dict], *, key: str) -> dict:
    """A selectbox of named presets bound to the URL; returns the chosen preset's values."""
    names = list(presets)
    choice = st.selectbox("Preset", names, key=key, bind="query-params")
    return presets[choice]


def url_names_options(key: str, options: list[str]) -> None:
    """Accept ``?key=VALUE`` for a widget bound to the URL that shows ``options`` through a ``format_func``.

    Streamlit writes such a widget's *label* into the URL and drops a value it cannot match
    among the labels, so a hand-written or shared link with the option's value (``probe_set=upload``)
    silently fell back to the default. Call this before creating the widget.
    """
    wanted = st.query_params.get(key)
    if wanted in options and st.session_state.get(key) != wanted:
        st.session_state[key] = wanted


def warn_unknown_words(model: LoadedModel, text: str, what: str = "the prompt") -> None:
    """A warning when words of ``text`` are unknown to ``model`` (toy models read only their own symbols)."""
    unknown, total = model.unknown_tokens(text)
    if unknown:
        st.warning(f"{unknown} of the {total} tokens of {what} are unknown to this model and became UNK. "
                   "Toy models read only their own symbols, separated by spaces, e.g. `BOS 0 1 2 3`.")
