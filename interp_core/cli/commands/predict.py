"""``predict --model M --prompt P --top-k K``: the prompt's tokens and the top next tokens."""

from __future__ import annotations

import argparse

from interp_core.cli.support import run_request
from interp_core.techniques.predict import PredictRequest

NAME = "predict"
HELP = "tokens of a prompt and the model's top next tokens with probabilities"
REQUEST = PredictRequest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--top-k", type=int, default=10)


def run(args: argparse.Namespace) -> dict:
    return run_request(PredictRequest, args)


def format_text(result: dict) -> str:
    lines = ["tokens: " + " | ".join(repr(t) for t in result["tokens"])]
    lines += [f"{entry['prob']:7.2%}  {entry['token']!r}" for entry in result["top"]]
    return "\n".join(lines)
