"""The first visit's results, kept on disk so that the server's next start reads them back instead of computing them.

The server's start visits every page once (:mod:`ui.first_visit`), about 25 s of computation for the default model
on a 2-core machine, during which a page opened right after the start shares the CPU with it (issue #19). Those
results depend only on the weights, the request and the engine's code, so a restart of the same code on the same
model can read them back in a fraction of a second: :func:`restore` puts them into the server-wide result cache
(:mod:`ui.jobs`) before the visit, which then finds every page's first result there, and :func:`keep` writes the
results the visit's pages were given after it (never those of people who opened pages meanwhile: their prompts stay
in memory only).

A file is found only under a key of everything its numbers depend on, so a stale result is never served:

- the model's weights fingerprint (which holds its load options: dtype, device map) and its name;
- the engine's code and data: every file under ``interp_core/`` (a changed technique, a retrained shipped tuned lens
  or another bundled dataset make a new key);
- the versions of torch, transformers, tokenizers, numpy, pandas and Python, whose numerics the results carry.

Requests and results are written with the experiment files' codec (:mod:`interp_core.cli.codec`): JSON, arrays bit
for bit, closed on reading (only the workbench's own classes, requests rebuilt through their constructors, so their
checks run), never pickle. Only models on the CPU are kept (on a GPU the first results take seconds anyway, and a
result read back would hold CPU tensors); results over :data:`MAX_RESULT_BYTES` are left out (the probing states,
which have a disk cache of their own, and the tuned lens, which loads from its shipped file), and so are a request's
fields that are not part of its identity (the probing states that a probe request carries). A file that cannot be
read or written is skipped: it only saves time. ``WORKBENCH_KEEP_RESULTS=0`` turns both off.

Files: ``workbench_home()/kept_results/<model>-<key>.json``, the newest :data:`KEEP` of them.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import re
from collections.abc import Hashable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import interp_core
from interp_core import LoadedModel, WorkbenchError
from interp_core.cli import codec
from interp_core.core.disk_cache import mark_used, write_newest
from interp_core.core.loading import workbench_home
from interp_core.techniques.contract import Request
from ui import jobs
from ui.runner import cache_key

FORMAT = "1"  # bump when what a file holds changes
KEEP = 4
MAX_RESULT_BYTES = 32 * 2**20  # arrays in one request and result; the Induction page's patterns are ~11 MB, the probing states ~110 MB
VERSIONED = ("torch", "transformers", "tokenizers", "numpy", "pandas")


def enabled() -> bool:
    """Whether results are kept and read back (``$WORKBENCH_KEEP_RESULTS``, default on)."""
    return os.environ.get("WORKBENCH_KEEP_RESULTS", "1") != "0"


def kept_dir() -> Path:
    """The folder of the kept results (the test suite points it at a temporary folder of its own)."""
    return workbench_home() / "kept_results"


@functools.cache
def code_version() -> str:
    """A digest of the engine's code and data (every file under ``interp_core/``) and of the versions of the libraries
    whose numerics its results carry."""
    digest = hashlib.sha256(f"{FORMAT}|python {platform.python_version()}".encode())
    for name in VERSIONED:
        try:
            digest.update(f"|{name} {importlib.metadata.version(name)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"|{name} none".encode())
    root = Path(interp_core.__file__).resolve().parent
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(f"|{path.relative_to(root).as_posix()}|{path.stat().st_size}|".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def kept_path(model: LoadedModel) -> Path | None:
    """Where ``model``'s first results are kept under the current code; None where none are kept (turned off, a model
    off the CPU, or one without a fingerprint of its weights)."""
    if not enabled() or model.device.type != "cpu" or "@" in model.fingerprint:  # "@": an id-based fingerprint
        return None
    key = hashlib.sha256(f"{code_version()}|{model.fingerprint}|{model.info.name}".encode()).hexdigest()[:20]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", model.info.name)[-40:]
    return kept_dir() / f"{name}-{key}.json"


def restore(model: LoadedModel) -> set[Hashable]:
    """Put the results kept for ``model`` under the current code into the result cache; the cache keys it filled
    (empty when there is no readable file)."""
    path = kept_path(model)
    if path is None:
        return set()
    try:
        payload = json.loads(path.read_text())
        if not isinstance(payload, dict) or payload.get("fingerprint") != model.fingerprint:
            return set()
        pairs = [codec.decode(pair, f"results[{i}]") for i, pair in enumerate(payload["results"])]
    except (OSError, ValueError, KeyError, TypeError, WorkbenchError):
        return set()
    restored = set()
    for pair in pairs:
        if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], Request):
            key = cache_key(model, pair[0])
            jobs.remember(key, pair[1])
            restored.add(key)
    mark_used(path)
    return restored


def keep(model: LoadedModel, used: set[Hashable], restored: set[Hashable]) -> int:
    """Write the results of ``model`` under the cache keys ``used`` (those a visit's pages were given:
    ``ui.first_visit.results_used``; each with its request's :func:`identity`; those that hold at most
    :data:`MAX_RESULT_BYTES` of arrays) for the next start, unless they are all among ``restored`` (what
    :func:`restore` read); how many were written (0: nothing new, or not kept)."""
    path = kept_path(model)
    if path is None:
        return 0
    pairs = {key: [identity(key[2]), value] for key, value in jobs.entries() if key in used
             and isinstance(key, tuple) and len(key) == 3 and key[0] == "technique" and key[1] == model.fingerprint}
    pairs = {key: pair for key, pair in pairs.items() if array_bytes(pair) <= MAX_RESULT_BYTES}
    if set(pairs) <= restored:
        return 0
    results = []
    for pair in pairs.values():
        try:
            results.append(codec.encode(pair))
        except WorkbenchError:  # a result holding something the codec does not write: computed again next time
            continue
    payload = {"format": FORMAT, "model": model.info.name, "fingerprint": model.fingerprint, "code": code_version(),
               "results": results}
    text = json.dumps(payload)
    if not write_newest(path, lambda staging: staging.write_text(text), KEEP):
        return 0
    return len(results)


def identity(request: Request) -> Request:
    """``request`` without the fields that are not part of its identity (``compare=False``: equal requests may differ in
    them, e.g. the probing states a probe request carries so that it need not extract them again): the same cache key."""
    carried = {f.name: f.default for f in dataclasses.fields(request)
               if not f.compare and f.default is not dataclasses.MISSING and getattr(request, f.name) is not f.default}
    return dataclasses.replace(request, **carried) if carried else request


def array_bytes(value: object) -> int:
    """The bytes of the arrays, tensors and data frames inside ``value`` (through dataclasses, lists, tuples and dicts):
    about what writing it costs."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, pd.DataFrame):
        return int(value.memory_usage(index=True, deep=False).sum())
    if isinstance(value, (list, tuple)):
        return sum(array_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(array_bytes(v) for v in value.values())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(array_bytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    return 0
