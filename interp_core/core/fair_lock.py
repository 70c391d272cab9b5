"""A reentrant lock that is handed over in arrival order.

``threading.RLock`` is not fair: a thread that releases it and asks again at once (a sweep going
from one chunk's forward to the next) usually gets it back before a waiting thread wakes up, so
one participant's sweep could hold the model for its whole length while another's one-forward
request waits. :class:`FairLock` queues waiters first come, first served: a request that arrives
during a sweep waits for at most the chunk in progress.
"""

from __future__ import annotations

import threading
from collections import deque


class FairLock:
    """Reentrant, first come first served; usable as ``with lock:`` like ``threading.RLock``."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._queue: deque[int] = deque()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            if self._owner is None and not self._queue:
                self._owner, self._depth = me, 1
                return True
            if not blocking:
                return False
            self._queue.append(me)
            self._cond.notify_all()  # lets :meth:`waiting` observers see the new waiter
            got = self._cond.wait_for(lambda: self._owner is None and self._queue[0] == me,
                                      timeout=None if timeout < 0 else timeout)
            if not got:
                self._queue.remove(me)
                self._cond.notify_all()
                return False
            self._queue.popleft()
            self._owner, self._depth = me, 1
            return True

    def release(self) -> None:
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("cannot release a FairLock this thread does not hold")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    def wait_for_waiters(self, count: int, timeout: float | None = None) -> bool:
        """Block until at least ``count`` threads wait for the lock (tests order threads with this)."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._queue) >= count, timeout=timeout)

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
