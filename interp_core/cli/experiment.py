"""Experiment files: one JSON file that keeps the work, not only the inputs.

A file holds the model spec, a fingerprint of its weights, the library versions, and one entry
per visited page (or CLI run): the page's inputs (widget values by key) and its steps, each a
request with the result it gave (encoded by :mod:`interp_core.cli.codec`, so arrays come back
bit for bit). The app's "Save experiment" and the CLI's ``--save FILE`` write it; "Open
experiment" reads it with :func:`parse_experiment`, which refuses anything malformed before
anything is loaded.

Layout::

    {"format": "interp-workbench-experiment", "version": 1, "created": "...Z",
     "model": "smollm2-135m", "fingerprint": "ab12...", "versions": {"torch": "2.13.0", ...},
     "pages": [{"page": "steering", "title": "Steering", "inputs": {"steer_layer": 16, ...},
                "command": ["steer", "--prompt", ...] (CLI runs only),
                "steps": [{"model": "smollm2-135m", "fingerprint": "ab12...", "request": {...}, "result": {...},
                           "options": {...} (only when the model was loaded otherwise than by default)}],
                "views": [{"names": ["attention_L1H3"], "step": 0, "method": "head_table",
                           "arguments": [["layer", 1], ["head", 3]]}] (tables picked from a step's result)}]}

An argument of a view that is another step's result is written ``{"__step__": j}`` (a list of
them ``{"__steps__": [j, ...]}``). Files written before views and load options existed (no
``views``, no ``options``) still open: their steps load with the default options.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
from collections.abc import Iterable
from pathlib import Path

from interp_core.cli.codec import ExperimentError, decode, encode
from interp_core.core.errors import WorkbenchError
from interp_core.core.load_options import LoadOptions
from interp_core.core.loading import _HUB_ID, DEFAULT_MODEL, TOY_PREFIX, valid_toy_name
from interp_core.techniques.contract import Request, Step
from interp_core.techniques.view_step import ViewStep

FORMAT, VERSION = "interp-workbench-experiment", 1
LIBRARIES = ("interp-workbench", "torch", "transformers", "numpy", "pandas", "scikit-learn", "streamlit", "altair")
INPUT_TYPES = (str, int, float, bool, type(None))
MAX_BYTES = 200 * 1024 * 1024  # a file this large is not one this workbench wrote for a page or two

__all__ = ["ExperimentError", "Experiment", "PageRecord", "build_experiment", "check_model_spec", "dumps", "library_versions",
           "parse_experiment"]


@dataclasses.dataclass(frozen=True)
class PageRecord:
    """One visited page: its URL name, title, widget inputs, steps (and view steps), and (CLI runs) the command line."""

    page: str
    title: str
    inputs: dict
    steps: tuple[Step | ViewStep, ...]
    command: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Experiment:
    model: str
    fingerprint: str | None
    versions: dict
    created: str
    pages: tuple[PageRecord, ...]


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a result depends on (absent ones are left out)."""
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def check_model_spec(spec: object) -> str:
    """``spec`` if an experiment may name it: the bundled default, ``toy:NAME`` or a hub id.

    A file path or directory is refused: opening someone's file must never make the server read a
    path that file chose. (The one place to extend when loading grows options such as a dtype.)

    Raises:
        ExperimentError: what was found and what is accepted.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ExperimentError(f"The experiment's model must be a model name, got {spec!r}.")
    if spec == DEFAULT_MODEL:
        return spec
    if spec.startswith(TOY_PREFIX):
        if valid_toy_name(spec[len(TOY_PREFIX):]):
            return spec
        raise ExperimentError(f"The experiment's model {spec!r} is not a valid toy model name (toy:NAME).")
    looks_like_path = spec.startswith(("/", ".", "~", "\\")) or "\\" in spec or spec.count("/") > 1 or ".." in spec or Path(spec).exists()
    if looks_like_path or not _HUB_ID.match(spec):
        raise ExperimentError(
            f"The experiment's model {spec[:120]!r} is a file path or not a model name; an experiment may only name "
            f"'{DEFAULT_MODEL}', 'toy:NAME' or a hub id. Load a local model yourself in the sidebar instead.")
    return spec


def encode_step(step: Step) -> dict:
    out = {"model": step.model, "fingerprint": step.fingerprint, "request": encode(step.request, "request"),
           "result": encode(step.result, "result")}
    if step.options != LoadOptions():
        out["options"] = encode(step.options, "options")
    return out


def savable(steps: Iterable[Step | ViewStep]) -> list[Step]:
    """The steps that can be written (a toy model's training, with its live-curve callback, cannot)."""
    kept = []
    for step in steps:
        if not isinstance(step, Step):
            continue
        try:
            encode_step(step)
        except ExperimentError:
            continue
        kept.append(step)
    return kept


def _encode_argument(value: object, index: dict[int, int]) -> object:
    if id(value) in index:
        return {"__step__": index[id(value)]}
    if isinstance(value, (list, tuple)) and value and all(id(v) in index for v in value):
        return {"__steps__": [index[id(v)] for v in value]}
    return encode(value, "view argument")


def encode_views(steps: Iterable[Step | ViewStep], saved: list[Step]) -> list[dict]:
    """The view steps whose results (and result arguments) are among ``saved``, as JSON."""
    index = {id(step.result): j for j, step in enumerate(saved)}
    out = []
    for view in steps:
        if not isinstance(view, ViewStep) or id(view.result) not in index:
            continue
        try:
            arguments = [[key, _encode_argument(value, index)] for key, value in view.arguments.items()]
        except ExperimentError:  # an argument that is a result of an unsaved step, or a live object
            continue
        out.append({"names": list(view.names), "step": index[id(view.result)], "method": view.method, "arguments": arguments})
    return out


def build_experiment(model: str, fingerprint: str | None, pages: Iterable[PageRecord]) -> dict:
    """The JSON-ready experiment (see the module docstring); steps that cannot be saved are left out."""
    return {
        "format": FORMAT, "version": VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "model": model, "fingerprint": fingerprint, "versions": library_versions(),
        "pages": [{"page": p.page, "title": p.title, "inputs": encode(dict(p.inputs), "inputs"),
                   **({"command": list(p.command)} if p.command else {}),
                   **_steps_and_views(p.steps)} for p in pages],
    }


def _steps_and_views(steps: Iterable[Step | ViewStep]) -> dict:
    steps = list(steps)
    saved = savable(steps)
    views = encode_views(steps, saved)
    return {"steps": [encode_step(s) for s in saved], **({"views": views} if views else {})}


# The page each subcommand's analysis belongs to (the app's URL paths), so a CLI run opens on its page.
COMMAND_PAGES = {"predict": "home", "logit-lens": "logit_lens", "pattern": "attention", "heads": "attention",
                 "induction": "induction_heads", "patch": "activation_patching", "dla": "direct_logit_attribution",
                 "probe": "probing", "circuits": "circuits", "train-toy": "toy_models", "steer": "steering"}


def save_cli_experiment(path: str, command: str, argv: list[str], steps: list[Step]) -> None:
    """Write the experiment of one CLI run (``--save FILE``): its command line and every step it ran."""
    with_model = [s for s in steps if s.model is not None]
    model = with_model[0].model if with_model else DEFAULT_MODEL
    page = COMMAND_PAGES.get(command, command)
    record = PageRecord(page, f"python -m interp_core {command}", {}, tuple(steps), tuple(argv))
    text = dumps(build_experiment(model, with_model[0].fingerprint if with_model else None, [record]))
    try:
        Path(path).write_text(text)
    except OSError as error:
        raise ExperimentError(f"--save: could not write {path}: {error.strerror}. Choose another file.") from None


def dumps(experiment: dict) -> str:
    return json.dumps(experiment, allow_nan=False)


def parse_experiment(text: str | bytes, known_pages: Iterable[str]) -> Experiment:
    """Read an experiment file, checking all of it before anything is used.

    Args:
        known_pages: the page names (URL paths) this workbench has; a file naming another is refused.

    Raises:
        ExperimentError: bad JSON, another format, wrong types, an unknown page, a path as the model.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise ExperimentError(f"The file has {len(text):,} bytes; experiment files here are at most {MAX_BYTES:,}.")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ExperimentError("The file is not UTF-8 text: it is not an experiment file. Save one with 'Save experiment'.") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ExperimentError(f"The file is not valid JSON ({error}); it is not an experiment file, or it was cut short.") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ExperimentError(f"This is not an experiment file (no \"format\": \"{FORMAT}\"). Save one with 'Save experiment'.")
    if data.get("version") != VERSION:
        raise ExperimentError(f"Experiment file version {data.get('version')!r} is not supported; this workbench reads version {VERSION}.")
    model = check_model_spec(data.get("model"))
    fingerprint, versions, pages = data.get("fingerprint"), data.get("versions", {}), data.get("pages")
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise ExperimentError(f"'fingerprint' must be text, got {type(fingerprint).__name__}.")
    if not isinstance(versions, dict) or not all(isinstance(v, str) for v in versions.values()):
        raise ExperimentError("'versions' must map library names to version strings.")
    if not isinstance(pages, list):
        raise ExperimentError(f"'pages' must be a list of visited pages, got {type(pages).__name__}.")
    known = set(known_pages)
    return Experiment(model, fingerprint, versions, str(data.get("created", "")),
                      tuple(_page(p, i, known) for i, p in enumerate(pages)))


def _page(data: object, i: int, known: set[str]) -> PageRecord:
    where = f"pages[{i}]"
    if not isinstance(data, dict) or not isinstance(data.get("page"), str):
        raise ExperimentError(f"{where} must be an object with a 'page' name.")
    if data["page"] not in known:
        raise ExperimentError(f"{where} names page {data['page'][:80]!r}, which this workbench does not have; "
                              f"known pages: {', '.join(sorted(known))}.")
    inputs = decode(data.get("inputs", {"__dict__": []}), f"{where}.inputs")
    if not isinstance(inputs, dict) or not all(isinstance(k, str) and _plain(v) for k, v in inputs.items()):
        raise ExperimentError(f"{where}.inputs must map widget names to text, numbers, booleans or lists of them.")
    command = data.get("command", [])
    if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
        raise ExperimentError(f"{where}.command must be a list of arguments.")
    steps, views = data.get("steps", []), data.get("views", [])
    if not isinstance(steps, list) or not isinstance(views, list):
        raise ExperimentError(f"{where}.steps and {where}.views must be lists.")
    parsed = [_step(s, f"{where}.steps[{j}]") for j, s in enumerate(steps)]
    parsed += [_view(v, f"{where}.views[{j}]", parsed) for j, v in enumerate(views)]
    return PageRecord(data["page"], str(data.get("title", data["page"])), inputs, tuple(parsed), tuple(command))


def _plain(value: object) -> bool:
    if isinstance(value, (list, tuple)):
        return all(isinstance(v, INPUT_TYPES) for v in value)
    return isinstance(value, INPUT_TYPES)


def _step(data: object, where: str) -> Step:
    if not isinstance(data, dict) or set(data) - {"options"} != {"model", "fingerprint", "request", "result"}:
        raise ExperimentError(f"{where} must have exactly 'model', 'fingerprint', 'request' and 'result' (and maybe 'options').")
    if data["model"] is not None:
        check_model_spec(data["model"])
    if data["fingerprint"] is not None and not isinstance(data["fingerprint"], str):
        raise ExperimentError(f"{where}.fingerprint must be text.")
    request = decode(data["request"], f"{where}.request")
    if not isinstance(request, Request):
        raise ExperimentError(f"{where}.request is a {type(request).__name__}, not a technique request.")
    result = decode(data["result"], f"{where}.result")
    if not (hasattr(result, "to_json") and hasattr(result, "tables")):
        raise ExperimentError(f"{where}.result is a {type(result).__name__}, not a technique result.")
    return Step(data["model"], data["fingerprint"], request, result, _options(data.get("options"), f"{where}.options"))


def _options(data: object, where: str) -> LoadOptions:
    if data is None:
        return LoadOptions()
    options = decode(data, where)
    if not isinstance(options, LoadOptions):
        raise ExperimentError(f"{where} is a {type(options).__name__}, not the model's load options.")
    try:  # rebuilt through the constructor, so its own checks run (a dtype it does not know)
        options = LoadOptions(**{field.name: getattr(options, field.name) for field in dataclasses.fields(LoadOptions)})
    except WorkbenchError as error:
        raise ExperimentError(f"{where}: {error}") from None
    if options.offload_folder is not None:
        raise ExperimentError(f"{where} names an offload folder ({options.offload_folder[:80]!r}); an experiment may not "
                              "make the server write to a folder it chose. Set one yourself in the sidebar's Advanced expander.")
    return options


def _reference(value: object, steps: list[Step], where: str) -> object:
    """A view argument: another step's result (``{"__step__": j}``), a list of them, or a plain encoded value."""
    if isinstance(value, dict) and set(value) == {"__step__"}:
        return _step_result(value["__step__"], steps, where)
    if isinstance(value, dict) and set(value) == {"__steps__"} and isinstance(value["__steps__"], list):
        return [_step_result(j, steps, where) for j in value["__steps__"]]
    return decode(value, where)


def _step_result(j: object, steps: list[Step], where: str) -> object:
    if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < len(steps):
        raise ExperimentError(f"{where} refers to step {j!r}; this page has steps 0 to {len(steps) - 1}.")
    return steps[j].result


def _view(data: object, where: str, steps: list[Step]) -> ViewStep:
    keys = {"names", "step", "method", "arguments"}
    if not isinstance(data, dict) or set(data) != keys:
        raise ExperimentError(f"{where} must have exactly {', '.join(sorted(keys))}.")
    names, arguments = data["names"], data["arguments"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ExperimentError(f"{where}.names must be a list of download names.")
    if not isinstance(arguments, list) or not all(isinstance(a, list) and len(a) == 2 and isinstance(a[0], str) for a in arguments):
        raise ExperimentError(f"{where}.arguments must be a list of [name, value] pairs.")
    result = _step_result(data["step"], steps, f"{where}.step")
    values = {key: _reference(value, steps, f"{where}.arguments.{key}") for key, value in arguments}
    try:
        return ViewStep(tuple(names), result, data["method"], values)
    except WorkbenchError as error:
        raise ExperimentError(f"{where}: {error}") from None
