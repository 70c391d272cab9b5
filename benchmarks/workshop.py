"""A workshop: N participants following a presenter on one fresh server, in headless Chromium.

One command starts a fresh server (``python -m ui.serve``, default model), opens one browser
context per participant, and runs three phases:

- follow:  for each of Home, Logit Lens, Attention, Activation Patching and DLA, every participant
           opens the presenter's link (same page, same preset) within 5 s of the others; with
           ``--follow-by menu`` participants open Home by the link and then click each page in the
           sidebar menu of that same tab instead (in-app navigation: no page reload);
- explore: each participant brings a prompt of its own (10-25 tokens, different for everyone,
           set through the page link, as a shared link would) and opens Home, Logit Lens,
           Attention and DLA with it, arrivals spread at random over 60 s;
- tinker:  everyone moves the Layer/Head sliders of the Attention page ten times over 60 s
           (keyboard, as a person would) while two participants run exact patching sweeps.

A page's latency runs from navigation until the app is idle with nothing stale; a slider move's
from the key press until the one-head chart of the new layer/head is drawn. For follow and
explore, the data behind every chart ("Download JSON" of each chart, fetched by the chart's name)
is compared with a solo run of the same page and prompt on a second fresh server, as
``benchmarks/load.py`` does, and the chart names themselves must match. Prints p50/p95 per phase
and page, the failures, the server's peak RSS, and per phase the CPU seconds spent by the server and
by the rest of the machine (the browsers: Chromium and Playwright's driver, on an otherwise quiet
machine) against the wall time: on one machine they share, that split says whose work the waiting
was. Exits 1 if anything failed.

Goals on the 2-core reference machine (issue #23): follow p95 < 2 s, explore p95 < 15 s, tinker
p95 < 1 s, 0 failures, RSS < 3 GB. The browsers run on the same machine as the server here (in a
real workshop they are on the participants' laptops), so they compete for its CPU: a conservative
measurement.

    ./workbench bench workshop                                   # from a fresh clone: set-up, then 30 participants, all phases
    .venv/bin/python benchmarks/workshop.py                      # 30 participants, all phases
    .venv/bin/python benchmarks/workshop.py --participants 4 --phases follow,tinker --spread 10
    .venv/bin/python benchmarks/workshop.py --phases follow --follow-by menu
    .venv/bin/python benchmarks/workshop.py --phases follow --pages attention --no-solo   # one page, e.g. to look at a failure
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import (  # noqa: E402
    ARGS,
    CHROMIUM,
    chart_downloads,
    first_difference,
    free_port,
    menu_link,
    percentile,
    report_failures,
    same,
    start_server,
    stop_server,
    title_selector,
)

IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
SLIDER = "[data-testid='stSlider'] [role='slider'], [data-testid='stSlider'] input[type='range']"
# (min, max, value) of a slider thumb: Streamlit draws it as an <input type="range">, whose current value is a
# property (its value attribute keeps the first value), or as an ARIA slider
SLIDER_STATE = """e => e.tagName === 'INPUT' ? [e.min, e.max, e.value].map(Number)
                    : ['aria-valuemin', 'aria-valuemax', 'aria-valuenow'].map(a => Number(e.getAttribute(a)))"""
MAX_CHARTS = 4  # chart data files compared per page visit
PRESET = "When Mary and John went to the store, John gave a drink to"  # the presenter's link
FOLLOW_PAGES = [("home", ""), ("logit_lens", "logit_lens"), ("attention", "attention"),
                ("activation_patching", "activation_patching"), ("dla", "direct_logit_attribution")]
TITLES = {"home": "Interpretability Workbench", "logit_lens": "Logit Lens", "attention": "Attention",
          "activation_patching": "Activation Patching", "dla": "Direct Logit Attribution"}  # menu entries and page titles
EXPLORE_PAGES = [("home", ""), ("logit_lens", "logit_lens"), ("attention", "attention"), ("dla", "direct_logit_attribution")]
SUBJECTS = ["The old lighthouse keeper", "A young violinist from Prague", "The tired delivery driver", "My neighbour's grey cat",
            "The chemistry teacher", "An engineer at the harbour", "The village baker", "A retired astronaut",
            "The museum guard", "Our football coach"]
ACTIONS = ["walked slowly to the station because", "opened the heavy wooden door and saw", "wrote a long letter about",
           "forgot the keys again, so", "carefully counted the coins before"]
ENDINGS = ["the", "a small", "his old friend", "the bright morning", "her favourite"]
SWEEPS = [{"patch_target": "attn_out"}, {"patch_target": "mlp_out"}]  # tinker's two exact sweeps (IOI preset pair)


def own_prompt(i: int) -> str:
    """Participant ``i``'s own prompt (10-25 tokens on SmolLM2), different for every participant."""
    return f"{SUBJECTS[i % len(SUBJECTS)]} {ACTIONS[(i // len(SUBJECTS)) % len(ACTIONS)]} {ENDINGS[i % len(ENDINGS)]} #{i}"


