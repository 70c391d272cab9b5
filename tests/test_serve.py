"""``python -m ui.serve`` loads the sidebar's first model as the server starts, into the cache every session reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from interp_core import WorkbenchError
from interp_core.core import loading
from ui import serve, state


@pytest.fixture
def counted_loads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The specs ``ui.state.get_model`` loads from disk (its cache emptied before and after)."""
    loads: list[str] = []
    real = state.load_model

    def counting(spec: str, **kwargs: object):
        loads.append(spec)
        return real(spec, **kwargs)

    monkeypatch.setattr(state, "load_model", counting)
    state.get_model.clear()
    yield loads
    state.get_model.clear()


def test_preload_fills_the_cache_that_the_sidebar_reads(tiny_model_dirs: dict[str, Path], counted_loads: list[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = str(tiny_model_dirs["llama"]), str(tiny_model_dirs["gpt2"])
    monkeypatch.setenv("WORKBENCH_ALLOWED_MODELS", f"{first},{second}")  # the sidebar opens with the first
    serve.preload_model()
    assert counted_loads == [first]
    model = state.get_model(first)  # what the first visitor's sidebar asks for: no second load
    assert counted_loads == [first]
    assert model is state.get_model(first)


def test_preload_leaves_an_unconverted_default_model_to_the_page(counted_loads: list[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKBENCH_ALLOWED_MODELS", raising=False)
    monkeypatch.setattr(loading, "default_model_ready", lambda: False)  # the page shows the conversion's progress
    serve.preload_model()
    assert counted_loads == []


def test_a_failed_preload_is_left_for_the_sidebar_to_report(tmp_path: Path, counted_loads: list[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    missing = str(tmp_path / "no-such-model")
    monkeypatch.setenv("WORKBENCH_ALLOWED_MODELS", missing)
    serve.preload_model()  # no exception escapes the server's start
    assert counted_loads == [missing]
    with pytest.raises(WorkbenchError):  # not cached as a success: the sidebar tries again and shows why
        state.get_model(missing)
    assert counted_loads == [missing, missing]


def test_probing_first_result_is_computed_once_and_shared(tiny_llama, monkeypatch: pytest.MonkeyPatch) -> None:
    """The POS states go to the disk cache the first time, and with the first probes to the server-wide result cache
    (what the Probing page's first requests find); on a later start the states are read back, not extracted again."""
    from interp_core.techniques import probe_cache, probing
    from ui import jobs, runner
    from ui.probing_views import first_request

    probe = first_request(tiny_llama.info.n_layers)
    states = probe.features_request()
    keys = [runner.cache_key(tiny_llama, states), runner.cache_key(tiny_llama, probe)]
    path = probe_cache.cache_path(tiny_llama.fingerprint, states.dataset, states.pool)
    path.unlink(missing_ok=True)
    extractions = []
    real = probing.extract_features
    monkeypatch.setattr(probing, "extract_features", lambda *a, **k: extractions.append(1) or real(*a, **k))

    serve.prepare_probing(tiny_llama)
    assert path.is_file() and len(extractions) == 1
    found, result = (jobs.lookup(key) for key in keys)
    assert found is not None and found.states.shape[0] == tiny_llama.info.n_layers + 1
    assert result is not None and len(result.accuracy) == tiny_llama.info.n_layers + 1  # a small model: every layer

    for key in keys:  # a server's next start: an empty result cache, the states on disk
        jobs._results.pop(key)
    serve.prepare_probing(tiny_llama)
    assert len(extractions) == 1
    assert all(jobs.lookup(key) is not None for key in keys)
    for key in keys:
        jobs._results.pop(key)


def test_the_probing_page_opens_on_the_request_the_server_prepares(tiny_model_dirs: dict[str, Path]) -> None:
    """If the page's first request drifted from ``first_request``, the server would prepare a result nobody asks for."""
    from page_harness import open_page

    from interp_core import load_model
    from ui import jobs, runner
    from ui.probing_views import first_request

    model = load_model(str(tiny_model_dirs["gpt2"]))
    key = runner.cache_key(model, first_request(model.info.n_layers))
    jobs._results.pop(key, None)
    at = open_page("pages/08_probing.py", tiny_model_dirs["gpt2"], timeout=300).run()
    assert not at.exception, at.exception
    assert jobs.lookup(key) is not None
    jobs._results.pop(key)
