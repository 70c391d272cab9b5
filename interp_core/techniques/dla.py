"""Direct logit attribution (DLA): which components push the answer's logit up, directly?

Context. The final residual stream is a sum of pieces, each written by one component:
``resid = embed (+ pos_embed) + sum_L (attn_out_L + mlp_out_L)``, and each attention output is
itself ``sum_h z_h @ W_O[h] + b_O``. The logit of a token is ``unembed(final_norm(resid))``.

Intuition. Freeze the final norm's scale at the value the real run used (its ``hook_scale``);
then the norm is an affine map, and the logit (difference) splits exactly into one number per
piece plus a bias term. For LayerNorm a piece ``x`` contributes
``centre(x) / scale * w . u``; for RMSNorm ``x / scale * w . u``, where
``u = W_U[:, answer] - W_U[:, wrong]`` (or ``W_U[:, answer]`` when there is no wrong token).
The bias term is ``b_norm . u + (b_U[answer] - b_U[wrong])``. Contributions plus bias equal the
model's own logit (difference) to float tolerance: the tests hold the code to that.

Because every step is linear once the scale is frozen, we fold norm weight, centring and scale
into one *effective direction* ``d = centre(w * u) / scale`` (centring ``w * u`` is the same as
centring the piece, since ``centre`` is a symmetric projection), and each contribution is a
plain dot product ``x . d``. A head's share is ``z_h @ W_O[h] . d``; splitting ``z_h`` by source
position, ``z_h[q] = sum_k A[q, k] v_{kv(h)}[k]``, says which earlier token's value vector
carried it.

Caveat. These are *direct* effects: what a component writes straight into the logit. What it
does through later components (e.g. a head that moves information an MLP then uses) is not
counted; activation patching measures total effects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from interp_core.core.errors import OutOfRangeError, WorkbenchError, check_index
from interp_core.core.head_id import head_label
from interp_core.core.model import LoadedModel
from interp_core.core.recent_runs import recorded_run
from interp_core.techniques.contract import Progress, Request

# Sums are taken in float64 so the closing check measures the model's float32 error, not ours.
_F64 = torch.float64


class SameTokenError(WorkbenchError):
    """The wrong answer is the same token as the answer, so the logit difference is always zero."""


@dataclass(frozen=True)
class Target:
    """What is being attributed: a token position and the answer (and optional wrong) token."""

    tokens: tuple[str, ...]
    token_ids: torch.Tensor  # (1, pos)
    position: int
    answer: str
    answer_id: int
    wrong: str | None
    wrong_id: int | None

    @property
    def metric(self) -> str:
        if self.wrong is None:
            return f"logit({self.answer!r})"
        return f"logit({self.answer!r}) - logit({self.wrong!r})"


@dataclass(frozen=True)
class DLAResult:
    """One prompt's direct logit attribution at one position.

    Attributes:
        tokens: the prompt's tokens ``(pos,)``; ``position`` indexes them.
        answer, answer_id, wrong, wrong_id: the tokens of the metric (``wrong`` may be None).
        metric: a readable name of the metric, e.g. ``"logit(' Paris') - logit(' Rome')"``.
        labels: component names ``(component,)``: ``embed``, ``pos_embed`` (learned positions
            only), then ``L{L} attn`` and ``L{L} mlp`` for every layer, in residual order.
        values: each component's direct contribution ``(component,)``.
        running: cumulative sum of ``values`` ``(component,)``: the frozen-norm projection of
            the residual as it accumulates.
        heads: per-head contributions ``(layer, head)``.
        attn_bias: each layer's ``b_O`` contribution ``(layer,)``; ``heads.sum(1) + attn_bias``
            equals the layer's attention contribution.
        bias_term: ``b_norm . u + b_U`` difference (a float).
        total: ``values.sum() + bias_term``.
        model_logit_diff: the model's own logit (difference) at ``position``.
        scale: the final norm's frozen scale at ``position``.
    """

    tokens: tuple[str, ...]
    position: int
    answer: str
    answer_id: int
    wrong: str | None
    wrong_id: int | None
    metric: str
    labels: tuple[str, ...]
    values: np.ndarray
    running: np.ndarray
    heads: np.ndarray
    attn_bias: np.ndarray
    bias_term: float
    total: float
    model_logit_diff: float
    scale: float

    def __post_init__(self) -> None:
        assert self.values.shape == (len(self.labels),) == self.running.shape
        assert self.heads.shape[0] == self.attn_bias.shape[0]
        assert 0 <= self.position < len(self.tokens)

    @property
    def gap(self) -> float:
        """``total - model_logit_diff``: how far the decomposition is from closing (should be ~0)."""
        return self.total - self.model_logit_diff

    def to_json(self) -> dict:
        return {
            "tokens": list(self.tokens),
            "position": self.position,
            "answer": self.answer,
            "answer_id": self.answer_id,
            "wrong": self.wrong,
            "wrong_id": self.wrong_id,
            "metric": self.metric,
            "layers": [{"name": n, "value": float(v)} for n, v in zip(self.labels, self.values)],
            "running": [float(v) for v in self.running],
            "heads": self.heads.tolist(),
            "attn_bias": self.attn_bias.tolist(),
            "bias_term": self.bias_term,
            "total": self.total,
            "model_logit_diff": self.model_logit_diff,
            "gap": self.gap,
        }

    def tables(self) -> dict[str, pd.DataFrame]:
        """``dla_components``: one row per component (residual order) with its kind, contribution and the
        running total; ``dla_heads``: one row per (layer, head) with its contribution and name."""
        components = pd.DataFrame(
            {
                "component": list(self.labels),
                "kind": [label.split()[-1] if label.startswith("L") else "embedding" for label in self.labels],
                "contribution": self.values,
                "running_total": self.running,
            }
        )
        layers, heads = np.meshgrid(np.arange(self.heads.shape[0]), np.arange(self.heads.shape[1]), indexing="ij")
        head_frame = pd.DataFrame({"layer": layers.ravel().tolist(), "head": heads.ravel().tolist(), "contribution": self.heads.ravel()})
        head_frame["name"] = [head_label(layer, head) for layer, head in zip(head_frame["layer"], head_frame["head"])]
        return {"dla_components": components, "dla_heads": head_frame}


@dataclass(frozen=True)
class HeadSourceResult:
    """One head's direct contribution split by the source position its value came from.

    Attributes:
        tokens: the prompt's tokens ``(pos,)``.
        layer, head, kv_head: the head and the KV head it reads.
        position: the query position (where the logit is read).
        values: contribution carried by each source position ``(key,)``; zero after ``position``.
        attention: the head's attention from ``position`` to each source ``(key,)``.
        head_total: the head's whole direct contribution; ``values.sum()`` equals it.
    """

    tokens: tuple[str, ...]
    layer: int
    head: int
    kv_head: int
    position: int
    metric: str
    values: np.ndarray
    attention: np.ndarray
    head_total: float

    def __post_init__(self) -> None:
        assert self.values.shape == self.attention.shape == (len(self.tokens),)

    def to_json(self) -> dict:
        return {
            "tokens": list(self.tokens), "layer": self.layer, "head": self.head, "kv_head": self.kv_head,
            "position": self.position, "metric": self.metric, "values": self.values.tolist(),
            "attention": self.attention.tolist(), "head_total": self.head_total,
        }

    def tables(self) -> dict[str, pd.DataFrame]:
        """``dla_head_sources``: one row per source position up to ``position`` with its token (repr),
        the contribution it carried and the head's attention to it."""
        frame = pd.DataFrame(
            {
                "source": range(len(self.tokens)),
                "token": [repr(t) for t in self.tokens],
                "contribution": self.values,
                "attention": self.attention,
            }
        )
        return {"dla_head_sources": frame.iloc[: self.position + 1]}


