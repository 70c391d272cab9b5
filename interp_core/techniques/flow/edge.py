"""One edge of the flow graph up close: what it writes (a lens), and whether the model needs it (ablation).

A contribution (:mod:`interp_core.techniques.flow.contributions`) is a *correlational* proximity
score: a part close to its whole in L1. Whether the prediction depends on that part is a causal
question, answered here by removing it from one run:

- ``edge``: subtract head ``h``'s part from source ``k`` at query ``q``, ``A[h, q, k] * (v[k, g(h)] @ W_O[h])``,
  from block ``l``'s attention output at ``q`` (so ``resid_mid[q]`` loses exactly that part; blocks
  before ``l`` are unchanged, so the part computed on the clean run is the one the edited run has);
- ``head``: zero head ``h``'s ``z`` at ``q`` in block ``l`` (every source of that head at once).

The metric is the log-probability, at the output position, of the token the clean run predicts there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from interp_core.core.errors import OutOfRangeError, check_index
from interp_core.core.hooks import HookList
from interp_core.core.model import LoadedModel
from interp_core.core.names import hook_name
from interp_core.techniques.contract import Progress
from interp_core.techniques.flow.contributions import value_outputs
from interp_core.techniques.flow.request import FlowRequest, check_position
from interp_core.techniques.steering import promoted_tokens

MODES = ("edge", "head")
TOP_K = 8


def _index(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise OutOfRangeError(f"{what} must be a whole number, got {value!r}.")
    return int(value)


@dataclass(frozen=True)
class _Site(FlowRequest):
    """Where in the graph: block ``layer``, ``query`` position, ``source`` position (None: every key)
    and ``head`` (None: every head). ``position`` is the output position (-1: the last)."""

    layer: int = 0
    query: int = -1
    source: int | None = None
    head: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("layer", "query"):
            object.__setattr__(self, name, _index(getattr(self, name), name))
        for name in ("source", "head"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _index(getattr(self, name), name))

    def check(self, model: LoadedModel) -> None:
        n_tokens = model.tokenize(self.prompt).shape[1]
        check_index("layer", self.layer, model.info.n_layers)
        query = check_position(self.query, n_tokens)
        check_position(self.position, n_tokens)
        if self.head is not None:
            check_index("head", self.head, model.info.n_heads)
        if self.source is not None and not 0 <= self.source <= query:
            raise OutOfRangeError(f"source must be a position from 0 to the query position {query} (attention reads "
                                  f"only earlier tokens), got {self.source}.")

    def part(self, model: LoadedModel, ids: torch.Tensor) -> torch.Tensor:
        """The selected heads' write from the selected sources into ``query`` at block ``layer``, ``(d_model,)``
        (without the output projection's bias)."""
        names = [hook_name("attn.hook_v", self.layer), hook_name("attn.hook_pattern", self.layer)]
        _, cache = model.run_with_cache(ids, names, stop_at_layer=self.layer + 1)
        vo = value_outputs(model, cache, self.layer)  # (key, head, d_model)
        weights = cache[names[1]][0, :, self.query % ids.shape[1]].T  # (key, head)
        keys = slice(None) if self.source is None else slice(self.source, self.source + 1)
        heads = slice(None) if self.head is None else slice(self.head, self.head + 1)
        return torch.einsum("kh,khm->m", weights[keys, heads], vo[keys, heads])


@dataclass(frozen=True)
class EdgeLensRequest(_Site):
    """The tokens the selected part promotes through the final norm's weight and the unembedding."""

    label = "Reading the edge through the unembedding"

    def compute(self, model: LoadedModel, on_progress: Progress) -> EdgeLens:
        with torch.no_grad():
            vector = self.part(model, model.tokenize(self.prompt))
            tokens, scores = promoted_tokens(model, vector, min(TOP_K, model.info.d_vocab))
        return EdgeLens(tokens, scores, float(vector.norm()))


@dataclass(frozen=True)
class EdgeLens:
    """``tokens`` with the largest ``(w_norm * centre(part)) @ W_U`` ``scores (k,)``; ``norm`` = ``|part|_2``."""

    tokens: tuple[str, ...]
    scores: np.ndarray
    norm: float

    def to_json(self) -> dict:
        return {"norm": self.norm, "promoted": [{"token": t, "score": float(s)} for t, s in zip(self.tokens, self.scores)]}

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"flow_edge_lens": pd.DataFrame({"token": [repr(t) for t in self.tokens], "score": self.scores})}


