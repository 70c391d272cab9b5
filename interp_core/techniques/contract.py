"""One contract for every technique: a request in, a result out.

- A **request** is a frozen dataclass subclassing :class:`Request`: every input of one analysis
  (prompt, layer, options), validated in ``__post_init__`` before any model runs, and hashable,
  so ``(model.fingerprint, request)`` is the one cache key a page needs. Checks that need the
  model (a layer out of range, an answer that is not one token) go in :meth:`Request.check`.
- ``run(model, request, on_progress=None) -> result`` is the only way in. A request class names
  its computation in :meth:`Request.compute`. A request that builds its own model (training a
  toy model from scratch) runs with ``model=None``.
- A **result** gives ``to_json()`` (exactly the CLI's JSON for the same inputs) and ``tables()``
  (the data frames the page charts and offers as downloads, by file-name stem).

The CLI builds the same requests from its flags (:func:`request_fields` lets a test check that
every flag of a subcommand is a field of its request), so the page and the command line can
never drift apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import ClassVar, Protocol, runtime_checkable

import pandas as pd

from interp_core.core.errors import WorkbenchError
from interp_core.core.load_options import LoadOptions
from interp_core.core.model import LoadedModel

Progress = Callable[[float, str], None]


@runtime_checkable
class Result(Protocol):
    """What every technique returns."""

    def to_json(self) -> dict: ...

    def tables(self) -> dict[str, pd.DataFrame]: ...


@dataclasses.dataclass(frozen=True)
class Request:
    """Base of every technique's request. Subclasses are ``@dataclass(frozen=True)`` and set:

    Attributes:
        label: what a progress bar or spinner says while it runs, e.g. "Patching the residual stream".
        heavy: whether a page sends it through the heavy-job queue (sweeps, training).
    """

    label: ClassVar[str] = "Computing"
    heavy: ClassVar[bool] = False

    def check(self, model: LoadedModel | None) -> None:
        """Checks that need the model; raise a :class:`WorkbenchError` subclass. Default: none."""

    def compute(self, model: LoadedModel | None, on_progress: Progress) -> Result:
        raise NotImplementedError(f"{type(self).__name__} does not say how it is computed")


@dataclasses.dataclass(frozen=True)
class Step:
    """One computation as it ran: the model's spec and weights fingerprint (None without a model), request, result,
    and how the model was loaded (``options``: dtype, device map; the defaults unless the user chose others)."""

    model: str | None
    fingerprint: str | None
    request: Request
    result: Result
    options: LoadOptions = LoadOptions()


_recording: ContextVar[list[Step] | None] = ContextVar("interp_core_recording", default=None)


@contextmanager
def recording() -> Iterator[list[Step]]:
    """Collect every :func:`run` made inside the ``with`` block (this thread or task only) as a :class:`Step`.

    The CLI's ``--save FILE`` writes them to an experiment file.
    """
    steps: list[Step] = []
    token = _recording.set(steps)
    try:
        yield steps
    finally:
        _recording.reset(token)


def _silent(fraction: float, message: str = "") -> None:
    pass


def run(model: LoadedModel | None, request: Request, on_progress: Progress | None = None) -> Result:
    """Run one technique: validate ``request`` against ``model`` (None for a request that needs none), then compute it."""
    if not isinstance(request, Request):
        raise WorkbenchError(f"run() takes a technique request (a Request subclass), got {type(request).__name__}.")
    request.check(model)
    result = request.compute(model, on_progress or _silent)
    steps = _recording.get()
    if steps is not None:
        steps.append(Step(None if model is None else model.info.name, None if model is None else model.fingerprint, request, result,
                          LoadOptions() if model is None else model.options))
    return result


def request_fields(request_type: type[Request]) -> set[str]:
    """The field names of a request class (what a CLI flag of its subcommand may set)."""
    return {field.name for field in dataclasses.fields(request_type)}
