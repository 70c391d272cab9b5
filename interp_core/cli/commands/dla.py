"""``dla --model M --prompt P --answer A [--wrong B] [--position N]``: direct logit attribution; or, with
``--dataset ioi|factual|FILE.csv [--n N] [--seed S] [--template K]``, each pair's clean prompt attributed
(answer minus wrong answer at the last position), the mean contributions, their spread and every pair's."""

from __future__ import annotations

import argparse

import numpy as np

from interp_core.cli.dataset_flags import add_dataset_arguments, dataset_request
from interp_core.cli.support import model_from_args, run_request
from interp_core.core.errors import UsageError
from interp_core.core.head_id import head_label
from interp_core.techniques.contract import run as run_technique
from interp_core.techniques.dataset_requests import DatasetDlaRequest
from interp_core.techniques.dla import DlaRequest

NAME = "dla"
HELP = "direct logit attribution: each component's and each head's direct push on the answer's logit (difference)"
REQUEST = DlaRequest
CLI_ONLY = ("dataset", "n", "seed", "template")  # the fields of DatasetDlaRequest, the request of --dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", help="the prompt (or --dataset for many)")
    parser.add_argument("--answer", default=None, help="the answer token, e.g. ' Paris' (default: the model's top prediction)")
    parser.add_argument("--wrong", default=None, help="a wrong-answer token; the metric becomes the logit difference")
    parser.add_argument("--position", type=int, default=-1, help="which token's prediction to explain (default -1, the last)")
    add_dataset_arguments(parser)


def run(args: argparse.Namespace) -> dict:
    if args.dataset is None:
        if args.prompt is None:
            raise UsageError("dla needs --prompt (one prompt), or --dataset ioi|factual|FILE.csv (many pairs).")
        return run_request(DlaRequest, args)
    given = [f"--{flag}" for flag in ("prompt", "answer", "wrong") if getattr(args, flag) is not None]
    if given or args.position != -1:
        given += ["--position"] if args.position != -1 else []
        raise UsageError(f"--dataset attributes each pair's clean prompt at its last position, answer minus wrong answer; "
                         f"drop {', '.join(given)}.")
    request = dataset_request(DatasetDlaRequest, args)
    return run_technique(model_from_args(args), request).to_json()


def format_text(result: dict) -> str:
    if "pairs" in result:
        return _format_dataset(result)
    lines = [f"{result['metric']} at position {result['position']} ({result['tokens'][result['position']]!r})"]
    lines += [f"{entry['value']:+9.3f}  {entry['name']}" for entry in result["layers"]]
    heads = np.array(result["heads"])
    order = np.argsort(-np.abs(heads), axis=None)[:10]
    lines.append("top heads: " + ", ".join(f"{head_label(layer, head)} {heads[layer, head]:+.3f}" for layer, head in zip(*np.unravel_index(order, heads.shape))))
    lines.append(f"components {sum(e['value'] for e in result['layers']):+.4f} + bias {result['bias_term']:+.4f} = total {result['total']:+.4f}")
    lines.append(f"model's own {result['metric']}: {result['model_logit_diff']:+.4f} (gap {result['gap']:+.2e})")
    return "\n".join(lines)


def _format_dataset(result: dict) -> str:
    lines = [f"{result['metric']} at the last position, mean over {len(result['pairs'])} pairs (std over pairs)"]
    lines += [f"{mean['value']:+9.3f} ({std['value']:.3f})  {mean['name']}" for mean, std in zip(result["layers"], result["layers_std"])]
    heads = np.array(result["heads"])
    order = np.argsort(-np.abs(heads), axis=None)[:10]
    lines.append("top heads (mean): " + ", ".join(f"{head_label(layer, head)} {heads[layer, head]:+.3f}" for layer, head in zip(*np.unravel_index(order, heads.shape))))
    lines.append(f"mean total {result['total']:+.4f}; mean model logit difference {result['model_logit_diff']:+.4f} "
                 f"(largest gap of a pair {result['gap']:.2e})")
    return "\n".join(lines)
