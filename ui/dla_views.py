"""Charts of the Direct Logit Attribution page, built from the result's ``tables()``."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from ui.charts import colour_if, heatmap


def signed_domain(values: np.ndarray) -> tuple[float, float]:
    bound = float(np.abs(values).max()) or 1.0
    return -bound, bound


def components_chart(components: pd.DataFrame) -> alt.LayerChart:
    """Bars: each component's direct contribution, coloured by kind; line: the running total."""
    x = alt.X("component:N", sort=list(components["component"]), title="component (residual order)", axis=alt.Axis(labelAngle=-60))
    tooltip = [alt.Tooltip("component"), alt.Tooltip("contribution:Q", format=".3f"), alt.Tooltip("running_total:Q", format=".3f")]
    bars = alt.Chart(components).mark_bar().encode(
        x=x,
        y=alt.Y("contribution:Q", title="direct contribution"),
        color=alt.Color("kind:N", scale=alt.Scale(domain=["embedding", "attn", "mlp"], range=["#9e9e9e", "#4c78a8", "#f58518"])),
        tooltip=tooltip,
    )
    line = alt.Chart(components).mark_line(point=alt.OverlayMarkDef(color="#222", size=18), color="#222").encode(
        x=x, y=alt.Y("running_total:Q"), tooltip=tooltip
    )
    return (bars + line).properties(height=340)


def heads_chart(heads: pd.DataFrame, values: np.ndarray) -> alt.Chart:
    """Layer x head heatmap of direct contributions, red-blue around zero."""
    n_layers, n_heads = values.shape
    return heatmap(
        heads, "head", "layer", "contribution", scheme="redblue", domain=signed_domain(values),
        tooltip=[alt.Tooltip("name"), alt.Tooltip("contribution:Q", format=".3f")], height=max(200, 16 * n_layers),
    ).properties(width=max(240, 45 * n_heads))  # wide enough to read; ordinal axes do not stretch


def sources_chart(sources: pd.DataFrame) -> alt.Chart:
    """Bars: the contribution each source position carried (``sources`` must have a ``label`` column)."""
    return alt.Chart(sources).mark_bar().encode(
        x=alt.X("label:N", sort=list(sources["label"]), title="source position: token", axis=alt.Axis(labelAngle=-45)),
        y=alt.Y("contribution:Q", title="direct contribution carried"),
        color=colour_if("datum.contribution >= 0", "#4c78a8", "#e45756"),
        tooltip=[alt.Tooltip("source"), alt.Tooltip("token"), alt.Tooltip("contribution:Q", format=".3f"), alt.Tooltip("attention:Q", format=".3f")],
    ).properties(height=280)
