"""Probing: what is linearly decodable from the hidden states at each layer?

Context. A probe is a small classifier trained on frozen activations: if a logistic
regression can read a word's part of speech off the residual stream after block 5, that
information is (linearly) present there. Intuition for the trap: a probe can also *learn*
the task itself, memorising word identities that every layer carries. Hewitt & Liang (2019)
measure this with a **control task**: each word type gets a fixed random label (drawn from the
real label distribution), and the same probe is trained on it. Control labels can only be
predicted by memorising types, so **selectivity = accuracy - control accuracy** says how much
of the accuracy comes from the representation rather than from the probe.

Method here: hidden states of every item are captured once per layer boundary ("layer 0" is
the embedding output ``blocks.0.hook_resid_pre``, layer ``L`` is ``blocks.{L-1}.hook_resid_post``);
a word is read at its last token. For every layer a standardised linear probe (a closed-form
ridge classifier, all layers, folds and tasks at once, :mod:`~interp_core.techniques.probe_fit`;
scikit-learn's logistic regression with ``solver="sklearn"``) or a one-hidden-layer MLP is
fitted with grouped K-fold cross-validation: the folds split
*sentences*, so train and test never share a sentence. The control task is fitted on the same
folds. For sentence-level tasks the type is the whole sentence, so the control is a fixed
random relabelling of sentences.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from interp_core.core.errors import OutOfRangeError, WorkbenchError
from interp_core.core.hooks import HookList
from interp_core.core.model import LoadedModel
from interp_core.core.names import hook_name
from interp_core.techniques import probe_cache
from interp_core.techniques.contract import Progress, Request
from interp_core.techniques.frames import grid_frame
from interp_core.techniques.probe_data import ProbeDataset, load_dataset, parse_csv

PROBES: tuple[str, ...] = ("linear", "mlp")
POOLS: tuple[str, ...] = ("last", "mean")
MAX_TOKENS = 128  # longest sentence probed; the model's context and $WORKBENCH_MAX_PROMPT_TOKENS may lower it
LOW_SELECTIVITY = 0.1


@dataclass(frozen=True)
class ProbeFeatures:
    """Hidden states of every item at every layer boundary.

    Attributes:
        layers: ``(n_layers + 1,)`` ints; 0 is the embedding output, ``L`` the residual after block ``L-1``.
        layer_names: the hook point of each layer, ``(n_layers + 1,)``.
        states: ``(n_layers + 1, n_items, d_model)`` float16 (halves the memory; probes standardise anyway).
        labels: ``(n_items,)`` int index into ``classes``.
        classes: class names, most frequent first.
        groups: ``(n_items,)`` sentence index of each item.
        types: ``(n_items,)`` the control task's type of each item.
        tokens: ``(n_items,)`` the token each item is read at (``pool='mean'``: the sentence's last token).
        seconds: wall time of the extraction.
        dataset, level: the dataset's name and level (``"token"`` or ``"sentence"``).
        key: ``(model fingerprint, ProbeFeaturesRequest)`` when made by that request: which model and
            inputs these states are of, so a :class:`ProbeRequest` reuses them only for the same ones.
        source: ``"model"`` (extracted now) or ``"disk cache"`` (read back; ``seconds`` is then the read time).
    """

    layers: np.ndarray
    layer_names: tuple[str, ...]
    states: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    groups: np.ndarray
    types: tuple[str, ...]
    tokens: tuple[str, ...]
    seconds: float
    dataset: str = ""
    level: str = ""
    key: tuple = ()
    source: str = "model"

    def __post_init__(self) -> None:
        n = len(self.labels)
        assert self.states.shape[:2] == (len(self.layers), n), self.states.shape
        assert len(self.groups) == len(self.types) == len(self.tokens) == n

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for the disk cache (:mod:`interp_core.techniques.probe_cache`); inverse: :meth:`from_arrays`."""
        return {"layers": self.layers, "layer_names": np.array(self.layer_names), "states": self.states, "labels": self.labels,
                "classes": np.array(self.classes), "groups": self.groups, "types": np.array(self.types),
                "tokens": np.array(self.tokens), "meta": np.array([self.dataset, self.level, repr(self.seconds)])}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray], seconds: float) -> ProbeFeatures:
        dataset, level, _ = (str(v) for v in a["meta"])
        text = lambda name: tuple(str(v) for v in a[name])
        return cls(layers=a["layers"], layer_names=text("layer_names"), states=a["states"], labels=a["labels"],
                   classes=text("classes"), groups=a["groups"], types=text("types"), tokens=text("tokens"),
                   seconds=seconds, dataset=dataset, level=level, source="disk cache")

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "level": self.level, "layer_names": list(self.layer_names), "n_items": len(self.labels),
                "classes": list(self.classes), "seconds": self.seconds}

    def tables(self) -> dict[str, pd.DataFrame]:
        """``probe_items``: each item's sentence, label and the token it is read at."""
        return {"probe_items": pd.DataFrame({"sentence": self.groups, "token read": [repr(t) for t in self.tokens],
                                             "label": [self.classes[i] for i in self.labels]})}


