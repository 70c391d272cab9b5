"""GPU check: every CLI subcommand on the best device and on the CPU, numbers compared, both timed.

    python benchmarks/gpu_check.py                  # best device (CUDA, then MPS) against the CPU
    python benchmarks/gpu_check.py --device cpu     # the CPU against itself: the script works, numbers equal
    python benchmarks/gpu_check.py --quick          # five subcommands and a 6-token patching check
    python benchmarks/gpu_check.py --device-map auto --dtype bfloat16 --tolerance 0.15   # a dispatched load

Each case is one of ``benchmarks/cli_contract.py``'s default-model cases (the same arguments the CLI
contract records), run in this process through ``interp_core.cli.main.main`` with ``--json``; the
model is loaded once per configuration (the timings are the subcommand's own work, not the load).
The two JSON outputs are compared number by number (:func:`interp_core.testing.compare.compare_json`):
a case passes when every number agrees within ``--tolerance`` (default 1e-3, for float32) relative to
``max(|x|, 1)`` and all text (tokens, names) is identical. Then the exact patching grid (IOI,
``resid_pre``) is timed against the naive loop (one full forward per cell) on both devices.

Timings are wall-clock seconds of one run each; on a shared machine they are noisy, so compare the
ratios within one run. Prints a Markdown table; ``--json FILE`` also writes every number.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
from cli_contract import CASES, IOI_CLEAN, IOI_CORRUPT  # noqa: E402

import interp_core.cli.support as support  # noqa: E402
from interp_core.cli.main import main as cli_main  # noqa: E402
from interp_core.core.load_options import LoadOptions, make_options  # noqa: E402
from interp_core.core.loading import DEFAULT_MODEL, load_model, pick_device  # noqa: E402
from interp_core.techniques.patching import exact_patching, naive_patching, prepare_pair  # noqa: E402
from interp_core.testing.compare import compare_json  # noqa: E402

QUICK = ("predict", "logit_lens", "dla", "patch_resid", "circuits")
SHORT_PAIR = ("The capital of France is", "The capital of Italy is", " Paris", " Rome")  # --quick: 6 tokens, not 15
_LOADED: dict[tuple, object] = {}


def cached_load(spec: str, *, device: str | None = None, options: LoadOptions | None = None, **kwargs: object) -> object:
    """``load_model`` once per (model, device, options): the subcommands' timings leave the load out."""
    key = (spec, device, options)
    if key not in _LOADED:
        _LOADED[key] = load_model(spec, device=device, options=options, **kwargs)
    return _LOADED[key]


def run_case(argv: list[str], flags: list[str], tmp: str) -> tuple[dict, float]:
    """One subcommand with ``--json``: (its JSON, wall-clock seconds)."""
    argv = [a.replace("{tmp}", tmp) for a in argv] + flags + ["--json"]
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        status = cli_main(argv)
    seconds = time.perf_counter() - start
    result = json.loads(out.getvalue() or "{}")
    if status != 0:
        result = {"error": result.get("error", f"exit {status}")}
    return result, seconds


def configurations(args: argparse.Namespace) -> dict[str, list[str]]:
    """The CLI flags of the two runs: ``best`` (the device or dispatch asked for) and ``cpu``."""
    best: list[str] = ["--dtype", args.dtype]
    if args.device_map:
        best += ["--device-map", args.device_map] + (["--max-memory", args.max_memory] if args.max_memory else [])
        best += ["--offload-folder", args.offload_folder] if args.offload_folder else []
    else:
        best += ["--device", str(pick_device(args.device))]
    return {"best": best, "cpu": ["--device", "cpu"]}


def check_subcommands(args: argparse.Namespace, flags: dict[str, list[str]]) -> list[dict]:
    names = [n for n in CASES if not n.startswith("toy_")]
    if args.quick:
        names = [n for n in names if n in QUICK]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    rows = []
    for name in names:
        argv = list(CASES[name])
        if name != "train_toy":
            argv += ["--model", args.model]
        best_flags = flags["best"]
        if name == "train_toy":  # trains on one device, in float32: it takes --device only
            if args.device_map:
                continue
            best_flags = best_flags[best_flags.index("--device"):]
        with tempfile.TemporaryDirectory() as tmp:
            cpu, cpu_s = run_case(argv, flags["cpu"], tmp)
        with tempfile.TemporaryDirectory() as tmp:
            best, best_s = run_case(argv, best_flags, tmp)
        diff = compare_json(cpu, best)
        error = cpu.get("error") or best.get("error")
        rows.append({"case": name, "cpu_s": round(cpu_s, 3), "best_s": round(best_s, 3),
                     "speedup": round(cpu_s / best_s, 2) if best_s > 0 else None, "numbers": diff.numbers,
                     "max_abs": diff.max_abs, "max_rel": diff.max_rel,
                     "ok": error is None and diff.within(args.tolerance),
                     "note": error or "; ".join(diff.mismatches[:2])})
        print(f"{name:12s} cpu {cpu_s:7.2f} s  best {best_s:7.2f} s  max rel diff {diff.max_rel:.2e}  "
              f"{'ok' if rows[-1]['ok'] else 'DIFFERS: ' + rows[-1]['note'][:120]}", flush=True)
    return rows


