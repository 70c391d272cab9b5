"""``steer --prompt P --positive A --negative B --layer L [--coefficient C] [--coefficients C1,C2,...]
[--target T] [--max-new-tokens N] [--ablate]``: steer a continuation with an activation-addition vector."""

from __future__ import annotations

import argparse

from interp_core.cli.support import run_request
from interp_core.techniques.steering import MAX_NEW_TOKENS, SteerRequest

NAME = "steer"
HELP = "activation steering: add c * (resid(positive) - resid(negative)) at one layer, or ablate that direction, and compare continuations"
REQUEST = SteerRequest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True, help="the prompt whose continuation is steered")
    parser.add_argument("--positive", required=True, help="the prompt the vector points towards, e.g. 'The capital of Italy'")
    parser.add_argument("--negative", required=True, help="the prompt it points away from, e.g. 'The capital of France'")
    parser.add_argument("--layer", type=int, required=True, help="the block whose resid_pre is read and steered")
    parser.add_argument("--coefficient", type=float, default=1.0, help="c, the multiple of the vector added (default 1.0)")
    parser.add_argument("--coefficients", default="", help="also sweep these coefficients on the next token, e.g. 0,0.25,0.5,1")
    parser.add_argument("--target", default=None, help="the token whose probability the sweep follows (default: the unsteered top prediction)")
    parser.add_argument("--max-new-tokens", type=int, default=20, help=f"length of each greedy continuation, 0..{MAX_NEW_TOKENS} (default 20)")
    parser.add_argument("--ablate", action="store_true", help="project the direction out of resid_pre at every block instead of adding it")


def run(args: argparse.Namespace) -> dict:
    return run_request(SteerRequest, args)


def format_text(result: dict) -> str:
    how = "direction ablated at every block" if result["ablate"] else f"c = {result['coefficient']:g} at layer {result['layer']}"
    lines = [f"prompt: {result['prompt']!r}", f"unsteered: {result['unsteered']!r}", f"steered ({how}): {result['steered']!r}",
             f"vector norm {result['vector_norm']:.2f} over {result['n_pairs']} pair(s); promotes "
             + ", ".join(repr(p["token"]) for p in result["promoted"])]
    if "sweep" in result:
        lines.append(f"P({result['target']!r}) on the next token:")
        lines += [f"  c = {e['coefficient']:6g}  {e['target_prob']:.4f}  top {e['top_token']!r}" for e in result["sweep"]]
    return "\n".join(lines)
