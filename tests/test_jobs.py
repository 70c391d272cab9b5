"""The heavy-job queue: at most N heavy jobs at once, the rest told their place, results cached,
and a session that reruns or goes away while it waits never blocks the queue.

Threads stand in for sessions. Streamlit stops a waiting session by raising ``RerunException``
(a rerun: a preset click) or ``StopException`` (the session closed) from its next ``st.*`` call,
which for a queued job is the placeholder's ``info``; the fake placeholder raises the same
exceptions. Threads are ordered with events, never with sleeps.
"""

from __future__ import annotations

import threading

import pytest
from streamlit.runtime.scriptrunner_utils.exceptions import RerunException, StopException
from streamlit.runtime.scriptrunner_utils.script_requests import RerunData

from ui import jobs

WAIT = 20.0  # seconds any event may take before the test fails (the queue polls every 1 s)


class Session:
    """One participant: a placeholder log, a 'queued' event, and an optional request to leave."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.log: list[str] = []
        self.queued = threading.Event()
        self.leave: BaseException | None = None  # raised from the next st call, as Streamlit does
        self.texts: list[str] = []  # what its progress bar said
        self.progressed = threading.Event()

    def info(self, text: str) -> None:
        self.log.append(text)
        self.queued.set()
        if self.leave is not None:
            error, self.leave = self.leave, None
            raise error

    def progress(self, fraction: float, text: str = "") -> Session:
        self.log.append(f"progress {fraction:.2f}")
        self.texts.append(text)
        self.progressed.set()
        return self

    def caption(self, text: str) -> None:
        self.log.append(text)


@pytest.fixture()
def sessions(monkeypatch):
    """Sessions by thread name; ``st.empty()`` in a thread returns that thread's session."""
    table: dict[str, Session] = {}
    monkeypatch.setattr(jobs.st, "empty", lambda: table.setdefault(threading.current_thread().name, Session("?")))
    monkeypatch.setenv("WORKBENCH_MAX_HEAVY_JOBS", "1")
    yield table
    left = jobs.queue_state()
    with jobs._queue_lock:  # reset, so one failure cannot hang the tests after it
        jobs._waiting.clear()
        jobs._running = 0
    assert left == (0, 0), "every ticket and slot is given back"


def start(table: dict[str, Session], name: str, target) -> threading.Thread:
    table[name] = Session(name)
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


def blocking_job(started: threading.Event, release: threading.Event, value: int = 1):
    def compute(on_progress):
        started.set()
        assert release.wait(WAIT)
        return value
    return compute


def test_second_heavy_job_waits_and_sees_its_place(sessions):
    """B waits while A runs, is told one job is ahead, and runs once A is done."""
    a_started, release, order = threading.Event(), threading.Event(), []

    def quick(on_progress):
        order.append("B start")
        on_progress(0.5, "half")
        return 2

    a = start(sessions, "A", lambda: jobs.cached_job("A", ("q-a", id(order)), blocking_job(a_started, release)))
    assert a_started.wait(WAIT)
    b = start(sessions, "B", lambda: jobs.cached_job("B", ("q-b", id(order)), quick))
    assert sessions["B"].queued.wait(WAIT)
    assert order == []  # B is queued behind A
    assert any("1 job(s) ahead" in line for line in sessions["B"].log)
    release.set()
    a.join(WAIT)
    b.join(WAIT)
    assert order == ["B start"]
    assert "progress 0.50" in sessions["B"].log


