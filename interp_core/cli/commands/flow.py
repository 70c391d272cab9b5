"""``flow --prompt P [--threshold T] [--position N]``: information-flow contributions of every block and the
route from the prediction back to the input tokens (Ferrando & Voita 2024)."""

from __future__ import annotations

import argparse

from interp_core.cli.support import run_request
from interp_core.techniques.flow import DEFAULT_THRESHOLD, FlowRequest

NAME = "flow"
HELP = "information flow routes: each block part's contribution to the residual stream, and the route above a threshold"
REQUEST = FlowRequest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True, help="the text whose information flow is computed")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help=f"drop edges whose contribution is below this, 0..1 (default {DEFAULT_THRESHOLD})")
    parser.add_argument("--position", type=int, default=-1, help="the output position the route leads to (default -1, the last)")


def run(args: argparse.Namespace) -> dict:
    return run_request(FlowRequest, args)


def format_text(result: dict) -> str:
    tokens = result["tokens"]
    lines = ["tokens: " + " | ".join(repr(t) for t in tokens),
             f"route at threshold {result['threshold']:g}: {len(result['edges'])} edges (strongest attention edges below)"]
    attn = sorted((e for e in result["edges"] if e["kind"] == "attn"), key=lambda e: -e["weight"])[:15]
    for e in attn:
        source, target = e["from"], e["to"]
        lines.append(f"  block {source['layer']:3d}: {tokens[source['position']]!r} ({source['position']}) -> "
                     f"{tokens[target['position']]!r} ({target['position']})  {e['weight']:.3f}")
    return "\n".join(lines)
