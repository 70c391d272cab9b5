"""Fairness on one shared model: a sweep never holds the model between its chunks, and the model's
lock is handed over first come, first served, so a participant's one-forward request waits for at
most the chunk in progress. Threads are ordered with events, never with sleeps."""

from __future__ import annotations

import threading

import torch

from interp_core.core.fair_lock import FairLock
from interp_core.techniques.contract import run
from interp_core.techniques.patching_requests import PatchRequest

WAIT = 60.0


def test_the_lock_goes_to_the_thread_that_asked_first():
    """The holder releases and asks again at once (a sweep's next chunk): the waiting thread gets it first."""
    lock, order = FairLock(), []
    lock.acquire()
    waiter = threading.Thread(target=lambda: (lock.acquire(), order.append("waiter"), lock.release()))
    waiter.start()
    assert lock.wait_for_waiters(1, WAIT)
    lock.release()
    with lock:  # queued behind the waiter: runs after it
        order.append("holder again")
    waiter.join(WAIT)
    assert order == ["waiter", "holder again"]


def test_the_lock_is_reentrant_and_refuses_a_stranger():
    lock = FairLock()
    with lock, lock:
        got = []
        other = threading.Thread(target=lambda: got.append(lock.acquire(blocking=False)))
        other.start()
        other.join(WAIT)
        assert got == [False]
    assert lock.acquire(blocking=False)
    lock.release()


def test_a_light_request_runs_while_a_sweep_is_between_chunks(tiny_gpt2):
    """The sweep's progress callback waits for a light forward: it completes, so the sweep holds no lock there."""
    light_done, first_progress = threading.Event(), threading.Event()

    def on_progress(fraction: float, message: str = "") -> None:
        first_progress.set()
        assert light_done.wait(WAIT), "the light request could not run while the sweep reported progress"

    request = PatchRequest("When Mary and John went to the store, John gave a drink to",
                           "When Mary and John went to the store, Mary gave a drink to", " Mary", " John", "resid_pre", "exact")
    sweep = threading.Thread(target=lambda: run(tiny_gpt2, request, on_progress))
    sweep.start()
    assert first_progress.wait(WAIT)
    logits = tiny_gpt2.forward(torch.tensor([[1, 2, 3]]))  # takes the model's lock
    light_done.set()
    sweep.join(WAIT)
    assert logits.shape[:2] == (1, 3) and not sweep.is_alive()
