"""Probing: datasets and validation, grouped folds, control task, planted-direction and
shuffled-label correctness, CLI contract, and the page under AppTest."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from page_harness import open_page
from streamlit.testing.v1 import AppTest

from interp_core import WorkbenchError
from interp_core.cli import main
from interp_core.cli.support import to_jsonable
from interp_core.techniques.contract import run
from interp_core.techniques.probe_data import BUNDLED, DATA_DIR, is_number_word, join_words, load_dataset, parse_csv
from interp_core.techniques.probing import (
    ProbeDataRequest,
    ProbeFeatures,
    ProbeRequest,
    control_labels,
    encode_dataset,
    extract_features,
    fit_probes,
    fold_splits,
    layer_rows,
    selectivity_note,
)

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _synthetic_csv(n_sentences: int, n_words: int, seed: int, vocabulary: list[str]) -> tuple[str, np.ndarray]:
    """Token-level CSV of random words with random per-occurrence binary labels (not a function of the word)."""
    rng = np.random.default_rng(seed)
    rows, labels = ["text,labels"], []
    for _ in range(n_sentences):
        words = rng.choice(vocabulary, size=n_words)
        tags = rng.integers(0, 2, size=n_words)
        labels.append(tags)
        rows.append(f"{' '.join(words)},{' '.join('ab'[t] for t in tags)}")
    return "\n".join(rows), np.concatenate(labels)


def _planting_hooks(model, dataset, direction: torch.Tensor, strength: float) -> list:
    """A hook on blocks.0.hook_resid_post that adds +-strength*direction at each labelled word (batch size 1)."""
    _, positions = encode_dataset(model, dataset)
    sentence = {"i": 0}
    per_sentence, start = [], 0
    for pos in positions:
        labels = dataset.item_labels[start:start + len(pos)]
        per_sentence.append([(p, 1.0 if lab == "b" else -1.0) for p, lab in zip(pos, labels)])
        start += len(pos)

    def plant(resid: torch.Tensor, name: str) -> torch.Tensor:
        resid = resid.clone()
        for p, sign in per_sentence[sentence["i"]]:
            resid[0, p] += sign * strength * direction
        sentence["i"] += 1
        return resid

    return [("blocks.0.hook_resid_post", plant)]


class TestDatasets:
    def test_bundled_sets_load_with_enough_sentences(self):
        """Every bundled set loads; pos has hundreds of sentences and a label per word."""
        sizes = {name: load_dataset(name) for name in BUNDLED}
        assert sizes["pos"].level == "token" and sizes["pos"].n_sentences >= 300
        assert sizes["facts"].level == "sentence" and sizes["facts"].n_sentences >= 200
        assert set(sizes["pos"].classes) >= {"NOUN", "VERB", "ADJ", "DET", "ADP", "PRON", "ADV"}
        assert set(sizes["number"].classes) == {"number", "other"}
        for ds in sizes.values():
            assert (DATA_DIR / BUNDLED[ds.name]["file"]).is_file()

    def test_pos_spans_cover_the_words(self):
        """Each span of a pos sentence cuts out exactly its word from the joined text."""
        ds = load_dataset("pos")
        k = 0
        for text, spans in zip(ds.texts, ds.spans):
            for start, end in spans:
                assert text[start:end] == ds.item_words[k]
                k += 1
        assert k == len(ds.item_labels)

    def test_number_rule(self):
        assert is_number_word("1987") and is_number_word("3.5") and is_number_word("Twelve")
        assert not is_number_word("dog") and not is_number_word("3rd")
        ds = load_dataset("number")
        for word, label in zip(ds.item_words, ds.item_labels):
            assert (label == "number") == is_number_word(word)

    def test_join_attaches_punctuation(self):
        text, spans = join_words(["The", "cat", "sat", ".", "Yes", "!"])
        assert text == "The cat sat. Yes!"
        assert [text[a:b] for a, b in spans] == ["The", "cat", "sat", ".", "Yes", "!"]


class TestValidation:
    def test_bad_columns(self):
        with pytest.raises(WorkbenchError, match="expected columns"):
            parse_csv("sentence,tag\n" + "a,b\n" * 20)

    def test_label_count_mismatch_names_the_row(self):
        rows = "\n".join(["text,labels"] + ["the cat,DET NOUN"] * 12 + ["the dog sat,DET NOUN"])
        with pytest.raises(WorkbenchError, match="row 14 has 3 words but 2 labels"):
            parse_csv(rows)

    def test_too_few_rows_and_single_class(self):
        with pytest.raises(WorkbenchError, match="at least 10"):
            parse_csv("text,label\nhello,a\nworld,b\n")
        with pytest.raises(WorkbenchError, match="at least two different labels"):
            parse_csv("text,label\n" + "hello,a\n" * 12)

    def test_empty_text_and_not_utf8(self):
        with pytest.raises(WorkbenchError, match="row 3 has an empty text"):
            parse_csv("text,label\nhello,a\n,b\n" + "x,a\ny,b\n" * 6)
        with pytest.raises(WorkbenchError, match="UTF-8"):
            parse_csv(b"text,label\n\xff\xfe,a\n")

    def test_unknown_name(self):
        with pytest.raises(WorkbenchError, match="No dataset named 'nope'"):
            load_dataset("nope")


class TestFoldsAndControl:
    def test_train_and_test_never_share_a_sentence(self):
        """Every fold's train and test sentences are disjoint, and the test sets cover all sentences once."""
        groups = load_dataset("pos").item_sentence
        seen = []
        for train, test in fold_splits(groups, 5, seed=3):
            assert not set(groups[train]) & set(groups[test])
            seen += sorted(set(groups[test]))
        assert sorted(seen) == sorted(set(groups))

    def test_control_labels_fixed_per_type_with_same_distribution(self):
        """Control labels are a function of the word type, drawn from the real label distribution."""
        ds = load_dataset("pos")
        y = np.array([ds.classes.index(lab) for lab in ds.item_labels])
        control = control_labels(ds.item_types, y, seed=0)
        by_type: dict[str, set] = {}
        for t, c in zip(ds.item_types, control):
            by_type.setdefault(t, set()).add(int(c))
        assert all(len(v) == 1 for v in by_type.values())
        assert not np.array_equal(control, y)
        # types, not items, are drawn: the most common real class is still the most common type label
        type_labels = np.array([next(iter(v)) for v in by_type.values()])
        assert np.bincount(type_labels, minlength=len(ds.classes)).argmax() == np.bincount(y).argmax()

    def test_bad_fold_count(self):
        with pytest.raises(WorkbenchError, match="number of folds"):
            fold_splits(np.arange(5), 8)