# --- requests ------------------------------------------------------------------------------
def _check_position(position: object) -> None:
    if isinstance(position, bool) or not isinstance(position, (int, np.integer)):
        raise OutOfRangeError(f"position must be a whole number (0 is the first token, -1 the last), got {position!r}.")


@dataclass(frozen=True)
class DlaRequest(Request):
    """Direct logit attribution of ``answer`` (minus ``wrong``) at ``position``.

    Empty ``answer``/``wrong`` mean None (the model's top prediction; no wrong answer), so a page's
    empty text box and the CLI's missing flag are the same request (one cache entry).
    """

    prompt: str
    answer: str | None = None
    wrong: str | None = None
    position: int = -1
    label = "Running the model once and splitting the logit"

    def __post_init__(self) -> None:
        _check_position(self.position)
        object.__setattr__(self, "position", int(self.position))
        object.__setattr__(self, "answer", self.answer or None)
        object.__setattr__(self, "wrong", self.wrong or None)

    def compute(self, model: LoadedModel, on_progress: Progress) -> DLAResult:
        return direct_logit_attribution(model, self.prompt, self.answer, self.wrong, position=self.position, on_progress=on_progress)


@dataclass(frozen=True)
class HeadSourceRequest(Request):
    """One head's direct contribution at ``position``, split by source position."""

    prompt: str
    layer: int
    head: int
    answer: str | None = None
    wrong: str | None = None
    position: int = -1
    label = "Splitting the head by source position"

    def __post_init__(self) -> None:
        _check_position(self.position)
        object.__setattr__(self, "position", int(self.position))
        object.__setattr__(self, "answer", self.answer or None)
        object.__setattr__(self, "wrong", self.wrong or None)

    def check(self, model: LoadedModel) -> None:
        check_index("layer", self.layer, model.info.n_layers)
        check_index("head", self.head, model.info.n_heads)

    def compute(self, model: LoadedModel, on_progress: Progress) -> HeadSourceResult:
        return head_source_attribution(model, self.prompt, self.layer, self.head, self.answer, self.wrong, position=self.position)


