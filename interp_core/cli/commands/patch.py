"""``patch --clean C --corrupt X --answer A --wrong B --target T [--method exact|attribution]``:
a grid of normalised recovery from activation patching (denoising); or, with
``--dataset ioi|factual|FILE.csv [--n N] [--seed S] [--template K]``, the mean grid over a dataset of pairs,
its spread and each pair's metrics."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from interp_core.cli.dataset_flags import add_dataset_arguments, dataset_request
from interp_core.cli.support import model_from_args, request_from_args
from interp_core.core.errors import UsageError
from interp_core.core.head_id import head_label
from interp_core.techniques.contract import run as run_technique
from interp_core.techniques.dataset_requests import DatasetPatchRequest
from interp_core.techniques.patch_pair import METHODS, TARGETS
from interp_core.techniques.patching_requests import PatchRequest

NAME = "patch"
HELP = "activation patching: how much of the clean answer each layer/position/head restores"
REQUEST = PatchRequest  # the page's request for the same grid: every flag is one of its fields
CLI_ONLY = ("dataset", "n", "seed", "template")  # the fields of DatasetPatchRequest, the request of --dataset
PAIR_FLAGS = ("clean", "corrupt", "answer", "wrong")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clean", help="the clean prompt")
    parser.add_argument("--corrupt", help="the corrupted prompt (same number of tokens)")
    parser.add_argument("--answer", help="the clean answer token, with its leading space (' Mary')")
    parser.add_argument("--wrong", help="the corrupted answer token (' John')")
    parser.add_argument("--target", required=True, choices=TARGETS)
    parser.add_argument("--method", default="exact", choices=METHODS, help="exact (batched patching) or attribution (approximation)")
    add_dataset_arguments(parser)


def run(args: argparse.Namespace) -> dict:
    if args.dataset is not None:
        given = [f"--{flag}" for flag in PAIR_FLAGS if getattr(args, flag) is not None]
        if given:
            raise UsageError(f"--dataset takes its prompts and answers from the pairs; drop {', '.join(given)}.")
        request = dataset_request(DatasetPatchRequest, args, target=args.target, method=args.method)
    else:
        missing = [f"--{flag}" for flag in PAIR_FLAGS if getattr(args, flag) is None]
        if missing:
            raise UsageError(f"patch needs {', '.join(missing)} (one pair), or --dataset ioi|factual|FILE.csv (many pairs).")
        request = request_from_args(PatchRequest, args)
    model = model_from_args(args)
    if request.method == "exact" and not args.json:  # say what it costs first; --json output stays exactly as it was
        cost = request.cost(model)
        what = f"{request.pair(model).n_pos} tokens" if isinstance(request, PatchRequest) else f"{request.n if request.dataset != 'csv' else 'the CSV'} pairs"
        print(f"exact patching of {request.target}: {cost.cells:,} cells over {what}, "
              f"{cost.describe()} on a 2-core CPU (estimate; a GPU is faster)", file=sys.stderr, flush=True)
    return run_technique(model, request).to_json()


def format_text(result: dict) -> str:
    if "pairs" in result:
        return _format_dataset(result)
    lines = [
        f"{result['method']} patching of {result['target']}: clean metric {result['clean_metric']:.3f}, "
        f"corrupted {result['corrupt_metric']:.3f} (logit {result['answer']!r} - {result['wrong']!r})",
        "tokens: " + " | ".join(repr(t) for t in result["tokens"]),
    ]
    return "\n".join(lines + _grid_lines(result, result["grid"], "normalised recovery"))


def _grid_lines(result: dict, values: list, title: str) -> list[str]:
    grid = np.array(values, dtype=float)
    if grid.ndim == 3:  # (layer, head, pos) -> rows "L{l}H{h}"
        grid = grid.reshape(-1, grid.shape[-1])
        rows = [head_label(int(layer), int(head)) for layer in result["labels"][0] for head in result["labels"][1]]
    else:
        rows = [f"L{l}" for l in result["labels"][0]]
    lines = [f"{title}, rows {' x '.join(result['axes'][:-1])}, columns {result['axes'][-1]}:"]
    for label, row in zip(rows, grid):
        lines.append(f"{label:>7} " + " ".join(f"{v:6.2f}" for v in row))
    return lines


def _format_dataset(result: dict) -> str:
    lines = [
        f"{result['method']} patching of {result['target']} over {len(result['pairs'])} pairs: mean clean metric "
        f"{result['clean_metric']:.3f}, mean corrupted {result['corrupt_metric']:.3f}",
        "tokens of the first pair: " + " | ".join(repr(t) for t in result["tokens"]),
    ]
    lines += _grid_lines(result, result["grid"], "normalised recovery of the mean")
    lines += _grid_lines(result, result["grid_std"], "standard deviation over pairs of each pair's recovery")
    return "\n".join(lines)