@dataclass(frozen=True)
class EdgeTestRequest(_Site):
    """Ablate the edge (``mode="edge"``: needs ``source`` and ``head``) or the whole head at ``query``
    (``mode="head"``: needs ``head``) and compare the prediction at ``position``."""

    mode: str = "edge"
    label = "Ablating the edge"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in MODES:
            raise OutOfRangeError(f"mode must be one of {MODES}, got {self.mode!r}.")
        if self.head is None or (self.mode == "edge" and self.source is None):
            needs = "a head and a source position" if self.mode == "edge" else "a head"
            raise OutOfRangeError(f"Ablating {'an edge' if self.mode == 'edge' else 'a head'} needs {needs}; pick them first.")

    def hooks(self, model: LoadedModel, ids: torch.Tensor) -> HookList:
        """The editing hook of this ablation on a run of ``ids (1, pos)``."""
        query = self.query % ids.shape[1]
        if self.mode == "head":
            def zero_head(z: torch.Tensor, name: str) -> torch.Tensor:
                z = z.clone()
                z[:, query, self.head] = 0.0  # z: (batch, pos, head, d_head)
                return z
            return [(hook_name("attn.hook_z", self.layer), zero_head)]
        part = self.part(model, ids)

        def remove_part(out: torch.Tensor, name: str) -> torch.Tensor:
            out = out.clone()
            out[:, query] -= part.to(out.dtype)  # attn_out: (batch, pos, d_model)
            return out
        return [(hook_name("hook_attn_out", self.layer), remove_part)]

    def compute(self, model: LoadedModel, on_progress: Progress) -> EdgeTest:
        ids = model.tokenize(self.prompt)
        position = self.position % ids.shape[1]
        with torch.no_grad():
            clean = model.forward(ids)[0, position].double().log_softmax(-1)
            ablated = model.forward(ids, hooks=self.hooks(model, ids))[0, position].double().log_softmax(-1)
        target = int(clean.argmax())
        kl = float((clean.exp() * (clean - ablated)).sum())
        top = lambda lp: (model.token_strings(lp.topk(5).indices), lp.topk(5).values.exp().cpu().numpy())  # noqa: E731
        return EdgeTest(self.mode, model.token_strings([target])[0], float(clean[target]), float(ablated[target]),
                        model.token_strings([int(ablated.argmax())])[0], kl, *top(clean), *top(ablated))


@dataclass(frozen=True)
class EdgeTest:
    """The prediction at the output position, clean and ablated.

    Attributes:
        target: the clean run's top token; ``clean_logprob``, ``ablated_logprob``: its log-probability.
        ablated_top: the ablated run's top token; ``kl``: KL(clean || ablated) in nats.
        clean_tokens, clean_probs, ablated_tokens, ablated_probs: each run's top 5 ``(5,)``.
    """

    mode: str
    target: str
    clean_logprob: float
    ablated_logprob: float
    ablated_top: str
    kl: float
    clean_tokens: list[str]
    clean_probs: np.ndarray
    ablated_tokens: list[str]
    ablated_probs: np.ndarray

    @property
    def change(self) -> float:
        """Ablated minus clean log-probability of the clean prediction (negative: the edge helped it)."""
        return self.ablated_logprob - self.clean_logprob

    def to_json(self) -> dict:
        return {"mode": self.mode, "target": self.target, "clean_logprob": self.clean_logprob,
                "ablated_logprob": self.ablated_logprob, "logprob_change": self.change, "ablated_top": self.ablated_top,
                "kl": self.kl}

    def tables(self) -> dict[str, pd.DataFrame]:
        rows = [{"run": run, "rank": i + 1, "token": repr(t), "prob": float(p)}
                for run, tokens, probs in (("clean", self.clean_tokens, self.clean_probs),
                                           ("ablated", self.ablated_tokens, self.ablated_probs))
                for i, (t, p) in enumerate(zip(tokens, probs))]
        return {"flow_edge_test": pd.DataFrame(rows)}
