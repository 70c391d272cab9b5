"""Long computations: a server-wide result cache, a queue for heavy jobs, and progress bars.

``st.cache_data`` cannot show progress from inside (elements written from a cached function
to a container made outside raise ``CacheReplayClosureError``), so long jobs go through
:func:`cached_job` instead: it keeps results in a server-wide LRU keyed by plain values,
shows a progress bar while computing, and lets at most ``max_heavy_jobs()`` heavy jobs run at
once, showing the others their place in the queue, so one user's sweep cannot starve
everyone else's sliders.

Work is shared across sessions even while it runs (:func:`shared`): a request that another
session is computing right now is not computed again; the second session waits for the
first one's result (thirty participants opening the presenter's link compute it once).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

import streamlit as st

from interp_core import WorkbenchError

T = TypeVar("T")
Progress = Callable[[float, str], None]

_MAX_RESULTS = 256
_results: OrderedDict[Hashable, object] = OrderedDict()
_results_lock = threading.Lock()
_queue_lock = threading.Condition()
_running = 0
_waiting: list[object] = []
_flights: dict[Hashable, _Flight] = {}  # key -> the computation in progress for it (guarded by _results_lock)


class _Flight:
    """One computation in progress, which other sessions asking for the same key wait for."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: object = None
        self.error: BaseException | None = None  # what the computing session raised, if it failed
        self.progress: tuple[float, str] = (0.0, "")  # its latest progress, mirrored to those waiting


def max_heavy_jobs() -> int:
    """Heavy jobs allowed at once (``$WORKBENCH_MAX_HEAVY_JOBS``, default 2)."""
    return max(1, int(os.environ.get("WORKBENCH_MAX_HEAVY_JOBS", "2")))


def remember(key: Hashable, value: object) -> None:
    with _results_lock:
        _results[key] = value
        _results.move_to_end(key)
        while len(_results) > _MAX_RESULTS:
            _results.popitem(last=False)


def entries() -> list[tuple[Hashable, object]]:
    """Every cached ``(key, result)``, oldest first (a copy: the cache may change meanwhile)."""
    with _results_lock:
        return list(_results.items())


def lookup(key: Hashable) -> object | None:
    """A cached result, or None."""
    with _results_lock:
        if key in _results:
            _results.move_to_end(key)
            return _results[key]
    return None


def shared(key: Hashable, compute: Callable[[Progress], T], *, waiting: Progress | None = None) -> T:
    """The cached result for ``key``, or ``compute(on_progress)``, run by one session at a time per key.

    A session asking for a key that another session is computing right now waits for that result
    instead of computing it a second time. If the computing session fails with a
    :class:`WorkbenchError` (bad input), the waiting ones raise the same error; if it is interrupted
    (a rerun, a closed session, any other exception), one of them computes the result itself.

    Args:
        waiting: called with the computing session's latest progress ``(fraction, message)`` while
            this session waits: at once, then about twice a second. Streamlit raises a rerun or a
            stop of this session from its next ``st.*`` call, so a caller that draws something
            here can leave while it waits.
    """
    while True:
        with _results_lock:
            if key in _results:
                _results.move_to_end(key)
                return _results[key]  # type: ignore[return-value]
            flight = _flights.get(key)
            leader = flight is None
            if leader:
                flight = _flights[key] = _Flight()
        assert flight is not None
        if leader:
            return _lead(key, flight, compute)
        while not flight.done.is_set():
            if waiting is not None:
                waiting(*flight.progress)
            flight.done.wait(timeout=0.5)
        if flight.error is None:
            return flight.value  # type: ignore[return-value]
        if isinstance(flight.error, WorkbenchError):
            raise flight.error
        # the computing session was interrupted: ask again (this session may compute it now)


def _lead(key: Hashable, flight: _Flight, compute: Callable[[Progress], T]) -> T:
    """Compute ``key``'s value for everyone waiting on ``flight``; always settle the flight."""

    def on_progress(fraction: float, message: str = "") -> None:
        flight.progress = (fraction, message)

    try:
        value = compute(on_progress)
        remember(key, value)
        flight.value = value
        return value
    except BaseException as error:
        flight.error = error
        raise
    finally:
        with _results_lock:
            _flights.pop(key, None)
        flight.done.set()


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
    started = time.perf_counter()

    def show(fraction: float, message: str = "") -> None:
        status.progress(min(max(fraction, 0.0), 1.0), text=f"{label}: {message}" if message else label)

    def waiting(fraction: float, message: str = "") -> None:
        show(fraction, f"computed for another participant right now, shared with you{'; ' + message if message else ''}")

    def run_here(shared_progress: Progress) -> T:
        ticket = object()
        if heavy:
            _wait_for_slot(ticket, status)
        try:
            bar = status.progress(0.0, text=label)

            def on_progress(fraction: float, message: str = "") -> None:
                shared_progress(fraction, message)
                bar.progress(min(max(fraction, 0.0), 1.0), text=f"{label}: {message}" if message else label)

            return compute(on_progress)
        finally:
            if heavy:
                _release_slot()

    value = shared(key, run_here, waiting=waiting)
    status.caption(f"{label}: done in {time.perf_counter() - started:.1f} s")
    return value
