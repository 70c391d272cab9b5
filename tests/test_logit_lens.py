"""Logit lens and tuned lens: the readout reproduces the model, the tuned lens beats the logit
lens on held-out text, translators survive a save/load, the CLI keeps its contract, the page renders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from page_harness import open_page
from streamlit.testing.v1 import AppTest

from interp_core import cli, load_model
from interp_core.core.errors import NotSingleTokenError, OutOfRangeError
from interp_core.techniques.contract import run
from interp_core.techniques.logit_lens import LogitLensRequest, boundary_labels, readout, residual_boundaries, run_logit_lens
from interp_core.techniques.tuned_lens import (
    SHIPPED_DIR,
    SHIPPED_FILE_NAME,
    SavedTunedLensRequest,
    TrainConfig,
    TrainTunedLensRequest,
    TunedLens,
    TunedLensError,
    gzip_lens_file,
    heldout_kl,
    lens_dir,
    load_tuned_lens,
    read_lens_file,
    require_tuned_lens,
    sample_residuals,
    saved_lens_version,
    shipped_lens_dir,
    train_tuned_lens,
    with_int8,
)
from interp_core.techniques.tuned_lens_ship import SIZE_LIMIT_BYTES

PROMPT = "The capital of France is Paris. The capital of Italy is"
# float32 matmul over d_model=64 and a 400-token vocab: 1e-4 absolute covers reassociation only.
TOL = dict(atol=1e-4, rtol=1e-4)
TINY_TRAIN = TrainConfig(n_train_seqs=16, n_heldout_seqs=4, seq_len=20, kl_steps=10, batch_tokens=64, lr=3e-3, vocab_subset=0)


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """A private workbench home, so saved lenses never leak between tests or into the user's."""
    monkeypatch.setenv("INTERP_WORKBENCH_HOME", str(tmp_path))
    return tmp_path


class TestLogitLens:
    def test_last_boundary_equals_model_logits(self, tiny_model):
        """unembed(final_norm(resid after the last block)) equals the model's own logits (norm applied once)."""
        tokens = tiny_model.tokenize(PROMPT)
        logits, resid = residual_boundaries(tiny_model, tokens)
        assert resid.shape == (tiny_model.info.n_layers + 1, 1, tokens.shape[1], tiny_model.info.d_model)
        torch.testing.assert_close(readout(tiny_model, resid[-1]), logits.float(), **TOL)
        # The captured stream is before the final norm (HF's last hidden state is after it), so the
        # equality above means the norm was applied exactly once.
        with torch.no_grad():
            normed = tiny_model.hf_model(tokens, output_hidden_states=True).hidden_states[-1]
        assert (normed - resid[-1]).abs().max() > 1e-2
        torch.testing.assert_close(readout(tiny_model, resid[:-1]).shape[-1], tiny_model.info.d_vocab)

    def test_result_matches_model_at_last_boundary(self, tiny_gpt2, tiny_llama):
        """The last row's top-k and KL agree with a plain forward; earlier rows differ."""
        for model in (tiny_gpt2, tiny_llama):
            result = run_logit_lens(model, PROMPT, top_k=5)
            probs = model.forward(model.tokenize(PROMPT))[0].float().softmax(-1)
            values, indices = probs.topk(5, dim=-1)
            np.testing.assert_array_equal(result.top_ids[-1], indices.numpy())
            np.testing.assert_allclose(result.top_probs[-1], values.numpy(), atol=1e-5)
            np.testing.assert_allclose(result.kl_to_final[-1], 0.0, atol=1e-5)
            assert result.kl_to_final[0].mean() > 0.05  # the embeddings are not the answer
            assert result.layers == boundary_labels(model.info.n_layers) == ("embed", "L0", "L1")
            assert result.model_top_id == int(indices[-1, 0])

    def test_target_prob_and_rank(self, tiny_llama):
        """Target probability and rank agree with a full sort of each layer's distribution."""
        result = run_logit_lens(tiny_llama, PROMPT, top_k=3, target=" Paris")
        assert result.target_id == tiny_llama.single_token_id(" Paris")
        resid = residual_boundaries(tiny_llama, tiny_llama.tokenize(PROMPT))[1][:, 0]
        logprobs = readout(tiny_llama, resid).log_softmax(-1)  # (layer, pos, d_vocab)
        target_lp = logprobs[..., result.target_id]
        np.testing.assert_allclose(result.target_prob, target_lp.exp().numpy(), atol=1e-6)
        np.testing.assert_array_equal(result.target_rank, 1 + (logprobs > target_lp[..., None]).sum(-1).numpy())
        assert len(set(result.target_rank[:, -1].tolist())) > 1  # non-degenerate across layers

    def test_target_by_id_is_rank_one_for_top_token(self, tiny_gpt2):
        """Tracking the model's own top token (by id) gives rank 1 and its probability at the last boundary."""
        first = run_logit_lens(tiny_gpt2, PROMPT, top_k=3)
        result = run_logit_lens(tiny_gpt2, PROMPT, top_k=3, target=first.model_top_id)
        assert result.target_rank[-1, -1] == 1
        assert result.target_prob[-1, -1] == pytest.approx(first.top_probs[-1, -1, 0], abs=1e-6)

    def test_bad_inputs_raise_before_running(self, tiny_gpt2):
        with pytest.raises(OutOfRangeError, match="top-k"):
            run_logit_lens(tiny_gpt2, PROMPT, top_k=0)
        with pytest.raises(NotSingleTokenError):
            run_logit_lens(tiny_gpt2, PROMPT, target=" Paris is lovely")


