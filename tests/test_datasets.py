"""Evidence over a dataset of prompt pairs: the generators give valid pairs, CSV validation names what is
wrong, every pair's batched numbers equal its single-pair run, the means are the means of the single runs,
and the CLI's ``--dataset`` JSON carries the issue's keys."""

from __future__ import annotations

import json

import numpy as np
import pytest

from interp_core.cli import main as cli_main
from interp_core.core.errors import NotSingleTokenError, WorkbenchError
from interp_core.techniques.attribution import attribution_patching
from interp_core.techniques.contract import run
from interp_core.techniques.dataset_dla import batched_dla
from interp_core.techniques.dataset_patching import dataset_patching
from interp_core.techniques.dataset_requests import DatasetDlaRequest, DatasetPatchRequest
from interp_core.techniques.datasets import (
    COLUMNS,
    IOI_TEMPLATES,
    MAX_PAIRS,
    PairDataset,
    PromptPair,
    factual,
    ioi,
    parse_csv,
    prepare_dataset,
)
from interp_core.techniques.dla import direct_logit_attribution
from interp_core.techniques.patch_pair import TARGETS
from interp_core.techniques.patching import exact_patching

A = "When Mary and John went to the store, John gave a ball to"
B = "When Mary and John went to the store, Mary gave a ball to"


def _csv(rows: list[tuple[str, ...]], header: tuple[str, ...] = COLUMNS) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


# --- generators ---------------------------------------------------------------------------------
class TestGenerators:
    @pytest.mark.parametrize("template", range(len(IOI_TEMPLATES)))
    def test_ioi_pairs_are_valid_and_share_one_length(self, tiny_model, template):
        """Every pair validates (same token counts, single-token answers that differ), all share one length,
        and the corrupted prompt differs from the clean one in exactly the second subject."""
        data = ioi(tiny_model, 12, seed=3, template=template)
        pairs = prepare_dataset(tiny_model, data)
        assert len(pairs) == 12 and len({p.n_pos for p in pairs}) == 1
        for pair, raw in zip(pairs, data.pairs):
            differ = (pair.clean_tokens != pair.corrupt_tokens)[0].nonzero().flatten().tolist()
            assert len(differ) == 1 and pair.corrupt_token_strs[differ[0]] == raw.answer  # B -> A
            assert pair.tokens[differ[0]] == raw.wrong
            assert raw.answer in raw.clean and raw.wrong in raw.clean

    def test_factual_pairs_are_valid(self, tiny_model):
        data = factual(tiny_model, 6, seed=1)
        pairs = prepare_dataset(tiny_model, data)
        assert len({p.n_pos for p in pairs}) == 1
        assert all(p.answer != p.wrong and "capital of" in p.clean for p in data.pairs)

    def test_default_model_pools_are_large(self, default_model):
        """On the default model most of the pools survive the single-token filter, so 32 pairs vary."""
        data = ioi(default_model, 32, seed=0)
        prepare_dataset(default_model, data)
        assert len({p.answer for p in data.pairs}) >= 10
        assert len({p.clean for p in factual(default_model, 32, seed=0).pairs}) >= 10

    def test_seeded(self, tiny_model):
        assert ioi(tiny_model, 8, seed=5) == ioi(tiny_model, 8, seed=5)
        assert factual(tiny_model, 8, seed=5) == factual(tiny_model, 8, seed=5)

    @pytest.mark.parametrize("n", [1, MAX_PAIRS + 1])
    def test_count_out_of_range(self, tiny_gpt2, n):
        with pytest.raises(WorkbenchError, match="between"):
            ioi(tiny_gpt2, n)


