"""Do the weights support the story the activations told?

Patterns show the behaviour; weight analysis checks the story. For one head: the eigenvalues of
its OV circuit (does it copy what it attends to?), its QK circuit (which tokens it is built to
attend to), and how strongly earlier heads feed its queries, keys and values (composition). For
every head: the copying score. Everything is read from the weights, factored: no vocab x vocab
matrix is ever built.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from interp_core import WorkbenchError
from interp_core.core.head_id import head_label
from interp_core.techniques.circuits import (
    CopyingScores,
    OVCircuit,
    QKCircuit,
    copying_scores,
    ov_circuit,
    positional_qk,
    qk_circuit,
    token_ids,
)
from interp_core.techniques.composition import KINDS, CompositionScores, composition_scores
from ui import jobs, page, state
from ui.charts import download_buttons, grid_frame, heatmap

SRC_PROMPT, SRC_LIST = "the prompt's tokens", "my list"
# (label, n_layers, n_heads, layer, head): presets shown only for models of that shape
PRESETS = [
    ("Induction head L18H6 (SmolLM2-135M)", 30, 9, 18, 6),
    ("Previous-token head L16H0 (SmolLM2-135M)", 30, 9, 16, 0),
    ("Induction head 5.1 (GPT-2 small)", 12, 12, 5, 1),
    ("Previous-token head 4.11 (GPT-2 small)", 12, 12, 4, 11),
]

page.header("Circuits", "Do the weights support the story the activations told?")
model = state.require_model()
info = model.info
spec = state.model_spec()


@st.cache_data(show_spinner=False, max_entries=64)
def cached_ov(spec: str, layer: int, head: int, ids: tuple[int, ...], top_k: int, fold: bool) -> OVCircuit:
    return ov_circuit(state.get_model(spec), layer, head, ids, top_k=top_k, fold_norms=fold)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_qk(spec: str, layer: int, head: int, query: tuple[int, ...], key: tuple[int, ...], fold: bool) -> QKCircuit:
    return qk_circuit(state.get_model(spec), layer, head, query, key, fold_norms=fold)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_positional(spec: str, layer: int, head: int, n_positions: int, fold: bool) -> QKCircuit:
    return positional_qk(state.get_model(spec), layer, head, n_positions=n_positions, fold_norms=fold)


def fitting_presets() -> list[tuple]:
    return [p for p in PRESETS if (p[1], p[2]) == (info.n_layers, info.n_heads)]


def default_head() -> tuple[int, int]:
    presets = fitting_presets()
    return (presets[0][3], presets[0][4]) if presets else (info.n_layers - 1, 0)


def apply_preset() -> None:
    for label, _, _, layer, head in fitting_presets():
        if st.session_state.get("circ_preset") == label:
            st.session_state["circ_layer"], st.session_state["circ_head"] = layer, head


def took(seconds: float) -> str:
    return f"computed in {seconds:.2f} s (cached afterwards)"


page.explain(
    """
A head does two separable things. Its **QK circuit** `W_QK = W_Q W_Kᵀ` decides where it looks; its **OV circuit**
`W_OV = W_V W_O` decides what it writes once it looks. Between the embedding and the unembedding, `W_E W_OV W_U`
is the **full OV circuit**: "attending to token *t* raises the logit of token *u* by …". A copying head raises the
logit of the very token it attends to, so its full OV circuit has mostly positive eigenvalues. The **copying score**
`Σ Re λ / Σ |λ|` is +1 for a perfect copier and −1 for a perfect anti-copier. The **residual-space** ("basic") score
uses the eigenvalues of `W_OV` itself (does the head write back the direction it read?), the **full** score those of
`W_E W_OV W_U` (does it raise the token it read?).

