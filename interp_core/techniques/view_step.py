"""View steps: a table a page derives from a result it already has, without running the model again.

A page's view widgets (a slider that picks one head, a box that picks one position) choose which
part of a result to show. :class:`ViewStep` records that choice as code: ``result.method(**arguments)``,
where ``method`` is a public, documented method of the result's class that returns a data frame,
and ``names`` are the downloads the page offers from it. :func:`interp_core.cli.reproduce.python_snippet`
writes it as ``tables["attention_L1H3"] = patterns.head_table(layer=1, head=3)``, so the snippet
gives every download of the page, the derived ones included.

``arguments`` may hold other results (or lists of them): a table that puts two results side by
side (the logit and the tuned lens, an exact grid and its estimate) names them there.
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pandas as pd

from interp_core.core.errors import WorkbenchError


def check_view_method(result_type: type, method: str) -> None:
    """Raise :class:`WorkbenchError` unless ``method`` is a public, documented method of ``result_type``.

    ``to_json`` and ``tables`` are the result's own outputs, not views of it.
    """
    found = inspect.getattr_static(result_type, method, None) if isinstance(method, str) else None
    if (not isinstance(method, str) or not method.isidentifier() or method.startswith("_") or method in ("to_json", "tables")
            or not inspect.isfunction(found) or not (found.__doc__ or "").strip()):
        raise WorkbenchError(f"{method!r} is not a public, documented table method of {result_type.__name__}; a view step "
                             "names one (e.g. AttentionPatterns.head_table).")


@dataclasses.dataclass(frozen=True, eq=False)
class ViewStep:
    """``names`` (the page's download names) = ``result.method(**arguments)``.

    Attributes:
        names: the file-name stems of the downloads this table is offered as (one or more: a table
            drawn as three charts is offered three times).
        result: the result the table is read from (one a :class:`~interp_core.techniques.contract.Step` holds).
        method: a public, documented method of the result's class returning a ``pd.DataFrame``.
        arguments: its keyword arguments: plain values, or results of other steps.
    """

    names: tuple[str, ...]
    result: object
    method: str
    arguments: dict

    def __post_init__(self) -> None:
        if isinstance(self.names, str):
            object.__setattr__(self, "names", (self.names,))
        if not self.names or not all(isinstance(n, str) and n for n in self.names):
            raise WorkbenchError(f"A view step needs one or more download names, got {self.names!r}.")
        check_view_method(type(self.result), self.method)
        object.__setattr__(self, "arguments", {key: _plain(value) for key, value in self.arguments.items()})

    def table(self) -> pd.DataFrame:
        """Compute the table: ``result.method(**arguments)``."""
        table = getattr(self.result, self.method)(**self.arguments)
        if not isinstance(table, pd.DataFrame):
            raise WorkbenchError(f"{type(self.result).__name__}.{self.method} returned a {type(table).__name__}, not a data frame.")
        return table


def _plain(value: object) -> object:
    """numpy scalars as Python numbers (a widget may hand one over), so the snippet writes ``3``, not ``np.int64(3)``."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def derive(names: str | tuple[str, ...], result: object, method: str, **arguments: object) -> tuple[ViewStep, pd.DataFrame]:
    """The view step and its table: ``result.method(**arguments)`` offered as ``names``."""
    step = ViewStep(names if isinstance(names, tuple) else (names,), result, method, dict(arguments))
    return step, step.table()