def setups(args: argparse.Namespace) -> dict[str, tuple[str | None, LoadOptions]]:
    """(device, options) of the two runs, as :func:`interp_core.cli.support.model_from_args` loads them."""
    best_options = make_options(args.dtype, args.device_map, args.max_memory, args.offload_folder)
    return {"best": (None if args.device_map else str(pick_device(args.device)), best_options), "cpu": ("cpu", LoadOptions())}


def check_patching(args: argparse.Namespace) -> list[dict]:
    """Exact patching grid against the naive loop, ``resid_pre``, on both configurations: the IOI pair
    (15 tokens), or with ``--quick`` a 6-token pair."""
    rows = []
    clean, corrupt, answer, wrong = SHORT_PAIR if args.quick else (IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    for label, (device, options) in setups(args).items():
        model = cached_load(args.patching_model or args.model, device=device, options=options)
        pair = prepare_pair(model, clean, corrupt, answer, wrong)
        start = time.perf_counter()
        naive = naive_patching(model, pair, "resid_pre")
        naive_s = time.perf_counter() - start
        start = time.perf_counter()
        exact = exact_patching(model, pair, "resid_pre")
        exact_s = time.perf_counter() - start
        rows.append({"config": label, "device": model.info.device, "dtype": model.info.dtype, "cells": int(exact.patched.size),
                     "naive_s": round(naive_s, 3), "exact_s": round(exact_s, 3), "ratio": round(naive_s / exact_s, 1),
                     "max_abs_diff": float(np.abs(exact.patched - naive.patched).max())})
        print(f"patching on {label}: naive {naive_s:.2f} s, exact {exact_s:.2f} s, max |diff| {rows[-1]['max_abs_diff']:.1e}", flush=True)
    return rows


def markdown(rows: list[dict], patching: list[dict], flags: dict[str, list[str]], tolerance: float) -> str:
    lines = [f"best: `{' '.join(flags['best'])}` vs cpu: `{' '.join(flags['cpu'])}`; tolerance {tolerance:g} relative to max(|x|, 1)",
             "", "| subcommand | cpu s | best s | speed-up | numbers | max abs diff | max rel diff | equal |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['cpu_s']:.2f} | {r['best_s']:.2f} | {r['speedup']} | {r['numbers']} | "
                     f"{r['max_abs']:.1e} | {r['max_rel']:.1e} | {'yes' if r['ok'] else 'NO: ' + r['note'][:60]} |")
    lines += ["", "| exact patching (resid_pre) | device | dtype | cells | naive s | exact s | naive/exact | max abs diff |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    for p in patching:
        lines.append(f"| {p['config']} | {p['device']} | {p['dtype']} | {p['cells']} | {p['naive_s']:.2f} | {p['exact_s']:.2f} | "
                     f"{p['ratio']} | {p['max_abs_diff']:.1e} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="the device to check against the CPU (default: the best available)")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--dtype", default="float32", help="dtype of the best-device run (the CPU run is float32)")
    parser.add_argument("--device-map", default=None, help="dispatch the best-device run with accelerate instead of --device")
    parser.add_argument("--max-memory", default=None)
    parser.add_argument("--offload-folder", default=None)
    parser.add_argument("--tolerance", type=float, default=1e-3)
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--only", default="", help="comma-separated case names of benchmarks/cli_contract.py")
    parser.add_argument("--no-patching", action="store_true", help="skip the exact-vs-naive patching timing")
    parser.add_argument("--patching-model", default=None, help="time exact vs naive patching on this model instead")
    parser.add_argument("--json", type=Path, default=None, help="also write every number to this file")
    args = parser.parse_args()
    support.load_model = cached_load  # model_from_args loads through this name: once per configuration
    flags = configurations(args)
    print(f"gpu_check: model {args.model}; best {' '.join(flags['best'])}", flush=True)
    for device, options in setups(args).values():  # load both before any timing
        cached_load(args.model, device=device, options=options)
    rows = check_subcommands(args, flags)
    patching = [] if args.no_patching else check_patching(args)
    table = markdown(rows, patching, flags, args.tolerance)
    print("\n" + table)
    if args.json is not None:
        args.json.write_text(json.dumps({"flags": flags, "cases": rows, "patching": patching}, indent=2))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
