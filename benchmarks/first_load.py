"""First load of every page: start a fresh server, open each page once in headless Chromium, and
print the seconds from navigation to its first chart on screen (and to the end of its first run).

    .venv/bin/python benchmarks/first_load.py [--port 8612] [--goal 5] [--pages induction_heads,steering] [--open link,menu,tab]

Pages are opened one after another in menu order with the server's defaults (the default model, the
sidebar's default prompt, each page's first preset), as a workshop presenter would, in up to three
ways, each on a fresh server of its own (so none finds another's results in the server's cache):

- ``link``: every page by its link in a new tab of one browser, as a presenter opens the links of a
  talk's slides (the browser's HTTP and code caches hold Streamlit's frontend after the first tab,
  as in any browser that has opened the app once);
- ``menu``: Home is opened once; every other page by a click on its entry in the sidebar menu of that
  same tab, as a presenter moves through a talk (the browser keeps the app's frontend loaded);
- ``tab``: every page in a new tab of a fresh browser profile (empty HTTP and code caches), as a
  participant opening a shared link in a browser that has never opened the app. On a 2-core machine
  that also runs the server, Chromium spends 5-7 s of CPU loading Streamlit's frontend in such a tab,
  about 3 s of wall time before any page code runs.

The server (``./workbench start``) loads the model and then visits every page itself in the background
(``ui/first_visit.py``), so a page opened during that time may share the CPU with the visit. The visit computes
every page's first result (about 25-30 s of CPU for the default model here) on the first start of the code on a
machine, and keeps them on disk (``ui/kept_results.py``); every later start of the same code reads them back, and
the visit takes about 10 s, mostly waiting. ``--without-kept-results`` starts each server with
``WORKBENCH_KEEP_RESULTS=0``, as on the first start after an install or a change to ``interp_core``.
``--after-warm-up`` opens Home only once the server's log says the visit is over, as for a presenter who started
the server before the talk. The server's own line about its visit is printed after each way's pages.

The goal (exit status) is checked on the first way given by ``--open`` (``link`` by default); the first page
after the cold start (Home) may include the model load, so it only has to draw. "first chart" is the first Vega-Lite chart (``stVegaLiteChart``/``stArrowVegaLiteChart``)
attached to the page; "idle" is when Streamlit reports its script state as ``notRunning`` (after the
page title appeared, since the state also reads idle before the first run starts). The first page
after a cold start includes the model load. Caches on disk (the converted model, probing states)
are used as they are, so say whether they were warm (the visit's line says whether results were read back). Exit status 1 when a page misses the goal
or shows an error.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ui.navigation import page_files, page_slug, page_title  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from load import ARGS, CHROMIUM, menu_link, start_server, stop_server, title_selector  # noqa: E402

CHART = "[data-testid='stVegaLiteChart'], [data-testid='stArrowVegaLiteChart']"
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
PROBLEMS = "[data-testid='stException'], [data-testid='stAlertContentError']"


def first_visit_line(log: Path) -> str | None:
    """The server's line saying how its first visit of every page ended (``ui/serve.py``), if it is in ``log`` yet."""
    return next((line for line in log.read_text(errors="replace").splitlines()
                 if line.startswith("first visit: ") and (" pages in " in line or "stopped after" in line)), None)


def wait_for_first_visit(log: Path, timeout: float) -> str:
    """:func:`first_visit_line` once the visit is over."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (line := first_visit_line(log)) is not None and " pages in " in line:
            return line
        time.sleep(0.5)
    raise RuntimeError(f"the server did not finish its first visit within {timeout:.0f} s; see {log}")


def watch(page, open_it: Callable[[], object], title: str, chart: str, timeout_ms: int,
          shot: Path | None) -> tuple[float | None, float | None, str]:
    """Call ``open_it`` (navigation or a click), then wait for the title ``title`` (selector), a chart ``chart`` and
    the idle state: seconds to the chart and to idle, and the first problem shown (or "")."""
    started = time.perf_counter()
    chart_s = idle_s = None
    try:
        open_it()
        page.wait_for_selector(title, timeout=timeout_ms)
        try:
            page.wait_for_selector(chart, timeout=timeout_ms)
            chart_s = time.perf_counter() - started
        finally:
            page.wait_for_selector(IDLE, timeout=timeout_ms)
            idle_s = time.perf_counter() - started
        problems = page.query_selector_all(PROBLEMS)
        if shot is not None:
            page.screenshot(path=str(shot), full_page=True)
        return chart_s, idle_s, problems[0].inner_text()[:120].replace("\n", " ") if problems else ""
    except Exception as error:  # a page that never draws a chart is a result, not a crash
        return chart_s, idle_s, f"{type(error).__name__}: {str(error).splitlines()[0][:100]}"


VIEWPORT = {"width": 1400, "height": 1800}


def time_page(new_tab: Callable[[], object], url: str, timeout_ms: int, shot: Path | None, *, keep_open: bool = False):
    """Open ``url`` in the tab ``new_tab()`` makes: seconds to the first chart and to the first idle state, the
    first problem shown (or ""), and the tab if ``keep_open`` (else None: it is closed)."""
    page = new_tab()
    result = watch(page, lambda: page.goto(url, timeout=timeout_ms), "[data-testid='stMain'] h1", CHART, timeout_ms, shot)
    if not keep_open:
        page.close()
    return (*result, page if keep_open else None)


def time_by_menu(page, title: str, timeout_ms: int, shot: Path | None) -> tuple[float | None, float | None, str]:
    """Click ``title`` in the sidebar menu of ``page`` (a tab with the app open and idle): seconds to the new
    page's first chart and to its first idle state, and the first problem shown (or "")."""
    page.evaluate("sel => document.querySelectorAll(sel).forEach(e => e.setAttribute('data-bench-old', '1'))", CHART)
    fresh = ", ".join(f"{c.strip()}:not([data-bench-old])" for c in CHART.split(","))  # not the previous page's charts
    return watch(page, lambda: menu_link(page, title).click(timeout=timeout_ms), title_selector(title), fresh, timeout_ms, shot)


