"""``./workbench bench NAME``: a benchmark from a fresh clone in one command; a wrong name is refused before any set-up."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_refuses_an_unknown_name_and_lists_the_benchmarks():
    done = subprocess.run([str(ROOT / "workbench"), "bench", "no_such_benchmark"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    names = sorted(path.stem for path in (ROOT / "benchmarks").glob("*.py"))
    assert "workshop" in names and "first_load" in names
    assert done.stderr.strip().endswith(" ".join(names)), done.stderr
