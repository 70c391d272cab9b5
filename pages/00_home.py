"""What does the model predict next, and what is it made of?"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from interp_core.techniques.predict import PredictRequest
from ui import runner, state
from ui.navigation import page_files, page_question, page_title
from ui.page import header, show_chart

header("Interpretability Workbench", "What does the model predict next, and what is it made of?")
st.write("Type a prompt in the sidebar, then open a technique page to see what the model computes inside.")

model = state.require_model()
info = model.info


card, prediction = st.columns([1, 2])
with card:
    st.subheader("Model card")
    st.table(
        pd.DataFrame(
            {
                "": ["name", "source", "architecture", "layers", "heads", "KV heads", "d_model", "d_head", "d_mlp",
                     "vocabulary", "context", "norm", "positions", "parameters", "device", "dtype", "load time"],
                "value": [info.name, info.source, info.architecture, info.n_layers, info.n_heads, info.n_kv_heads,
                          info.d_model, info.d_head, info.d_mlp, info.d_vocab, info.n_ctx, info.norm, info.positional,
                          f"{info.n_params / 1e6:.1f} M", info.device, info.dtype, f"{info.load_seconds:.1f} s"],
            }
        ).astype(str).set_index("")
    )

with prediction:
    st.subheader("Next token")
    top_k = st.slider("How many candidates", 3, 30, 10, key="top_k", bind="query-params")
    result = runner.run_or_stop(model, PredictRequest(state.prompt(), top_k))
    st.markdown("**Tokens:** " + " ".join(f"`{t!r}`" for t in result.tokens) + f"  ({len(result.tokens)} tokens)")
    df = result.tables()["next_tokens"]
    df["label"] = df["token"].map(repr)
    chart = (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X("prob:Q", title="probability", axis=alt.Axis(format="%")),
            y=alt.Y("label:N", sort=None, title="next token"),
            tooltip=[alt.Tooltip("rank"), alt.Tooltip("label"), alt.Tooltip("prob:Q", format=".2%"), alt.Tooltip("id")],
        )
    )
    show_chart(
        chart,
        df[["rank", "token", "id", "prob"]],
        "next_tokens",
        caption="Bars are the model's probabilities for the next token after the whole prompt (softmax of the last position's logits).",
    )

st.subheader("Techniques")
for path in page_files()[1:]:
    st.page_link(str(path), label=f"**{page_title(path)}**: {page_question(path)}")
