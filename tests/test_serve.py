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


def test_probing_states_are_stored_once_and_shared(tiny_llama, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first time, the POS states go to the disk cache and to the server-wide result cache (what the Probing
    page's first request finds); with the file there, nothing is extracted again."""
    from interp_core.techniques import probe_cache, probing
    from interp_core.techniques.probing import ProbeFeaturesRequest
    from ui import jobs, runner

    request = ProbeFeaturesRequest()
    path = probe_cache.cache_path(tiny_llama.fingerprint, request.dataset, request.pool)
    path.unlink(missing_ok=True)
    extractions = []
    real = probing.extract_features
    monkeypatch.setattr(probing, "extract_features", lambda *a, **k: extractions.append(1) or real(*a, **k))

    serve.prepare_probing(tiny_llama)
    assert path.is_file() and len(extractions) == 1
    found = jobs.lookup(runner.cache_key(tiny_llama, request))
    assert found is not None and found.states.shape[0] == tiny_llama.info.n_layers + 1

    jobs._results.pop(runner.cache_key(tiny_llama, request))
    serve.prepare_probing(tiny_llama)  # already on disk: the page reads it back in a fraction of a second
    assert len(extractions) == 1 and jobs.lookup(runner.cache_key(tiny_llama, request)) is None
