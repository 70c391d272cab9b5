"""``dla --model M --prompt P --answer A [--wrong B] [--position N]``: direct logit attribution."""

from __future__ import annotations

import argparse

import numpy as np

from interp_core.cli.support import run_request
from interp_core.core.head_id import head_label
from interp_core.techniques.dla import DlaRequest

NAME = "dla"
HELP = "direct logit attribution: each component's and each head's direct push on the answer's logit (difference)"
REQUEST = DlaRequest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--answer", default=None, help="the answer token, e.g. ' Paris' (default: the model's top prediction)")
    parser.add_argument("--wrong", default=None, help="a wrong-answer token; the metric becomes the logit difference")
    parser.add_argument("--position", type=int, default=-1, help="which token's prediction to explain (default -1, the last)")


def run(args: argparse.Namespace) -> dict:
    return run_request(DlaRequest, args)


def format_text(result: dict) -> str:
    lines = [f"{result['metric']} at position {result['position']} ({result['tokens'][result['position']]!r})"]
    lines += [f"{entry['value']:+9.3f}  {entry['name']}" for entry in result["layers"]]
    heads = np.array(result["heads"])
    order = np.argsort(-np.abs(heads), axis=None)[:10]
    lines.append("top heads: " + ", ".join(f"{head_label(layer, head)} {heads[layer, head]:+.3f}" for layer, head in zip(*np.unravel_index(order, heads.shape))))
    lines.append(f"components {sum(e['value'] for e in result['layers']):+.4f} + bias {result['bias_term']:+.4f} = total {result['total']:+.4f}")
    lines.append(f"model's own {result['metric']}: {result['model_logit_diff']:+.4f} (gap {result['gap']:+.2e})")
    return "\n".join(lines)
