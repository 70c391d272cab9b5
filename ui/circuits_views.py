"""Inputs, charts and explanations of the Circuits page, built from its results' ``tables()``.

Nothing here runs the model or reads the weights: the page gets every result from
:func:`ui.runner.run` and hands it here to draw.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from interp_core import LoadedModel, ModelInfo, WorkbenchError
from interp_core.techniques.circuits import CopyingScores, OVCircuit, QKCircuit, token_ids
from interp_core.techniques.composition import KINDS, CompositionScores
from ui import state
from ui.charts import download_buttons, heatmap
from ui.page import explain, show_chart

SRC_PROMPT, SRC_LIST = "the prompt's tokens", "my list"
INTRO = """
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
COMPOSITION = """
An earlier head writes `x W_OV¹` into the residual stream; this head can read it through its queries
(**Q-composition**, score `‖W_OV¹ W_QK‖ / (‖W_OV¹‖ ‖W_QK‖)`), its keys (**K-composition**, with `W_QKᵀ`: the way an
induction head finds "the token after the earlier copy" from a previous-token head's output) or its values
(**V-composition**, with `W_OV`). Random maps of the same shapes already score above 0, so compare each cell with the
random baseline (mean of random Gaussian matrices of the same factored shapes; the same for Q, K and V because the
shapes are the same).
"""
FOLD_HELP = ("Multiply W_Q/W_K/W_V by the weight of the norm before the attention (ln1) and W_U by the final norm's weight"
             " (LayerNorm: also remove the mean direction), as TransformerLens does. Off: raw weight matrices.")


def took(seconds: float) -> str:
    return f"computed in {seconds:.2f} s (cached afterwards)"


def fold_caption(info: ModelInfo, fold: bool) -> str:
    if not fold:
        return (f"**Raw weights:** the {info.norm} weights are ignored. With RMSNorm models this is a different map from the "
                "one the model runs: the norm weights of trained models are far from 1 and uneven.")
    return ("**Norms folded:** each head reads `diag(ln1_w) W_Q`, `diag(ln1_w) W_K`, `diag(ln1_w) W_V`; the unembedding is "
            "`diag(ln_final_w) W_U`" + (", with the mean direction projected out (LayerNorm)" if info.norm == "layernorm" else "")
            + ". The per-token 1/scale of the norm is left out (a positive factor: it changes no sign and no copying score); "
            "biases are left out.")


def show_copying(grid: CopyingScores, n_layers: int) -> None:
    """Both copying grids side by side, red-blue around zero."""
    tables = grid.tables()
    for column, stem, title in zip(st.columns(2), ("full", "basic"), ("full OV (token space)", "residual-space OV")):
        df = tables[f"copying_{stem}"]
        with column:
            chart = heatmap(df, "head", "layer", "copying", scheme="redblue", domain=(-1, 1), title=title,
                            tooltip=[alt.Tooltip("label"), alt.Tooltip("copying:Q", format=".3f")], height=max(180, 14 * n_layers))
            show_chart(chart, df, f"copying_{stem}")
    st.caption(f"Blue: the head raises (full) / writes back (residual) what it attends to; red: it suppresses it. "
               f"All {grid.full.size} heads, both circuits: {took(grid.seconds)}.")


def chosen_tokens(model: LoadedModel) -> tuple[int, ...] | None:
    """Token ids from the prompt (unique, first 32) or the typed list; None after an error (shown)."""
    src = st.radio("Tokens to inspect", [SRC_PROMPT, SRC_LIST], key="circ_src", bind="query-params", horizontal=True)
    text = st.text_input("Words, comma-separated (a leading space is added to each)", value="Paris, London, cat, Mary, John, the",
                         key="circ_tokens", bind="query-params", disabled=src == SRC_PROMPT)
    try:
        if src == SRC_LIST:
            return tuple(token_ids(model, text.split(",")))
        return tuple(dict.fromkeys(model.tokenize(state.prompt())[0].tolist()))[:32]
    except WorkbenchError as error:
        st.error(str(error))
        return None


def key_tokens(model: LoadedModel, queries: tuple[int, ...]) -> tuple[int, ...] | None:
    """The QK circuit's key tokens: the typed list, or the query tokens; None after an error (shown)."""
    text = st.text_input("Key tokens, comma-separated (empty: the same tokens as the queries)", value="", key="circ_keys",
                         bind="query-params")
    try:
        return tuple(token_ids(model, text.split(","))) if text.strip() else queries
    except WorkbenchError as error:
        st.error(str(error))
        return None


