"""Files that only save time (cached hidden states, kept first results): written atomically, the newest few kept.

A cache that cannot be written or read (read-only home, full disk) is skipped by its caller: it only saves time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_newest(path: Path, write: Callable[[Path], None], keep: int) -> bool:
    """``write(staging)`` to a staging file beside ``path``, move it into place (a reader never sees half a file), then
    remove all but the ``keep`` most recently used files of the folder with ``path``'s suffix; False on an
    :class:`OSError`. The staging file has ``path``'s suffix too (``numpy.savez`` adds ``.npz`` to a name without it)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
        write(staging)
        staging.replace(path)
        files = sorted(path.parent.glob(f"*{path.suffix}"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in files[keep:]:
            old.unlink(missing_ok=True)
    except OSError:
        return False
    return True


def mark_used(path: Path) -> None:
    """Make ``path`` the most recently used file, so that :func:`write_newest`'s pruning keeps it."""
    try:
        os.utime(path)
    except OSError:
        pass
