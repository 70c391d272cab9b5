"""When does the model "know" the answer, and how does its guess evolve through the layers?

Logit lens: the final readout (final norm, then unembedding) applied to the residual stream at
every layer boundary. Tuned lens: the same after a per-layer affine translator trained for
this model, shown beside it when one has been trained.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from interp_core import WorkbenchError
from interp_core.techniques.logit_lens import LensResult, run_logit_lens
from interp_core.techniques.tuned_lens import (
    FILE_NAME,
    TrainConfig,
    TunedLens,
    estimate_seconds,
    lens_dir,
    load_tuned_lens,
    train_tuned_lens,
)
from ui import jobs, page, state

PRESETS = {
    "Capital of France": "The capital of France is",
    "Eiffel Tower": "The Eiffel Tower is located in the city of",
    "Repeated tokens": "Ivory cactus lantern yodel marble. Ivory cactus lantern yodel",
}
QUICK = TrainConfig(n_train_seqs=24, n_heldout_seqs=4, seq_len=32, kl_steps=10, batch_tokens=64)

page.header("Logit Lens", 'When does the model "know" the answer, and how does its guess evolve through the layers?')
model = state.require_model()
spec, prompt = state.model_spec(), state.prompt()


def _set_prompt(text: str) -> None:
    st.session_state["prompt"] = text


def saved_lens_version() -> float:
    """The saved lens file's modification time (0 when none), so caches notice a new training."""
    path = lens_dir(model.info.name) / FILE_NAME
    return path.stat().st_mtime if path.is_file() else 0.0


@st.cache_resource(show_spinner=False, max_entries=8)
def cached_tuned_lens(spec: str, version: float) -> TunedLens | None:
    return load_tuned_lens(state.get_model(spec)) if version else None


@st.cache_data(show_spinner=False, max_entries=64)
def cached_lens(spec: str, prompt: str, top_k: int, target: str | int, version: float) -> LensResult:
    """``version`` 0 is the logit lens; otherwise the tuned lens saved at that time. ``target``: text, id, or ""."""
    lens = cached_tuned_lens(spec, version) if version else None
    return run_logit_lens(state.get_model(spec), prompt, top_k=top_k, target=None if target == "" else target, lens=lens)


@st.cache_data(show_spinner=False, max_entries=8)
def cached_estimate(spec: str, quick: bool) -> float:
    return estimate_seconds(state.get_model(spec), QUICK if quick else TrainConfig())


def visible(token: str) -> str:
    """Whitespace made visible in a small cell: spaces as ·, newlines as ↵."""
    return token.replace(" ", "·").replace("\n", "↵").replace("\t", "⇥") or "∅"


def cell_frame(result: LensResult, rows: list[int]) -> pd.DataFrame:
    """One row per (layer, position): the top token, its probability, and the top-k as text."""
    records = []
    for b in rows:
        for i, tok in enumerate(result.tokens):
            guesses = " · ".join(f"{t!r} {p:.0%}" for t, p in zip(result.top_tokens[b, i], result.top_probs[b, i]))
            records.append({
                "layer": result.layers[b], "position": f"{i}: {tok!r}", "top token": str(result.top_tokens[b, i, 0]),
                "cell": visible(str(result.top_tokens[b, i, 0]))[:9], "prob": float(result.top_probs[b, i, 0]),
                "top-k": guesses, "KL to final": float(result.kl_to_final[b, i]), "entropy": float(result.entropy[b, i]),
            })
    return pd.DataFrame(records)


