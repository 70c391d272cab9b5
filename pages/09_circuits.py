"""Do the weights support the story the activations told?

Patterns show the behaviour; weight analysis checks the story. For one head: the eigenvalues of
its OV circuit (does it copy what it attends to?), its QK circuit (which tokens it is built to
attend to), and how strongly earlier heads feed its queries, keys and values (composition). For
every head: the copying score. Everything is read from the weights, factored: no vocab x vocab
matrix is ever built.
"""

from __future__ import annotations

import streamlit as st

from interp_core.core.head_id import head_label
from interp_core.techniques.circuits import CopyingRequest, OVRequest, PositionalQKRequest, QKRequest
from interp_core.techniques.composition import KINDS, CompositionRequest
from ui import circuits_views as views
from ui import page, runner, state

# (label, n_layers, n_heads, layer, head): presets offered only for models of that shape
SHAPED_PRESETS = [
    ("Induction head L18H6 (SmolLM2-135M)", 30, 9, 18, 6),
    ("Previous-token head L16H0 (SmolLM2-135M)", 30, 9, 16, 0),
    ("Induction head 5.1 (GPT-2 small)", 12, 12, 5, 1),
    ("Previous-token head 4.11 (GPT-2 small)", 12, 12, 4, 11),
]
ONE_HEAD_CHARTS = {"ov_eigenvalues_basic", "ov_eigenvalues_full", "qk_tokens", "qk_positions", *(f"composition_{k}" for k in KINDS)}

page.header("Circuits", "Do the weights support the story the activations told?")
model = state.require_model()
info = model.info
page.explain(views.INTRO)
fold = st.checkbox("Fold norm weights into the circuits (recommended)", value=True, key="circ_fold", bind="query-params",
                   help=views.FOLD_HELP)
st.caption(views.fold_caption(info, fold))

st.subheader("Copying score of every head")
views.show_copying(runner.run_or_stop(model, CopyingRequest(fold)), info.n_layers)


def pick_head() -> tuple[int, int]:
    """Layer and head inputs, filled by a preset for a model of a known shape (else: the last layer's head 0)."""
    presets = {label: {"circ_layer": L, "circ_head": h} for label, *shape, L, h in SHAPED_PRESETS
               if tuple(shape) == (info.n_layers, info.n_heads)}
    page.presets(presets, key="circ", default=next(iter(presets), None))
    for key, value in (("circ_layer", info.n_layers - 1), ("circ_head", 0)):
        if key not in st.session_state and key not in st.query_params:
            st.session_state[key] = value
    left, right = st.columns(2)
    layer = int(left.number_input(f"Layer (0 – {info.n_layers - 1})", step=1, key="circ_layer", bind="query-params"))
    head = int(right.number_input(f"Head (0 – {info.n_heads - 1})", step=1, key="circ_head", bind="query-params"))
    if info.n_kv_heads != info.n_heads and 0 <= head < info.n_heads:
        st.caption(f"Grouped-query attention: query head {head} reads KV head {model.adapter.kv_head_of(head)}'s W_K and W_V, "
                   f"shared with the other {info.n_heads // info.n_kv_heads - 1} query heads of its group.")
    return layer, head


@st.fragment
def one_head() -> None:
    """Everything about one head: picking another head, tokens or view reruns only this; the copying grid stays."""
    page.forget_charts(ONE_HEAD_CHARTS)
    st.subheader("One head")
    layer, head = pick_head()
    name = head_label(layer, head) if layer >= 0 and head >= 0 else f"layer {layer}, head {head}"

    st.markdown(f"#### OV circuit of {name}")
    ids = views.chosen_tokens(model)
    if ids is None:
        return
    top_k = st.slider("Tokens raised, per input token", 3, 20, 8, key="circ_topk", bind="query-params")
    ov = runner.run(model, OVRequest(layer, head, ids, top_k, fold))
    if ov is None:
        return
    views.show_ov(ov, name, info)

    st.markdown(f"#### QK circuit of {name}")
    if info.positional == "rotary":
        page.caution(f"{info.name} uses rotary positions: the real score also rotates queries and keys by their positions. "
                     "The token × token matrix below ignores position entirely: it is the score two tokens would get at the same position.")
    keys = views.key_tokens(model, ids)
    if keys is not None and (qk := runner.run(model, QKRequest(layer, head, ids, keys, fold))) is not None:
        views.show_qk(qk, name)
    if info.positional == "learned":
        n_pos = st.slider("Positions in the positional QK view", 8, min(128, info.n_ctx), min(64, info.n_ctx), key="circ_npos",
                          bind="query-params")
        if (positional := runner.run(model, PositionalQKRequest(layer, head, n_pos, fold))) is not None:
            views.show_positional(positional, name)

    st.markdown(f"#### Composition into {name}")
    if layer == 0:
        st.info("Layer 0 has no earlier heads to compose with. Pick a later layer.")
    elif (comp := runner.run(model, CompositionRequest(layer, head, fold))) is not None:
        views.show_composition(comp, name, info.n_heads)


one_head()
