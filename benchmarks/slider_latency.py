"""How long the Attention page takes to answer a move of its Layer slider, in a real browser.

Starts a fresh server (``python -m ui.serve``), opens the Attention page on the default model in
headless Chromium, waits until it is idle, then moves the Layer slider ``--moves`` times with the
keyboard (ArrowRight, then ArrowLeft at the top end) and times each move from the key press
until the app is idle again and the one-head chart shows the new layer (its download button is
keyed ``attention_L{layer}H{head}``). Prints every time, the median and the p90, the server's CPU
time per move (its process's user+system time from the key press until 0.2 s after the page is
idle, so work the server does after its last message counts too: less noisy than wall time on a
shared machine) and the load average before and after, and stops the server.

    .venv/bin/python benchmarks/slider_latency.py [--moves 15] [--port 8630]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from load import ARGS, CHROMIUM, start_server, stop_server  # noqa: E402

IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
# Streamlit 1.67 draws the thumb as a visually hidden <input type="range"> (an implicit role=slider)
SLIDER = "[data-testid='stSlider'] [role='slider'], [data-testid='stSlider'] input[type='range']"


def settled(page, selector: str, timeout_ms: int) -> None:
    """Wait until ``selector`` is present, the script is idle and nothing is stale."""
    page.wait_for_function(
        """sel => document.querySelector(sel) !== null
                && document.querySelector("[data-testid='stApp'][data-test-script-state='notRunning']") !== null
                && document.querySelectorAll("[data-stale='true']").length === 0""",
        arg=selector, timeout=timeout_ms, polling="raf",
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def measure(url: str, moves: int, server_pid: int) -> tuple[list[float], list[float]]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2000})
        page.goto(f"{url}/attention", timeout=60_000)
        page.wait_for_selector("[data-testid='stMain'] h1", timeout=300_000)
        settled(page, "[class*='st-key-attention_L']", 300_000)
        page.wait_for_timeout(1500)  # a page may rerun once after its first run
        settled(page, "[class*='st-key-attention_L']", 300_000)
        thumb = page.locator(SLIDER).first
        low, high, layer = (int(thumb.get_attribute(f"aria-value{name}") or thumb.get_attribute(attr))
                            for name, attr in (("min", "min"), ("max", "max"), ("now", "value")))
        step = 1 if layer < high else -1
        thumb.focus()
        times, cpu = [], []
        for _ in range(moves):
            if not low <= layer + step <= high:
                step = -step
            layer += step
            cpu_start = cpu_seconds(server_pid)
            start = time.perf_counter()
            page.keyboard.press("ArrowRight" if step > 0 else "ArrowLeft")
            settled(page, f"[class*='st-key-attention_L{layer}H']", 120_000)
            times.append(time.perf_counter() - start)
            page.wait_for_timeout(200)
            cpu.append(cpu_seconds(server_pid) - cpu_start)
            thumb.focus()
        browser.close()
    return times, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=15)
    parser.add_argument("--port", type=int, default=8630)
    args = parser.parse_args()
    (ROOT / "artifacts").mkdir(exist_ok=True)
    load_before = os.getloadavg()
    proc = start_server(args.port, ROOT / "artifacts" / "slider_latency_server.log", keep_results=True)
    try:
        times, cpu = measure(f"http://127.0.0.1:{args.port}", args.moves, proc.pid)
    finally:
        stop_server(proc)
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    print("moves:", " ".join(f"{t:.3f}" for t in times))
    print(f"median {statistics.median(times):.3f} s, p90 {p90:.3f} s over {len(times)} moves")
    print(f"server CPU per move: median {statistics.median(cpu):.3f} s (" + " ".join(f"{c:.2f}" for c in cpu) + ")")
    print("load average (1, 5, 15 min): before " + " ".join(f"{x:.2f}" for x in load_before)
          + ", after " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