@pytest.fixture(scope="module")
def planted(tiny_gpt2):
    """Random two-letter words with random labels, planted as a direction after block 0 of a tiny model."""
    vocabulary = [a + b for a in LETTERS for b in LETTERS]
    content, _ = _synthetic_csv(80, 8, seed=0, vocabulary=vocabulary)
    ds = parse_csv(content, "planted.csv")
    torch.manual_seed(0)
    direction = torch.randn(tiny_gpt2.info.d_model)
    direction /= direction.norm()
    hooks = _planting_hooks(tiny_gpt2, ds, direction, strength=10.0)
    return extract_features(tiny_gpt2, ds, batch_size=1, hooks=hooks)


class TestCorrectness:
    def test_planted_direction_is_found_after_block_0_only(self, planted):
        """Accuracy ~1 where the label is planted (layers 1, 2), chance at the embeddings; control stays low."""
        result = fit_probes(planted, n_folds=4)
        assert list(result.layers) == [0, 1, 2]
        assert result.accuracy[0] == pytest.approx(0.5, abs=0.1)
        assert np.all(result.accuracy[1:] > 0.95)
        assert np.all(result.control_accuracy < 0.8)
        assert np.all(result.selectivity[1:] > 0.2)
        assert selectivity_note(result) is None

    def test_shuffled_labels_fall_to_chance(self, planted):
        """The same states with labels permuted across items: accuracy ~0.5 at every layer."""
        shuffled = np.random.default_rng(1).permutation(planted.labels)
        result = fit_probes(planted, n_folds=4, labels=shuffled)
        assert np.all(np.abs(result.accuracy - 0.5) < 0.1)

    def test_word_identity_label_has_low_selectivity(self, tiny_gpt2):
        """When the label is the word itself, the control task is learned as well: selectivity ~0 and a note."""
        words = ["cat", "dog", "Mary", "John", "store", "Paris"]
        rng = np.random.default_rng(0)
        rows = ["text,labels"]
        for _ in range(40):
            chosen = rng.choice(words, size=6)
            rows.append(f"{' '.join(chosen)},{' '.join(str(words.index(w) % 2) for w in chosen)}")
        features = extract_features(tiny_gpt2, parse_csv("\n".join(rows)))
        result = fit_probes(features, n_folds=4, layers=[0])  # the embeddings: the word and nothing else
        assert result.accuracy[0] > 0.95
        assert result.control_accuracy[0] > 0.9  # control labels are also a function of the word
        assert abs(result.selectivity[0]) < 0.1
        assert selectivity_note(result) is not None

    def test_features_are_the_models_hidden_states(self, tiny_model):
        """Extracted states equal run_with_cache on the sentence alone (padding changes nothing)."""
        ds = load_dataset("pos")
        rows = ["text,labels"]
        for i in range(12):
            words = [w for w, g in zip(ds.item_words, ds.item_sentence) if g == i]
            rows.append(f"{' '.join(words)},{' '.join(['X'] * (len(words) - 1) + ['Y'])}")
        sub = parse_csv("\n".join(rows))
        features = extract_features(tiny_model, sub, batch_size=5)
        ids, positions = encode_dataset(tiny_model, sub)
        _, cache = tiny_model.run_with_cache(torch.tensor([ids[7]]), ["blocks.1.hook_resid_post", "blocks.0.hook_resid_pre"])
        first = sum(len(p) for p in positions[:7])
        expected = cache["blocks.1.hook_resid_post"][0, positions[7]].numpy()
        # float16 storage: relative error ~1e-3
        np.testing.assert_allclose(features.states[2, first:first + len(positions[7])].astype(np.float32), expected, rtol=2e-2, atol=2e-2)
        np.testing.assert_allclose(features.states[0, first].astype(np.float32), cache["blocks.0.hook_resid_pre"][0, positions[7][0]].numpy(),
                                   rtol=2e-2, atol=2e-2)

    def test_confusion_matches_accuracy(self, planted):
        result = fit_probes(planted, n_folds=3, probe="mlp", layers=[1])
        trace = np.trace(result.confusion[0]) / result.confusion[0].sum()
        assert result.confusion[0].sum() == len(planted.labels)
        # fold sizes differ, so the pooled accuracy only approximates the mean over folds
        assert trace == pytest.approx(result.accuracy[0], abs=0.02)
        assert result.per_class_accuracy(0).shape == (2,)