@dataclass(frozen=True)
class ProbeResult:
    """Cross-validated probe accuracy per layer, for the real task and the control task.

    Attributes:
        layers, layer_names: as in :class:`ProbeFeatures`, ``(n_layer_rows,)``.
        fold_accuracy, fold_control: ``(n_layer_rows, n_folds)`` test accuracy of each fold.
        accuracy, accuracy_std, control_accuracy, control_std, selectivity: ``(n_layer_rows,)``;
            mean and standard deviation over folds; selectivity = accuracy - control_accuracy.
        confusion: ``(n_layer_rows, n_classes, n_classes)`` counts [true, predicted], summed over test folds.
        classes: class names.
        majority: accuracy of always answering the most frequent class.
        test_groups: the sentences of each fold's test set.
    """

    layers: np.ndarray
    layer_names: tuple[str, ...]
    fold_accuracy: np.ndarray
    fold_control: np.ndarray
    confusion: np.ndarray
    classes: tuple[str, ...]
    majority: float
    probe: str
    n_items: int
    n_sentences: int
    test_groups: tuple[tuple[int, ...], ...]
    seconds: float
    dataset: str = ""
    level: str = ""

    @property
    def accuracy(self) -> np.ndarray:
        return self.fold_accuracy.mean(axis=1)

    @property
    def accuracy_std(self) -> np.ndarray:
        return self.fold_accuracy.std(axis=1)

    @property
    def control_accuracy(self) -> np.ndarray:
        return self.fold_control.mean(axis=1)

    @property
    def control_std(self) -> np.ndarray:
        return self.fold_control.std(axis=1)

    @property
    def selectivity(self) -> np.ndarray:
        return self.accuracy - self.control_accuracy

    def per_class_accuracy(self, row: int) -> np.ndarray:
        """Recall of each class at layer row ``row``, ``(n_classes,)`` (NaN for an absent class)."""
        matrix = self.confusion[row]
        totals = matrix.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(totals > 0, np.diag(matrix) / totals, np.nan)

    def to_json(self) -> dict:
        return {
            "dataset": self.dataset,
            "level": self.level,
            "probe": self.probe,
            "layers": self.layers.tolist(),
            "layer_names": list(self.layer_names),
            "accuracy": self.accuracy,
            "accuracy_std": self.accuracy_std,
            "control_accuracy": self.control_accuracy,
            "control_accuracy_std": self.control_std,
            "selectivity": self.selectivity,
            "classes": list(self.classes),
            "majority_baseline": self.majority,
            "n_items": self.n_items,
            "n_sentences": self.n_sentences,
            "n_folds": self.fold_accuracy.shape[1],
            "seconds": self.seconds,
        }

    def tables(self) -> dict[str, pd.DataFrame]:
        """``probe_accuracy``: per layer and series (probe, control task, selectivity) the mean over folds, its std
        and the band (mean ± std); ``probe_confusion``: per layer, true and predicted class, the count and the share
        of the true class's items; ``probe_per_class``: per layer and class, the recall and the class's item count."""
        curves = []
        for series, mean, std in (("probe", self.accuracy, self.accuracy_std), ("control task", self.control_accuracy, self.control_std),
                                  ("selectivity", self.selectivity, np.zeros_like(self.selectivity))):
            curves.append(pd.DataFrame({"layer": self.layers, "hook": self.layer_names, "series": series, "value": mean, "std": std,
                                        "low": mean - std, "high": mean + std}))
        classes = list(self.classes)
        confusion, per_class = [], []
        for row, layer in enumerate(self.layers):
            matrix = self.confusion[row].astype(float)
            share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
            cells = grid_frame(share, classes, classes, "true", "predicted", "share")
            confusion.append(cells.assign(count=matrix.ravel().astype(int)).assign(layer=int(layer)))
            per_class.append(pd.DataFrame({"layer": int(layer), "class": classes, "accuracy": self.per_class_accuracy(row),
                                           "items": matrix.sum(axis=1).astype(int)}))
        return {"probe_accuracy": pd.concat(curves, ignore_index=True), "probe_confusion": pd.concat(confusion, ignore_index=True),
                "probe_per_class": pd.concat(per_class, ignore_index=True)}

    def confusion_table(self, layer: int) -> pd.DataFrame:
        """The ``probe_confusion`` rows of one probed ``layer`` (a value of ``layers``), without the layer column."""
        return self._layer_rows("probe_confusion", layer)

    def per_class_table(self, layer: int) -> pd.DataFrame:
        """The ``probe_per_class`` rows of one probed ``layer`` (a value of ``layers``), without the layer column."""
        return self._layer_rows("probe_per_class", layer)

    def _layer_rows(self, name: str, layer: int) -> pd.DataFrame:
        if layer not in [int(v) for v in self.layers]:
            raise OutOfRangeError(f"Layer {layer!r} was not probed; the probed layers are {', '.join(str(int(v)) for v in self.layers)}.")
        table = self.tables()[name]
        return table[table["layer"] == layer].drop(columns="layer").reset_index(drop=True)