@dataclass
class Visit:
    phase: str
    page: str
    path: str
    seconds: float = 0.0
    data: dict | None = None
    error: str | None = None
    moves: list[float] = field(default_factory=list)
    step: str = "open"  # what the participant was doing: a failure says which step it was and what the tab showed


FAILURE_SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "workshop_failures"
TAB_STATE = """() => {
    const app = document.querySelector("[data-testid='stApp']");
    const status = document.querySelector("[data-testid='stStatusWidget']");
    return `script ${app ? app.getAttribute('data-test-script-state') : 'not loaded'}, `
         + `${document.querySelectorAll("[data-stale='true']").length} stale, `
         + `${document.querySelectorAll("[data-testid='stVegaLiteChart'], [data-testid='stArrowVegaLiteChart']").length} charts, `
         + `${document.querySelectorAll("[data-testid='stException'], [data-testid='stAlertContentError']").length} errors, `
         + `status '${status ? status.innerText.trim().replace(/\\s+/g, ' ').slice(0, 60) : ''}'`;
}"""


async def failed(page, v: Visit, error: Exception) -> None:
    """Record ``error`` on ``v`` with the step it ended and what the tab showed then; keep a screenshot of the tab."""
    try:
        shown = await page.evaluate(TAB_STATE)
        FAILURE_SHOTS.mkdir(parents=True, exist_ok=True)
        shot = FAILURE_SHOTS / f"{v.phase}-{v.page}-{time.time_ns()}.png".replace(" ", "_")
        await page.screenshot(path=str(shot), full_page=True)
        shown += f"; screenshot {shot.name}"
    except Exception as unreadable:  # the tab itself may be gone
        shown = f"tab unreadable ({type(unreadable).__name__})"
    v.error = f"{type(error).__name__} at {v.step}: {str(error)[:160]} [{shown}]"


def url(slug: str, **query: str) -> str:
    return f"/{slug}?{urllib.parse.urlencode(query)}"


async def settled(page, timeout_ms: int, selector: str = "[data-testid='stMain'] h1") -> None:
    """Wait until ``selector`` is present, the script is idle and nothing on the page is stale."""
    await page.wait_for_function(
        """sel => document.querySelector(sel) !== null
                && document.querySelector("[data-testid='stApp'][data-test-script-state='notRunning']") !== null
                && document.querySelectorAll("[data-stale='true']").length === 0""",
        arg=selector, timeout=timeout_ms, polling=100,
    )


async def opened(page, go: Callable[[], Awaitable[object]], title: str, timeout_ms: int) -> float:
    """Await ``go()`` (a navigation or a click), then the page title selector ``title`` and a settled page:
    the seconds it took."""
    started = time.perf_counter()
    await go()
    await page.wait_for_selector(title, timeout=timeout_ms)
    await settled(page, timeout_ms)
    await page.wait_for_timeout(500)  # a page may rerun once after its first run (a preset filling its inputs)
    await settled(page, timeout_ms)
    return time.perf_counter() - started - 0.5


