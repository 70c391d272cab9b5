"""Which layers, positions and heads cause the model's answer?

Activation patching (denoising): run the corrupted prompt, restore one activation from the clean
run, and see how much of the clean answer comes back. Attribution patching is the instant,
approximate preview of the same grids.
"""

from __future__ import annotations

import streamlit as st

from interp_core.core.errors import WorkbenchError
from interp_core.techniques.ablation import METHODS as ABLATION_METHODS
from interp_core.techniques.dataset_requests import DatasetPatchRequest
from interp_core.techniques.patch_pair import METHODS, TARGETS
from interp_core.techniques.patching_requests import (
    AblationEffectRequest,
    AttributionRequest,
    PatchRequest,
    component_labels,
    needs_confirmation,
)
from ui import dataset_views as dataset
from ui import page, runner, state
from ui import patching_views as views

page.header("Activation Patching", __doc__.splitlines()[0])
page.explain(views.INTRO)
model = state.require_model()


def dataset_mode() -> None:
    """Patching over many pairs: the mean grid, its spread, and the pairs that disagree with it."""
    page.explain(dataset.INTRO, label="Patching over a dataset")
    fields = dataset.dataset_inputs("patch")
    left, right = st.columns([3, 1])
    page.url_names_options("patch_ds_target", list(TARGETS))
    target = left.segmented_control("Patch", list(TARGETS), format_func=views.TARGET_NAMES.get, key="patch_ds_target",
                                    default="resid_pre", bind="query-params") or "resid_pre"
    method = right.radio("Method", METHODS, key="patch_ds_method", horizontal=True, bind="query-params", help="exact: every cell of every pair "
                         "really runs (queued); attribution: the linear estimate, about two passes per pair")
    if fields is None:
        return
    try:
        request = DatasetPatchRequest(**fields, target=target, method=method)
    except WorkbenchError as error:
        st.error(str(error))
        return
    if (result := runner.run(model, request)) is not None:
        dataset.show_patching(result, views.grid_chart, shared_scale=False)
        dataset.ranked_pairs(result, dataset.patching_opener("patch_mode"), "patch_ds")


if dataset.mode("patch_mode") == dataset.MODES[1]:
    dataset_mode()
    st.stop()
page.presets(views.PRESETS, key="patch", default="Indirect object (IOI)", help_of="patch_clean")
left, right = st.columns(2)
clean = left.text_input("Clean prompt", key="patch_clean", bind="query-params")
corrupt = right.text_input("Corrupted prompt (same number of tokens)", key="patch_corrupt", bind="query-params")
left, right = st.columns(2)
answer = left.text_input("Answer token (clean)", key="patch_answer", bind="query-params", help="with its leading space, e.g. ' Mary'")
wrong = right.text_input("Wrong-answer token (corrupted)", key="patch_wrong", bind="query-params")
pair = dict(clean=clean, corrupt=corrupt, answer=answer, wrong=wrong)
page.warn_unknown_words(model, f"{clean} {corrupt}", "the clean and corrupted prompts")

# Every target's attribution grid from one forward and one backward pass: the page's one model run before any sweep.
attribution = runner.run_or_stop(model, AttributionRequest(**pair))
views.show_runs(attribution.first)


@st.fragment
def grids() -> None:
    """Target, exact sweep and colour scale: picking another reruns only this (the preview is cached)."""
    page.forget_charts(views.chart_names(TARGETS))
    page.url_names_options("patch_target", list(TARGETS))  # a link may name the target by its value (?patch_target=head_out)
    target = st.segmented_control("Patch", list(TARGETS), format_func=views.TARGET_NAMES.get, key="patch_target",
                                  bind="query-params", default="resid_pre") or "resid_pre"
    request = PatchRequest(**pair, target=target, method="exact")
    cost = request.cost(model)
    left, right = st.columns([3, 1])
    run_exact = left.toggle(f"Run exact patching ({cost.cells:,} cells, {cost.describe()})", value=True, key="patch_exact",
                            bind="query-params", help="Batched through the model from the patched layer on; results are kept "
                            "per input. The time is estimated from the model's shape and the prompt length for the project's "
                            "2-core CPU; a GPU is many times faster.")
    shared = right.radio("Colour scale", views.SCALES, key="patch_scale", bind="query-params",
                         help="Shared: both grids on −1 … 1, so their colours compare; own: each grid up to its largest "
                         "|recovery|.") == views.SCALES[1]
    approx_result = attribution.of(target)
    approx, exact = st.columns(2)
    with approx:
        st.markdown("**Attribution patching** · approximation")
        views.show_grid(approx_result, "estimated recovery", "(a_clean − a_corrupt) · ∂metric/∂a on the corrupted run, "
                        "÷ (clean − corrupted).", shared)
    exact_result = None
    with exact:
        st.markdown("**Exact patching**")
        if not run_exact:
            st.info("Switch on exact patching to compute the real grid.")
        elif (exact_result := runner.cached(model, request)) is None:
            # A long prompt makes the sweep slow (cells x tokens per cell): ask before starting one over a minute.
            if not needs_confirmation(cost) or st.button(f"Run anyway ({cost.describe()})", key="patch_run_anyway", type="primary"):
                exact_result = runner.run(model, request)
            else:
                st.info(views.slow_sweep_note(cost, len(attribution.first.tokens)))
        if exact_result is not None:
            views.show_grid(exact_result, "recovery", "One patched run per cell, read at the last position.", shared)
    if target == "head_out_by_pos":
        st.caption(f"The charts show the {views.TOP_HEADS} heads with the largest effect; the downloads hold every head.")
    if exact_result is not None:
        views.show_agreement(exact_result, attribution)


@st.fragment
def ablation() -> None:
    """Knock heads and MLPs out of the clean run: picking others reruns only this section."""
    page.forget_charts({"patch_ablation"})
    st.subheader("Ablation: knock components out of the clean run")
    left, right = st.columns([3, 1])
    picked = left.multiselect("Heads and MLPs", component_labels(model.info.n_layers, model.info.n_heads), key="patch_ablate",
                              bind="query-params", placeholder="e.g. L9H6, MLP0")
    method = right.radio("Method", ABLATION_METHODS, horizontal=True, key="patch_abl_method", bind="query-params",
                         help="zero; mean over both prompts and all positions; resample = the corrupted prompt's activation")
    if not picked:
        st.caption("Pick heads or MLPs (for example the strongest cells of the head grid) to see how the clean answer changes "
                   "without them.")
    elif (effect := runner.run(model, AblationEffectRequest.of_labels(**pair, labels=picked, method=method))) is not None:
        views.show_ablation(effect, picked, answer, wrong)


grids()
ablation()
page.caution("Patching shows which activations are *sufficient* to restore the answer one at a time, for this pair of prompts. "
             "A component can matter and still show little here when others are redundant with it.")
