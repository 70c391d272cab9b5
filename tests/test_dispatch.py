"""Models dispatched over devices by accelerate, and half precision (issue #21), on the CPU.

A tiny llama and a tiny GPT-2 are loaded with an explicit ``device_map`` that puts some blocks,
a norm and (GPT-2) the position embedding on ``disk`` (accelerate's disk offload works on a
CPU-only machine: those weights are ``meta`` tensors between forwards, read from the offload folder
during them). Everything the workbench computes must equal the undispatched model's.

Tolerances. Dispatched vs undispatched, both float32: the same operations on the same values, so
equal to 1e-6 (measured: 0). bfloat16 vs float32: bfloat16 keeps 8 significant bits (relative
rounding 2^-9 = 0.2% per operation), and the errors of a whole forward add up; numbers are compared
relative to ``max(|x|, 1)`` with tolerance :data:`BF16_TOLERANCE` = 0.15 (measured on these models:
at most 0.09, on the patching grid, whose entries divide by a logit difference). Sums the workbench
itself does (DLA's decomposition) are float32 even in a bfloat16 model: they close to 1e-4.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from interp_core import load_model
from interp_core.cli.main import main
from interp_core.core.devices import real_tensor
from interp_core.core.errors import DeviceError, ModelLoadError
from interp_core.core.load_options import LoadOptions, make_options, parse_max_memory
from interp_core.core.model import LoadedModel
from interp_core.testing.compare import compare_json

DISPATCH_TOLERANCE = 1e-6
BF16_TOLERANCE = 0.15
CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"
MAPS = {
    "llama": {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "disk", "model.layers.1": "cpu",
              "model.norm": "disk", "lm_head": "cpu"},
    "gpt2": {"transformer.wte": "cpu", "transformer.wpe": "disk", "transformer.h.0": "disk", "transformer.h.1": "cpu",
             "transformer.ln_f": "disk", "lm_head": "cpu"},
}
CASES = {
    "logit_lens": ["logit-lens", "--prompt", CLEAN, "--target", " Mary"],
    "patch_resid": ["patch", "--clean", CLEAN, "--corrupt", CORRUPT, "--answer", " Mary", "--wrong", " John", "--target", "resid_pre"],
    "patch_heads": ["patch", "--clean", CLEAN, "--corrupt", CORRUPT, "--answer", " Mary", "--wrong", " John", "--target", "head_out"],
    "dla": ["dla", "--prompt", CLEAN, "--answer", " Mary", "--wrong", " John"],
}
FAMILIES = tuple(MAPS)
needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")


def cli(*argv: str) -> tuple[int, dict]:
    """Run the CLI in this process with ``--json``; (exit status, parsed output)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main([*argv, "--json"])
    return status, json.loads(out.getvalue())


@pytest.fixture(scope="module")
def offload_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("offload")


@pytest.fixture(scope="module", params=FAMILIES)
def pair(request: pytest.FixtureRequest, tiny_model_dirs: dict[str, Path], offload_root: Path) -> tuple[LoadedModel, LoadedModel]:
    """(undispatched, dispatched over cpu and disk) loads of one tiny model."""
    family = request.param
    directory = str(tiny_model_dirs[family])
    options = make_options(device_map=MAPS[family], offload_folder=str(offload_root / family))
    return load_model(directory, device="cpu"), load_model(directory, options=options)


