"""Charts name their encoding channels as Altair classes, never as text shorthands.

Altair turns a text shorthand (``x="layer:O"``, ``tooltip=["label"]``) into its channel class through
``SchemaBase.from_dict``, which builds a fresh lookup of every schema class each time: about 2 ms of
server CPU per shorthand (altair 6.3), 13 ms for a chart of five, paid by every session on every run.
With the classes (``alt.X("layer:O")``, ``alt.Tooltip("label")``) the spec is the same and that cost is gone.
"""

from __future__ import annotations

import traceback

import altair as alt
import pandas as pd
import pytest
from altair.utils import schemapi
from page_harness import open_page

from ui.charts import heatmap
from ui.navigation import page_files


@pytest.fixture
def shorthand_lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Where (our ``file:line``) each text shorthand was looked up since the fixture started."""
    seen: list[str] = []
    original = schemapi._FromDict.__init__

    def counting(self, *args, **kwargs):
        ours = [f for f in traceback.extract_stack() if "/ui/" in f.filename or "/pages/" in f.filename]
        seen.append(f"{ours[-1].filename}:{ours[-1].lineno}" if ours else "outside ui/ and pages/")
        original(self, *args, **kwargs)

    monkeypatch.setattr(schemapi._FromDict, "__init__", counting)
    return seen


def test_the_counter_sees_a_shorthand(shorthand_lookups):
    df = pd.DataFrame({"a": [1.0], "b": ["x"]})
    alt.Chart(df).mark_bar().encode(x=alt.X("a:Q"), tooltip=[alt.Tooltip("b")])
    assert shorthand_lookups == []
    alt.Chart(df).mark_bar().encode(x="a:Q")
    assert len(shorthand_lookups) == 1


def test_heatmap_makes_text_tooltips_classes_with_the_same_spec(shorthand_lookups):
    df = pd.DataFrame({"layer": [0, 1], "head": [0, 0], "score": [0.2, 0.9], "label": ["L0H0", "L1H0"]})
    chart = heatmap(df, "layer", "head", "score", tooltip=["label", alt.Tooltip("score:Q", format=".2f")])
    default = heatmap(df, "layer", "head", "score")
    assert shorthand_lookups == []
    spec = chart.to_dict()["encoding"]["tooltip"]
    assert spec == [{"field": "label", "type": "nominal"}, {"field": "score", "format": ".2f", "type": "quantitative"}]
    assert [t["field"] for t in default.to_dict()["encoding"]["tooltip"]] == ["layer", "head", "score"]


@pytest.mark.parametrize("page", page_files(), ids=lambda path: path.stem)
def test_no_page_draws_a_text_shorthand(page, tiny_model_dirs, shorthand_lookups):
    at = open_page(f"pages/{page.name}", tiny_model_dirs["gpt2"], timeout=300).run()
    assert not at.exception, at.exception
    assert shorthand_lookups == [], f"{page.name} built channels from text shorthands at {shorthand_lookups}"