# --- hidden states ---------------------------------------------------------------------------
def _word_token_positions(model: LoadedModel, text: str, spans: tuple[tuple[int, int], ...]) -> tuple[list[int], list[int]]:
    """Token ids of ``text`` and, for each word span, the index of the word's last token."""
    enc = model.tokenizer(text, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), list(enc["offset_mapping"])
    positions = []
    for start, end in spans:
        inside = [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]
        if not inside:
            raise WorkbenchError(f"The word {text[start:end]!r} in {text!r} maps to no token of this model's tokenizer.")
        positions.append(inside[-1])
    return ids, positions


def encode_dataset(model: LoadedModel, dataset: ProbeDataset) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids per sentence and the positions of its items (sentence level: every position).

    Raises:
        WorkbenchError: a sentence is empty or longer than ``model.token_limit(MAX_TOKENS)``
            (the message names that limit, e.g. 41 on a toy model, 32 on a workshop server).
    """
    limit = model.token_limit(MAX_TOKENS)
    all_ids, all_positions = [], []
    for i, text in enumerate(dataset.texts):
        if dataset.level == "token":
            ids, positions = _word_token_positions(model, text, dataset.spans[i])
        else:
            ids = model.tokenizer(text)["input_ids"]
            positions = list(range(len(ids)))
        if not 0 < len(ids) <= limit:
            raise WorkbenchError(f"Sentence {i + 1} is {len(ids)} tokens long; probing takes 1 to {limit} tokens here. "
                                 f"Shorten it: {text[:60]!r}")
        all_ids.append(ids)
        all_positions.append(positions)
    return all_ids, all_positions


def extract_features(
    model: LoadedModel,
    dataset: ProbeDataset,
    *,
    pool: str = "last",
    batch_size: int = 32,
    hooks: HookList = (),
    on_progress: Progress | None = None,
) -> ProbeFeatures:
    """Capture the residual stream at every layer boundary for every item of ``dataset``.

    Sentences run in right-padded batches with an attention mask (causal attention means the
    real tokens never see the padding). Token-level items are read at their word's last token;
    sentence-level items at the last token (``pool='last'``) or averaged over the sentence's
    tokens (``pool='mean'``). ``hooks`` are attached during the runs (tests plant directions).
    """
    if pool not in POOLS:
        raise WorkbenchError(f"pool must be one of {POOLS}, got {pool!r}.")
    started = time.perf_counter()
    n_layers = model.info.n_layers
    names = [hook_name("hook_resid_pre", 0)] + [hook_name("hook_resid_post", layer) for layer in range(n_layers)]
    all_ids, all_positions = encode_dataset(model, dataset)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    chunks, tokens = [], []
    n_batches = (len(all_ids) + batch_size - 1) // batch_size
    for b in range(n_batches):
        batch_ids = all_ids[b * batch_size:(b + 1) * batch_size]
        width = max(len(ids) for ids in batch_ids)
        ids = torch.full((len(batch_ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch_ids), width), dtype=torch.long)
        for row, seq in enumerate(batch_ids):
            ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1
        # stop after the last block: the final norm and the unembedding are not needed
        _, cache = model.run_with_cache(ids, names, hooks=hooks, attention_mask=mask, stop_at_layer=n_layers)
        stacked = torch.stack([cache[n] for n in names]).float().cpu()  # (layer, batch, pos, d_model)
        for row, seq in enumerate(batch_ids):
            positions = all_positions[b * batch_size + row]
            if dataset.level == "token":
                chunks.append(stacked[:, row, positions])
                tokens += model.token_strings([seq[p] for p in positions])
            else:
                reader = stacked[:, row, len(seq) - 1] if pool == "last" else stacked[:, row, :len(seq)].mean(dim=1)
                chunks.append(reader[:, None])
                tokens += model.token_strings([seq[-1]])
        if on_progress:
            on_progress((b + 1) / n_batches, f"batch {b + 1}/{n_batches}")
    states = torch.cat(chunks, dim=1).numpy().astype(np.float16)
    classes = dataset.classes
    index = {c: i for i, c in enumerate(classes)}
    return ProbeFeatures(
        layers=np.arange(n_layers + 1),
        layer_names=tuple(names[:1] + names[1:]),
        states=states,
        labels=np.array([index[label] for label in dataset.item_labels], dtype=np.int64),
        classes=classes,
        groups=np.asarray(dataset.item_sentence),
        types=dataset.item_types,
        tokens=tuple(tokens),
        seconds=time.perf_counter() - started,
        dataset=dataset.name,
        level=dataset.level,
    )


# --- probes ------------------------------------------------------------------------------------
def control_labels(types: tuple[str, ...] | list[str], labels: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Hewitt & Liang's control task: every type gets one fixed label, drawn at random from
    the empirical distribution of ``labels``; returns the control label of each item, ``(n_items,)``."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    values, counts = np.unique(labels, return_counts=True)
    unique_types = sorted(set(types))
    drawn = rng.choice(values, size=len(unique_types), p=counts / counts.sum())
    table = dict(zip(unique_types, drawn))
    return np.array([table[t] for t in types], dtype=labels.dtype)


def check_folds(n_folds: int, n_groups: int) -> None:
    """Raise WorkbenchError unless ``2 <= n_folds <= n_groups`` (each fold needs a sentence to test on)."""
    if not 2 <= n_folds <= n_groups:
        raise WorkbenchError(f"The number of folds must be between 2 and the number of sentences ({n_groups}), got {n_folds}.")


def fold_splits(groups: np.ndarray, n_folds: int, *, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Grouped K-fold (train, test) index pairs: no group (sentence) is on both sides."""
    from sklearn.model_selection import GroupKFold

    check_folds(n_folds, len(np.unique(groups)))
    return list(GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(np.zeros(len(groups)), groups=groups))


