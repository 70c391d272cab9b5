"""What does each head look at, and which heads have a recognisable job?"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import streamlit as st

from interp_core.techniques.attention import PatternsRequest, VerifyRequest
from ui import attention_views as views
from ui import runner, state
from ui.page import caution, forget_charts, header

MAX_TOKENS = 128  # one head's grid is pos x pos cells; beyond this the charts stop being readable
PATCHING_PAGE = "pages/06_activation_patching.py"
TABS = ("One head", "One layer", "From one token", "Head jobs")
EXAMPLES = {
    "Repeated text": ("The cat sat on the mat. The dog ran in the park. The cat sat on the mat. The dog ran in the park.", None),
    "'it' → 'cat'": ("The cat did not cross the street because it was too tired.", (" it", " cat")),
    "Names (IOI)": ("When Mary and John went to the store, John gave a drink to", (" to", " Mary")),
}

header("Attention", "What does each head look at, and which heads have a recognisable job?")
model = state.require_model()
prompt = state.prompt()


def use_example(text: str, pick: tuple[str, str] | None) -> None:
    """Button callback: put an example in the sidebar prompt (callbacks run before any widget exists)."""
    st.session_state["prompt"] = text
    st.session_state["_attn_pick"] = pick
    st.session_state["attn_view"] = TABS[2] if pick else TABS[3]


cols = st.columns(len(EXAMPLES) + 1)
cols[0].markdown("**Example prompts**")
for col, (label, (text, pick)) in zip(cols[1:], EXAMPLES.items()):
    col.button(label, key=f"attn_ex_{label}", on_click=use_example, args=(text, pick), help=text, width="stretch")

# The one model run of the page (cached server-wide); the views below only read it.
patterns = runner.run_or_stop(model, PatternsRequest(prompt, MAX_TOKENS))


def index_slider(label: str, size: int, key: str, default: Callable[[], int]) -> int:
    """A 0..size-1 slider bound to the URL; a model with one choice gets a caption instead."""
    if size == 1:
        st.caption(f"{label}: 0 (this model has only one)")
        return 0
    if key not in st.session_state and key not in st.query_params:
        st.session_state[key] = default()  # first visit: open on a head with a clear job
    elif st.session_state.get(key, 0) >= size:
        st.session_state[key] = size - 1  # a smaller model was picked since
    return st.slider(label, 0, size - 1, key=key, bind="query-params")


@st.fragment
def explore() -> None:
    """Sliders, tabs and every chart they drive: a slider move reruns only this, reading the cached patterns."""
    # Every chart of the page is drawn here: forget the previous run's (the sidebar's report holds this list).
    forget_charts()
    # the top previous-token head, asked for on a first visit only (ranking every head is ~10 ms of a move)
    best = lru_cache(lambda: (patterns.scores.ranked("previous_token", 1) or [(0, 0, 0.0)])[0])
    left, right = st.columns(2)
    with left:
        layer = index_slider("Layer", patterns.n_layers, "attn_layer", lambda: best()[0])
    with right:
        head = index_slider("Head", patterns.n_heads, "attn_head", lambda: best()[1])

    caution(
        "Attention shows where a head **reads from**, not what it writes or whether the output depends on it: "
        "a head can attend strongly and change nothing (sink heads park attention on the first token), and a "
        "position late in the model holds a mix of what earlier layers moved there. For causal evidence, patch "
        "or ablate the head."
    )
    if Path(PATCHING_PAGE).is_file():
        st.page_link(PATCHING_PAGE, label="Activation patching and ablation: test whether a head matters →")

    # A full run draws every tab (links, the page report, tests); a rerun of this fragment alone (a slider
    # moved, a tab picked: on_change="rerun") draws only the open tab, since the hidden ones cost most of a move.
    everything = st.session_state.pop("_attn_full_run", False)
    view = st.tabs(list(TABS), key="attn_view", bind="query-params", on_change="rerun")
    if everything or view[0].open is not False:
        with view[0]:
            views.show_one_head(model, patterns, layer, head)
            views.show_verification(model, VerifyRequest(prompt, MAX_TOKENS), layer, head)
    if everything or view[1].open is not False:
        with view[1]:
            views.show_one_layer(patterns, layer, head)
    if everything or view[2].open is not False:
        with view[2]:
            views.show_from_token(patterns)
    if everything or view[3].open is not False:
        with view[3]:
            views.show_head_jobs(patterns, TABS[0])


st.session_state["_attn_full_run"] = True
explore()
