"""Labelled datasets for probing: the bundled ones and the user's own CSV, validated.

Two kinds of task:

- **token level**: every word of a sentence has a label (its part of speech, whether it is a
  number). A CSV has columns ``text,labels``: ``text`` is words separated by single spaces,
  punctuation as its own word ("The cat sat ."), and ``labels`` has one label per word,
  separated by spaces. The model reads the words joined by spaces, with punctuation-only words
  attached to the word before ("The cat sat."); each word is read at its **last token**, the
  first position where a causal model has seen the whole word.
- **sentence level**: one label per sentence; columns ``text,label``.

Bundled sets live in ``interp_core/data/probing/`` (written by ``build_datasets.py`` there):
``pos`` (part of speech, hand-built word lists plus hand-written ambiguous sentences),
``number`` (is the word a number; labelled by the rule :func:`is_number_word`) and ``facts``
(true or false statements).
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from interp_core.core.errors import WorkbenchError

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "probing"
MAX_SENTENCES = 5000
MAX_WORDS = 60
MAX_BYTES = 2_000_000
MIN_SENTENCES = 10

NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand million".split()
)
_PUNCT_RE = re.compile(r"^[^\w\s]+$")
_DIGITS_RE = re.compile(r"^\d+([.,]\d+)*$")

BUNDLED: dict[str, dict[str, str]] = {
    "pos": {
        "file": "pos.csv",
        "title": "Part of speech (token level)",
        "description": "410 short sentences, every word tagged with its part of speech (DET, NOUN, VERB, AUX, ADJ, ADV, ADP, "
        "PRON, PROPN, NUM, CCONJ, PUNCT). Most come from templates whose word lists carry their tags; 50 are "
        "hand-written around ambiguous words (saw, book, park, can, light, watch) whose tag depends on context. "
        "Possessives (my, your) are PRON, as in Universal Dependencies.",
    },
    "number": {
        "file": "number.csv",
        "title": "Is the word a number? (token level, labelled by rule)",
        "description": "300 sentences with numbers written as digits (1987) and as words (twelve). Each word is labelled "
        "'number' when it is all digits or a number word, else 'other' (the rule is_number_word).",
    },
    "facts": {
        "file": "facts.csv",
        "title": "True or false statement (sentence level)",
        "description": "235 statements about capitals, animal classes and small sums, about half true. Every answer word "
        "(Paris, mammal, seven) appears in true and in false statements, so no single word gives the label away.",
    },
}


@dataclass(frozen=True)
class ProbeDataset:
    """A labelled probing task, flattened to items (one per labelled word or sentence).

    Attributes:
        name: the bundled name or the uploaded file's name.
        level: ``"token"`` or ``"sentence"``.
        texts: the model input of each sentence, ``(n_sentences,)``.
        spans: token level: character spans ``(start, end)`` of each labelled word in its
            text, one tuple per sentence; sentence level: empty.
        item_sentence: the sentence of each item, ``(n_items,)`` ints (the group for splits).
        item_labels: each item's label, ``(n_items,)``.
        item_types: the type a control task keys on: the lower-cased word (token level) or
            the sentence text (sentence level), ``(n_items,)``.
        item_words: the word (or sentence) each item stands for, ``(n_items,)``.
        description: what the task is, shown on the page.
    """

    name: str
    level: str
    texts: tuple[str, ...]
    spans: tuple[tuple[tuple[int, int], ...], ...]
    item_sentence: np.ndarray
    item_labels: tuple[str, ...]
    item_types: tuple[str, ...]
    item_words: tuple[str, ...]
    description: str = ""

    def __post_init__(self) -> None:
        n = len(self.item_labels)
        assert self.level in ("token", "sentence")
        assert len(self.item_sentence) == len(self.item_types) == len(self.item_words) == n
        if self.level == "token":
            assert sum(len(s) for s in self.spans) == n and len(self.spans) == len(self.texts)
        else:
            assert n == len(self.texts)

    @property
    def classes(self) -> tuple[str, ...]:
        """Labels in descending frequency (ties alphabetical)."""
        counts = Counter(self.item_labels)
        return tuple(sorted(counts, key=lambda c: (-counts[c], c)))

    @property
    def n_sentences(self) -> int:
        return len(self.texts)

    def label_counts(self) -> dict[str, int]:
        counts = Counter(self.item_labels)
        return {c: counts[c] for c in self.classes}

    def to_json(self) -> dict:
        return {"dataset": self.name, "level": self.level, "n_sentences": self.n_sentences, "classes": self.label_counts()}

    def tables(self) -> dict[str, pd.DataFrame]:
        """``probe_labels``: each item's sentence, word (or sentence text) and label."""
        return {"probe_labels": pd.DataFrame({"sentence": self.item_sentence, "word": self.item_words, "label": self.item_labels})}


