"""The Attention page's views: chart builders and the view sections, each from one cached
:class:`AttentionPatterns` (no model runs here, except the weight check through the runner).

The page calls these from inside a fragment, so moving a slider redraws only the views.
"""

from __future__ import annotations

from functools import lru_cache, partial

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from interp_core import LoadedModel, WorkbenchError
from interp_core.core.head_id import head_label
from interp_core.techniques.attention import (
    SCORE_LABELS,
    SCORE_NAMES,
    VERIFY_TOLERANCE,
    AttentionPatterns,
    VerifyRequest,
)
from ui import runner, state
from ui.charts import chart_spec, colour_if, heatmap
from ui.page import explain, relabel, show_chart


def token_labels(patterns: AttentionPatterns) -> list[str]:
    return [f"{i} {t!r}" for i, t in enumerate(patterns.tokens)]


def pattern_frame(pattern: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """One row per (query, key) cell of a ``(query_pos, key_pos)`` pattern, with a ``masked`` flag for key > query."""
    n_pos = len(labels)
    q, k = np.meshgrid(np.arange(n_pos), np.arange(n_pos), indexing="ij")
    return pd.DataFrame({
        "query_pos": q.ravel(), "key_pos": k.ravel(),
        "query": [labels[i] for i in q.ravel()], "key": [labels[j] for j in k.ravel()],
        "weight": pattern.ravel().astype(float), "masked": (k > q).ravel(),
    })


def pattern_chart(pattern: np.ndarray, labels: list[str], title: str) -> tuple[alt.Chart, pd.DataFrame]:
    """Query x key heatmap with the causal mask drawn in grey and the weight in the tooltip."""
    df = pattern_frame(pattern, labels)
    n_pos = len(labels)
    size = min(max(26 * n_pos, 260), 900)
    base = alt.Chart(df).encode(
        x=alt.X("key:O", sort=labels, title="key (attended to)", axis=alt.Axis(labelAngle=-45, labelLimit=120)),
        y=alt.Y("query:O", sort=labels, title="query (attending)", axis=alt.Axis(labelLimit=120)),
    )
    cells = base.transform_filter("!datum.masked").mark_rect().encode(
        color=alt.Color("weight:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), title="attention"),
        tooltip=[alt.Tooltip("query"), alt.Tooltip("key"), alt.Tooltip("weight:Q", format=".4f")],
    )
    masked = base.transform_filter("datum.masked").mark_rect(color="#e6e6e6").encode(
        tooltip=[alt.Tooltip("query"), alt.Tooltip("key"), alt.Tooltip("masked:N", title="masked (key after query)")]
    )
    layers = [masked, cells]
    if n_pos <= 14:
        layers.append(base.transform_filter("!datum.masked").mark_text(fontSize=10).encode(
            text=alt.Text("weight:Q", format=".2f"),
            color=colour_if("datum.weight > 0.5", "white", "black"),
        ))
    # fit-x: stretch to the page's width but keep `size` as the plot's own height (labels come on top)
    chart = alt.layer(*layers).properties(title=title, width=size, height=size, autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))
    return chart, df.drop(columns="masked")


@lru_cache(maxsize=32)
def pattern_spec(labels: tuple[str, ...]) -> dict:
    """:func:`pattern_chart`'s Vega-Lite spec for these token labels, without data or title.

    Built and validated by Altair once per token list (that is most of a slider move's server
    time); a move then only fills in one head's rows (:func:`pattern_frame`) and its title.
    """
    chart, _ = pattern_chart(np.zeros((len(labels), len(labels))), list(labels), "")
    spec = chart_spec(chart)  # past 70 tokens the pos x pos rows pass Altair's 5000-row check (dropped below anyway)
    for field in ("data", "datasets", "title"):
        spec.pop(field, None)
    return spec


def show_one_head(model: LoadedModel, patterns: AttentionPatterns, layer: int, head: int) -> None:
    labels = token_labels(patterns)
    download = f"attention_{head_label(layer, head)}"
    df = runner.view(download, patterns, "head_table", layer=layer, head=head)
    # The title sits outside the chart: with the same spec on every move, the browser only swaps the
    # chart's data instead of building a new chart (about 60 ms of a slider move in headless Chromium).
    st.markdown(f"**Layer {layer}, head {head}**")
    show_chart(pattern_spec(tuple(labels)), df, download, chart_data=df.assign(masked=df["key_pos"] > df["query_pos"]),
               caption="Rows: the token doing the attending. Columns: the token "
               "attended to. Each row sums to 1; grey cells are masked (a token cannot see later tokens).")
    row = {name: patterns.scores.scores[name][layer, head] for name in SCORE_NAMES}
    st.markdown("**This head's scores on this prompt:** " + " · ".join(
        f"{SCORE_LABELS[name]} {'n/a' if np.isnan(v) else f'{v:.3f}'}" for name, v in row.items()))
    explain(
        "- A **stripe just below the diagonal** is a previous-token head; a **bright first column** is a sink "
        "(attention parked on the first token when the head has nothing to do).\n"
        "- Attention from a token to **the token after an earlier copy of itself** is the induction signature: "
        "try the *Repeated text* example.\n- Hover a cell for the exact weight."
    )


def show_verification(model: LoadedModel, request: VerifyRequest, layer: int, head: int) -> None:
    st.subheader("Check: recompute this pattern from the weights")
    check = runner.run(model, request)
    if check is None:
        return
    a, b, c, d = st.columns(4)
    a.metric("max |Δ| from the weights", f"{check.diff_weights[layer, head]:.1e}")
    b.metric("max |Δ| from hook_q, hook_k", f"{check.diff_hooks[layer, head]:.1e}")
    c.metric("worst head of the model", f"{check.max_diff:.1e}")
    d.metric("logit scale", f"{check.scales[layer]:.4f}")
    info = model.info
    steps = (f"normalise `resid_pre` ({info.norm}), project with `W_Q`, `W_K` and biases"
             + (", rotate q and k by position (RoPE)" if info.positional == "rotary" else "")
             + (f", share each KV head between {info.n_heads // info.n_kv_heads} query heads (GQA)" if info.n_kv_heads < info.n_heads else "")
             + f", multiply q·k by {check.scales[layer]:.4f}, mask keys after the query, softmax")
    if check.passed():
        st.success(f"The recomputed patterns equal the model's own to float precision (every head ≤ {VERIFY_TOLERANCE:g}). Steps: {steps}.")
    else:
        st.warning(f"The recomputation differs by up to {check.max_diff:.2e}: this architecture takes a step the "
                   f"recomputation does not model. Steps used: {steps}.")


def show_one_layer(patterns: AttentionPatterns, layer: int, head: int) -> None:
    labels, n_heads = token_labels(patterns), patterns.n_heads
    data = runner.view(f"attention_layer{layer}", patterns, "layer_table", layer=layer)  # the causal half only: the rest is zero
    df = data.copy()
    df["panel"] = [f"H{h}" + (" (selected)" if h == head else "") for h in df["head"]]
    panels = [f"H{h}" + (" (selected)" if h == head else "") for h in range(n_heads)]
    side = 140  # six panels a row fit the wide layout
    chart = alt.Chart(df).mark_rect().encode(
        x=alt.X("key_pos:O", axis=None), y=alt.Y("query_pos:O", axis=None),
        color=alt.Color("weight:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), title="attention"),
        tooltip=[alt.Tooltip("panel"), alt.Tooltip("query"), alt.Tooltip("key"), alt.Tooltip("weight:Q", format=".3f")],
    ).properties(width=side, height=side).facet(
        facet=alt.Facet("panel:N", sort=panels, title=None), columns=min(n_heads, 6)
    )
    show_chart(chart, data, f"attention_layer{layer}",
               caption=f"Every head of layer {layer} on the same axes (rows: query positions top to bottom, "
                       "columns: key positions left to right). Pick a head with the Head slider above to enlarge it.")
    chart, _ = pattern_chart(patterns.head(layer, head), labels, f"Enlarged: layer {layer}, head {head}")
    show_chart(chart, runner.view(f"attention_layer{layer}_enlarged", patterns, "head_table", layer=layer, head=head),
               f"attention_layer{layer}_enlarged")


def default_token_pick(patterns: AttentionPatterns, pick: tuple[str, str] | None) -> tuple[int, list[int]]:
    """The example's word pair (last occurrences) if given, else the last token and the key
    (neither the first token nor itself) it attends to most, averaged over every head."""
    tokens = patterns.tokens
    if pick:
        found = [max((i for i, t in enumerate(tokens) if t == word), default=None) for word in pick]
        if None not in found and found[1] <= found[0]:
            return found[0], [found[1]]
    query = len(tokens) - 1
    if query < 2:
        return query, [0]
    mean = patterns.patterns[:, :, query, 1:query].mean((0, 1))  # neither the first token nor itself
    return query, [int(np.argmax(mean)) + 1]


def _current_query() -> int | None:
    value = st.session_state.get("attn_query", st.query_params.get("attn_query"))
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def show_from_token(patterns: AttentionPatterns) -> None:
    tokens, labels = patterns.tokens, token_labels(patterns)
    positions = list(range(len(tokens)))
    example_clicked = "_attn_pick" in st.session_state
    pick = st.session_state.pop("_attn_pick", None)
    if example_clicked or _current_query() not in positions:
        st.session_state["attn_query"], st.session_state["attn_keys"] = default_token_pick(patterns, pick)
    elif "attn_keys" in st.session_state:
        st.session_state["attn_keys"] = [k for k in st.session_state["attn_keys"] if k in positions]
    relabel("attn_query", labels)
    relabel("attn_keys", labels)
    a, b = st.columns(2)
    query = a.selectbox("Query token (attending)", positions, format_func=lambda i: labels[i], key="attn_query", bind="query-params")
    keys = b.multiselect("Key tokens (attended to)", positions, format_func=lambda i: labels[i], key="attn_keys", bind="query-params")
    try:  # no model run: a sum over the cached patterns, refused for a key after the query
        df = runner.view("attention_from_token", patterns, "token_table", query=query, keys=keys)
    except WorkbenchError as error:
        state.show_error(error)
        return
    key_text = " + ".join(repr(tokens[k]) for k in keys)
    chart = heatmap(df, "head", "layer", "attention", scheme="blues", domain=(0, 1), height=max(200, 16 * patterns.n_layers),
                    title=f"attention from {tokens[query]!r} to {key_text}")
    show_chart(chart, df, "attention_from_token", caption="Each cell: how much of this head's attention, at the query "
               "token, goes to the chosen key token(s). 1 = all of it.")
    values = df["attention"].to_numpy().reshape(patterns.n_layers, patterns.n_heads)  # the table is (layer, head) row-major
    top = np.dstack(np.unravel_index(np.argsort(-values, axis=None)[:3], values.shape))[0]
    st.markdown("**Strongest:** " + ", ".join(f"{head_label(lay, h)} ({values[lay, h]:.2f})" for lay, h in top))


def head_jobs_chart(df: pd.DataFrame, n_layers: int, n_heads: int) -> tuple[alt.HConcatChart, list[str]]:
    """One heatmap per score defined on this prompt, side by side; returns the chart and the scores drawn."""
    height = max(180, 14 * n_layers)
    width = min(max(12 * n_heads, 80), 120)  # five panels side by side must fit the page
    defined = [name for name in SCORE_NAMES if df[name].notna().any()]
    charts = []
    for i, name in enumerate(defined):
        domain = (0.0, max(float(df[name].max()), 1e-6)) if name == "entropy" else (0.0, 1.0)
        scheme = "greens" if name == "entropy" else "viridis"
        panel = heatmap(df.assign(score=df[name]), "head", "layer", "score", scheme=scheme, domain=domain,
                        title=SCORE_LABELS[name], height=height,
                        tooltip=[alt.Tooltip("layer"), alt.Tooltip("head"), alt.Tooltip("score:Q", format=".3f", title=SCORE_LABELS[name])])
        panel = panel.properties(width=width).encode(
            color=alt.Color("score:Q", scale=alt.Scale(scheme=scheme, domain=list(domain)), title=None),
            y=alt.Y("layer:O", title="layer" if i == 0 else None),
        )
        charts.append(panel)
    chart = alt.hconcat(*charts, spacing=12).resolve_scale(color="independent").configure_legend(orient="bottom", gradientLength=width)
    return chart, defined


def jump_to(layer: int, head: int, one_head_tab: str) -> None:
    """Open ``layer``/``head`` in the one-head view."""
    st.session_state["attn_layer"], st.session_state["attn_head"] = layer, head
    st.session_state["attn_view"] = one_head_tab


def _jump_from_table(key: str, cells: list[tuple[int, int]], one_head_tab: str) -> None:
    rows = st.session_state[key].selection.rows
    if rows:
        jump_to(*cells[rows[0]], one_head_tab)


def _jump_from_picker(options: dict[str, tuple[int, int]], one_head_tab: str) -> None:
    choice = st.session_state.get("attn_jump")
    if choice in options:
        jump_to(*options[choice], one_head_tab)


def show_head_jobs(patterns: AttentionPatterns, one_head_tab: str) -> None:
    scores = patterns.scores
    df = runner.view("head_scores", patterns, "score_table")
    chart, defined = head_jobs_chart(df, patterns.n_layers, patterns.n_heads)
    show_chart(chart, df, "head_scores", caption="Every head's score on this prompt, all from the same forward pass. "
               "Entropy: low = focused on one token, high = spread out.")
    if len(defined) < len(SCORE_NAMES):
        st.info("No token repeats in this prompt, so duplicate-token and induction scores are undefined here (not drawn). "
                "Try the *Repeated text* example.")
    st.markdown("**Top heads** (click a row to open its pattern)")
    cols = st.columns(len(SCORE_NAMES))
    options: dict[str, tuple[int, int]] = {}
    for col, name in zip(cols, SCORE_NAMES):
        ranked = scores.ranked(name, 8)
        cells = [(lay, h) for lay, h, _ in ranked]
        table = pd.DataFrame({"head": [head_label(lay, h) for lay, h in cells], "score": [round(v, 3) for *_, v in ranked]})
        col.caption(SCORE_LABELS[name] + (" (lowest first)" if name == "entropy" else ""))
        col.dataframe(table, hide_index=True, key=f"attn_rank_{name}", selection_mode="single-row", width="stretch",
                      on_select=partial(_jump_from_table, f"attn_rank_{name}", cells, one_head_tab))
        options.update({f"{SCORE_LABELS[name]}: {head_label(lay, h)} ({v:.3f})": (lay, h) for lay, h, v in ranked})
    if options:
        a, b = st.columns([3, 1])
        a.selectbox("Or pick a head", list(options), key="attn_jump", bind="query-params")
        b.button("Open its pattern", key="attn_open", on_click=_jump_from_picker, args=(options, one_head_tab), width="stretch")
    explain(
        "- **previous-token**: mean of A[i, i-1]. **first-token**: mean of A[i, 0] (sinks score near 1). "
        "**duplicate-token**: mean attention to earlier copies of the same token. **induction**: mean attention "
        "to the token *after* an earlier copy of the current token. **entropy**: mean spread of each row (nats).\n"
        "- Scores describe this prompt only. A head that scores high here may do something else elsewhere; "
        "check a few prompts, then test causally on the patching page."
    )
