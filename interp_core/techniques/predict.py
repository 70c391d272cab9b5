"""Next-token prediction: the prompt's tokens and the model's top-k continuations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from interp_core.core.errors import OutOfRangeError
from interp_core.core.model import LoadedModel
from interp_core.techniques.contract import Progress, Request


@dataclass(frozen=True)
class Prediction:
    """Top-k next tokens after a prompt.

    Attributes:
        tokens: the prompt's tokens as text, ``(pos,)``.
        token_ids: their ids, ``(pos,)``.
        top_tokens: the k most likely next tokens, best first, ``(k,)``.
        top_ids: their ids, ``(k,)``.
        top_probs: their probabilities, ``(k,)``, descending.
    """

    tokens: tuple[str, ...]
    token_ids: np.ndarray
    top_tokens: tuple[str, ...]
    top_ids: np.ndarray
    top_probs: np.ndarray

    def __post_init__(self) -> None:
        assert len(self.top_tokens) == len(self.top_ids) == len(self.top_probs)
        assert np.all(np.diff(self.top_probs) <= 1e-7), "top_probs must be sorted"

    def to_json(self) -> dict:
        return {
            "tokens": list(self.tokens),
            "top": [{"token": t, "id": int(i), "prob": float(p)} for t, i, p in zip(self.top_tokens, self.top_ids, self.top_probs)],
        }

    def tables(self) -> dict[str, pd.DataFrame]:
        """``next_tokens``: rank, token, id and probability of each candidate, best first."""
        return {"next_tokens": pd.DataFrame({"rank": range(1, len(self.top_ids) + 1), "token": list(self.top_tokens),
                                             "id": self.top_ids.astype(int), "prob": self.top_probs.astype(float)})}


@dataclass(frozen=True)
class PredictRequest(Request):
    """The prompt and how many next-token candidates to list (``top_k`` >= 1)."""

    prompt: str
    top_k: int = 10
    label = "Predicting the next token"

    def __post_init__(self) -> None:
        _check_top_k(self.top_k)

    def compute(self, model: LoadedModel, on_progress: Progress) -> Prediction:
        return predict_next(model, self.prompt, self.top_k)


def _check_top_k(top_k: object) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise OutOfRangeError(f"top-k (how many next tokens to list) must be 1 or more, got {top_k!r}; e.g. 10.")


def predict_next(model: LoadedModel, prompt: str, top_k: int = 10, *, max_tokens: int | None = None) -> Prediction:
    """Run ``prompt`` once and return its tokens and the ``top_k`` most likely next tokens.

    Raises:
        OutOfRangeError: ``top_k`` is below 1 (or not a whole number).
    """
    _check_top_k(top_k)
    ids = model.tokenize(prompt, max_tokens=max_tokens)
    probs = model.forward(ids, last_position_only=True)[0, -1].float().softmax(-1)
    values, indices = probs.topk(min(top_k, probs.shape[-1]))
    return Prediction(
        tokens=tuple(model.token_strings(ids[0])),
        token_ids=ids[0].cpu().numpy(),
        top_tokens=tuple(model.token_strings(indices)),
        top_ids=indices.cpu().numpy(),
        top_probs=values.cpu().numpy(),
    )