class TestDispatchedEqualsUndispatched:
    def test_part_of_the_model_really_is_on_disk(self, pair: tuple[LoadedModel, LoadedModel]) -> None:
        plain, dispatched = pair
        offloaded = [name for name, p in dispatched.hf_model.named_parameters() if p.device.type == "meta"]
        assert offloaded and all(p.device.type == "cpu" for p in plain.hf_model.parameters())
        assert dispatched.info.device == "cpu+disk" and "disk: " in dispatched.info.device_map
        assert dispatched.fingerprint != plain.fingerprint  # another load: caches never mix them

    def test_every_hook_point_and_the_logits(self, pair: tuple[LoadedModel, LoadedModel]) -> None:
        plain, dispatched = pair
        ids = plain.tokenize(CLEAN)
        logits_a, cache_a = plain.run_with_cache(ids)
        logits_b, cache_b = dispatched.run_with_cache(ids)
        assert set(cache_a) == set(cache_b) == set(plain.hook_names)
        torch.testing.assert_close(logits_b, logits_a, atol=DISPATCH_TOLERANCE, rtol=0)
        for name in cache_a:
            torch.testing.assert_close(cache_b[name], cache_a[name], atol=DISPATCH_TOLERANCE, rtol=0, msg=name)

    def test_an_edit_on_an_offloaded_block(self, pair: tuple[LoadedModel, LoadedModel]) -> None:
        """A patch value recorded outside the forward reaches a block whose weights are on disk."""
        plain, dispatched = pair
        ids = plain.tokenize(CLEAN)
        value = torch.full((1, ids.shape[1], plain.info.d_model), 0.5)
        hooks = [("blocks.0.hook_resid_pre", lambda act, name: value)]
        torch.testing.assert_close(dispatched.forward(ids, hooks=hooks), plain.forward(ids, hooks=hooks),
                                   atol=DISPATCH_TOLERANCE, rtol=0)

    def test_weights_are_read_from_the_offload_store(self, pair: tuple[LoadedModel, LoadedModel]) -> None:
        plain, dispatched = pair
        a, b = plain.weights, dispatched.weights
        for field in ("W_E", "W_pos", "W_U", "b_U", "ln_final_w", "ln_final_b"):
            x, y = getattr(a, field), getattr(b, field)
            assert (x is None) == (y is None), field
            if x is not None:
                assert torch.equal(x, y), field
        for block_a, block_b in zip(a.blocks, b.blocks, strict=True):
            for field in block_a.__dataclass_fields__:
                x, y = getattr(block_a, field), getattr(block_b, field)
                assert (x is None and y is None) or torch.equal(x, y), field
        # reading them left the model offloaded
        assert any(p.device.type == "meta" for p in dispatched.hf_model.parameters())

    @pytest.mark.parametrize("case", list(CASES))
    def test_cli_results(self, case: str, pair: tuple[LoadedModel, LoadedModel], offload_root: Path) -> None:
        """Logit lens, the exact patching grids (resid and heads) and DLA, through the CLI's flags."""
        plain, dispatched = pair
        family = dispatched.info.family
        directory = plain.info.name
        status_a, a = cli(*CASES[case], "--model", directory, "--device", "cpu")
        status_b, b = cli(*CASES[case], "--model", directory, "--device-map", json.dumps(MAPS[family]),
                          "--offload-folder", str(offload_root / f"cli_{family}"))
        assert status_a == status_b == 0, (a, b)
        diff = compare_json(a, b)
        assert diff.numbers > 10 and diff.within(DISPATCH_TOLERANCE), (diff.max_abs, diff.mismatches[:3])

    def test_auto_map_on_the_cpu(self, tiny_model_dirs: dict[str, Path]) -> None:
        """``device_map="auto"`` on a CPU-only machine puts everything on the CPU and changes nothing."""
        directory = str(tiny_model_dirs["llama"])
        auto = load_model(directory, options=LoadOptions(device_map="auto"))
        plain = load_model(directory, device="cpu")
        ids = plain.tokenize(CLEAN)
        torch.testing.assert_close(auto.forward(ids), plain.forward(ids), atol=DISPATCH_TOLERANCE, rtol=0)


@pytest.fixture(scope="module", params=FAMILIES)
def half_pair(request: pytest.FixtureRequest, tiny_model_dirs: dict[str, Path]) -> tuple[LoadedModel, LoadedModel]:
    directory = str(tiny_model_dirs[request.param])
    return load_model(directory, device="cpu"), load_model(directory, device="cpu", options=LoadOptions(dtype="bfloat16"))


class TestHalfPrecision:
    def test_weights_in_bfloat16_numbers_in_float32(self, half_pair: tuple[LoadedModel, LoadedModel]) -> None:
        plain, half = half_pair
        assert half.info.dtype == "bfloat16" and half.dtype == torch.bfloat16
        assert real_tensor(half.adapter.lm_head, "weight").dtype == torch.bfloat16
        logits, cache = half.run_with_cache(half.tokenize(CLEAN))
        assert logits.dtype == torch.float32 and all(v.dtype == torch.float32 for v in cache.values())
        assert half.weights.W_U.dtype == half.weights.blocks[0].W_O.dtype == torch.float32
        assert half.fingerprint != plain.fingerprint

    def test_logits_within_tolerance(self, half_pair: tuple[LoadedModel, LoadedModel]) -> None:
        plain, half = half_pair
        ids = plain.tokenize(CLEAN)
        a, b = plain.forward(ids)[0, -1].log_softmax(-1), half.forward(ids)[0, -1].log_softmax(-1)
        assert float((a - b).abs().max()) < BF16_TOLERANCE * max(float(a.abs().max()), 1.0)
        assert int(a.argmax()) == int(b.argmax())

    @pytest.mark.parametrize("case", list(CASES))
    def test_cli_results_within_tolerance(self, case: str, half_pair: tuple[LoadedModel, LoadedModel]) -> None:
        plain, _ = half_pair
        status_a, a = cli(*CASES[case], "--model", plain.info.name, "--device", "cpu")
        status_b, b = cli(*CASES[case], "--model", plain.info.name, "--device", "cpu", "--dtype", "bfloat16")
        assert status_a == status_b == 0, (a, b)
        diff = compare_json(a, b)
        # Top-token lists may swap near-ties: compare the numbers, and the structure where it is numeric.
        assert diff.numbers > 10 and diff.max_rel <= BF16_TOLERANCE, diff.max_rel
        assert not [m for m in diff.mismatches if "token" not in m], diff.mismatches[:3]

    def test_dla_sums_close_in_float32(self, half_pair: tuple[LoadedModel, LoadedModel]) -> None:
        """DLA's components sum to its total to float32 precision although the model runs in bfloat16."""
        plain, _ = half_pair
        status, result = cli(*CASES["dla"], "--model", plain.info.name, "--device", "cpu", "--dtype", "bfloat16")
        assert status == 0
        parts = sum(entry["value"] for entry in result["layers"]) + result["bias_term"]
        assert abs(parts - result["total"]) < 1e-4
        assert abs(result["total"] - result["model_logit_diff"]) < 0.05  # the bfloat16 logits' own rounding


