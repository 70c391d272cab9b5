"""Many users, one server: drive concurrent browser sessions against one app and one model.

Phase 1 starts a fresh server and opens N sessions at once (headless Chromium, one browser
context each), every session a different page and input; each waits for its page to finish,
records the latency, and downloads the data of the page's first charts ("Download JSON").
Phase 2 restarts the server (so no cached result is reused) and runs every scenario alone,
one after another. Every concurrent session's data must equal its solo run: a hook or a
cache leaking between sessions would show up as a mismatch. Prints p50/p95 latency per page
and the failures, and exits non-zero if there is any.

    .venv/bin/python benchmarks/load.py --sessions 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
PROMPTS = [
    "The capital of France is",
    "When Mary and John went to the store, John gave a drink to",
    "The Eiffel Tower is located in the city of",
    "The cat sat on the mat. The cat sat on the",
    "One two three four five six",
    "The capital of Italy is",
    "Alice and Bob talked about the weather and",
]
MAX_DOWNLOADS = 4  # chart data files compared per session (keyed by file name)
# (page slug, extra query parameters); the prompt is varied per session on top of these.
PAGES: list[tuple[str, dict[str, str]]] = [
    ("", {}),
    ("logit_lens", {}),
    ("attention", {}),
    ("direct_logit_attribution", {}),
    ("induction_heads", {}),
    ("circuits", {}),
]


@dataclass
class Outcome:
    page: str
    url: str
    seconds: float
    data: object | None
    error: str | None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, log: Path | None = None, *, keep_results: bool = False) -> subprocess.Popen:
    """``ui.serve`` (what ``./workbench start`` runs) on ``port``, its output to ``log`` (None: discarded); waits for its
    health check.

    ``keep_results=False`` (this script's and ``workshop.py``'s servers): the server computes every result itself, neither
    reading nor keeping the first visit's results on disk (``WORKBENCH_KEEP_RESULTS=0``), so a solo run never takes a
    result from an earlier server, and the timings stay comparable with those measured before results were kept (a
    restarted server reads its first results back). ``first_load.py`` keeps them, as ``./workbench start`` does.
    """
    out = open(log, "w") if log is not None else subprocess.DEVNULL
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **({} if keep_results else {"WORKBENCH_KEEP_RESULTS": "0"})}
    proc = subprocess.Popen([sys.executable, "-m", "ui.serve", "--server.headless", "true", "--server.port", str(port)],
                            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited{f'; see {log}' if log else ''}") from None
            time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError("the server did not answer its health check within 300 s")


def stop_server(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, 15)
    proc.wait(timeout=30)


def scenarios(n: int) -> list[tuple[str, str]]:
    """n (page, url path+query) pairs cycling through pages and prompts."""
    out = []
    for i in range(n):
        slug, extra = PAGES[i % len(PAGES)]
        query = {"prompt": PROMPTS[(i // len(PAGES) + i) % len(PROMPTS)], **extra}
        out.append((slug or "home", f"/{slug}?{urllib.parse.urlencode(query)}"))
    return out


# The chart-data download buttons (keys ``NAME-json``) a person can see: not in a collapsed expander or a hidden tab.
SHOWN_CHARTS = """() => {
  const name = e => [...e.classList].find(c => c.startsWith('st-key-') && c.endsWith('-json'));
  const all = [...document.querySelectorAll("[class*='st-key-'][class*='-json']")].filter(name);
  const shown = all.filter(e => !e.closest('details:not([open])') && e.checkVisibility({checkVisibilityCSS: true}));
  return {all: all.map(e => name(e).slice(7, -5)), shown: shown.map(e => name(e).slice(7, -5))};
}"""


def menu_link(page, title: str):
    """The entry ``title`` in the app's sidebar menu, as a Playwright locator (of a sync or an async page)."""
    return page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True)


def title_selector(title: str) -> str:
    """A selector for the page title ``title`` (the h1 every page starts with)."""
    return f"[data-testid='stMain'] h1:has-text('{title}')"


async def chart_downloads(page, timeout_ms: int, most: int) -> dict:
    """The "Download JSON" data of up to ``most`` of the page's charts, by file name, and ``"_charts"``: every chart name.

    Charts are picked by name (sorted), never by position, among those on screen, so a concurrent and a solo
    visit of the same page download the same charts even when one of them lays its buttons out later."""
    names = await page.evaluate(SHOWN_CHARTS)
    data: dict = {"_charts": sorted(set(names["all"]))}
    for name in sorted(set(names["shown"]))[:most]:
        button = page.locator(f".st-key-{name}-json button").first
        # the session's own time limit, not a shorter one: on a machine that also runs every browser, a starved
        # browser can take minutes to draw a button, and that is latency (measured), not a wrong chart
        await button.wait_for(state="visible", timeout=timeout_ms)
        download = await _download(page, button, name, timeout_ms)
        await page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout_ms)
        data[download.suggested_filename] = json.loads(Path(await download.path()).read_text())
    return data


# What a download click left behind when no download followed: the button, what covers its centre, the app's state.
CLICK_STATE = """button => {
  const box = button.getBoundingClientRect();
  const top = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
  const app = document.querySelector("[data-testid='stApp']");
  return {disabled: button.disabled, covered_by: top && !button.contains(top) ? top.outerHTML.slice(0, 120) : null,
          script: app && app.dataset.testScriptState};
}"""


