"""The Induction page and the Circuits page report the same K-composition for the same pair of heads.

Both read :mod:`interp_core.techniques.composition`; these tests pin that down on a tiny GPT-2 (LayerNorm,
where the pages used to differ: the Induction engine folded the norm weight but not LayerNorm's
centring) and a tiny llama (RMSNorm), and hold both to the GUIDE's definition (§3) built densely.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from page_harness import open_page

from interp_core.core.model import LoadedModel
from interp_core.techniques import induction
from interp_core.techniques.composition import CompositionRequest, composition_scores, random_baseline
from interp_core.techniques.contract import run

# The scores are ratios of norms computed in float32 (composition._scores_into); the dense
# reference is float64. A relative error of 1e-5 is ~100x float32's epsilon.
REL = 1e-5


def dense_k_composition(model: LoadedModel, early: int, early_head: int, late: int, late_head: int) -> float:
    """GUIDE §3, built densely in float64: ``||W_OV W_QK^T||_F / (||W_OV||_F ||W_QK||_F)`` with each
    block's norm folded in: readers ``P diag(w) W``, writers ``W P``, ``P = I - 11^T/d`` for LayerNorm
    (the centring the norm applies), ``P = I`` for RMSNorm."""
    d = model.info.d_model
    P = torch.eye(d, dtype=torch.float64)
    if model.info.norm == "layernorm":
        P = P - torch.full((d, d), 1.0 / d, dtype=torch.float64)
    e, L = model.weights.blocks[early], model.weights.blocks[late]

    def read(W: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return P @ torch.diag(w.double()) @ W.double()

    W_OV = read(e.W_V[early_head], e.ln1_w) @ (e.W_O[early_head].double() @ P)
    W_QK = read(L.W_Q[late_head], L.ln1_w) @ read(L.W_K[late_head], L.ln1_w).T
    return float(torch.linalg.norm(W_OV @ W_QK.T) / (torch.linalg.norm(W_OV) * torch.linalg.norm(W_QK)))


@pytest.fixture(params=["tiny_gpt2", "tiny_llama"])
def model(request: pytest.FixtureRequest) -> LoadedModel:
    return request.getfixturevalue(request.param)


class TestKCompositionAgreement:
    @pytest.mark.parametrize("late_head", [0, 3])
    def test_induction_engine_equals_circuits_engine(self, model, late_head):
        """induction.k_composition into (1, h) equals composition_scores(...).k for every earlier head."""
        kc = induction.k_composition(model, 1, late_head)
        circuits = composition_scores(model, 1, late_head)
        np.testing.assert_array_equal(kc.scores[:1], circuits.k)
        assert np.isnan(kc.scores[1:]).all()

    def test_pairs_equal_circuits_engine(self, model):
        """k_composition_pairs (the page's previous-token x induction matrix) reads the same numbers."""
        sources, targets = [(0, 0), (0, 2), (1, 1)], [(1, 0), (1, 3)]
        pairs = induction.k_composition_pairs(model, sources, targets)
        for j, (tl, th) in enumerate(targets):
            k = composition_scores(model, tl, th).k
            for i, (sl, sh) in enumerate(sources):
                if sl < tl:
                    assert pairs[i, j] == k[sl, sh]
                else:
                    assert np.isnan(pairs[i, j])

    @pytest.mark.parametrize("fold", [True, False])
    def test_both_equal_the_guide_definition(self, model, fold):
        """With folding: the dense GUIDE formula with norms folded; without: the raw-weight formula (w = 1, P = I)."""
        kc = induction.k_composition(model, 1, 2, fold_norm=fold)
        for h in range(model.info.n_heads):
            if fold:
                expected = dense_k_composition(model, 0, h, 1, 2)
            else:
                b0, b1 = model.weights.blocks
                W_OV = b0.W_V[h].double() @ b0.W_O[h].double()
                W_QK = b1.W_Q[2].double() @ b1.W_K[2].double().T
                expected = float(torch.linalg.norm(W_OV @ W_QK.T) / (torch.linalg.norm(W_OV) * torch.linalg.norm(W_QK)))
            assert kc.scores[0, h] == pytest.approx(expected, rel=REL)

    def test_one_random_baseline(self, model):
        """Both pages compare with the same random baseline; the Induction page also shows its spread."""
        kc = induction.k_composition(model, 1, 0)
        circuits = composition_scores(model, 1, 0)
        base = random_baseline(model.info.d_model, model.info.d_head)
        assert kc.baseline_mean == circuits.baseline["k"] == base.mean
        assert kc.baseline_std == base.std > 0


class TestPagesShareOneRequest:
    """Both pages run :class:`CompositionRequest` (the Induction page reads its K column), so they share one
    cache entry; these tests hold the pages themselves to that, on the tables they chart and offer as downloads."""

    def test_induction_tables_are_the_circuits_tables(self, model):
        """The Induction page's pair matrix (pair_matrix over the requests' K grids) equals the engine's own pairs."""
        sources, targets = [(0, 0), (0, 3), (1, 1)], [(1, 2), (1, 0)]
        results = {t: run(model, CompositionRequest(*t)) for t in targets}
        pairs = induction.pair_matrix({t: r.k for t, r in results.items()}, sources, targets)
        np.testing.assert_array_equal(pairs, induction.k_composition_pairs(model, sources, targets))
        table = results[(1, 2)].tables()["composition_k"]
        np.testing.assert_array_equal(table["score"], composition_scores(model, 1, 2).k.ravel())
        assert list(table["label"]) == [f"L0H{h}" for h in range(model.info.n_heads)]

    def test_the_two_pages_chart_the_same_numbers(self, request, model):
        """On the rendered pages: the Induction page's "every earlier head -> L1H2" data equals the Circuits
        page's K-composition data for L1H2 (scores and score over the baseline)."""
        family = "gpt2" if model.info.norm == "layernorm" else "llama"
        directory = request.getfixturevalue("tiny_model_dirs")[family]
        induction_page = open_page("pages/05_induction_heads.py", directory, ind_len=12, ind_head="L1H2").run()
        circuits_page = open_page("pages/09_circuits.py", directory, circ_layer=1, circ_head=2).run()
        for at in (induction_page, circuits_page):
            assert not at.exception and [e.value for e in at.error] == []
        ind = charted(induction_page, "k_composition_into_head")
        circ = charted(circuits_page, "composition_k")
        assert len(ind) == model.info.n_heads and ind["k_composition"].std() > 0  # not degenerate
        np.testing.assert_array_equal(ind["k_composition"], circ["score"])
        np.testing.assert_array_equal(ind["times_random"], circ["times_random"])  # the Circuits download keeps the engine's names
        expected = composition_scores(model, 1, 2).k.ravel()
        np.testing.assert_allclose(ind["k_composition"], expected, rtol=1e-6)


def charted(at, name: str):
    """The data a page charted under ``name`` (what its download buttons offer)."""
    found = [item["data"] for item in at.session_state["_report_items"] if item["name"] == name]
    assert len(found) == 1, f"{name} charted {len(found)} times"
    return found[0]
