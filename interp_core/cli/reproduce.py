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
import json
import keyword
import re
import shlex
from collections.abc import Sequence

from interp_core.cli.main import build_parser, discover_commands
from interp_core.cli.support import options_from_args, request_from_args
from interp_core.core.errors import WorkbenchError
from interp_core.core.load_options import LoadOptions
from interp_core.techniques.contract import Request, Step
from interp_core.techniques.view_step import ViewStep

SKIPPED_OPTIONS = {"help", "model", "device", "json", "save", "_module", "dtype", "device_map", "max_memory", "offload_folder"}


def variable_name(request: Request, taken: set[str]) -> str:
    """``SteerRequest`` -> ``steer`` (``steer_2`` if taken): the snippet's name for its result."""
    stem = re.sub(r"(?<!^)(?=[A-Z])", "_", type(request).__name__.removesuffix("Request")).lower().strip("_") or "result"
    name = f"{stem}_" if keyword.iskeyword(stem) or stem in ("model", "run", "tables", "load_model") else stem
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    taken.add(candidate)
    return candidate


def _literal(value: object, results: dict[int, str]) -> str:
    """Python source for ``value``: the snippet's variable for a result computed earlier, else its repr."""
    if id(value) in results:
        return results[id(value)]
    if isinstance(value, (list, tuple)) and any(id(v) in results for v in value):
        inner = ", ".join(_literal(v, results) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    return repr(value)


def _arguments(request: object, results: dict[int, str]) -> tuple[str, list[str]]:
    """``field=value, ...`` for the fields of a dataclass that differ from their defaults, and notes on what was left out."""
    parts, notes = [], []
    for field in dataclasses.fields(request):
        value = getattr(request, field.name)
        default = field.default if field.default is not dataclasses.MISSING else (
            field.default_factory() if field.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        if default is not dataclasses.MISSING and _same(value, default):
            continue
        if callable(value) and id(value) not in results:
            notes.append(f"{field.name} (a live callback of the page) is left out")
        else:
            parts.append(f"{field.name}={_literal(value, results)}")
    return ", ".join(parts), notes


def _same(value: object, default: object) -> bool:
    try:
        return type(value) is type(default) and bool(value == default)
    except (TypeError, ValueError):
        return False


def _load_line(variable: str, spec: str, options: LoadOptions) -> str:
    """``model = load_model(spec)``, with ``options=LoadOptions(...)`` when the page loaded it otherwise than by default."""
    if options == LoadOptions():
        return f"{variable} = load_model({spec!r})"
    arguments, _ = _arguments(options, {})
    return f"{variable} = load_model({spec!r}, options=LoadOptions({arguments}))"


def _unrecorded(value: object, results: dict[int, str]) -> bool:
    """A result object (or a list holding one) that no step of the snippet computes: the snippet cannot name it."""
    if isinstance(value, (list, tuple)):
        return any(_unrecorded(v, results) for v in value)
    return id(value) not in results and hasattr(value, "tables") and hasattr(value, "to_json")


def _view_line(view: ViewStep, results: dict[int, str]) -> str:
    targets = " = ".join(f"tables[{name!r}]" for name in view.names)
    if id(view.result) not in results or _unrecorded(list(view.arguments.values()), results):
        return f"# {', '.join(view.names)}: read from a result this page did not record, so left out"
    arguments = ", ".join(f"{key}={_literal(value, results)}" for key, value in view.arguments.items())
    return f"{targets} = {results[id(view.result)]}.{view.method}({arguments})"


def python_snippet(steps: Sequence[Step | ViewStep]) -> str:
    """Runnable Python that recomputes ``steps`` and gathers their tables, as the page has them.

    Each :class:`Step` becomes a ``run(model, Request(...))``; each :class:`ViewStep` (a table a view
    widget picked from a result) a call of the result's method after the gathering line. The last
    line leaves ``tables``: file-name stem -> data frame, the page's downloads.
    """
    runs = [s for s in steps if isinstance(s, Step)]
    if not runs:
        return "# This page has run no analysis yet."
    imports = {"from interp_core import load_model", "from interp_core.techniques.contract import run"}
    models: dict[tuple, str] = {}
    setup, body, names = [], [], []
    taken: set[str] = set()
    results: dict[int, str] = {}
    for step in runs:
        cls = type(step.request)
        imports.add(f"from {cls.__module__} import {cls.__name__}")
        key = (step.model, step.options)
        if step.model is None:
            models[key] = "None"
        elif key not in models:
            loaded = sum(v != "None" for v in models.values())
            models[key] = "model" if loaded == 0 else f"model_{loaded + 1}"
            setup.append(_load_line(models[key], step.model, step.options))
            if step.options != LoadOptions():
                imports.add("from interp_core.core.load_options import LoadOptions")
        arguments, notes = _arguments(step.request, results)
        name = variable_name(step.request, taken)
        results[id(step.result)] = name
        body += [f"# {note}" for note in notes]
        body.append(f"{name} = run({models[key]}, {cls.__name__}({arguments}))")
        names.append(name)
    gather = "tables = {" + ", ".join(f"**{n}.tables()" for n in names) + "}"
    views = [_view_line(s, results) for s in steps if isinstance(s, ViewStep)]
    return "\n".join([*sorted(imports), "", *setup, *body, gather, *views, ""])


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


def _load_flags(options: LoadOptions) -> list[str]:
    """The global flags that load a model with ``options`` (none for the defaults)."""
    flags = [] if options.dtype == LoadOptions().dtype else ["--dtype", options.dtype]
    if options.device_map is not None:
        flags += ["--device-map", options.device_map if isinstance(options.device_map, str) else json.dumps(dict(options.device_map))]
    if options.max_memory is not None:
        flags += ["--max-memory", ",".join(f"{device}:{size}" for device, size in options.max_memory)]
    if options.offload_folder is not None:
        flags += ["--offload-folder", options.offload_folder]
    return flags


def command_argv(request: Request, model_spec: str | None, options: LoadOptions | None = None) -> list[str] | None:
    """``[subcommand, --flag, value, ...]`` computing ``request`` on ``model_spec`` loaded with ``options``
    (default: the defaults), or None when no subcommand does exactly that."""
    options = options or LoadOptions()
    module = _command_module(request)
    if module is None:
        return None
    parser = _subparser(module.NAME)
    argv = [module.NAME]
    if model_spec is not None and any("--model" in a.option_strings for a in parser._actions):
        argv += ["--model", model_spec]
    if options != LoadOptions():
        if not any("--dtype" in a.option_strings for a in parser._actions):
            return None
        argv += _load_flags(options)
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
        same_load = options == LoadOptions() or options_from_args(args) == options
    except (WorkbenchError, TypeError, ValueError, SystemExit):
        return None
    return argv if _same(back, request) and same_load else None


def command_line(request: Request, model_spec: str | None, options: LoadOptions | None = None) -> str | None:
    """The ``python -m interp_core ...`` line computing ``request`` (its JSON with ``--json``), or None."""
    argv = command_argv(request, model_spec, options)
    return None if argv is None else shlex.join(["python", "-m", "interp_core", *argv, "--json"])
