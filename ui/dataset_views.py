"""The "Dataset" mode of the Activation Patching and DLA pages: evidence over many prompt pairs.

Inputs (a generator or a CSV upload), the mean, the spread, and the pairs ranked by how much they
disagree with the mean, each one click from the page's single-pair view. Nothing here runs the
model: results come through :func:`ui.runner.run`.
"""

from __future__ import annotations

from collections.abc import Callable

import altair as alt
import numpy as np
import streamlit as st

from interp_core.techniques.dataset_dla import DatasetDlaResult
from interp_core.techniques.dataset_patching import DatasetPatchingResult
from interp_core.techniques.datasets import IOI_TEMPLATES, MAX_PAIRS, PromptPair
from ui.charts import download_buttons, heatmap
from ui.page import caution, show_chart, url_names_options

MODES = ("One pair", "Dataset")
SOURCE_NAMES = {"ioi": "IOI (names)", "factual": "Capitals", "csv": "Upload CSV"}
SHOWN_PAIRS = 8  # the most disagreeing pairs listed with an "open" button
GENERATORS = """
**Generators.** *IOI*: "When A and B went to the PLACE, B gave a OBJECT to" → A, corrupted by making the
second subject A (answer B). *Capitals*: "The capital of X is" → X's capital, corrupted with another country.
Words come from pools filtered to single tokens of the loaded model, so all prompts share one length.
*CSV*: columns `clean, corrupt, answer, wrong`, one pair per row, every prompt the same token length.
"""

INTRO = """
**Why a dataset.** One pair is an anecdote. Here every pair of the dataset runs (all together, in one batch),
and the page shows the **mean**: the metric averaged over pairs first, then normalised,
`(mean patched − mean corrupted) / (mean clean − mean corrupted)`; the **spread**: the standard deviation over
pairs of each pair's own normalised value; and the pairs that **disagree** most with the mean (root-mean-square
distance of their own grid from the mean grid). Open one to see it in the single-pair view.
""" + GENERATORS

DLA_INTRO = """
**Why a dataset.** One pair is an anecdote. Here the clean prompt of every pair runs (all together, in one batch),
and the page shows each component's direct contribution to `logit(answer) − logit(wrong)` **averaged over the
pairs** (no normalisation: a pair's contributions plus the unembedding bias term sum to its own logit difference,
so the means add up to the mean logit difference); the **spread**: the standard deviation over pairs of each contribution; and the pairs that
**disagree** most with the mean (root-mean-square distance of their per-head contributions from the mean's). Open
one to see it in the single-pair view. The corrupted prompts are not used here.
""" + GENERATORS


def mode(key: str) -> str:
    """The "One pair / Dataset" switch."""
    return st.segmented_control("Evidence from", MODES, key=key, default=MODES[0], bind="query-params") or MODES[0]


def dataset_inputs(prefix: str) -> dict | None:
    """The dataset fields of a request (``dataset, n, seed, template, csv``), or None while a CSV is awaited."""
    left, middle, right, last = st.columns([2, 1, 1, 1])
    url_names_options(f"{prefix}_ds", list(SOURCE_NAMES))  # ?patch_ds=factual as well as its label
    source = left.segmented_control("Pairs", list(SOURCE_NAMES), format_func=SOURCE_NAMES.get, key=f"{prefix}_ds",
                                    default="ioi", bind="query-params") or "ioi"
    if source == "csv":
        upload = st.file_uploader("CSV with columns clean, corrupt, answer, wrong", type=["csv", "txt"], key=f"{prefix}_ds_csv")
        if upload is None:
            st.info("Upload a CSV: a header row `clean,corrupt,answer,wrong`, then one pair per row (answers with their "
                    "leading space, in quotes: `\" Mary\"`). All prompts must have the same number of tokens.")
            return None
        return dict(dataset="csv", csv=upload.getvalue().decode("utf-8-sig", errors="replace"))
    n = middle.number_input("Pairs", 2, MAX_PAIRS, 16, key=f"{prefix}_ds_n", bind="query-params")
    seed = right.number_input("Seed", 0, 10**6, 0, key=f"{prefix}_ds_seed", bind="query-params")
    template = 0
    if source == "ioi":
        template = last.selectbox("Template", range(len(IOI_TEMPLATES)), key=f"{prefix}_ds_template", bind="query-params",
                                  format_func=lambda i: IOI_TEMPLATES[i].format(A=" A", B=" B", PLACE=" …", OBJECT=" …")[:28] + "…")
    return dict(dataset=source, n=int(n), seed=int(seed), template=int(template))