@pytest.mark.parametrize("slots", [1, 2])
def test_sessions_that_rerun_or_leave_while_queued_do_not_stall_the_queue(sessions, monkeypatch, slots):
    """B reruns and C disconnects while queued; their tickets leave, so B's new job and D's still run."""
    monkeypatch.setenv("WORKBENCH_MAX_HEAVY_JOBS", str(slots))
    release = threading.Event()
    holders = []
    for i in range(slots):  # fill every slot
        started = threading.Event()
        holders.append(start(sessions, f"A{i}", lambda s=started, i=i: jobs.cached_job("A", ("r-a", i, slots), blocking_job(s, release))))
        assert started.wait(WAIT)
    outcome: dict[str, object] = {}

    def rerunning_session() -> None:
        try:
            jobs.cached_job("B", ("r-b1", slots), lambda p: outcome.setdefault("B first", 1))
        except RerunException:  # the rerun runs the script again: a new job joins the queue
            outcome["B rerun"] = True
            outcome["B second"] = jobs.cached_job("B", ("r-b2", slots), lambda p: 2)

    def leaving_session() -> None:
        try:
            jobs.cached_job("C", ("r-c", slots), lambda p: outcome.setdefault("C ran", 3))
        except StopException:
            outcome["C left"] = True

    b = start(sessions, "B", rerunning_session)
    c = start(sessions, "C", leaving_session)
    assert sessions["B"].queued.wait(WAIT) and sessions["C"].queued.wait(WAIT)
    sessions["B"].queued.clear()
    sessions["B"].leave = RerunException(RerunData())
    sessions["C"].leave = StopException()
    c.join(WAIT)
    assert outcome.get("C left") and not c.is_alive()
    assert sessions["B"].queued.wait(WAIT)  # B's second job is queued (the slots are still full)
    release.set()
    for thread in holders:
        thread.join(WAIT)
    b.join(WAIT)
    assert outcome.get("B rerun") and outcome.get("B second") == 2 and "B first" not in outcome
    d = start(sessions, "D", lambda: outcome.setdefault("D", jobs.cached_job("D", ("r-d", slots), lambda p: 4)))
    d.join(WAIT)
    assert outcome.get("D") == 4, "a new session's job runs once the queue is free"
    assert "C ran" not in outcome


def test_a_job_interrupted_while_running_gives_its_slot_back(sessions):
    """A rerun raised from the progress bar mid-job releases the slot; the next job runs."""
    def interrupted(on_progress):
        raise RerunException(RerunData())

    with pytest.raises(RerunException):
        jobs.cached_job("I", ("interrupted",), interrupted)
    assert jobs.queue_state() == (0, 0)
    assert jobs.cached_job("J", ("after-interrupt",), lambda p: 5) == 5


def test_results_are_cached_per_key(sessions):
    """A second call with the same key returns the first result without computing."""
    calls = []
    key = ("test-cache", id(calls))
    first = jobs.cached_job("C", key, lambda p: calls.append(1) or 42)
    second = jobs.cached_job("C", key, lambda p: calls.append(1) or 43)
    assert (first, second, len(calls)) == (42, 42, 1)


def test_light_jobs_skip_the_queue(sessions):
    """A light job runs at once even when every heavy slot is taken."""
    with jobs._queue_lock:
        jobs._running += 5  # the queue is full
    try:
        assert jobs.cached_job("L", ("light", id(sessions)), lambda p: 7, heavy=False) == 7
    finally:
        with jobs._queue_lock:
            jobs._running -= 5


# --- shared work: identical requests arriving together compute once ---------------------------------


def test_identical_requests_arriving_together_compute_once(sessions):
    """B asks for A's key while A computes it: B waits (seeing A's progress), then gets A's value; nothing runs twice."""
    started, release, calls, seen = threading.Event(), threading.Event(), [], []
    b_waits = threading.Event()
    key = ("flight", id(calls))

    def compute_a(on_progress):
        calls.append("A")
        on_progress(0.25, "a quarter")
        started.set()
        assert release.wait(WAIT)
        return {"value": 41}

    def waiting(fraction, message):
        seen.append((fraction, message))
        b_waits.set()

    out: dict[str, object] = {}
    a = start(sessions, "A", lambda: out.setdefault("A", jobs.shared(key, compute_a)))
    assert started.wait(WAIT)
    b = start(sessions, "B", lambda: out.setdefault("B", jobs.shared(key, lambda p: calls.append("B") or {"value": 0}, waiting=waiting)))
    assert b_waits.wait(WAIT)  # B is waiting on A's flight, not computing
    assert calls == ["A"] and seen[0] == (0.25, "a quarter")
    release.set()
    a.join(WAIT)
    b.join(WAIT)
    assert calls == ["A"], "the second session never computed"
    assert out["A"] is out["B"], "both sessions hold the one result"
    assert jobs.lookup(key) is out["A"] and not jobs._flights


