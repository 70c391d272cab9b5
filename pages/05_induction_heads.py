"""How does the model copy patterns from its context, and which heads do it?"""

from __future__ import annotations

import altair as alt
import numpy as np
import streamlit as st

from interp_core.core.head_id import HeadId, head_label
from interp_core.techniques.composition import CompositionRequest
from interp_core.techniques.induction import InductionRequest, PromptInductionRequest
from interp_core.techniques.induction_ablation import AblationRequest
from ui import induction_views as views
from ui import runner, state
from ui.page import caution, explain, forget_charts, header, show_chart

N_COMPOSE = 6  # previous-token x induction heads in the K-composition matrix
ONE_HEAD_CHARTS = {"induction_head_pattern", "k_composition_into_head", "induction_own_text"}

header("Induction Heads", "How does the model copy patterns from its context, and which heads do it?")
model = state.require_model()
spec, info = state.model_spec(), model.info
n_layers, n_heads = info.n_layers, info.n_heads

controls, side = st.columns([3, 2])
with controls:
    length, repeats, seed = views.sequence_controls(model)
with side:
    st.markdown(views.STORY)
result = runner.run_or_stop(model, InductionRequest(length, repeats, seed))

st.subheader("1 · The signature: loss falls on the repeat")
views.show_signature(result, info.d_vocab)

st.subheader("2 · Which heads: induction and previous-token scores")
views.show_score_grids(result)


@st.fragment
def one_head() -> None:
    """Section 3: one head's pattern, the earlier heads that feed its keys, and your own text; picking another
    head or typing reruns only this, reading the cached scores."""
    forget_charts(ONE_HEAD_CHARTS)
    st.subheader("3 · One head: its pattern, what feeds it, your own text")
    ranked = [h["label"] for h in result.top_heads(n_layers * n_heads)]
    chosen = st.selectbox("Head to look at (ranked by induction score)", ranked, key="ind_head", bind="query-params")
    pick = HeadId.parse(chosen)
    layer, head = pick.layer, pick.head
    title = f"{chosen}: induction {result.induction[layer, head]:.3f}, previous-token {result.previous_token[layer, head]:.3f}"
    df = runner.view("induction_head_pattern", result, "pattern_table", layer=layer, head=head)
    show_chart(views.pattern_chart(df, title), df, "induction_head_pattern",
               caption="Red outlines: the induction targets (the token after the previous occurrence).")

    if layer == 0:
        st.info(f"{chosen} is in layer 0: no earlier head can feed its keys (K-composition). Pick a head in a later layer.")
    elif (comp := runner.run(model, CompositionRequest(layer, head))) is not None:
        df = runner.view("k_composition_into_head", result, "composition_table", composition=comp)
        tooltip = [alt.Tooltip("label"), alt.Tooltip("k_composition:Q", format=".3f"), alt.Tooltip("times_random:Q", format=".1f"),
                   alt.Tooltip("previous_token:Q", format=".3f")]
        show_chart(views.k_composition_chart(df, f"K-composition: every earlier head → {chosen}", tooltip), df,
                   "k_composition_into_head", caption=f"Random matrices of the same shapes score {comp.baseline['k']:.3f} "
                   f"± {comp.baseline_std:.3f}; 'times_random' divides by that.")

    own = st.text_area("Your own text that repeats itself", views.default_own_text(spec), height=80, bind="query-params",
                       key="ind_text_toy" if views.is_toy(spec) else "ind_text")
    mine = runner.run(model, PromptInductionRequest(own, layer, head))
    if mine is None:
        return
    if not mine.mask.any():
        st.info("This text repeats no token, so there is nothing for an induction head to copy: repeat a phrase.")
    else:
        best = np.unravel_index(np.nanargmax(mine.scores), mine.scores.shape)
        st.markdown(f"{chosen} puts **{mine.scores[layer, head]:.3f}** of its attention on induction targets here on "
                    f"average; the top head on this text is **{head_label(*best)}** ({mine.scores[best]:.3f}).")
    df = mine.tables()["induction_own_text"]
    show_chart(views.pattern_chart(df, f"{chosen} on your text"), df, "induction_own_text",
               caption="Red outlines: for each token seen before, the token that followed its earlier copy.")


@st.fragment
def ablation() -> None:
    """Section 4: ablate on request; a click reruns only this."""
    forget_charts({"induction_ablation"})
    st.subheader("4 · Evidence: knock the heads out")
    a1, a2, a3, a4 = st.columns(4)
    half = (n_layers * n_heads) // 2
    k = a1.slider("Top induction heads to ablate (k)", 1, min(10, half), min(5, half), key="ind_k", bind="query-params")
    method = a2.radio("Ablation", ["zero", "mean"], horizontal=True, key="ind_abl", bind="query-params",
                      help="zero: the head's output is set to 0; mean: to its mean over 8 other repeated random sequences")
    draws = a3.slider("Random draws", 1, 10, 5, key="ind_draws", bind="query-params")
    request = AblationRequest(length, repeats, seed, k=k, method=method, draws=draws)
    a4.write("")
    clicked = a4.button("Ablate", type="primary", key="ind_go")
    evidence = runner.cached(model, request) or (runner.run(model, request) if clicked else None)
    if evidence is None:
        st.info(f"Press **Ablate** to {method}-ablate the top {k} induction heads, then {draws} sets of {k} random heads "
                "drawn from the same layers, and compare the loss on the repeated part.")
    else:
        views.show_ablation(evidence)


one_head()
ablation()

st.subheader("5 · Evidence in the weights: K-composition")
if n_layers < 2:
    st.info("K-composition links heads of different layers; this model has a single layer. Pick a model with two or more.")
    st.stop()
prev_heads, ind_heads, fed = result.composition_heads(N_COMPOSE)  # those that can take part in a composition
comps = [runner.run_or_stop(model, CompositionRequest(*t)) for t in fed]  # the Circuits page's own results
prev_labels, ind_labels = [head_label(*h) for h in prev_heads], [head_label(*h) for h in ind_heads]
pairs = runner.view("k_composition_pairs", result, "pair_table", compositions=comps, n=N_COMPOSE)
tooltip = [alt.Tooltip("previous_token_head"), alt.Tooltip("induction_head"), alt.Tooltip("k_composition:Q", format=".3f"),
           alt.Tooltip("times_random:Q", format=".1f")]
show_chart(views.k_composition_chart(pairs, "Top previous-token heads → top induction heads", tooltip, x_sort=ind_labels,
                                     y_sort=prev_labels), pairs, "k_composition_pairs",
           caption="Previous-token heads from all but the last layer, induction heads from all but the first. "
                   "Empty cells: the previous-token head is not in an earlier layer. 'times_random' divides by the score "
                   "of random matrices of the same shapes.")
explain(views.K_COMPOSITION)
if info.positional == "rotary":
    caution("This model uses rotary position embeddings: W_QK here leaves the rotation out, so the scores read the "
            "content part of the weights only. Biases are ignored too.")