The non-zero eigenvalues of the `d_vocab × d_vocab` full circuit equal those of the `d_head × d_head` matrix
`W_O (W_U W_E) W_V`, so nothing vocabulary-sized is ever built. These are direct paths only: they describe what the
head does to a token's raw embedding, not to whatever earlier layers put in the residual stream.
"""
)

fold = st.checkbox(
    "Fold norm weights into the circuits (recommended)", value=True, key="circ_fold", bind="query-params",
    help="Multiply W_Q/W_K/W_V by the weight of the norm before the attention (ln1) and W_U by the final norm's weight"
    " (LayerNorm: also remove the mean direction), as TransformerLens does. Off: raw weight matrices.",
)
st.caption(
    ("**Norms folded:** each head reads `diag(ln1_w) W_Q`, `diag(ln1_w) W_K`, `diag(ln1_w) W_V`; the unembedding is "
     "`diag(ln_final_w) W_U`" + (", with the mean direction projected out (LayerNorm)" if info.norm == "layernorm" else "")
     + ". The per-token 1/scale of the norm is left out (a positive factor: it changes no sign and no copying score); biases are left out.")
    if fold else
    f"**Raw weights:** the {info.norm} weights are ignored. With RMSNorm models this is a different map from the one the "
    "model runs: the norm weights of trained models are far from 1 and uneven."
)

# --- every head ---------------------------------------------------------------------------------
st.subheader("Copying score of every head")
try:
    grid: CopyingScores = jobs.cached_job(
        "Eigenvalues of every head's OV circuit", ("circuits-copying", spec, fold),
        lambda on_progress: copying_scores(model, fold_norms=fold, on_progress=on_progress),
    )
except WorkbenchError as error:
    state.show_error(error)
    st.stop()
frames = []
for name, values in (("full OV (token space)", grid.full), ("residual-space OV", grid.basic)):
    df = grid_frame(values, list(range(info.n_layers)), list(range(info.n_heads)), "layer", "head", "copying")
    df["circuit"], df["name"] = name, [head_label(a, b) for a, b in zip(df["layer"], df["head"])]
    frames.append(df)
columns = st.columns(2)
for column, df in zip(columns, frames):
    with column:
        chart = heatmap(
            df, "head", "layer", "copying", scheme="redblue", domain=(-1, 1), title=df["circuit"].iloc[0],
            tooltip=["name", alt.Tooltip("copying:Q", format=".3f")], height=max(180, 14 * info.n_layers),
        )
        page.show_chart(chart, df, f"copying_{'full' if df['circuit'].iloc[0].startswith('full') else 'basic'}")
st.caption(
    f"Blue: the head raises (full) / writes back (residual) what it attends to; red: it suppresses it. "
    f"All {info.n_layers * info.n_heads} heads, both circuits: {took(grid.seconds)}."
)

# --- one head -------------------------------------------------------------------------------
st.subheader("One head")
presets = fitting_presets()
if presets:
    st.selectbox("Preset", ["custom"] + [p[0] for p in presets], key="circ_preset", on_change=apply_preset, bind="query-params")
default_layer, default_head_index = default_head()
left, right = st.columns(2)
layer = int(left.number_input(f"Layer (0 – {info.n_layers - 1})", value=default_layer, step=1, key="circ_layer", bind="query-params"))
head = int(right.number_input(f"Head (0 – {info.n_heads - 1})", value=default_head_index, step=1, key="circ_head", bind="query-params"))
name = head_label(layer, head)
if info.n_kv_heads != info.n_heads and 0 <= head < info.n_heads:
    st.caption(f"Grouped-query attention: query head {head} reads KV head {model.adapter.kv_head_of(head)}'s W_K and W_V, "
               f"shared with the other {info.n_heads // info.n_kv_heads - 1} query heads of its group.")


def chosen_tokens() -> tuple[int, ...]:
    """Token ids from the prompt (unique, first 32) or the typed list; raises WorkbenchError."""
    src = st.radio("Tokens to inspect", [SRC_PROMPT, SRC_LIST], key="circ_src", bind="query-params", horizontal=True)
    text = st.text_input("Words, comma-separated (a leading space is added to each)", value="Paris, London, cat, Mary, John, the",
                         key="circ_tokens", bind="query-params", disabled=src == SRC_PROMPT)
    if src == SRC_LIST:
        return tuple(token_ids(model, text.split(",")))
    ids = model.tokenize(state.prompt())[0].tolist()
    return tuple(dict.fromkeys(ids))[:32]


def eigen_chart(values: np.ndarray, title: str) -> tuple[alt.Chart, pd.DataFrame]:
    df = pd.DataFrame({"rank": range(len(values)), "real": values.real, "imag": values.imag, "magnitude": np.abs(values)})
    df["sign"] = np.where(df["real"] >= 0, "Re λ ≥ 0", "Re λ < 0")
    bound = float(df["magnitude"].max() or 1.0) * 1.05
    # one outlier eigenvalue can be 1000x the rest (full OV of tied-embedding models): then a symlog scale
    # keeps the others visible; its linear zone is the median magnitude
    spread = bound / max(float(np.median(df["magnitude"])), 1e-12)
    scale = (alt.Scale(type="symlog", constant=float(np.median(df["magnitude"])), domain=[-bound, bound]) if spread > 30
             else alt.Scale(domain=[-bound, bound]))
    axis_note = " (symlog scale)" if spread > 30 else ""
    points = alt.Chart(df, title=title).mark_circle(size=45, opacity=0.8).encode(
        x=alt.X("real:Q", scale=scale, title="Re λ" + axis_note), y=alt.Y("imag:Q", scale=scale, title="Im λ" + axis_note),
        color=alt.Color("sign:N", scale=alt.Scale(domain=["Re λ ≥ 0", "Re λ < 0"], range=["#2166ac", "#b2182b"])),
        tooltip=["rank", alt.Tooltip("real:Q", format=".3g"), alt.Tooltip("imag:Q", format=".3g"), alt.Tooltip("magnitude:Q", format=".3g")],
    )
    axes = alt.Chart(pd.DataFrame({"zero": [0.0]}))
    chart = points + axes.mark_rule(color="#999").encode(x="zero:Q") + axes.mark_rule(color="#999").encode(y="zero:Q")
    return chart.properties(height=320), df


st.markdown(f"#### OV circuit of {name}")
try:
    ids = chosen_tokens()
    top_k = st.slider("Tokens raised, per input token", 3, 20, 8, key="circ_topk", bind="query-params")
    ov = cached_ov(spec, layer, head, ids, top_k, fold)
except WorkbenchError as error:
    state.show_error(error)
    st.stop()
st.table(pd.DataFrame({
    "circuit": ["residual-space OV  (W_V W_O)", "full OV  (W_E W_V W_O W_U)"],
    "copying score": [f"{ov.basic_copying:+.3f}", f"{ov.full_copying:+.3f}"],
    "largest |λ|": [f"{np.abs(ov.basic_eigenvalues).max():.3g}", f"{np.abs(ov.full_eigenvalues).max():.3g}"],
}).set_index("circuit"))
columns = st.columns(2)
for column, values, title, stem in ((columns[0], ov.basic_eigenvalues, "residual-space OV", "basic"),
                                    (columns[1], ov.full_eigenvalues, "full OV (token space)", "full")):
    with column:
        chart, df = eigen_chart(values, f"{name} {title}")
        page.show_chart(chart, df, f"ov_eigenvalues_{stem}")
st.caption(f"The {info.d_head} non-zero eigenvalues of each circuit on the complex plane; points right of the vertical line "
           f"mean copying. Eigenvalues and token rows: {took(ov.seconds)}.")
top_df = pd.DataFrame({
    "input token": [repr(s) for s in ov.input_strings],
    "rank of itself": ov.self_rank,
    "raises most (W_E[t] W_OV W_U)": [" · ".join(repr(t) for t in row) for row in ov.top_strings],
    "top value": ov.top_values[:, 0] if len(ov.top_values) else [],
})
st.table(top_df.set_index("input token"))
st.caption(f"Each row: the tokens whose logits rise most when {name} attends to that token (direct path, norm scale ignored). "
           f"'rank of itself' 0 means the head raises the very token it reads: copying. Of {info.d_vocab} tokens.")
download_buttons(top_df, "ov_top_tokens")

# --- QK circuit -----------------------------------------------------------------------------
st.markdown(f"#### QK circuit of {name}")
if info.positional == "rotary":
    page.caution(f"{info.name} uses rotary positions: the real score also rotates queries and keys by their positions. "
                 "The token × token matrix below ignores position entirely: it is the score two tokens would get at the same position.")
key_text = st.text_input("Key tokens, comma-separated (empty: the same tokens as the queries)", value="", key="circ_keys", bind="query-params")
try:
    key_ids = tuple(token_ids(model, key_text.split(","))) if key_text.strip() else ids
    qk = cached_qk(spec, layer, head, ids, key_ids, fold)
except WorkbenchError as error:
    state.show_error(error)
    qk = None
if qk is not None:
    q_labels = [f"{i}:{s!r}" for i, s in enumerate(qk.query_labels)]
    k_labels = [f"{i}:{s!r}" for i, s in enumerate(qk.key_labels)]
    qk_df = grid_frame(qk.scores, q_labels, k_labels, "query", "key", "score")
    bound = float(np.abs(qk.scores).max()) or 1.0
    chart = heatmap(qk_df, "key", "query", "score", scheme="redblue", domain=(-bound, bound), x_sort=k_labels, y_sort=q_labels,
                    title=f"{name}: W_E[q] W_QK W_E[k]ᵀ / √d_head").properties(height=alt.Step(max(12, min(30, 400 // len(q_labels)))))
    page.show_chart(chart, qk_df, "qk_tokens", caption=f"Rows: query token; columns: key token. Within a row, higher keys win the "
                    f"softmax. Biases and the norm's scale left out. {took(qk.seconds)}.")
if info.positional == "learned":
    n_pos = st.slider("Positions in the positional QK view", 8, min(128, info.n_ctx), min(64, info.n_ctx), key="circ_npos", bind="query-params")
    try:
        pos = cached_positional(spec, layer, head, n_pos, fold)
        pos_df = grid_frame(pos.scores, list(range(n_pos)), list(range(n_pos)), "query position", "key position", "score").dropna()
        bound = float(np.nanmax(np.abs(pos.scores))) or 1.0
        chart = heatmap(pos_df, "key position", "query position", "score", scheme="redblue", domain=(-bound, bound),
                        title=f"{name}: W_pos W_QK W_posᵀ / √d_head", height=360)
        page.show_chart(chart, pos_df, "qk_positions", caption="Learned positions only (tokens ignored); keys after the query are "
                        f"blank. A previous-token head shows a bright line just below the diagonal. {took(pos.seconds)}.")
    except WorkbenchError as error:
        state.show_error(error)

# --- composition ----------------------------------------------------------------------------
st.markdown(f"#### Composition into {name}")
page.explain(
    """
