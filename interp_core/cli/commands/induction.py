"""``induction --model M --length N --seed S``: induction and previous-token scores of every head
on ``BOS + r + r`` (``r`` = N random tokens), the loss of each half, the top heads, and
optionally the loss rise when the top-k induction heads are ablated against random heads."""

from __future__ import annotations

import argparse

from interp_core.cli.support import model_from_args, request_from_args
from interp_core.techniques.contract import run as run_technique
from interp_core.techniques.induction import DEFAULT_HIGH, DEFAULT_LOW, InductionRequest
from interp_core.techniques.induction_ablation import AblationRequest

NAME = "induction"
HELP = "induction heads: per-head induction/previous-token scores and the loss of each half on repeated random tokens"
REQUEST = InductionRequest
# --top is how many heads the JSON lists (a view of the scores); --ablate/--method/--draws are the
# second request the page runs on a click (AblationRequest's k, method and draws)
CLI_ONLY = ("top", "ablate", "method", "draws")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--length", type=int, default=50, help="random tokens in one copy (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random tokens (default 0)")
    parser.add_argument("--repeats", type=int, default=2, help="copies of the sequence (default 2)")
    parser.add_argument("--low", type=int, default=DEFAULT_LOW, help=f"lowest token id drawn (default {DEFAULT_LOW})")
    parser.add_argument("--high", type=int, default=DEFAULT_HIGH, help=f"token ids drawn below this (default {DEFAULT_HIGH})")
    parser.add_argument("--top", type=int, default=10, help="how many top heads to list (default 10)")
    parser.add_argument("--ablate", type=int, default=0, metavar="K",
                        help="also ablate the top K induction heads against K random heads of the same layers")
    parser.add_argument("--method", choices=("zero", "mean"), default="zero", help="ablation method (default zero)")
    parser.add_argument("--draws", type=int, default=5, help="random head sets to compare with (default 5)")


def run(args: argparse.Namespace) -> dict:
    request = request_from_args(InductionRequest, args)
    ablation = request_from_args(AblationRequest, args, k=args.ablate) if args.ablate else None
    model = model_from_args(args)
    result = run_technique(model, request).to_json(args.top)
    if ablation is not None:
        result["ablation"] = run_technique(model, ablation).to_json()
    return result


def format_text(result: dict) -> str:
    lines = [
        f"BOS + {result['n_repeats']} x {result['length']} random tokens (seed {result['seed']})",
        f"loss first half {result['loss_first_half']:.3f} nats, repeated half {result['loss_repeated_half']:.3f} nats",
        "top induction heads:",
    ]
    lines += [f"  {h['label']:>8}  induction {h['induction']:.3f}  previous-token {h['previous_token']:.3f}" for h in result["top_heads"]]
    if "ablation" in result:
        a = result["ablation"]
        lines.append(
            f"{a['method']}-ablating {', '.join(a['top_heads'])}: repeated-half loss +{a['rise_top']:.3f} nats; "
            f"random heads of the same layers: +{a['rise_random_mean']:.3f} ± {a['rise_random_std']:.3f}"
        )
    return "\n".join(lines)