# --- CSV validation -----------------------------------------------------------------------------
class TestCsv:
    def test_a_good_table(self, tiny_gpt2):
        data = parse_csv(_csv([(A, B, " Mary", " John"), (B, A, " John", " Mary")]))
        assert data == PairDataset("csv", (PromptPair(A, B, " Mary", " John"), PromptPair(B, A, " John", " Mary")))
        assert len(prepare_dataset(tiny_gpt2, data)) == 2

    def test_missing_column(self):
        with pytest.raises(WorkbenchError, match="lacks the column.*wrong"):
            parse_csv(_csv([(A, B, " Mary")], header=("clean", "corrupt", "answer")))

    def test_unequal_lengths_name_the_rows(self, tiny_gpt2):
        short = ("The cat sat on the mat", "The dog sat on the mat", " Mary", " John")
        data = parse_csv(_csv([(A, B, " Mary", " John")] * 3 + [short, short]))
        with pytest.raises(WorkbenchError, match=r"one token length.*3 rows have \d+ tokens.*row\(s\) 4, 5 have"):
            prepare_dataset(tiny_gpt2, data)

    def test_multi_token_answer_names_the_row(self, tiny_gpt2):
        data = parse_csv(_csv([(A, B, " Mary", " John"), (A, B, " Mary Mary", " John")]))
        with pytest.raises(NotSingleTokenError, match="Row 2.*2 tokens"):
            prepare_dataset(tiny_gpt2, data)

    def test_one_row(self):
        with pytest.raises(WorkbenchError, match="1 pair.*at least 2"):
            parse_csv(_csv([(A, B, " Mary", " John")]))

    def test_ten_thousand_rows(self):
        with pytest.raises(WorkbenchError, match="10,000 pairs; at most"):
            parse_csv(_csv([(A, B, " Mary", " John")] * 10_000))

    def test_empty_cell_and_garbage(self):
        with pytest.raises(WorkbenchError, match="Row.*2 have an empty cell"):
            parse_csv(_csv([(A, B, " Mary", " John"), (A, "", " Mary", " John")]))
        with pytest.raises(WorkbenchError, match="lacks the column"):
            parse_csv(b"\x00\x01 not a table")


# --- batched patching -----------------------------------------------------------------------------
class TestDatasetPatching:
    @pytest.mark.parametrize("target", TARGETS)
    def test_every_pair_equals_its_single_run(self, tiny_model, target):
        """All pairs as rows of one sweep (each reading its own pair's keys and values) give each pair's
        single-pair exact grid, metrics included, to 1e-4; the mean is the mean of the single runs."""
        data = ioi(tiny_model, 5, seed=2)
        pairs = prepare_dataset(tiny_model, data)
        result = dataset_patching(tiny_model, data, pairs, target)
        singles = [exact_patching(tiny_model, pair, target) for pair in pairs]
        np.testing.assert_allclose(result.per_pair_patched, np.stack([s.patched for s in singles]), atol=1e-4)
        np.testing.assert_allclose(result.per_pair_clean_metric, [s.clean_metric for s in singles], atol=1e-4)
        np.testing.assert_allclose(result.per_pair_corrupt_metric, [s.corrupt_metric for s in singles], atol=1e-4)
        np.testing.assert_allclose(result.patched, np.mean([s.patched for s in singles], axis=0), atol=1e-4)
        clean, corrupt = np.mean([s.clean_metric for s in singles]), np.mean([s.corrupt_metric for s in singles])
        np.testing.assert_allclose(result.grid, (result.patched - corrupt) / (clean - corrupt), atol=1e-6)
        np.testing.assert_allclose(result.grid_std, np.std([s.grid for s in singles], axis=0), atol=1e-4)
        assert np.ptp(result.grid) > 1e-3

    def test_groups_of_pairs_give_the_same_numbers(self, tiny_llama, monkeypatch):
        """Pairs split into several batched sweeps (memory bound) change nothing."""
        from interp_core.techniques import dataset_patching as module

        data = ioi(tiny_llama, 5, seed=4)
        pairs = prepare_dataset(tiny_llama, data)
        whole = dataset_patching(tiny_llama, data, pairs, "resid_pre")
        monkeypatch.setattr(module, "ROWS_PER_GROUP", 1)  # one pair per sweep
        np.testing.assert_allclose(dataset_patching(tiny_llama, data, pairs, "resid_pre").per_pair_patched,
                                   whole.per_pair_patched, atol=1e-5)

    def test_attribution_is_the_mean_of_single_pairs(self, tiny_gpt2):
        data = factual(tiny_gpt2, 4, seed=0)
        pairs = prepare_dataset(tiny_gpt2, data)
        result = run(tiny_gpt2, DatasetPatchRequest("factual", 4, target="attn_out", method="attribution"))
        singles = [attribution_patching(tiny_gpt2, pair)["attn_out"] for pair in pairs]
        np.testing.assert_allclose(result.patched, np.mean([s.patched for s in singles], axis=0), atol=1e-5)
        assert result.method == "attribution"

    def test_disagreement_ranks_pairs_by_distance_from_the_mean(self, tiny_gpt2):
        """Four copies of one pair and one other: the copies disagree equally, the ranking is by RMS distance
        of each pair's own normalised grid from the mean grid, largest first."""
        text = _csv([("The cat sat on the mat", "The dog sat on the mat", " Mary", " John")]
                    + [("The cat sat on the log", "The dog sat on the log", " Mary", " John")] * 4)
        result = run(tiny_gpt2, DatasetPatchRequest("csv", csv=text, target="resid_pre"))
        expected = np.sqrt(((result.per_pair_grid - result.grid[None]) ** 2).reshape(5, -1).mean(1))
        np.testing.assert_allclose(result.disagreement, expected, atol=1e-9)
        assert np.ptp(result.disagreement[1:]) < 1e-9 and abs(result.disagreement[0] - result.disagreement[1]) > 1e-4
        ranked = result.ranked()
        assert list(result.disagreement[ranked]) == sorted(result.disagreement, reverse=True)
        tables = result.tables()
        assert len(tables["patch_dataset_pairs"]) == 5 and "recovery_std" in tables["patch_dataset_resid_pre"]

    def test_requests_validate(self, tiny_gpt2):
        with pytest.raises(WorkbenchError, match="dataset is one of"):
            DatasetPatchRequest("nope")
        with pytest.raises(WorkbenchError, match="target"):
            DatasetPatchRequest("ioi", target="nope")
        with pytest.raises(WorkbenchError, match="CSV dataset is empty"):
            DatasetDlaRequest("csv")
        assert DatasetPatchRequest("ioi").heavy and not DatasetPatchRequest("ioi", method="attribution").heavy
        assert hash(DatasetPatchRequest("ioi", 8)) == hash(DatasetPatchRequest("ioi", 8))


