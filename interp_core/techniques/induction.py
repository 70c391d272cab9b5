"""Induction heads: the circuit that copies patterns from the context.

Context. Feed a model ``BOS + r + r`` where ``r`` is ``T`` random tokens. The first copy of
``r`` is unpredictable (loss near ``log d_vocab``); the second copy is fully predictable for a
model that can look back: at a token ``A`` it finds the earlier ``A`` and predicts what came
after it. That drop in loss on the repeated half is the signature of in-context learning.

Intuition (Elhage et al. 2021; Olsson et al. 2022). Two heads do it together. A
*previous-token head* in an earlier layer writes "the token before me was ``A``" into each
position. An *induction head* in a later layer then uses that as its key (K-composition):
its query "I am ``A``" matches the key of the position after the earlier ``A``, so it
attends there (the stripe ``key = query - T + 1``) and its OV circuit copies that token to the
output. Scores (``../shared/GUIDE.md`` §3) find the heads; ablating them and measuring the
repeated-half loss tests that they matter (:mod:`interp_core.techniques.induction_ablation`); the
K-composition score
``||W_OV^early W_QK^late^T||_F / (||W_OV^early||_F ||W_QK^late||_F)`` tests that the weights
wire them together.

Shapes follow :mod:`interp_core.core.names`; losses are in nats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from interp_core.core.errors import BadPromptError, OutOfRangeError, check_index
from interp_core.core.head_id import head_label
from interp_core.core.model import LoadedModel
from interp_core.core.names import hook_name
from interp_core.techniques.composition import CompositionScores, composition_scores
from interp_core.techniques.contract import Progress, Request
from interp_core.techniques.frames import grid_frame
from interp_core.techniques.head_scores import (
    head_table,
    induction_mask,
    induction_score,
    induction_stripe_mask,
    previous_token_score,
    repeated_induction_score,
)

DEFAULT_LOW, DEFAULT_HIGH = 1000, 20000  # the GUIDE's id range for SmolLM2-135M


# --- the repeated random sequence -------------------------------------------------------
def bos_id(model: LoadedModel) -> int:
    """The model's BOS id; falls back to EOS (GPT-2 uses ``<|endoftext|>`` for both), then 0."""
    for name in ("bos_token_id", "eos_token_id"):
        value = getattr(model.tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0


def repeated_tokens(model: LoadedModel, length: int, n_repeats: int = 2, seed: int = 0, *,
                    low: int = DEFAULT_LOW, high: int = DEFAULT_HIGH) -> torch.Tensor:
    """``BOS + r * n_repeats`` with ``r`` = ``length`` ids drawn uniformly from ``[low, high)``.

    The range is clipped to the vocabulary; when nothing of it is left (tiny models) ids come
    from the whole vocabulary. Special tokens (BOS, UNK, padding) are never drawn.

    Returns:
        ``(1, 1 + length * n_repeats)`` token ids.

    Raises:
        OutOfRangeError: ``low < 0``, ``high <= low``, a range holding fewer than 2 ordinary
            tokens, or a seed outside ``[-2**63, 2**64)``.
    """
    check_seed(seed)
    if low < 0:
        raise OutOfRangeError(f"The lowest token id (low) must be 0 or more, got {low}. Token ids start at 0.")
    if high <= low:
        raise OutOfRangeError(
            f"The token id range [low, high) is empty: low = {low}, high = {high}. Give a high above low, "
            f"e.g. low {DEFAULT_LOW} and high {DEFAULT_HIGH} (clipped to this model's {model.info.d_vocab} tokens)."
        )
    check_copies(length, n_repeats)
    total = 1 + length * n_repeats
    if total > model.info.n_ctx:
        raise BadPromptError(
            f"BOS + {n_repeats} x {length} = {total} tokens exceeds this model's context of {model.info.n_ctx}; "
            "use a shorter sequence or fewer repeats."
        )
    high = min(high, model.info.d_vocab)
    if low >= high - 1:
        low, high = 0, model.info.d_vocab
    bos = bos_id(model)
    special = {bos, *(int(i) for i in getattr(model.tokenizer, "all_special_ids", []) or [])}
    candidates = torch.tensor([i for i in range(low, high) if i not in special], dtype=torch.long)
    if len(candidates) < 2:
        raise OutOfRangeError(
            f"The token id range [{low}, {high}) holds {len(candidates)} ordinary token(s) of this model (special tokens "
            f"are never drawn); random sequences need at least 2. Widen the range (this model has {model.info.d_vocab} tokens)."
        )
    generator = torch.Generator().manual_seed(int(seed))
    r = candidates[torch.randint(0, len(candidates), (length,), generator=generator)]
    return torch.cat([torch.tensor([bos]), r.repeat(n_repeats)])[None]


def check_copies(length: int, n_repeats: int) -> None:
    """Raise BadPromptError unless ``length >= 2`` tokens are repeated ``n_repeats >= 2`` times."""
    for name, value in (("length", length), ("repeats", n_repeats)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise BadPromptError(f"The {name} of the repeated sequence must be a whole number, got {value!r}.")
    if length < 2:
        raise BadPromptError(f"The repeated sequence needs at least 2 tokens, got {length}.")
    if n_repeats < 2:
        raise BadPromptError(f"Induction needs the sequence at least twice (repeats >= 2), got {n_repeats}.")


def check_seed(seed: int) -> int:
    """Return ``seed`` if a torch generator takes it (``-2**63 <= seed < 2**64``), else raise OutOfRangeError."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not -(2**63) <= int(seed) < 2**64:
        raise OutOfRangeError(f"The seed must be a whole number from 0 to {2**64 - 1} (e.g. 0), got {seed!r}.")
    return int(seed)


def pattern_table(pattern: np.ndarray, tokens: Sequence[str], mask: np.ndarray) -> pd.DataFrame:
    """One head's ``(query, key)`` pattern as one row per visible cell (``key <= query``): positions, their
    tokens, the attention, and ``target``: whether ``mask`` (an ideal induction head's cells) holds it."""
    n = len(tokens)
    q, k = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    keep = k <= q
    frame = pd.DataFrame({"query": q[keep], "key": k[keep], "attention": pattern[keep], "target": mask[keep]})
    frame["query_token"] = [tokens[i] for i in frame["query"]]
    frame["key_token"] = [tokens[j] for j in frame["key"]]
    return frame


def _patterns(cache: dict[str, torch.Tensor], n_layers: int, row: int = 0) -> np.ndarray:
    """``(layer, head, query, key)`` patterns of batch row ``row``."""
    return np.stack([cache[hook_name("attn.hook_pattern", L)][row].float().cpu().numpy() for L in range(n_layers)])


def token_losses(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``(batch, pos, d_vocab), (batch, pos) -> (batch, pos - 1)``: loss on predicting token ``p + 1``."""
    logprobs = logits[:, :-1].float().log_softmax(-1)
    return -logprobs.gather(-1, tokens[:, 1:, None].to(logprobs.device))[..., 0].cpu()


def half_means(loss: np.ndarray, length: int) -> tuple[float, float]:
    """Mean loss over targets in the first copy of ``r`` and over targets in later copies."""
    return float(loss[..., :length].mean()), float(loss[..., length:].mean())


@dataclass(frozen=True)
class RepeatedResult:
    """Scores and losses of every head on one ``BOS + r * n_repeats`` sequence.

    Attributes:
        tokens: token ids ``(pos,)``; ``token_strings`` their text.
        length, n_repeats, seed: how the sequence was made.
        induction: stripe scores ``(layer, head)``; previous_token: ``(layer, head)``.
        loss: loss on predicting each token ``1..pos-1``, ``(pos - 1,)``.
        loss_first_half / loss_repeated_half: mean loss of targets in the first copy / later copies.
        patterns: ``(layer, head, query, key)`` attention patterns.
    """

    tokens: np.ndarray
    token_strings: tuple[str, ...]
    length: int
    n_repeats: int
    seed: int
    induction: np.ndarray
    previous_token: np.ndarray
    loss: np.ndarray
    loss_first_half: float
    loss_repeated_half: float
    patterns: np.ndarray

    def __post_init__(self) -> None:
        assert len(self.tokens) == 1 + self.length * self.n_repeats == len(self.loss) + 1
        assert self.induction.shape == self.previous_token.shape == self.patterns.shape[:2]

    def top_heads(self, k: int = 10) -> list[dict]:
        """The ``k`` heads of highest induction score, best first (``k`` >= 1)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise OutOfRangeError(f"The number of top heads to list must be at least 1, got {k!r}.")
        order = np.argsort(-self.induction, axis=None, kind="stable")[:k]
        n_heads = self.induction.shape[1]
        return [
            {"layer": int(i // n_heads), "head": int(i % n_heads), "label": head_label(int(i // n_heads), int(i % n_heads)),
             "induction": float(self.induction.flat[i]), "previous_token": float(self.previous_token.flat[i])}
            for i in order
        ]

    def top_previous_token(self, k: int = 10) -> list[tuple[int, int]]:
        n_heads = self.previous_token.shape[1]
        return [(int(i // n_heads), int(i % n_heads)) for i in np.argsort(-self.previous_token, axis=None, kind="stable")[:k]]

    def to_json(self, k: int = 10) -> dict:
        return {
            "length": self.length, "n_repeats": self.n_repeats, "seed": self.seed,
            "tokens": self.tokens, "induction": self.induction, "previous_token": self.previous_token,
            "loss_first_half": self.loss_first_half, "loss_repeated_half": self.loss_repeated_half,
            "loss": self.loss, "top_heads": self.top_heads(k),
        }

    def tables(self) -> dict[str, pd.DataFrame]:
        """``induction_loss_by_position``: the loss of predicting each token and the copy it is in;
        ``induction_scores`` / ``previous_token_scores``: one row per head; ``induction_top_heads``: the best 10."""
        positions = np.arange(1, len(self.tokens))
        loss = pd.DataFrame({"position": positions, "token": list(self.token_strings[1:]), "loss": self.loss,
                             "part": np.where(positions <= self.length, "first copy", "later copies")})
        return {
            "induction_loss_by_position": loss, "induction_scores": head_table(self.induction, "induction"),
            "previous_token_scores": head_table(self.previous_token, "previous_token"),
            "induction_top_heads": pd.DataFrame(self.top_heads(min(10, self.induction.size))),
        }

    def pattern_table(self, layer: int, head: int) -> pd.DataFrame:
        """Head ``(layer, head)``'s pattern on the sequence (:func:`pattern_table`), the induction stripe as targets."""
        return pattern_table(self.patterns[layer, head], self.token_strings, induction_stripe_mask(len(self.tokens), self.length))


    def composition_table(self, composition: CompositionScores) -> pd.DataFrame:
        """K-composition from every earlier head into ``composition``'s head (its ``composition_k`` table, the score
        as ``k_composition``, and ``times_random``), with each earlier head's ``previous_token`` score on this sequence."""
        df = composition.tables()["composition_k"].rename(columns={"score": "k_composition"})
        df["previous_token"] = self.previous_token[:composition.layer].ravel()
        return df

    def composition_heads(self, n: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]], list[tuple[int, int]]]:
        """``(previous, induction, fed)``: the ``n`` top previous-token heads of all but the last layer, the ``n`` top
        induction heads of all but the first, and the induction heads one of those previous-token heads precedes
        (the ones whose K-composition :meth:`pair_table` needs)."""
        every = self.induction.size
        previous = [h for h in self.top_previous_token(every) if h[0] < self.induction.shape[0] - 1][:n]
        induction = [(h["layer"], h["head"]) for h in self.top_heads(every) if h["layer"] > 0][:n]
        return previous, induction, [t for t in induction if any(s[0] < t[0] for s in previous)]

    def pair_table(self, compositions: Sequence[CompositionScores], n: int = 6) -> pd.DataFrame:
        """K-composition from the top previous-token heads into the top induction heads (:meth:`composition_heads`),
        one row per pair: ``previous_token_head``, ``induction_head``, ``k_composition`` (NaN where the previous-token
        head is not earlier) and ``times_random`` (over the random baseline).

        Args:
            compositions: the :class:`CompositionScores` into every ``fed`` head of :meth:`composition_heads`.
        """
        previous, induction, fed = self.composition_heads(n)
        into = {(c.layer, c.head): c.k for c in compositions}
        if missing := [head_label(*t) for t in fed if t not in into]:
            raise OutOfRangeError(f"pair_table needs the K-composition into {', '.join(missing)}; pass a CompositionRequest result for each.")
        baseline = compositions[0].baseline["k"] if compositions else np.nan  # one baseline: the same shapes for every pair
        df = grid_frame(pair_matrix(into, previous, induction), [head_label(*h) for h in previous],
                        [head_label(*h) for h in induction], "previous_token_head", "induction_head", "k_composition")
        df["times_random"] = df["k_composition"] / baseline
        return df


def run_repeated(model: LoadedModel, length: int = 50, n_repeats: int = 2, seed: int = 0, *,
                 low: int = DEFAULT_LOW, high: int = DEFAULT_HIGH, on_progress: Progress | None = None) -> RepeatedResult:
    """Run ``BOS + r * n_repeats`` once; score every head and the loss at every position."""
    tokens = repeated_tokens(model, length, n_repeats, seed, low=low, high=high)
    if on_progress:
        on_progress(0.1, "running the repeated sequence")
    logits, cache = model.run_with_cache(tokens, lambda n: n.endswith("attn.hook_pattern"))
    patterns = _patterns(cache, model.info.n_layers)
    loss = token_losses(logits, tokens)[0].numpy()
    first, repeated = half_means(loss, length)
    if on_progress:
        on_progress(1.0, "done")
    return RepeatedResult(
        tokens=tokens[0].numpy(), token_strings=tuple(model.token_strings(tokens[0])), length=length,
        n_repeats=n_repeats, seed=seed, induction=repeated_induction_score(patterns, length),
        previous_token=previous_token_score(patterns), loss=loss, loss_first_half=first,
        loss_repeated_half=repeated, patterns=patterns,
    )


# --- the user's own prompt ---------------------------------------------------------------
@dataclass(frozen=True)
class PromptInduction:
    """Induction on any text: every head's score and one head's pattern.

    Attributes:
        token_strings: ``(pos,)``; scores: ``(layer, head)`` (NaN when the prompt repeats no token);
        layer, head: the head shown; pattern: its ``(query, key)`` pattern; mask: ``(query, key)``
        bool, the cells an ideal induction head attends to.
    """

    token_strings: tuple[str, ...]
    scores: np.ndarray
    layer: int
    head: int
    pattern: np.ndarray
    mask: np.ndarray

    def to_json(self) -> dict:
        return {"tokens": list(self.token_strings), "induction": self.scores, "layer": self.layer, "head": self.head,
                "pattern": self.pattern, "mask": self.mask}

    def tables(self) -> dict[str, pd.DataFrame]:
        """``induction_own_text``: the head's pattern, the token after each earlier copy as targets."""
        return {"induction_own_text": pattern_table(self.pattern, self.token_strings, self.mask)}


def prompt_induction(model: LoadedModel, prompt: str, layer: int, head: int) -> PromptInduction:
    """Score every head's induction on ``prompt`` and return head ``(layer, head)``'s pattern."""
    check_index("layer", layer, model.info.n_layers)
    check_index("head", head, model.info.n_heads)
    tokens = model.tokenize(prompt)
    _, cache = model.run_with_cache(tokens, lambda n: n.endswith("attn.hook_pattern"))
    patterns = _patterns(cache, model.info.n_layers)
    ids = tokens[0].numpy()
    return PromptInduction(
        token_strings=tuple(model.token_strings(tokens[0])), scores=induction_score(patterns, ids),
        layer=layer, head=head, pattern=patterns[layer, head], mask=induction_mask(ids),
    )



# --- evidence 2: K-composition in the weights ---------------------------------------------
# One implementation for every page: :mod:`interp_core.techniques.composition` (the Circuits page's), norms
# folded as there (LayerNorm's centring included), one random baseline. The Induction page runs the very
# same :class:`~interp_core.techniques.composition.CompositionRequest` as the Circuits page and only reads
# its K column; the helpers below lay that column out for scripts and tests.
@dataclass(frozen=True)
class KComposition:
    """K-composition of every earlier head into one later head.

    Attributes:
        layer, head: the later (induction) head.
        scores: ``(layer, head)``; NaN for heads in layers ``>= layer`` (they cannot feed it).
        baseline_mean / baseline_std: the same score for random Gaussian matrices of the same shapes.
        fold_norm: whether each block's norm was folded in (weight, and centring for LayerNorm),
            as :func:`interp_core.techniques.circuits.layer_heads` does.
    """

    layer: int
    head: int
    scores: np.ndarray
    baseline_mean: float
    baseline_std: float
    fold_norm: bool

    def to_json(self) -> dict:
        return {"layer": self.layer, "head": self.head, "k_composition": self.scores,
                "baseline_mean": self.baseline_mean, "baseline_std": self.baseline_std, "fold_norm": self.fold_norm}


def k_composition(model: LoadedModel, layer: int, head: int, *, fold_norm: bool = True) -> KComposition:
    """K-composition scores of every head in layers ``< layer`` into head ``(layer, head)``."""
    check_index("layer", layer, model.info.n_layers)
    check_index("head", head, model.info.n_heads)
    comp = composition_scores(model, layer, head, fold_norms=fold_norm)
    scores = np.full((model.info.n_layers, model.info.n_heads), np.nan)
    scores[:layer] = comp.k
    return KComposition(layer, head, scores, comp.baseline["k"], comp.baseline_std, fold_norm)


def pair_matrix(into: Mapping[tuple[int, int], np.ndarray], sources: Sequence[tuple[int, int]],
                targets: Sequence[tuple[int, int]]) -> np.ndarray:
    """``(len(sources), len(targets))`` scores read from ``into[target]`` (``(target layer, n_heads)``, a
    :class:`~interp_core.techniques.composition.CompositionScores` grid); NaN where the source is not earlier.
    Targets no source precedes may be missing from ``into``."""
    out = np.full((len(sources), len(targets)), np.nan)
    for j, target in enumerate(targets):
        for i, (sl, sh) in enumerate(sources):
            if sl < target[0]:
                out[i, j] = into[target][sl, sh]
    return out


def k_composition_pairs(model: LoadedModel, sources: list[tuple[int, int]], targets: list[tuple[int, int]], *,
                        fold_norm: bool = True) -> np.ndarray:
    """``(len(sources), len(targets))`` K-composition scores; NaN where the source is not earlier."""
    for _, sh in sources:
        check_index("head", sh, model.info.n_heads)
    fed = [t for t in targets if any(sl < t[0] for sl, _ in sources)]
    return pair_matrix({t: composition_scores(model, *t, fold_norms=fold_norm).k for t in fed}, sources, targets)


# --- requests: what the Induction page and the CLI run ---------------------------------------
@dataclass(frozen=True)
class InductionRequest(Request):
    """Every head's induction and previous-token score and the loss at every position on
    ``BOS + r * repeats`` (``r``: ``length`` random ids from ``[low, high)``, drawn with ``seed``)."""

    length: int = 50
    repeats: int = 2
    seed: int = 0
    low: int = DEFAULT_LOW
    high: int = DEFAULT_HIGH
    label = "Running BOS + repeated random tokens"
    heavy = True

    def __post_init__(self) -> None:
        check_copies(self.length, self.repeats)
        check_seed(self.seed)

    def compute(self, model: LoadedModel, on_progress: Progress) -> RepeatedResult:
        return run_repeated(model, self.length, self.repeats, self.seed, low=self.low, high=self.high, on_progress=on_progress)


@dataclass(frozen=True)
class PromptInductionRequest(Request):
    """Every head's induction score on any text, and head ``(layer, head)``'s pattern on it."""

    prompt: str
    layer: int
    head: int
    label = "Scoring induction on your text"

    def check(self, model: LoadedModel) -> None:
        check_index("layer", self.layer, model.info.n_layers)
        check_index("head", self.head, model.info.n_heads)

    def compute(self, model: LoadedModel, on_progress: Progress) -> PromptInduction:
        return prompt_induction(model, self.prompt, self.layer, self.head)
