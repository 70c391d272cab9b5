"""Charts of the Logit Lens page, built from the results' ``tables()``."""

from __future__ import annotations

import altair as alt
import pandas as pd

from ui.charts import colour_if

TARGET_SCALES = {"probability": alt.Scale(domain=[0, 1]), "rank": alt.Scale(type="log", reverse=True)}


def grid_chart(df: pd.DataFrame, layers: tuple[str, ...], rows: list[int], title: str) -> alt.LayerChart:
    """Layer x position grid: each cell's top-1 token on its probability."""
    y_order = [layers[b] for b in reversed(rows)]  # the last layer on top, embeddings at the bottom
    x_order = list(dict.fromkeys(df["position"]))
    base = alt.Chart(df, title=title).encode(
        x=alt.X("position:N", sort=x_order, title="input token (the cell predicts the token after it)", axis=alt.Axis(labelAngle=-40)),
        y=alt.Y("layer:N", sort=y_order, title="layer boundary"),
        tooltip=[alt.Tooltip("layer"), alt.Tooltip("position"), alt.Tooltip("top token"), alt.Tooltip("prob:Q", format=".1%"), alt.Tooltip("top-k"),
                 alt.Tooltip("KL to final:Q", format=".2f"), alt.Tooltip("entropy:Q", format=".2f")],
    )
    rect = base.mark_rect().encode(color=alt.Color("prob:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), title="top-1 prob"))
    text = base.mark_text(fontSize=10).encode(
        text=alt.Text("cell:N"), color=colour_if("datum.prob > 0.55", "white", "black")
    )
    return (rect + text).properties(height=max(200, 19 * len(rows)))


def heldout_kl_chart(kl: pd.DataFrame, layers: tuple[str, ...]) -> alt.Chart:
    """Held-out KL(final || lens) per boundary, one line per lens."""
    return alt.Chart(kl).mark_line(point=True).encode(
        x=alt.X("layer:N", sort=list(layers), title="layer boundary"),
        y=alt.Y("KL (nats):Q", title="KL(final || lens), nats"),
        color=alt.Color("lens:N", title=None),
        tooltip=[alt.Tooltip("lens"), alt.Tooltip("layer"), alt.Tooltip("KL (nats):Q", format=".3f")],
    ).properties(height=240)


def target_chart(line_df: pd.DataFrame, field: str, layers: tuple[str, ...]) -> alt.Chart:
    """One tracked token's ``field`` (probability, log-probability or rank) across layers, per lens."""
    return alt.Chart(line_df).mark_line(point=True).encode(
        x=alt.X("layer:N", sort=list(layers), title="layer boundary"),
        y=alt.Y(f"{field}:Q", scale=TARGET_SCALES.get(field, alt.Scale()), title=field),
        color=alt.Color("lens:N", title=None, legend=alt.Legend(orient="bottom")),
        tooltip=[alt.Tooltip("lens"), alt.Tooltip("layer"), alt.Tooltip("probability:Q", format=".2%"), alt.Tooltip("log-probability:Q", format=".2f"), alt.Tooltip("rank")],
    ).properties(height=220)