class TestTunedLens:
    def test_beats_logit_lens_on_heldout_text(self, tiny_model, home):
        """Trained on the model's own samples, the tuned lens has lower held-out KL at the non-final boundaries."""
        lens = train_tuned_lens(tiny_model, TINY_TRAIN)
        n = tiny_model.info.n_layers
        assert lens.heldout_kl_logit.shape == (n + 1,) and lens.heldout_kl_logit[:-1].min() > 0.05
        assert lens.heldout_kl_tuned[-1] == pytest.approx(0.0, abs=1e-5)  # the last boundary has no translator
        better = lens.heldout_kl_tuned[:-1] < lens.heldout_kl_logit[:-1]
        assert better.sum() > n / 2, (lens.heldout_kl_logit, lens.heldout_kl_tuned)

    def test_kl_training_from_identity_lowers_kl(self, tiny_llama, home):
        """With no closed-form stage, Adam from the identity alone lowers the held-out KL."""
        cfg = TrainConfig(n_train_seqs=12, n_heldout_seqs=4, seq_len=16, ridge=0, kl_steps=30, batch_tokens=64, lr=5e-3, vocab_subset=200)
        lens = train_tuned_lens(tiny_llama, cfg, save=False)
        assert lens.weight.abs().max() > 0  # it moved away from the identity
        assert lens.heldout_kl_tuned[0] < lens.heldout_kl_logit[0]

    def test_save_load_roundtrip_and_use(self, tiny_gpt2, home):
        lens = train_tuned_lens(tiny_gpt2, TrainConfig(n_train_seqs=8, n_heldout_seqs=2, seq_len=12, kl_steps=0))
        assert (lens_dir(tiny_gpt2.info.name) / "translators.safetensors").is_file()
        assert lens_dir(tiny_gpt2.info.name).is_relative_to(home / "tuned_lens")
        loaded = load_tuned_lens(tiny_gpt2)
        assert isinstance(loaded, TunedLens)
        torch.testing.assert_close(loaded.weight, lens.weight, atol=0, rtol=0)
        np.testing.assert_allclose(loaded.heldout_kl_tuned, lens.heldout_kl_tuned)
        tuned = run_logit_lens(tiny_gpt2, PROMPT, lens=loaded)
        plain = run_logit_lens(tiny_gpt2, PROMPT)
        assert tuned.lens == "tuned"
        np.testing.assert_array_equal(tuned.top_ids[-1], plain.top_ids[-1])  # identity at the last boundary
        assert not np.allclose(tuned.top_probs[0], plain.top_probs[0])

    def test_lens_of_other_weights_is_refused(self, tiny_gpt2, tiny_model_dirs, tmp_path, home):
        """A lens trained for one model's weights is not loaded for a model with other weights at the same path."""
        from interp_core.testing.tiny_models import save_tiny_model

        train_tuned_lens(tiny_gpt2, TrainConfig(n_train_seqs=4, n_heldout_seqs=2, seq_len=8, kl_steps=0))
        other = load_model(str(save_tiny_model("gpt2", tmp_path / "other", seed=1)), device="cpu")
        # same name as the trained model, other weights (a toy model retrained in place):
        renamed = type(other)(other.hf_model, other.tokenizer, other.adapter, type(other.info)(**{**other.info.__dict__, "name": tiny_gpt2.info.name}))
        assert load_tuned_lens(renamed) is None
        with pytest.raises(TunedLensError, match="Train one"):
            require_tuned_lens(renamed)