def grid_chart(df: pd.DataFrame, result: LensResult, rows: list[int], title: str) -> alt.Chart:
    y_order = [result.layers[b] for b in reversed(rows)]  # the last layer on top, embeddings at the bottom
    x_order = list(dict.fromkeys(df["position"]))
    base = alt.Chart(df, title=title).encode(
        x=alt.X("position:N", sort=x_order, title="input token (the cell predicts the token after it)", axis=alt.Axis(labelAngle=-40)),
        y=alt.Y("layer:N", sort=y_order, title="layer boundary"),
        tooltip=["layer", "position", "top token", alt.Tooltip("prob:Q", format=".1%"), "top-k",
                 alt.Tooltip("KL to final:Q", format=".2f"), alt.Tooltip("entropy:Q", format=".2f")],
    )
    rect = base.mark_rect().encode(color=alt.Color("prob:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), title="top-1 prob"))
    text = base.mark_text(fontSize=10).encode(
        text="cell:N", color=alt.condition("datum.prob > 0.55", alt.value("white"), alt.value("black"))
    )
    return (rect + text).properties(height=max(200, 19 * len(rows)))


# --- inputs ----------------------------------------------------------------------------------
st.markdown("**Presets** (they set the sidebar prompt):")
for column, (name, text) in zip(st.columns(len(PRESETS)), PRESETS.items()):
    column.button(name, key=f"lens_preset_{name}", on_click=_set_prompt, args=(text,), help=text, width="stretch")

labels = ["embed", *(f"L{k}" for k in range(model.info.n_layers))]
left, middle, right = st.columns([3, 1, 2])
low, high = left.select_slider("Layer range", options=labels, value=(labels[0], labels[-1]), key="lens_layers", bind="query-params")
top_k = middle.slider("Top-k", 1, 10, 5, key="lens_k", bind="query-params")
target = right.text_input(
    "Target token", value="", key="lens_target", bind="query-params", placeholder="empty: the model's final top-1 prediction",
    help="One token of the model's vocabulary with its leading space, e.g. ' Paris'.",
)
rows = list(range(labels.index(low), labels.index(high) + 1))

try:
    logit = cached_lens(spec, prompt, top_k, "", 0.0)
except WorkbenchError as error:
    state.show_error(error)
    st.stop()
version = saved_lens_version()
tuned = None
if version:
    try:
        tuned = cached_lens(spec, prompt, top_k, "", version)
    except WorkbenchError as error:
        state.show_error(error)

page.explain(
    """
Each **row** is a layer boundary (`embed` = the embeddings, `L5` = the residual stream after block 5, the top row is the
model's output); each **column** is a position in the prompt. A cell shows the token that the final readout
(final norm, then unembedding) picks when applied to the residual stream at that point, i.e. the guess for the
**next** token after that column's token. Darker blue = more probable. Hover for the top-k tokens, the KL divergence
to the model's final distribution and the entropy. The top row always equals the model's own prediction.

The **tuned lens** places a trained affine translator per layer before the same readout; it usually reads sensible
guesses several layers earlier than the plain logit lens, whose early rows are often unrelated tokens.
"""
)

# --- the grid(s) -------------------------------------------------------------------------------
logit_df = cell_frame(logit, rows)
if tuned is None:
    st.subheader("Logit lens")
    page.show_chart(grid_chart(logit_df, logit, rows, "Logit lens: top next token per layer and position"), logit_df, "logit_lens_grid",
                    caption="Cells: top-1 token of unembed(final_norm(residual)) at each layer boundary.")
else:
    tuned_df = cell_frame(tuned, rows)
    a, b = st.columns(2)
    with a:
        st.subheader("Logit lens (no training)")
        page.show_chart(grid_chart(logit_df, logit, rows, "Logit lens"), logit_df, "logit_lens_grid",
                        caption="unembed(final_norm(residual)) at each boundary.")
    with b:
        st.subheader("Tuned lens (trained translators)")
        page.show_chart(grid_chart(tuned_df, tuned, rows, "Tuned lens"), tuned_df, "tuned_lens_grid",
                        caption="unembed(final_norm(T_L(residual))), T_L trained for this model.")

# --- the tuned lens: train it, or show how well it fits ----------------------------------------
saved = cached_tuned_lens(spec, version) if version else None
if saved is None:
    st.subheader("Tuned lens")
    st.info("No tuned lens is saved for this model yet. Training samples text from the model itself, fits one affine "
            "translator per layer, saves it to disk, and shows it here beside the logit lens from then on.")
    quick = st.toggle("Quick training (fewer samples; for small models and demos)", value=model.info.n_params < 20e6,
                      key="lens_quick", bind="query-params")
    config = QUICK if quick else TrainConfig()
    seconds = cached_estimate(spec, quick)
    if st.button(f"Train tuned lens (about {max(1, round(seconds / 60))} min on this machine)", key="lens_train", type="primary"):
        try:
            jobs.cached_job("Training the tuned lens", ("tuned_lens", spec, quick),
                            lambda on_progress: train_tuned_lens(state.get_model(spec), config, on_progress=on_progress))
        except WorkbenchError as error:
            state.show_error(error)
        else:
            st.rerun()
else:
    kl = pd.DataFrame({
        "layer": list(logit.layers) * 2,
        "lens": ["logit lens"] * len(logit.layers) + ["tuned lens"] * len(logit.layers),
        "KL (nats)": np.concatenate([saved.heldout_kl_logit, saved.heldout_kl_tuned]),
    })
    chart = alt.Chart(kl).mark_line(point=True).encode(
        x=alt.X("layer:N", sort=list(logit.layers), title="layer boundary"),
        y=alt.Y("KL (nats):Q", title="KL(final || lens), nats"),
        color=alt.Color("lens:N", title=None),
        tooltip=["lens", "layer", alt.Tooltip("KL (nats):Q", format=".3f")],
    ).properties(height=240)
    with st.expander("How well does each lens match the final output? (held-out text)", expanded=False):
        page.show_chart(chart, kl, "lens_heldout_kl",
                        caption=f"Mean KL on {saved.config.get('n_heldout_seqs', '?')} held-out sampled sequences, never trained on. "
                                f"The tuned lens saw {saved.train_tokens:,} tokens and trained in {saved.train_seconds:.0f} s.")

# --- the target token across layers ------------------------------------------------------------
st.subheader("One token across layers")
positions = [f"{i}: {t!r}" for i, t in enumerate(logit.tokens)]
pos_label = st.selectbox("Position (the prediction after this token)", positions, index=len(positions) - 1, key="lens_pos")
position = positions.index(pos_label)
target_value: str | int = target if target else logit.model_top_id
lenses = [("logit lens", 0.0)] + ([("tuned lens", version)] if tuned is not None else [])
try:
    tracked = [(name, cached_lens(spec, prompt, top_k, target_value, v)) for name, v in lenses]
except WorkbenchError as error:
    state.show_error(error)
    tracked = []
if tracked:
    first = tracked[0][1]
    st.markdown(f"Tracking **{first.target!r}**" + ("" if target else " (the model's final top-1 prediction; type another token above)")
                + f" at position {position}, `{logit.tokens[position]!r}`.")
    frames = []
    for name, res in tracked:
        frames.append(pd.DataFrame({
            "layer": list(res.layers), "lens": name, "probability": res.target_prob[:, position],
            "log-probability": res.target_logprob[:, position], "rank": res.target_rank[:, position].astype(int),
        }))
    line_df = pd.concat(frames, ignore_index=True)

    def line(field: str, scale: alt.Scale | None = None) -> alt.Chart:
        return alt.Chart(line_df).mark_line(point=True).encode(
            x=alt.X("layer:N", sort=list(logit.layers), title="layer boundary"),
            y=alt.Y(f"{field}:Q", scale=scale or alt.Scale(), title=field),
            color=alt.Color("lens:N", title=None, legend=alt.Legend(orient="bottom")),
            tooltip=["lens", "layer", alt.Tooltip("probability:Q", format=".2%"), alt.Tooltip("log-probability:Q", format=".2f"), "rank"],
        ).properties(height=220)

    specs = [("probability", alt.Scale(domain=[0, 1]), "Probability of the token."),
             ("log-probability", None, "Log-probability: shows movement while the probability is still tiny."),
             ("rank", alt.Scale(type="log", reverse=True), "Rank 1 = the lens's top token (log scale, best at the top).")]
    for column, (field, scale, caption) in zip(st.columns(3), specs):
        with column:
            page.show_chart(line(field, scale), line_df, f"lens_target_{field.replace('-', '_')}", caption=caption)

# --- the table for one position ------------------------------------------------------------------
st.subheader(f"Top-{top_k} tokens at every layer, position {position}")
table = {"layer": [logit.layers[b] for b in rows]}
for name, res in [("logit lens", logit)] + ([("tuned lens", tuned)] if tuned is not None else []):
    table[name] = [" · ".join(f"{t!r} {p:.0%}" for t, p in zip(res.top_tokens[b, position], res.top_probs[b, position])) for b in rows]
st.dataframe(pd.DataFrame(table).iloc[::-1], hide_index=True, width="stretch")
page.caution(
    "The logit lens reads every layer in the final layer's basis, so a blank early row does not prove the information is "
    "absent. The tuned lens's translators were trained, and can add knowledge of their own: read it beside the logit "
    "lens, never instead of it."
)
