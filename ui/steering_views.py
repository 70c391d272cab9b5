"""Views of the Steering page: streamed continuations, the coefficient sweep, the vector through the lens."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from interp_core import LoadedModel, WorkbenchError
from interp_core.techniques.contract import Request
from interp_core.techniques.steering import SteerRequest, SteerResult, steer
from ui import page, runner

RUNS = ("unsteered", "steered")


def request_or_stop(request_type: type[Request], **fields: object) -> Request:
    """The request, or its validation message as one red box and the page stops."""
    try:
        return request_type(**fields)
    except WorkbenchError as error:
        st.error(str(error))
        st.stop()


def continuations(model: LoadedModel, request: SteerRequest, titles: tuple[str, str]) -> SteerResult | None:
    """Both continuations side by side, streamed token by token while they are generated (once per
    server: a cached result is shown at once). None after an error (shown)."""
    boxes = {}
    for run, column, title in zip(RUNS, st.columns(2), titles):
        column.markdown(f"**{title}**")
        boxes[run] = column.empty()

    def show(run: str, text: str) -> None:
        boxes[run].code(request.prompt + text, language=None, wrap_lines=True)

    result = runner.run(model, request, compute=lambda: steer(model, request, on_token=show))
    if result is not None:
        show("unsteered", result.unsteered)
        show("steered", result.steered)
    return result  # type: ignore[return-value]


def sweep_chart(df: pd.DataFrame, coefficient: float, target: str, log: bool) -> alt.LayerChart:
    """P(target) on the next token against the coefficient; the rule marks the slider's coefficient."""
    scale = alt.Scale(type="log") if log else alt.Scale(domain=[0, max(0.05, float(df["target_prob"].max()) * 1.1)])
    base = alt.Chart(df).encode(
        x=alt.X("coefficient:Q", title="coefficient c"),
        y=alt.Y("target_prob:Q", scale=scale, title=f"P({target!r}) after the prompt"),
    )
    line = base.mark_line(point=True).encode(
        tooltip=[alt.Tooltip("coefficient:Q", format="g"), alt.Tooltip("target_prob:Q", format=".4f"), alt.Tooltip("top_token")])
    rule = alt.Chart(pd.DataFrame({"coefficient": [coefficient]})).mark_rule(color="red", strokeDash=[4, 3]).encode(x=alt.X("coefficient:Q"))
    return (line + rule).properties(height=280)


def lens_chart(df: pd.DataFrame, layers: tuple[str, ...]) -> alt.LayerChart:
    """Layer x rank grid: the tokens whose log-probability the edit raises most, coloured by the rise."""
    base = alt.Chart(df).encode(
        x=alt.X("rank:O", title="rank (largest rise first)"),
        y=alt.Y("layer:N", sort=list(reversed(layers)), title="layer boundary"),
        tooltip=[alt.Tooltip("layer"), alt.Tooltip("rank"), alt.Tooltip("token"), alt.Tooltip("change:Q", format="+.2f")],
    )
    rect = base.mark_rect().encode(color=alt.Color("change:Q", scale=alt.Scale(scheme="greens"), title="Δ log-prob"))
    text = base.mark_text(fontSize=11).encode(text=alt.Text("token:N"))
    return (rect + text).properties(height=max(160, 20 * len(layers)))


def promoted_chart(df: pd.DataFrame) -> alt.Chart:
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("score:Q", title="(norm weight * v) . W_U"),
        y=alt.Y("token:N", sort=None, title=None),
        tooltip=[alt.Tooltip("rank"), alt.Tooltip("token"), alt.Tooltip("score:Q", format=".2f")],
    ).properties(height=24 * len(df))


@st.fragment
def sweep_view(result, coefficient: float) -> None:
    """The sweep chart with its view-only log-scale toggle (reruns only this fragment)."""
    page.forget_charts({"steering_sweep"})
    df = result.tables()["steering_sweep"]
    log = st.toggle("Log scale", key="steer_sweep_log", help="Shows the tiny probabilities at c = 0 and at large c.")
    page.show_chart(sweep_chart(df, coefficient, result.target, log), df, "steering_sweep",
                    caption=f"P({result.target!r}) as the next token after the prompt, steered with each coefficient "
                            "(all in one batch). Red line: the coefficient of the continuations above. Hover for the top token.")


@st.fragment
def lens_view(result: SteerResult) -> None:
    """The edit read through the logit lens, with a view-only choice of how many tokens per layer."""
    page.forget_charts({"steering_lens"})
    k = st.slider("Tokens per layer", 1, int(result.lens_change.shape[1]), 3, key="steer_lens_k")
    shown = runner.view("steering_lens", result, "lens_table", k=k)
    page.show_chart(lens_chart(shown, result.lens_layers), shown, "steering_lens",
                    caption="At the prompt's last position: log-prob under the logit lens with the edit, minus without, at "
                            "the steered layer's boundary and every later one.")