class TestCli:
    def test_json_contract(self, tiny_model_dirs, capsys, home):
        model = load_model(str(tiny_model_dirs["llama"]), device="cpu")
        target = " Paris"
        top = run_logit_lens(model, PROMPT, target=target)
        code = cli.main(["logit-lens", "--model", str(tiny_model_dirs["llama"]), "--prompt", PROMPT,
                         "--target", target, "--top-k", "3", "--json"])
        assert code == 0
        out = json.loads(capsys.readouterr().out)
        assert {"tokens", "layers", "top", "target_prob", "target_rank"} <= set(out)
        assert out["layers"] == ["embed", "L0", "L1"]
        assert len(out["top"]) == 3 and len(out["top"][0]) == len(out["tokens"]) and len(out["top"][0][0]) == 3
        assert set(out["top"][-1][-1][0]) == {"token", "prob"}
        assert [e["token"] for e in out["top"][-1][-1]] == list(top.top_tokens[-1, -1, :3])
        np.testing.assert_allclose(out["target_prob"], top.target_prob[:, -1], atol=1e-6)
        assert out["target_rank"] == top.target_rank[:, -1].tolist() and len(out["target_prob"]) == 3
        assert out["top"][-1][-1][0]["prob"] == pytest.approx(float(top.top_probs[-1, -1, 0]), abs=1e-6)

    def test_tuned_without_saved_lens_says_how_to_train(self, tiny_model_dirs, capsys, home):
        code = cli.main(["logit-lens", "--model", str(tiny_model_dirs["gpt2"]), "--prompt", PROMPT, "--lens", "tuned", "--json"])
        assert code == 2
        assert "--train" in json.loads(capsys.readouterr().out)["error"]

    def test_bad_target_is_a_clean_error(self, tiny_model_dirs, capsys):
        code = cli.main(["logit-lens", "--model", str(tiny_model_dirs["gpt2"]), "--prompt", PROMPT, "--target", " Paris is", "--json"])
        assert code == 2
        assert "not one" in json.loads(capsys.readouterr().out)["error"]


class TestRequests:
    def test_lens_request_equals_the_direct_call_and_tables_match_the_json(self, tiny_model):
        """run(LogitLensRequest) gives the engine's own JSON; the grid and target tables hold its numbers."""
        result = run(tiny_model, LogitLensRequest(PROMPT, " Paris", top_k=3))
        data = result.to_json()
        assert data == run_logit_lens(tiny_model, PROMPT, top_k=3, target=" Paris").to_json()
        tables = result.tables()
        n_pos = len(data["tokens"])
        grid = tables["logit_lens_grid"]
        assert list(grid["layer"]) == [layer for layer in data["layers"] for _ in range(n_pos)]
        assert list(grid["prob"]) == [cell[0]["prob"] for row in data["top"] for cell in row]
        assert list(grid["top token"]) == [cell[0]["token"] for row in data["top"] for cell in row]
        last = tables["logit_lens_target"].query(f"position == {n_pos - 1}")
        assert list(last["probability"]) == data["target_prob"]
        assert list(last["rank"]) == data["target_rank"]

    def test_empty_target_is_no_target_and_bad_values_fail_on_creation(self):
        assert LogitLensRequest(PROMPT, "") == LogitLensRequest(PROMPT)
        with pytest.raises(OutOfRangeError, match="top-k"):
            LogitLensRequest(PROMPT, top_k=0)
        with pytest.raises(OutOfRangeError, match="lens"):
            LogitLensRequest(PROMPT, lens="tuneed")

    def test_training_is_heavy_and_the_saved_lens_is_a_result(self, tiny_gpt2, home, monkeypatch):
        """Training goes through the heavy queue; the saved lens's held-out KL table matches its JSON, and
        the tuned request reads the lens saved at that version."""
        assert TrainTunedLensRequest.heavy and not LogitLensRequest.heavy
        with pytest.raises(TunedLensError):
            run(tiny_gpt2, LogitLensRequest(PROMPT, lens="tuned"))
        monkeypatch.setattr("interp_core.techniques.tuned_lens.QUICK_TRAINING", TINY_TRAIN)
        run(tiny_gpt2, TrainTunedLensRequest(quick=True))
        version = saved_lens_version(tiny_gpt2)
        assert version > 0
        saved = run(tiny_gpt2, SavedTunedLensRequest(version))
        kl = saved.tables()["lens_heldout_kl"]
        assert list(kl["KL (nats)"]) == saved.to_json()["heldout_kl_logit"] + saved.to_json()["heldout_kl_tuned"]
        tuned = run(tiny_gpt2, LogitLensRequest(PROMPT, lens="tuned", lens_version=version))
        assert tuned.to_json() == run_logit_lens(tiny_gpt2, PROMPT, lens=load_tuned_lens(tiny_gpt2)).to_json()
        assert "tuned_lens_grid" in tuned.tables()


