"""``circuits --model M [--layer L --head H] [--no-fold] --json``: copying scores of every head
(full OV circuit); with a head, its OV eigenvalues and Q/K/V composition from earlier heads."""

from __future__ import annotations

import argparse

from interp_core.cli.support import model_from_args
from interp_core.core.errors import WorkbenchError
from interp_core.core.head_id import head_label
from interp_core.techniques.circuits import CopyingRequest, OVRequest, token_ids
from interp_core.techniques.composition import CompositionRequest
from interp_core.techniques.contract import run as run_technique

NAME = "circuits"
HELP = "QK/OV circuits from the weights: copying scores of every head, one head's eigenvalues and composition"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layer", type=int, default=None, help="layer of the head to analyse (with --head)")
    parser.add_argument("--head", type=int, default=None, help="head to analyse (with --layer)")
    parser.add_argument("--no-fold", action="store_true", help="use raw weights: do not fold norm weights into W_Q/W_K/W_V and W_U")
    parser.add_argument("--tokens", default="", help="comma-separated words whose OV rows to show, e.g. 'Paris, cat' (leading space added)")
    parser.add_argument("--top-k", type=int, default=10, help="tokens each input token raises most")


def run(args: argparse.Namespace) -> dict:
    """The Circuits page's requests: the copying grid, then (with a head) its OV circuit and composition."""
    if (args.layer is None) != (args.head is None):
        raise WorkbenchError("Give both --layer and --head to analyse one head, or neither for the copying scores only.")
    model = model_from_args(args)
    fold = not args.no_fold
    result = run_technique(model, CopyingRequest(fold)).to_json()
    if args.layer is None:
        return result
    words = [w for w in args.tokens.split(",") if w.strip()]
    ids = token_ids(model, words) if words else []
    ov = run_technique(model, OVRequest(args.layer, args.head, tuple(ids), args.top_k, fold)).to_json()
    composition = run_technique(model, CompositionRequest(args.layer, args.head, fold)).to_json()
    result.update(
        layer=args.layer,
        head=args.head,
        eigenvalues=ov["eigenvalues"],
        basic_eigenvalues=ov["basic_eigenvalues"],
        full_copying_score=ov["full_copying_score"],
        basic_copying_score_head=ov["basic_copying_score"],
        top_tokens=ov["top_tokens"],
        composition=composition,
    )
    return result


def format_text(result: dict) -> str:
    lines = [f"copying score (full OV) of every head, rows = layers (norms folded: {result['fold_norms']}):"]
    lines += [f"  L{i:<3d}" + " ".join(f"{v:+.2f}" for v in row) for i, row in enumerate(result["copying_score"])]
    if "layer" in result:
        name = head_label(result["layer"], result["head"])
        lines.append(f"{name}: full OV copying {result['full_copying_score']:+.3f}, residual-space OV {result['basic_copying_score_head']:+.3f}")
        comp = result["composition"]
        lines.append(f"composition into {name} (random baseline {comp['baseline']['q']:.3f}):")
        for kind in ("q", "k", "v"):
            cells = [(v, label) for row, labels in zip(comp[kind], comp["labels"]) for v, label in zip(row, labels)]
            best = sorted(cells, reverse=True)[:5]
            lines.append(f"  {kind.upper()}: " + ", ".join(f"{label} {v:.3f}" for v, label in best))
        for entry in result["top_tokens"]:
            lines.append(f"  {entry['token']!r} raises " + ", ".join(repr(t) for t in entry["raises"][:5]))
    return "\n".join(lines)