async def _download(page, button, name: str, timeout_ms: int):
    """Click ``button`` and return its download. A click that starts no download within a third of the time limit (a
    404 would start one, failed) is a failure; before reporting it, the button's state is recorded and one more click
    made, so the report says whether the first click was lost (a second one works) or the download cannot happen."""
    from playwright.async_api import TimeoutError  # noqa: A004 (Playwright's, not the builtin)

    wait = max(1000, timeout_ms // 3)
    try:
        async with page.expect_download(timeout=wait) as info:
            await button.click(timeout=timeout_ms)
        return await info.value
    except TimeoutError:
        state = await button.evaluate(CLICK_STATE)
    try:
        async with page.expect_download(timeout=wait) as info:
            await button.click(timeout=timeout_ms)
        second = f"a second click downloaded ({(await info.value).suggested_filename})"
    except TimeoutError:
        second = "a second click did not either"
    raise RuntimeError(f"no download {wait / 1000:.0f} s after a click on {name}-json ({state}); {second}")


async def run_session(browser, base: str, page_name: str, path: str, timeout_ms: int) -> Outcome:
    context = await browser.new_context(accept_downloads=True)
    page = await context.new_page()
    started = time.perf_counter()
    try:
        await page.goto(base + path, timeout=timeout_ms)
        # the app reads as idle before its first run starts: wait for the page's title first
        await page.wait_for_selector("[data-testid='stMain'] h1", timeout=timeout_ms)
        await page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout_ms)
        await page.wait_for_timeout(1000)
        await page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout_ms)
        seconds = time.perf_counter() - started
        problems = await page.query_selector_all("[data-testid='stException'], [data-testid='stAlertContentError']")
        if problems:
            return Outcome(page_name, path, seconds, None, (await problems[0].inner_text())[:200])
        data = await chart_downloads(page, timeout_ms, MAX_DOWNLOADS)
        return Outcome(page_name, path, seconds, data, None)
    except Exception as error:  # any failure of a session is counted, not raised
        return Outcome(page_name, path, time.perf_counter() - started, None, f"{type(error).__name__}: {str(error)[:200]}")
    finally:
        await context.close()


async def run_all(base: str, plan: list[tuple[str, str]], concurrent: bool, timeout_ms: int) -> list[Outcome]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            if concurrent:
                return list(await asyncio.gather(*(run_session(browser, base, n, u, timeout_ms) for n, u in plan)))
            return [await run_session(browser, base, n, u, timeout_ms) for n, u in plan]
        finally:
            await browser.close()


def same(a: object, b: object, tol: float = 1e-6) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol * max(1.0, abs(a), abs(b))
    return a == b


def first_difference(a: object, b: object, path: str = "", tol: float = 1e-6) -> str:
    """Where two JSON values first differ, as ``path: a != b`` (empty if they are the same)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}.{k}: only in the {'concurrent' if k in a else 'solo'} run"
            found = first_difference(a[k], b[k], f"{path}.{k}", tol)
            if found:
                return found
        return ""
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{path}[{i}]", tol)
            if found:
                return found
        return ""
    return "" if same(a, b, tol) else f"{path}: {str(a)[:60]} != {str(b)[:60]}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def report_failures(failures: list[str]) -> int:
    """Print the failures, one a line; the exit status: 1 if there is any."""
    print(f"failures: {len(failures)}")
    for line in failures:
        print("  " + line)
    return 1 if failures else 0


def main() -> int:
    # a SIGTERM (e.g. from `timeout`) unwinds through the finally blocks, so the server it started is stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--timeout", type=int, default=900, help="seconds a session may take")
    args = parser.parse_args()
    plan = scenarios(args.sessions)
    timeout_ms = args.timeout * 1000

    port = free_port()
    server = start_server(port)
    try:
        t0 = time.perf_counter()
        together = asyncio.run(run_all(f"http://127.0.0.1:{port}", plan, True, timeout_ms))
        wall = time.perf_counter() - t0
    finally:
        stop_server(server)
    server = start_server(port)  # fresh server: the solo runs recompute everything
    try:
        alone = asyncio.run(run_all(f"http://127.0.0.1:{port}", plan, False, timeout_ms))
    finally:
        stop_server(server)

    failures = []
    for conc, solo in zip(together, alone):
        if conc.error or solo.error:
            failures.append(f"{conc.url}: concurrent error={conc.error!r} solo error={solo.error!r}")
        elif not same(conc.data, solo.data):
            failures.append(f"{conc.url}: concurrent data differs from the solo run at {first_difference(conc.data, solo.data)}")
    print(f"{len(plan)} concurrent sessions on one server, {wall:.1f} s wall")
    print(f"{'page':28s} {'n':>3s} {'p50 s':>8s} {'p95 s':>8s} {'solo p50 s':>11s}")
    for name in dict.fromkeys(o.page for o in together):
        conc = [o.seconds for o in together if o.page == name]
        solo = [o.seconds for o in alone if o.page == name]
        print(f"{name:28s} {len(conc):3d} {percentile(conc, 0.5):8.1f} {percentile(conc, 0.95):8.1f} {statistics.median(solo):11.1f}")
    return report_failures(failures)


if __name__ == "__main__":
    sys.exit(main())