class TestPage:
    @pytest.fixture()
    def app(self, tiny_model_dirs, home) -> AppTest:
        return open_page("pages/03_logit_lens.py", tiny_model_dirs["gpt2"])

    def test_renders_grid_and_target_charts(self, app):
        app.run()
        assert not app.exception
        assert [e.value for e in app.error] == []
        assert len(app.get("vega_lite_chart")) + len(app.get("arrow_vega_lite_chart")) >= 2
        assert any(b.label.startswith("Train tuned lens") for b in app.button)

    def test_bad_target_shows_error(self, app):
        app.run()
        app.text_input(key="lens_target").set_value(" Paris is lovely").run()
        assert not app.exception
        assert any("not one" in e.value for e in app.error)
        assert len(app.get("vega_lite_chart")) + len(app.get("arrow_vega_lite_chart")) >= 1  # the grid still shows

    def test_training_button_trains_and_shows_both_lenses(self, app, tiny_model_dirs):
        app.run()
        next(b for b in app.button if b.label.startswith("Train tuned lens")).click().run()
        assert not app.exception
        assert [e.value for e in app.error] == []
        assert any("Tuned lens" in s.value for s in app.subheader)


SHIPPED_FILE = SHIPPED_DIR / "smollm2-135m" / SHIPPED_FILE_NAME
needs_shipped = pytest.mark.skipif(
    not SHIPPED_FILE.is_file(),
    reason="no shipped lens yet: run .venv/bin/python -m interp_core.techniques.tuned_lens_ship and commit its directory",
)