def is_number_word(word: str) -> bool:
    """The rule of the ``number`` task: all digits (``1987``, ``3.5``, ``1,000``) or a number word."""
    return bool(_DIGITS_RE.match(word)) or word.lower() in NUMBER_WORDS


def join_words(words: list[str]) -> tuple[str, tuple[tuple[int, int], ...]]:
    """Words -> text with single spaces, punctuation-only words attached; and each word's span."""
    text, spans = "", []
    for i, word in enumerate(words):
        if i > 0 and not _PUNCT_RE.match(word):
            text += " "
        spans.append((len(text), len(text) + len(word)))
        text += word
    return text, tuple(spans)


def _token_dataset(name: str, rows: list[tuple[list[str], list[str]]], description: str) -> ProbeDataset:
    texts, spans, sent, labels, types, words = [], [], [], [], [], []
    for i, (row_words, row_labels) in enumerate(rows):
        text, row_spans = join_words(row_words)
        texts.append(text)
        spans.append(row_spans)
        sent += [i] * len(row_words)
        labels += row_labels
        types += [w.lower() for w in row_words]
        words += row_words
    return ProbeDataset(name, "token", tuple(texts), tuple(spans), np.array(sent, dtype=np.int64), tuple(labels),
                        tuple(types), tuple(words), description)


def _sentence_dataset(name: str, rows: list[tuple[str, str]], description: str) -> ProbeDataset:
    texts = tuple(t for t, _ in rows)
    return ProbeDataset(name, "sentence", texts, (), np.arange(len(rows), dtype=np.int64), tuple(lab for _, lab in rows),
                        texts, texts, description)


def _fail(name: str, message: str) -> WorkbenchError:
    return WorkbenchError(f"{name}: {message}")


