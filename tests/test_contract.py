"""The technique contract: requests are frozen, hashable and validated; ``run`` is the one way in;
results give ``to_json`` and ``tables``; every CLI subcommand that names a request sets only its fields."""

from __future__ import annotations

import dataclasses

import pytest

from interp_core.cli.main import discover_commands
from interp_core.core.errors import OutOfRangeError, WorkbenchError
from interp_core.techniques.contract import Request, Result, request_fields, run
from interp_core.techniques.predict import PredictRequest, predict_next

COMMON_FLAGS = {"model", "device", "json", "dtype", "device_map", "max_memory", "offload_folder"}


def flags_of(module) -> set[str]:
    import argparse

    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return {action.dest for action in parser._actions if action.dest != "help"}


class TestRequests:
    def test_requests_are_frozen_and_hashable(self):
        """Equal requests hash equal (one cache key), and a request cannot be edited."""
        a, b = PredictRequest("The capital of France is", 5), PredictRequest("The capital of France is", 5)
        assert a == b and hash(a) == hash(b) and a != PredictRequest("The capital of France is", 6)
        with pytest.raises(dataclasses.FrozenInstanceError):
            a.top_k = 3  # type: ignore[misc]

    def test_bad_values_fail_on_creation(self):
        """Validation runs before any model: top_k 0 is refused by the constructor."""
        with pytest.raises(OutOfRangeError, match="top-k"):
            PredictRequest("x", 0)

    def test_run_refuses_anything_but_a_request(self, tiny_gpt2):
        with pytest.raises(WorkbenchError, match="Request"):
            run(tiny_gpt2, ("predict", "x"))  # type: ignore[arg-type]


class TestResults:
    def test_run_equals_the_direct_call_and_tables_match_the_json(self, tiny_model):
        """run() gives the technique's own result; its table holds the JSON's numbers."""
        request = PredictRequest("hello world", 4)
        result = run(tiny_model, request)
        assert isinstance(result, Result)
        assert result.to_json() == predict_next(tiny_model, "hello world", 4).to_json()
        table = result.tables()["next_tokens"]
        assert list(table["prob"]) == [entry["prob"] for entry in result.to_json()["top"]]
        assert list(table["rank"]) == [1, 2, 3, 4]


class TestCliMatchesRequests:
    @pytest.mark.parametrize("module", [m for m in discover_commands() if hasattr(m, "REQUEST")], ids=lambda m: m.NAME)
    def test_every_flag_is_a_request_field(self, module):
        """A subcommand's flags are its request's fields (plus --model/--device/--json and its CLI_ONLY flags)."""
        assert issubclass(module.REQUEST, Request)
        extra = flags_of(module) - request_fields(module.REQUEST) - set(getattr(module, "CLI_ONLY", ()))
        assert not extra - COMMON_FLAGS, f"{module.NAME} flags without a request field: {sorted(extra - COMMON_FLAGS)}"

    def test_some_subcommands_are_built_on_requests(self):
        """The check above is not vacuous."""
        assert any(hasattr(m, "REQUEST") for m in discover_commands())


class TestFingerprint:
    def test_fingerprint_changes_when_the_weights_change(self, tmp_path):
        """Same directory, new weights (a retrained toy): a new fingerprint, so no cached result is reused."""
        from interp_core import load_model
        from interp_core.testing.tiny_models import save_tiny_model

        directory = save_tiny_model("gpt2", tmp_path / "m", seed=0)
        first = load_model(str(directory), device="cpu")
        assert first.fingerprint == load_model(str(directory), device="cpu").fingerprint  # stable across loads
        save_tiny_model("gpt2", tmp_path / "m", seed=1)  # retrained in place
        second = load_model(str(directory), device="cpu")
        assert second.fingerprint != first.fingerprint
        request = PredictRequest("hello world", 3)
        assert run(first, request).to_json() != run(second, request).to_json()  # the old numbers would be stale