# --- DLA ----------------------------------------------------------------------------------------
class TestDatasetDla:
    def test_padded_batch_equals_single_runs(self, tiny_model):
        """Prompts of different lengths in one right-padded batch (attention mask; positions 0..len-1):
        each equals its single run to 1e-4, and each closes (total = the model's own logit difference)."""
        prompts = ["The cat sat on the mat", A, "The capital of France is"]
        answers, wrongs = [" dog", " Mary", " Paris"], [" log", " John", " Rome"]
        batched = batched_dla(tiny_model, prompts, answers, wrongs)
        for result, prompt, answer, wrong in zip(batched, prompts, answers, wrongs):
            single = direct_logit_attribution(tiny_model, prompt, answer, wrong)
            np.testing.assert_allclose(result.values, single.values, atol=1e-4)
            np.testing.assert_allclose(result.heads, single.heads, atol=1e-4)
            assert result.model_logit_diff == pytest.approx(single.model_logit_diff, abs=1e-4)
            assert abs(result.gap) < 1e-4

    def test_mean_is_the_mean_of_single_runs(self, tiny_gpt2):
        result = run(tiny_gpt2, DatasetDlaRequest("ioi", 4, seed=1))
        data = ioi(tiny_gpt2, 4, seed=1)
        singles = [direct_logit_attribution(tiny_gpt2, p.clean, p.answer, p.wrong) for p in data.pairs]
        np.testing.assert_allclose(result.values, np.mean([s.values for s in singles], axis=0), atol=1e-4)
        np.testing.assert_allclose(result.heads_std, np.std([s.heads for s in singles], axis=0), atol=1e-4)
        assert sorted(result.ranked()) == [0, 1, 2, 3]


# --- CLI ----------------------------------------------------------------------------------------
PATCH_KEYS = {"pairs", "clean_metric", "corrupt_metric", "patched", "grid", "grid_std", "per_pair_clean_metric",
              "per_pair_corrupt_metric", "tokens", "axes", "labels", "target", "method"}


