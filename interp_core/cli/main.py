"""``python -m interp_core SUBCOMMAND ... [--json]``: every page's analysis without the UI.

Subcommands live one per module in :mod:`interp_core.cli.commands`; each module defines
``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> dict`` (JSON-ready), and
optionally ``NEEDS_MODEL = False`` and ``format_text(result) -> str``. The subcommand names,
flags and JSON keys are a public contract: scripts outside the repo rely on them.

Errors the user can fix (a :class:`~interp_core.core.errors.WorkbenchError` from the engine, a
malformed or missing argument, text that is not UTF-8) print exactly one ``{"error": "..."}``
line on stdout with ``--json`` (without it, the message on stderr) and exit with status 2,
never with a traceback. Anything else is a bug of the workbench: it prints
``{"error": "internal error: TypeName: message"}`` on stdout with ``--json`` (the message on
stderr without it), the traceback on stderr for the bug report, and also exits with status 2
(every failure does: scripts check one status; the message's prefix tells a bug from bad input).
``--help`` prints the help and exits with status 0, as usual.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import traceback
from types import ModuleType

import interp_core.cli.commands as commands
from interp_core.cli.support import model_from_args, to_jsonable  # noqa: F401  (to_jsonable: part of the CLI's API)
from interp_core.core.errors import UsageError, WorkbenchError
from interp_core.core.load_options import DEVICE_MAP_STRATEGIES, DTYPES
from interp_core.core.loading import DEFAULT_MODEL


def discover_commands() -> list[ModuleType]:
    """Every subcommand module in :mod:`interp_core.cli.commands`, sorted by name."""
    found = [importlib.import_module(f"{commands.__name__}.{info.name}") for info in pkgutil.iter_modules(commands.__path__)]
    return sorted((m for m in found if hasattr(m, "NAME")), key=lambda m: m.NAME)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are raised (as :class:`UsageError`), not printed, so that
    ``main`` reports them like every other error (one JSON object under ``--json``)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message[:1].upper()}{message[1:]}. Run '{self.prog} --help' for the options.")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m interp_core", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    for module in discover_commands():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        if getattr(module, "NEEDS_MODEL", True):
            p.add_argument("--model", default=DEFAULT_MODEL, help=f"model to load (default {DEFAULT_MODEL}; toy:NAME, a directory or a hub id)")
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: the best available)")
        if getattr(module, "NEEDS_MODEL", True):
            add_load_arguments(p)
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        if hasattr(module, "REQUEST"):
            p.add_argument("--save", metavar="FILE", default=None,
                           help="also write an experiment file (requests, results, model fingerprint) that the app's 'Open experiment' reopens")
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of :class:`~interp_core.core.load_options.LoadOptions`; their defaults load as before."""
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES),
                        help="weights' precision (default float32; bfloat16/float16 halve the memory)")
    parser.add_argument("--device-map", default=None, metavar="MAP",
                        help=f"dispatch over devices with accelerate: {', '.join(DEVICE_MAP_STRATEGIES)}, or a JSON "
                             "object of module names to devices (0, cuda:1, cpu, disk); replaces --device")
    parser.add_argument("--max-memory", default=None, metavar="LIMITS",
                        help='what each device may hold with --device-map, e.g. "0:20GiB,cpu:60GiB"')
    parser.add_argument("--offload-folder", default=None, metavar="DIR",
                        help="allow weights that fit nowhere else to be offloaded to disk in DIR (slow)")


def check_utf8(argv: list[str]) -> None:
    """Raise UsageError for an argument that is not UTF-8 text.

    Bytes that are not UTF-8 reach Python as lone surrogates (``b"\\xff"`` -> ``"\\udcff"``), which
    no tokenizer accepts; the error names the option they were given to.
    """
    for i, value in enumerate(argv):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            if value.startswith("--") and "=" in value:
                where = value.split("=", 1)[0]
            elif i > 0 and argv[i - 1].startswith("-"):
                where = argv[i - 1]
            else:
                where = f"argument {i + 1}"
            shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise UsageError(
                f"{where} is not valid UTF-8 text (received '{shown[:80]}'). Pass the text in UTF-8, "
                "e.g. set a UTF-8 locale (LANG=C.UTF-8) or re-encode the file it came from."
            ) from None


def run_and_save(module: ModuleType, args: argparse.Namespace, argv: list[str]) -> dict:
    """``module.run(args)``, then every technique run it made written to ``--save FILE`` as an experiment."""
    from interp_core.cli.experiment import save_cli_experiment  # only when asked: it reads library versions
    from interp_core.techniques.contract import recording

    target = check_writable(args.save)
    with recording() as steps:
        result = module.run(args)
    kept, skip = [], False
    for arg in argv:  # the command line as it computes, without the output options
        if skip or arg == "--json" or arg.startswith("--save="):
            skip = False
            continue
        skip = arg == "--save"
        if not skip:
            kept.append(arg)
    save_cli_experiment(target, module.NAME, kept, steps)
    return result


def check_writable(path: str) -> str:
    """``path`` if a file can be written there (its folder exists and is not read-only), before any work is done."""
    import os
    from pathlib import Path

    target = Path(path).expanduser()
    if target.is_dir():
        raise UsageError(f"--save {path}: that is a directory; give a file name, e.g. {target / 'experiment.json'}.")
    if not target.parent.is_dir() or not os.access(target.parent, os.W_OK):
        raise UsageError(f"--save {path}: cannot write in {target.parent} (missing or read-only); choose another folder.")
    return str(target)


def _report(message: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"error": message}))
    else:
        print(f"error: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv[: argv.index("--")] if "--" in argv else "--json" in argv
    try:
        check_utf8(argv)
        args = build_parser().parse_args(argv)
        as_json = bool(getattr(args, "json", as_json))
        module: ModuleType = args._module
        if getattr(args, "save", None):
            result = to_jsonable(run_and_save(module, args, argv))
        else:
            result = to_jsonable(module.run(args))
        if args.json:
            text = json.dumps(result)
        elif hasattr(module, "format_text"):
            text = module.format_text(result)
        else:
            text = json.dumps(result, indent=2)
    except WorkbenchError as error:
        _report(str(error), as_json)
        return 2
    except KeyboardInterrupt:
        _report("interrupted (Ctrl-C) before the result was ready.", as_json)
        return 130
    except Exception as error:  # a bug, not the user's input: say so, keep the traceback for the report
        traceback.print_exc(file=sys.stderr)
        _report(f"internal error: {type(error).__name__}: {error}. This is a bug of the workbench; "
                "please report it with the traceback printed on stderr.", as_json)
        return 2  # the contract: every failure exits 2; the "internal error:" prefix tells a bug from bad input
    print(text)
    return 0