async def open_page(page, base: str, path: str, timeout_ms: int) -> float:
    """Open the link ``path`` in ``page``: seconds until the page is settled."""
    return await opened(page, lambda: page.goto(base + path, timeout=timeout_ms), "[data-testid='stMain'] h1", timeout_ms)


async def open_by_menu(page, title: str, timeout_ms: int) -> float:
    """Click ``title`` in the sidebar menu of ``page`` (the app open in it): seconds until the page is settled."""
    return await opened(page, lambda: menu_link(page, title).click(timeout=timeout_ms), title_selector(title), timeout_ms)


async def check_visit(page, v: Visit, timeout_ms: int, with_data: bool) -> None:
    """Record the first problem the page shows, else (``with_data``) its charts' data."""
    problems = await page.query_selector_all("[data-testid='stException'], [data-testid='stAlertContentError']")
    if problems:
        v.error = (await problems[0].inner_text())[:200]
    elif with_data:
        v.step = "chart downloads"
        v.data = await chart_downloads(page, timeout_ms, MAX_CHARTS)
        await settled(page, timeout_ms)


async def visit(browser_context, base: str, v: Visit, timeout_ms: int, delay: float, with_data: bool) -> Visit:
    """Open ``v.path`` in a new tab of ``browser_context`` after ``delay`` seconds, then close the tab."""
    await asyncio.sleep(delay)
    page = await browser_context.new_page()
    try:
        v.seconds = await open_page(page, base, v.path, timeout_ms)
        await check_visit(page, v, timeout_ms, with_data)
    except Exception as error:  # a participant's failure is counted, not raised
        await failed(page, v, error)
    finally:
        await page.close()
    return v


async def visit_by_menu(page, base: str, v: Visit, title: str | None, timeout_ms: int, delay: float) -> Visit:
    """In the participant's one tab ``page``: open ``v.path`` by its link (``title`` None) or click ``title`` in the menu."""
    await asyncio.sleep(delay)
    try:
        v.seconds = await (open_page(page, base, v.path, timeout_ms) if title is None else open_by_menu(page, title, timeout_ms))
        await check_visit(page, v, timeout_ms, True)
    except Exception as error:
        await failed(page, v, error)
    return v


async def tinker(browser_context, base: str, v: Visit, timeout_ms: int, spread: float, moves: int, rng: random.Random) -> Visit:
    """Open Attention (cached by now), then move the Layer or Head slider ``moves`` times over ``spread`` seconds."""
    page = await browser_context.new_page()
    try:
        await page.set_viewport_size({"width": 1400, "height": 2000})
        v.seconds = await open_page(page, base, v.path, timeout_ms)
        v.step = "first one-head chart"
        await settled(page, timeout_ms, "[class*='st-key-attention_L']")
        sliders = page.locator(SLIDER)
        for move in range(moves):
            v.step = f"slider move {move + 1}"
            await asyncio.sleep(rng.uniform(0, 2 * spread / moves))
            which = rng.randrange(2)
            thumb = sliders.nth(which)
            low, high, now = await thumb.evaluate(SLIDER_STATE)
            step = 1 if now < high else -1
            if not low <= now + step <= high:
                continue
            other = (await sliders.nth(1 - which).evaluate(SLIDER_STATE))[2]
            layer, head = (now + step, other) if which == 0 else (other, now + step)
            await thumb.focus()
            started = time.perf_counter()
            await page.keyboard.press("ArrowRight" if step > 0 else "ArrowLeft")
            await settled(page, timeout_ms, f"[class*='st-key-attention_L{layer}H{head}-']")
            v.moves.append(time.perf_counter() - started)
    except Exception as error:
        await failed(page, v, error)
    finally:
        await page.close()
    return v


async def new_context(browser, timeout_ms: int):
    """A participant's browser context whose waits all get the run's time limit."""
    context = await browser.new_context(accept_downloads=True)
    context.set_default_timeout(timeout_ms)
    return context


