"""Datasets of prompt pairs: the inputs of patching and DLA averaged over many pairs.

One pair is an anecdote; the IOI paper and TransformerLens' patching tutorials average over
batches of prompts. A :class:`PairDataset` holds ``(clean, corrupt, answer, wrong)`` rows that
all share one token length (one template at a time), so that patching positions line up
across pairs and their grids can be averaged cell by cell.

Sources:

- :func:`ioi`: "When A and B went to the PLACE, B gave a OBJECT to" -> `` A``; the corrupted
  prompt swaps the second subject (B -> A), whose answer is `` B``. Several templates, seeded.
- :func:`factual`: "The capital of X is" -> X's capital; corrupted with another country, whose
  capital is the wrong answer.
- :func:`parse_csv`: an uploaded table with columns ``clean, corrupt, answer, wrong``.

Word pools are filtered to words that are one token with their leading space in the loaded
model's tokenizer, so every prompt of a template has the same length and every answer is one token.
Validation (:func:`prepare_dataset`) names the rows that fail.
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from interp_core.core.errors import WorkbenchError
from interp_core.core.model import LoadedModel
from interp_core.techniques.patch_pair import PatchPair, prepare_pair

COLUMNS: tuple[str, ...] = ("clean", "corrupt", "answer", "wrong")
SOURCES: tuple[str, ...] = ("ioi", "factual", "csv")
MIN_PAIRS, MAX_PAIRS = 2, 512  # an average needs two pairs; a CPU sweep of more takes hours

NAMES = (" Mary", " John", " Bob", " Tom", " James", " Sarah", " Anna", " Paul", " Mark", " Lisa", " David", " Emma",
         " Kate", " Jack", " Peter", " Laura", " Mike", " Amy", " Sam", " Ben", " Alex", " Dan", " Jane", " Lucy",
         " Henry", " George", " Steve", " Eric", " Ryan", " Alice")
PLACES = (" store", " park", " school", " beach", " office", " station", " hospital", " restaurant", " garden",
          " market", " church", " library", " house", " river", " hotel")
OBJECTS = (" ball", " book", " drink", " gift", " letter", " bag", " ring", " key", " hat", " cake", " phone", " pen",
           " bottle", " flower", " box")
IOI_TEMPLATES = (
    "When{A} and{B} went to the{PLACE},{B} gave a{OBJECT} to",
    "After{A} and{B} went to the{PLACE},{B} handed a{OBJECT} to",
    "Then,{A} and{B} had a long day at the{PLACE}.{B} gave a{OBJECT} to",
)
CAPITALS = {
    " France": " Paris", " Italy": " Rome", " Germany": " Berlin", " Spain": " Madrid", " Japan": " Tokyo",
    " Russia": " Moscow", " Egypt": " Cairo", " China": " Beijing", " Greece": " Athens", " Canada": " Ottawa",
    " Poland": " Warsaw", " Austria": " Vienna", " Portugal": " Lisbon", " Ireland": " Dublin", " Norway": " Oslo",
    " Sweden": " Stockholm", " Kenya": " Nairobi", " Peru": " Lima", " Cuba": " Havana", " Iran": " Tehran",
    " Thailand": " Bangkok", " England": " London", " Belgium": " Brussels", " Hungary": " Budapest",
    " Denmark": " Copenhagen", " Finland": " Helsinki", " Turkey": " Ankara", " Korea": " Seoul",
    " Syria": " Damascus", " Lebanon": " Beirut", " Switzerland": " Bern", " Netherlands": " Amsterdam",
}
FACTUAL_TEMPLATE = "The capital of{X} is"


@dataclass(frozen=True)
class PromptPair:
    """One row of a dataset: the clean and corrupted prompts, the clean answer and the wrong (corrupted) answer."""

    clean: str
    corrupt: str
    answer: str
    wrong: str

    def to_json(self) -> dict:
        return {"clean": self.clean, "corrupt": self.corrupt, "answer": self.answer, "wrong": self.wrong}


@dataclass(frozen=True)
class PairDataset:
    """Pairs that share one token length; ``name`` says where they came from (``"ioi"``, ``"factual"``, ``"csv"``)."""

    name: str
    pairs: tuple[PromptPair, ...]

    def __len__(self) -> int:
        return len(self.pairs)

    def to_json(self) -> list[dict]:
        return [pair.to_json() for pair in self.pairs]

    def frame(self) -> pd.DataFrame:
        """One row per pair, columns :data:`COLUMNS` (what a CSV upload holds)."""
        return pd.DataFrame([pair.to_json() for pair in self.pairs], columns=list(COLUMNS))


def single_token_words(model: LoadedModel, words: Sequence[str]) -> list[str]:
    """The words of ``words`` (each with its leading space) that are one token for ``model``'s tokenizer."""
    out = []
    for word in words:
        ids = model.tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            out.append(word)
    return out


