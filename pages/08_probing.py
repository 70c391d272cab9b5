"""What information is linearly decodable at each layer, and is it the model or the probe that knows it?"""

from __future__ import annotations

import hashlib

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from interp_core import WorkbenchError
from interp_core.techniques.probe_data import BUNDLED, ProbeDataset, load_dataset, parse_csv
from interp_core.techniques.probing import MAX_TOKENS, encode_dataset, extract_features, fit_probes, selectivity_note
from ui import jobs, page, state
from ui.charts import grid_frame, heatmap

page.header("Probing", "What information is linearly decodable at each layer, and is it the model or the probe that knows it?")
model = state.require_model()
spec = state.model_spec()
n_layers = model.info.n_layers
limit = model.token_limit(MAX_TOKENS)  # the longest sentence probed here (context, workshop limit)

SETS = [*BUNDLED, "upload"]
page.url_names_options("probe_set", SETS)  # ?probe_set=upload must ask for the upload, not probe the default set
page.url_names_options("probe_pool", ["last", "mean"])
left, mid, right = st.columns([2, 1, 1])
choice = left.selectbox("Dataset", SETS, key="probe_set", bind="query-params",
                        format_func=lambda s: BUNDLED[s]["title"] if s in BUNDLED else "Your own CSV")
kind = mid.radio("Probe", ["linear", "mlp"], key="probe_kind", bind="query-params", horizontal=True,
                 help="Logistic regression, or an MLP with one hidden layer of 64 units (more expressive, so it memorises more).")
folds = right.slider("Folds (split by sentence)", 2, 10, 5, key="probe_folds", bind="query-params")
step = st.select_slider("Probe every k-th layer (the last layer is always included)", [1, 2, 3, 5], value=1 if n_layers <= 12 else 3,
                        key="probe_step", bind="query-params")


@st.cache_data(show_spinner=False, max_entries=16)
def cached_parse(content: bytes, name: str) -> ProbeDataset:
    return parse_csv(content, name)


def chosen_dataset() -> tuple[ProbeDataset, str] | None:
    """The dataset and a cache key for it, or None (a message is shown) when there is nothing to probe."""
    if choice in BUNDLED:
        return load_dataset(choice), choice
    st.markdown("Upload a CSV with columns `text,label` (one label per sentence) or `text,labels` (one label per "
                "space-separated word; punctuation as its own word, e.g. `The cat sat .` / `DET NOUN VERB PUNCT`). "
                f"Each sentence may have up to {limit} tokens for this model.")
    upload = st.file_uploader("CSV file", type=["csv"], key="probe_file")
    pasted = st.text_area("…or paste the CSV here", key="probe_paste", height=120)
    if upload is not None:
        content, name = upload.getvalue(), upload.name
    elif pasted.strip():
        content, name = pasted.encode("utf-8"), "pasted.csv"
    else:
        st.info("Upload a CSV file or paste one to probe your own task.")
        return None
    return cached_parse(content, name), "upload-" + hashlib.sha256(content).hexdigest()[:16]


@st.cache_data(show_spinner=False, max_entries=32)
def check_lengths(spec: str, data_key: str, limit: int, _dataset: ProbeDataset) -> None:
    """Raise WorkbenchError naming the first sentence over ``limit`` tokens (cached once it passes)."""
    encode_dataset(state.get_model(spec), _dataset)


try:
    found = chosen_dataset()
    if found is not None:  # every sentence within this server's token limit, before any job queues
        check_lengths(spec, found[1], limit, found[0])
except WorkbenchError as error:
    st.error(str(error))
    st.stop()
if found is None:
    st.stop()
dataset, data_key = found
if dataset.description:
    st.caption(dataset.description)
pool = "last"
if dataset.level == "sentence":
    pool = st.radio("Read each sentence at", ["last", "mean"], key="probe_pool", bind="query-params", horizontal=True,
                    format_func=lambda p: "its last token" if p == "last" else "the mean over its tokens")
counts = dataset.label_counts()
st.markdown(f"**{dataset.n_sentences} sentences, {len(dataset.item_labels)} labelled "
            f"{'words' if dataset.level == 'token' else 'sentences'}**, classes: "
            + ", ".join(f"{c} ({n})" for c, n in counts.items()))

try:
    features = jobs.cached_job(
        f"Hidden states of {dataset.n_sentences} sentences at {n_layers + 1} layers",
        ("probe-features", spec, data_key, pool),
        lambda on_progress: extract_features(state.get_model(spec), dataset, pool=pool, on_progress=on_progress),
    )
    rows = sorted(set(range(0, n_layers + 1, step)) | {n_layers})
    result = jobs.cached_job(
        f"Fitting {kind} probes ({folds} folds, real and control task)",
        ("probe-fit", spec, data_key, pool, kind, folds, tuple(rows)),
        lambda on_progress: fit_probes(features, probe=kind, n_folds=folds, layers=rows, on_progress=on_progress),
    )
