"""Notebook export: pages as a Jupyter notebook (``nbformat``) that recomputes and redraws them.

One setup cell (imports and a ``redraw`` helper), then per page a markdown heading and its Python
snippet (:func:`interp_core.cli.reproduce.python_snippet`), and per chart a markdown cell that
says how to read it (the page's own explanation) and a code cell that redraws it with Altair: the
Vega-Lite spec the page drew, with its data rebound to ``tables[name]`` from the snippet when the
chart plots exactly that table (otherwise the spec keeps the data the page drew).
"""

from __future__ import annotations

import dataclasses
import json

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

SETUP = '''import json

import altair as alt
import pandas as pd

KINDS = {"layer": alt.LayerChart, "hconcat": alt.HConcatChart, "vconcat": alt.VConcatChart, "concat": alt.ConcatChart,
         "facet": alt.FacetChart, "repeat": alt.RepeatChart}


def redraw(spec: dict, data: pd.DataFrame | None = None) -> alt.TopLevelMixin:
    """An Altair chart from a Vega-Lite ``spec``, plotting ``data`` when given (else the data in the spec)."""
    spec = dict(spec)
    if data is not None:
        spec["data"] = {"values": json.loads(data.to_json(orient="records", double_precision=15))}
    kind = next((cls for key, cls in KINDS.items() if key in spec), alt.Chart)
    return kind.from_dict(spec, validate=False)
'''


@dataclasses.dataclass(frozen=True)
class ChartCell:
    """One chart of a page: its download name, caption, explanation, and Vega-Lite spec.

    Attributes:
        rebind: whether the spec's top-level data is ``tables[name]`` (then it is left out of the spec).
    """

    name: str
    caption: str
    explain: str
    spec: dict
    rebind: bool


@dataclasses.dataclass(frozen=True)
class NotebookPage:
    title: str
    question: str
    snippet: str
    charts: tuple[ChartCell, ...]


def _chart_code(chart: ChartCell) -> str:
    spec = dict(chart.spec)
    if chart.rebind:
        name = (spec.pop("data", None) or {}).get("name")
        datasets = dict(spec.get("datasets", {}))
        rest = {k: v for k, v in spec.items() if k != "datasets"}
        if name in datasets and json.dumps(name) not in json.dumps(rest):
            del datasets[name]  # only the top level plotted it: tables[name] replaces it
        if datasets:
            spec["datasets"] = datasets
        else:
            spec.pop("datasets", None)
    literal = repr(json.dumps(spec))
    call = f"redraw(spec, tables[{chart.name!r}])" if chart.rebind else "redraw(spec)"
    return f"spec = json.loads({literal})\n{call}"


def build_notebook(model: str, pages: list[NotebookPage], versions: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The notebook for ``pages`` (in order); every code cell runs top to bottom with ``interp_core`` installed."""
    versions = versions or {}
    intro = (f"# Interpretability workbench export\n\nModel `{model}`. Every cell recomputes from the model: run them "
             "top to bottom. Each page's snippet leaves `tables` (its downloads by name); the chart cells redraw the page's "
             "charts with Altair.")
    if versions:
        intro += "\n\nMade with " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "."
    cells = [new_markdown_cell(intro), new_code_cell(SETUP)]
    for page in pages:
        cells.append(new_markdown_cell(f"## {page.title}\n\n*{page.question}*" if page.question else f"## {page.title}"))
        cells.append(new_code_cell(page.snippet))
        for chart in page.charts:
            text = f"### {chart.name}\n\n{chart.caption}".rstrip()
            if chart.explain:
                text += f"\n\n**How to read it.** {chart.explain.strip()}"
            cells.append(new_markdown_cell(text))
            cells.append(new_code_cell(_chart_code(chart)))
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


def notebook_text(model: str, pages: list[NotebookPage], versions: dict[str, str] | None = None) -> str:
    """:func:`build_notebook` as ``.ipynb`` text."""
    return nbformat.writes(build_notebook(model, pages, versions))
