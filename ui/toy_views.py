"""The Toy Models page's views: the training curve (live while training) and the two analyses,
each drawn from a result's ``tables()`` or a toy's saved training record (no model runs here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import altair as alt
import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from interp_core.techniques.toy.analysis import CopyingAnalysis, ReverseIncrementAnalysis
from interp_core.techniques.toy.record import TrainingRecord
from interp_core.techniques.toy.train import CurvePoint
from ui.charts import heatmap
from ui.page import show_chart

# What the seed documents' write-up reports for its own reverse-increment model, shown beside this model's numbers.
WRITE_UP = {"none": 1.0, "mlp_weights_zero": 0.1767, "attn_weights_zero": 0.2919}


def curve_chart(curve: pd.DataFrame, title: str) -> alt.HConcatChart:
    """Training and holdout loss (log scale) and holdout accuracy against epochs, one row per curve point."""
    long = curve.melt(id_vars="epoch", value_vars=["train_loss", "holdout_loss"], var_name="set", value_name="loss (nats)")
    loss = alt.Chart(long, title=title).mark_line(point=True).encode(
        x=alt.X("epoch:Q"),
        y=alt.Y("loss (nats):Q", scale=alt.Scale(type="log")),
        color=alt.Color("set:N", scale=alt.Scale(domain=["train_loss", "holdout_loss"], range=["#1f77b4", "#ff7f0e"])),
        tooltip=[alt.Tooltip("epoch"), alt.Tooltip("set"), alt.Tooltip("loss (nats):Q", format=".4f")],
    ).properties(height=240, width=380)
    accuracy = alt.Chart(curve, title="Holdout accuracy").mark_line(point=alt.OverlayMarkDef(color="#2ca02c"), color="#2ca02c").encode(
        x=alt.X("epoch:Q"),
        y=alt.Y("holdout_accuracy:Q", title="accuracy", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        tooltip=[alt.Tooltip("epoch"), alt.Tooltip("holdout_accuracy:Q", format=".2%", title="holdout accuracy")],
    ).properties(height=240, width=300)
    return alt.hconcat(loss, accuracy)


def live_curve(placeholder: DeltaGenerator, title: str) -> Callable[[CurvePoint], None]:
    """A callback that redraws the training curve in ``placeholder`` (an ``st.empty()``) with each new point.

    The training job runs in this script's thread (the heavy-job queue computes in the caller), so the
    callback may write to the page.
    """
    points: list[dict] = []

    def on_point(point: CurvePoint) -> None:
        points.append(asdict(point))
        placeholder.altair_chart(curve_chart(pd.DataFrame(points), title))

    return on_point


def show_training_record(record: TrainingRecord, name: str, task: str) -> None:
    """How the toy ``name`` was trained, from its ``toy_task.json`` (nothing when it has no curve)."""
    if record.curve.empty:
        return
    curve = record.tables()["toy_training_curve"]
    note = (" The loss cannot fall far: most tokens are random. The sudden jump in holdout accuracy is the induction phase "
            "change, when the previous-token and induction heads form together." if task == "induction" else "")
    show_chart(curve_chart(curve, f"How {name} was trained"), curve, "toy_training_curve",
               caption=f"From its toy_task.json: {record.hyperparameters}, {record.seconds:.0f} s on "
                       f"{record.device}. Final training loss {record.final_loss:.4f} nats." + note)


def reverse_increment_view(result: ReverseIncrementAnalysis) -> None:
    """Accuracy, ablation table, attention anti-diagonal and pre/post-MLP reads."""
    tables = result.tables()
    a, b, c = st.columns(3)
    a.metric("Holdout accuracy (per output token)", f"{result.holdout_accuracy:.2%}")
    b.metric("Whole sequences right", f"{result.sequence_accuracy:.2%}")
    c.metric("Holdout sequences", f"{result.n_holdout:,}")

    st.markdown("**Ablations** (accuracy per output token on the whole holdout set)")
    ablations = tables["toy_ri_ablations"]
    shown = pd.DataFrame({"condition": ablations["condition"], "this model": ablations["accuracy"],
                          "write-up reports": [WRITE_UP[k] for k in ablations["ablation"]]})
    st.dataframe(shown.style.format({"this model": "{:.2%}", "write-up reports": "{:.2%}"}), hide_index=True)
    st.caption("Zeroing W_out leaves the MLP adding only b_out; zeroing W_O leaves attention adding only b_O. "
               "Chance is 25 %. The write-up's numbers are for its own model; another seed lands elsewhere.")

    df = tables["toy_ri_attention"]
    chart = heatmap(df, "input (key)", "output (query)", "attention", x_sort=result.key_labels, y_sort=result.query_labels,
                    domain=(0.0, 1.0), title="Mean attention from each output position to every position")
    show_chart(chart, df, "toy_ri_attention",
               caption="Query y_i is the position whose logits predict y_i (it holds y_{i-1}, or x7 for y0). "
                       "The answer needs x_{7-i}: an anti-diagonal from (y1, x6) to (y7, x0) means attention fetches it. "
                       "y0's position holds x7 itself, so it needs no attention and may look anywhere.")

    reads = tables["toy_ri_pre_post_mlp"]
    order = list(dict.fromkeys(reads["read"]))
    chart = alt.Chart(reads, title="What the residual stream predicts before and after the MLP").mark_bar().encode(
        x=alt.X("output:N", sort=result.query_labels, title="output position"),
        xOffset=alt.XOffset("read:N", sort=order),
        y=alt.Y("fraction:Q", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1]), title="fraction of holdout"),
        color=alt.Color("read:N", sort=order, scale=alt.Scale(scheme="paired")),
        tooltip=[alt.Tooltip("output"), alt.Tooltip("read"), alt.Tooltip("fraction:Q", format=".2%")],
    ).properties(height=280)
    show_chart(chart, reads, "toy_ri_pre_post_mlp",
               caption="unembed(ln_final(residual)) read at each output position, before and after the MLP, "
                       "compared with the answer and with the copied source token.")

    src = tables["toy_ri_source_vs_pre"]
    chart = heatmap(src, "predicted before MLP", "source x_{7-i}", "fraction", domain=(0.0, 1.0), x_sort=result.vocab,
                    title="Before the MLP: predicted token for each source value (all output positions)")
    show_chart(chart, src, "toy_ri_source_vs_pre",
               caption="A diagonal means attention alone copies the source; a shifted diagonal (v -> v+1) means it already increments.")


def copying_view(result: CopyingAnalysis) -> None:
    """Accuracy, per-head stripe scores and one example's patterns."""
    tables = result.tables()
    a, b = st.columns(2)
    a.metric("Holdout accuracy (predictable positions)", f"{result.holdout_accuracy:.2%}")
    b.metric("Holdout sequences", f"{result.n_holdout:,}")
    scores = tables["toy_head_scores"]
    chart = alt.Chart(scores, title=f"Where each head looks (mean attention on {result.n_scored} holdout sequences)").mark_bar().encode(
        x=alt.X("head:N"), xOffset=alt.XOffset("score:N"), y=alt.Y("mean attention:Q", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("score:N"), tooltip=[alt.Tooltip("head"), alt.Tooltip("score"), alt.Tooltip("mean attention:Q", format=".3f")],
    ).properties(height=260)
    show_chart(chart, scores, "toy_head_scores",
               caption="Induction = attention from a query to the token right after the previous occurrence of its own token "
                       "(one period back plus one), over the positions where accuracy is counted. The textbook circuit is a "
                       "layer-0 previous-token head feeding a layer-1 induction head; a periodic pattern can also be "
                       "copied from any earlier period, which 'on earlier copies of the answer' counts.")
    patterns = tables["toy_example_patterns"]
    tokens = list(dict.fromkeys(patterns["key"]))
    chart = heatmap(patterns, "key", "query", "attention", x_sort=tokens, y_sort=tokens, domain=(0.0, 1.0),
                    tooltip=[alt.Tooltip("head"), alt.Tooltip("query"), alt.Tooltip("key"), alt.Tooltip("attention:Q", format=".3f")]).properties(width=260, height=260)
    show_chart(chart.facet(facet="head:N", columns=2), patterns, "toy_example_patterns",
               caption=f"One holdout sequence (period {result.example_period}). An induction head draws a stripe one "
                       "period left of the diagonal, plus one; a previous-token head hugs the diagonal.")
