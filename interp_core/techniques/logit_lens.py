"""Logit lens: read the residual stream at every layer boundary as if it were the last.

Intuition. A decoder adds each block's output to one residual stream, and only at the end
turns that stream into next-token logits: ``unembed(final_norm(resid))``. The logit lens
(nostalgebraist, 2020) applies that same readout to the stream at every intermediate layer
boundary, giving one next-token distribution per layer. Watching the top token and the
probability of an answer across layers shows when the model's guess forms.

Definition (field guide §3). For boundary ``b = 0..n_layers``, ``resid_b`` is
``blocks.{b}.hook_resid_pre`` for ``b < n_layers`` and ``blocks.{n_layers-1}.hook_resid_post``
for ``b = n_layers``; ``logits_b = unembed(final_norm(resid_b))``. The final norm is applied
exactly once, so the last boundary reproduces the model's own logits (tested). Labels:
``"embed"`` for ``b = 0`` (embeddings, plus positions where the model has them) and ``"L{k}"``
for the stream after block ``k``.

Caveat. Early layers of many models are not written in the basis of the unembedding, so
the logit lens can look blank there although the information is present. A tuned lens
(:mod:`interp_core.techniques.tuned_lens`) learns one affine translator per layer to fix this; pass it
as ``lens=`` to read the same grid through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import torch

from interp_core.core.errors import OutOfRangeError, WorkbenchError, check_index
from interp_core.core.model import LoadedModel
from interp_core.techniques.contract import Progress, Request
from interp_core.techniques.readout import (  # noqa: F401  (boundary_labels, boundary_names re-exported for pages and tests)
    Translator,
    boundary_labels,
    boundary_names,
    readout,
    residual_boundaries,
)

MAX_TOP_K = 50
READOUT_ROWS = 256  # residual rows (boundaries x positions) read out per matmul: bounds memory, reads W_U once per chunk


@dataclass(frozen=True)
class LensResult:
    """Next-token distributions read at every layer boundary of one prompt.

    Axes: ``layer`` = the ``n_layers + 1`` boundaries in ``layers``; ``pos`` = prompt tokens.

    Attributes:
        lens: ``"logit"`` or ``"tuned"``.
        tokens: the prompt's tokens as text, ``(pos,)``; ``token_ids`` their ids.
        layers: boundary labels, ``(layer,)``: ``"embed", "L0", ...``.
        top_ids, top_tokens, top_probs: the ``k`` most likely next tokens, ``(layer, pos, k)``,
            best first.
        kl_to_final: KL(model's final distribution || this layer's), nats, ``(layer, pos)``.
        entropy: entropy of this layer's distribution, nats, ``(layer, pos)``.
        model_top_id: the model's own top-1 next token after the whole prompt.
        target, target_id: the tracked token (``None`` when none was asked for).
        target_prob, target_logprob, target_rank: its probability, log-probability and rank
            (1 = top) at every layer and position, ``(layer, pos)``; ``None`` without a target.
    """

    lens: str
    tokens: tuple[str, ...]
    token_ids: np.ndarray
    layers: tuple[str, ...]
    top_ids: np.ndarray
    top_tokens: np.ndarray
    top_probs: np.ndarray
    kl_to_final: np.ndarray
    entropy: np.ndarray
    model_top_id: int
    target: str | None = None
    target_id: int | None = None
    target_prob: np.ndarray | None = None
    target_logprob: np.ndarray | None = None
    target_rank: np.ndarray | None = None

    def __post_init__(self) -> None:
        shape = (len(self.layers), len(self.tokens))
        assert self.top_probs.shape[:2] == shape == self.top_ids.shape[:2] == self.top_tokens.shape[:2]
        assert self.kl_to_final.shape == shape == self.entropy.shape
        assert np.all(np.diff(self.top_probs, axis=-1) <= 1e-6), "top_probs must be sorted"
        if self.target is not None:
            assert self.target_prob is not None and self.target_prob.shape == shape

    def to_json(self) -> dict:
        """CLI keys: ``tokens``, ``layers``, ``top`` (per layer, per position, a list of
        ``{token, prob}``), and with a target ``target_prob``/``target_rank`` per layer at the
        last position."""
        top = [
            [
                [{"token": str(t), "prob": float(p)} for t, p in zip(self.top_tokens[b, i], self.top_probs[b, i])]
                for i in range(len(self.tokens))
            ]
            for b in range(len(self.layers))
        ]
        out: dict = {"lens": self.lens, "tokens": list(self.tokens), "layers": list(self.layers), "top": top}
        if self.target is not None:
            out["target"] = self.target
            out["target_prob"] = [float(v) for v in self.target_prob[:, -1]]
            out["target_rank"] = [int(v) for v in self.target_rank[:, -1]]
        return out


    def tables(self) -> dict[str, pd.DataFrame]:
        """``{lens}_lens_grid``: one row per (layer, position) with the top token, its probability, the
        top-k as text, the KL to the final distribution and the entropy. With a target also
        ``{lens}_lens_target``: its probability, log-probability and rank per (layer, position).

        Built once per result (a page reads them several times per run); each call returns copies."""
        return {name: frame.copy() for name, frame in self._tables.items()}

    @cached_property
    def _tables(self) -> dict[str, pd.DataFrame]:
        records = []
        for b, layer in enumerate(self.layers):
            for i, tok in enumerate(self.tokens):
                guesses = " · ".join(f"{t!r} {p:.0%}" for t, p in zip(self.top_tokens[b, i], self.top_probs[b, i]))
                records.append({
                    "layer": layer, "position": f"{i}: {tok!r}", "top token": str(self.top_tokens[b, i, 0]),
                    "cell": visible(str(self.top_tokens[b, i, 0]))[:9], "prob": float(self.top_probs[b, i, 0]),
                    "top-k": guesses, "KL to final": float(self.kl_to_final[b, i]), "entropy": float(self.entropy[b, i]),
                })
        out = {f"{self.lens}_lens_grid": pd.DataFrame(records)}
        if self.target is not None:
            n_layers, n_pos = self.target_prob.shape
            out[f"{self.lens}_lens_target"] = pd.DataFrame({
                "layer": np.repeat(list(self.layers), n_pos), "position": np.tile(np.arange(n_pos), n_layers),
                "probability": self.target_prob.ravel(), "log-probability": self.target_logprob.ravel(),
                "rank": self.target_rank.ravel().astype(int),
            })
        return out

    def grid_table(self, first: int = 0, last: int | None = None) -> pd.DataFrame:
        """The ``{lens}_lens_grid`` table of :meth:`tables` for the boundaries ``first..last`` only (indices into
        ``layers``, both included; ``last`` None: the top one), numbered from 0."""
        last = len(self.layers) - 1 if last is None else last
        check_index("first layer", first, len(self.layers))
        check_index("last layer", last, len(self.layers))
        df = self.tables()[f"{self.lens}_lens_grid"]
        return df[df["layer"].isin(self.layers[first:last + 1])].reset_index(drop=True)

    def target_table(self, position: int, beside: LensResult | None = None) -> pd.DataFrame:
        """The tracked token after ``position`` at every layer: ``layer``, ``lens`` (``"logit lens"``,
        ``"tuned lens"``), ``probability``, ``log-probability``, ``rank``; the rows of ``beside`` (the other lens
        on the same prompt and target) follow this lens's."""
        frames = []
        for lens in (self,) if beside is None else (self, beside):
            if lens.target is None:
                raise WorkbenchError(f"This {lens.lens} lens result tracks no target token; run it with a target.")
            check_index("position", position, len(lens.tokens))
            frames.append(pd.DataFrame({
                "layer": list(lens.layers), "lens": f"{lens.lens} lens", "probability": lens.target_prob[:, position],
                "log-probability": lens.target_logprob[:, position], "rank": lens.target_rank[:, position].astype(int),
            }))
        return pd.concat(frames, ignore_index=True)