def test_a_bad_input_error_reaches_every_waiting_session(sessions):
    """A WorkbenchError of the computing session is what the waiting one shows too (no second attempt)."""
    from interp_core import WorkbenchError

    started, release, b_waits, calls = threading.Event(), threading.Event(), threading.Event(), []
    key = ("flight-error", id(calls))

    def failing(on_progress):
        calls.append("A")
        started.set()
        assert release.wait(WAIT)
        raise WorkbenchError("the answer token is not in the vocabulary")

    errors: dict[str, BaseException] = {}

    def session(name, compute, waiting=None):
        try:
            jobs.shared(key, compute, waiting=waiting)
        except WorkbenchError as error:
            errors[name] = error

    a = start(sessions, "A", lambda: session("A", failing))
    assert started.wait(WAIT)
    b = start(sessions, "B", lambda: session("B", lambda p: calls.append("B"), lambda f, m: b_waits.set()))
    assert b_waits.wait(WAIT)
    release.set()
    a.join(WAIT)
    b.join(WAIT)
    assert calls == ["A"] and str(errors["B"]) == str(errors["A"]) == "the answer token is not in the vocabulary"
    assert jobs.lookup(key) is None, "an error is not cached: a later request tries again"


def test_a_waiting_session_computes_when_the_computing_one_is_interrupted(sessions):
    """A's session reruns mid-computation: B, waiting on it, computes the result itself."""
    started, release, b_waits = threading.Event(), threading.Event(), threading.Event()
    key = ("flight-interrupted", id(started))

    def interrupted(on_progress):
        started.set()
        assert release.wait(WAIT)
        raise RerunException(RerunData())

    out: dict[str, object] = {}

    def session_a():
        try:
            jobs.shared(key, interrupted)
        except RerunException:
            out["A rerun"] = True

    a = start(sessions, "A", session_a)
    assert started.wait(WAIT)
    b = start(sessions, "B", lambda: out.setdefault("B", jobs.shared(key, lambda p: 7, waiting=lambda f, m: b_waits.set())))
    assert b_waits.wait(WAIT)
    release.set()
    a.join(WAIT)
    b.join(WAIT)
    assert out == {"A rerun": True, "B": 7} and jobs.lookup(key) == 7


def test_a_heavy_job_started_by_another_session_is_shared_not_queued(sessions):
    """B asks for the heavy job A is running: B takes no queue slot and shows A's progress, then A's result."""
    started, release = threading.Event(), threading.Event()
    key = ("flight-heavy", id(started))

    def heavy(on_progress):
        on_progress(0.5, "half way")
        started.set()
        assert release.wait(WAIT)
        return 99

    out: dict[str, object] = {}
    a = start(sessions, "A", lambda: out.setdefault("A", jobs.cached_job("Sweep", key, heavy)))
    assert started.wait(WAIT)
    b = start(sessions, "B", lambda: out.setdefault("B", jobs.cached_job("Sweep", key, lambda p: -1)))
    assert sessions["B"].progressed.wait(WAIT)  # B's first draw: the shared job's progress
    assert jobs.queue_state() == (1, 0), "B holds no slot and is not queued"
    assert "another participant" in sessions["B"].texts[0] and "half way" in sessions["B"].texts[0]
    release.set()
    a.join(WAIT)
    b.join(WAIT)
    assert out == {"A": 99, "B": 99}