def _without_seconds(result) -> dict:
    return {k: v for k, v in to_jsonable(result.to_json()).items() if k != "seconds"}


@pytest.fixture(scope="module")
def facts_request(tiny_gpt2):
    """The facts set (sentence level) probed on a tiny model: the request and its result."""
    request = ProbeRequest("facts", folds=3, pool="mean")
    return request, run(tiny_gpt2, request)


class TestRequests:
    def test_request_equals_the_direct_calls(self, tiny_gpt2, facts_request):
        """run(ProbeRequest) gives extract_features + fit_probes' numbers, with the dataset's name and level."""
        request, result = facts_request
        direct = fit_probes(extract_features(tiny_gpt2, load_dataset("facts"), pool="mean"), n_folds=3)
        assert _without_seconds(result) == {**_without_seconds(direct), "dataset": "facts", "level": "sentence"}
        assert list(result.to_json())[:3] == ["dataset", "level", "probe"]

    def test_features_are_reused_only_for_their_own_model_and_inputs(self, tiny_gpt2, facts_request):
        """Features keyed to this model and request are used as given; any others are ignored and extracted anew."""
        request, result = facts_request
        features = run(tiny_gpt2, request.features_request())
        assert features.key == (tiny_gpt2.fingerprint, request.features_request())
        blank = dataclasses.replace(features, states=np.zeros_like(features.states))  # would change every accuracy if used
        used = run(tiny_gpt2, dataclasses.replace(request, features=blank))
        assert not np.array_equal(used.fold_accuracy, result.fold_accuracy)
        for key in ((), ("another model", request.features_request()), (tiny_gpt2.fingerprint, ProbeRequest("facts").features_request())):
            ignored = run(tiny_gpt2, dataclasses.replace(request, features=dataclasses.replace(blank, key=key)))
            np.testing.assert_array_equal(ignored.fold_accuracy, result.fold_accuracy)
        assert dataclasses.replace(request, features=blank) == request  # not part of the cache key

    def test_tables_hold_the_json_numbers(self, facts_request):
        """The accuracy curve is the JSON's; each layer's confusion shares sum to 1 per class; per-class recall matches."""
        _, result = facts_request
        tables, out = result.tables(), to_jsonable(result.to_json())
        curve = tables["probe_accuracy"]
        for series, key in (("probe", "accuracy"), ("control task", "control_accuracy"), ("selectivity", "selectivity")):
            assert list(curve[curve["series"] == series]["value"]) == out[key]
        confusion = tables["probe_confusion"]
        sums = confusion.groupby(["layer", "true"])["share"].sum()
        np.testing.assert_allclose(sums, 1.0)
        assert (confusion.groupby("layer")["count"].sum() == out["n_items"]).all()
        per_class = tables["probe_per_class"]
        np.testing.assert_array_equal(per_class[per_class["layer"] == 1]["accuracy"], result.per_class_accuracy(1))

    def test_requests_are_validated(self, tiny_gpt2):
        """Bad values fail on creation; a fold count above the sentences in check(); a bad dataset names the problem."""
        for bad in ({"probe": "svm"}, {"pool": "max"}, {"seed": -1}, {"layer_step": 0}, {"folds": 2.5}):
            with pytest.raises(WorkbenchError):
                ProbeRequest("facts", **bad)
        with pytest.raises(WorkbenchError, match="between 2 and the number of sentences"):
            run(tiny_gpt2, ProbeRequest("facts", folds=1000))
        with pytest.raises(WorkbenchError, match="No dataset named"):
            run(tiny_gpt2, ProbeDataRequest("nope"))
        with pytest.raises(WorkbenchError, match="row 3 has no label"):
            run(tiny_gpt2, ProbeDataRequest("mine.csv", b"text,label\na,x\nb,\n" + b"c,y\n" * 10))
        assert layer_rows(12, 5) == [0, 5, 10, 12] and layer_rows(2, 1) == [0, 1, 2]


