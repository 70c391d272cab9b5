"""``heads --model M --prompt P``: every head's previous-token, first-token, duplicate-token,
induction and entropy scores on a prompt (layers x heads each), from one forward pass."""

from __future__ import annotations

import argparse

import numpy as np

from interp_core.cli.support import model_from_args, request_from_args
from interp_core.core.head_id import head_label
from interp_core.techniques.attention import SCORE_LABELS, SCORE_NAMES, HeadScoresRequest
from interp_core.techniques.contract import run as run_technique

NAME = "heads"
HELP = "score every attention head (previous-token, first-token, duplicate-token, induction, entropy) on a prompt"
REQUEST = HeadScoresRequest
CLI_ONLY = ("top",)  # how many heads the "top" lists name: a view of the scores, not an input of the technique


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--top", type=int, default=5, help="heads listed per score in the text output (default 5)")


def run(args: argparse.Namespace) -> dict:
    request = request_from_args(HeadScoresRequest, args)
    scores = run_technique(model_from_args(args), request)
    result = scores.to_json()
    result["top"] = {name: [[layer, head, value] for layer, head, value in scores.ranked(name, max(args.top, 1))] for name in SCORE_NAMES}
    return result


def format_text(result: dict) -> str:
    lines = [f"{result['layers']} layers x {result['heads']} heads; tokens: " + " | ".join(repr(t) for t in result["tokens"])]
    for name in SCORE_NAMES:
        best = ", ".join(f"{head_label(layer, head)} {value:.3f}" for layer, head, value in result["top"][name])
        if not best:
            best = "undefined on this prompt (no repeated token)" if np.all([v is None for row in result[name] for v in row]) else "-"
        lines.append(f"{SCORE_LABELS[name]:>20}: {best}")
    return "\n".join(lines)