def _check_count(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not MIN_PAIRS <= n <= MAX_PAIRS:
        raise WorkbenchError(f"A dataset has between {MIN_PAIRS} and {MAX_PAIRS} pairs; got n={n!r}. Pick a count in that range.")


def ioi(model: LoadedModel, n: int = 32, seed: int = 0, template: int = 0) -> PairDataset:
    """``n`` IOI pairs on template ``template`` of :data:`IOI_TEMPLATES`, drawn with ``random.Random(seed)``.

    Clean: "When A and B went to the PLACE, B gave a OBJECT to" (answer `` A``); corrupted: the
    second subject becomes A (answer `` B``, the wrong answer). Names, places and objects come
    from pools filtered to single tokens in ``model``'s tokenizer.
    """
    _check_count(n)
    if not 0 <= template < len(IOI_TEMPLATES):
        raise WorkbenchError(f"The IOI template is a number from 0 to {len(IOI_TEMPLATES) - 1}; got {template!r}.")
    names, places, objects = (single_token_words(model, pool) for pool in (NAMES, PLACES, OBJECTS))
    if len(names) < 2 or not places or not objects:
        raise WorkbenchError(
            f"This model's tokenizer has too few single-token words for IOI prompts ({len(names)} names, {len(places)} "
            f"places, {len(objects)} objects; at least 2, 1 and 1 are needed). Upload a CSV of pairs instead.")
    rng = random.Random(seed)
    text = IOI_TEMPLATES[template]
    pairs = []
    for _ in range(n):
        a, b = rng.sample(names, 2)
        place, obj = rng.choice(places), rng.choice(objects)
        clean = text.format(A=a, B=b, PLACE=place, OBJECT=obj)
        corrupt = clean[: clean.rindex(b)] + a + clean[clean.rindex(b) + len(b):]  # the second subject B -> A
        pairs.append(PromptPair(clean, corrupt, a, b))
    return PairDataset("ioi", tuple(pairs))


def factual(model: LoadedModel, n: int = 32, seed: int = 0) -> PairDataset:
    """``n`` pairs "The capital of X is" (answer X's capital) vs another country Y (wrong: Y's capital),
    over the countries whose name and capital are single tokens in ``model``'s tokenizer."""
    _check_count(n)
    countries = [c for c in single_token_words(model, list(CAPITALS)) if single_token_words(model, [CAPITALS[c]])]
    if len(countries) < 2:
        raise WorkbenchError(f"This model's tokenizer has {len(countries)} country with a single-token name and capital; "
                             "at least 2 are needed. Upload a CSV of pairs instead.")
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        x, y = rng.sample(countries, 2)
        pairs.append(PromptPair(FACTUAL_TEMPLATE.format(X=x), FACTUAL_TEMPLATE.format(X=y), CAPITALS[x], CAPITALS[y]))
    return PairDataset("factual", tuple(pairs))


def parse_csv(text: str | bytes) -> PairDataset:
    """A dataset from CSV text with a header row naming :data:`COLUMNS` (other columns are ignored).

    Cells are kept exactly as written (an answer's leading space matters: write ``" Mary"``).

    Raises:
        WorkbenchError: unreadable CSV, a missing column, empty cells (rows named), fewer than
            :data:`MIN_PAIRS` or more than :data:`MAX_PAIRS` rows.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8-sig", errors="replace")
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise WorkbenchError(f"The CSV could not be read ({error}). Give a header row {', '.join(COLUMNS)} and one pair per row.") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise WorkbenchError(f"The CSV lacks the column(s) {', '.join(missing)}; it has {', '.join(map(str, frame.columns)) or 'none'}. "
                             f"The header row must name {', '.join(COLUMNS)}.")
    n = len(frame)
    if n < MIN_PAIRS:
        raise WorkbenchError(f"The CSV has {n} pair(s); an average needs at least {MIN_PAIRS}. Add rows.")
    if n > MAX_PAIRS:
        raise WorkbenchError(f"The CSV has {n:,} pairs; at most {MAX_PAIRS} run here (a sweep per pair). Use a sample of the rows.")
    empty = [i + 1 for i, row in enumerate(frame[list(COLUMNS)].itertuples(index=False)) if any(not cell.strip() for cell in row)]
    if empty:
        raise WorkbenchError(f"Row(s) {_rows(empty)} have an empty cell; every row needs {', '.join(COLUMNS)}.")
    pairs = tuple(PromptPair(*row) for row in frame[list(COLUMNS)].itertuples(index=False))
    return PairDataset("csv", pairs)


def _rows(numbers: Sequence[int], most: int = 8) -> str:
    shown = ", ".join(str(n) for n in numbers[:most])
    return shown + (f" and {len(numbers) - most} more" if len(numbers) > most else "")


def prepare_dataset(model: LoadedModel, dataset: PairDataset) -> list[PatchPair]:
    """Tokenise and validate every pair (:func:`prepare_pair`), then check they share one token length.

    Raises:
        WorkbenchError: a pair that fails (its row named, with the reason), or pairs of different
            lengths (the rows of each length named).
    """
    prepared = []
    for i, pair in enumerate(dataset.pairs):
        try:
            prepared.append(prepare_pair(model, pair.clean, pair.corrupt, pair.answer, pair.wrong))
        except WorkbenchError as error:
            raise type(error)(f"Row {i + 1} ({pair.clean!r}): {error}") from None
    lengths: dict[int, list[int]] = {}
    for i, pair in enumerate(prepared):
        lengths.setdefault(pair.n_pos, []).append(i + 1)
    if len(lengths) > 1:
        common = max(lengths, key=lambda k: len(lengths[k]))
        odd = "; ".join(f"row(s) {_rows(rows)} have {k}" for k, rows in sorted(lengths.items()) if k != common)
        raise WorkbenchError(f"The pairs of a dataset must share one token length so that positions line up: "
                             f"{len(lengths[common])} rows have {common} tokens, but {odd}. Edit or drop those rows.")
    return prepared


def build_dataset(model: LoadedModel, source: str, n: int = 32, seed: int = 0, template: int = 0, csv: str = "") -> PairDataset:
    """The dataset a request names: ``source`` ``"ioi"``/``"factual"`` (generated), or ``"csv"`` (``csv``'s text)."""
    if source == "ioi":
        return ioi(model, n, seed, template)
    if source == "factual":
        return factual(model, n, seed)
    if source == "csv":
        return parse_csv(csv)
    raise WorkbenchError(f"The dataset is one of {', '.join(SOURCES)} (or a .csv file on the command line); got {source!r}.")
