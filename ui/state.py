"""The shared model and prompt, as every page sees them.

The model is loaded once per server with ``st.cache_resource`` and shared by every session,
so pages must never mutate it; the engine takes the model's lock around every forward.
"""

from __future__ import annotations

import gc

import streamlit as st

from interp_core import DEFAULT_MODEL, LoadedModel, WorkbenchError, load_model
from interp_core.core.load_options import LoadOptions
from interp_core.core.loading import default_model_ready, prepare_default_model
from ui.config import allowed_models
from ui.loading_views import chosen_options

DEFAULT_PROMPT = "The capital of France is"
_PENDING_PROMPT = "_pending_prompt"  # a prompt a page asked for, applied before the sidebar draws its prompt box
_FAILED = "_model_failed"  # the spec whose load failed in this script run (its error is already on screen)


@st.cache_resource(show_spinner=False, max_entries=4)
def get_model(spec: str, options: LoadOptions | None = None) -> LoadedModel:
    """The model for ``spec`` (loaded with ``options``: dtype, device map; default float32 on one device),
    loaded once per server and shared by every session (read-only)."""
    model = load_model(spec, options=options)
    freeze_heap()
    return model


def freeze_heap() -> None:
    """Take every object alive now out of the cyclic garbage collector's walks (:func:`gc.freeze`).

    Streamlit runs a full ``gc.collect()`` after every script run, a fragment's included
    (``runner.postScriptGC``). With torch, transformers and a model loaded that walks about 470k
    objects: 0.3 s of CPU with the GIL held, so the run's last message waits behind it; it was most
    of an Attention slider move. Nearly all of these objects are modules that transformers imports
    while loading, alive for good; a loaded model holds no reference cycles (it is freed by
    reference counting alone), so freezing it leaks nothing when the cache drops it. Objects made
    later are collected as before.
    """
    gc.collect()
    gc.freeze()


def model_spec() -> str:
    return st.session_state.get("model") or DEFAULT_MODEL


def prompt() -> str:
    return st.session_state.get("prompt", DEFAULT_PROMPT)


def set_prompt_next_run(text: str) -> None:
    """Ask for the sidebar prompt to be ``text`` from the next script run on (a page cannot set it in
    this run: the sidebar widget already exists). The page calls ``st.rerun()`` after this."""
    st.session_state[_PENDING_PROMPT] = text


def apply_pending_prompt() -> None:
    """Called by the sidebar before it draws the prompt box: apply :func:`set_prompt_next_run`."""
    if _PENDING_PROMPT in st.session_state:
        st.session_state["prompt"] = st.session_state.pop(_PENDING_PROMPT)


def load_current_model() -> LoadedModel | None:
    """Load (or fetch from cache) the sidebar's model; show an error and return None on failure.

    app.py's sidebar calls this first in every script run; the outcome is remembered in
    session state so that :func:`require_model` on the page neither shows the error a second
    time nor tries the failing load again.
    """
    spec = model_spec()
    fixed = allowed_models()
    if fixed and spec not in fixed:
        return _failed(spec, f"This workshop server only offers these models: {', '.join(fixed)}; '{spec}' is not one of them.")
    try:
        options = chosen_options()
        if spec == DEFAULT_MODEL and not default_model_ready():
            bar = st.progress(0.0, text="First start: preparing the bundled SmolLM2-135M")
            prepare_default_model(lambda fraction, message: bar.progress(min(fraction, 1.0), text=message))
            bar.empty()
        with st.spinner(f"Loading {spec}…"):
            model = get_model(spec) if options == LoadOptions() else get_model(spec, options)
    except WorkbenchError as error:
        return _failed(spec, f"Could not load model '{spec}': {error}")
    st.session_state.pop(_FAILED, None)
    return model


def _failed(spec: str, message: str) -> None:
    st.error(message)
    st.session_state[_FAILED] = spec


def require_model() -> LoadedModel:
    """The current model, or stop the page.

    The sidebar has already tried this model in the same script run: when that failed, its
    error is on screen, so the page adds only what to do next instead of a second copy.
    """
    if st.session_state.get(_FAILED) == model_spec():
        model = None
    else:
        model = load_current_model()
    if model is None:
        st.info("Pick another model in the sidebar; the bundled smollm2-135m always works offline.")
        st.stop()
    return model


def show_error(error: Exception) -> None:
    """Show a user-fixable error as a red box; the rest of the page keeps working."""
    st.error(str(error))