async def run_phase(base: str, phase: str, n: int, spread: float, timeout_ms: int, seed: int, follow_by: str = "link",
                    pages: set[str] | None = None) -> list[Visit]:
    """One phase's visits; ``pages`` (names of FOLLOW_PAGES/EXPLORE_PAGES) keeps only those pages (None: all)."""
    from playwright.async_api import async_playwright

    follow_pages = [(name, slug) for name, slug in FOLLOW_PAGES if pages is None or name in pages]
    explore_pages = [(name, slug) for name, slug in EXPLORE_PAGES if pages is None or name in pages]

    rng = random.Random(seed)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        # every wait gets the run's time limit (Playwright's default is 30 s): under load, slowness is measured, not failed
        contexts = [await new_context(browser, timeout_ms) for _ in range(n)]
        try:
            if phase == "follow" and follow_by == "menu":  # one tab each: Home by the link, then the menu
                tabs = [await c.new_page() for c in contexts]
                out = []
                for i, (name, slug) in enumerate(follow_pages):
                    out += await asyncio.gather(*(visit_by_menu(t, base, Visit("follow", name, url(slug, prompt=PRESET)),
                                                                TITLES[name] if i else None, timeout_ms, rng.uniform(0, 5))
                                                  for t in tabs))
                return out
            if phase == "follow":  # page by page: everyone within 5 s, then the presenter moves on
                out = []
                for name, slug in follow_pages:
                    out += await asyncio.gather(*(visit(c, base, Visit("follow", name, url(slug, prompt=PRESET)), timeout_ms,
                                                        rng.uniform(0, 5), True) for c in contexts))
                return out
            if phase == "explore":
                async def participant(i: int, context) -> list[Visit]:
                    await asyncio.sleep(rng.uniform(0, spread))
                    return [await visit(context, base, Visit("explore", name, url(slug, prompt=own_prompt(i))), timeout_ms, 0, True)
                            for name, slug in explore_pages]
                return [v for vs in await asyncio.gather(*(participant(i, c) for i, c in enumerate(contexts))) for v in vs]
            # tinker: everyone on Attention with the presenter's prompt; two others sweep
            sliders = [tinker(c, base, Visit("tinker", "attention sliders", url("attention", prompt=PRESET)), timeout_ms, spread, 10,
                              random.Random(seed + i)) for i, c in enumerate(contexts)]
            sweeps = [visit(await new_context(browser, timeout_ms), base, Visit("tinker", "patching sweep", url("activation_patching", **s)),
                            timeout_ms, rng.uniform(0, 5), False) for s in SWEEPS]
            return list(await asyncio.gather(*sliders, *sweeps))
        finally:
            await browser.close()


async def solo(base: str, visits: list[Visit], timeout_ms: int) -> dict[str, Visit]:
    """Each distinct path of ``visits`` alone, one after another."""
    from playwright.async_api import async_playwright

    out = {}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for path in dict.fromkeys(v.path for v in visits):
                context = await new_context(browser, timeout_ms)
                out[path] = await visit(context, base, Visit("solo", "", path), timeout_ms, 0, True)
                await context.close()
        finally:
            await browser.close()
    return out


