"""One page runner: every technique on every page goes through :func:`run`.

It caches the result server-wide (and shares a computation in progress with every session asking
for the same, :func:`ui.jobs.shared`) on ``(model weights fingerprint, request)`` (a retrained toy
model has a new fingerprint, so it is never served old numbers), shows a spinner for light
requests and a progress bar plus the heavy-job queue for heavy ones (``request.heavy``), and
shows a :class:`WorkbenchError` as one red box. On an error it returns None, so the page can stop
only the part that needed the result (:func:`run_or_stop` stops the whole page).

Every result it hands to a page is also recorded as a :class:`Step` (:func:`page_steps`), so the
page's "Reproduce in Python" snippet and its saved experiment are made from the requests it ran.
A table the page's view code picks from a result (one head's pattern, one position's lines) comes
from :func:`view`, which records it as a :class:`ViewStep`, so the snippet gives that download too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pandas as pd
import streamlit as st

from interp_core import LoadedModel, WorkbenchError
from interp_core.core.load_options import LoadOptions
from interp_core.techniques.contract import Request, Result, Step
from interp_core.techniques.contract import run as run_technique
from interp_core.techniques.view_step import ViewStep, derive
from ui import first_visit, jobs

R = TypeVar("R", bound=Result)
STEPS = "_repro_steps"  # session state: the steps of the page being drawn, in order


def start_page() -> None:
    """Forget the previous page's steps (app.py, before the page runs)."""
    st.session_state[STEPS] = []


def page_steps() -> list[Step | ViewStep]:
    """The (model, request, result) steps the current page has shown, and its view steps, in order."""
    return list(st.session_state.get(STEPS, []))


def live_steps() -> list[Step | ViewStep]:
    """The current page's step list itself, which a fragment's rerun keeps updating after the page's full run
    (what the visit's downloads read, so they follow a slider moved since)."""
    return st.session_state.setdefault(STEPS, [])


def _same_request(a: Request, b: Request) -> bool:
    try:
        return a is b or (type(a) is type(b) and bool(a == b))
    except (TypeError, ValueError):  # a request holding arrays compares element-wise
        return False


def record(model: LoadedModel | None, request: Request, result: Result) -> None:
    """Add one step; a fragment's rerun replaces its earlier step for the same request instead of adding one."""
    steps = st.session_state.setdefault(STEPS, [])
    spec = None if model is None else model.info.name
    options = LoadOptions() if model is None else model.options
    steps[:] = [s for s in steps if not (isinstance(s, Step) and s.model == spec and s.options == options
                                         and _same_request(s.request, request))]
    steps.append(Step(spec, None if model is None else model.fingerprint, request, result, options))
    first_visit.note_result(cache_key(model, request))


def view(names: str | tuple[str, ...], result: Result, method: str, **arguments: object) -> pd.DataFrame:
    """``result.method(**arguments)``, a table the page offers as the download(s) ``names``, recorded as a view step.

    ``method`` is a public, documented method of the result (no model run). A view step recorded
    earlier under one of the same names is replaced (a fragment's rerun redraws its charts);
    :func:`forget_views` drops those of charts a fragment no longer draws.

    Raises:
        WorkbenchError: the method refuses the arguments (e.g. a position outside the prompt).
    """
    step, table = derive(names, result, method, **arguments)
    steps = st.session_state.setdefault(STEPS, [])
    steps[:] = [s for s in steps if not (isinstance(s, ViewStep) and set(s.names) & set(step.names))]
    steps.append(step)
    return table


def forget_views(names: set[str] | None = None) -> None:
    """Drop the view steps of the downloads ``names`` (None: all): :func:`ui.page.forget_charts` calls this."""
    steps = st.session_state.setdefault(STEPS, [])
    steps[:] = [s for s in steps if not (isinstance(s, ViewStep) and (names is None or set(s.names) & set(names)))]


def cache_key(model: LoadedModel | None, request: Request) -> tuple:
    """``(weights fingerprint, request)``; a request that needs no model (training a toy from scratch) has None."""
    return ("technique", None if model is None else model.fingerprint, request)


def cached(model: LoadedModel, request: Request) -> Result | None:
    """The result if some session computed it already, else None (never computes)."""
    found = jobs.lookup(cache_key(model, request))
    if found is not None:
        record(model, request, found)  # type: ignore[arg-type]
    return found  # type: ignore[return-value]


def run(model: LoadedModel | None, request: Request, compute: Callable[[], Result] | None = None) -> Result | None:
    """The result of ``request`` on ``model``, computed at most once per server; None after an error (shown).

    Args:
        compute: for a light request, what to call on a cache miss instead of the plain technique run:
            one that shows partial output while it works (the Steering page streams tokens). It must
            return exactly the request's result, since that is what is cached.
    """
    key = cache_key(model, request)
    try:
        if request.heavy:
            found = jobs.cached_job(request.label, key, lambda progress: run_technique(model, request, progress), heavy=True)
        elif (found := jobs.lookup(key)) is None:
            with st.spinner(f"{request.label}…"):  # shared: a session asking for it meanwhile waits for this result
                found = jobs.shared(key, lambda _progress: compute() if compute is not None else run_technique(model, request))
        record(model, request, found)  # type: ignore[arg-type]
        return found  # type: ignore[return-value]
    except WorkbenchError as error:
        st.error(str(error))
        return None


def run_or_stop(model: LoadedModel | None, request: Request) -> Result:
    """:func:`run`, or stop the page after the error box."""
    result = run(model, request)
    if result is None:
        st.stop()
    return result
