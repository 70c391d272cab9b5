"""Long computations: a server-wide result cache, a queue for heavy jobs, and progress bars.

``st.cache_data`` cannot show progress from inside (elements written from a cached function
to a container made outside raise ``CacheReplayClosureError``), so long jobs go through
:func:`cached_job` instead: it keeps results in a server-wide LRU keyed by plain values,
shows a progress bar while computing, and lets at most ``max_heavy_jobs()`` heavy jobs run at
once, showing the others their place in the queue, so one user's sweep cannot starve
everyone else's sliders.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

import streamlit as st

T = TypeVar("T")
Progress = Callable[[float, str], None]

_MAX_RESULTS = 256
_results: OrderedDict[Hashable, object] = OrderedDict()
_results_lock = threading.Lock()
_queue_lock = threading.Condition()
_running = 0
_waiting: list[object] = []


def max_heavy_jobs() -> int:
    """Heavy jobs allowed at once (``$WORKBENCH_MAX_HEAVY_JOBS``, default 2)."""
    return max(1, int(os.environ.get("WORKBENCH_MAX_HEAVY_JOBS", "2")))


def remember(key: Hashable, value: object) -> None:
    with _results_lock:
        _results[key] = value
        _results.move_to_end(key)
        while len(_results) > _MAX_RESULTS:
            _results.popitem(last=False)


def lookup(key: Hashable) -> object | None:
    """A cached result, or None."""
    with _results_lock:
        if key in _results:
            _results.move_to_end(key)
            return _results[key]
    return None


def _wait_for_slot(ticket: object, status: st.delta_generator.DeltaGenerator) -> None:
    """Join the queue and return once this job holds a slot.

    The ticket leaves the queue on every way out: a rerun (``RerunException``) or a closed
    session (``StopException``) is raised from ``status.info`` while the job waits, and a ticket
    left behind would block every later job on the server.
    """
    global _running
    with _queue_lock:
        _waiting.append(ticket)
    try:
        while True:
            with _queue_lock:
                if _running < max_heavy_jobs() and _waiting[0] is ticket:
                    _waiting.pop(0)
                    _running += 1
                    _queue_lock.notify_all()
                    return
                ahead, running = _waiting.index(ticket) + _running, _running
            # Outside the lock: Streamlit raises a rerun or stop request from this call.
            status.info(f"Queued: {ahead} job(s) ahead of yours in the heavy-job queue ({running} running). It starts by itself.")
            with _queue_lock:
                _queue_lock.wait(timeout=1.0)
    except BaseException:
        with _queue_lock:
            if ticket in _waiting:
                _waiting.remove(ticket)
            _queue_lock.notify_all()
        raise


def queue_state() -> tuple[int, int]:
    """``(running, waiting)`` heavy jobs on this server right now."""
    with _queue_lock:
        return _running, len(_waiting)


def _release_slot() -> None:
    global _running
    with _queue_lock:
        _running -= 1
        _queue_lock.notify_all()


def cached_job(label: str, key: Hashable, compute: Callable[[Progress], T], *, heavy: bool = True) -> T:
    """Return ``compute(on_progress)`` for ``key``, computing it at most once per server.

    Args:
        label: what the progress bar says, e.g. "Patching the residual stream".
        key: plain values that determine the result (model spec, prompts, options).
        compute: the engine call; it receives an ``on_progress(fraction, message)`` callback.
        heavy: whether the job waits for a slot in the heavy-job queue.
    """
    found = lookup(key)
    if found is not None:
        return found  # type: ignore[return-value]
    status = st.empty()
    ticket = object()
    if heavy:
        _wait_for_slot(ticket, status)
    try:
        bar = status.progress(0.0, text=label)
        started = time.perf_counter()

        def on_progress(fraction: float, message: str = "") -> None:
            bar.progress(min(max(fraction, 0.0), 1.0), text=f"{label}: {message}" if message else label)

        value = compute(on_progress)
        remember(key, value)
        status.caption(f"{label}: done in {time.perf_counter() - started:.1f} s")
        return value
    finally:
        if heavy:
            _release_slot()
