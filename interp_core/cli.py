"""``python -m interp_core SUBCOMMAND ... [--json]``: every page's analysis without the UI.

Subcommands live one per module in :mod:`interp_core.commands`; each module defines
``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> dict`` (JSON-ready), and
optionally ``NEEDS_MODEL = False`` and ``format_text(result) -> str``. The subcommand names,
flags and JSON keys are a public contract: scripts outside the repo rely on them.

Errors the user can fix print ``{"error": "..."}`` (with ``--json``) or the message, and
exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from types import ModuleType

import numpy as np

from interp_core import commands
from interp_core.errors import WorkbenchError
from interp_core.loading import DEFAULT_MODEL, load_model
from interp_core.model import LoadedModel


def discover_commands() -> list[ModuleType]:
    """Every subcommand module in :mod:`interp_core.commands`, sorted by name."""
    found = [importlib.import_module(f"{commands.__name__}.{info.name}") for info in pkgutil.iter_modules(commands.__path__)]
    return sorted((m for m in found if hasattr(m, "NAME")), key=lambda m: m.NAME)


def model_from_args(args: argparse.Namespace) -> LoadedModel:
    """Load the model named by ``--model`` on ``--device``."""
    return load_model(args.model, device=args.device)


def to_jsonable(value: object) -> object:
    """numpy arrays and scalars -> lists and floats, recursively; NaN -> None."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m interp_core", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    for module in discover_commands():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        if getattr(module, "NEEDS_MODEL", True):
            p.add_argument("--model", default=DEFAULT_MODEL, help=f"model to load (default {DEFAULT_MODEL}; toy:NAME, a directory or a hub id)")
        p.add_argument("--device", default=None, help="cpu, cuda or mps (default: the best available)")
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module: ModuleType = args._module
    try:
        result = to_jsonable(module.run(args))
    except WorkbenchError as error:
        if args.json:
            print(json.dumps({"error": str(error)}))
        else:
            print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    elif hasattr(module, "format_text"):
        print(module.format_text(result))
    else:
        print(json.dumps(result, indent=2))
    return 0
