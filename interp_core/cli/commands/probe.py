"""``probe --model M --dataset NAME|PATH --probe linear|mlp``: probe accuracy per layer with a control task."""

from __future__ import annotations

import argparse

from interp_core.cli.support import model_from_args, request_from_args
from interp_core.core.errors import OutOfRangeError
from interp_core.techniques.contract import run as run_technique
from interp_core.techniques.probe_data import BUNDLED
from interp_core.techniques.probing import POOLS, PROBES, ProbeDataRequest, ProbeRequest

NAME = "probe"
HELP = "cross-validated probe accuracy, control-task accuracy and selectivity at every layer"
REQUEST = ProbeRequest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="pos", help=f"a bundled set ({', '.join(BUNDLED)}) or a CSV path (text,label or text,labels)")
    parser.add_argument("--probe", default="linear", choices=PROBES, help="logistic regression or a 64-unit MLP")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds, split by sentence (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the folds and of the control labels")
    parser.add_argument("--pool", default="last", choices=POOLS, help="sentence-level sets: read the last token or the mean")


def run(args: argparse.Namespace) -> dict:
    if not 0 <= args.seed < 2**32:  # numpy's seeding of the folds and control labels takes no other
        raise OutOfRangeError(f"--seed must be a whole number from 0 to {2**32 - 1} (e.g. 0), got {args.seed}.")
    request = request_from_args(ProbeRequest, args)
    ProbeDataRequest(request.dataset).load()  # validate before loading the model
    return run_technique(model_from_args(args), request).to_json()


def format_text(result: dict) -> str:
    lines = [
        f"{result['dataset']} ({result['level']} level), {result['probe']} probe, {result['n_folds']} folds by sentence; "
        f"majority baseline {result['majority_baseline']:.3f}",
        f"{'layer':>5}  {'accuracy':>14}  {'control':>8}  {'selectivity':>11}",
    ]
    for i, layer in enumerate(result["layers"]):
        lines.append(
            f"{layer:>5}  {result['accuracy'][i]:.3f} ± {result['accuracy_std'][i]:.3f}  "
            f"{result['control_accuracy'][i]:8.3f}  {result['selectivity'][i]:11.3f}"
        )
    return "\n".join(lines)
