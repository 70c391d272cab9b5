"""The workbench's entry point: navigation over pages/ and the sidebar every page shares.

Run with ``streamlit run app.py``. Widgets defined here (model, prompt) keep their state
across pages and live in the URL query string, so a link reproduces the view.
"""

from __future__ import annotations

import streamlit as st

from interp_core import DEFAULT_MODEL, list_toy_models
from ui import state
from ui.navigation import page_files, page_slug, page_title


def build_pages() -> list[st.Page]:
    files = page_files()
    return [st.Page(str(f), title=page_title(f), url_path=page_slug(f), default=(i == 0)) for i, f in enumerate(files)]


def sidebar() -> None:
    with st.sidebar:
        st.markdown("### Model")
        options = [DEFAULT_MODEL, *list_toy_models()]
        chosen = st.session_state.get("model") or st.query_params.get("model")
        if chosen and chosen not in options:
            options.append(chosen)  # a hub id or directory typed earlier, or arriving in a link
        st.selectbox(
            "Model",
            options,
            key="model",
            bind="query-params",
            accept_new_options=True,
            help="The bundled smollm2-135m works offline. Type a hub id (gpt2) or a local model directory to load another.",
            label_visibility="collapsed",
        )
        st.text_area("Prompt", value=state.DEFAULT_PROMPT, key="prompt", bind="query-params", height=90)
        model = state.load_current_model()
        if model is not None:
            info = model.info
            st.caption(f"{info.family} · {info.n_layers} layers · {info.n_heads} heads · {info.device} · loaded in {info.load_seconds:.1f} s")


st.set_page_config(page_title="Interpretability Workbench", page_icon="🔬", layout="wide")
navigation = st.navigation(build_pages())
sidebar()
navigation.run()
