"""When does the model "know" the answer, and how does its guess evolve through the layers?

Logit lens: the final readout (final norm, then unembedding) applied to the residual stream at
every layer boundary. Tuned lens: the same after a per-layer affine translator trained for
this model, shown beside it when one has been trained.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from interp_core.core.errors import WorkbenchError
from interp_core.techniques.logit_lens import LogitLensRequest
from interp_core.techniques.tuned_lens import (
    QUICK_TRAINING,
    SavedTunedLensRequest,
    TrainConfig,
    TrainTunedLensRequest,
    estimate_seconds,
    saved_lens_version,
)
from ui import page, runner, state
from ui.lens_views import grid_chart, heldout_kl_chart, target_chart

PRESETS = {
    "Capital of France": {"prompt": "The capital of France is"},
    "Eiffel Tower": {"prompt": "The Eiffel Tower is located in the city of"},
    "Repeated tokens": {"prompt": "Ivory cactus lantern yodel marble. Ivory cactus lantern yodel"},
}

page.header("Logit Lens", 'When does the model "know" the answer, and how does its guess evolve through the layers?')
model = state.require_model()
spec, prompt = state.model_spec(), state.prompt()


@st.cache_data(show_spinner=False, max_entries=8)
def cached_estimate(spec: str, quick: bool) -> float:
    return estimate_seconds(state.get_model(spec), QUICK_TRAINING if quick else TrainConfig())


def grid(result, rows: list[int]) -> pd.DataFrame:
    """The result's grid table, only the chosen layer rows (recorded for the snippet)."""
    return runner.view(f"{result.lens}_lens_grid", result, "grid_table", first=rows[0], last=rows[-1])


# --- inputs ----------------------------------------------------------------------------------
page.presets(PRESETS, key="lens", label="Presets (they set the sidebar prompt):")

labels = ["embed", *(f"L{k}" for k in range(model.info.n_layers))]
left, middle, right = st.columns([3, 1, 2])
low, high = left.select_slider("Layer range", options=labels, value=(labels[0], labels[-1]), key="lens_layers", bind="query-params")
top_k = middle.slider("Top-k", 1, 10, 5, key="lens_k", bind="query-params")
target = right.text_input(
    "Target token", value="", key="lens_target", bind="query-params", placeholder="empty: the model's final top-1 prediction",
    help="One token of the model's vocabulary with its leading space, e.g. ' Paris'.",
)
rows = list(range(labels.index(low), labels.index(high) + 1))

# Each lens is one request that also tracks the target (typed, else the model's own top-1): a full-vocabulary
# readout of every layer and position is the page's whole cost, so the grid and the tracked token share it.
target_error = None
if target:
    try:
        model.single_token_id(target)
    except WorkbenchError as error:  # shown where the tracked token would be; the grids still draw
        target_error = str(error)
tracked_target = target if target and target_error is None else None
logit = runner.run_or_stop(model, LogitLensRequest(prompt, tracked_target, top_k=top_k, track_top=True))
version = saved_lens_version(model)
saved = runner.run(model, SavedTunedLensRequest(version)) if version else None  # a lens of other weights: one red box
tuned = (runner.run(model, LogitLensRequest(prompt, tracked_target, "tuned", top_k, version, track_top=True))
         if saved else None)

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
logit_df = grid(logit, rows)
if tuned is None:
    st.subheader("Logit lens")
    page.show_chart(grid_chart(logit_df, logit.layers, rows, "Logit lens: top next token per layer and position"), logit_df, "logit_lens_grid",
                    caption="Cells: top-1 token of unembed(final_norm(residual)) at each layer boundary.")
else:
    tuned_df = grid(tuned, rows)
    a, b = st.columns(2)
    with a:
        st.subheader("Logit lens (no training)")
        page.show_chart(grid_chart(logit_df, logit.layers, rows, "Logit lens"), logit_df, "logit_lens_grid",
                        caption="unembed(final_norm(residual)) at each boundary.")
    with b:
        st.subheader("Tuned lens (trained translators)")
        page.show_chart(grid_chart(tuned_df, tuned.layers, rows, "Tuned lens"), tuned_df, "tuned_lens_grid",
                        caption="unembed(final_norm(T_L(residual))), T_L trained for this model.")

# --- the tuned lens: train it, or show how well it fits ----------------------------------------
if saved is None:
    st.subheader("Tuned lens")
    st.info("No tuned lens is saved for this model yet. Training samples text from the model itself, fits one affine "
            "translator per layer, saves it to disk, and shows it here beside the logit lens from then on.")
    quick = st.toggle("Quick training (fewer samples; for small models and demos)", value=model.info.n_params < 20e6,
                      key="lens_quick", bind="query-params")
    seconds = cached_estimate(spec, quick)
    if st.button(f"Train tuned lens (about {max(1, round(seconds / 60))} min on this machine)", key="lens_train", type="primary"):
        if runner.run(model, TrainTunedLensRequest(quick)) is not None:
            st.rerun()
else:
    kl = saved.tables()["lens_heldout_kl"]
    with st.expander("How well does each lens match the final output? (held-out text)", expanded=False):
        page.show_chart(heldout_kl_chart(kl, logit.layers), kl, "lens_heldout_kl",
                        caption=f"Mean KL on {saved.config.get('test_tokens', saved.config.get('n_heldout_seqs', '?'))} held-out sampled "
                                f"{'tokens' if 'test_tokens' in saved.config else 'sequences'}, never trained on. The tuned lens saw "
                                f"{saved.train_tokens:,} tokens and trained in {saved.train_seconds:.0f} s"
                                + (f"; shipped with the project ({saved.config['storage']}; "
                                   f"how it was trained: interp_core/data/tuned_lens/{model.info.name}/README.md)."
                                   if "storage" in saved.config else "."))

# --- the target token across layers ------------------------------------------------------------
st.subheader("One token across layers")
positions = [f"{i}: {t!r}" for i, t in enumerate(logit.tokens)]
pos_label = st.selectbox("Position (the prediction after this token)", positions, index=len(positions) - 1, key="lens_pos")
position = positions.index(pos_label)
tracked = [("logit lens", logit)] + ([("tuned lens", tuned)] if tuned is not None else [])
if target_error is not None:
    st.error(target_error)
else:
    first = tracked[0][1]
    st.markdown(f"Tracking **{first.target!r}**" + ("" if target else " (the model's final top-1 prediction; type another token above)")
                + f" at position {position}, `{logit.tokens[position]!r}`.")
    specs = [("probability", "Probability of the token."),
             ("log-probability", "Log-probability: shows movement while the probability is still tiny."),
             ("rank", "Rank 1 = the lens's top token (log scale, best at the top).")]
    line_df = runner.view(tuple(f"lens_target_{field.replace('-', '_')}" for field, _ in specs), first, "target_table",
                          position=position, beside=tracked[1][1] if len(tracked) > 1 else None)
    for column, (field, caption) in zip(st.columns(3), specs):
        with column:
            page.show_chart(target_chart(line_df, field, logit.layers), line_df, f"lens_target_{field.replace('-', '_')}", caption=caption)

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