def make_probe(kind: str, seed: int = 0) -> object:
    """A scikit-learn pipeline: standardise, then logistic regression or a 1-hidden-layer MLP (64 units)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "linear":
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=100, tol=1e-3))
    if kind == "mlp":
        return make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-2, max_iter=60, tol=1e-3, random_state=seed))
    raise WorkbenchError(f"probe must be one of {PROBES}, got {kind!r}.")


def _fit_score(kind: str, seed: int, x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Fit on ``train`` and return the predictions for ``test``."""
    if len(np.unique(y[train])) < 2:  # a fold with one class: the only sensible answer is that class
        return np.full(len(test), y[train][0])
    from threadpoolctl import threadpool_limits

    probe = make_probe(kind, seed)
    # one BLAS thread: these problems are small, and threaded BLAS was 20x slower on a busy 2-core machine
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # convergence warnings: max_iter is a deliberate speed cap
        probe.fit(x[train], y[train])
    return probe.predict(x[test])


def fit_probes(
    features: ProbeFeatures,
    *,
    probe: str = "linear",
    n_folds: int = 5,
    seed: int = 0,
    labels: np.ndarray | None = None,
    layers: list[int] | None = None,
    solver: str = "torch",
    on_progress: Progress | None = None,
) -> ProbeResult:
    """Cross-validated real and control probes at every layer (or the given layer rows).

    Args:
        labels: replace the dataset's labels (tests pass shuffled ones); ``(n_items,)``.
        layers: indices into ``features.layers``; default all.
        solver: for the linear probe, ``"torch"`` fits every layer, fold and task at once as a
            closed-form ridge classifier (:func:`~interp_core.techniques.probe_fit.fit_linear_probes`;
            within 0.02 accuracy of the reference on POS); ``"sklearn"`` fits logistic regressions one
            by one with :func:`make_probe` (the reference). The MLP probe always uses scikit-learn.
    """
    if probe not in PROBES:
        raise WorkbenchError(f"probe must be one of {PROBES}, got {probe!r}.")
    if solver not in ("torch", "sklearn"):
        raise WorkbenchError(f"solver must be 'torch' or 'sklearn', got {solver!r}.")
    started = time.perf_counter()
    y = features.labels if labels is None else np.asarray(labels)
    control = control_labels(features.types, y, seed=seed + 1)
    splits = fold_splits(features.groups, n_folds, seed=seed)
    rows = list(range(len(features.layers))) if layers is None else list(layers)
    n_classes = len(features.classes)
    acc = np.zeros((len(rows), n_folds))
    ctl = np.zeros((len(rows), n_folds))
    confusion = np.zeros((len(rows), n_classes, n_classes), dtype=np.int64)
    if probe == "linear" and solver == "torch":
        from interp_core.techniques.probe_fit import fit_linear_probes

        if on_progress:
            on_progress(0.0, f"fitting {2 * len(rows) * n_folds} probes at once")
        pred = fit_linear_probes(features.states[rows], [y, control], max(n_classes, int(y.max()) + 1), splits)
        for r in range(len(rows)):
            for f, (_, test) in enumerate(splits):
                acc[r, f] = np.mean(pred[0, r, test] == y[test])
                ctl[r, f] = np.mean(pred[1, r, test] == control[test])
            np.add.at(confusion[r], (y, pred[0, r]), 1)
        rows_done = []
    else:
        rows_done = rows
    for r, layer in enumerate(rows_done):
        x = features.states[layer].astype(np.float32)
        for f, (train, test) in enumerate(splits):
            pred = _fit_score(probe, seed, x, y, train, test)
            acc[r, f] = np.mean(pred == y[test])
            np.add.at(confusion[r], (y[test], pred), 1)
            ctl[r, f] = np.mean(_fit_score(probe, seed, x, control, train, test) == control[test])
        if on_progress:
            on_progress((r + 1) / len(rows), f"layer {features.layers[layer]} ({r + 1}/{len(rows)})")
    return ProbeResult(
        layers=features.layers[rows],
        layer_names=tuple(features.layer_names[i] for i in rows),
        fold_accuracy=acc,
        fold_control=ctl,
        confusion=confusion,
        classes=features.classes,
        majority=float(np.bincount(y).max() / len(y)),
        probe=probe,
        n_items=len(y),
        n_sentences=len(np.unique(features.groups)),
        test_groups=tuple(tuple(sorted(set(features.groups[test].tolist()))) for _, test in splits),
        seconds=time.perf_counter() - started,
        dataset=features.dataset,
        level=features.level,
    )


