"""Where a light page's first render on a new prompt spends its server CPU.

Runs each light page (Home, Logit Lens, Attention, DLA) in-process under Streamlit's AppTest on
one model (default: the bundled SmolLM2-135M). Per page it first renders a warm-up prompt (model
load, imports and Altair's schema are paid there), then ``--repeats`` new prompts of about 20
tokens, none seen before, so every technique result is computed afresh as it would be for a
participant's own prompt. Each render is split, by timers wrapped around the functions that do
the work, into:

- engine: the technique runs (``ui.runner``'s call into ``interp_core``), model forwards included;
- altair: Altair chart objects turned into Vega-Lite specs (``to_dict``: schema validation);
- chart msg: the rest of ``st.altair_chart`` / ``st.vega_lite_chart`` (Streamlit's own marshalling);
- downloads: the CSV/JSON download buttons under each chart (data serialisation);
- report: the page report's bookkeeping in ``show_chart``;
- other: everything else in the script run (page code, widgets, DataFrames, AppTest's own parsing).

Not counted: AppTest's scan of every installed package for Streamlit components (about 0.3 s of CPU per
AppTest, so it was most of "other"); a server scans once at start, so all renders here share one scan.

CPU is the process CPU time of the render (``time.process_time``; torch threads included); wall is
the elapsed time. On a shared machine wall times are noisy: compare rows within one run.

Measured (2-core machine, load average 1.5, same harness, median of 3; before = 7d78e31):
home 0.31 -> 0.22 s, logit_lens 6.87 -> 2.57, attention 0.90 -> 0.66 (engine 0.60 -> 0.32; the rest is
its charts), dla 1.04 -> 0.44. Quiet machine, 2026-12-07: home 0.21, logit_lens 1.72, attention 0.54, dla 0.32;
with every chart channel an Altair class instead of a text shorthand (``tests/test_charts.py``): home 0.19,
logit_lens 1.72, attention 0.44, dla 0.29. On 2026-12-08 the same machine ran slower (the code of 2026-12-07
gave the same numbers as today's): home 0.32, logit_lens 2.43, attention 0.80, dla 0.49; with ``--cached``
(every result found in the cache) home 0.05, logit_lens 0.21, attention 0.24, dla 0.13.

The Logit Lens page stays above 0.5 s by arithmetic: each lens is a float32 readout of (layers + 1) x positions
rows against the 49152-token unembedding, 31 x 20 x 576 x 49152 x 2 = 35 GFLOP, 0.157 s of wall time here on
two threads (224 GFLOP/s), so ~0.31 CPU-s per lens and ~0.62 for the two (logit, tuned) before anything else;
their log-softmax, top-k, rank, KL and entropy passes over 31 x 20 x 49152 floats add ~0.3 CPU-s per lens, and
the one shared forward ~0.2 s. (bfloat16 would run the matmul in 0.044 s on this CPU's AMX, but its logits are
off by ~1 % and the page shows exact probabilities.)

``--cached`` renders the warm-up prompt again instead: a visit that finds every result in the cache, as all but
the first of a room following the presenter's link (the workshop's follow phase).

    .venv/bin/python benchmarks/profile_pages.py [--model smollm2-135m] [--repeats 3] [--cached] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as ui.serve sets it for the server; OMP_WAIT_POLICY=ACTIVE to compare

PAGES = {
    "home": "pages/00_home.py",
    "logit_lens": "pages/03_logit_lens.py",
    "attention": "pages/04_attention.py",
    "dla": "pages/07_direct_logit_attribution.py",
}
# New prompts of 18-22 tokens on SmolLM2 (one per repeat, each page sees each once).
PROMPTS = [
    "The old lighthouse keeper walked slowly up the winding stairs every single night to light the lamp",
    "In the small village near the mountains, the baker opened his shop early on a cold winter morning",
    "When the scientists finally reached the station at the south pole, they found the radio was broken",
    "My grandmother always said that the secret of a good soup is patience and fresh vegetables from the garden",
    "After the long meeting ended, the manager thanked everyone and asked them to send their reports by Friday",
]
WARMUP = "The capital of France is"
CATEGORIES = ("engine", "altair", "chart msg", "downloads", "report")

_spent: dict[str, float] = defaultdict(float)
_components: list[object] = []  # AppTest's component registry, scanned once (as a server does at start)
_depth = threading.local()


@contextlib.contextmanager
def _timed(category: str) -> Iterator[None]:
    """Add the CPU time spent inside to ``category``, only for the outermost timed call (no double counting)."""
    stack = getattr(_depth, "stack", None)
    if stack is None:
        stack = _depth.stack = []
    started = time.process_time()
    stack.append(category)
    try:
        yield
    finally:
        stack.pop()
        elapsed = time.process_time() - started
        _spent[category] += elapsed
        if stack:  # time of an inner category is not also the outer one's
            _spent[stack[-1]] -= elapsed


def _wrap(owner: object, name: str, category: str) -> None:
    original: Callable = getattr(owner, name)

    def wrapper(*args, **kwargs):
        with _timed(category):
            return original(*args, **kwargs)

    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(owner, name, wrapper)


def instrument() -> None:
    """Wrap the functions that do each kind of work with CPU timers."""
    import altair as alt
    import streamlit as st
    from streamlit.elements.vega_charts import VegaChartsMixin

    import ui.charts
    import ui.page
    import ui.runner

    _wrap(ui.runner, "run_technique", "engine")
    _wrap(alt.TopLevelMixin, "to_dict", "altair")
    _wrap(VegaChartsMixin, "altair_chart", "chart msg")
    _wrap(VegaChartsMixin, "vega_lite_chart", "chart msg")
    _wrap(st, "altair_chart", "chart msg")  # st.altair_chart is a method bound at import, not the class's
    _wrap(st, "vega_lite_chart", "chart msg")
    _wrap(ui.charts, "download_buttons", "downloads")
    _wrap(ui.page, "download_buttons", "downloads")
    _wrap(ui.page, "show_chart", "report")  # what show_chart does besides drawing and downloads


def render(page: str, model: str, prompt: str) -> dict[str, float]:
    """One script run of ``page`` for ``prompt``; CPU seconds per category plus total and wall."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    if not _components:
        from streamlit.components.v2.component_manager import BidiComponentManager

        _components.append(BidiComponentManager())
        _components[0].discover_and_register_components(start_file_watching=False)
    at._bidi_component_manager = _components[0]  # AppTest scans only when it holds none
    at.query_params["model"] = model
    at.session_state["model"] = model
    at.session_state["prompt"] = prompt
    at.switch_page(page)
    _spent.clear()
    cpu, wall = time.process_time(), time.perf_counter()
    at.run()
    out = {"total": time.process_time() - cpu, "wall": time.perf_counter() - wall}
    if at.exception:
        raise SystemExit(f"{page} raised: {at.exception[0].value}")
    out.update({c: _spent.get(c, 0.0) for c in CATEGORIES})
    out["other"] = out["total"] - sum(out[c] for c in CATEGORIES)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--model", default="smollm2-135m", help="model spec the sidebar loads (default: the bundled SmolLM2-135M)")
    parser.add_argument("--repeats", type=int, default=3, help=f"new prompts per page (at most {len(PROMPTS)})")
    parser.add_argument("--pages", default=",".join(PAGES), help="comma-separated subset of: " + ", ".join(PAGES))
    parser.add_argument("--json", help="also write the per-page medians to this JSON file")
    parser.add_argument("--cached", action="store_true", help="render the warm-up prompt again instead of new prompts: "
                        "a visit whose results are all cached already (the workshop's follow phase, after the first)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    instrument()
    rows = {}
    for name in args.pages.split(","):
        page = PAGES[name]
        render(page, args.model, WARMUP)
        runs = [render(page, args.model, WARMUP if args.cached else p) for p in PROMPTS[: args.repeats]]
        rows[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    columns = ["total", *CATEGORIES, "other", "wall"]
    what = "a render whose results are cached" if args.cached else "first render of a new ~20-token prompt"
    print(f"server CPU seconds per {what}, median of {args.repeats} ({args.model})")
    print(f"{'page':12s}" + "".join(f"{c:>11s}" for c in columns))
    for name, row in rows.items():
        print(f"{name:12s}" + "".join(f"{row[c]:11.3f}" for c in columns))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
