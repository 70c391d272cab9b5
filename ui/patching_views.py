"""Texts, presets and charts of the Activation Patching page, drawn from its results' ``tables()``.

Nothing here runs the model: the page gets every result through :func:`ui.runner.run` and hands it here.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from interp_core.techniques.attribution import agreement
from interp_core.techniques.patch_pair import PatchingResult
from interp_core.techniques.patching import AblationEffect, SweepCost
from interp_core.techniques.patching_requests import AttributionGrids
from ui import runner
from ui.charts import heatmap
from ui.page import caution, show_chart

PRESETS: dict[str, dict[str, object]] = {
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
SCALES = ("own", "shared")  # the colour scale: each grid up to its largest |recovery|, or both on -1 ... 1
TOP_HEADS = 30  # rows shown in the by-position head chart (all rows are in the download)
INTRO = """
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
SLOW_NOTE = ("{cost} on a 2-core CPU (it grows with the square of the prompt length). Shorten the prompts, or pick heads "
             "(all positions), or press **Run anyway**. The attribution preview on the left is already done.")


def chart_names(targets: tuple[str, ...]) -> set[str]:
    """Every chart name the grid section may draw (a fragment forgets them before drawing again)."""
    return {f"patch_{kind}_{target}" for kind in ("attr", "exact", "agreement") for target in targets}


def show_runs(result: PatchingResult) -> None:
    """The two unpatched runs' metrics, a caution when they barely differ, and both prompts' tokens."""
    gap = result.clean_metric - result.corrupt_metric
    a, b, c = st.columns(3)
    a.metric("Clean logit diff", f"{result.clean_metric:.3f}",
             help=f"logit({result.answer!r}) − logit({result.wrong!r}) on the clean prompt")
    b.metric("Corrupted logit diff", f"{result.corrupt_metric:.3f}")
    c.metric("Clean − corrupted", f"{gap:.3f}")
    if abs(gap) < 1.0:
        caution(f"The clean and corrupted runs differ by only {gap:.3f} in logit difference, so the normalised grids divide by a "
                "small number and are noisy. Pick a corruption that flips the answer.")
    differs = [a != b for a, b in zip(result.tokens, result.corrupt_tokens)]
    tokens = pd.DataFrame([[repr(t) for t in result.tokens], [repr(t) for t in result.corrupt_tokens]], index=["clean", "corrupted"],
                          columns=[f"{i} ≠" if d else str(i) for i, d in enumerate(differs)])
    with st.expander(f"Tokens ({len(differs)} each; {sum(differs)} differ, marked ≠)"):
        st.dataframe(tokens, width="stretch")


def grid_chart(df: pd.DataFrame, result: PatchingResult, title: str, shared_scale: bool) -> alt.Chart:
    """Recovery heatmap, red-white-blue around 0; for heads by position only the :data:`TOP_HEADS` strongest rows."""
    row, col = df.columns[0], df.columns[1]
    rows = list(dict.fromkeys(df[row]))
    if result.target == "head_out_by_pos":  # keep the heads that matter most
        strength = df.groupby(row)["recovery"].apply(lambda s: np.nanmax(np.abs(s)) if s.notna().any() else 0.0)
        rows = [r for r in rows if r in set(strength.nlargest(TOP_HEADS).index)]
        df = df[df[row].isin(rows)]
    top = 1.0 if shared_scale or not df["recovery"].notna().any() else max(1.0, float(np.nanmax(np.abs(df["recovery"]))))
    tooltip = [alt.Tooltip(row), alt.Tooltip(col), alt.Tooltip("recovery:Q", format=".3f"), alt.Tooltip("patched_metric:Q", format=".3f")]
    chart = heatmap(df, col, row, "recovery", scheme="redblue", domain=(-top, top), x_sort=list(dict.fromkeys(df[col])),
                    y_sort=rows, tooltip=tooltip, title=title, height=max(200, 14 * len(rows)))
    # clamp: on the shared scale a cell beyond ±1 (an overshoot) takes the end colour instead of an extrapolated one
    return chart.encode(color=alt.Color("recovery:Q", scale=alt.Scale(scheme="redblue", domain=[-top, top], clamp=True)))


def show_grid(result: PatchingResult, title: str, caption: str, shared_scale: bool) -> None:
    (name, table), = result.tables().items()
    show_chart(grid_chart(table, result, title, shared_scale), table, name, caption=caption)


def slow_sweep_note(cost: SweepCost, n_pos: int) -> str:
    skipped = cost.cells - cost.run_cells
    return (f"This exact sweep runs {cost.run_cells:,} cells over {n_pos} tokens"
            + (f" (the grid's other {skipped:,} cells sit before the first differing token and are known without running)"
               if skipped else "")
            + ", " + SLOW_NOTE.format(cost=cost.describe()))


def show_agreement(exact: PatchingResult, attribution: AttributionGrids) -> None:
    """The correlation of the exact grid with its estimate in ``attribution``, and a scatter of every cell."""
    st.subheader("Does the approximation agree?")
    corr = agreement(exact, attribution.of(exact.target))
    st.metric("Correlation, attribution vs exact", "n/a" if np.isnan(corr) else f"{corr:.3f}")
    both = runner.view(f"patch_agreement_{exact.target}", attribution, "agreement_table", exact=exact)
    points = alt.Chart(both).mark_circle(size=40, opacity=0.7).encode(
        x=alt.X("attribution:Q", title="attribution estimate"), y=alt.Y("exact:Q", title="exact recovery"),
        tooltip=[alt.Tooltip(both.columns[0]), alt.Tooltip(both.columns[1]), alt.Tooltip("exact:Q", format=".3f"), alt.Tooltip("attribution:Q", format=".3f")],
    )
    values = both[["exact", "attribution"]].to_numpy()
    lo, hi = (float(np.nanmin(values)), float(np.nanmax(values))) if np.isfinite(values).any() else (0.0, 1.0)
    diagonal = alt.Chart(pd.DataFrame({"x": [lo, hi], "y": [lo, hi]})).mark_line(color="gray", strokeDash=[4, 4]).encode(x=alt.X("x:Q"), y=alt.Y("y:Q"))
    show_chart(points + diagonal, both, f"patch_agreement_{exact.target}",
               caption="Each dot is one cell; on the dashed line the approximation is exact.")


def show_ablation(effect: AblationEffect, picked: list[str], answer: str, wrong: str) -> None:
    """The ablated run's logit difference between the clean and corrupted runs: three metrics and a bar chart."""
    a, b, c = st.columns(3)
    a.metric("Clean logit diff", f"{effect.clean_metric:.3f}")
    b.metric("Ablated logit diff", f"{effect.ablated_metric:.3f}", delta=f"{effect.ablated_metric - effect.clean_metric:.3f}")
    c.metric("Position between corrupted (0) and clean (1)", f"{effect.recovery:.2f}")
    bars = effect.tables()["patch_ablation"]
    chart = alt.Chart(bars).mark_bar().encode(
        x=alt.X("logit_diff:Q", title=f"logit({answer!r}) − logit({wrong!r})"), y=alt.Y("run:N", sort=None),
        tooltip=[alt.Tooltip("run"), alt.Tooltip("logit_diff:Q", format=".3f")],
    )
    show_chart(chart, bars, "patch_ablation", caption=f"{effect.method} ablation of {', '.join(picked)} on the clean prompt.")
