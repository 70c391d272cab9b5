"""The workbench's entry point: navigation over pages/ and the sidebar every page shares.

Run with ``streamlit run app.py``. Widgets defined here (model, prompt) keep their state
across pages and live in the URL query string, so a link reproduces the view. ``?presenter=1``
switches presenter mode on (larger fonts, explanations collapsed).
"""

from __future__ import annotations

import streamlit as st

from interp_core import DEFAULT_MODEL, list_toy_models
from ui import reproduce, runner, state
from ui.config import allowed_models
from ui.first_visit import yield_to_people
from ui.loading_views import advanced_loading
from ui.navigation import page_files, page_slug, page_title
from ui.page import presenter_mode, warn_unknown_words
from ui.report import build_html_report

PRESENTER_CSS = """<style>
html, body, [class*="st-"], .stMarkdown p, .stMarkdown li { font-size: 1.25rem !important; }
h1 { font-size: 3rem !important; } h2, h3 { font-size: 2rem !important; }
</style>"""


def build_pages() -> list[st.Page]:
    files = page_files()
    return [st.Page(str(f), title=page_title(f), url_path=page_slug(f), default=(i == 0)) for i, f in enumerate(files)]


def model_picker() -> None:
    fixed = allowed_models()
    if fixed:  # hosted workshop: a fixed list, nothing typed in
        asked = st.query_params.get("model")
        if asked and asked not in fixed:  # the selectbox would drop it silently; say why the link's model is not used
            st.session_state.pop("model", None)
            st.error(f"This workshop server only offers these models: {', '.join(fixed)}; '{asked}' (from the link) "
                     f"is not one of them, so {fixed[0]} is used.")
        st.selectbox("Model", fixed, key="model", bind="query-params", label_visibility="collapsed")
        return
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


def sidebar() -> None:
    with st.sidebar:
        st.markdown("### Model")
        model_picker()
        advanced_loading()
        state.apply_pending_prompt()
        # The default only while the session has no prompt yet: a preset or the Flow page sets it through session
        # state, and a default passed beside it makes Streamlit log a warning (the box's identity is its key alone).
        st.text_area("Prompt", value=None if "prompt" in st.session_state else state.DEFAULT_PROMPT, key="prompt",
                     bind="query-params", height=90)
        model = state.load_current_model()
        if model is not None:
            info = model.info
            st.caption(f"{info.family} · {info.n_layers} layers · {info.n_heads} heads · {info.device} · {info.dtype}"
                       f"{f' ({info.device_map})' if info.device_map else ''} · loaded in {info.load_seconds:.1f} s")
            warn_unknown_words(model, state.prompt())
            n_tokens = model.unknown_tokens(state.prompt())[1]
            limit = model.token_limit()
            line = f"Prompt: {n_tokens} tokens (this server's limit: {limit})"
            (st.warning if n_tokens > limit else st.caption)(
                line + (". Shorten it: pages will refuse it." if n_tokens > limit else ""))


def report_download() -> None:
    """After the page ran: a one-file HTML report of every chart it drew."""
    items = st.session_state.get("_report_items") or []
    if not items:
        return
    title = st.session_state.get("_report_title", "Workbench report")
    context = {"model": state.model_spec(), "prompt": state.prompt(), "page": title}
    with st.sidebar:
        st.download_button(
            "Download page report (HTML)",
            data=lambda: build_html_report(title, context, items),
            file_name=f"{title.lower().replace(' ', '_')}_report.html",
            mime="text/html",
            key="report_download",
            on_click="ignore",
            help="Every chart on this page with its data, in one HTML file that opens offline.",
        )


yield_to_people()  # the server's own first visit of every page (ui/first_visit.py) runs behind people's sessions
st.set_page_config(page_title="Interpretability Workbench", page_icon="🔬", layout="wide")
if presenter_mode():
    st.markdown(PRESENTER_CSS, unsafe_allow_html=True)
pages = build_pages()
navigation = st.navigation(pages)
reproduce.follow_pending(pages)  # an experiment was just opened: go to its page
st.session_state["_report_items"] = []
runner.start_page()
sidebar()
navigation.run()
report_download()
reproduce.after_page(navigation)
reproduce.experiment_sidebar()
