"""A headless visitor that opens every page once as the server starts, so nobody waits for a page's first result.

A presenter's first click on a page should draw at once, not start the page's computation while the room
watches (issue #19): the Induction Heads page computes a forward on 100 random tokens and seven composition
scores, Steering a 33-point sweep and two 30-token generations, Activation Patching an attribution pass and
an exact sweep. :func:`visit_every_page` connects one session to the server's own Streamlit runtime, with no
browser and no websocket, and runs every page in menu order as a first-time visitor with no link parameters
would: through ``app.py`` (sidebar, default model, default prompt), each page's default preset, its
fragments' first runs. The pages' results land in the server-wide result cache (:mod:`ui.jobs`), keyed
on the model's weights and the request, which every later session reads; a visitor asking meanwhile for a
result this one is computing waits for it instead of computing it again (:func:`ui.jobs.shared`). The
requests are exactly those the pages make, so nothing here can drift from a page: there is no list of
requests to keep in step. A page that waits for a click (a confirmation, a training run) does not run it.

What it uses of Streamlit is the runtime's session API (``Runtime.connect_session``, ``AppSession.request_rerun``,
``Runtime.close_session``, the ``session_status_changed`` message), the same that its websocket handler drives
for a browser, called on the runtime's event loop as that API requires. If the visit fails or a page does not
finish, the pages it did not reach compute on their first real visit, as they all do with ``WORKBENCH_PRELOAD=0``;
``ui.serve`` logs one line either way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.runtime import Runtime, RuntimeState
from streamlit.runtime.scriptrunner import get_script_run_ctx

T = TypeVar("T")
LOG = logging.getLogger(__name__)
RUNTIME_WAIT_S = 120.0  # the server's start (Tornado, the runtime's event loop)
PAGE_WAIT_S = 300.0  # one page's first run, as long as the slowest (Probing's extraction on a first start)
QUIET_S = 0.5  # after a run ends, how long no new run must start (a page may rerun itself once, e.g. a preset)
NICE = 19  # the visitor's script threads: the lowest CPU priority, below every person's session
_visitor_sessions: set[str] = set()  # the session ids of visits in progress
results_used: set[Hashable] = set()  # the result-cache keys of every result a visit's pages were given


def yield_to_people() -> None:
    """In a first visit's session, lower the running script thread's CPU priority to :data:`NICE` (Linux threads each have
    their own; the worker threads that torch starts from it inherit it), so people's sessions run first while a page is
    visited; elsewhere nothing. ``app.py`` calls this first in every run, before any model work."""
    context = get_script_run_ctx()
    if context is None or context.session_id not in _visitor_sessions:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
    except (OSError, AttributeError):  # not Linux, or not allowed: the visit runs at the normal priority
        pass


def note_result(key: Hashable) -> None:
    """In a first visit's session, add the cache key of a result a page was given to :data:`results_used` (what the
    server keeps for its next start: the pages' own results, never those of people who opened pages meanwhile);
    elsewhere nothing. ``ui.runner`` calls this for every result it hands to a page."""
    context = get_script_run_ctx()
    if context is not None and context.session_id in _visitor_sessions:
        results_used.add(key)


class _Visitor:
    """The session's client (Streamlit's ``SessionClient``): it keeps no message, only whether the script runs."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.running = False
        self.runs_started = 0
        self.problems: list[str] = []  # exceptions and error boxes the pages showed, as text

    @property
    def client_context(self) -> None:  # no request headers, cookies or IP: there is no browser
        return None

    def write_forward_msg(self, msg: ForwardMsg) -> None:
        kind = msg.WhichOneof("type")
        if kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
            element = msg.delta.new_element
            if element.WhichOneof("type") == "exception":
                self.problems.append(f"{element.exception.type}: {element.exception.message}")
            elif element.WhichOneof("type") == "alert" and element.alert.format == Alert.ERROR:
                self.problems.append(element.alert.body)
        if kind != "session_status_changed":
            return
        with self._changed:
            running = msg.session_status_changed.script_is_running
            self.runs_started += running and not self.running
            self.running = running
            self._changed.notify_all()

    def wait_for_run(self, started_before: int, timeout: float) -> bool:
        """Wait until a run that started after ``started_before`` runs had started is over, and no other run starts
        within :data:`QUIET_S`; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if self.runs_started > started_before and not self.running:
                    settled_at, quiet_until = self.runs_started, time.monotonic() + QUIET_S
                    while self.runs_started == settled_at and (left := quiet_until - time.monotonic()) > 0:
                        self._changed.wait(left)
                    if self.runs_started == settled_at:
                        return True
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)


def _runtime(timeout: float) -> Runtime | None:
    """The server's runtime once its event loop runs, or None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Runtime.exists() and Runtime.instance().state not in (RuntimeState.INITIAL, RuntimeState.STOPPING,
                                                                   RuntimeState.STOPPED):
            return Runtime.instance()
        time.sleep(0.1)
    return None


def _on_loop(loop: asyncio.AbstractEventLoop, call: Callable[[], T]) -> T:
    """``call()`` on the runtime's event loop (its session API is not thread-safe), from this thread."""

    async def wrapped() -> T:
        return call()

    return asyncio.run_coroutine_threadsafe(wrapped(), loop).result(timeout=RUNTIME_WAIT_S)


def visit_every_page(url_paths: Iterable[str]) -> dict[str, tuple[float, list[str]]]:
    """Open each page (its URL path; ``""`` is the home page) once, in order, in one headless session.

    Returns:
        For each page whose first run finished, in order: its seconds and the problems it showed (exceptions, error
        boxes). A page that does not finish within :data:`PAGE_WAIT_S` ends the visit.
    """
    runtime = _runtime(RUNTIME_WAIT_S)
    if runtime is None:
        LOG.warning("first visit: the Streamlit runtime did not start; pages compute on their first real visit")
        return {}
    loop = runtime._get_async_objs().eventloop  # the loop the runtime's session API must be called on
    visitor = _Visitor()
    session_id = _on_loop(loop, lambda: runtime.connect_session(client=visitor, user_info={}))
    visited: dict[str, tuple[float, list[str]]] = {}
    _visitor_sessions.add(session_id)
    try:
        session = runtime.get_app_session(session_id)
        if session is None:
            return visited
        for path in url_paths:
            started, t0, problems_before = visitor.runs_started, time.perf_counter(), len(visitor.problems)
            _on_loop(loop, lambda p=path: session.request_rerun(ClientState(page_name=p)))
            if not visitor.wait_for_run(started, PAGE_WAIT_S):
                LOG.warning("first visit: page %r did not finish within %.0f s; the visit stops", path, PAGE_WAIT_S)
                break
            visited[path] = (time.perf_counter() - t0 - QUIET_S, visitor.problems[problems_before:])
    finally:
        _on_loop(loop, lambda: runtime.close_session(session_id))
        _visitor_sessions.discard(session_id)
    return visited
