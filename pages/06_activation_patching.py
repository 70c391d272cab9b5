"""Which layers, positions and heads cause the model's answer?

Activation patching (denoising): run the corrupted prompt, restore one activation from the clean
run, and see how much of the clean answer comes back. Attribution patching is the instant,
approximate preview of the same grids.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from interp_core import WorkbenchError
from interp_core.core.head_id import HeadId, head_label
from interp_core.techniques import patching
from interp_core.techniques.ablation import METHODS as ABLATION_METHODS
from interp_core.techniques.attribution import agreement, attribution_patching
from interp_core.techniques.patching import TARGETS, PatchingResult, ablation_effect, exact_patching, prepare_pair, sweep_cost
from ui import jobs, state
from ui.charts import grid_frame, heatmap
from ui.page import caution, explain, header, presets, show_chart, url_names_options, warn_unknown_words

PRESETS: dict[str, dict[str, str]] = {
    "Indirect object (IOI)": {
        "patch_clean": "When Mary and John went to the store, John gave a drink to",
        "patch_corrupt": "When Mary and John went to the store, Mary gave a drink to",
        "patch_answer": " Mary", "patch_wrong": " John",
    },
    "Factual recall": {
        "patch_clean": "The Eiffel Tower is located in the city of",
        "patch_corrupt": "The Colosseum is located in the city of",
        "patch_answer": " Paris", "patch_wrong": " Rome",
    },
    "Repeated sequence": {
        "patch_clean": "A B C D E F G A B C D E F",
        "patch_corrupt": "A B C D E F G H I J K L M",
        "patch_answer": " G", "patch_wrong": " N",
    },
}
TARGET_NAMES = {
    "resid_pre": "Residual stream (layer × position)",
    "attn_out": "Attention output (layer × position)",
    "mlp_out": "MLP output (layer × position)",
    "head_out": "Heads, all positions (layer × head)",
    "head_out_by_pos": "Heads by position",
}
TOP_HEADS = 30  # rows shown in the by-position head chart (all rows are in the download)

header("Activation Patching", __doc__.splitlines()[0])
explain(
    """
**Denoising.** The corrupted prompt differs from the clean one in a single detail. The model runs on
the corrupted prompt, but one activation (one layer at one position, or one head) is overwritten with
its value from the clean run. The metric is the **logit difference** `logit(answer) − logit(wrong)` at
the last position. Each cell shows the **normalised recovery**
`(patched − corrupted) / (clean − corrupted)`: **1** (dark blue) = that single activation restores the clean
answer fully, **0** (white) = no effect, negative (red) = it pushes further towards the wrong answer.