def show_patching(result: DatasetPatchingResult, grid_chart: Callable, shared_scale: bool) -> None:
    """Mean metrics, the mean grid beside the std grid, and the ranked pairs."""
    a, b, c = st.columns(3)
    a.metric("Mean clean logit diff", f"{result.clean_metric:.3f}")
    b.metric("Mean corrupted logit diff", f"{result.corrupt_metric:.3f}")
    c.metric("Pairs", f"{len(result.dataset)}")
    if abs(result.clean_metric - result.corrupt_metric) < 1.0:
        caution("The mean clean and corrupted runs differ by less than 1 in logit difference: the normalised grid divides "
                "by a small number. Pick pairs the model gets right.")
    tables = result.tables()
    name = f"patch_dataset_{result.target}"
    cells = tables[name]
    mean, spread = st.columns(2)
    with mean:
        st.markdown("**Mean over pairs**")
        show_chart(grid_chart(cells, result, "recovery of the mean", shared_scale), cells, name,
                   caption="(mean patched − mean corrupted) / (mean clean − mean corrupted), per cell.")
    with spread:
        st.markdown("**Spread over pairs**")
        std = cells.rename(columns={"recovery": "mean_recovery"})
        row, col = std.columns[0], std.columns[1]
        chart = heatmap(std, col, row, "recovery_std", scheme="oranges", x_sort=list(dict.fromkeys(std[col])),
                        y_sort=list(dict.fromkeys(std[row])), title="std of each pair's recovery",
                        tooltip=[row, col, alt.Tooltip("recovery_std:Q", format=".3f"), alt.Tooltip("mean_recovery:Q", format=".3f")],
                        height=max(200, 14 * std[row].nunique()) if result.target != "head_out_by_pos" else None)
        show_chart(chart, std, f"{name}_std", caption="Where the pairs agree this is pale; dark cells depend on the pair.")
    st.caption("Positions are labelled with the first pair's tokens; every pair has the same length, so they line up.")


def show_dla(result: DatasetDlaResult) -> None:
    """Mean contributions with error bars, the mean and std head grids, and the ranked pairs."""
    a, b = st.columns(2)
    a.metric("Mean logit difference (answer − wrong)", f"{float(result.per_pair_model_logit_diff.mean()):.3f}")
    b.metric("Pairs", f"{len(result.dataset)}")
    tables = result.tables()
    comps = tables["dla_dataset_components"]
    bars = alt.Chart(comps).mark_bar().encode(
        x=alt.X("component:N", sort=list(comps["component"]), axis=alt.Axis(labelAngle=-60)),
        y=alt.Y("contribution:Q", title="mean direct contribution"),
        tooltip=[alt.Tooltip("component"), alt.Tooltip("contribution:Q", format=".3f"), alt.Tooltip("std:Q", format=".3f")])
    errors = alt.Chart(comps.assign(lo=comps["contribution"] - comps["std"], hi=comps["contribution"] + comps["std"])).mark_rule(
        color="#222").encode(x=alt.X("component:N", sort=list(comps["component"])), y=alt.Y("lo:Q"), y2=alt.Y2("hi:Q"))
    show_chart((bars + errors).properties(height=320), comps, "dla_dataset_components",
               caption="Bars: each component's direct contribution, mean over pairs; lines: ± one standard deviation.")
    heads = tables["dla_dataset_heads"]
    bound = float(np.abs(result.heads).max()) or 1.0
    left, right = st.columns(2)
    with left:
        show_chart(heatmap(heads, "head", "layer", "contribution", scheme="redblue", domain=(-bound, bound), title="mean per head",
                           tooltip=[alt.Tooltip("name"), alt.Tooltip("contribution:Q", format=".3f"), alt.Tooltip("std:Q", format=".3f")],
                           height=max(200, 16 * result.heads.shape[0])), heads, "dla_dataset_heads")
    with right:
        show_chart(heatmap(heads, "head", "layer", "std", scheme="oranges", title="std over pairs per head",
                           tooltip=[alt.Tooltip("name"), alt.Tooltip("std:Q", format=".3f")], height=max(200, 16 * result.heads.shape[0])),
                   heads, "dla_dataset_heads_std", key="dla_dataset_heads_std")


def ranked_pairs(result: DatasetPatchingResult | DatasetDlaResult, open_pair: Callable[[PromptPair], None], key: str) -> None:
    """The :data:`SHOWN_PAIRS` pairs that disagree most with the mean, each with a button to open it alone; all in a download."""
    st.subheader("Pairs that disagree most with the mean")
    table = next(frame for name, frame in result.tables().items() if name.endswith("_pairs"))
    order = result.ranked()
    for rank, i in enumerate(order[:SHOWN_PAIRS]):
        pair = result.dataset.pairs[i]
        text, button = st.columns([6, 1])
        d = result.disagreement[i]
        text.markdown(f"**{rank + 1}.** `{pair.clean}` → `{pair.answer!r}` vs `{pair.wrong!r}` · disagreement "
                      f"{'n/a' if np.isnan(d) else f'{d:.3f}'}")
        button.button("Open", key=f"{key}_open_{i}", on_click=open_pair, args=(pair,), help="Show this pair in the one-pair view")
    with st.expander(f"Every pair ({len(order)}), most disagreeing first"):
        st.dataframe(table.iloc[order], hide_index=True, width="stretch")
        download_buttons(table.iloc[order], f"{key}_pairs")


def patching_opener(mode_key: str) -> Callable[[PromptPair], None]:
    """A button callback that puts a pair into the Activation Patching page's inputs and switches to one pair."""
    def open_pair(pair: PromptPair) -> None:
        st.session_state.update(patch_clean=pair.clean, patch_corrupt=pair.corrupt, patch_answer=pair.answer,
                                patch_wrong=pair.wrong, **{mode_key: MODES[0]})
    return open_pair


def dla_opener(mode_key: str) -> Callable[[PromptPair], None]:
    """A button callback that puts a pair's clean prompt and answers into the DLA page's inputs."""
    def open_pair(pair: PromptPair) -> None:
        st.session_state.update(prompt=pair.clean, dla_answer=pair.answer, dla_wrong=pair.wrong, dla_pos=-1, **{mode_key: MODES[0]})
    return open_pair