def measure(way: str, files: list[Path], args: argparse.Namespace) -> list[tuple[str, float | None, float | None, str]]:
    """One fresh server; Home, then every other page of ``files`` opened the ``way`` given (``link``, ``menu`` or ``tab``)."""
    from playwright.sync_api import sync_playwright

    log = ROOT / "artifacts" / f"first_load_server_{way}.log"
    log.parent.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    proc = start_server(args.port, log, keep_results=not args.without_kept_results)
    print(f"[{way}] server up in {time.perf_counter() - t0:.1f} s (log: {log})", flush=True)
    if args.after_warm_up:
        print(f"[{way}] {wait_for_first_visit(log, args.timeout)} {time.perf_counter() - t0:.1f} s after the start", flush=True)
    rows = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            # link: every tab in one profile; tab and menu: each tab in a fresh profile of its own
            new_tab = browser.new_context(viewport=VIEWPORT).new_page if way == "link" else lambda: browser.new_page(viewport=VIEWPORT)
            home_tab = None
            for i, path in enumerate(files):
                slug = page_slug(path)
                name = page_title(path) if i else "Home"
                shot = args.shots / f"{way}-{slug}.png" if args.shots else None
                if way == "menu" and i > 0:
                    chart_s, idle_s, problem = time_by_menu(home_tab, name, int(args.timeout * 1000), shot)
                else:
                    url = f"http://127.0.0.1:{args.port}/{'' if i == 0 else slug}"
                    keep = way == "menu"  # the menu's tab stays open for the clicks
                    chart_s, idle_s, problem, tab = time_page(new_tab, url, int(args.timeout * 1000), shot, keep_open=keep)
                    home_tab = tab if keep else None
                rows.append((name, chart_s, idle_s, problem))
                print(f"  [{way}] {name}: chart {chart_s if chart_s is None else round(chart_s, 1)} s", flush=True)
            browser.close()
        print(f"[{way}] server: {first_visit_line(log) or 'no first visit line yet'}", flush=True)
    finally:
        stop_server(proc)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8612)
    parser.add_argument("--goal", type=float, default=5.0, help="seconds each page should draw its first chart within")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a page counts as failed")
    parser.add_argument("--shots", type=Path, default=None, help="directory for a screenshot of each page")
    parser.add_argument("--pages", default="", help="comma-separated page slugs (e.g. probing,steering) to open after Home, "
                        "which is always opened first (the model load); default: every page")
    parser.add_argument("--open", default="link,menu,tab", help="how pages are opened, comma-separated: link (a new tab of one "
                        "browser each), menu (clicks in one tab's sidebar), tab (a new tab of a fresh browser profile each); "
                        "the goal is checked on the first")
    parser.add_argument("--after-warm-up", action="store_true", help="open Home only once the server has visited every "
                        "page itself (its log's 'first visit:' line, about 25 s after the start): a presenter who started "
                        "the server before the talk; by default pages are opened as soon as the server answers")
    parser.add_argument("--without-kept-results", action="store_true", help="start each server with "
                        "WORKBENCH_KEEP_RESULTS=0: the first start after an install or a change to interp_core, when the "
                        "server's visit computes every page's first result")
    args = parser.parse_args()
    ways = args.open.split(",")
    if not ways or set(ways) - {"link", "menu", "tab"}:
        raise SystemExit(f"--open takes link, menu and/or tab, got {args.open!r}")
    if args.shots:
        args.shots.mkdir(parents=True, exist_ok=True)
    files = page_files()
    if args.pages:
        wanted = set(args.pages.split(","))
        unknown = wanted - {page_slug(f) for f in files}
        if unknown:
            raise SystemExit(f"unknown page(s) {sorted(unknown)}; pages: {', '.join(page_slug(f) for f in files)}")
        files = [f for i, f in enumerate(files) if i == 0 or page_slug(f) in wanted]
    results = {way: measure(way, files, args) for way in ways}
    fmt = lambda s: "-" if s is None else f"{s:.1f}"
    head = " | ".join(f"{way}: first chart (s) | {way}: run done (s)" for way in ways)
    print(f"\n| page | {head} | problem |\n|---|" + "---|---|" * len(ways) + "---|")
    for i in range(len(files)):
        rows = [results[way][i] for way in ways]
        cells = " | ".join(f"{fmt(r[1])} | {fmt(r[2])}" for r in rows)
        print(f"| {rows[0][0]} | {cells} | {'; '.join(r[3] for r in rows if r[3])} |")
    status = 0
    for way in ways:
        first, *rest = results[way]  # the first page after a cold start may include the model load (issue #19)
        slow = [r[0] for r in rest if r[1] is None or r[1] > args.goal or r[3]] + ([first[0]] if first[1] is None or first[3] else [])
        print(f"{way}: {len(rest) + 1 - len(slow)}/{len(rest) + 1} pages drew their first chart within {args.goal:.0f} s "
              f"({first[0]}, the first page after the cold start, loads the model and counts if it draws at all: {fmt(first[1])} s)"
              + (f"; not: {', '.join(slow)}" if slow else ""))
        if way == ways[0] and slow:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
