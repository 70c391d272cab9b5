"""``train-toy --task T --out DIR [--epochs N] [--overwrite] --json``: train a toy model, save it, take it apart.

``--out`` is checked before training: it must be a writable place, and an existing non-empty
directory is refused unless ``--overwrite`` is given. The model is written atomically, so a
failed run leaves nothing behind and never damages what was there.
"""

from __future__ import annotations

import argparse
import sys

from interp_core.cli.support import request_from_args
from interp_core.techniques.contract import run as run_technique
from interp_core.techniques.toy.tasks import TASKS
from interp_core.techniques.toy.train import ToyTrainRequest

NAME = "train-toy"
HELP = "train a toy model (reverse-increment, pattern-copy, induction) with a seed, save it as an HF directory, report accuracy"
NEEDS_MODEL = False
REQUEST = ToyTrainRequest
CLI_ONLY = ("quiet",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=list(TASKS))
    parser.add_argument("--out", required=True, help="directory to save the trained model in (created; must not hold anything unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it already holds something")
    parser.add_argument("--epochs", type=int, default=None, help="default: the task's own (see toy_models/README.md)")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--weight-decay", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many optimiser steps")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def run(args: argparse.Namespace) -> dict:
    from interp_core.core.loading import load_model
    from interp_core.techniques.toy.analysis import ToyAnalysisRequest

    def report(fraction: float, message: str) -> None:
        if not args.quiet:
            print(f"[{fraction:6.1%}] {message}", file=sys.stderr, flush=True)

    out = run_technique(None, request_from_args(ToyTrainRequest, args), report).to_json()
    model = load_model(args.out, device=args.device)  # analysed as every page sees it: the saved directory
    analysis = run_technique(model, ToyAnalysisRequest(args.task, args.seed)).to_json()
    if args.task == "reverse-increment":
        out["ablations"] = analysis["ablations"]
        out["sequence_accuracy"] = analysis["sequence_accuracy"]
    else:
        out["head_scores"] = analysis["head_scores"]
    return out


def format_text(result: dict) -> str:
    lines = [
        f"task {result['task']}: {result['epochs_run']} epochs, {result['steps']} steps in {result['seconds']:.1f} s on {result['device']}",
        f"final training loss {result['final_loss']:.4f} nats; holdout loss {result['holdout_loss']:.4f}",
        f"holdout accuracy {result['holdout_accuracy']:.2%}",
    ]
    for name, value in result.get("ablations", {}).items():
        lines.append(f"  ablation {name}: {value:.2%}")
    for head, scores in result.get("head_scores", {}).items():
        lines.append(f"  {head}: previous-token {scores['previous_token']:.2f}, induction {scores['induction']:.2f}")
    lines.append(f"saved to {result['out_dir']}")
    return "\n".join(lines)