class TestCli:
    def test_patch_dataset_json(self, tiny_model_dirs, tiny_gpt2, capsys):
        code = cli_main(["patch", "--model", str(tiny_model_dirs["gpt2"]), "--dataset", "ioi", "--n", "3", "--seed", "1",
                         "--target", "resid_pre", "--json"])
        assert code == 0
        out = json.loads(capsys.readouterr().out)
        assert PATCH_KEYS <= set(out)
        data = ioi(tiny_gpt2, 3, seed=1)
        assert out["pairs"] == data.to_json()
        singles = [exact_patching(tiny_gpt2, pair, "resid_pre") for pair in prepare_dataset(tiny_gpt2, data)]
        np.testing.assert_allclose(np.array(out["patched"]), np.mean([s.patched for s in singles], axis=0), atol=1e-4)
        assert out["per_pair_clean_metric"] == pytest.approx([s.clean_metric for s in singles], abs=1e-4)
        assert out["tokens"] == list(singles[0].tokens) and out["axes"] == ["layer", "pos"]

    def test_csv_file_and_dla(self, tiny_model_dirs, tmp_path, capsys):
        path = tmp_path / "pairs.csv"
        path.write_text(_csv([(A, B, " Mary", " John"), (B, A, " John", " Mary")]))
        code = cli_main(["patch", "--model", str(tiny_model_dirs["llama"]), "--dataset", str(path), "--target", "head_out",
                         "--method", "attribution", "--json"])
        assert code == 0
        out = json.loads(capsys.readouterr().out)
        assert out["method"] == "attribution" and len(out["pairs"]) == 2 and np.array(out["grid_std"]).shape == (2, 4)
        code = cli_main(["dla", "--model", str(tiny_model_dirs["llama"]), "--dataset", str(path), "--json"])
        assert code == 0
        out = json.loads(capsys.readouterr().out)
        assert {"pairs", "layers", "layers_std", "heads", "heads_std", "per_pair_layers"} <= set(out)
        assert out["gap"] < 1e-4

    @pytest.mark.parametrize("argv, message", [
        (["patch", "--target", "resid_pre"], "patch needs --clean"),
        (["patch", "--dataset", "ioi", "--clean", "x", "--target", "resid_pre"], "drop --clean"),
        (["patch", "--dataset", "nope.csv", "--target", "resid_pre"], "no such file"),
        (["dla"], "dla needs --prompt"),
        (["dla", "--dataset", "ioi", "--answer", " Mary"], "drop --answer"),
    ])
    def test_usage_errors(self, tiny_model_dirs, capsys, argv, message):
        code = cli_main([*argv, "--model", str(tiny_model_dirs["gpt2"]), "--json"])
        assert code == 2
        assert message in json.loads(capsys.readouterr().out)["error"]


# --- pages --------------------------------------------------------------------------------------
APP_TIMEOUT = 300


def _charts(at) -> list:
    return list(at.get("vega_lite_chart")) + list(at.get("arrow_vega_lite_chart"))


class TestPages:
    def test_patching_dataset_mode_and_open_a_pair(self, tiny_model_dirs, tiny_gpt2):
        """Dataset mode shows the request's mean metrics, the mean and std grids and the ranked pairs; "Open"
        puts the most disagreeing pair into the one-pair inputs."""
        from page_harness import open_page

        at = open_page("pages/06_activation_patching.py", tiny_model_dirs["gpt2"], timeout=APP_TIMEOUT,
                       patch_mode="Dataset", patch_ds_n=3).run()
        assert not at.exception and [e.value for e in at.error] == []
        result = run(tiny_gpt2, DatasetPatchRequest("ioi", 3))
        shown = {m.label: m.value for m in at.metric}
        assert shown["Mean clean logit diff"] == f"{result.clean_metric:.3f}"
        assert len(_charts(at)) >= 2
        at.button(key=f"patch_ds_open_{result.ranked()[0]}").click().run()
        assert not at.exception
        first = result.dataset.pairs[result.ranked()[0]]
        assert at.session_state["patch_mode"] == "One pair"
        assert at.text_input(key="patch_clean").value == first.clean
        assert at.text_input(key="patch_wrong").value == first.wrong

    def test_dla_dataset_mode_and_a_bad_csv(self, tiny_model_dirs, tiny_gpt2):
        from page_harness import open_page

        at = open_page("pages/07_direct_logit_attribution.py", tiny_model_dirs["gpt2"], timeout=APP_TIMEOUT,
                       dla_mode="Dataset", dla_ds="factual", dla_ds_n=4).run()
        assert not at.exception and [e.value for e in at.error] == []
        result = run(tiny_gpt2, DatasetDlaRequest("factual", 4))
        shown = {m.label: m.value for m in at.metric}
        assert shown["Mean logit difference (answer − wrong)"] == f"{float(result.per_pair_model_logit_diff.mean()):.3f}"
        assert len(_charts(at)) >= 3
        at.button(key=f"dla_ds_open_{result.ranked()[0]}").click().run()
        assert not at.exception
        assert at.session_state["prompt"] == result.dataset.pairs[result.ranked()[0]].clean
