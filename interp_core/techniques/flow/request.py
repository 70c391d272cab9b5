"""The Information Flow request and result: every contribution of one prompt, and the route."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from interp_core.core.errors import BadPromptError, OutOfRangeError
from interp_core.core.model import LoadedModel
from interp_core.techniques.contract import Progress, Request
from interp_core.techniques.flow.contributions import contributions
from interp_core.techniques.flow.graph import Edge, route

DEFAULT_THRESHOLD = 0.04  # the LLM Transparency Tool's default


def check_threshold(threshold: object) -> float:
    """``threshold`` as a float in [0, 1], or OutOfRangeError."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)) \
            or not math.isfinite(float(threshold)) or not 0.0 <= float(threshold) <= 1.0:
        raise OutOfRangeError(f"threshold must be a number from 0 to 1 (a contribution), got {threshold!r}; "
                              f"{DEFAULT_THRESHOLD} is a good start.")
    return float(threshold)


def check_position(position: object, n_tokens: int) -> int:
    """The output position as an index ``0..n_tokens-1`` (negative counts from the end), or OutOfRangeError."""
    if isinstance(position, bool) or not isinstance(position, (int, np.integer)) or not -n_tokens <= position < n_tokens:
        raise OutOfRangeError(f"position must be a token index from 0 to {n_tokens - 1} (or -1 for the last), "
                              f"got {position!r}: the prompt has {n_tokens} tokens.")
    return int(position) % n_tokens


@dataclass(frozen=True)
class FlowRequest(Request):
    """Contributions of every block's parts for ``prompt``, and the route to one position's prediction.

    Attributes:
        prompt: the text; every one of its tokens is a column of the graph.
        threshold: edges whose contribution is below it are dropped, 0..1.
        position: the output position the route leads to; -1 (default) is the last token.
    """

    prompt: str
    threshold: float = DEFAULT_THRESHOLD
    position: int = -1
    label = "Computing the information flow"

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise BadPromptError("The prompt is empty: type some text, e.g. 'When Mary and John went to the store, "
                                 "John gave a drink to'.")
        object.__setattr__(self, "threshold", check_threshold(self.threshold))
        if isinstance(self.position, bool) or not isinstance(self.position, (int, np.integer)):
            raise OutOfRangeError(f"position must be a whole number (a token index, -1 for the last), got {self.position!r}.")
        object.__setattr__(self, "position", int(self.position))

    def check(self, model: LoadedModel) -> None:
        check_position(self.position, model.tokenize(self.prompt).shape[1])

    def compute(self, model: LoadedModel, on_progress: Progress) -> FlowResult:
        ids = model.tokenize(self.prompt)
        n_layers = model.info.n_layers
        found = contributions(model, ids, on_layer=lambda layer: on_progress((layer + 1) / n_layers, f"block {layer}"))
        result = FlowResult(tokens=tuple(model.token_strings(ids)), attn=found.attn, attn_resid=found.attn_resid,
                            mlp=found.mlp, mlp_resid=found.mlp_resid, threshold=self.threshold, position=0, edges=())
        return result.with_route(self.threshold, self.position)


