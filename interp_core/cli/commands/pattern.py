"""``pattern --model M --prompt P --layer L --head H``: one head's attention pattern
(query x key) on a prompt, optionally checked against a recomputation from the weights."""

from __future__ import annotations

import argparse

from interp_core.cli.support import run_request
from interp_core.techniques.attention import HeadPatternRequest

NAME = "pattern"
HELP = "one attention head's query x key pattern on a prompt"
REQUEST = HeadPatternRequest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--layer", type=int, required=True)
    parser.add_argument("--head", type=int, required=True)
    parser.add_argument(
        "--verify", action="store_true",
        help="also recompute the pattern from the weights and report the largest absolute difference",
    )


def run(args: argparse.Namespace) -> dict:
    return run_request(HeadPatternRequest, args)


def format_text(result: dict) -> str:
    tokens = result["tokens"]
    width = max(len(repr(t)) for t in tokens)
    lines = [f"layer {result['layer']} head {result['head']}: rows are queries, columns keys ({len(tokens)} tokens)"]
    for token, row in zip(tokens, result["pattern"]):
        lines.append(f"{token!r:>{width}} " + " ".join(f"{v:4.2f}" for v in row))
    if "verification" in result:
        check = result["verification"]
        lines.append(f"max |recomputed - model| from weights {check['max_abs_diff_from_weights']:.2e}, "
                     f"from hook_q/hook_k {check['max_abs_diff_from_hooks']:.2e} (scale {check['scale']:.4f})")
    return "\n".join(lines)
