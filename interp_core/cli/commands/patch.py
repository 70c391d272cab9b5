"""``patch --clean C --corrupt X --answer A --wrong B --target T [--method exact|attribution]``:
a grid of normalised recovery from activation patching (denoising)."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from interp_core.techniques.patching import METHODS, TARGETS, patch, prepare_pair, sweep_cost

NAME = "patch"
HELP = "activation patching: how much of the clean answer each layer/position/head restores"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clean", required=True, help="the clean prompt")
    parser.add_argument("--corrupt", required=True, help="the corrupted prompt (same number of tokens)")
    parser.add_argument("--answer", required=True, help="the clean answer token, with its leading space (' Mary')")
    parser.add_argument("--wrong", required=True, help="the corrupted answer token (' John')")
    parser.add_argument("--target", required=True, choices=TARGETS)
    parser.add_argument("--method", default="exact", choices=METHODS, help="exact (batched patching) or attribution (approximation)")


def run(args: argparse.Namespace) -> dict:
    from interp_core.cli.support import model_from_args

    model = model_from_args(args)
    if args.method == "exact" and not args.json:  # say what it costs first; --json output stays exactly as it was
        pair = prepare_pair(model, args.clean, args.corrupt, args.answer, args.wrong)
        cost = sweep_cost(model, pair, args.target)
        print(f"exact patching of {args.target}: {cost.cells:,} cells over {pair.n_pos} tokens, {cost.describe()} "
              "on a 2-core CPU (estimate; a GPU is faster)", file=sys.stderr, flush=True)
    return patch(model, args.clean, args.corrupt, args.answer, args.wrong, args.target, method=args.method).to_json()


def format_text(result: dict) -> str:
    lines = [
        f"{result['method']} patching of {result['target']}: clean metric {result['clean_metric']:.3f}, "
        f"corrupted {result['corrupt_metric']:.3f} (logit {result['answer']!r} - {result['wrong']!r})",
        "tokens: " + " | ".join(repr(t) for t in result["tokens"]),
    ]
    grid = np.array(result["grid"], dtype=float)
    if grid.ndim == 3:  # (layer, head, pos) -> rows "L{l}H{h}"
        grid = grid.reshape(-1, grid.shape[-1])
        rows = [f"L{l}H{h}" for l in result["labels"][0] for h in result["labels"][1]]
    else:
        rows = [f"L{l}" for l in result["labels"][0]]
    lines.append(f"normalised recovery, rows {' x '.join(result['axes'][:-1])}, columns {result['axes'][-1]}:")
    for label, row in zip(rows, grid):
        lines.append(f"{label:>7} " + " ".join(f"{v:6.2f}" for v in row))
    return "\n".join(lines)