@dataclass(frozen=True)
class FlowResult:
    """Contributions of one prompt and the route for one threshold and output position.

    Attributes:
        tokens: the prompt's tokens ``(pos,)``.
        attn: ``(layer, query, key, head)`` contributions to ``resid_mid`` (0 for ``key > query``).
        attn_resid: ``(layer, query)``, the residual part's contribution to ``resid_mid``.
        mlp, mlp_resid: ``(layer, query)``, contributions to ``resid_post``.
        threshold, position: the route's parameters (``position`` in ``0..pos-1``).
        edges: the route (:func:`interp_core.techniques.flow.graph.route`).
    """

    tokens: tuple[str, ...]
    attn: np.ndarray
    attn_resid: np.ndarray
    mlp: np.ndarray
    mlp_resid: np.ndarray
    threshold: float
    position: int
    edges: tuple[Edge, ...]

    def __post_init__(self) -> None:
        n_layers, n_pos = self.attn_resid.shape
        assert self.attn.shape[:3] == (n_layers, n_pos, n_pos) and n_pos == len(self.tokens)
        assert self.mlp.shape == self.mlp_resid.shape == (n_layers, n_pos)

    @property
    def n_layers(self) -> int:
        return self.attn.shape[0]

    def with_route(self, threshold: float, position: int = -1) -> FlowResult:
        """The same contributions with the route for another threshold or output position (no model run)."""
        threshold = check_threshold(threshold)
        position = check_position(position, len(self.tokens))
        edges = route(self.attn, self.attn_resid, self.mlp, threshold, position)
        return dataclasses.replace(self, threshold=threshold, position=position, edges=edges)

    def to_json(self) -> dict:
        return {
            "tokens": list(self.tokens),
            "attn_contrib": self.attn.tolist(),
            "attn_resid_contrib": self.attn_resid.tolist(),
            "mlp_contrib": self.mlp.tolist(),
            "mlp_resid_contrib": self.mlp_resid.tolist(),
            "edges": [edge.to_json() for edge in self.edges],
            "threshold": self.threshold,
        }

    def edge_table(self) -> pd.DataFrame:
        """One row per route edge: ``layer`` (block), ``source``, ``target`` (positions), their tokens, kind, weight."""
        rows = [{"layer": e.layer, "source": e.source[1], "target": e.target[1], "source_token": self.tokens[e.source[1]],
                 "target_token": self.tokens[e.target[1]], "kind": e.kind, "weight": e.weight} for e in self.edges]
        return pd.DataFrame(rows, columns=["layer", "source", "target", "source_token", "target_token", "kind", "weight"])

    def route_table(self, threshold: float, position: int = -1) -> pd.DataFrame:
        """:meth:`edge_table` of the route for ``threshold`` and output ``position`` (-1: the last), from these
        contributions (:meth:`with_route`; no model run)."""
        return self.with_route(threshold, position).edge_table()

    def block_table(self) -> pd.DataFrame:
        """One row per (layer, position): the residual's and the MLP's shares of each block's wholes."""
        n_layers, n_pos = self.attn_resid.shape
        return pd.DataFrame({
            "layer": np.repeat(np.arange(n_layers), n_pos), "position": np.tile(np.arange(n_pos), n_layers),
            "token": list(self.tokens) * n_layers, "attn_total": self.attn.sum((2, 3)).ravel(),
            "attn_resid": self.attn_resid.ravel(), "mlp": self.mlp.ravel(), "mlp_resid": self.mlp_resid.ravel(),
        })

    def head_table(self, layer: int, query: int, key: int | None = None) -> pd.DataFrame:
        """The heads carrying block ``layer``'s attention into ``query``: from ``key`` alone, or summed over keys."""
        values = self.attn[layer, query].sum(0) if key is None else self.attn[layer, query, key]
        table = pd.DataFrame({"head": np.arange(values.shape[0]), "contribution": values})
        return table.sort_values("contribution", ascending=False, ignore_index=True)

    def tables(self) -> dict[str, pd.DataFrame]:
        """``flow_route`` (the edges), ``flow_blocks`` (per layer and position) and ``flow_attention``
        (every (layer, query, key <= query, head) contribution)."""
        n_layers, n_pos, _, n_heads = self.attn.shape
        layer, query, key, head = np.indices(self.attn.shape).reshape(4, -1)
        keep = key <= query
        attention = pd.DataFrame({"layer": layer[keep], "query": query[keep], "key": key[keep], "head": head[keep],
                                  "contribution": self.attn.reshape(-1)[keep]})
        return {"flow_route": self.edge_table(), "flow_blocks": self.block_table(), "flow_attention": attention}