except WorkbenchError as error:
    st.error(str(error))
    st.stop()

st.caption(f"Hidden states extracted in {features.seconds:.1f} s (cached: changing the probe, folds or layer reuses them); "
           f"probes fitted in {result.seconds:.1f} s.")

# --- accuracy per layer ---------------------------------------------------------------------------
frames = []
for series, mean, std in (("probe", result.accuracy, result.accuracy_std), ("control task", result.control_accuracy, result.control_std),
                          ("selectivity", result.selectivity, np.zeros_like(result.selectivity))):
    frames.append(pd.DataFrame({"layer": result.layers, "hook": result.layer_names, "series": series, "value": mean, "std": std,
                                "low": mean - std, "high": mean + std}))
curve = pd.concat(frames, ignore_index=True)
color = alt.Color("series:N", scale=alt.Scale(domain=["probe", "control task", "selectivity"], range=["#1f77b4", "#ff7f0e", "#2ca02c"]))
base = alt.Chart(curve).encode(x=alt.X("layer:Q", title="layer (0 = embeddings, L = after block L-1)"))
lines = base.mark_line(point=True).encode(
    y=alt.Y("value:Q", title="accuracy / selectivity"), color=color,
    tooltip=["layer", "hook", "series", alt.Tooltip("value:Q", format=".3f"), alt.Tooltip("std:Q", format=".3f", title="std over folds")],
)
band = base.mark_area(opacity=0.2).encode(y="low:Q", y2="high:Q", color=color)
majority = alt.Chart(pd.DataFrame({"majority": [result.majority]})).mark_rule(strokeDash=[4, 4], color="gray").encode(
    y="majority:Q", tooltip=[alt.Tooltip("majority:Q", format=".3f", title="always the most frequent class")])
st.subheader("Accuracy per layer")
page.show_chart((band + lines + majority).properties(height=340), curve, "probe_accuracy",
                caption=f"{kind} probe, mean over {folds} folds split by sentence (band: ± one std); dashed: majority-class baseline.")
page.explain(
    "**Probe** (blue): test accuracy of a classifier reading the label off the residual stream at that layer. "
    "**Control task** (orange): the same probe trained on labels that are a fixed random function of the word type "
    "(Hewitt & Liang 2019) — it can only succeed by memorising words. **Selectivity** (green) = probe − control: how much "
    "of the accuracy comes from the representation rather than from the probe. High accuracy with low selectivity means "
    "the probe could have learned the task from word identity alone. For sentence-level sets the type is the whole "
    "sentence, so the control sits at chance. Train and test folds never share a sentence."
)
note = selectivity_note(result)
if note:
    page.caution(note)

# --- one layer in detail --------------------------------------------------------------------------
st.subheader("One layer in detail")
best = int(np.argmax(result.selectivity))
layer = st.select_slider("Layer", list(result.layers), value=int(result.layers[best]), key="probe_layer", bind="query-params")
row = list(result.layers).index(layer)
st.markdown(f"Layer {layer} (`{result.layer_names[row]}`): accuracy **{result.accuracy[row]:.3f} ± {result.accuracy_std[row]:.3f}**, "
            f"control {result.control_accuracy[row]:.3f}, selectivity **{result.selectivity[row]:.3f}**.")
classes = list(result.classes)
matrix = result.confusion[row].astype(float)
share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
conf = grid_frame(share, classes, classes, "true", "predicted", "share")
conf["count"] = matrix.ravel().astype(int)
cm_col, pc_col = st.columns([3, 2])
with cm_col:
    chart = heatmap(conf, "predicted", "true", "share", x_sort=classes, y_sort=classes, domain=(0.0, 1.0), scheme="blues",
                    tooltip=["true", "predicted", alt.Tooltip("share:Q", format=".2f"), "count"], title="Confusion (row = true class)")
    page.show_chart(chart, conf, "probe_confusion", caption="Each row sums to 1: where the test items of that class went, pooled over folds.")
with pc_col:
    per_class = pd.DataFrame({"class": classes, "accuracy": result.per_class_accuracy(row), "items": matrix.sum(axis=1).astype(int)})
    bars = alt.Chart(per_class).mark_bar().encode(
        x=alt.X("accuracy:Q", scale=alt.Scale(domain=[0, 1])), y=alt.Y("class:N", sort=classes),
        tooltip=["class", alt.Tooltip("accuracy:Q", format=".3f"), "items"])
    page.show_chart(bars, per_class, "probe_per_class", caption="Share of each class's test items predicted correctly.")

with st.expander("Which token is read for each item"):
    sample = pd.DataFrame({"sentence": features.groups, "word": dataset.item_words, "token read": [repr(t) for t in features.tokens],
                           "label": dataset.item_labels}).head(40)
    st.dataframe(sample, hide_index=True)
    st.caption("Words are read at their last token: the first position where a causal model has seen the whole word.")