def visible(token: str) -> str:
    """Whitespace made visible in a small cell: spaces as ·, newlines as ↵."""
    return token.replace(" ", "·").replace("\n", "↵").replace("\t", "⇥") or "∅"


def _check_top_k(top_k: object) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise OutOfRangeError(f"top-k must be between 1 and {MAX_TOP_K}, got {top_k!r}.")


@dataclass(frozen=True)
class LogitLensRequest(Request):
    """The logit lens (``lens="logit"``) or the saved tuned lens (``"tuned"``) on ``prompt``, tracking
    ``target`` (token text or id; empty or None: nothing). ``lens_version`` names which saved tuned
    lens (its file's modification time), so a retrained lens is a new request; the CLI leaves it 0.
    ``track_top``: without a target, track the model's own top-1 next token (the page's default)."""

    prompt: str
    target: str | int | None = None
    lens: str = "logit"
    top_k: int = 5
    lens_version: float = 0.0
    track_top: bool = False
    label = "Reading the residual stream at every layer"

    def __post_init__(self) -> None:
        _check_top_k(self.top_k)
        if self.lens not in ("logit", "tuned"):
            raise OutOfRangeError(f"lens must be 'logit' or 'tuned', got {self.lens!r}.")
        if self.target == "":
            object.__setattr__(self, "target", None)

    def compute(self, model: LoadedModel, on_progress: Progress) -> LensResult:
        from interp_core.techniques.tuned_lens import require_tuned_lens

        lens = require_tuned_lens(model) if self.lens == "tuned" else None
        return run_logit_lens(model, self.prompt, top_k=self.top_k, target=self.target, lens=lens, track_top=self.track_top)


