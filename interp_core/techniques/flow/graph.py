"""The information-flow graph and the route to one prediction.

Nodes are ``(boundary, position)``: boundary ``b = 0..n_layers`` is the residual stream entering
block ``b`` (``b = n_layers`` is the final residual, the one the unembedding reads). Between
boundaries ``l`` and ``l + 1`` at query position ``q`` there are three kinds of edge:

- ``attn``: ``(l, k) -> (l + 1, q)`` for every key ``k <= q``, weight = the attention parts'
  contributions to ``resid_mid[q]`` of block ``l``, summed over heads;
- ``resid``: ``(l, q) -> (l + 1, q)``, weight = the residual part's contribution to ``resid_mid[q]``;
- ``mlp``: ``(l, q) -> (l + 1, q)`` through the MLP node of ``(l, q)``, weight = ``mlp_out[q]``'s
  contribution to ``resid_post[q]``.

Edges under the threshold are dropped; the route is what is reachable backwards from the output
position's final node over the edges that remain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("attn", "resid", "mlp")


@dataclass(frozen=True)
class Edge:
    """One edge of the route: ``source`` and ``target`` are ``(boundary, position)``."""

    source: tuple[int, int]
    target: tuple[int, int]
    kind: str
    weight: float

    @property
    def layer(self) -> int:
        """The block the edge goes through."""
        return self.source[0]

    def to_json(self) -> dict:
        node = lambda n: {"layer": int(n[0]), "position": int(n[1])}  # noqa: E731
        return {"from": node(self.source), "to": node(self.target), "kind": self.kind, "weight": float(self.weight)}


def route(attn: np.ndarray, attn_resid: np.ndarray, mlp: np.ndarray, threshold: float, position: int) -> tuple[Edge, ...]:
    """The edges at or above ``threshold`` reachable backwards from ``(n_layers, position)``.

    Args:
        attn: ``(layer, query, key, head)`` contributions; ``attn_resid``, ``mlp``: ``(layer, query)``.

    Returns:
        Edges ordered from the last block down, each block's edges by query, then kind, then key.
    """
    n_layers = attn.shape[0]
    per_key = attn.sum(-1)  # (layer, query, key): heads summed
    reached = {position}
    edges: list[Edge] = []
    for layer in reversed(range(n_layers)):
        sources: set[int] = set()
        for q in sorted(reached):
            target = (layer + 1, q)
            for k in np.flatnonzero(per_key[layer, q, : q + 1] >= threshold):
                edges.append(Edge((layer, int(k)), target, "attn", float(per_key[layer, q, k])))
                sources.add(int(k))
            for kind, weight in (("resid", attn_resid[layer, q]), ("mlp", mlp[layer, q])):
                if weight >= threshold:
                    edges.append(Edge((layer, q), target, kind, float(weight)))
                    sources.add(q)
        reached = sources
    return tuple(edges)