# --- inputs ------------------------------------------------------------------------------
def resolve_target(
    model: LoadedModel, prompt: str, answer: str | None = None, wrong: str | None = None, position: int = -1,
    *, shared: bool = False,
) -> Target:
    """Tokenise and validate everything before any heavy work.

    Args:
        answer: the answer token's text (e.g. ``" Paris"``); ``None`` or empty means the model's
            top prediction at ``position``.
        wrong: an optional wrong-answer token; the metric is then the logit difference.
        position: which token's prediction to explain; negative counts from the end.
        shared: read the top prediction from the prompt's one shared attribution run (:func:`shared_run`),
            which the attribution itself then reuses, instead of a forward of its own.

    Raises:
        BadPromptError, NotSingleTokenError, OutOfRangeError.
    """
    ids = model.tokenize(prompt)
    n_pos = int(ids.shape[1])
    if not isinstance(position, int) or not -n_pos <= position < n_pos:
        raise OutOfRangeError(
            f"position must be between 0 and {n_pos - 1} (or -1 for the last token) for this {n_pos}-token prompt, got {position!r}."
        )
    position %= n_pos
    wrong_id = model.single_token_id(wrong) if wrong else None
    if answer:
        answer_id = model.single_token_id(answer)
    elif shared:
        answer_id = int(shared_run(model, ids)[0][0, position].argmax())
    else:
        logits = model.forward(ids[:, : position + 1], last_position_only=True)
        answer_id = int(logits[0, -1].argmax())
    if wrong_id is not None and wrong_id == answer_id:
        raise SameTokenError(
            f"The wrong answer {model.token_strings([wrong_id])[0]!r} is the same token as the answer; "
            "pick a different wrong answer, or leave it empty to attribute the answer's logit alone."
        )
    return Target(
        tokens=tuple(model.token_strings(ids[0])),
        token_ids=ids,
        position=position,
        answer=model.token_strings([answer_id])[0],
        answer_id=answer_id,
        wrong=None if wrong_id is None else model.token_strings([wrong_id])[0],
        wrong_id=wrong_id,
    )


