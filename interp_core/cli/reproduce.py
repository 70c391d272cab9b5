"""Every view as code: a runnable Python snippet and the equivalent command line, made from requests.

Nothing here is written per page: :func:`python_snippet` turns the steps a page ran (each a
model spec plus a technique request) into calls of ``interp_core``'s public API, and
:func:`command_line` finds the CLI subcommand whose ``REQUEST`` is the request's type, builds
its arguments from the parser's own actions, and returns them only when parsing them back gives
an equal request (so a line that would compute something else is never shown).
"""

from __future__ import annotations

import argparse
import dataclasses
import keyword
import re
import shlex
from collections.abc import Sequence

from interp_core.cli.main import build_parser, discover_commands
from interp_core.cli.support import request_from_args
from interp_core.core.errors import WorkbenchError
from interp_core.techniques.contract import Request, Step

SKIPPED_OPTIONS = {"help", "model", "device", "json", "save", "_module"}


def variable_name(request: Request, taken: set[str]) -> str:
    """``SteerRequest`` -> ``steer`` (``steer_2`` if taken): the snippet's name for its result."""
    stem = re.sub(r"(?<!^)(?=[A-Z])", "_", type(request).__name__.removesuffix("Request")).lower().strip("_") or "result"
    name = f"{stem}_" if keyword.iskeyword(stem) or stem in ("model", "run", "tables", "load_model") else stem
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    taken.add(candidate)
    return candidate


def _arguments(request: Request, results: dict[int, str]) -> tuple[str, list[str]]:
    """``field=value, ...`` for the fields that differ from their defaults, and notes on what was left out."""
    parts, notes = [], []
    for field in dataclasses.fields(request):
        value = getattr(request, field.name)
        default = field.default if field.default is not dataclasses.MISSING else (
            field.default_factory() if field.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        if default is not dataclasses.MISSING and _same(value, default):
            continue
        if id(value) in results:  # a result of an earlier step fed into this request
            parts.append(f"{field.name}={results[id(value)]}")
        elif callable(value):
            notes.append(f"{field.name} (a live callback of the page) is left out")
        else:
            parts.append(f"{field.name}={value!r}")
    return ", ".join(parts), notes


def _same(value: object, default: object) -> bool:
    try:
        return type(value) is type(default) and bool(value == default)
    except (TypeError, ValueError):
        return False


def python_snippet(steps: Sequence[Step]) -> str:
    """Runnable Python that recomputes ``steps`` and gathers their tables, as the page has them.

    The last line leaves ``tables``: file-name stem -> data frame, the page's downloads.
    """
    if not steps:
        return "# This page has run no analysis yet."
    imports = {"from interp_core import load_model", "from interp_core.techniques.contract import run"}
    models: dict[str | None, str] = {None: "None"}
    setup, body, names = [], [], []
    taken: set[str] = set()
    results: dict[int, str] = {}
    for step in steps:
        cls = type(step.request)
        imports.add(f"from {cls.__module__} import {cls.__name__}")
        if step.model not in models:
            models[step.model] = "model" if len(models) == 1 else f"model_{len(models)}"
            setup.append(f"{models[step.model]} = load_model({step.model!r})")
        arguments, notes = _arguments(step.request, results)
        name = variable_name(step.request, taken)
        results[id(step.result)] = name
        body += [f"# {note}" for note in notes]
        body.append(f"{name} = run({models[step.model]}, {cls.__name__}({arguments}))")
        names.append(name)
    gather = "tables = {" + ", ".join(f"**{n}.tables()" for n in names) + "}"
    return "\n".join([*sorted(imports), "", *setup, *body, gather, ""])


def _command_module(request: Request) -> object | None:
    return next((m for m in discover_commands() if getattr(m, "REQUEST", None) is type(request)), None)


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _flag_value(value: object) -> str | None:
    if isinstance(value, (tuple, list)):
        if not all(isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in value):
            return None
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, bytes):
        return None
    return str(value)


def command_argv(request: Request, model_spec: str | None) -> list[str] | None:
    """``[subcommand, --flag, value, ...]`` computing ``request``, or None when no subcommand does exactly that."""
    module = _command_module(request)
    if module is None:
        return None
    parser = _subparser(module.NAME)
    argv = [module.NAME]
    if model_spec is not None and any("--model" in a.option_strings for a in parser._actions):
        argv += ["--model", model_spec]
    for action in parser._actions:
        if action.dest in SKIPPED_OPTIONS or not action.option_strings or not hasattr(request, action.dest):
            continue
        value = getattr(request, action.dest)
        flag = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):
            argv += [flag] if value else []
            continue
        if not action.required and _same(value, action.default):
            continue
        if value is None:
            continue
        text = _flag_value(value)
        if text is None:
            return None
        argv += [f"{flag}={text}" if text.startswith("-") else flag, *([] if text.startswith("-") else [text])]
    try:
        args = build_parser().parse_args(argv)
        back = request_from_args(type(request), args)
    except (WorkbenchError, TypeError, ValueError, SystemExit):
        return None
    return argv if _same(back, request) else None


def command_line(request: Request, model_spec: str | None) -> str | None:
    """The ``python -m interp_core ...`` line computing ``request`` (its JSON with ``--json``), or None."""
    argv = command_argv(request, model_spec)
    return None if argv is None else shlex.join(["python", "-m", "interp_core", *argv, "--json"])
