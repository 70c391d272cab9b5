"""The first visit's results kept on disk (``ui.kept_results``): read back exactly, and never under other code, other
weights or from a damaged file."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from interp_core import LoadedModel, load_model
from interp_core.cli import codec
from interp_core.techniques.attention import PatternsRequest
from interp_core.techniques.contract import run
from interp_core.techniques.dla import DlaRequest
from interp_core.techniques.logit_lens import LogitLensRequest
from interp_core.testing.tiny_models import save_tiny_model
from ui import jobs, kept_results
from ui.runner import cache_key

REQUESTS = (LogitLensRequest("one two three one two"), PatternsRequest("one two three one two"),
            DlaRequest("one two three one two"))


@pytest.fixture
def model(tmp_path: Path) -> LoadedModel:
    """A tiny model with weights of its own (seed 11), so no other test's results for it are in the cache."""
    return load_model(str(save_tiny_model("gpt2", tmp_path / "gpt2", seed=11)))


@pytest.fixture
def computed(model: LoadedModel) -> Iterator[dict[object, object]]:
    """:data:`REQUESTS`' results on ``model``, in the server's result cache under the keys a page uses; dropped after."""
    results = {cache_key(model, request): run(model, request) for request in REQUESTS}
    for key, value in results.items():
        jobs.remember(key, value)
    yield results
    forget(model)


def forget(model: LoadedModel) -> None:
    for key, _ in jobs.entries():
        if isinstance(key, tuple) and len(key) == 3 and key[1] == model.fingerprint:  # other caches use other keys
            jobs._results.pop(key, None)


def test_a_restart_reads_back_exactly_what_the_visit_computed(model: LoadedModel, computed: dict) -> None:
    someone_elses = cache_key(model, PatternsRequest("a participant's own prompt"))
    jobs.remember(someone_elses, run(model, someone_elses[2]))  # computed meanwhile, but not for the visit's pages
    assert kept_results.keep(model, set(computed), set()) == len(REQUESTS)
    assert kept_results.keep(model, set(computed), set(computed)) == 0  # nothing new: the file is not written again
    forget(model)
    assert jobs.lookup(next(iter(computed))) is None
    assert kept_results.restore(model) == set(computed)  # not someone_elses
    for key, value in computed.items():
        assert codec.encode(jobs.lookup(key)) == codec.encode(value)  # arrays bit for bit


def test_results_kept_under_other_code_or_other_weights_are_not_read(model: LoadedModel, computed: dict,
                                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kept_results.keep(model, set(computed), set())
    forget(model)
    monkeypatch.setattr(kept_results, "code_version", lambda: "an edited technique")
    assert kept_results.restore(model) == set()
    monkeypatch.undo()
    other = load_model(str(save_tiny_model("gpt2", tmp_path / "other", seed=12)))
    assert kept_results.kept_path(other) != kept_results.kept_path(model)
    assert kept_results.restore(other) == set()
    assert kept_results.restore(model) == set(computed)  # the file itself was fine


def test_the_code_version_covers_the_engines_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    before = kept_results.code_version()
    kept_results.code_version.cache_clear()
    real_read = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda p: real_read(p) + (b"#" if p.name == "logit_lens.py" else b""))
    try:
        assert kept_results.code_version() != before
    finally:
        kept_results.code_version.cache_clear()
        monkeypatch.undo()
    assert kept_results.code_version() == before


def test_a_damaged_or_tampered_file_is_skipped(model: LoadedModel, computed: dict) -> None:
    kept_results.keep(model, set(computed), set())
    path = kept_results.kept_path(model)
    payload = json.loads(path.read_text())
    forget(model)
    path.write_text(path.read_text()[:1000])  # cut short
    assert kept_results.restore(model) == set()
    payload["results"][0][1]["__dataclass__"] = "subprocess:Popen"  # a class outside the workbench
    path.write_text(json.dumps(payload))
    assert kept_results.restore(model) == set()
    assert jobs.lookup(next(iter(computed))) is None


def test_nothing_is_kept_when_turned_off_or_off_the_cpu(model: LoadedModel, computed: dict,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_KEEP_RESULTS", "0")
    assert kept_results.kept_path(model) is None and kept_results.keep(model, set(computed), set()) == 0
    monkeypatch.delenv("WORKBENCH_KEEP_RESULTS")
    monkeypatch.setattr(LoadedModel, "device", property(lambda self: torch.device("meta")))
    assert kept_results.kept_path(model) is None


def test_large_results_are_left_out(model: LoadedModel, computed: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = {key: kept_results.array_bytes(value) for key, value in computed.items()}
    assert all(size > 0 for size in sizes.values())
    monkeypatch.setattr(kept_results, "MAX_RESULT_BYTES", sorted(sizes.values())[1])
    assert kept_results.keep(model, set(computed), set()) == 2  # the largest one is left out
    forget(model)
    assert kept_results.restore(model) == {key for key, size in sizes.items() if size <= sorted(sizes.values())[1]}


def test_a_request_is_kept_without_what_it_only_carries() -> None:
    """A probe request carries the probing states (~110 MB for the default model) but is keyed without them."""
    from interp_core.techniques.probing import ProbeRequest

    plain = ProbeRequest("pos", "linear", 5, 0, "last", 3)
    carrying = dataclasses.replace(plain, features=np.zeros((4, 4)))  # stands in for the states: never compared
    kept = kept_results.identity(carrying)
    assert kept.features is None and kept == carrying and hash(kept) == hash(carrying)
    assert kept_results.array_bytes(kept) == 0 < kept_results.array_bytes(carrying)
    assert kept_results.identity(plain) is plain


def test_array_bytes_counts_through_containers() -> None:
    frame = pd.DataFrame({"a": np.zeros(4)})
    value = {"x": [np.zeros(3, dtype=np.float32), (torch.zeros(2, dtype=torch.float64),)], "f": frame, "n": 5}
    assert kept_results.array_bytes(value) == 12 + 16 + int(frame.memory_usage(index=True).sum())
