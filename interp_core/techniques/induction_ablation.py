"""Induction heads, evidence by ablation: knock out the top induction heads and watch the repeated part's loss.

If the heads that :mod:`interp_core.techniques.induction` scores highest really do the copying on
``BOS + r * n``, ablating them brings the loss on the later copies back up towards the first copy's,
while as many random heads from the same layers barely move it. Random draws are seeded, so the
comparison is reproducible. Losses are in nats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from interp_core.core.errors import OutOfRangeError, WorkbenchError
from interp_core.core.head_id import head_label
from interp_core.core.model import LoadedModel
from interp_core.techniques.ablation import ablation_hooks, reference_activations
from interp_core.techniques.contract import Progress, Request
from interp_core.techniques.induction import (
    DEFAULT_HIGH,
    DEFAULT_LOW,
    check_copies,
    check_seed,
    half_means,
    repeated_tokens,
    run_repeated,
    token_losses,
)


def random_heads_like(targets: list[tuple[int, int]], n_layers: int, n_heads: int,
                      generator: np.random.Generator) -> list[tuple[int, int]]:
    """As many random heads as ``targets``, each from the same layer as one target, none of them a target.

    When a layer has too few other heads (tiny models) the rest come from any layer.
    """
    taken = set(targets)
    chosen: list[tuple[int, int]] = []
    short = 0
    for layer in sorted({L for L, _ in targets}):
        need = sum(1 for L, _ in targets if L == layer)
        pool = [(layer, h) for h in range(n_heads) if (layer, h) not in taken]
        picks = generator.permutation(len(pool))[:need]
        chosen += [pool[i] for i in picks]
        short += need - len(picks)
    if short:
        pool = [(L, h) for L in range(n_layers) for h in range(n_heads) if (L, h) not in taken and (L, h) not in chosen]
        chosen += [pool[i] for i in generator.permutation(len(pool))[:short]]
    return sorted(chosen)


@dataclass(frozen=True)
class AblationEvidence:
    """Repeated-half loss with the top-k induction heads ablated, against k random heads.

    Attributes:
        method: ``zero`` or ``mean`` (mean over a reference batch of other repeated sequences).
        top: labels of the ablated induction heads; random_sets: labels of each random draw.
        loss_clean / loss_top: per-target loss ``(pos - 1,)``; loss_random: ``(draws, pos - 1)``.
    """

    method: str
    length: int
    top: tuple[str, ...]
    random_sets: tuple[tuple[str, ...], ...]
    loss_clean: np.ndarray
    loss_top: np.ndarray
    loss_random: np.ndarray

    def __post_init__(self) -> None:
        assert self.loss_random.shape == (len(self.random_sets), len(self.loss_clean)) == (len(self.random_sets), len(self.loss_top))

    @property
    def clean_repeated(self) -> float:
        return half_means(self.loss_clean, self.length)[1]

    @property
    def top_repeated(self) -> float:
        return half_means(self.loss_top, self.length)[1]

    @property
    def random_repeated(self) -> np.ndarray:
        """Repeated-half loss of each random draw, ``(draws,)``."""
        return self.loss_random[:, self.length:].mean(-1)

    def to_json(self) -> dict:
        rnd = self.random_repeated
        return {
            "method": self.method, "top_heads": list(self.top), "random_heads": [list(s) for s in self.random_sets],
            "loss_repeated_half_clean": self.clean_repeated, "loss_repeated_half_top": self.top_repeated,
            "loss_repeated_half_random": rnd, "rise_top": self.top_repeated - self.clean_repeated,
            "rise_random_mean": float(rnd.mean() - self.clean_repeated), "rise_random_std": float(rnd.std()),
        }

    def tables(self) -> dict[str, pd.DataFrame]:
        """``induction_ablation``: the repeated-part loss intact, with the top heads ablated, and per random draw."""
        rnd, k = self.random_repeated, len(self.top)
        return {"induction_ablation": pd.DataFrame({
            "ablated": ["none", f"top {k} induction"] + [f"random {i + 1}" for i in range(len(rnd))],
            "heads": ["—", ", ".join(self.top)] + [", ".join(s) for s in self.random_sets],
            "loss": [self.clean_repeated, self.top_repeated, *rnd],
            "kind": ["intact", "induction heads"] + ["random heads"] * len(rnd),
        })}


def check_ablation(method: str, n_draws: int) -> None:
    """The ablation options that need no model: ``method`` zero or mean, 1 to 50 random draws."""
    if method not in ("zero", "mean"):
        raise WorkbenchError(f"method must be 'zero' or 'mean', got {method!r}")
    if isinstance(n_draws, bool) or not isinstance(n_draws, (int, np.integer)) or not 1 <= n_draws <= 50:
        raise OutOfRangeError(f"the number of random draws must be between 1 and 50, got {n_draws}.")


def check_k(k: int, n_heads_total: int) -> None:
    """At most half the model's heads are ablated at once (the random sets need the rest)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n_heads_total // 2:
        raise OutOfRangeError(f"k must be between 1 and {n_heads_total // 2} (half the model's heads), got {k}.")