An earlier head writes `x W_OV¹` into the residual stream; this head can read it through its queries
(**Q-composition**, score `‖W_OV¹ W_QK‖ / (‖W_OV¹‖ ‖W_QK‖)`), its keys (**K-composition**, with `W_QKᵀ`: the way an
induction head finds "the token after the earlier copy" from a previous-token head's output) or its values
(**V-composition**, with `W_OV`). Random maps of the same shapes already score above 0, so compare each cell with the
random baseline (mean of random Gaussian matrices of the same factored shapes; the same for Q, K and V because the
shapes are the same).
""",
    label="How to read composition",
)
if layer == 0:
    st.info("Layer 0 has no earlier heads to compose with. Pick a later layer.")
else:
    try:
        comp: CompositionScores = jobs.cached_job(
            f"Composition into {name}", ("circuits-composition", spec, layer, head, fold),
            lambda on_progress: composition_scores(model, layer, head, fold_norms=fold, on_progress=on_progress),
        )
    except WorkbenchError as error:
        state.show_error(error)
        st.stop()
    top = max(float(max(getattr(comp, k).max() for k in KINDS)), 1e-9)
    columns = st.columns(3)
    for column, kind in zip(columns, KINDS):
        df = grid_frame(getattr(comp, kind), list(range(layer)), list(range(info.n_heads)), "layer", "head", "score")
        df["from"] = [head_label(a, b) for a, b in zip(df["layer"], df["head"])]
        df["× baseline"] = df["score"] / comp.baseline[kind]
        with column:
            chart = heatmap(df, "head", "layer", "score", scheme="viridis", domain=(0, top), title=f"{kind.upper()}-composition",
                            tooltip=["from", alt.Tooltip("score:Q", format=".3f"), alt.Tooltip("× baseline:Q", format=".2f")],
                            ).properties(height=alt.Step(min(40, max(12, 160 // layer)))).configure_legend(orient="bottom")
            page.show_chart(chart, df, f"composition_{kind}")
    st.caption(f"Each cell: an earlier head's composition score into {name}; random baseline {comp.baseline['q']:.3f} "
               f"(mean of {comp.n_random} random pairs). {layer * info.n_heads} earlier heads × 3 kinds: {took(comp.seconds)}.")
    pairs = pd.DataFrame(comp.top_pairs(12))
    st.markdown("**Strongest pairs** (by score minus the random baseline)")
    st.table(pairs.round(3).set_index("from"))
    download_buttons(pairs, "composition_top_pairs")
