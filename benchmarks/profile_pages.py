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

The other pages (Induction Heads, Activation Patching, Probing, Circuits, Steering; or any page with
``--cold``) are rendered as on a fresh server's first load instead: after one Home render (model load),
their default view (sidebar prompt, first preset) with the server's result cache emptied before each
render; the row ``NAME (1st)`` is the first render, which also pays the page's own imports.
``--by-request`` adds the engine CPU per request class, and ``1st chart`` is the CPU spent before the
render's first chart was sent.

CPU is the process CPU time of the render (``time.process_time``; torch threads included); wall is
the elapsed time. On a shared machine wall times are noisy: compare rows within one run.

    .venv/bin/python benchmarks/profile_pages.py [--model smollm2-135m] [--repeats 3] [--pages probing,steering]
        [--cold] [--by-request] [--json out.json]
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
    "induction": "pages/05_induction_heads.py",
    "patching": "pages/06_activation_patching.py",
    "probing": "pages/08_probing.py",
    "circuits": "pages/09_circuits.py",
    "steering": "pages/11_steering.py",
}
LIGHT = ("home", "logit_lens", "attention", "dla")
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
_by_request: dict[str, float] = defaultdict(float)  # engine CPU per request class (--by-request)
_first_chart: list[float] = []  # process time when the render's first chart was sent
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
        if category == "chart msg" and not _first_chart:
            _first_chart.append(time.process_time())
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

    technique = ui.runner.run_technique

    def run_technique(model, request, *args, **kwargs):
        started = time.process_time()
        try:
            return technique(model, request, *args, **kwargs)
        finally:
            _by_request[type(request).__name__] += time.process_time() - started

    ui.runner.run_technique = run_technique
    _wrap(ui.runner, "run_technique", "engine")
    _wrap(alt.TopLevelMixin, "to_dict", "altair")
    _wrap(VegaChartsMixin, "altair_chart", "chart msg")
    _wrap(VegaChartsMixin, "vega_lite_chart", "chart msg")
    _wrap(st, "altair_chart", "chart msg")  # st.altair_chart is a method bound at import, not the class's
    _wrap(st, "vega_lite_chart", "chart msg")
    _wrap(ui.charts, "download_buttons", "downloads")
    _wrap(ui.page, "download_buttons", "downloads")
    _wrap(ui.page, "show_chart", "report")  # what show_chart does besides drawing and downloads


def render(page: str, model: str, prompt: str | None, cold: bool = False) -> dict[str, float]:
    """One script run of ``page`` for ``prompt`` (None: the sidebar's default); CPU seconds per category plus total
    and wall. ``cold``: empty the server's result cache first, so every technique request is computed afresh."""
    from streamlit.testing.v1 import AppTest

    from ui import jobs

    if cold:
        with jobs._results_lock:
            jobs._results.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.query_params["model"] = model
    at.session_state["model"] = model
    if prompt is not None:
        at.session_state["prompt"] = prompt
    at.switch_page(page)
    _spent.clear()
    _by_request.clear()
    _first_chart.clear()
    cpu, wall = time.process_time(), time.perf_counter()
    at.run()
    out = {"total": time.process_time() - cpu, "wall": time.perf_counter() - wall}
    out["1st chart"] = _first_chart[0] - cpu if _first_chart else float("nan")
    if at.exception:
        raise SystemExit(f"{page} raised: {at.exception[0].value}")
    out.update({c: _spent.get(c, 0.0) for c in CATEGORIES})
    out["other"] = out["total"] - sum(out[c] for c in CATEGORIES)
    out.update({f"request {name}": seconds for name, seconds in _by_request.items()})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--model", default="smollm2-135m", help="model spec the sidebar loads (default: the bundled SmolLM2-135M)")
    parser.add_argument("--repeats", type=int, default=3, help=f"new prompts per page (at most {len(PROMPTS)})")
    parser.add_argument("--pages", default=",".join(PAGES), help="comma-separated subset of: " + ", ".join(PAGES))
    parser.add_argument("--cold", action="store_true", help="render each page's default view (sidebar prompt, first preset) "
                        "with an empty result cache, as on a fresh server's first load, instead of new prompts; "
                        "the default for pages that are not light (" + ", ".join(p for p in PAGES if p not in LIGHT) + ")")
    parser.add_argument("--by-request", action="store_true", help="also print the engine CPU per request class")
    parser.add_argument("--json", help="also write the per-page medians to this JSON file")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    instrument()
    rows = {}
    names = args.pages.split(",")
    if any(args.cold or name not in LIGHT for name in names):
        render(PAGES["home"], args.model, None)  # the model load and the shared imports, as on the server's first page
    for name in names:
        page = PAGES[name]
        if args.cold or name not in LIGHT:  # the first render also pays the page's own imports: shown on its own row
            rows[f"{name} (1st)"] = render(page, args.model, None, True)
            runs = [render(page, args.model, None, True) for _ in range(args.repeats)]
        else:
            render(page, args.model, WARMUP)
            runs = [render(page, args.model, p) for p in PROMPTS[: args.repeats]]
        rows[name] = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in {k: 0 for r in runs for k in r}}
    columns = ["1st chart", "total", *CATEGORIES, "other", "wall"]
    print(f"server CPU seconds per first render of a new ~20-token prompt (light pages) or of the default view with an "
          f"empty result cache (--cold and the other pages), median of {args.repeats} ({args.model})")
    print(f"{'page':18s}" + "".join(f"{c:>11s}" for c in columns))
    for name, row in rows.items():
        print(f"{name:18s}" + "".join(f"{row[c]:11.3f}" for c in columns))
        if args.by_request:
            for key in sorted((k for k in row if k.startswith("request ")), key=lambda k: -row[k]):
                print(f"    {key[8:]:40s}{row[key]:9.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
