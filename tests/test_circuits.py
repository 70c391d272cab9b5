"""QK/OV circuits, copying scores and composition: factored results equal dense ones, hand-built
heads score what they must, GQA heads read their KV head, the CLI and the page work."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from page_harness import open_page
from scipy.optimize import linear_sum_assignment
from streamlit.testing.v1 import AppTest

from interp_core.cli import main
from interp_core.core.errors import NotSingleTokenError, OutOfRangeError, WorkbenchError
from interp_core.techniques.circuits import (
    copying_score,
    copying_scores,
    embed_unembed,
    full_ov_eigenvalues,
    layer_heads,
    ov_circuit,
    positional_qk,
    qk_circuit,
    token_ids,
)
from interp_core.techniques.composition import composition_score, composition_scores, factored_frobenius, random_baseline

PAGE = "pages/09_circuits.py"


def assert_same_spectrum(factored: np.ndarray, dense: np.ndarray, tol: float) -> None:
    """Every factored eigenvalue matches a distinct dense one; the dense ones left over are ~0."""
    cost = np.abs(factored[:, None] - dense[None, :])
    rows, cols = linear_sum_assignment(cost)
    scale = np.abs(dense).max()
    assert cost[rows, cols].max() <= tol * scale
    rest = np.delete(dense, cols)
    assert np.abs(rest).max(initial=0.0) <= tol * scale


class TestFolding:
    def test_rmsnorm_fold_scales_rows(self, tiny_llama):
        """RMSNorm folding (the llama adapter's) is diag(w) W."""
        W, w = torch.randn(3, 8, 4), torch.rand(8) + 0.5
        torch.testing.assert_close(tiny_llama.adapter.fold_norm_into_reader(W, w), torch.diag(w) @ W)

    def test_layernorm_fold_matches_centred_input(self, tiny_gpt2):
        """LayerNorm folding (the GPT-2 adapter's) gives ((x - mean x) * w) W for any x."""
        W, w, x = torch.randn(8, 4), torch.rand(8) + 0.5, torch.randn(5, 8)
        expected = ((x - x.mean(-1, keepdim=True)) * w) @ W
        torch.testing.assert_close(x @ tiny_gpt2.adapter.fold_norm_into_reader(W, w), expected, atol=1e-5, rtol=1e-5)

    def test_folded_value_weights_reproduce_model_values(self, tiny_llama):
        """At layer 0 on one token, hook_v equals (W_E[t] / rms) @ folded W_V of each head (GQA mapping included)."""
        model = tiny_llama
        token = 7
        _, cache = model.run_with_cache(torch.tensor([[token]]), ["blocks.0.attn.hook_v"])
        v = cache["blocks.0.attn.hook_v"][0, 0]  # (kv_head, d_head)
        x = model.weights.W_E[token].float()
        heads = layer_heads(model, 0)
        for h in range(model.info.n_heads):
            expected = (x / model.adapter.norm_scale(x)) @ heads.W_V[h]
            torch.testing.assert_close(expected, v[model.adapter.kv_head_of(h)], atol=1e-5, rtol=1e-4)


class TestOVCircuit:
    @staticmethod
    def _identity_head(sign: float) -> tuple[torch.Tensor, ...]:
        """W_E, W_V, W_O, W_U whose full OV circuit is sign * identity on an 8-token vocabulary."""
        g = torch.Generator().manual_seed(0)
        d_vocab, d_model = 8, 16
        q1, _ = torch.linalg.qr(torch.randn(d_model, d_model, generator=g, dtype=torch.float64))
        q2, _ = torch.linalg.qr(torch.randn(d_model, d_model, generator=g, dtype=torch.float64))
        mix = torch.randn(d_vocab, d_vocab, generator=g, dtype=torch.float64) + 3 * torch.eye(d_vocab, dtype=torch.float64)
        W_E = q1[:d_vocab]  # orthonormal rows: W_E @ W_V = I
        W_V = q1[:d_vocab].T
        W_O = sign * mix @ q2[:d_vocab]  # (d_head, d_model)
        W_U = q2[:d_vocab].T @ torch.linalg.inv(mix)  # so that W_O @ W_U = sign * I
        return W_E, W_V, W_O, W_U

    @pytest.mark.parametrize("sign", [1.0, -1.0])
    def test_identity_head_copies(self, sign):
        """A head whose token-space OV circuit is +I scores copying 1.0; -I scores -1.0."""
        W_E, W_V, W_O, W_U = self._identity_head(sign)
        torch.testing.assert_close(W_E @ W_V @ W_O @ W_U, sign * torch.eye(8, dtype=torch.float64))
        assert copying_score(full_ov_eigenvalues(W_E, W_V, W_O, W_U)) == pytest.approx(sign, abs=1e-9)

    def test_random_head_is_not_a_perfect_copier(self):
        """A random head's copying score is strictly inside (-1, 1)."""
        g = torch.Generator().manual_seed(1)
        W_E, W_V, W_O, W_U = (torch.randn(*s, generator=g) for s in [(50, 16), (16, 4), (4, 16), (16, 50)])
        assert -0.99 < copying_score(full_ov_eigenvalues(W_E, W_V, W_O, W_U)) < 0.99

    @pytest.mark.parametrize("fold", [True, False])
    def test_factored_equals_dense(self, tiny_model, fold):
        """Eigenvalues of W_O (W_U W_E) W_V equal the non-zero ones of the dense vocab x vocab W_E W_V W_O W_U."""
        model, layer, head = tiny_model, 1, 2
        result = ov_circuit(model, layer, head, fold_norms=fold)
        heads = layer_heads(model, layer, fold_norms=fold)
        W_E, W_U = (t.double() for t in embed_unembed(model, fold_norms=fold))
        W_V, W_O = heads.W_V[head].double(), heads.W_O[head].double()
        dense = torch.linalg.eigvals(W_E @ W_V @ W_O @ W_U).numpy()  # (d_vocab,): fine for a 400-token toy
        assert_same_spectrum(result.full_eigenvalues, dense, tol=1e-4)
        assert result.full_copying == pytest.approx(float(copying_score(dense)), abs=1e-4)
        basic_dense = torch.linalg.eigvals(W_V @ W_O).numpy()  # residual-space W_OV, d_model x d_model
        assert_same_spectrum(result.basic_eigenvalues, basic_dense, tol=1e-4)

    def test_all_heads_grid_matches_single_head(self, tiny_model):
        """The batched copying grid agrees with the one-head computation, and is not constant."""
        grid = copying_scores(tiny_model)
        assert grid.full.shape == (tiny_model.info.n_layers, tiny_model.info.n_heads)
        one = ov_circuit(tiny_model, 1, 3)
        assert grid.full[1, 3] == pytest.approx(one.full_copying, abs=1e-5)
        assert grid.basic[1, 3] == pytest.approx(one.basic_copying, abs=1e-5)
        assert np.all(np.abs(grid.full) <= 1 + 1e-9) and np.ptp(grid.full) > 0.01

    def test_top_tokens_match_dense_rows(self, tiny_gpt2):
        """Top raised tokens and self rank equal those of the dense row W_E[t] W_V W_O W_U."""
        model = tiny_gpt2
        ids = [5, 40, 300]
        result = ov_circuit(model, 0, 1, ids, top_k=5)
        heads = layer_heads(model, 0)
        W_E, W_U = embed_unembed(model)
        rows = (W_E[ids] @ heads.W_V[1] @ heads.W_O[1] @ W_U).numpy()
        np.testing.assert_array_equal(result.top_ids, np.argsort(-rows, axis=1)[:, :5])
        np.testing.assert_array_equal(result.self_rank, [(rows[i] > rows[i, t]).sum() for i, t in enumerate(ids)])
        assert result.top_strings[0][0] == model.token_strings([result.top_ids[0, 0]])[0]

    def test_bad_inputs(self, tiny_gpt2):
        """Out-of-range heads and multi-token words raise errors that say what to do."""
        with pytest.raises(OutOfRangeError, match="head must be between 0 and 3"):
            ov_circuit(tiny_gpt2, 0, 4)
        with pytest.raises(OutOfRangeError, match="layer"):
            composition_scores(tiny_gpt2, 2, 0)
        with pytest.raises(NotSingleTokenError):
            token_ids(tiny_gpt2, ["qzxqzxqzx"])
        with pytest.raises(WorkbenchError, match="No tokens"):
            token_ids(tiny_gpt2, [" ", ""])


class TestQKCircuit:
    def test_token_scores_equal_model_scores_at_position_zero(self, tiny_llama):
        """Rotary is the identity at position 0, so the token QK score / rms^2 equals q.k / sqrt(d_head) of a real run."""
        model, token = tiny_llama, 11
        _, cache = model.run_with_cache(torch.tensor([[token]]), ["blocks.1.attn.hook_q", "blocks.1.attn.hook_k", "blocks.1.hook_resid_pre"])
        q, k = cache["blocks.1.attn.hook_q"][0, 0], cache["blocks.1.attn.hook_k"][0, 0]
        # layer 1 reads the residual, not W_E: check the formula with that residual through the same weights
        resid = cache["blocks.1.hook_resid_pre"][0, 0]
        heads = layer_heads(model, 1)
        scale2 = model.adapter.norm_scale(resid) ** 2
        for h in range(model.info.n_heads):
            real = q[h] @ k[model.adapter.kv_head_of(h)] / math.sqrt(model.info.d_head)
            ours = (resid @ heads.W_Q[h]) @ (resid @ heads.W_K[h]) / math.sqrt(model.info.d_head) / scale2
            torch.testing.assert_close(ours.squeeze(), real, atol=1e-5, rtol=1e-4)
        # and at layer 0 the residual is the embedding, which is what qk_circuit uses
        _, cache0 = model.run_with_cache(torch.tensor([[token]]), ["blocks.0.attn.hook_q", "blocks.0.attn.hook_k"])
        circuit = qk_circuit(model, 0, 3, [token], [token])
        x = model.weights.W_E[token].float()
        real0 = cache0["blocks.0.attn.hook_q"][0, 0, 3] @ cache0["blocks.0.attn.hook_k"][0, 0, model.adapter.kv_head_of(3)]
        assert circuit.scores[0, 0] / float(model.adapter.norm_scale(x)) ** 2 == pytest.approx(
            float(real0) / math.sqrt(model.info.d_head), rel=1e-4, abs=1e-6
        )

    def test_positional_qk_gpt2(self, tiny_gpt2):
        """Positional QK equals the dense (W_pos W_Q)(W_pos W_K)^T / sqrt(d_head) below the diagonal, NaN above."""
        model = tiny_gpt2
        result = positional_qk(model, 1, 0, n_positions=20, fold_norms=False)
        heads = layer_heads(model, 1, fold_norms=False)
        pos = model.weights.W_pos[:20]
        dense = ((pos @ heads.W_Q[0]) @ (pos @ heads.W_K[0]).T / math.sqrt(model.info.d_head)).numpy()
        lower = np.tril_indices(20)
        np.testing.assert_allclose(result.scores[lower], dense[lower], rtol=1e-5, atol=1e-6)
        assert np.isnan(result.scores[np.triu_indices(20, k=1)]).all()

    def test_positional_qk_needs_learned_positions(self, tiny_llama):
        with pytest.raises(WorkbenchError, match="rotary"):
            positional_qk(tiny_llama, 0, 0)


class TestGQA:
    def test_query_heads_read_their_kv_head(self, tiny_llama):
        """With 4 query heads and 2 KV heads, heads 0,1 share v_proj/k_proj rows 0..d_head and heads 2,3 the next block."""
        model = tiny_llama
        attn = model.adapter.layers[1].self_attn
        d_head = model.info.d_head
        heads = layer_heads(model, 1, fold_norms=False)
        for h in range(4):
            kv = h // 2
            torch.testing.assert_close(heads.W_V[h], attn.v_proj.weight[kv * d_head:(kv + 1) * d_head].T)
            torch.testing.assert_close(heads.W_K[h], attn.k_proj.weight[kv * d_head:(kv + 1) * d_head].T)
            torch.testing.assert_close(heads.W_Q[h], attn.q_proj.weight[h * d_head:(h + 1) * d_head].T)
        assert not torch.allclose(heads.W_V[0], heads.W_V[2])
        folded = layer_heads(model, 1)
        torch.testing.assert_close(folded.W_V[0], folded.W_V[1])  # the OV circuits of heads 0 and 1 share W_V


class TestComposition:
    def test_factored_norm_equals_dense(self):
        """||a1 a2 b1 b2||_F through d_head-sized products equals the dense norm."""
        g = torch.Generator().manual_seed(2)
        a1, b1 = torch.randn(3, 20, 4, generator=g), torch.randn(20, 5, generator=g)
        a2, b2 = torch.randn(3, 4, 20, generator=g), torch.randn(5, 20, generator=g)
        dense = torch.linalg.matrix_norm((a1 @ a2 @ b1 @ b2).double())
        torch.testing.assert_close(factored_frobenius(a1, a2, b1, b2), dense, rtol=1e-5, atol=1e-8)

    def test_known_matrices(self):
        """Aligned rank-1 maps compose with score 1; a reader orthogonal to the writer's output scores 0."""
        e = torch.eye(6, dtype=torch.float64)
        u, w = e[:, :1], e[:, 1:2]
        assert float(composition_score((u, u.T), (u, u.T))) == pytest.approx(1.0)
        assert float(composition_score((u, u.T), (w, u.T))) == pytest.approx(0.0)
        half = (u + w) / math.sqrt(2)  # reader at 45 degrees to the writer: cos = 1/sqrt(2)
        assert float(composition_score((u, u.T), (half, half.T))) == pytest.approx(1 / math.sqrt(2))

    def test_model_scores_equal_dense_formula(self, tiny_model):
        """composition_scores equals ||W_OV^1 R||/(||W_OV^1|| ||R||) with dense W_QK, W_QK^T, W_OV of the later head."""
        model, head = tiny_model, 2
        result = composition_scores(model, 1, head, n_random=16)
        early, late = layer_heads(model, 0), layer_heads(model, 1)
        W_QK = (late.W_Q[head] @ late.W_K[head].T).double()
        rights = {"q": W_QK, "k": W_QK.T, "v": (late.W_V[head] @ late.W_O[head]).double()}
        for h in range(model.info.n_heads):
            left = (early.W_V[h] @ early.W_O[h]).double()
            for kind, right in rights.items():
                expected = torch.linalg.matrix_norm(left @ right) / (torch.linalg.matrix_norm(left) * torch.linalg.matrix_norm(right))
                assert getattr(result, kind)[0, h] == pytest.approx(float(expected), rel=1e-4)
        assert result.labels[0, 1] == "L0H1"
        assert len(result.top_pairs(5)) == 5

    def test_layer_zero_has_no_earlier_heads(self, tiny_gpt2):
        result = composition_scores(tiny_gpt2, 0, 0, n_random=4)
        assert result.q.shape == (0, 4) and result.top_pairs() == []

    def test_random_baseline_is_seeded_and_sensible(self):
        """Same seed, same baseline; random rank-4 maps of width 64 compose weakly but not zero, with a spread."""
        a = random_baseline(64, 4, n_samples=32, seed=3)
        assert a == random_baseline(64, 4, n_samples=32, seed=3)
        assert 0.02 < a.mean < 0.5
        assert 0 < a.std < a.mean  # the draws differ, but not wildly
        assert random_baseline(64, 32, n_samples=32, seed=3).mean > a.mean  # wider heads overlap more by chance


class TestCLI:
    def test_copying_only(self, tiny_model_dirs, capsys):
        assert main(["circuits", "--model", str(tiny_model_dirs["llama"]), "--device", "cpu", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert np.array(out["copying_score"]).shape == (2, 4)
        assert "eigenvalues" not in out

    def test_one_head(self, tiny_model_dirs, tiny_llama, capsys):
        """--layer/--head add eigenvalues (real, imag) and q/k/v composition equal to the engine's."""
        argv = ["circuits", "--model", str(tiny_model_dirs["llama"]), "--device", "cpu", "--layer", "1", "--head", "2", "--json"]
        assert main(argv) == 0
        out = json.loads(capsys.readouterr().out)
        engine = ov_circuit(tiny_llama, 1, 2)
        np.testing.assert_allclose(out["eigenvalues"]["real"], engine.full_eigenvalues.real, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(out["eigenvalues"]["imag"], engine.full_eigenvalues.imag, rtol=1e-4, atol=1e-6)
        assert out["copying_score"][1][2] == pytest.approx(engine.full_copying, abs=1e-5)
        for kind in ("q", "k", "v"):
            assert np.array(out["composition"][kind]).shape == (1, 4)

    def test_bad_head(self, tiny_model_dirs, capsys):
        argv = ["circuits", "--model", str(tiny_model_dirs["gpt2"]), "--device", "cpu", "--layer", "0", "--head", "9", "--json"]
        assert main(argv) == 2
        assert "head must be between 0 and 3" in json.loads(capsys.readouterr().out)["error"]
        assert main(["circuits", "--model", str(tiny_model_dirs["gpt2"]), "--layer", "0", "--json"]) == 2
        assert "both --layer and --head" in json.loads(capsys.readouterr().out)["error"]


class TestPage:
    @pytest.fixture()
    def app(self, tiny_model_dirs) -> AppTest:
        at = open_page(PAGE, tiny_model_dirs["gpt2"], run_home_first=True)
        at.run()
        assert at.session_state["model"] == str(tiny_model_dirs["gpt2"])  # the tiny model, not the default
        return at

    def test_renders(self, app):
        """The page shows its charts (copying grid, eigenvalues, QK, composition) without errors."""
        assert not app.exception
        assert [e.value for e in app.error] == []
        assert len(app.get("vega_lite_chart")) + len(app.get("arrow_vega_lite_chart")) >= 5

    def test_multi_token_word_shows_error(self, app):
        app.radio(key="circ_src").set_value("my list").run()
        app.text_input(key="circ_tokens").set_value("qzxqzxqzx").run()
        assert not app.exception
        assert any("not one" in e.value for e in app.error)

    def test_head_out_of_range_shows_error(self, app):
        app.number_input(key="circ_head").set_value(7).run()
        assert not app.exception
        assert any("head must be between 0 and 3" in e.value for e in app.error)
        assert any(s.value == "Copying score of every head" for s in app.subheader)  # the rest of the page still renders


@pytest.mark.slow
def test_default_model_previous_token_head_k_composes_into_induction_head(default_model):
    """On SmolLM2-135M, previous-token head L16H0 K-composes into induction head L18H6 well above baseline."""
    result = composition_scores(default_model, 18, 6)
    assert result.k[16, 0] > 2.5 * result.baseline["k"]  # measured 0.161 vs baseline 0.042
    assert result.k[16, 0] > result.q[16, 0]
    grid = copying_scores(default_model)
    assert grid.full.shape == (30, 9)
    assert grid.full.max() > 0.99  # several late heads are near-perfect copiers (measured 0.999)


class TestRequests:
    def test_requests_give_the_functions_results_and_tables(self, tiny_gpt2):
        """Each request runs its function; its tables hold the result's numbers, one row per head or cell."""
        from interp_core.techniques.circuits import CopyingRequest, OVRequest, PositionalQKRequest, QKRequest
        from interp_core.techniques.composition import CompositionRequest
        from interp_core.techniques.contract import run

        grid = run(tiny_gpt2, CopyingRequest())
        np.testing.assert_array_equal(grid.tables()["copying_full"]["copying"], grid.full.ravel())
        ov = run(tiny_gpt2, OVRequest(1, 2, (3, 5), 4))
        assert list(ov.tables()["ov_top_tokens"]["rank of itself"]) == list(ov.self_rank)
        np.testing.assert_array_equal(ov.tables()["ov_eigenvalues_full"]["real"], ov.full_eigenvalues.real)
        qk = run(tiny_gpt2, QKRequest(1, 2, (3, 5), (7,)))
        assert list(qk.tables()["qk_tokens"]["score"]) == list(qk.scores.ravel())
        pos = run(tiny_gpt2, PositionalQKRequest(1, 2, 8)).tables()["qk_positions"]
        assert len(pos) == 8 * 9 // 2  # keys up to the query only
        comp = run(tiny_gpt2, CompositionRequest(1, 2))
        assert comp.baseline_std > 0 and len(comp.tables()["composition_top_pairs"]) == 12
        with pytest.raises(OutOfRangeError, match="top_k"):
            OVRequest(1, 2, (), 0)
        with pytest.raises(OutOfRangeError, match="head"):
            run(tiny_gpt2, CompositionRequest(1, 9))
