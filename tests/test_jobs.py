"""The heavy-job queue: at most N heavy jobs at once, the rest told their place, results cached."""

from __future__ import annotations

import threading
import time

import pytest

from ui import jobs


class FakeSlot:
    """Stands in for an ``st.empty()`` placeholder and records what it was told."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def info(self, text: str) -> None:
        self.log.append(text)

    def progress(self, fraction: float, text: str = "") -> FakeSlot:
        self.log.append(f"progress {fraction:.2f}")
        return self

    def caption(self, text: str) -> None:
        self.log.append(text)


@pytest.fixture()
def fake_st(monkeypatch):
    logs: dict[str, list[str]] = {}

    def empty():
        name = threading.current_thread().name
        return FakeSlot(logs.setdefault(name, []))

    monkeypatch.setattr(jobs.st, "empty", empty)
    monkeypatch.setenv("WORKBENCH_MAX_HEAVY_JOBS", "1")
    return logs


def test_second_heavy_job_waits_and_sees_its_place(fake_st):
    release = threading.Event()
    order: list[str] = []

    def slow(on_progress):
        order.append("A start")
        release.wait(10)
        order.append("A end")
        return 1

    def quick(on_progress):
        order.append("B start")
        on_progress(0.5, "half")
        return 2

    a = threading.Thread(target=lambda: jobs.cached_job("A", ("test-a", time.time()), slow), name="A")
    b = threading.Thread(target=lambda: jobs.cached_job("B", ("test-b", time.time()), quick), name="B")
    a.start()
    time.sleep(0.3)
    b.start()
    time.sleep(1.5)
    assert order == ["A start"]  # B is queued behind A
    assert any("1 job(s) ahead" in line for line in fake_st["B"])
    release.set()
    a.join(10)
    b.join(10)
    assert order == ["A start", "A end", "B start"]
    assert "progress 0.50" in fake_st["B"]


def test_results_are_cached_per_key(fake_st):
    calls = []
    key = ("test-cache", time.time())
    first = jobs.cached_job("C", key, lambda p: calls.append(1) or 42)
    second = jobs.cached_job("C", key, lambda p: calls.append(1) or 43)
    assert (first, second, len(calls)) == (42, 42, 1)


def test_light_jobs_skip_the_queue(fake_st):
    with jobs._queue_lock:
        jobs._running += 5  # the queue is full
    try:
        assert jobs.cached_job("L", ("light", time.time()), lambda p: 7, heavy=False) == 7
    finally:
        with jobs._queue_lock:
            jobs._running -= 5