# --- the frozen-norm direction -----------------------------------------------------------
def unembed_direction(model: LoadedModel, target: Target) -> tuple[torch.Tensor, float]:
    """``u = W_U[:, answer] - W_U[:, wrong]`` ``(d_model,)`` and the matching ``b_U`` difference."""
    w = model.weights
    u = w.W_U[:, target.answer_id].to(_F64)
    b = float(w.b_U[target.answer_id])
    if target.wrong_id is not None:
        u = u - w.W_U[:, target.wrong_id].to(_F64)
        b -= float(w.b_U[target.wrong_id])
    return u, b


def effective_direction(model: LoadedModel, u: torch.Tensor, scale: float) -> torch.Tensor:
    """``d (d_model,)`` such that a residual piece ``x`` contributes ``x . d`` to the metric.

    LayerNorm: ``centre(x) / scale * w . u == x . centre(w * u) / scale``; RMSNorm has no centring.
    """
    d = model.adapter.fold_norm_into_reader(u[:, None], model.weights.ln_final_w.to(_F64))[:, 0]
    return d / scale


def norm_bias_term(model: LoadedModel, u: torch.Tensor, b_unembed: float) -> float:
    """``b_norm . u + b_U`` difference: the part of the metric no component writes."""
    b = model.weights.ln_final_b
    return b_unembed + (float(b.to(_F64) @ u) if b is not None else 0.0)


