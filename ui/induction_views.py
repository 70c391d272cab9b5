"""Inputs, charts and explanations of the Induction Heads page, built from its results' ``tables()``.

The page stays a list of sections; everything here reads results the page got from
:func:`ui.runner.run`, so nothing here runs the model.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from interp_core import LoadedModel
from interp_core.core.loading import TOY_PREFIX
from interp_core.techniques.induction import RepeatedResult
from interp_core.techniques.induction_ablation import AblationEvidence
from interp_core.techniques.toy.analysis import example_prompt
from interp_core.techniques.toy.tasks import TASKS
from interp_core.techniques.toy.train import task_of_toy
from ui.charts import heatmap
from ui.page import explain, show_chart

OWN_PROMPT = "The cat sat on the mat. The dog ran in the park. The cat sat on the mat. The dog ran in the park."
MAX_LENGTH = 200

STORY = (
    "**The two-layer story.** 1. A *previous-token head* writes \"the token before me was A\" into every position.  \n"
    "2. An *induction head* later on matches its query \"I am A\" against those keys (K-composition), so it "
    "attends to the token *after* the earlier A.  \n"
    "3. Its OV circuit copies that token to the output: the second copy of a random sequence becomes predictable."
)
K_COMPOSITION = (
    "K-composition asks how much of what an earlier head writes (its OV matrix W_V W_O) the later head's keys read "
    "(its QK matrix W_Q W_K^T): ‖W_OV · W_QKᵀ‖_F / (‖W_OV‖_F ‖W_QK‖_F). A previous-token head that feeds an induction "
    "head should stand well above random matrices. Each block's norm is folded in (its weight, and LayerNorm's centring): "
    "this is the very computation the Circuits page runs (norms folded), so the two pages show the same numbers."
)


def is_toy(spec: str) -> bool:
    return spec.startswith(TOY_PREFIX)


@st.cache_data(show_spinner=False, max_entries=32)
def default_own_text(spec: str) -> str:
    """English for real models; for a toy model, a holdout sequence of its task (toys read symbols, not words)."""
    task = task_of_toy(spec) if is_toy(spec) else None
    return example_prompt(task) if task in TASKS else OWN_PROMPT


def clamp_to(key: str, label: str, most: int, limit: int) -> None:
    """Lower a value of ``key`` above ``most`` (typed in a link, or kept from a model with a longer
    context) to ``most``, with a notice, before its widget is drawn; Streamlit would drop it silently."""
    asked = st.session_state.get(key)
    if asked is None and str(st.query_params.get(key, "")).isdigit():
        asked = int(st.query_params[key])  # a link's value is not in session state before the widget
    if isinstance(asked, int) and asked > most:
        st.session_state[key] = most
        notice = f"{label}: {asked} do not fit the limit of {limit} tokens here (BOS + copies x tokens); using {most}."
        st.toast(notice)
        st.caption(notice)


def sequence_controls(model: LoadedModel) -> tuple[int, int, int]:
    """Length, copies and seed of the random sequence; BOS + copies x length always fits the token limit:
    the model's context (toy models: 41) and, on a workshop server, $WORKBENCH_MAX_PROMPT_TOKENS."""
    c1, c2, c3 = st.columns(3)
    limit = model.token_limit()
    longest = min(MAX_LENGTH, (limit - 1) // 2)
    if longest < 3:
        st.info(f"This page needs room for BOS and two copies of at least 3 random tokens (7 tokens); the limit here is "
                f"{limit}. Pick a model with a longer context.")
        st.stop()
    clamp_to("ind_len", "Tokens in the random sequence", longest, limit)
    length = c1.slider("Tokens in the random sequence", 2, longest, min(50, longest), key="ind_len", bind="query-params",
                       help=f"BOS + copies x tokens must fit the limit of {limit} tokens here.")
    most = min(4, (limit - 1) // length)
    clamp_to("ind_rep", "Copies", most, limit)
    if most > 2:
        repeats = c2.slider("Copies", 2, most, 2, key="ind_rep", bind="query-params",
                            help=f"Up to {most} copies of {length} tokens fit the limit of {limit} tokens here.")
    else:
        repeats = 2
        c2.metric("Copies", 2, help=f"Only two copies of {length} tokens fit the limit of {limit} tokens here.")
    seed = int(c3.number_input("Seed", 0, 1_000_000, 0, key="ind_seed", bind="query-params"))
    return length, repeats, seed


def show_signature(result: RepeatedResult, d_vocab: int) -> None:
    """Section 1: the loss of each copy, the sequence, and the loss at every position."""
    m1, m2, m3 = st.columns(3)
    m1.metric("Mean loss, first copy", f"{result.loss_first_half:.2f} nats")
    m2.metric("Mean loss, later copies", f"{result.loss_repeated_half:.2f} nats")
    m3.metric("Drop", f"{result.loss_first_half - result.loss_repeated_half:.2f} nats")
    length, n = result.length, len(result.tokens)
    # drawn only while open: the first code box on a page costs its browser tab about 0.25 s (2-core machine)
    box = st.expander(f"The token sequence ({n} tokens: BOS + {result.n_repeats} x {length})", key="ind_tokens_open",
                      on_change="rerun")
    if box.open:
        box.code(" | ".join(repr(t) for t in result.token_strings[: 1 + length]) + f"\n… then the same {length} tokens again", language=None)
    loss_df = result.tables()["induction_loss_by_position"]
    means = pd.DataFrame({"part": ["first copy", "later copies"], "mean": [result.loss_first_half, result.loss_repeated_half],
                          "start": [1, length + 1], "end": [length, n - 1]})
    lines = alt.Chart(loss_df).mark_line(point=True).encode(
        x=alt.X("position:Q", title="position of the predicted token"), y=alt.Y("loss:Q", title="loss (nats)"),
        color=alt.Color("part:N", title=""), tooltip=[alt.Tooltip("position"), alt.Tooltip("token"), alt.Tooltip("loss:Q", format=".2f"), alt.Tooltip("part")],
    )
    mean_rules = alt.Chart(means).mark_rule(strokeDash=[6, 3], color="black").encode(
        x=alt.X("start:Q"), x2=alt.X2("end:Q"), y=alt.Y("mean:Q"), tooltip=[alt.Tooltip("part"), alt.Tooltip("mean:Q", format=".2f")]
    )
    bounds = alt.Chart(pd.DataFrame({"x": [length * i + 0.5 for i in range(1, result.n_repeats)]})).mark_rule(color="grey").encode(x=alt.X("x:Q"))
    show_chart((lines + mean_rules + bounds).properties(height=260), loss_df, "induction_loss_by_position",
               caption="Loss of predicting each token from everything before it; dashed lines: mean of each part. "
                       f"A model near chance on a {d_vocab}-token vocabulary scores about {np.log(d_vocab):.1f} nats.")
    explain("The first copy is random, so no model can predict it (loss near the log of the vocabulary size). "
            "From the second copy on, a model that looks back at what followed the current token the last time it "
            "appeared can predict every token: the drop is in-context learning.")


def show_score_grids(result: RepeatedResult) -> None:
    """Section 2: the induction and previous-token score of every head, and the top heads."""
    tables = result.tables()
    n_layers = result.induction.shape[0]
    for column, name, title in zip(st.columns(2), ("induction", "previous_token"), ("Induction score", "Previous-token score")):
        df = tables[f"{name}_scores"]
        with column:
            chart = heatmap(df, "head", "layer", name, domain=(0, 1), title=title, height=max(160, 14 * n_layers),
                            tooltip=[alt.Tooltip("label"), alt.Tooltip(f"{name}:Q", format=".3f")])
            show_chart(chart, df, f"{name}_scores")
    explain(f"Induction score: mean attention from each query in a later copy to the token right after the previous "
            f"occurrence of its own token (key = query − {result.length} + 1). Previous-token score: mean attention to the "
            "token just before. 1 means the head does nothing else.")
    top = tables["induction_top_heads"][["label", "induction", "previous_token"]]
    st.dataframe(top.rename(columns={"label": "head", "previous_token": "previous-token"}), hide_index=True, width="stretch")


def pattern_chart(df: pd.DataFrame, title: str) -> alt.LayerChart:
    """A head's pattern (a ``pattern_table``) with its induction targets outlined in red."""
    n = int(df["query"].max()) + 1
    base = alt.Chart(df, title=title).encode(
        x=alt.X("key:O", title="key position", axis=alt.Axis(labels=n <= 40)),
        y=alt.Y("query:O", title="query position", axis=alt.Axis(labels=n <= 40)),
        tooltip=[alt.Tooltip("query"), alt.Tooltip("query_token"), alt.Tooltip("key"), alt.Tooltip("key_token"), alt.Tooltip("attention:Q", format=".3f"), alt.Tooltip("target")],
    )
    cells = base.mark_rect().encode(color=alt.Color("attention:Q", scale=alt.Scale(scheme="viridis", domain=[0, 1])))
    outline = base.transform_filter(alt.datum.target).mark_rect(fill=None, stroke="red", strokeWidth=1)
    return (cells + outline).properties(height=min(560, max(300, 12 * n)))


def ablation_chart(bars: pd.DataFrame) -> alt.Chart:
    return alt.Chart(bars).mark_bar().encode(
        x=alt.X("loss:Q", title="mean loss on the repeated part (nats)"),
        y=alt.Y("ablated:N", sort=None, title="", axis=alt.Axis(labelOverlap=False, labelLimit=200)),
        color=alt.Color("kind:N", title=""), tooltip=[alt.Tooltip("ablated"), alt.Tooltip("heads"), alt.Tooltip("loss:Q", format=".3f")],
    ).properties(height=50 + 30 * len(bars))


def show_ablation(evidence: AblationEvidence) -> None:
    """Section 4: the repeated part's loss intact, with the top heads ablated, and with random heads."""
    rnd, k = evidence.random_repeated, len(evidence.top)
    e1, e2, e3 = st.columns(3)
    e1.metric("Repeated-part loss, intact", f"{evidence.clean_repeated:.2f} nats")
    e2.metric(f"Top {k} induction heads ablated", f"{evidence.top_repeated:.2f} nats",
              f"{evidence.top_repeated - evidence.clean_repeated:+.2f}", delta_color="inverse")
    e3.metric(f"{k} random heads, same layers", f"{rnd.mean():.2f} ± {rnd.std():.2f} nats",
              f"{rnd.mean() - evidence.clean_repeated:+.2f}", delta_color="inverse")
    bars = evidence.tables()["induction_ablation"]
    show_chart(ablation_chart(bars), bars, "induction_ablation",
               caption=f"{evidence.method.capitalize()} ablation of each head's output (hook_z) on the same sequence as above.")
    explain("If the named heads really do the copying, knocking them out brings the repeated part's loss back up "
            "towards the first copy's, while as many other heads from the same layers barely move it. "
            "Random draws are seeded, so the comparison is reproducible.")


def k_composition_chart(df: pd.DataFrame, title: str, tooltip: list, **sort: list) -> alt.Chart:
    """A magma heatmap of ``k_composition`` scores: earlier heads (rows) into later heads or one head."""
    if sort:
        return heatmap(df, "induction_head", "previous_token_head", "k_composition", scheme="magma", title=title,
                       tooltip=tooltip, **sort)
    return heatmap(df, "head", "layer", "k_composition", scheme="magma", title=title, tooltip=tooltip,
                   height=max(160, 14 * (int(df["layer"].max()) + 1)))
