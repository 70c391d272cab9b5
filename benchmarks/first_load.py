"""First load of every page: start a fresh server, open each page once in headless Chromium, and
print the seconds from navigation to its first chart on screen (and to the end of its first run).

    .venv/bin/python benchmarks/first_load.py [--port 8612] [--goal 5] [--pages induction_heads,steering]

Pages are opened one after another in menu order, each in a new browser tab, with the server's
defaults (the default model, the sidebar's default prompt, each page's first preset), as a workshop
presenter would. "first chart" is the first Vega-Lite chart (``stVegaLiteChart``/``stArrowVegaLiteChart``)
attached to the page; "idle" is when Streamlit reports its script state as ``notRunning`` (after the
page title appeared, since the state also reads idle before the first run starts). The first page
after a cold start includes the model load. Caches on disk (the converted model, probing states)
are used as they are, so say whether they were warm. Exit status 1 when a page misses the goal
or shows an error.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ui.navigation import page_files, page_slug, page_title  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
CHART = "[data-testid='stVegaLiteChart'], [data-testid='stArrowVegaLiteChart']"
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
PROBLEMS = "[data-testid='stException'], [data-testid='stAlertContentError']"


def start_server(port: int, log: Path) -> subprocess.Popen:
    """``ui.serve`` (what ``./workbench start`` runs) on ``port``; waits for its health check."""
    out = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "ui.serve", "--server.headless", "true", "--server.port", str(port)],
                            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    for _ in range(300):
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited; see {log}") from None
            time.sleep(1)
    stop_server(proc)
    raise RuntimeError("the server did not answer its health check within 300 s")


def stop_server(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, 15)
    proc.wait(timeout=30)


def time_page(browser, url: str, timeout_ms: int, shot: Path | None) -> tuple[float | None, float | None, str]:
    """Seconds to the first chart and to the first idle state, and the first problem shown (or "")."""
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    started = time.perf_counter()
    chart_s = idle_s = None
    try:
        page.goto(url, timeout=timeout_ms)
        page.wait_for_selector("[data-testid='stMain'] h1", timeout=timeout_ms)
        try:
            page.wait_for_selector(CHART, timeout=timeout_ms)
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
    finally:
        page.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8612)
    parser.add_argument("--goal", type=float, default=5.0, help="seconds each page should draw its first chart within")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a page counts as failed")
    parser.add_argument("--shots", type=Path, default=None, help="directory for a screenshot of each page")
    parser.add_argument("--pages", default="", help="comma-separated page slugs (e.g. probing,steering) to open after Home, "
                        "which is always opened first (the model load); default: every page")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    if args.shots:
        args.shots.mkdir(parents=True, exist_ok=True)
    log = ROOT / "artifacts" / "first_load_server.log"
    log.parent.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    proc = start_server(args.port, log)
    print(f"server up in {time.perf_counter() - t0:.1f} s (log: {log})", flush=True)
    rows = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            files = page_files()
            if args.pages:
                wanted = set(args.pages.split(","))
                unknown = wanted - {page_slug(f) for f in files}
                if unknown:
                    raise SystemExit(f"unknown page(s) {sorted(unknown)}; pages: {', '.join(page_slug(f) for f in files)}")
                files = [f for i, f in enumerate(files) if i == 0 or page_slug(f) in wanted]
            for i, path in enumerate(files):
                slug = page_slug(path)
                url = f"http://127.0.0.1:{args.port}/{'' if i == 0 else slug}"
                shot = args.shots / f"{slug}.png" if args.shots else None
                chart_s, idle_s, problem = time_page(browser, url, int(args.timeout * 1000), shot)
                rows.append((page_title(path) if i else "Home", chart_s, idle_s, problem))
                print(f"  {rows[-1][0]}: chart {chart_s if chart_s is None else round(chart_s, 1)} s", flush=True)
            browser.close()
    finally:
        stop_server(proc)
    fmt = lambda s: "-" if s is None else f"{s:.1f}"
    print("\n| page | first chart (s) | first run done (s) | problem |\n|---|---|---|---|")
    for name, chart_s, idle_s, problem in rows:
        print(f"| {name} | {fmt(chart_s)} | {fmt(idle_s)} | {problem} |")
    slow = [r[0] for r in rows if r[1] is None or r[1] > args.goal or r[3]]
    print(f"\n{len(rows) - len(slow)}/{len(rows)} pages drew their first chart within {args.goal:.0f} s"
          + (f"; not: {', '.join(slow)}" if slow else ""))
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