# --- the main computation ----------------------------------------------------------------
def _capture_names(model: LoadedModel) -> list[str]:
    names = ["hook_embed", "ln_final.hook_scale"]
    if model.info.positional == "learned":
        names.append("hook_pos_embed")
    for layer in range(model.info.n_layers):
        names += [f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.hook_attn_out", f"blocks.{layer}.hook_mlp_out"]
    return names


def shared_run(model: LoadedModel, ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The one forward a prompt's attribution and its head splits all read (:func:`recorded_run`): the
    components, every head's ``z``, and every layer's pattern and values for :func:`head_source_attribution`.
    Logits ``(1, pos, d_vocab)`` and the recorded activations are shared: read-only."""
    names = _capture_names(model)
    for layer in range(model.info.n_layers):
        names += [f"blocks.{layer}.attn.hook_pattern", f"blocks.{layer}.attn.hook_v"]
    return recorded_run(model, ids, names)  # type: ignore[return-value]


def _components(model: LoadedModel, cache: dict[str, torch.Tensor], pos: int, d: torch.Tensor) -> tuple[list[str], np.ndarray]:
    labels, values = ["embed"], [float(cache["hook_embed"][0, pos].to(_F64) @ d)]
    if "hook_pos_embed" in cache:
        labels.append("pos_embed")
        values.append(float(cache["hook_pos_embed"][0, pos].to(_F64) @ d))
    for layer in range(model.info.n_layers):
        for kind, point in (("attn", "hook_attn_out"), ("mlp", "hook_mlp_out")):
            labels.append(f"L{layer} {kind}")
            values.append(float(cache[f"blocks.{layer}.{point}"][0, pos].to(_F64) @ d))
    return labels, np.array(values)


def _head_values(model: LoadedModel, cache: dict[str, torch.Tensor], pos: int, d: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-head contributions ``(layer, head)`` and the ``b_O`` term ``(layer,)``."""
    heads, biases = [], []
    for layer, block in enumerate(model.weights.blocks):
        z = cache[f"blocks.{layer}.attn.hook_z"][0, pos].to(_F64)  # (head, d_head)
        head_dirs = block.W_O.to(_F64) @ d  # (head, d_head, d_model) @ (d_model,) -> (head, d_head)
        heads.append((z * head_dirs).sum(-1))
        biases.append(float(block.b_O.to(_F64) @ d))
    return torch.stack(heads).cpu().numpy(), np.array(biases)


def direct_logit_attribution(
    model: LoadedModel,
    prompt: str,
    answer: str | None = None,
    wrong: str | None = None,
    *,
    position: int = -1,
    on_progress: Progress | None = None,
) -> DLAResult:
    """Split the answer's logit (difference) at ``position`` into direct contributions.

    One forward pass records every component's output, each head's ``z`` and the final
    norm's scale; everything else is dot products with the effective direction.

    Args:
        prompt: the text; answer, wrong, position: see :func:`resolve_target`.

    Returns:
        A :class:`DLAResult` whose ``total`` equals ``model_logit_diff`` to float tolerance.
    """
    target = resolve_target(model, prompt, answer, wrong, position, shared=True)
    if on_progress:
        on_progress(0.1, "running the model")
    logits, cache = shared_run(model, target.token_ids)
    pos = target.position
    scale = float(cache["ln_final.hook_scale"][0, pos, 0])
    u, b_unembed = unembed_direction(model, target)
    d = effective_direction(model, u, scale).to(model.device)
    labels, values = _components(model, cache, pos, d)
    heads, attn_bias = _head_values(model, cache, pos, d)
    bias_term = norm_bias_term(model, u.to(model.device), b_unembed)
    row = logits[0, pos].to(_F64)
    actual = float(row[target.answer_id] - (row[target.wrong_id] if target.wrong_id is not None else 0.0))
    if on_progress:
        on_progress(1.0, "done")
    return DLAResult(
        tokens=target.tokens, position=pos, answer=target.answer, answer_id=target.answer_id,
        wrong=target.wrong, wrong_id=target.wrong_id, metric=target.metric,
        labels=tuple(labels), values=values, running=np.cumsum(values), heads=heads, attn_bias=attn_bias,
        bias_term=bias_term, total=float(values.sum() + bias_term), model_logit_diff=actual, scale=scale,
    )


def head_source_attribution(
    model: LoadedModel,
    prompt: str,
    layer: int,
    head: int,
    answer: str | None = None,
    wrong: str | None = None,
    *,
    position: int = -1,
) -> HeadSourceResult:
    """Split one head's direct contribution at ``position`` by source (key) position.

    ``z_h[q] = sum_k A[q, k] v_{kv(h)}[k]``, so source ``k`` carries
    ``A[q, k] * v_{kv(h)}[k] @ W_O[h] . d``; these sum to the head's contribution.
    """
    check_index("layer", layer, model.info.n_layers)
    check_index("head", head, model.info.n_heads)
    target = resolve_target(model, prompt, answer, wrong, position, shared=True)
    _, cache = shared_run(model, target.token_ids)  # the attribution's own run: a page splits a head right after it
    pos = target.position
    u, _ = unembed_direction(model, target)
    d = effective_direction(model, u, float(cache["ln_final.hook_scale"][0, pos, 0])).to(model.device)
    head_dir = model.weights.blocks[layer].W_O[head].to(_F64) @ d  # (d_head,)
    kv = model.adapter.kv_head_of(head)
    attention = cache[f"blocks.{layer}.attn.hook_pattern"][0, head, pos].to(_F64)  # (key,)
    v = cache[f"blocks.{layer}.attn.hook_v"][0, :, kv].to(_F64)  # (key, d_head)
    values = attention * (v @ head_dir)
    z = cache[f"blocks.{layer}.attn.hook_z"][0, pos, head].to(_F64)
    return HeadSourceResult(
        tokens=target.tokens, layer=layer, head=head, kv_head=kv, position=pos, metric=target.metric,
        values=values.cpu().numpy(), attention=attention.cpu().numpy(), head_total=float(z @ head_dir),
    )
