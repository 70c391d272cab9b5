"""The Probing page's views: the accuracy curve, one layer in detail (a fragment: its slider reruns
only itself) and the items read, each drawn from a cached result's ``tables()``."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from interp_core.techniques.probe_data import ProbeDataset
from interp_core.techniques.probing import ProbeFeatures, ProbeResult, selectivity_note
from ui import runner
from ui.charts import heatmap
from ui.page import caution, explain, show_chart

SERIES = ["probe", "control task", "selectivity"]
DETAIL_CHARTS = ("probe_confusion", "probe_per_class")  # drawn in the fragment


def accuracy_chart(curve: pd.DataFrame, majority: float) -> alt.LayerChart:
    """Probe, control and selectivity per layer, a ± std band, and the majority-class baseline (dashed)."""
    color = alt.Color("series:N", scale=alt.Scale(domain=SERIES, range=["#1f77b4", "#ff7f0e", "#2ca02c"]))
    base = alt.Chart(curve).encode(x=alt.X("layer:Q", title="layer (0 = embeddings, L = after block L-1)"))
    lines = base.mark_line(point=True).encode(
        y=alt.Y("value:Q", title="accuracy / selectivity"), color=color,
        tooltip=[alt.Tooltip("layer"), alt.Tooltip("hook"), alt.Tooltip("series"), alt.Tooltip("value:Q", format=".3f"), alt.Tooltip("std:Q", format=".3f", title="std over folds")],
    )
    band = base.mark_area(opacity=0.2).encode(y=alt.Y("low:Q"), y2=alt.Y2("high:Q"), color=color)
    baseline = alt.Chart(pd.DataFrame({"majority": [majority]})).mark_rule(strokeDash=[4, 4], color="gray").encode(
        y=alt.Y("majority:Q"), tooltip=[alt.Tooltip("majority:Q", format=".3f", title="always the most frequent class")])
    return (band + lines + baseline).properties(height=340)


def show_accuracy(result: ProbeResult) -> None:
    st.subheader("Accuracy per layer")
    curve = result.tables()["probe_accuracy"]
    show_chart(accuracy_chart(curve, result.majority), curve, "probe_accuracy",
               caption=f"{result.probe} probe, mean over {result.fold_accuracy.shape[1]} folds split by sentence "
                       "(band: ± one std); dashed: majority-class baseline.")
    explain(
        "**Probe** (blue): test accuracy of a classifier reading the label off the residual stream at that layer. "
        "**Control task** (orange): the same probe trained on labels that are a fixed random function of the word type "
        "(Hewitt & Liang 2019) — it can only succeed by memorising words. **Selectivity** (green) = probe − control: how much "
        "of the accuracy comes from the representation rather than from the probe. High accuracy with low selectivity means "
        "the probe could have learned the task from word identity alone. For sentence-level sets the type is the whole "
        "sentence, so the control sits at chance. Train and test folds never share a sentence."
    )
    note = selectivity_note(result)
    if note:
        caution(note)


@st.fragment
def show_layer(result: ProbeResult) -> None:
    """One layer's confusion matrix and per-class accuracy; moving its slider reruns only this fragment."""
    items = st.session_state.setdefault("_report_items", [])
    items[:] = [item for item in items if item["name"] not in DETAIL_CHARTS]  # a fragment rerun redraws these two
    st.subheader("One layer in detail")
    layers = [int(layer) for layer in result.layers]
    linked = "probe_layer" not in st.session_state and "probe_layer" in st.query_params
    if not linked and st.session_state.get("probe_layer") not in layers:  # first visit, or another layer step since
        st.session_state["probe_layer"] = layers[int(result.selectivity.argmax())]  # the most selective layer
    layer = st.select_slider("Layer", layers, key="probe_layer", bind="query-params")
    row = layers.index(layer)
    st.markdown(f"Layer {layer} (`{result.layer_names[row]}`): accuracy **{result.accuracy[row]:.3f} ± {result.accuracy_std[row]:.3f}**, "
                f"control {result.control_accuracy[row]:.3f}, selectivity **{result.selectivity[row]:.3f}**.")
    classes = list(result.classes)
    conf = runner.view("probe_confusion", result, "confusion_table", layer=layer)
    per_class = runner.view("probe_per_class", result, "per_class_table", layer=layer)
    left, right = st.columns([3, 2])
    with left:
        chart = heatmap(conf, "predicted", "true", "share", x_sort=classes, y_sort=classes, domain=(0.0, 1.0), scheme="blues",
                        tooltip=[alt.Tooltip("true"), alt.Tooltip("predicted"), alt.Tooltip("share:Q", format=".2f"), alt.Tooltip("count")], title="Confusion (row = true class)")
        show_chart(chart, conf, "probe_confusion", caption="Each row sums to 1: where the test items of that class went, pooled over folds.")
    with right:
        bars = alt.Chart(per_class).mark_bar().encode(
            x=alt.X("accuracy:Q", scale=alt.Scale(domain=[0, 1])), y=alt.Y("class:N", sort=classes),
            tooltip=[alt.Tooltip("class"), alt.Tooltip("accuracy:Q", format=".3f"), alt.Tooltip("items")])
        show_chart(bars, per_class, "probe_per_class", caption="Share of each class's test items predicted correctly.")


def show_items(dataset: ProbeDataset, features: ProbeFeatures) -> None:
    with st.expander("Which token is read for each item"):
        sample = dataset.tables()["probe_labels"].assign(**{"token read": features.tables()["probe_items"]["token read"]})
        st.dataframe(sample[["sentence", "word", "token read", "label"]].head(40), hide_index=True)
        st.caption("Words are read at their last token: the first position where a causal model has seen the whole word.")
