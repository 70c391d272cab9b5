"""The app shell under Streamlit's AppTest: home page renders, bad input shows an error box."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest
from page_harness import APP
from streamlit.testing.v1 import AppTest

TIMEOUT = 120  # the first run imports torch and transformers


@pytest.fixture()
def app(tiny_model_dirs) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["model"] = str(tiny_model_dirs["gpt2"])
    return at


def chart_frames(at: AppTest) -> list[pd.DataFrame]:
    """The data behind every Altair chart on the page, as DataFrames."""
    frames = []
    for chart in list(at.get("vega_lite_chart")) + list(at.get("arrow_vega_lite_chart")):
        for dataset in chart.proto.datasets:
            frames.append(pa.ipc.open_stream(dataset.data.data).read_all().to_pandas())
        if chart.proto.HasField("data"):
            frames.append(pa.ipc.open_stream(chart.proto.data.data).read_all().to_pandas())
    return frames


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


class TestHome:
    def test_renders_prediction_chart(self, app):
        """Home page shows the model card and the next-token chart, with no exception."""
        app.run()
        assert not app.exception
        assert _errors(app) == []
        assert len(app.get("vega_lite_chart")) + len(app.get("arrow_vega_lite_chart")) >= 1
        assert any("Tokens:" in m.value for m in app.markdown)

    def test_empty_prompt_shows_error(self, app):
        app.run()
        app.text_area(key="prompt").set_value("   ").run()
        assert not app.exception
        assert any("empty" in e for e in _errors(app))
        assert app.title[0].value == "Interpretability Workbench"  # the page still renders

    def test_overlong_prompt_shows_error(self, app):
        app.run()
        app.text_area(key="prompt").set_value("Mary " * 400).run()
        assert not app.exception
        assert any("limit" in e for e in _errors(app))
        assert app.title[0].value == "Interpretability Workbench"

    def test_unknown_model_shows_error(self, tiny_model_dirs):
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.query_params["model"] = "/no/such/model/dir"
        at.run()
        assert not at.exception
        assert any("No directory" in e for e in _errors(at))
        assert at.text_area(key="prompt") is not None


@pytest.mark.slow
def test_default_model_home_shows_paris():
    """With no model chosen, the home page loads SmolLM2-135M and ' Paris' is the top bar."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception and _errors(at) == []
    assert at.text_area(key="prompt").value == "The capital of France is"
    top = chart_frames(at)[0]
    assert top["token"].iloc[0] == " Paris"
    assert top["prob"].iloc[0] == pytest.approx(0.77, abs=0.03)


class TestWorkshopSettings:
    def test_allowed_models_refuse_others(self, tiny_model_dirs, monkeypatch):
        """With a fixed model list, a link naming another model shows an error, not that model."""
        monkeypatch.setenv("WORKBENCH_ALLOWED_MODELS", str(tiny_model_dirs["llama"]))
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.query_params["model"] = str(tiny_model_dirs["gpt2"])
        at.run()
        assert not at.exception
        assert at.selectbox(key="model").options == [str(tiny_model_dirs["llama"])]
        assert at.session_state["model"] == str(tiny_model_dirs["llama"])
        refusals = [e for e in _errors(at) if "only offers these models" in e and str(tiny_model_dirs["gpt2"]) in e]
        assert len(refusals) == 1, _errors(at)  # said once, not dropped silently

    def test_prompt_limit(self, app, monkeypatch):
        monkeypatch.setenv("WORKBENCH_MAX_PROMPT_TOKENS", "3")
        app.query_params["prompt"] = "Alice and Bob talked about the weather"  # not cached by another test
        app.run()
        assert any("limit here is 3" in e for e in _errors(app))


def test_html_report_has_figures_and_data():
    """The page report embeds each chart as SVG with its data table."""
    import altair as alt

    from ui.report import build_html_report

    df = pd.DataFrame({"token": [" Paris", " the"], "prob": [0.77, 0.06]})
    chart = alt.Chart(df).mark_bar().encode(x="prob:Q", y="token:N")
    text = build_html_report("Home", {"model": "m", "prompt": "p"}, [{"name": "next_tokens", "caption": "c", "chart": chart, "data": df}])
    assert "<svg" in text and "Paris" in text and "0.77" in text