def test_features_dataclass_checks_shapes():
    with pytest.raises(AssertionError):
        ProbeFeatures(np.arange(2), ("a", "b"), np.zeros((2, 3, 4)), np.zeros(2), ("x",), np.zeros(2), ("t", "u"), ("a", "b"), 0.0)


class TestCli:
    def test_probe_json_contract(self, tiny_model_dirs, capsys):
        """`probe --dataset pos --json` prints one value per layer for every contract key."""
        code = main(["probe", "--model", str(tiny_model_dirs["gpt2"]), "--dataset", "pos", "--probe", "linear", "--folds", "3", "--json"])
        out = json.loads(capsys.readouterr().out)
        assert code == 0
        assert out["layers"] == [0, 1, 2]
        for key in ("accuracy", "accuracy_std", "control_accuracy", "selectivity"):
            assert len(out[key]) == 3
        assert out["selectivity"] == pytest.approx(np.subtract(out["accuracy"], out["control_accuracy"]).tolist(), abs=1e-9)
        assert all(a > out["majority_baseline"] for a in out["accuracy"])  # even a random model's states beat the majority class

    def test_probe_csv_path_and_bad_dataset(self, tiny_model_dirs, tmp_path, capsys):
        path = tmp_path / "mine.csv"
        path.write_text("text,label\n" + "".join(f"sentence number {i},{'ab'[i % 2]}\n" for i in range(20)))
        assert main(["probe", "--model", str(tiny_model_dirs["llama"]), "--dataset", str(path), "--folds", "2", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["level"] == "sentence" and len(out["accuracy"]) == 3
        assert main(["probe", "--model", str(tiny_model_dirs["llama"]), "--dataset", "nope", "--json"]) == 2
        assert "No dataset named" in json.loads(capsys.readouterr().out)["error"]


def _agree(features, layers, n_folds, tolerance=0.02):
    """The batched torch probes and scikit-learn's, one by one, on the same folds: accuracy and control accuracy
    within ``tolerance`` at every layer."""
    batched = fit_probes(features, layers=layers, n_folds=n_folds)
    reference = fit_probes(features, layers=layers, n_folds=n_folds, solver="sklearn")
    np.testing.assert_allclose(batched.accuracy, reference.accuracy, atol=tolerance)
    np.testing.assert_allclose(batched.control_accuracy, reference.control_accuracy, atol=tolerance)
    assert batched.confusion.sum() == reference.confusion.sum() == len(features.labels) * len(layers)
    return batched, reference


@pytest.mark.parametrize("name", ["pos", "number"])
def test_batched_probes_are_sklearn_ridge_classifiers(tiny_gpt2, name):
    """Each batched probe predicts what scikit-learn's StandardScaler + RidgeClassifier(alpha) fitted on that
    layer and fold alone predicts (12 classes on POS, two on the number set), for the real and the control task."""
    from sklearn.linear_model import RidgeClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from interp_core.techniques.probe_fit import RIDGE_ALPHA, fit_linear_probes

    features = run(tiny_gpt2, ProbeRequest(name).features_request())
    y = features.labels
    control = control_labels(features.types, y, seed=1)
    splits = fold_splits(features.groups, 4)
    pred = fit_linear_probes(features.states, [y, control], len(features.classes), splits)
    for row in range(len(features.layers)):
        x = features.states[row].astype(np.float64)
        for train, test in splits:
            for task, labels in enumerate((y, control)):
                ridge = make_pipeline(StandardScaler(), RidgeClassifier(alpha=RIDGE_ALPHA)).fit(x[train], labels[train])
                agree = np.mean(ridge.predict(x[test]) == pred[task, row, test])
                assert agree > 0.995, (row, task, agree)  # float32 vs float64: only near-ties may differ


@pytest.mark.slow
def test_default_model_pos(default_model):
    """SmolLM2-135M: POS is decodable far above the majority class and above the control task mid-network, and the
    batched ridge probes agree with scikit-learn's logistic probes within 0.02 at every layer tested, for the real
    and the control task (states from the disk cache after the first run)."""
    features = run(default_model, ProbeRequest("pos").features_request())
    result, _ = _agree(features, [0, 8, 16, 30], 5)
    assert np.all(result.accuracy > 0.85)
    assert result.selectivity.max() > 0.05


class TestPage:
    @pytest.fixture()
    def app(self, tiny_model_dirs) -> AppTest:
        return open_page("pages/08_probing.py", tiny_model_dirs["gpt2"], timeout=180, run_home_first=True)

    def test_renders_accuracy_chart(self, app):
        app.run()
        assert not app.exception
        assert [e.value for e in app.error] == []
        assert len(app.get("vega_lite_chart")) + len(app.get("arrow_vega_lite_chart")) >= 2

    def test_a_preset_fills_the_inputs(self, app):
        """The facts preset picks the set and the mean read; the page probes it without an error."""
        app.run()
        app.button(key="probe_preset_2").click().run()
        assert not app.exception and [e.value for e in app.error] == []
        assert (app.selectbox(key="probe_set").value, app.radio(key="probe_pool").value) == ("facts", "mean")
        assert any("235 sentences" in m.value for m in app.markdown)

    def test_layer_slider_redraws_the_detail(self, app):
        """Moving the layer slider (a fragment) shows that layer's numbers."""
        app.run()
        app.select_slider(key="probe_layer").set_value(0).run()
        assert not app.exception
        assert any(m.value.startswith("Layer 0 (`blocks.0.hook_resid_pre`)") for m in app.markdown)

    def test_bad_upload_shows_error(self, app):
        """Choosing 'upload' without a file asks for one; a malformed pasted CSV shows an error box."""
        app.run()
        app.selectbox(key="probe_set").set_value("upload").run()
        assert not app.exception
        assert any("Upload a CSV" in i.value for i in app.info)
        app.text_area(key="probe_paste").set_value("text,labels\n" + "the cat,DET NOUN\n" * 11 + "the dog sat,DET NOUN\n").run()
        assert not app.exception
        assert any("row 13 has 3 words but 2 labels" in e.value for e in app.error)
