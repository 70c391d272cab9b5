"""Views of the Information Flow page: the route as a graph, and one edge up close (heads, lens, ablation)."""

from __future__ import annotations

import json

import altair as alt
import pandas as pd
import streamlit as st

from interp_core import LoadedModel, WorkbenchError
from interp_core.techniques.flow import DEFAULT_THRESHOLD, EdgeLensRequest, EdgeTestRequest, FlowRequest, FlowResult
from ui import page, runner, state

MAX_DRAWN = 4000  # edges drawn at most (the strongest): a browser chokes on a low threshold over a long prompt
MAX_LISTED = 500  # attention edges offered for inspection at most
KIND_COLOURS = alt.Scale(domain=["attn", "resid", "mlp"], range=["#1f77b4", "#b0b0b0", "#ff7f0e"])


def first_visit_prompt(prompt: str) -> None:
    """On a session's first visit, show ``prompt`` instead of the sidebar's untouched default (a link's or a
    typed prompt is kept): it becomes the sidebar prompt from the next run on, and the page reruns."""
    if st.session_state.get("_flow_seen"):
        return
    st.session_state["_flow_seen"] = True
    if state.prompt() == state.DEFAULT_PROMPT and "prompt" not in st.query_params:
        if "prompt" not in st.session_state:  # no prompt box drawn yet (the page runs alone, as under AppTest)
            st.session_state["prompt"] = prompt
            return
        state.set_prompt_next_run(prompt)
        st.rerun()


def flow_request(prompt: str) -> FlowRequest:
    """The page's request (every contribution, default route), or its validation message as one red box and a stop."""
    try:
        return FlowRequest(prompt)
    except WorkbenchError as error:
        st.error(str(error))
        st.stop()


def _label(tokens: tuple[str, ...], position: int) -> str:
    return f"{position} {tokens[position]!r}"


