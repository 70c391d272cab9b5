"""Recent recording runs, kept so that sibling requests on one prompt share one forward pass.

A page often asks two requests that need the same plain forward: the logit lens and the tuned
lens both read the residual stream at every boundary; a DLA and the split of one of its heads
by source position both read the run's ``hook_z``; the attention patterns and their check from
the weights both read ``q``, ``k`` and the patterns. :func:`recorded_run` gives each the same
``model.run_with_cache`` result for the same tokens and hook names, computing it once.

Only plain runs (no editing hooks, no gradients) are remembered, so a remembered run is exactly
what a fresh one returns. The model is frozen after loading, so its runs never go stale; the
store belongs to the model object and goes with it. Callers must treat what they get as
read-only (it is shared): copy before editing in place.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence

import torch

from interp_core.core.model import LoadedModel

MAX_RUNS = 16  # per model: enough for one page's sibling requests while a room of sessions runs others in between
MAX_BYTES = 256 << 20  # per model: a 20-token run of the default model with its logits holds about 5-10 MB

_lock = threading.Lock()
_stores: weakref.WeakKeyDictionary[LoadedModel, OrderedDict] = weakref.WeakKeyDictionary()


def recorded_run(
    model: LoadedModel, tokens: torch.Tensor, names: Sequence[str], *, stop_at_layer: int | None = None
) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
    """``model.run_with_cache(tokens, names, stop_at_layer=...)``, remembered for the last :data:`MAX_RUNS` runs.

    Args:
        tokens: ``(batch, pos)`` token ids.
        names: the hook points to record; sibling requests pass the same list to share a run.

    Returns:
        ``(logits (batch, pos, d_vocab) or None, {name: activation})``, shared: do not edit in place.
    """
    key = (tuple(tokens.shape), tuple(tokens.flatten().tolist()), tuple(names), stop_at_layer)
    with _lock:
        store = _stores.setdefault(model, OrderedDict())
        if key in store:
            store.move_to_end(key)
            return store[key]
    found = model.run_with_cache(tokens, list(names), stop_at_layer=stop_at_layer)  # outside the lock: runs queue on the model's own
    with _lock:
        store[key] = found
        while len(store) > MAX_RUNS or (len(store) > 1 and sum(map(_nbytes, store.values())) > MAX_BYTES):
            store.popitem(last=False)
    return found


def _nbytes(run: tuple[torch.Tensor | None, dict[str, torch.Tensor]]) -> int:
    logits, cache = run
    return (0 if logits is None else logits.nbytes) + sum(t.nbytes for t in cache.values())
