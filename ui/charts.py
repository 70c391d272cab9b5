"""Chart helpers shared by the pages: Altair heatmaps and data downloads."""

from __future__ import annotations

import json

import altair as alt
import pandas as pd
import streamlit as st

from interp_core.techniques.frames import grid_frame  # noqa: F401 (pages import it from here)

try:  # the lock Streamlit holds while it switches Altair's global theme and data transformer
    from streamlit.elements.vega_charts import _altair_globals_lock as ALTAIR_GLOBALS_LOCK
except ImportError:  # a Streamlit without it: our own (then only our threads are kept apart)
    import threading

    ALTAIR_GLOBALS_LOCK = threading.Lock()


def chart_spec(chart: alt.TopLevelMixin) -> dict:
    """``chart.to_dict()`` with Altair's 5000-row check off, under Streamlit's lock for Altair's globals.

    ``with alt.data_transformers.disable_max_rows()`` saves Altair's whole plugin registry on entry
    and restores it on exit. Run outside Streamlit's lock, that restore could undo Streamlit's own
    registration made meanwhile in another session's thread: with 20 concurrent sessions
    (``benchmarks/load.py``) Home failed twice with "No 'to_arrow_dataset' entry point found".
    """
    with ALTAIR_GLOBALS_LOCK, alt.data_transformers.disable_max_rows():
        return chart.to_dict()


def colour_if(test: str, then: str, otherwise: str) -> alt.ColorValue:
    """``alt.condition(test, alt.value(then), alt.value(otherwise))`` as its channel class, the same spec without
    Altair's schema lookup of a plain condition (about 2 ms of CPU per chart, see :func:`heatmap`)."""
    return alt.ColorValue(condition={"test": test, "value": then}, value=otherwise)


def heatmap(
    df: pd.DataFrame,
    x: str,
    y: str,
    color: str,
    *,
    tooltip: list[str] | None = None,
    scheme: str = "viridis",
    domain: tuple[float, float] | None = None,
    x_sort: list | None = None,
    y_sort: list | None = None,
    title: str = "",
    height: int | None = None,
) -> alt.Chart:
    """A rect heatmap of ``color`` over (``x``, ``y``) with a tooltip; categorical axes keep the given order.

    Tooltip fields given as text become ``alt.Tooltip`` here: Altair turns a text shorthand into its channel class
    through a schema lookup that costs about 2 ms of CPU each time (pages pass the classes; see ``tests/test_charts.py``)."""
    scale = alt.Scale(scheme=scheme, domain=list(domain)) if domain else alt.Scale(scheme=scheme)
    chart = (
        alt.Chart(df, title=title)
        .mark_rect()
        .encode(
            x=alt.X(f"{x}:O", sort=x_sort if x_sort is not None else None),
            y=alt.Y(f"{y}:O", sort=y_sort if y_sort is not None else None),
            color=alt.Color(f"{color}:Q", scale=scale),
            tooltip=[alt.Tooltip(t) if isinstance(t, str) else t for t in tooltip or [x, y, alt.Tooltip(f"{color}:Q", format=".3f")]],
        )
    )
    return chart.properties(height=height) if height else chart


def download_buttons(df: pd.DataFrame, name: str, *, key: str | None = None) -> None:
    """CSV and JSON downloads of ``df`` side by side."""
    key = key or name
    left, right = st.columns(2)
    # on_click="ignore": a download must not rerun the page (and recompute or reset its view). The files are made
    # on every run, not on click (a callable, Streamlit's deferred download): with 30 browsers on a 2-core machine,
    # 128 of the deferred downloads were cancelled (benchmarks/workshop.py), for a saving of 0.01-0.04 s per render.
    left.download_button("Download CSV", df.to_csv(index=False), f"{name}.csv", "text/csv", key=f"{key}-csv", on_click="ignore")
    right.download_button(
        "Download JSON", json.dumps(df.to_dict(orient="records")), f"{name}.json", "application/json",
        key=f"{key}-json", on_click="ignore",
    )