class RssWatch:
    """The peak resident memory of a process, sampled every 0.5 s in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                text = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            kb = next((int(line.split()[1]) for line in text.splitlines() if line.startswith("VmRSS:")), 0)
            self.peak = max(self.peak, kb * 1024)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far, from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> float:
    """CPU seconds the whole machine has been busy so far (all CPUs: user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


GOALS = {"follow": 2.0, "explore": 15.0, "tinker": 1.0}


def main() -> int:
    # a SIGTERM (e.g. from `timeout`) unwinds through the finally blocks, so the server it started is stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--participants", type=int, default=30, help="browser sessions (default 30)")
    parser.add_argument("--phases", default="follow,explore,tinker", help="comma-separated subset of follow,explore,tinker")
    parser.add_argument("--spread", type=float, default=60.0, help="seconds over which explore arrivals and tinker moves spread (60)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds any one page load or move may take (600)")
    parser.add_argument("--no-solo", action="store_true", help="skip the solo runs (no chart-data comparison)")
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--follow-by", choices=("link", "menu"), default="link",
                        help="follow: open each page by the presenter's link (default) or by a click in the sidebar menu")
    parser.add_argument("--pages", default="", help="follow and explore only these pages, comma-separated (e.g. attention; "
                        f"names: {', '.join(name for name, _ in FOLLOW_PAGES)}); default: all")
    args = parser.parse_args()
    pages = set(args.pages.split(",")) if args.pages else None
    if pages and pages - {name for name, _ in FOLLOW_PAGES}:
        raise SystemExit(f"unknown page(s) {sorted(pages - {name for name, _ in FOLLOW_PAGES})} in --pages")
    phases = [p for p in args.phases.split(",") if p]
    timeout_ms = args.timeout * 1000

    port = free_port()
    server = start_server(port)
    watch = RssWatch(server.pid)
    results: list[Visit] = []
    walls, cpu = {}, {}
    try:
        for phase in phases:
            t0, server0, machine0 = time.perf_counter(), process_cpu(server.pid), machine_cpu()
            results += asyncio.run(run_phase(f"http://127.0.0.1:{port}", phase, args.participants, args.spread, timeout_ms, args.seed,
                                             args.follow_by, pages))
            walls[phase] = time.perf_counter() - t0
            server_s = process_cpu(server.pid) - server0
            cpu[phase] = (server_s, machine_cpu() - machine0 - server_s)
            print(f"{phase}: done in {walls[phase]:.0f} s; CPU seconds: server {cpu[phase][0]:.0f}, rest of the machine {cpu[phase][1]:.0f}", flush=True)
    finally:
        peak = watch.stop()
        stop_server(server)

    failures = [f"{v.phase} {v.page} {v.path}: {v.error}" for v in results if v.error]
    compared = [v for v in results if v.data is not None]
    if compared and not args.no_solo:
        server = start_server(port)  # fresh server: the solo runs recompute everything
        try:
            alone = asyncio.run(solo(f"http://127.0.0.1:{port}", compared, timeout_ms))
        finally:
            stop_server(server)
        for v in compared:
            ref = alone[v.path]
            if ref.error:
                failures.append(f"solo {v.path}: {ref.error}")
            elif not same(v.data, ref.data):
                failures.append(f"{v.phase} {v.path}: chart data differs from the solo run at {first_difference(v.data, ref.data)}")

    print(f"\n{args.participants} participants on one server ({os.cpu_count()} CPUs); peak server RSS {peak / 2**30:.2f} GB (goal < 3)")
    print(f"{'phase':8s} {'page':22s} {'n':>4s} {'p50 s':>7s} {'p95 s':>7s} {'goal p95':>9s}")
    for phase in phases:
        rows = [v for v in results if v.phase == phase]
        for name in dict.fromkeys(v.page for v in rows):
            times = [t for v in rows if v.page == name and not v.error for t in (v.moves or [v.seconds])]
            if times:
                goal = GOALS[phase] if name != "patching sweep" else float("nan")
                print(f"{phase:8s} {name:22s} {len(times):4d} {percentile(times, 0.5):7.2f} {percentile(times, 0.95):7.2f} {goal:9.1f}")
    print(f"\n{'phase':8s} {'wall s':>7s} {'server CPU s':>13s} {'browsers CPU s':>15s}  (browsers: the rest of the machine; "
          f"available: wall x {os.cpu_count()} CPUs)")
    for phase in phases:
        print(f"{phase:8s} {walls[phase]:7.0f} {cpu[phase][0]:13.0f} {cpu[phase][1]:15.0f}  ({walls[phase] * (os.cpu_count() or 1):.0f} available)")
    return report_failures(failures)


if __name__ == "__main__":
    sys.exit(main())