def _read_rows(content: str, name: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header (lower-cased) and one dict per data row.

    The reader is strict: a quoted field that is never closed would otherwise swallow the rest
    of the file into one field (a 400-line file read as "1 data rows"), so it is reported with
    the line where the quote opens. A row with more fields than the header (an unquoted comma in
    the text) is refused too rather than silently cut.
    """
    reader = csv.reader(io.StringIO(content), strict=True)
    records: list[tuple[int, list[str]]] = []  # (line the row starts on, fields)
    last_line = 0
    try:
        for fields in reader:
            records.append((last_line + 1, fields))
            last_line = reader.line_num
    except csv.Error as error:
        line = last_line + 1  # the failing row starts on the line after the last good one
        if "end of data" in str(error):
            raise _fail(name, f"line {line} has an opening quote that is never closed, so the rest of the file "
                              "would be read as one field. Close the quote, or double it (\"\") inside a quoted text.") from error
        raise _fail(name, f"line {line} is not valid CSV ({error}). Put a text that contains commas or quotes in "
                          "double quotes, and double every quote inside it.") from error
    records = [(line, fields) for line, fields in records if any(f.strip() for f in fields)]  # blank lines
    if not records:
        return [], []
    columns = [c.strip().lower() for c in records[0][1]]
    rows = []
    for line, fields in records[1:]:
        if len(fields) > len(columns):
            raise _fail(name, f"line {line} has {len(fields)} fields but the header has {len(columns)}; put a text that "
                              "contains commas in double quotes.")
        rows.append({column: (fields[i].strip() if i < len(fields) else "") for i, column in enumerate(columns)})
    return columns, rows


def _check_sizes(name: str, n_rows: int) -> None:
    if n_rows < MIN_SENTENCES:
        raise _fail(name, f"it has {n_rows} data rows; a probe needs at least {MIN_SENTENCES} sentences to split into folds.")
    if n_rows > MAX_SENTENCES:
        raise _fail(name, f"it has {n_rows} rows; the limit is {MAX_SENTENCES}. Use a sample.")


def _check_classes(name: str, labels: list[str]) -> None:
    counts = Counter(labels)
    if len(counts) < 2:
        raise _fail(name, f"every item has the label {next(iter(counts))!r}; a probe needs at least two different labels.")
    rare = [c for c, n in counts.items() if n < 2]
    if rare:
        raise _fail(name, f"the labels {', '.join(map(repr, rare[:5]))} occur only once; drop them or merge them into another class.")


def parse_csv(content: str | bytes, name: str = "upload.csv", *, rule: str | None = None, description: str = "") -> ProbeDataset:
    """Parse and validate a probing CSV (see the module docstring for the formats).

    Args:
        content: the file's text (or UTF-8 bytes).
        rule: ``"number"`` to label a ``text``-only token-level file with :func:`is_number_word`.

    Raises:
        WorkbenchError: with the row number and what is wrong, for any malformed input.
    """
    if isinstance(content, bytes):
        if len(content) > MAX_BYTES:
            raise _fail(name, f"the file is {len(content) / 1e6:.1f} MB; the limit is {MAX_BYTES / 1e6:.0f} MB.")
        try:
            content = content.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise _fail(name, "the file is not UTF-8 text. Save it as a UTF-8 CSV.") from error
    columns, rows = _read_rows(content, name)
    if "text" not in columns or (rule is None and "label" not in columns and "labels" not in columns):
        raise _fail(name, f"expected columns 'text,label' (one label per sentence) or 'text,labels' (one label per word, "
                          f"space-separated); found {columns or 'no header'}.")
    _check_sizes(name, len(rows))
    token_level = rule is not None or "labels" in columns
    parsed_tokens: list[tuple[list[str], list[str]]] = []
    parsed_sentences: list[tuple[str, str]] = []
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        text = row.get("text", "")
        if not text:
            raise _fail(name, f"row {number} has an empty text.")
        if token_level:
            words = text.split()
            labels = ["number" if is_number_word(w) else "other" for w in words] if rule == "number" else row.get("labels", "").split()
            if len(labels) != len(words):
                raise _fail(name, f"row {number} has {len(words)} words but {len(labels)} labels; give one label per "
                                  f"space-separated word (text: {text[:60]!r}).")
            if len(words) > MAX_WORDS:
                raise _fail(name, f"row {number} has {len(words)} words; the limit is {MAX_WORDS}. Split the sentence.")
            parsed_tokens.append((words, labels))
        else:
            label = row.get("label", "")
            if not label:
                raise _fail(name, f"row {number} has no label.")
            parsed_sentences.append((text, label))
    if token_level:
        _check_classes(name, [lab for _, labels in parsed_tokens for lab in labels])
        return _token_dataset(name, parsed_tokens, description)
    _check_classes(name, [lab for _, lab in parsed_sentences])
    return _sentence_dataset(name, parsed_sentences, description)


def load_dataset(name_or_path: str) -> ProbeDataset:
    """A bundled dataset by name (``pos``, ``number``, ``facts``) or a CSV file by path."""
    if name_or_path in BUNDLED:
        entry = BUNDLED[name_or_path]
        content = (DATA_DIR / entry["file"]).read_text(encoding="utf-8")
        rule = "number" if name_or_path == "number" else None
        return parse_csv(content, name_or_path, rule=rule, description=entry["description"])
    path = Path(name_or_path)
    if not path.is_file():
        raise WorkbenchError(f"No dataset named {name_or_path!r}: use one of {', '.join(BUNDLED)} or the path of a CSV file.")
    return parse_csv(path.read_bytes(), path.name)
