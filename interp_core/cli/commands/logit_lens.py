"""``logit-lens --model M --prompt P [--target T] [--lens logit|tuned] [--top-k K] [--train]``.

JSON keys: ``tokens``, ``layers`` (boundary labels), ``top`` (per layer, per position, a list
of ``{token, prob}``), and with ``--target`` also ``target_prob`` and ``target_rank`` (1 =
top) per layer at the last position. ``--lens tuned`` reads the saved tuned lens; ``--train``
trains (and saves) one first if none is saved.
"""

from __future__ import annotations

import argparse

from interp_core.cli.support import model_from_args, request_from_args
from interp_core.techniques.contract import run as run_technique
from interp_core.techniques.logit_lens import LogitLensRequest
from interp_core.techniques.tuned_lens import TrainTunedLensRequest, load_tuned_lens

NAME = "logit-lens"
HELP = "the model's next-token guess read at every layer boundary (logit lens or tuned lens)"
REQUEST = LogitLensRequest
CLI_ONLY = ("train",)  # a separate (heavy) request, run first when asked and no lens is saved


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--target", default=None, help="a single token to track, e.g. ' Paris' (leading space matters)")
    parser.add_argument("--lens", choices=("logit", "tuned"), default="logit", help="logit lens (default) or the saved tuned lens")
    parser.add_argument("--top-k", type=int, default=5, help="top tokens kept per cell (1..50)")
    parser.add_argument("--train", action="store_true", help="with --lens tuned: train and save a tuned lens if none is saved")


def run(args: argparse.Namespace) -> dict:
    request = request_from_args(LogitLensRequest, args)
    model = model_from_args(args)
    if request.lens == "tuned" and args.train and load_tuned_lens(model) is None:
        run_technique(model, TrainTunedLensRequest())
    return run_technique(model, request).to_json()


def format_text(result: dict) -> str:
    lines = [f"{result['lens']} lens; tokens: " + " | ".join(repr(t) for t in result["tokens"])]
    for b, label in enumerate(result["layers"]):
        best = result["top"][b][-1]
        guesses = ", ".join(f"{e['token']!r} {e['prob']:.0%}" for e in best[:3])
        extra = ""
        if "target_prob" in result:
            extra = f"   {result['target']!r}: p={result['target_prob'][b]:.3f} rank {result['target_rank'][b]}"
        lines.append(f"{label:>6}: {guesses}{extra}")
    return "\n".join(lines)
