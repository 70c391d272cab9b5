"""Which components push the right answer up, directly?

Direct logit attribution: with the final norm's scale frozen at its value in the real run, the
answer's logit (difference) splits exactly into one number per embedding, attention output, MLP
output and head, plus a bias term. The page ends by checking that the pieces add up.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from interp_core import WorkbenchError
from interp_core.core.head_id import HeadId, head_label
from interp_core.techniques.dla import DLAResult, HeadSourceResult, direct_logit_attribution, head_source_attribution
from ui import page, state
from ui.charts import grid_frame, heatmap
from ui.navigation import page_files

AUTO_HEAD = "largest |contribution|"

page.header("Direct Logit Attribution", "Which components push the right answer up, directly?")
model = state.require_model()
info = model.info


@st.cache_data(show_spinner=False, max_entries=64)
def cached_dla(spec: str, prompt: str, answer: str, wrong: str, position: int) -> DLAResult:
    return direct_logit_attribution(state.get_model(spec), prompt, answer or None, wrong or None, position=position)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_source(spec: str, prompt: str, layer: int, head: int, answer: str, wrong: str, position: int) -> HeadSourceResult:
    return head_source_attribution(state.get_model(spec), prompt, layer, head, answer or None, wrong or None, position=position)


def signed_domain(values: np.ndarray) -> tuple[float, float]:
    bound = float(np.abs(values).max()) or 1.0
    return -bound, bound


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

try:
    with st.spinner("Running the model once and splitting the logit…"):
        result = cached_dla(state.model_spec(), state.prompt(), answer, wrong, int(position))
except WorkbenchError as error:
    state.show_error(error)
    st.stop()

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
layer_df = pd.DataFrame(
    {
        "component": list(result.labels),
        "order": range(len(result.labels)),
        "kind": [label.split()[-1] if label.startswith("L") else "embedding" for label in result.labels],
        "contribution": result.values,
        "running_total": result.running,
    }
)
x = alt.X("component:N", sort=list(result.labels), title="component (residual order)", axis=alt.Axis(labelAngle=-60))
tooltip = ["component", alt.Tooltip("contribution:Q", format=".3f"), alt.Tooltip("running_total:Q", format=".3f")]
bars = alt.Chart(layer_df).mark_bar().encode(
    x=x,
    y=alt.Y("contribution:Q", title="direct contribution"),
    color=alt.Color("kind:N", scale=alt.Scale(domain=["embedding", "attn", "mlp"], range=["#9e9e9e", "#4c78a8", "#f58518"])),
    tooltip=tooltip,
)
line = alt.Chart(layer_df).mark_line(point=alt.OverlayMarkDef(color="#222", size=18), color="#222").encode(x=x, y="running_total:Q", tooltip=tooltip)
page.show_chart(
    (bars + line).properties(height=340),
    layer_df.drop(columns="order"),
    "dla_components",
    caption=f"Bars: each component's direct contribution to {result.metric}. Line: running total across components.",
)

# --- per-head view ------------------------------------------------------------------------
st.subheader("Per head")
heads_df = grid_frame(result.heads, list(range(info.n_layers)), list(range(info.n_heads)), "layer", "head", "contribution")
heads_df["name"] = [head_label(layer, head) for layer, head in zip(heads_df["layer"], heads_df["head"])]
head_chart = heatmap(
    heads_df, "head", "layer", "contribution", scheme="redblue", domain=signed_domain(result.heads),
    tooltip=["name", alt.Tooltip("contribution:Q", format=".3f")], height=max(200, 16 * info.n_layers),
).properties(width=max(240, 45 * info.n_heads))  # wide enough to read; ordinal axes do not stretch
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
try:
    source = cached_source(state.model_spec(), state.prompt(), layer, head, answer, wrong, int(position))
except WorkbenchError as error:
    state.show_error(error)
    st.stop()
source_df = pd.DataFrame(
    {
        "source": range(len(source.tokens)),
        "token": [repr(t) for t in source.tokens],
        "contribution": source.values,
        "attention": source.attention,
    }
).iloc[: source.position + 1]
source_df["label"] = [f"{i}: {t}" for i, t in zip(source_df["source"], source_df["token"])]
source_chart = alt.Chart(source_df).mark_bar().encode(
    x=alt.X("label:N", sort=list(source_df["label"]), title="source position: token", axis=alt.Axis(labelAngle=-45)),
    y=alt.Y("contribution:Q", title="direct contribution carried"),
    color=alt.condition("datum.contribution >= 0", alt.value("#4c78a8"), alt.value("#e45756")),
    tooltip=["source", "token", alt.Tooltip("contribution:Q", format=".3f"), alt.Tooltip("attention:Q", format=".3f")],
).properties(height=280)
page.show_chart(
    source_chart, source_df.drop(columns="label"), "dla_head_sources",
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