**Reading the residual grid.** Before the first layers, only the positions where the prompts differ can
matter; follow the blue cells downwards to see at which layer the information moves to the last
position. **Attribution patching** (left) estimates every cell from one forward and one backward pass
(a linear approximation); **exact patching** (right) really runs the model for every cell. Where they
disagree, trust the exact grid.
"""
)


model = state.require_model()
spec = state.model_spec()
presets(PRESETS, key="patch", default="Indirect object (IOI)", help_of="patch_clean")
left, right = st.columns(2)
clean = left.text_input("Clean prompt", key="patch_clean", bind="query-params")
corrupt = right.text_input("Corrupted prompt (same number of tokens)", key="patch_corrupt", bind="query-params")
left, right = st.columns(2)
answer = left.text_input("Answer token (clean)", key="patch_answer", bind="query-params", help="with its leading space, e.g. ' Mary'")
wrong = right.text_input("Wrong-answer token (corrupted)", key="patch_wrong", bind="query-params")
inputs = (spec, clean, corrupt, answer, wrong)
warn_unknown_words(model, f"{clean} {corrupt}", "the clean and corrupted prompts")

try:
    pair = prepare_pair(model, clean, corrupt, answer, wrong)
except WorkbenchError as error:
    state.show_error(error)
    st.stop()


def attribution_job() -> dict[str, PatchingResult]:
    return jobs.cached_job(
        "Attribution patching (1 forward + 1 backward)", ("patch_attr", *inputs),
        lambda on_progress: attribution_patching(state.get_model(spec), prepare_pair(state.get_model(spec), *inputs[1:]), on_progress=on_progress),
    )


def exact_key(target: str) -> tuple:
    return ("patch_exact", target, *inputs)


def exact_job(target: str) -> PatchingResult:
    return jobs.cached_job(
        f"Exact patching: {TARGET_NAMES[target]}", exact_key(target),
        lambda on_progress: exact_patching(state.get_model(spec), prepare_pair(state.get_model(spec), *inputs[1:]), target, on_progress=on_progress),
    )


try:
    attribution = attribution_job()
except WorkbenchError as error:
    state.show_error(error)
    st.stop()

# --- the two unpatched runs first -----------------------------------------------------------
first = attribution["resid_pre"]
gap = first.clean_metric - first.corrupt_metric
a, b, c = st.columns(3)
a.metric("Clean logit diff", f"{first.clean_metric:.3f}", help=f"logit({answer!r}) − logit({wrong!r}) on the clean prompt")
b.metric("Corrupted logit diff", f"{first.corrupt_metric:.3f}")
c.metric("Clean − corrupted", f"{gap:.3f}")
if abs(gap) < 1.0:
    caution(f"The clean and corrupted runs differ by only {gap:.3f} in logit difference, so the normalised grids divide by a "
            "small number and are noisy. Pick a corruption that flips the answer.")
differs = [a != b for a, b in zip(pair.tokens, pair.corrupt_token_strs)]
tokens_df = pd.DataFrame([[repr(t) for t in pair.tokens], [repr(t) for t in pair.corrupt_token_strs]], index=["clean", "corrupted"],
                         columns=[f"{i} ≠" if d else str(i) for i, d in enumerate(differs)])
with st.expander(f"Tokens ({pair.n_pos} each; {sum(differs)} differ, marked ≠)"):
    st.dataframe(tokens_df, width="stretch")


# --- grids ------------------------------------------------------------------------------------
def grid_df(result: PatchingResult) -> pd.DataFrame:
    """Long-form frame of a grid: one row per cell with its labels, recovery and patched metric."""
    if result.grid.ndim == 3:
        rows = [head_label(layer, head) for layer in result.labels[0] for head in result.labels[1]]
        values, patched, names = result.grid.reshape(len(rows), -1), result.patched.reshape(len(rows), -1), ("head", "pos")
        cols = list(result.labels[2])
    else:
        rows, cols, names = list(result.labels[0]), list(result.labels[1]), result.axes
        values, patched = result.grid, result.patched
    df = grid_frame(values, rows, cols, names[0], names[1], "recovery")
    df["patched_metric"] = patched.ravel()
    return df


def grid_chart(df: pd.DataFrame, result: PatchingResult, title: str) -> alt.Chart:
    row, col = df.columns[0], df.columns[1]
    rows = list(dict.fromkeys(df[row]))
    if result.target == "head_out_by_pos":  # keep the heads that matter most
        strength = df.groupby(row)["recovery"].apply(lambda s: np.nanmax(np.abs(s)) if s.notna().any() else 0.0)
        rows = [r for r in rows if r in set(strength.nlargest(TOP_HEADS).index)]
        df = df[df[row].isin(rows)]
    top = max(1.0, float(np.nanmax(np.abs(df["recovery"]))) if df["recovery"].notna().any() else 1.0)
    tooltip = [row, col, alt.Tooltip("recovery:Q", format=".3f"), alt.Tooltip("patched_metric:Q", format=".3f")]
    return heatmap(df, col, row, "recovery", scheme="redblue", domain=(-top, top), x_sort=list(dict.fromkeys(df[col])),
                   y_sort=rows, tooltip=tooltip, title=title, height=max(200, 14 * len(rows)))


url_names_options("patch_target", list(TARGETS))  # a link may name the target by its value (?patch_target=head_out)
target = st.segmented_control("Patch", list(TARGETS), format_func=TARGET_NAMES.get, key="patch_target", bind="query-params",
                              default="resid_pre") or "resid_pre"
cost = sweep_cost(model, pair, target)
run_exact = st.toggle(f"Run exact patching ({cost.cells:,} cells, {cost.describe()})", value=True, key="patch_exact",
                      bind="query-params", help="Batched through the model from the patched layer on; results are kept per "
                      "input. The time is estimated from the model's shape and the prompt length for the project's 2-core "
                      "CPU; a GPU is many times faster.")
approx, exact = st.columns(2)
with approx:
    st.markdown("**Attribution patching** · approximation")
    result = attribution[target]
    show_chart(grid_chart(grid_df(result), result, "estimated recovery"), grid_df(result), f"patch_attr_{target}",
               caption="(a_clean − a_corrupt) · ∂metric/∂a on the corrupted run, ÷ (clean − corrupted).")
exact_result = None
with exact:
    st.markdown("**Exact patching**")
    if run_exact:
        exact_result = jobs.lookup(exact_key(target))  # type: ignore[assignment]
        # A long prompt makes the sweep slow (cells x tokens per cell): ask before starting one over a minute.
        confirmed = exact_result is not None or cost.seconds <= patching.CONFIRM_SECONDS or st.button(
            f"Run anyway ({cost.describe()})", key="patch_run_anyway", type="primary")
        if not confirmed:
            skipped = cost.cells - cost.run_cells
            st.info(f"This exact sweep runs {cost.run_cells:,} cells over {pair.n_pos} tokens"
                    + (f" (the grid's other {skipped:,} cells sit before the first differing token and are known without running)"
                       if skipped else "")
                    + f", {cost.describe()} on a 2-core "
                    "CPU (it grows with the square of the prompt length). Shorten the prompts, or pick heads (all positions), "
                    "or press **Run anyway**. The attribution preview on the left is already done.")
        elif exact_result is None:
            try:
                exact_result = exact_job(target)
            except WorkbenchError as error:
                state.show_error(error)
    else:
        st.info("Switch on exact patching to compute the real grid.")
    if exact_result is not None:
        show_chart(grid_chart(grid_df(exact_result), exact_result, "recovery"), grid_df(exact_result), f"patch_exact_{target}",
                   caption="One patched run per cell, read at the last position.")
if target == "head_out_by_pos":
    st.caption(f"The charts show the {TOP_HEADS} heads with the largest effect; the downloads hold every head.")

if exact_result is not None:
    st.subheader("Does the approximation agree?")
    corr = agreement(exact_result, result)
    st.metric("Correlation, attribution vs exact", "n/a" if np.isnan(corr) else f"{corr:.3f}")
    both = grid_df(exact_result).rename(columns={"recovery": "exact", "patched_metric": "exact_metric"})
    both["attribution"] = grid_df(result)["recovery"].to_numpy()
    cell = both.columns[0]
    points = alt.Chart(both).mark_circle(size=40, opacity=0.7).encode(
        x=alt.X("attribution:Q", title="attribution estimate"), y=alt.Y("exact:Q", title="exact recovery"),
        tooltip=[cell, both.columns[1], alt.Tooltip("exact:Q", format=".3f"), alt.Tooltip("attribution:Q", format=".3f")],
    )
    lo = float(np.nanmin(both[["exact", "attribution"]].to_numpy())) if len(both) else 0.0
    hi = float(np.nanmax(both[["exact", "attribution"]].to_numpy())) if len(both) else 1.0
    diagonal = alt.Chart(pd.DataFrame({"x": [lo, hi], "y": [lo, hi]})).mark_line(color="gray", strokeDash=[4, 4]).encode(x="x:Q", y="y:Q")
    show_chart(points + diagonal, both, f"patch_agreement_{target}",
               caption="Each dot is one cell; on the dashed line the approximation is exact.")

# --- ablation -------------------------------------------------------------------------------
st.subheader("Ablation: knock components out of the clean run")
components = [str(h) for h in HeadId.grid(model.info.n_layers, model.info.n_heads)]
components += [f"MLP{layer}" for layer in range(model.info.n_layers)]
left, right = st.columns([3, 1])
picked = left.multiselect("Heads and MLPs", components, key="patch_ablate", bind="query-params", placeholder="e.g. L9H6, MLP0")
method = right.radio("Method", ABLATION_METHODS, horizontal=True, key="patch_abl_method", bind="query-params",
                     help="zero; mean over both prompts and all positions; resample = the corrupted prompt's activation")


def _target(label: str) -> tuple:
    if label.startswith("MLP"):
        return ("mlp", int(label[3:]))
    head = HeadId.parse(label)
    return ("head", head.layer, head.head)


if picked:
    try:
        effect = ablation_effect(model, pair, [_target(p) for p in picked], method)
    except WorkbenchError as error:
        state.show_error(error)
    else:
        a, b, c = st.columns(3)
        a.metric("Clean logit diff", f"{effect.clean_metric:.3f}")
        b.metric("Ablated logit diff", f"{effect.ablated_metric:.3f}", delta=f"{effect.ablated_metric - effect.clean_metric:.3f}")
        c.metric("Position between corrupted (0) and clean (1)", f"{effect.recovery:.2f}")
        bars = pd.DataFrame({"run": ["clean", "ablated", "corrupted"],
                             "logit_diff": [effect.clean_metric, effect.ablated_metric, effect.corrupt_metric]})
        chart = alt.Chart(bars).mark_bar().encode(
            x=alt.X("logit_diff:Q", title=f"logit({answer!r}) − logit({wrong!r})"), y=alt.Y("run:N", sort=None),
            tooltip=["run", alt.Tooltip("logit_diff:Q", format=".3f")],
        )
        show_chart(chart, bars, "patch_ablation", caption=f"{method} ablation of {', '.join(picked)} on the clean prompt.")
else:
    st.caption("Pick heads or MLPs (for example the strongest cells of the head grid) to see how the clean answer changes without them.")
caution("Patching shows which activations are *sufficient* to restore the answer one at a time, for this pair of prompts. "
        "A component can matter and still show little here when others are redundant with it.")
