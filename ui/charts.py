"""Chart helpers shared by the pages: Altair heatmaps and data downloads."""

from __future__ import annotations

import json

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st


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
    """A rect heatmap of ``color`` over (``x``, ``y``) with a tooltip; categorical axes keep the given order."""
    scale = alt.Scale(scheme=scheme, domain=list(domain)) if domain else alt.Scale(scheme=scheme)
    chart = (
        alt.Chart(df, title=title)
        .mark_rect()
        .encode(
            x=alt.X(f"{x}:O", sort=x_sort if x_sort is not None else None),
            y=alt.Y(f"{y}:O", sort=y_sort if y_sort is not None else None),
            color=alt.Color(f"{color}:Q", scale=scale),
            tooltip=tooltip or [x, y, alt.Tooltip(f"{color}:Q", format=".3f")],
        )
    )
    return chart.properties(height=height) if height else chart


def grid_frame(values: np.ndarray, row_labels: list, col_labels: list, row_name: str, col_name: str, value_name: str) -> pd.DataFrame:
    """Long-form frame of a 2-D array: one row per cell with its labels."""
    rows, cols = np.meshgrid(np.arange(len(row_labels)), np.arange(len(col_labels)), indexing="ij")
    return pd.DataFrame(
        {
            row_name: [row_labels[i] for i in rows.ravel()],
            col_name: [col_labels[j] for j in cols.ravel()],
            value_name: values.ravel(),
        }
    )


def download_buttons(df: pd.DataFrame, name: str, *, key: str | None = None) -> None:
    """CSV and JSON downloads of ``df`` side by side."""
    key = key or name
    left, right = st.columns(2)
    # on_click="ignore": a download must not rerun the page (and recompute or reset its view)
    left.download_button("Download CSV", df.to_csv(index=False), f"{name}.csv", "text/csv", key=f"{key}-csv", on_click="ignore")
    right.download_button(
        "Download JSON", json.dumps(df.to_dict(orient="records")), f"{name}.json", "application/json",
        key=f"{key}-json", on_click="ignore",
    )