def _loss_with(model: LoadedModel, tokens: torch.Tensor, heads: list[tuple[int, int]], method: str,
               reference: dict[str, torch.Tensor] | None) -> np.ndarray:
    hooks = ablation_hooks(model, [("head", L, h) for L, h in heads], method, reference) if heads else []
    return token_losses(model.forward(tokens, hooks=hooks), tokens)[0].numpy()


def ablation_evidence(model: LoadedModel, length: int = 50, n_repeats: int = 2, seed: int = 0, *, k: int = 5,
                      method: str = "zero", n_draws: int = 5, draw_seed: int = 0, n_reference: int = 8,
                      low: int = DEFAULT_LOW, high: int = DEFAULT_HIGH,
                      on_progress: Progress | None = None) -> AblationEvidence:
    """Ablate the ``k`` top induction heads of ``BOS + r * n_repeats``, then ``n_draws`` sets of
    ``k`` random heads from the same layers, and record the loss at every position.

    ``mean`` ablation replaces a head's ``z`` by its mean over ``n_reference`` other repeated
    sequences (seeds ``seed + 1 ...``) of the same shape.
    """
    n_layers, n_heads = model.info.n_layers, model.info.n_heads
    check_ablation(method, n_draws)
    check_k(k, n_layers * n_heads)
    scores = run_repeated(model, length, n_repeats, seed, low=low, high=high)
    tokens = torch.as_tensor(scores.tokens)[None]
    top = [(h["layer"], h["head"]) for h in scores.top_heads(k)]
    reference = None
    if method == "mean":
        batch = torch.cat([repeated_tokens(model, length, n_repeats, seed + 1 + i, low=low, high=high) for i in range(n_reference)])
        reference = reference_activations(model, batch, [("head", L, 0) for L in range(n_layers)])
    generator = np.random.default_rng(draw_seed)
    draws = [random_heads_like(top, n_layers, n_heads, generator) for _ in range(n_draws)]
    loss_top = _loss_with(model, tokens, top, method, reference)
    randoms = []
    for i, heads in enumerate(draws):
        if on_progress:
            on_progress((i + 1) / (n_draws + 1), f"random draw {i + 1} of {n_draws}")
        randoms.append(_loss_with(model, tokens, heads, method, reference))
    if on_progress:
        on_progress(1.0, "done")
    return AblationEvidence(
        method=method, length=length, top=tuple(head_label(*h) for h in top),
        random_sets=tuple(tuple(head_label(*h) for h in d) for d in draws),
        loss_clean=scores.loss, loss_top=loss_top, loss_random=np.stack(randoms),
    )


@dataclass(frozen=True)
class AblationRequest(Request):
    """The repeated part's loss with the top ``k`` induction heads ablated (``method``), against
    ``draws`` sets of ``k`` random heads from the same layers, on the sequence of :class:`InductionRequest`."""

    length: int = 50
    repeats: int = 2
    seed: int = 0
    k: int = 5
    method: str = "zero"
    draws: int = 5
    low: int = DEFAULT_LOW
    high: int = DEFAULT_HIGH
    label = "Ablating the top induction heads and sets of random heads"
    heavy = True

    def __post_init__(self) -> None:
        check_copies(self.length, self.repeats)
        check_seed(self.seed)
        check_ablation(self.method, self.draws)

    def check(self, model: LoadedModel) -> None:
        check_k(self.k, model.info.n_layers * model.info.n_heads)

    def compute(self, model: LoadedModel, on_progress: Progress) -> AblationEvidence:
        return ablation_evidence(model, self.length, self.repeats, self.seed, k=self.k, method=self.method, n_draws=self.draws,
                                 low=self.low, high=self.high, on_progress=on_progress)