class TestShippedLens:
    def test_int8_file_loads_what_was_measured(self, tiny_gpt2, tmp_path):
        """A lens saved as int8 rows loads as exactly the lens that with_int8 measures, within half a step of
        each row of the float32 lens; the bias stays float32."""
        lens = train_tuned_lens(tiny_gpt2, TrainConfig(n_train_seqs=8, n_heldout_seqs=2, seq_len=12, kl_steps=0), save=False)
        lens.save(tmp_path / "q", int8=True)
        loaded = load_tuned_lens(tiny_gpt2, tmp_path / "q")
        torch.testing.assert_close(loaded.weight, with_int8(lens).weight, atol=0, rtol=0)
        step = lens.weight.abs().amax(dim=-1, keepdim=True) / 127
        assert torch.all((loaded.weight - lens.weight).abs() <= step / 2 + 1e-7)
        assert not torch.equal(loaded.weight, lens.weight)  # it really was quantised
        torch.testing.assert_close(loaded.bias, lens.bias, atol=0, rtol=0)

    def test_shipped_lens_is_used_when_none_was_trained_here(self, tiny_gpt2, home, tmp_path, monkeypatch):
        """With no lens in the user's home the shipped one is loaded; one trained here takes precedence."""
        monkeypatch.setattr("interp_core.techniques.tuned_lens.SHIPPED_DIR", tmp_path / "shipped")
        cfg = TrainConfig(n_train_seqs=8, n_heldout_seqs=2, seq_len=12, kl_steps=0)
        shipped = train_tuned_lens(tiny_gpt2, cfg, save=False)
        gzipped = gzip_lens_file(shipped.save(shipped_lens_dir(tiny_gpt2.info.name), int8=True))
        assert gzipped.name == SHIPPED_FILE_NAME and not gzipped.with_suffix("").exists()  # stored as the repo ships it
        assert saved_lens_version(tiny_gpt2) > 0
        found = load_tuned_lens(tiny_gpt2)
        torch.testing.assert_close(found.weight, with_int8(shipped).weight, atol=0, rtol=0)
        assert run(tiny_gpt2, LogitLensRequest(PROMPT, lens="tuned", lens_version=1.0)).lens == "tuned"
        mine = train_tuned_lens(tiny_gpt2, TrainConfig(n_train_seqs=8, n_heldout_seqs=2, seq_len=12, kl_steps=0, seed=1))
        torch.testing.assert_close(load_tuned_lens(tiny_gpt2).weight, mine.weight, atol=0, rtol=0)

    @needs_shipped
    def test_shipped_file_is_small_and_documented(self):
        """The shipped lens of the default model stays under the repository's 10 MB limit (decimal: 10,000,000
        bytes), and its README holds the held-out table with the shipped lens within 10 % of the full lens at
        every layer."""
        assert SHIPPED_FILE.is_file()
        assert SHIPPED_FILE.stat().st_size < SIZE_LIMIT_BYTES == 10_000_000
        meta, tensors = read_lens_file(SHIPPED_FILE)
        assert set(tensors) >= {"weight_int8", "weight_scale", "bias", "heldout_kl_logit", "heldout_kl_tuned"}
        assert tensors["weight_int8"].dtype == torch.int8
        assert meta["model_name"] == "smollm2-135m"
        record = json.loads((SHIPPED_FILE.parent / "record.json").read_text())
        full, shipped, logit = (np.array(record[k][:-1]) for k in ("kl_full", "kl_shipped", "kl_logit"))
        assert np.all(shipped <= 1.10 * full), shipped / full
        assert np.all(shipped < logit)
        assert "shipped / full" in (SHIPPED_FILE.parent / "README.md").read_text()


@pytest.mark.slow
@needs_shipped
def test_shipped_lens_beats_logit_lens_on_heldout_text(default_model, home):
    """SmolLM2-135M: the shipped lens loads on first use (no lens trained here) and has a lower KL to the final
    distribution than the logit lens at every layer boundary but the last, on text sampled with a seed never
    used in its training (seed 0) and the identity at the last boundary."""
    lens = load_tuned_lens(default_model)
    assert lens is not None and lens.config["storage"] == "int8 per row"
    _, resid = sample_residuals(default_model, 6, 24, seed=12345)
    held = resid[:, :, 1:].reshape(resid.shape[0], -1, resid.shape[-1])
    kl_logit, kl_tuned = heldout_kl(default_model, held, None), heldout_kl(default_model, held, lens)
    assert np.all(kl_tuned[:-1] < kl_logit[:-1]), (kl_logit, kl_tuned)
    assert kl_tuned[-1] == pytest.approx(kl_logit[-1], abs=1e-6)
    result = run(default_model, LogitLensRequest("The capital of France is", lens="tuned", lens_version=saved_lens_version(default_model)))
    assert result.top_tokens[-1, -1, 0] == " Paris"


class TestTrackTop:
    def test_track_top_equals_tracking_the_top_id(self, tiny_gpt2):
        """Tracking the model's top-1 by flag gives exactly the tables of tracking its id, and the same grid as no target."""
        plain = run_logit_lens(tiny_gpt2, PROMPT)
        flagged = run(tiny_gpt2, LogitLensRequest(PROMPT, track_top=True))
        by_id = run_logit_lens(tiny_gpt2, PROMPT, target=plain.model_top_id)
        assert flagged.target_id == plain.model_top_id
        for name, frame in by_id.tables().items():
            assert frame.equals(flagged.tables()[name]), name
        assert plain.tables()["logit_lens_grid"].equals(flagged.tables()["logit_lens_grid"])
        assert LogitLensRequest(PROMPT, " Paris", track_top=True).compute(tiny_gpt2, lambda *_: None).target == " Paris"
