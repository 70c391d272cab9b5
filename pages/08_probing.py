"""What information is linearly decodable at each layer, and is it the model or the probe that knows it?"""

from __future__ import annotations

import dataclasses

import streamlit as st

from interp_core.techniques.probe_data import BUNDLED
from interp_core.techniques.probing import MAX_TOKENS, ProbeDataRequest, ProbeRequest
from ui import page, runner, state
from ui import probing_views as views

SETS = [*BUNDLED, "upload"]
PRESETS = {
    "Part of speech": {"probe_set": "pos", "probe_kind": "linear"},
    "POS with an MLP probe": {"probe_set": "pos", "probe_kind": "mlp"},
    "True or false? (mean)": {"probe_set": "facts", "probe_kind": "linear", "probe_pool": "mean"},
}

page.header("Probing", "What information is linearly decodable at each layer, and is it the model or the probe that knows it?")
model = state.require_model()
n_layers = model.info.n_layers
limit = model.token_limit(MAX_TOKENS)  # the longest sentence probed here (context, workshop limit)

page.presets(PRESETS, key="probe", default="Part of speech", help_of="probe_set")
page.url_names_options("probe_set", SETS)  # ?probe_set=upload must ask for the upload, not probe the default set
page.url_names_options("probe_pool", ["last", "mean"])
left, mid, right = st.columns([2, 1, 1])
choice = left.selectbox("Dataset", SETS, key="probe_set", bind="query-params",
                        format_func=lambda s: BUNDLED[s]["title"] if s in BUNDLED else "Your own CSV")
kind = mid.radio("Probe", ["linear", "mlp"], key="probe_kind", bind="query-params", horizontal=True,
                 help="A linear classifier (ridge, standardised states), or an MLP with one hidden layer of 64 units (more expressive, so it memorises more).")
folds = right.slider("Folds (split by sentence)", 2, 10, 5, key="probe_folds", bind="query-params")
step = st.select_slider("Probe every k-th layer (the last layer is always included)", [1, 2, 3, 5], value=1 if n_layers <= 12 else 3,
                        key="probe_step", bind="query-params")


def chosen_source() -> tuple[str, bytes]:
    """The dataset's name and, for the user's own CSV, its bytes; stops the page (after a hint) when there is none."""
    if choice in BUNDLED:
        return choice, b""
    st.markdown("Upload a CSV with columns `text,label` (one label per sentence) or `text,labels` (one label per "
                "space-separated word; punctuation as its own word, e.g. `The cat sat .` / `DET NOUN VERB PUNCT`). "
                f"Each sentence may have up to {limit} tokens for this model.")
    upload = st.file_uploader("CSV file", type=["csv"], key="probe_file")
    pasted = st.text_area("…or paste the CSV here", key="probe_paste", height=120)
    if upload is not None:
        return upload.name, upload.getvalue()
    if pasted.strip():
        return "pasted.csv", pasted.encode("utf-8")
    st.info("Upload a CSV file or paste one to probe your own task.")
    st.stop()


name, csv = chosen_source()
# Parsed and every sentence checked against this model's token limit (light), before any heavy job queues.
dataset = runner.run_or_stop(model, ProbeDataRequest(name, csv))
if dataset.description:
    st.caption(dataset.description)
pool = "last"
if dataset.level == "sentence":
    pool = st.radio("Read each sentence at", ["last", "mean"], key="probe_pool", bind="query-params", horizontal=True,
                    format_func=lambda p: "its last token" if p == "last" else "the mean over its tokens")
st.markdown(f"**{dataset.n_sentences} sentences, {len(dataset.item_labels)} labelled "
            f"{'words' if dataset.level == 'token' else 'sentences'}**, classes: "
            + ", ".join(f"{c} ({n})" for c, n in dataset.label_counts().items()))

request = ProbeRequest(name, kind, folds, 0, pool, step, csv)
features = runner.run_or_stop(model, request.features_request())  # kept: another probe or fold count reuses them
result = runner.run_or_stop(model, dataclasses.replace(request, features=features))
st.caption(f"Hidden states {'read from the disk cache' if features.source == 'disk cache' else 'extracted'} in {features.seconds:.1f} s "
           f"(cached: changing the probe, folds or layer reuses them); {2 * len(result.layers) * folds} probes fitted in {result.seconds:.1f} s.")

views.show_accuracy(result)
views.show_layer(result)
views.show_items(dataset, features)
