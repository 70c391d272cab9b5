"""How does the model copy patterns from its context, and which heads do it?"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from interp_core import WorkbenchError
from interp_core.core.head_id import HeadId
from interp_core.core.loading import TOY_PREFIX
from interp_core.techniques.head_scores import induction_stripe_mask
from interp_core.techniques.induction import (
    AblationEvidence,
    KComposition,
    PromptInduction,
    RepeatedResult,
    ablation_evidence,
    head_label,
    k_composition,
    k_composition_pairs,
    prompt_induction,
    run_repeated,
)
from interp_core.techniques.toy.analysis import example_prompt
from interp_core.techniques.toy.tasks import TASKS
from interp_core.techniques.toy.train import task_of_toy
from ui import state
from ui.charts import grid_frame, heatmap
from ui.jobs import cached_job, lookup
from ui.page import caution, explain, header, show_chart

OWN_PROMPT = "The cat sat on the mat. The dog ran in the park. The cat sat on the mat. The dog ran in the park."
MAX_LENGTH = 200
N_COMPOSE = 6  # previous-token x induction heads in the K-composition matrix

header("Induction Heads", "How does the model copy patterns from its context, and which heads do it?")
model = state.require_model()
spec, info = state.model_spec(), model.info
n_layers, n_heads = info.n_layers, info.n_heads


@st.cache_data(show_spinner=False, max_entries=16)
def cached_prompt(spec: str, prompt: str, layer: int, head: int) -> PromptInduction:
    return prompt_induction(state.get_model(spec), prompt, layer, head)


@st.cache_data(show_spinner="Reading K-composition from the weights…", max_entries=32)
def cached_kcomp(spec: str, layer: int, head: int) -> KComposition:
    return k_composition(state.get_model(spec), layer, head)


@st.cache_data(show_spinner="Reading K-composition from the weights…", max_entries=16)
def cached_pairs(spec: str, sources: tuple, targets: tuple) -> np.ndarray:
    return k_composition_pairs(state.get_model(spec), list(sources), list(targets))


def is_toy(spec: str) -> bool:
    return spec.startswith(TOY_PREFIX)


@st.cache_data(show_spinner=False, max_entries=32)
def default_own_text(spec: str) -> str:
    """English for real models; for a toy model, a holdout sequence of its task (toys read symbols, not words)."""
    task = task_of_toy(spec) if is_toy(spec) else None
    return example_prompt(task) if task in TASKS else OWN_PROMPT


def story() -> None:
    st.markdown(
        "**The two-layer story.** 1. A *previous-token head* writes \"the token before me was A\" into every position.  \n"
        "2. An *induction head* later on matches its query \"I am A\" against those keys (K-composition), so it "
        "attends to the token *after* the earlier A.  \n"
        "3. Its OV circuit copies that token to the output: the second copy of a random sequence becomes predictable."
    )


def clamp_to(key: str, label: str, most: int) -> None:
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


# --- controls -----------------------------------------------------------------------------
controls, side = st.columns([3, 2])
with controls:
    c1, c2, c3 = st.columns(3)
    # BOS + copies x tokens must fit the token limit: the model's context (toy models: 41) and,
    # on a workshop server, $WORKBENCH_MAX_PROMPT_TOKENS; the engine is never asked for more.
    limit = model.token_limit()
    longest = min(MAX_LENGTH, (limit - 1) // 2)
    if longest < 3:
        st.info(f"This page needs room for BOS and two copies of at least 3 random tokens (7 tokens); the limit here is "
                f"{limit}. Pick a model with a longer context.")
        st.stop()
    clamp_to("ind_len", "Tokens in the random sequence", longest)
    length = c1.slider("Tokens in the random sequence", 2, longest, min(50, longest), key="ind_len", bind="query-params",
                       help=f"BOS + copies x tokens must fit the limit of {limit} tokens here.")
    most = min(4, (limit - 1) // length)
    clamp_to("ind_rep", "Copies", most)
    if most > 2:
        repeats = c2.slider("Copies", 2, most, 2, key="ind_rep", bind="query-params",
                            help=f"Up to {most} copies of {length} tokens fit the limit of {limit} tokens here.")
    else:
        repeats = 2
        c2.metric("Copies", 2, help=f"Only two copies of {length} tokens fit the limit of {limit} tokens here.")
    seed = int(c3.number_input("Seed", 0, 1_000_000, 0, key="ind_seed", bind="query-params"))
with side:
    story()

try:
    result: RepeatedResult = cached_job(
        "Running BOS + repeated random tokens", ("induction", spec, length, repeats, seed),
        lambda on_progress: run_repeated(state.get_model(spec), length, repeats, seed, on_progress=on_progress),
        heavy=True,
    )
except WorkbenchError as error:
    st.error(str(error))
    st.stop()

# --- 1. the in-context learning signature ---------------------------------------------------
st.subheader("1 · The signature: loss falls on the repeat")
m1, m2, m3 = st.columns(3)
m1.metric("Mean loss, first copy", f"{result.loss_first_half:.2f} nats")
m2.metric("Mean loss, later copies", f"{result.loss_repeated_half:.2f} nats")
m3.metric("Drop", f"{result.loss_first_half - result.loss_repeated_half:.2f} nats")
with st.expander(f"The token sequence ({len(result.tokens)} tokens: BOS + {repeats} x {length})"):
    st.code(" | ".join(repr(t) for t in result.token_strings[: 1 + length]) + f"\n… then the same {length} tokens again", language=None)

positions = np.arange(1, len(result.tokens))
copy = np.where(positions <= length, "first copy", "later copies")
loss_df = pd.DataFrame({"position": positions, "token": list(result.token_strings[1:]), "loss": result.loss, "part": copy})
means = pd.DataFrame({"part": ["first copy", "later copies"], "mean": [result.loss_first_half, result.loss_repeated_half],
                      "start": [1, length + 1], "end": [length, len(result.tokens) - 1]})
lines = alt.Chart(loss_df).mark_line(point=True).encode(
    x=alt.X("position:Q", title="position of the predicted token"), y=alt.Y("loss:Q", title="loss (nats)"),
    color=alt.Color("part:N", title=""), tooltip=["position", "token", alt.Tooltip("loss:Q", format=".2f"), "part"],
)
mean_rules = alt.Chart(means).mark_rule(strokeDash=[6, 3], color="black").encode(
    x="start:Q", x2="end:Q", y="mean:Q", tooltip=["part", alt.Tooltip("mean:Q", format=".2f")]
)
bounds = alt.Chart(pd.DataFrame({"x": [length * i + 0.5 for i in range(1, repeats)]})).mark_rule(color="grey").encode(x="x:Q")
show_chart((lines + mean_rules + bounds).properties(height=260), loss_df, "induction_loss_by_position",
           caption="Loss of predicting each token from everything before it; dashed lines: mean of each part. "
                   f"A model near chance on a {info.d_vocab}-token vocabulary scores about {np.log(info.d_vocab):.1f} nats.")
explain("The first copy is random, so no model can predict it (loss near the log of the vocabulary size). "
        "From the second copy on, a model that looks back at what followed the current token the last time it "
        "appeared can predict every token: the drop is in-context learning.")

# --- 2. which heads ----------------------------------------------------------------------------
st.subheader("2 · Which heads: induction and previous-token scores")
labels = dict(layer=list(range(n_layers)), head=list(range(n_heads)))
grids = []
for values, name, title in ((result.induction, "induction", "Induction score"), (result.previous_token, "previous_token", "Previous-token score")):
    df = grid_frame(values, labels["layer"], labels["head"], "layer", "head", name)
    df["label"] = [head_label(L, h) for L, h in zip(df["layer"], df["head"])]
    grids.append((df, name, title))
left, right = st.columns(2)
for column, (df, name, title) in zip((left, right), grids):
    with column:
        chart = heatmap(df, "head", "layer", name, domain=(0, 1), title=title, tooltip=["label", alt.Tooltip(f"{name}:Q", format=".3f")],
                        height=max(160, 14 * n_layers))
        show_chart(chart, df, f"{name}_scores")
explain(f"Induction score: mean attention from each query in a later copy to the token right after the previous "
        f"occurrence of its own token (key = query − {length} + 1). Previous-token score: mean attention to the token "
        "just before. 1 means the head does nothing else.")

top = pd.DataFrame(result.top_heads(10))
st.dataframe(top[["label", "induction", "previous_token"]].rename(columns={"label": "head", "previous_token": "previous-token"}),
             hide_index=True, width="stretch")
ranked = [head_label(h["layer"], h["head"]) for h in result.top_heads(n_layers * n_heads)]
chosen = st.selectbox("Head to look at (ranked by induction score)", ranked, key="ind_head", bind="query-params")
chosen_head = HeadId.parse(chosen)
layer, head = chosen_head.layer, chosen_head.head


def pattern_chart(pattern: np.ndarray, tokens: tuple[str, ...], mask: np.ndarray, title: str) -> tuple[alt.Chart, pd.DataFrame]:
    n = len(tokens)
    q, k = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    keep = k <= q
    df = pd.DataFrame({"query": q[keep], "key": k[keep], "attention": pattern[keep], "target": mask[keep]})
    df["query_token"] = [tokens[i] for i in df["query"]]
    df["key_token"] = [tokens[j] for j in df["key"]]
    base = alt.Chart(df, title=title).encode(
        x=alt.X("key:O", title="key position", axis=alt.Axis(labels=n <= 40)),
        y=alt.Y("query:O", title="query position", axis=alt.Axis(labels=n <= 40)),
        tooltip=["query", "query_token", "key", "key_token", alt.Tooltip("attention:Q", format=".3f"), "target"],
    )
    cells = base.mark_rect().encode(color=alt.Color("attention:Q", scale=alt.Scale(scheme="viridis", domain=[0, 1])))
    outline = base.transform_filter(alt.datum.target).mark_rect(fill=None, stroke="red", strokeWidth=1)
    return (cells + outline).properties(height=min(560, max(300, 12 * n))), df


stripe = induction_stripe_mask(len(result.tokens), length)
chart, df = pattern_chart(result.patterns[layer, head], result.token_strings, stripe,
                          f"{chosen}: induction {result.induction[layer, head]:.3f}, previous-token {result.previous_token[layer, head]:.3f}")
show_chart(chart, df, "induction_head_pattern", caption="Red outlines: the induction targets (the token after the previous occurrence).")

# --- 3. the user's own prompt --------------------------------------------------------------------
st.subheader("3 · Your own text")
own = st.text_area("Text that repeats itself", default_own_text(spec), key="ind_text_toy" if is_toy(spec) else "ind_text",
                   bind="query-params", height=80)
try:
    mine = cached_prompt(spec, own, layer, head)
except WorkbenchError as error:
    st.error(str(error))
else:
    if not mine.mask.any():
        st.info("This text repeats no token, so there is nothing for an induction head to copy: repeat a phrase.")
    else:
        score = mine.scores[layer, head]
        best = np.unravel_index(np.nanargmax(mine.scores), mine.scores.shape)
        st.markdown(f"{chosen} puts **{score:.3f}** of its attention on induction targets here on average; "
                    f"the top head on this text is **{head_label(*best)}** ({mine.scores[best]:.3f}).")
    chart, df = pattern_chart(mine.pattern, mine.token_strings, mine.mask, f"{chosen} on your text")
    show_chart(chart, df, "induction_own_text", caption="Red outlines: for each token seen before, the token that followed its earlier copy.")

# --- 4. evidence: ablation ------------------------------------------------------------------------
st.subheader("4 · Evidence: knock the heads out")
a1, a2, a3, a4 = st.columns(4)
k = a1.slider("Top induction heads to ablate (k)", 1, min(10, (n_layers * n_heads) // 2), min(5, (n_layers * n_heads) // 2),
              key="ind_k", bind="query-params")
method = a2.radio("Ablation", ["zero", "mean"], horizontal=True, key="ind_abl", bind="query-params",
                  help="zero: the head's output is set to 0; mean: to its mean over 8 other repeated random sequences")
draws = a3.slider("Random draws", 1, 10, 5, key="ind_draws", bind="query-params")
job_key = ("induction-ablation", spec, length, repeats, seed, k, method, draws)
a4.write("")
clicked = a4.button("Ablate", type="primary", key="ind_go")
evidence: AblationEvidence | None = lookup(job_key)  # type: ignore[assignment]
if clicked and evidence is None:
    try:
        evidence = cached_job(
            f"Ablating the top {k} induction heads and {draws} random sets", job_key,
            lambda on_progress: ablation_evidence(state.get_model(spec), length, repeats, seed, k=k, method=method,
                                                  n_draws=draws, on_progress=on_progress),
        )
    except WorkbenchError as error:
        st.error(str(error))
if evidence is None:
    st.info(f"Press **Ablate** to {method}-ablate the top {k} induction heads, then {draws} sets of {k} random heads "
            "drawn from the same layers, and compare the loss on the repeated part.")
else:
    rnd = evidence.random_repeated
    e1, e2, e3 = st.columns(3)
    e1.metric("Repeated-part loss, intact", f"{evidence.clean_repeated:.2f} nats")
    e2.metric(f"Top {k} induction heads ablated", f"{evidence.top_repeated:.2f} nats",
              f"{evidence.top_repeated - evidence.clean_repeated:+.2f}", delta_color="inverse")
    e3.metric(f"{k} random heads, same layers", f"{rnd.mean():.2f} ± {rnd.std():.2f} nats",
              f"{rnd.mean() - evidence.clean_repeated:+.2f}", delta_color="inverse")
    bars = pd.DataFrame({
        "ablated": ["none", f"top {k} induction"] + [f"random {i + 1}" for i in range(len(rnd))],
        "heads": ["—", ", ".join(evidence.top)] + [", ".join(s) for s in evidence.random_sets],
        "loss": [evidence.clean_repeated, evidence.top_repeated, *rnd],
    })
    bars["kind"] = ["intact", "induction heads"] + ["random heads"] * len(rnd)
    chart = alt.Chart(bars).mark_bar().encode(
        x=alt.X("loss:Q", title="mean loss on the repeated part (nats)"),
        y=alt.Y("ablated:N", sort=None, title="", axis=alt.Axis(labelOverlap=False, labelLimit=200)),
        color=alt.Color("kind:N", title=""), tooltip=["ablated", "heads", alt.Tooltip("loss:Q", format=".3f")],
    )
    show_chart(chart.properties(height=50 + 30 * len(bars)), bars, "induction_ablation",
               caption=f"{method.capitalize()} ablation of each head's output (hook_z) on the same sequence as above.")
    explain("If the named heads really do the copying, knocking them out brings the repeated part's loss back up "
            "towards the first copy's, while as many other heads from the same layers barely move it. "
            "Random draws are seeded, so the comparison is reproducible.")

# --- 5. evidence: K-composition -----------------------------------------------------------------
st.subheader("5 · Evidence in the weights: K-composition")
if n_layers < 2:
    st.info("K-composition links heads of different layers; this model has a single layer. Pick a model with two or more.")
    st.stop()
every = n_layers * n_heads  # rank all heads, then keep those that can take part in a composition
prev_heads = tuple([h for h in result.top_previous_token(every) if h[0] < n_layers - 1][:N_COMPOSE])
ind_heads = tuple([(h["layer"], h["head"]) for h in result.top_heads(every) if h["layer"] > 0][:N_COMPOSE])
pairs = cached_pairs(spec, prev_heads, ind_heads)
kc = cached_kcomp(spec, layer, head)
pair_df = grid_frame(pairs, [head_label(*h) for h in prev_heads], [head_label(*h) for h in ind_heads],
                     "previous_token_head", "induction_head", "k_composition")
pair_df["times_random"] = pair_df["k_composition"] / kc.baseline_mean
left, right = st.columns(2)
with left:
    chart = heatmap(pair_df, "induction_head", "previous_token_head", "k_composition", scheme="magma",
                    x_sort=[head_label(*h) for h in ind_heads], y_sort=[head_label(*h) for h in prev_heads],
                    title="Top previous-token heads → top induction heads",
                    tooltip=["previous_token_head", "induction_head", alt.Tooltip("k_composition:Q", format=".3f"),
                             alt.Tooltip("times_random:Q", format=".1f")])
    show_chart(chart, pair_df, "k_composition_pairs",
               caption="Previous-token heads from all but the last layer, induction heads from all but the first. "
                       "Empty cells: the previous-token head is not in an earlier layer.")
with right:
    if layer == 0:
        st.info(f"{chosen} is in layer 0: no earlier head can compose with it. Pick a head in a later layer.")
    else:
        df = grid_frame(kc.scores[:layer], list(range(layer)), labels["head"], "layer", "head", "k_composition")
        df["label"] = [head_label(L, h) for L, h in zip(df["layer"], df["head"])]
        df["previous_token"] = result.previous_token[:layer].ravel()
        df["times_random"] = df["k_composition"] / kc.baseline_mean
        chart = heatmap(df, "head", "layer", "k_composition", scheme="magma", title=f"Every earlier head → {chosen}",
                        tooltip=["label", alt.Tooltip("k_composition:Q", format=".3f"), alt.Tooltip("times_random:Q", format=".1f"),
                                 alt.Tooltip("previous_token:Q", format=".3f")], height=max(160, 14 * layer))
        show_chart(chart, df, "k_composition_into_head")
st.caption(f"Random matrices of the same shapes score {kc.baseline_mean:.3f} ± {kc.baseline_std:.3f}; "
           "'times_random' in the tooltips divides by that.")
explain("K-composition asks how much of what an earlier head writes (its OV matrix W_V W_O) the later head's keys read "
        "(its QK matrix W_Q W_K^T): ‖W_OV · W_QKᵀ‖_F / (‖W_OV‖_F ‖W_QK‖_F). A previous-token head that feeds an induction "
        "head should stand well above random matrices. Each block's norm is folded in (its weight, and LayerNorm's centring) "
        "exactly as on the Circuits page, which shows the same numbers.")
if info.positional == "rotary":
    caution("This model uses rotary position embeddings: W_QK here leaves the rotation out, so the scores read the "
            "content part of the weights only. Biases are ignored too.")