def run_logit_lens(
    model: LoadedModel,
    prompt: str,
    *,
    top_k: int = 5,
    target: str | int | None = None,
    lens: Translator | None = None,
    max_tokens: int | None = None,
    track_top: bool = False,
) -> LensResult:
    """The logit lens (or, with ``lens``, the tuned lens) on ``prompt``.

    Args:
        top_k: how many top tokens to keep per cell (1..50).
        target: a single token to track (e.g. ``" Paris"``), or its id; ``None`` tracks nothing.
        lens: a trained :class:`~interp_core.techniques.tuned_lens.TunedLens` for this model, applied to
            each boundary's residual before the readout; ``None`` is the plain logit lens.
        track_top: without a ``target``, track the model's own top-1 next token after the whole prompt
            (what a page shows before anyone types a target); the same numbers as passing its id.

    Raises:
        OutOfRangeError, NotSingleTokenError, BadPromptError: before any model run.
    """
    _check_top_k(top_k)
    if isinstance(target, int):
        if not 0 <= target < model.info.d_vocab:
            raise OutOfRangeError(f"target token id must be between 0 and {model.info.d_vocab - 1}, got {target}.")
        target_id, target = target, model.token_strings([target])[0]
    else:
        target_id = model.single_token_id(target) if target is not None else None
    if lens is not None:
        lens.check_fits(model)
    tokens = model.tokenize(prompt, max_tokens=max_tokens)
    logits, resid = residual_boundaries(model, tokens, shared=True)  # the logit and tuned lens of a prompt share this run
    final_logprobs = logits[0].float().log_softmax(-1)  # (pos, d_vocab)
    model_top_id = int(final_logprobs[-1].argmax())
    if target_id is None and track_top:
        target_id, target = model_top_id, model.token_strings([model_top_id])[0]
    if lens is not None:  # each boundary through its own translator first: (boundary, batch, pos, d_model)
        with torch.no_grad():
            resid = torch.stack([lens.translate(resid[b, 0], b) for b in range(resid.shape[0])]).unsqueeze(1)
    reader = _Reader(model, final_logprobs, top_k, target_id)
    # several boundaries per readout: the unembedding is read from memory once per chunk, not per boundary
    step = max(1, READOUT_ROWS // resid.shape[2])
    rows = [reader.read(resid[b:b + step, 0]) for b in range(0, resid.shape[0], step)]
    stacked = {key: np.concatenate([row[key] for row in rows]) for key in rows[0]}
    extra = {}
    if target_id is not None:
        extra = dict(
            target=target,
            target_id=target_id,
            target_prob=np.exp(stacked["target_logprob"]),
            target_logprob=stacked["target_logprob"],
            target_rank=stacked["target_rank"],
        )
    return LensResult(
        lens="logit" if lens is None else "tuned",
        tokens=tuple(model.token_strings(tokens[0])),
        token_ids=tokens[0].cpu().numpy(),
        layers=boundary_labels(model.info.n_layers),
        top_ids=stacked["top_ids"],
        top_tokens=_token_texts(model, stacked["top_ids"]),
        top_probs=stacked["top_probs"],
        kl_to_final=stacked["kl"],
        entropy=stacked["entropy"],
        model_top_id=model_top_id,
        **extra,
    )


def _token_texts(model: LoadedModel, ids: np.ndarray) -> np.ndarray:
    """``ids`` (any shape) as token texts, an object array of the same shape; each distinct id decoded once."""
    distinct, where = np.unique(ids, return_inverse=True)
    texts = np.empty(len(distinct), dtype=object)
    texts[:] = model.token_strings(distinct.tolist())
    return texts[where].reshape(ids.shape)


class _Reader:
    """Reads boundaries' residuals out against one prompt's final distribution.

    The full-vocabulary work of a chunk is one readout matmul, its log-softmax, and a few passes
    over the result: top-k on the log-probabilities (exp is monotone, so the order is that of the
    probabilities), the target's rank, the entropy, and ``sum_v p_f[v] logprobs[v]`` for the KL to
    the final distribution, ``KL = sum p_f log p_f - sum p_f logprobs``. The last two reuse the
    logits' memory once the log-probabilities exist.
    """

    def __init__(self, model: LoadedModel, final_logprobs: torch.Tensor, top_k: int, target_id: int | None) -> None:
        w = model.weights
        self.model, self.top_k, self.target_id = model, top_k, target_id
        self.W_U = w.W_U
        self.b_U = w.b_U if bool(w.b_U.any()) else None  # adding a zero bias is a whole pass that changes no bit
        with torch.no_grad():
            self.final_probs = final_logprobs.exp()  # (pos, d_vocab)
            self.neg_final_entropy = (self.final_probs * final_logprobs).sum(-1)  # (pos,)

    def read(self, resid: torch.Tensor) -> dict[str, np.ndarray]:
        """``resid (boundaries, pos, d_model)`` -> top-k, KL, entropy, target stats, each ``(boundaries, pos, ...)``."""
        with torch.no_grad():
            x = self.model.adapter.apply_final_norm(resid, self.model.weights)  # exactly readout(), whose bias add
            logits = x @ self.W_U  # (boundaries, pos, d_vocab)                  is skipped when the bias is zero
            if self.b_U is not None:
                logits = logits + self.b_U
            logprobs = logits.log_softmax(-1)
            top_logprobs, indices = logprobs.topk(self.top_k, dim=-1)
            row = {"top_ids": indices.cpu().numpy(), "top_probs": top_logprobs.exp().cpu().numpy()}
            if self.target_id is not None:
                target_lp = logprobs[..., self.target_id]
                row["target_logprob"] = target_lp.cpu().numpy()
                higher = (logprobs > target_lp[..., None]).sum(-1, dtype=torch.int32)
                row["target_rank"] = (1 + higher.long()).cpu().numpy()
            spare = logits  # the logits are spent: their memory holds the products below
            cross = torch.mul(logprobs, self.final_probs, out=spare).sum(-1)  # sum_v p_f[v] logprobs[v]
            row["kl"] = (self.neg_final_entropy - cross).clamp_min(0).cpu().numpy()
            row["entropy"] = -torch.exp(logprobs, out=spare).mul_(logprobs).sum(-1).cpu().numpy()
        return row
