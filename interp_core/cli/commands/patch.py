"""``patch --clean C --corrupt X --answer A --wrong B --target T [--method exact|attribution]``:
a grid of normalised recovery from activation patching (denoising)."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from interp_core.cli.support import model_from_args, request_from_args
from interp_core.core.head_id import head_label
from interp_core.techniques.contract import run as run_technique
from interp_core.techniques.patch_pair import METHODS, TARGETS
from interp_core.techniques.patching_requests import PatchRequest

NAME = "patch"
HELP = "activation patching: how much of the clean answer each layer/position/head restores"
REQUEST = PatchRequest  # the page's request for the same grid: every flag is one of its fields


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clean", required=True, help="the clean prompt")
    parser.add_argument("--corrupt", required=True, help="the corrupted prompt (same number of tokens)")
    parser.add_argument("--answer", required=True, help="the clean answer token, with its leading space (' Mary')")
    parser.add_argument("--wrong", required=True, help="the corrupted answer token (' John')")
    parser.add_argument("--target", required=True, choices=TARGETS)
    parser.add_argument("--method", default="exact", choices=METHODS, help="exact (batched patching) or attribution (approximation)")


def run(args: argparse.Namespace) -> dict:
    request = request_from_args(PatchRequest, args)
    model = model_from_args(args)
    if request.method == "exact" and not args.json:  # say what it costs first; --json output stays exactly as it was
        cost = request.cost(model)
        print(f"exact patching of {request.target}: {cost.cells:,} cells over {request.pair(model).n_pos} tokens, "
              f"{cost.describe()} on a 2-core CPU (estimate; a GPU is faster)", file=sys.stderr, flush=True)
    return run_technique(model, request).to_json()


def format_text(result: dict) -> str:
    lines = [
        f"{result['method']} patching of {result['target']}: clean metric {result['clean_metric']:.3f}, "
        f"corrupted {result['corrupt_metric']:.3f} (logit {result['answer']!r} - {result['wrong']!r})",
        "tokens: " + " | ".join(repr(t) for t in result["tokens"]),
    ]
    grid = np.array(result["grid"], dtype=float)
    if grid.ndim == 3:  # (layer, head, pos) -> rows "L{l}H{h}"
        grid = grid.reshape(-1, grid.shape[-1])
        rows = [head_label(int(layer), int(head)) for layer in result["labels"][0] for head in result["labels"][1]]
    else:
        rows = [f"L{l}" for l in result["labels"][0]]
    lines.append(f"normalised recovery, rows {' x '.join(result['axes'][:-1])}, columns {result['axes'][-1]}:")
    for label, row in zip(rows, grid):
        lines.append(f"{label:>7} " + " ".join(f"{v:6.2f}" for v in row))
    return "\n".join(lines)