def graph_frames(result: FlowResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The route's edges (attention and residual as lines, each MLP as a marker half-way up its block)
    and its nodes, ready for :func:`graph_chart`."""
    edges = result.edge_table()
    if len(edges) > MAX_DRAWN:
        edges = edges.nlargest(MAX_DRAWN, "weight")
    edges["y"], edges["y2"] = edges["layer"], edges["layer"] + 1
    edges["mid"] = edges["layer"] + 0.5
    edges["what"] = [f"block {r.layer}: {_label(result.tokens, r.source)} → {_label(result.tokens, r.target)}"
                     for r in edges.itertuples()]
    nodes = sorted({(e.source) for e in result.edges} | {(e.target) for e in result.edges}
                   | {(result.n_layers, result.position)})
    node_frame = pd.DataFrame({"boundary": [b for b, _ in nodes], "position": [p for _, p in nodes],
                               "token": [repr(result.tokens[p]) for _, p in nodes]})
    return edges, node_frame


def graph_chart(result: FlowResult, selected: tuple[int, int, int] | None = None) -> alt.LayerChart:
    """Layers as rows (embeddings at the bottom, the final residual on top), tokens as columns; edge width by
    contribution. ``selected`` = (block, source, query) is drawn in red."""
    edges, nodes = graph_frames(result)
    labels = json.dumps([_label(result.tokens, p) for p in range(len(result.tokens))])
    x_axis = alt.Axis(values=list(range(len(result.tokens))), labelExpr=f"{labels}[datum.value]", labelAngle=-45, labelOverlap=False,
                      title="token (position)", grid=False)
    x_scale = alt.Scale(domain=[-0.5, len(result.tokens) - 0.5])
    y_scale = alt.Scale(domain=[0, result.n_layers])
    y_axis = alt.Axis(title="layer boundary (0 = embeddings; block L runs from L to L+1)", tickMinStep=1)
    width = alt.StrokeWidth("weight:Q", scale=alt.Scale(domain=[0, 1], range=[0.5, 9]), legend=None)
    tips = [alt.Tooltip("what:N"), alt.Tooltip("kind:N"), alt.Tooltip("weight:Q", format=".3f")]
    lines = alt.Chart(edges[edges["kind"] != "mlp"]).mark_rule(opacity=0.75).encode(
        x=alt.X("source:Q", scale=x_scale, axis=x_axis), x2=alt.X2("target:Q"),
        y=alt.Y("y:Q", scale=y_scale, axis=y_axis), y2=alt.Y2("y2:Q"),
        color=alt.Color("kind:N", scale=KIND_COLOURS, title="edge"), strokeWidth=width, tooltip=tips)
    mlps = alt.Chart(edges[edges["kind"] == "mlp"]).mark_square(opacity=0.9).encode(
        x=alt.X("target:Q"), y=alt.Y("mid:Q"), color=alt.Color("kind:N", scale=KIND_COLOURS),
        size=alt.Size("weight:Q", scale=alt.Scale(domain=[0, 1], range=[10, 160]), legend=None), tooltip=tips)
    points = alt.Chart(nodes).mark_circle(size=40, color="black").encode(
        x=alt.X("position:Q"), y=alt.Y("boundary:Q"), tooltip=[alt.Tooltip("boundary:Q"), alt.Tooltip("position:Q"), alt.Tooltip("token:N")])
    layers = [lines, mlps, points]
    if selected is not None:
        block, source, query = selected
        chosen = edges[(edges["kind"] == "attn") & (edges["layer"] == block) & (edges["source"] == source)
                       & (edges["target"] == query)]
        layers.append(alt.Chart(chosen).mark_rule(color="red", strokeDash=[5, 3]).encode(
            x=alt.X("source:Q"), x2=alt.X2("target:Q"), y=alt.Y("y:Q"), y2=alt.Y2("y2:Q"), strokeWidth=alt.StrokeWidthValue(3), tooltip=tips))
    return alt.layer(*layers).properties(height=max(320, 22 * result.n_layers))


def _attention_edges(result: FlowResult) -> list[tuple[int, int, int, float]]:
    """(block, source, query, weight) of the route's attention edges: those into the output position first
    (what moves information to the prediction), each group strongest first."""
    found = [(e.layer, e.source[1], e.target[1], e.weight) for e in result.edges if e.kind == "attn"]
    return sorted(found, key=lambda e: (e[2] != result.position, -e[3]))


def _choose(label: str, options: list, key: str, fmt, **kwargs: object) -> object:
    """A selectbox whose remembered choice falls back to the first option when it is no longer offered."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = options[0]
    return st.selectbox(label, options, key=key, format_func=fmt, **kwargs)


@st.fragment
def explorer(model: LoadedModel, full: FlowResult, prompt: str) -> None:
    """Threshold, output position, the graph, and the chosen edge or node (reruns only itself: no recompute)."""
    page.forget_charts({"flow_route", "flow_heads", "flow_edge_lens"})
    n = len(full.tokens)
    a, b = st.columns([2, 1])
    threshold = a.slider("Threshold (drop edges whose contribution is below it)", 0.0, 0.5, DEFAULT_THRESHOLD, 0.005,
                         key="flow_threshold", format="%.3f", bind="query-params")
    if st.session_state.get("flow_position", -1) not in range(-1, n):
        st.session_state["flow_position"] = -1
    positions = [-1, *range(n)]
    label = lambda p: f"last token ({full.tokens[-1]!r})" if p == -1 else _label(full.tokens, p)  # noqa: E731
    page.relabel("flow_position", [label(p) for p in positions])
    position = b.selectbox("Output position (the route leads to its prediction)", positions, key="flow_position",
                           format_func=label)
    result = full.with_route(threshold, position)
    attn_edges = _attention_edges(result)
    kind = st.radio("Inspect", ["an attention edge", "a node"], key="flow_inspect", horizontal=True)
    site, selected = _pick_site(result, attn_edges, kind)
    drawn = "" if len(result.edges) <= MAX_DRAWN else f" (the strongest {MAX_DRAWN} drawn; raise the threshold to see all)"
    route = runner.view("flow_route", full, "route_table", threshold=threshold, position=position)
    page.show_chart(graph_chart(result, selected), route, "flow_route",
                    caption=f"{len(result.edges)} edges above {threshold:.3f}{drawn} reach the prediction at "
                            f"{_label(result.tokens, result.position)}. Blue: attention (summed over heads), grey: "
                            "residual, orange squares: MLPs (size = contribution). Red dashes: the inspected edge.")
    if site is None:
        st.info("No attention edge on the route at this threshold: lower it.")
        return
    _inspect(model, full, result, prompt, *site)


def _pick_site(result: FlowResult, attn_edges: list, kind: str) -> tuple[tuple | None, tuple | None]:
    """The inspected (block, query, source or None) and the edge to highlight, from the page's selectboxes."""
    if kind == "a node":
        nodes = sorted({e.target for e in result.edges}, key=lambda n: (-n[0], n[1]))
        if not nodes:
            return None, None
        boundary, query = _choose("Node (what block L-1 wrote into it)", nodes, "flow_node",
                                  lambda n: f"after block {n[0] - 1}, {_label(result.tokens, n[1])}")
        return (boundary - 1, query, None), None
    if not attn_edges:
        return None, None
    options = [e[:3] for e in attn_edges[:MAX_LISTED]]
    weight = {e[:3]: e[3] for e in attn_edges}
    block, source, query = _choose(
        "Attention edge (into the output position first, strongest first)", options, "flow_edge",
        lambda e: f"block {e[0]}: {_label(result.tokens, e[1])} → {_label(result.tokens, e[2])}  ({weight[e]:.3f})")
    return (block, query, source), (block, source, query)


def _inspect(model: LoadedModel, full: FlowResult, result: FlowResult, prompt: str, block: int, query: int,
             source: int | None) -> None:
    """The heads carrying the edge or node, the lens on one head's part, and the ablation test (``full``: the
    recorded result, ``result``: its route for the page's threshold and position)."""
    heads = runner.view("flow_heads", full, "head_table", layer=block, query=query, key=source)
    left, right = st.columns(2)
    with left:
        st.markdown("**Heads carrying it** (contribution to resid_mid)")
        page.show_chart(alt.Chart(heads.head(8)).mark_bar().encode(
            x=alt.X("contribution:Q"), y=alt.Y("head:N", sort="-x", title="head"),
            tooltip=[alt.Tooltip("head"), alt.Tooltip("contribution:Q", format=".4f")]).properties(height=22 * min(8, len(heads))),
            heads, "flow_heads")
    options = [int(h) for h in heads["head"]]
    head = _choose("Head", options, "flow_head", lambda h: f"L{block}H{h}  ({heads.set_index('head').loc[h, 'contribution']:.3f})")
    lens = runner.run(model, EdgeLensRequest(prompt, layer=block, query=query, source=source, head=head))
    with right:
        if lens is not None:
            st.markdown(f"**What L{block}H{head} writes there promotes** (|part| = {lens.norm:.1f})")
            table = lens.tables()["flow_edge_lens"]
            page.show_chart(alt.Chart(table).mark_bar(color="#2ca02c").encode(
                x=alt.X("score:Q", title="(final-norm weight × part) · W_U"), y=alt.Y("token:N", sort=None, title=None),
                tooltip=[alt.Tooltip("token"), alt.Tooltip("score:Q", format=".2f")]).properties(height=22 * len(table)), table, "flow_edge_lens")
    _test(model, result, prompt, block, query, source, head)


def _test(model: LoadedModel, result: FlowResult, prompt: str, block: int, query: int, source: int | None, head: int) -> None:
    """The "Test this edge" button and, once pressed, the prediction before and after beside the contribution."""
    modes = ["head"] if source is None else ["edge", "head"]
    names = {"edge": f"this edge only (L{block}H{head} reading {_label(result.tokens, source) if source is not None else ''} "
                     f"at {_label(result.tokens, query)})", "head": f"the whole head L{block}H{head} at {_label(result.tokens, query)}"}
    if st.session_state.get("flow_mode") not in modes:
        st.session_state["flow_mode"] = modes[0]
    mode = st.radio("Ablate", modes, key="flow_mode", format_func=names.get, horizontal=True)
    try:
        request = EdgeTestRequest(prompt, position=result.position, layer=block, query=query, source=source, head=head, mode=mode)
    except WorkbenchError as error:
        st.error(str(error))
        return
    if st.button("Test this edge", key="flow_test", type="primary"):
        st.session_state["flow_tested"] = request
    if st.session_state.get("flow_tested") != request:
        st.caption("Press the button to remove it from one run and see whether the prediction needs it.")
        return
    test = runner.run(model, request)
    if test is None:
        return
    contribution = result.attn[block, query, :, head].sum() if source is None else result.attn[block, query, source, head]
    a, b, c, d = st.columns(4)
    a.metric("Contribution (correlational)", f"{contribution:.3f}")
    b.metric(f"log P({test.target!r}) (causal)", f"{test.ablated_logprob:.3f}", f"{test.change:+.3f} vs {test.clean_logprob:.3f}")
    c.metric("Top after ablation", repr(test.ablated_top))
    d.metric("KL(clean ‖ ablated), nats", f"{test.kl:.4f}")
    st.caption(f"The metric is the log-probability of {test.target!r}, the clean run's prediction at "
               f"{_label(result.tokens, result.position)}. A contribution is a proximity score (how close a part is to "
               "the whole it is summed into); only the ablation says whether the prediction depends on it.")
    st.dataframe(test.tables()["flow_edge_test"], hide_index=True)