def eigen_chart(df: pd.DataFrame, title: str) -> alt.LayerChart:
    """Eigenvalues on the complex plane; one outlier eigenvalue can be 1000x the rest (full OV of tied-embedding
    models): then a symlog scale, linear up to the median magnitude, keeps the others visible."""
    bound = float(df["magnitude"].max() or 1.0) * 1.05
    median = float(np.median(df["magnitude"]))
    symlog = bound / max(median, 1e-12) > 30
    scale = alt.Scale(type="symlog", constant=median, domain=[-bound, bound]) if symlog else alt.Scale(domain=[-bound, bound])
    note = " (symlog scale)" if symlog else ""
    points = alt.Chart(df, title=title).mark_circle(size=45, opacity=0.8).encode(
        x=alt.X("real:Q", scale=scale, title="Re λ" + note), y=alt.Y("imag:Q", scale=scale, title="Im λ" + note),
        color=alt.Color("sign:N", scale=alt.Scale(domain=["Re λ ≥ 0", "Re λ < 0"], range=["#2166ac", "#b2182b"])),
        tooltip=[alt.Tooltip("rank"), alt.Tooltip("real:Q", format=".3g"), alt.Tooltip("imag:Q", format=".3g"), alt.Tooltip("magnitude:Q", format=".3g")],
    )
    axes = alt.Chart(pd.DataFrame({"zero": [0.0]}))
    return (points + axes.mark_rule(color="#999").encode(x=alt.X("zero:Q")) + axes.mark_rule(color="#999").encode(y=alt.Y("zero:Q"))).properties(height=320)


def show_ov(ov: OVCircuit, name: str, info: ModelInfo) -> None:
    """Copying scores, both spectra and the tokens each input token raises most."""
    st.table(pd.DataFrame({
        "circuit": ["residual-space OV  (W_V W_O)", "full OV  (W_E W_V W_O W_U)"],
        "copying score": [f"{ov.basic_copying:+.3f}", f"{ov.full_copying:+.3f}"],
        "largest |λ|": [f"{np.abs(ov.basic_eigenvalues).max():.3g}", f"{np.abs(ov.full_eigenvalues).max():.3g}"],
    }).set_index("circuit"))
    tables = ov.tables()
    for column, stem, title in zip(st.columns(2), ("basic", "full"), ("residual-space OV", "full OV (token space)")):
        with column:
            df = tables[f"ov_eigenvalues_{stem}"]
            show_chart(eigen_chart(df, f"{name} {title}"), df, f"ov_eigenvalues_{stem}")
    st.caption(f"The {info.d_head} non-zero eigenvalues of each circuit on the complex plane; points right of the vertical line "
               f"mean copying. Eigenvalues and token rows: {took(ov.seconds)}.")
    top = tables["ov_top_tokens"]
    st.table(top.set_index("input token"))
    st.caption(f"Each row: the tokens whose logits rise most when {name} attends to that token (direct path, norm scale ignored). "
               f"'rank of itself' 0 means the head raises the very token it reads: copying. Of {info.d_vocab} tokens.")
    download_buttons(top, "ov_top_tokens")


def show_qk(qk: QKCircuit, name: str) -> None:
    df = qk.tables()["qk_tokens"]
    queries, keys = qk.axis_labels()
    bound = float(np.abs(qk.scores).max()) or 1.0
    chart = heatmap(df, "key", "query", "score", scheme="redblue", domain=(-bound, bound), x_sort=keys, y_sort=queries,
                    title=f"{name}: W_E[q] W_QK W_E[k]ᵀ / √d_head").properties(height=alt.Step(max(12, min(30, 400 // len(queries)))))
    show_chart(chart, df, "qk_tokens", caption="Rows: query token; columns: key token. Within a row, higher keys win the "
               f"softmax. Biases and the norm's scale left out. {took(qk.seconds)}.")


def show_positional(pos: QKCircuit, name: str) -> None:
    df = pos.tables()["qk_positions"]
    bound = float(np.nanmax(np.abs(pos.scores))) or 1.0
    chart = heatmap(df, "key position", "query position", "score", scheme="redblue", domain=(-bound, bound),
                    title=f"{name}: W_pos W_QK W_posᵀ / √d_head", height=360)
    show_chart(chart, df, "qk_positions", caption="Learned positions only (tokens ignored); keys after the query are "
               f"blank. A previous-token head shows a bright line just below the diagonal. {took(pos.seconds)}.")


def show_composition(comp: CompositionScores, name: str, n_heads: int) -> None:
    """Q-, K- and V-composition from every earlier head, and the strongest pairs."""
    explain(COMPOSITION, label="How to read composition")
    tables, layer = comp.tables(), comp.layer
    top = max(float(max(getattr(comp, k).max() for k in KINDS)), 1e-9)
    for column, kind in zip(st.columns(3), KINDS):
        df = tables[f"composition_{kind}"]
        with column:
            chart = heatmap(df, "head", "layer", "score", scheme="viridis", domain=(0, top), title=f"{kind.upper()}-composition",
                            tooltip=[alt.Tooltip("label:N", title="from"), alt.Tooltip("score:Q", format=".3f"),
                                     alt.Tooltip("times_random:Q", format=".2f", title="× baseline")],
                            ).properties(height=alt.Step(min(40, max(12, 160 // layer)))).configure_legend(orient="bottom")
            show_chart(chart, df, f"composition_{kind}")
    st.caption(f"Each cell: an earlier head's composition score into {name}; random baseline {comp.baseline['q']:.3f} "
               f"(mean of {comp.n_random} random pairs). {layer * n_heads} earlier heads × 3 kinds: {took(comp.seconds)}.")
    pairs = tables["composition_top_pairs"]
    st.markdown("**Strongest pairs** (by score minus the random baseline)")
    st.table(pairs.round(3).set_index("from"))
    download_buttons(pairs, "composition_top_pairs")
