"""Which components push the right answer up, directly?

Direct logit attribution: with the final norm's scale frozen at its value in the real run, the
answer's logit (difference) splits exactly into one number per embedding, attention output, MLP
output and head, plus a bias term. The page ends by checking that the pieces add up.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from interp_core.core.errors import WorkbenchError
from interp_core.core.head_id import HeadId, head_label
from interp_core.techniques.dataset_requests import DatasetDlaRequest
from interp_core.techniques.dla import DlaRequest, HeadSourceRequest
from ui import dataset_views as dataset
from ui import page, runner, state
from ui.dla_views import components_chart, heads_chart, sources_chart
from ui.navigation import page_files

AUTO_HEAD = "largest |contribution|"

page.header("Direct Logit Attribution", "Which components push the right answer up, directly?")
model = state.require_model()
info = model.info


def dataset_mode() -> None:
    """DLA of every pair's clean prompt (answer minus wrong answer, last position): mean, spread, outliers."""
    page.explain(dataset.DLA_INTRO, label="DLA over a dataset")
    fields = dataset.dataset_inputs("dla")
    if fields is None:
        return
    try:
        request = DatasetDlaRequest(**fields)
    except WorkbenchError as error:
        st.error(str(error))
        return
    if (result := runner.run(model, request)) is not None:
        dataset.show_dla(result)
        dataset.ranked_pairs(result, dataset.dla_opener("dla_mode"), "dla_ds")


if dataset.mode("dla_mode") == dataset.MODES[1]:
    dataset_mode()
    st.stop()

# --- inputs -------------------------------------------------------------------------------
left, middle, right = st.columns([2, 2, 1])
answer = left.text_input(
    "Answer token", value="", key="dla_answer", bind="query-params", placeholder="empty: the model's top prediction",
    help="One token of the model's vocabulary, with its leading space, e.g. ' Paris'. Empty: the model's top prediction.",
)
wrong = middle.text_input(
    "Wrong answer (optional)", value="", key="dla_wrong", bind="query-params", placeholder="e.g.  Rome",
    help="With a wrong answer the metric is logit(answer) - logit(wrong); without one it is logit(answer) alone.",
)
position = right.number_input(
    "Position", value=-1, step=1, key="dla_pos", bind="query-params",
    help="Which token's next-token prediction to explain: 0 is the first token, -1 the last.",
)

result = runner.run_or_stop(model, DlaRequest(state.prompt(), answer, wrong, int(position)))
tables = result.tables()

pos_token = result.tokens[result.position]
st.markdown(
    f"Explaining **{result.metric}** for the prediction after token {result.position} `{pos_token!r}` "
    f"(the model's value: **{result.model_logit_diff:.3f}**)."
    + ("" if answer else f" The answer is the model's top prediction there, `{result.answer!r}`.")
)
st.caption("Positions: " + "  ".join(f"{i}:`{t!r}`" for i, t in enumerate(result.tokens)))
if wrong == "" and answer == "":
    st.caption("Tip: add a wrong answer (e.g. a competing city or name) to attribute a logit difference, which ignores "
               "what pushes every token up alike.")

page.explain(
    f"""
Each bar is one component's **direct** push on {result.metric}: its output vector, divided by the final norm's
scale as measured in this run ({result.scale:.3g}{", after centring" if info.norm == "layernorm" else ""}), times the
norm's weight, dotted with the unembedding direction. Blue bars up push the answer up; bars down push it down.
The line is the running total: the frozen-norm projection of the residual stream as components are added in
order. Its last point plus the bias term is exactly the model's value (checked at the bottom of the page).
"""
)

# --- per-layer view -------------------------------------------------------------------------
st.subheader("Per component")
page.show_chart(
    components_chart(tables["dla_components"]),
    tables["dla_components"],
    "dla_components",
    caption=f"Bars: each component's direct contribution to {result.metric}. Line: running total across components.",
)

# --- per-head view ------------------------------------------------------------------------
st.subheader("Per head")
heads_df = tables["dla_heads"]
head_chart = heads_chart(heads_df, result.heads)
chart_col, table_col = st.columns([3, 2])
with chart_col:
    page.show_chart(
        head_chart, heads_df, "dla_heads",
        caption="Each head's direct contribution (z_h @ W_O[h] through the frozen norm). Blue pushes the answer up, red down. "
                "Per layer, heads plus the output bias sum to the attention bar above.",
    )
with table_col:
    ranked = heads_df.sort_values("contribution", ascending=False)
    n_top = min(8, len(ranked))
    st.markdown("**Top positive heads**")
    st.dataframe(ranked.head(n_top)[["name", "contribution"]], hide_index=True, width="stretch")
    st.markdown("**Top negative heads**")
    st.dataframe(ranked.tail(n_top).iloc[::-1][["name", "contribution"]], hide_index=True, width="stretch")

# --- one head by source position --------------------------------------------------------------
st.subheader("One head, by source position")
head_names = [str(h) for h in HeadId.grid(info.n_layers, info.n_heads)]
choice = st.selectbox("Head", [AUTO_HEAD, *head_names], key="dla_head", bind="query-params",
                      help="Which head to split by the source token its value vector came from.")
if choice == AUTO_HEAD or choice not in head_names:
    flat = int(np.abs(result.heads).argmax())
    layer, head = divmod(flat, info.n_heads)
else:
    layer, head = divmod(head_names.index(choice), info.n_heads)
source = runner.run(model, HeadSourceRequest(state.prompt(), layer, head, answer, wrong, int(position)))
if source is not None:
    source_df = source.tables()["dla_head_sources"]
    page.show_chart(
        sources_chart(source_df.assign(label=[f"{i}: {t}" for i, t in zip(source_df["source"], source_df["token"])])),
        source_df, "dla_head_sources",
        caption=f"{head_label(layer, head)} (reads KV head {source.kv_head}) at position {source.position}: attention weight times the "
                f"source's value vector, through W_O and the frozen norm. The bars sum to the head's {source.head_total:.3f}.",
    )

# --- caution and the closing check ------------------------------------------------------------
page.caution(
    "Direct effects only: a component that matters by feeding later layers (an early head that moves a name, which a "
    "later head then copies) can show a small bar here. Activation patching measures the total effect."
)
patching = [p for p in page_files() if "patching" in p.stem and "attribution" not in p.stem]
if patching:
    st.page_link(str(patching[0]), label="Open Activation Patching for total effects", icon="➡️")

st.subheader("Does it add up?")
component_sum = float(result.values.sum())
cols = st.columns(5)
cols[0].metric("Sum of components", f"{component_sum:.4f}")
cols[1].metric("Bias term", f"{result.bias_term:.4f}")
cols[2].metric("Sum + bias", f"{result.total:.4f}")
cols[3].metric("Model's value", f"{result.model_logit_diff:.4f}")
cols[4].metric("Gap", f"{result.gap:.1e}")
st.caption(
    "Model's value: the model's own " + result.metric + " from its logits. The bias term is the final norm's bias and the unembedding bias along the answer direction. The gap should be at "
    "float32 rounding level (about 1e-5 or less); anything larger would mean a component is missing."
)