def selectivity_note(result: ProbeResult) -> str | None:
    """A warning when the probe's accuracy is mostly the probe's own doing, else None."""
    best = int(np.argmax(result.selectivity))
    if result.selectivity[best] >= LOW_SELECTIVITY:
        return None
    return (
        f"Selectivity is low at every layer (best {result.selectivity[best]:.2f} at layer {result.layers[best]}): the control "
        f"task, which can only be solved by memorising word types, is learned nearly as well as the real task. The accuracy "
        f"says little about what the model encodes beyond word identity; try a simpler probe or a task whose label is not "
        f"a function of the word."
    )


def layer_rows(n_layers: int, step: int) -> list[int]:
    """Every ``step``-th layer boundary of ``0..n_layers``, the last always included."""
    return sorted(set(range(0, n_layers + 1, step)) | {n_layers})


# --- requests ------------------------------------------------------------------------------
def _whole(what: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise WorkbenchError(f"{what} must be a whole number from {low} to {high}, got {value!r}.")
    return int(value)


@dataclass(frozen=True)
class ProbeDataRequest(Request):
    """A probing dataset, checked against the model: every sentence within its token limit.

    Light (a parse and a tokenisation), so a page runs it before any heavy job queues.

    Attributes:
        dataset: a bundled set's name (``pos``, ``number``, ``facts``) or a CSV path; with ``csv``,
            the uploaded file's name.
        csv: an uploaded CSV's bytes (a page); empty: read ``dataset``.
    """

    dataset: str = "pos"
    csv: bytes = b""
    label = "Reading the dataset"

    def load(self) -> ProbeDataset:
        """The parsed, validated dataset (raises WorkbenchError naming what is wrong)."""
        return parse_csv(self.csv, self.dataset) if self.csv else load_dataset(self.dataset)

    def compute(self, model: LoadedModel, on_progress: Progress) -> ProbeDataset:
        dataset = self.load()
        encode_dataset(model, dataset)  # names the first sentence over the model's token limit
        return dataset


@dataclass(frozen=True)
class ProbeFeaturesRequest(Request):
    """The hidden states of a dataset's items at every layer boundary (:func:`extract_features`)."""

    dataset: str = "pos"
    pool: str = "last"
    csv: bytes = b""
    label = "Hidden states at every layer"
    heavy = True

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise WorkbenchError(f"pool must be one of {POOLS}, got {self.pool!r}.")

    def compute(self, model: LoadedModel, on_progress: Progress) -> ProbeFeatures:
        """The states from the disk cache when a bundled set was extracted before for these weights, else extracted (and cached)."""
        started = time.perf_counter()
        path = None if self.csv else probe_cache.cache_path(model.fingerprint, self.dataset, self.pool)
        arrays = probe_cache.read(path) if path is not None else None
        if arrays is not None:
            features = ProbeFeatures.from_arrays(arrays, time.perf_counter() - started)
        else:
            features = extract_features(model, ProbeDataRequest(self.dataset, self.csv).load(), pool=self.pool, on_progress=on_progress)
            if path is not None:
                probe_cache.write(path, features.to_arrays())
        return dataclasses.replace(features, key=(model.fingerprint, self))


@dataclass(frozen=True)
class ProbeRequest(Request):
    """Cross-validated probes and control-task probes at every ``layer_step``-th layer (the ``probe`` subcommand).

    Attributes:
        dataset, csv, pool: as in :class:`ProbeFeaturesRequest`.
        probe: ``"linear"`` or ``"mlp"``.
        folds: cross-validation folds, split by sentence (2 up to the number of sentences).
        seed: seed of the folds and of the control labels.
        layer_step: probe every k-th layer boundary (the last always included); 1: all of them.
        features: the states of :meth:`features_request` on this model if the caller has them (a page
            keeps them, so a new probe or fold count does not extract them again); not part of the
            request's identity, and ignored unless their ``key`` names this model and request.
    """

    dataset: str = "pos"
    probe: str = "linear"
    folds: int = 5
    seed: int = 0
    pool: str = "last"
    layer_step: int = 1
    csv: bytes = b""
    features: ProbeFeatures | None = dataclasses.field(default=None, compare=False, repr=False)
    label = "Fitting the probes (real and control task)"
    heavy = True

    def __post_init__(self) -> None:
        if self.probe not in PROBES:
            raise WorkbenchError(f"probe must be one of {PROBES}, got {self.probe!r}.")
        if self.pool not in POOLS:
            raise WorkbenchError(f"pool must be one of {POOLS}, got {self.pool!r}.")
        object.__setattr__(self, "folds", _whole("The number of folds", self.folds, 0, 10**6))  # 2..sentences: check()
        object.__setattr__(self, "seed", _whole("The seed", self.seed, 0, 2**32 - 1))  # numpy seeds no other
        object.__setattr__(self, "layer_step", _whole("The layer step", self.layer_step, 1, 10**6))

    def features_request(self) -> ProbeFeaturesRequest:
        return ProbeFeaturesRequest(self.dataset, self.pool, self.csv)

    def check(self, model: LoadedModel) -> None:
        check_folds(self.folds, ProbeDataRequest(self.dataset, self.csv).load().n_sentences)

    def compute(self, model: LoadedModel, on_progress: Progress) -> ProbeResult:
        features, start = self.features, 0.0
        if features is None or features.key != (model.fingerprint, self.features_request()):
            features, start = self.features_request().compute(model, lambda f, m: on_progress(f / 2, f"hidden states: {m}")), 0.5
        rows = layer_rows(len(features.layers) - 1, self.layer_step)
        return fit_probes(features, probe=self.probe, n_folds=self.folds, seed=self.seed, layers=rows,
                          on_progress=lambda f, m: on_progress(start + (1 - start) * f, m))