class TestClearErrors:
    def test_max_memory_too_small(self, tiny_model_dirs: dict[str, Path]) -> None:
        status, out = cli("predict", "--prompt", CLEAN, "--model", str(tiny_model_dirs["llama"]),
                          "--device-map", "auto", "--max-memory", "cpu:20KiB")
        assert status == 2
        assert "too small" in out["error"] and "cpu: 0.0195 MiB" in out["error"] and "--offload-folder" in out["error"]

    def test_max_memory_with_disk_offload_allowed_loads(self, tiny_model_dirs: dict[str, Path], tmp_path: Path) -> None:
        directory = str(tiny_model_dirs["gpt2"])
        options = make_options(device_map="auto", max_memory="cpu:20KiB", offload_folder=str(tmp_path))
        small, plain = load_model(directory, options=options), load_model(directory, device="cpu")
        assert "disk" in small.info.device
        ids = plain.tokenize(CLEAN)
        torch.testing.assert_close(small.forward(ids), plain.forward(ids), atol=DISPATCH_TOLERANCE, rtol=0)

    @needs_no_cuda
    @pytest.mark.parametrize("flags", [["--device", "cuda"], ["--device-map", '{"": 0}'],
                                       ["--device-map", "auto", "--max-memory", "0:1GiB,cpu:1GiB"]])
    def test_cuda_without_cuda(self, flags: list[str], tiny_model_dirs: dict[str, Path]) -> None:
        status, out = cli("predict", "--prompt", CLEAN, "--model", str(tiny_model_dirs["llama"]), *flags)
        assert status == 2 and "no CUDA GPU" in out["error"], out

    def test_disk_in_the_map_needs_a_folder(self, tiny_model_dirs: dict[str, Path]) -> None:
        with pytest.raises(ModelLoadError, match="offload folder"):
            load_model(str(tiny_model_dirs["llama"]), options=make_options(device_map=MAPS["llama"]))

    def test_device_and_device_map_together(self, tiny_model_dirs: dict[str, Path]) -> None:
        with pytest.raises(DeviceError, match="cannot be combined"):
            load_model(str(tiny_model_dirs["llama"]), device="cpu", options=LoadOptions(device_map="auto"))

    @pytest.mark.parametrize("text, message", [("cpu=3GiB", "DEVICE:SIZE"), ("cpu:3 lots", "not a memory size"),
                                               ("gpu:3GiB", "not a device")])
    def test_bad_max_memory(self, text: str, message: str) -> None:
        with pytest.raises(ModelLoadError, match=message):
            parse_max_memory(text)

    def test_bad_choices(self, tiny_model_dirs: dict[str, Path]) -> None:
        status, out = cli("predict", "--prompt", CLEAN, "--model", str(tiny_model_dirs["llama"]), "--dtype", "int8")
        assert status == 2 and "--dtype" in out["error"]
        status, out = cli("predict", "--prompt", CLEAN, "--model", str(tiny_model_dirs["llama"]), "--device-map", "fastest")
        assert status == 2 and "balanced" in out["error"]
        with pytest.raises(ModelLoadError, match="device map as well"):
            make_options(max_memory="cpu:1GiB")


def test_parse_max_memory() -> None:
    assert parse_max_memory("0:20GiB, cuda:1:512MiB ,cpu:60GB") == (("0", 20 * 2**30), ("1", 512 * 2**20), ("cpu", 60 * 10**9))
    assert parse_max_memory("") is None


def test_default_options_keep_fingerprints(tiny_model_dirs: dict[str, Path]) -> None:
    """Loads without options are the same models as before (cached results stay valid)."""
    directory = str(tiny_model_dirs["gpt2"])
    assert load_model(directory, device="cpu").fingerprint == load_model(directory, device="cpu", options=LoadOptions()).fingerprint


def test_sidebar_loads_in_bfloat16_and_says_so(tiny_model_dirs: dict[str, Path]) -> None:
    """The "Advanced" expander's precision reaches the loader, and the sidebar caption shows the dtype."""
    from page_harness import APP
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["model"] = str(tiny_model_dirs["gpt2"])
    at.session_state["model"] = str(tiny_model_dirs["gpt2"])
    at.session_state["load_dtype"] = "bfloat16"
    at.run()
    captions = [c.value for c in at.sidebar.caption]
    assert any("· bfloat16 · loaded in" in c for c in captions), captions
    at.session_state["load_max_memory"] = "cpu=1GiB"  # malformed: a red box, the app keeps working
    at.run()
    assert any("DEVICE:SIZE" in e.value for e in at.error) and not at.exception
