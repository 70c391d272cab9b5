"""Take a trained toy apart: holdout accuracy, weight ablations, attention and pre/post-MLP reads.

Reverse-increment (1 layer): if attention copies ``x_{7-i}`` to the position that predicts
``y_i`` and the MLP adds one, then (a) the output-to-input attention matrix is an anti-diagonal
(query ``8 + i`` attends to key ``8 - i``, the token ``x_{7-i}``); (b) reading the residual
through the unembedding *before* the MLP (``unembed(ln_final(resid_mid))``) predicts the copied
token more than the answer, and *after* it (``resid_post``) the answer; (c) zeroing either
half's output weights (``W_out = 0`` keeping ``b_out``; ``W_O = 0`` keeping ``b_O``) breaks
the task. Each is measured here on the whole holdout set.

Pattern copy and induction (2 layers): the solution is an induction circuit, so some layer-1
head should attend from each query to the key one period back plus one (``key = query -
period + 1``, the token after the previous occurrence of the current token) and some layer-0
head to the previous token. The stripe scores below are mean attention on those keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from interp_core.core.errors import WorkbenchError
from interp_core.core.head_id import HeadId
from interp_core.core.hooks import HookFn
from interp_core.core.model import LoadedModel
from interp_core.core.names import hook_name
from interp_core.techniques.contract import Progress, Request
from interp_core.techniques.frames import grid_frame
from interp_core.techniques.head_scores import induction_key, mean_attention_at, previous_token_attention
from interp_core.techniques.toy.tasks import TaskSpec, ToyDataset, get_task, make_dataset

ABLATIONS: dict[str, str] = {
    "none": "the trained model",
    "mlp_weights_zero": "MLP output weights W_out zeroed (b_out kept)",
    "attn_weights_zero": "attention output weights W_O zeroed (b_O kept)",
}


def check_toy_model(model: LoadedModel, spec: TaskSpec) -> None:
    """Raise WorkbenchError unless ``model`` has the vocabulary and context ``spec`` needs."""
    info = model.info
    if info.family != spec.architecture or info.d_vocab != len(spec.vocab) or info.n_ctx < spec.n_ctx:
        raise WorkbenchError(
            f"'{info.name}' is not a {spec.name} toy model (needs a {spec.architecture} model with {len(spec.vocab)} tokens and "
            f"context {spec.n_ctx}; it has {info.d_vocab} tokens and context {info.n_ctx}). Pick a toy model of this task."
        )


def bias_only_hooks(model: LoadedModel, part: str, layer: int = 0) -> list[tuple[str, HookFn]]:
    """Hooks that make ``part`` (``"mlp"`` or ``"attn"``) of ``layer`` output only its bias.

    That is exactly a forward with ``W_out = 0`` (resp. ``W_O = 0``): the output projection
    then yields its bias ``b_out`` (resp. ``b_O``) at every position.
    """
    weights = model.weights.blocks[layer]
    bias = weights.b_out if part == "mlp" else weights.b_O
    point = "hook_mlp_out" if part == "mlp" else "hook_attn_out"

    def replace(value: torch.Tensor, name: str) -> torch.Tensor:
        return bias.to(value.device, value.dtype).expand_as(value).clone()

    return [(hook_name(point, layer), replace)]


def predictions(model: LoadedModel, tokens: torch.Tensor, hooks: list = (), chunk: int = 2048) -> torch.Tensor:
    """Argmax next-token ids ``(n, pos - 1)`` of ``model`` on ``tokens (n, pos)`` with ``hooks``."""
    out = []
    for start in range(0, len(tokens), chunk):
        logits = model.forward(tokens[start:start + chunk], hooks=hooks)
        out.append(logits[:, :-1].argmax(-1).cpu())
    return torch.cat(out)


def accuracy(model: LoadedModel, data: ToyDataset, hooks: list = ()) -> float:
    """Fraction of the holdout predictions in ``eval_mask`` that are right."""
    hit = predictions(model, data.holdout, hooks) == data.holdout[:, 1:]
    return int((hit & data.holdout_eval_mask).sum()) / int(data.holdout_eval_mask.sum())


@dataclass(frozen=True)
class ReverseIncrementAnalysis:
    """The reverse-increment model taken apart on the whole holdout set.

    Attributes:
        ablations: ``{name: per-token holdout accuracy}`` for the keys of :data:`ABLATIONS`.
        sequence_accuracy: fraction of holdout sequences with all 8 outputs right.
        attention: ``(8, 17)`` mean pattern, output queries (positions 8..15) x keys 0..16.
        query_labels, key_labels: ``"y0".."y7"`` (the output each query predicts) and
            ``"BOS", "x0".."x7", "y0".."y7"``.
        pre_mlp_accuracy, post_mlp_accuracy: ``(8,)`` accuracy of the prediction read from
            ``resid_mid`` / ``resid_post`` at each output position.
        pre_mlp_copies, post_mlp_copies: ``(8,)`` how often that prediction is the source
            token ``x_{7-i}`` itself (copied, not yet incremented).
        source_vs_pre_mlp: ``(4, d_vocab)`` fraction of pre-MLP predictions for each source value.
        example_prompt: the first holdout sequence as a prompt (``"BOS 0 1 ..."``).
    """

    n_holdout: int
    ablations: dict
    sequence_accuracy: float
    attention: np.ndarray
    query_labels: list
    key_labels: list
    pre_mlp_accuracy: np.ndarray
    post_mlp_accuracy: np.ndarray
    pre_mlp_copies: np.ndarray
    post_mlp_copies: np.ndarray
    source_vs_pre_mlp: np.ndarray
    vocab: list
    example_prompt: str = ""

    def __post_init__(self) -> None:
        if self.attention.shape != (8, 17):
            raise ValueError(f"attention should be (8, 17), got {self.attention.shape}")

    @property
    def holdout_accuracy(self) -> float:
        return float(self.ablations["none"])

    def to_json(self) -> dict:
        return {
            "holdout_accuracy": self.holdout_accuracy,
            "sequence_accuracy": self.sequence_accuracy,
            "ablations": dict(self.ablations),
            "n_holdout": self.n_holdout,
            "pre_mlp_accuracy": self.pre_mlp_accuracy,
            "post_mlp_accuracy": self.post_mlp_accuracy,
        }

    def tables(self) -> dict[str, pd.DataFrame]:
        """``toy_ri_ablations``: accuracy per ablation; ``toy_ri_attention``: the mean output-to-input pattern;
        ``toy_ri_pre_post_mlp``: how often the read before/after the MLP is the answer or the source, per output;
        ``toy_ri_source_vs_pre``: the pre-MLP prediction for each source value."""
        reads = {"before MLP = answer": self.pre_mlp_accuracy, "before MLP = source": self.pre_mlp_copies,
                 "after MLP = answer": self.post_mlp_accuracy, "after MLP = source": self.post_mlp_copies}
        return {
            "toy_ri_ablations": pd.DataFrame({"ablation": list(self.ablations), "condition": [ABLATIONS[k] for k in self.ablations],
                                              "accuracy": [float(v) for v in self.ablations.values()]}),
            "toy_ri_attention": grid_frame(self.attention, self.query_labels, self.key_labels, "output (query)", "input (key)", "attention"),
            "toy_ri_pre_post_mlp": pd.DataFrame([{"output": label, "read": name, "fraction": float(values[i])}
                                                 for name, values in reads.items() for i, label in enumerate(self.query_labels)]),
            "toy_ri_source_vs_pre": grid_frame(self.source_vs_pre_mlp, [str(v) for v in range(len(self.source_vs_pre_mlp))], self.vocab,
                                               "source x_{7-i}", "predicted before MLP", "fraction"),
        }


def analyse_reverse_increment(model: LoadedModel, *, seed: int = 0) -> ReverseIncrementAnalysis:
    """Everything in the module docstring's reverse-increment part, on ``seed``'s holdout split."""
    spec = get_task("reverse-increment")
    check_toy_model(model, spec)
    data = make_dataset(spec, seed)
    ablations = {
        "none": accuracy(model, data),
        "mlp_weights_zero": accuracy(model, data, bias_only_hooks(model, "mlp")),
        "attn_weights_zero": accuracy(model, data, bias_only_hooks(model, "attn")),
    }
    names = [hook_name("attn.hook_pattern", 0), hook_name("hook_resid_mid", 0), hook_name("hook_resid_post", 0)]
    _, cache = model.run_with_cache(data.holdout, names)
    attention = cache[names[0]][:, 0, 8:16].mean(0).cpu().numpy()  # head 0, output queries
    reads = [model.unembed(model.apply_final_norm(cache[n][:, 8:16])).argmax(-1).cpu() for n in names[1:]]
    answers = data.holdout[:, 9:17]
    sources = data.holdout[:, 1:9].flip(1)  # x_{7-i} for output i
    seq_right = (predictions(model, data.holdout)[:, 8:16] == answers).all(1)
    n_vocab = model.info.d_vocab
    table = np.zeros((4, n_vocab))
    for value in range(4):
        picked = reads[0][sources == value]
        table[value] = np.bincount(picked.numpy(), minlength=n_vocab)[:n_vocab] / max(len(picked), 1)
    return ReverseIncrementAnalysis(
        n_holdout=len(data.holdout), ablations=ablations, sequence_accuracy=float(seq_right.float().mean()),
        attention=attention, query_labels=[f"y{i}" for i in range(8)],
        key_labels=["BOS"] + [f"x{i}" for i in range(8)] + [f"y{i}" for i in range(8)],
        pre_mlp_accuracy=(reads[0] == answers).float().mean(0).numpy(),
        post_mlp_accuracy=(reads[1] == answers).float().mean(0).numpy(),
        pre_mlp_copies=(reads[0] == sources).float().mean(0).numpy(),
        post_mlp_copies=(reads[1] == sources).float().mean(0).numpy(),
        source_vs_pre_mlp=table, vocab=spec.vocab, example_prompt=_as_prompt(spec, data.holdout[0]),
    )


@dataclass(frozen=True)
class CopyingAnalysis:
    """Pattern-copy / induction model: accuracy and what each head attends to.

    Attributes:
        head_labels: ``"L0H0", ...`` in (layer, head) order.
        previous_token: ``(n_heads_total,)`` mean ``A[q, q-1]`` over queries ``q >= 1``.
        induction: ``(n_heads_total,)`` mean ``A[q, q - period + 1]`` over the accuracy queries.
        same_token: ``(n_heads_total,)`` mean ``A[q, q - period]`` over the same queries.
        on_answer: ``(n_heads_total,)`` mean total attention on earlier keys (not BOS) holding
            the token the query must predict, over the same queries: high for any head that
            copies the answer, whichever earlier copy it reads.
        first_token: ``(n_heads_total,)`` mean ``A[q, 0]`` (BOS).
        example_tokens: ``(pos,)`` strings of one holdout sequence.
        example_patterns: ``(layer, head, query, key)`` its attention patterns.
        example_prompt: that sequence as a prompt (``"BOS 0 1 ..."``).
        n_scored: the holdout sequences the head scores average over.
    """

    task: str
    holdout_accuracy: float
    n_holdout: int
    head_labels: list
    previous_token: np.ndarray
    induction: np.ndarray
    same_token: np.ndarray
    on_answer: np.ndarray
    first_token: np.ndarray
    example_tokens: list
    example_period: int
    example_patterns: np.ndarray
    example_prompt: str = ""
    n_scored: int = 0

    def to_json(self) -> dict:
        scores = {label: {"previous_token": p, "induction": i, "same_token": s, "on_answer": a, "first_token": f}
                  for label, p, i, s, a, f in zip(self.head_labels, self.previous_token, self.induction,
                                                   self.same_token, self.on_answer, self.first_token)}
        return {"holdout_accuracy": self.holdout_accuracy, "n_holdout": self.n_holdout, "head_scores": scores}

    def tables(self) -> dict[str, pd.DataFrame]:
        """``toy_head_scores``: one row per head and score with its mean attention; ``toy_example_patterns``:
        one row per head, query and key of the example sequence (keys labelled ``"position:token"``)."""
        scores = pd.DataFrame({"head": self.head_labels, "previous-token": self.previous_token,
                               "induction (q - period + 1)": self.induction, "same token (q - period)": self.same_token,
                               "on earlier copies of the answer": self.on_answer, "BOS": self.first_token})
        tokens = [f"{i}:{t}" for i, t in enumerate(self.example_tokens)]
        n_layers, n_heads = self.example_patterns.shape[:2]
        frames = [grid_frame(self.example_patterns[head.layer, head.head], tokens, tokens, "query", "key", "attention").assign(head=str(head))
                  for head in HeadId.grid(n_layers, n_heads)]
        return {"toy_head_scores": scores.melt(id_vars="head", var_name="score", value_name="mean attention"),
                "toy_example_patterns": pd.concat(frames, ignore_index=True)}


def analyse_copying(model: LoadedModel, task: str, *, seed: int = 0, n_patterns: int = 256) -> CopyingAnalysis:
    """Holdout accuracy plus per-head stripe scores on ``n_patterns`` holdout sequences."""
    spec = get_task(task)
    if spec.name == "reverse-increment":
        raise WorkbenchError("Use analyse_reverse_increment for the reverse-increment task.")
    check_toy_model(model, spec)
    data = make_dataset(spec, seed)
    n_layers, n_heads = model.info.n_layers, model.info.n_heads
    names = [hook_name("attn.hook_pattern", layer) for layer in range(n_layers)]
    tokens = data.holdout[:n_patterns]
    _, cache = model.run_with_cache(tokens, names)
    patterns = torch.stack([cache[n] for n in names], 1).cpu().numpy()  # (n, layer, head, q, k)
    n, pos = tokens.shape
    rows, queries = np.nonzero(data.holdout_eval_mask[:n_patterns].numpy())  # logit j sits at query position j
    keys = induction_key(queries, data.holdout_period[:n_patterns][rows])
    flat = patterns.reshape(n, n_layers * n_heads, pos, pos)
    seqs = tokens.numpy()
    answer = seqs[rows, queries + 1]
    keys_all = np.arange(pos)
    holds = (seqs[rows] == answer[:, None]) & (keys_all[None, :] >= 1) & (keys_all[None, :] <= queries[:, None])
    return CopyingAnalysis(
        task=spec.name, holdout_accuracy=accuracy(model, data), n_holdout=len(data.holdout),
        head_labels=[str(h) for h in HeadId.grid(n_layers, n_heads)],
        previous_token=previous_token_attention(flat).mean((0, 2)),
        induction=mean_attention_at(flat, rows, queries, keys),
        same_token=mean_attention_at(flat, rows, queries, keys - 1),
        on_answer=(flat[rows, :, queries, :] * holds[:, None, :]).sum(-1).mean(0),
        first_token=flat[:, :, :, 0].mean((0, 2)),
        example_tokens=model.token_strings(tokens[0]), example_period=int(data.holdout_period[0]),
        example_patterns=patterns[0], example_prompt=_as_prompt(spec, tokens[0]), n_scored=n,
    )


def _as_prompt(spec: TaskSpec, tokens: torch.Tensor) -> str:
    """Token ids ``(pos,)`` of ``spec``'s vocabulary as a prompt, e.g. ``"BOS 0 1 3 ..."``."""
    return " ".join(spec.vocab[i] for i in tokens.tolist())


def example_prompt(task: str, seed: int = 0, index: int = 0) -> str:
    """A holdout sequence of ``task`` written as a prompt, e.g. ``"BOS 0 1 3 ..."``."""
    spec = get_task(task)
    return _as_prompt(spec, make_dataset(spec, seed).holdout[index])


@dataclass(frozen=True)
class ToyAnalysisRequest(Request):
    """Take a toy model of ``task`` apart on the holdout split of data seed ``seed``.

    Attributes:
        task: one of the toy tasks; reverse-increment gets :func:`analyse_reverse_increment`, the
            copying tasks :func:`analyse_copying`.
        seed: the data seed the model was trained with (its ``toy_task.json``), so the holdout
            sequences are ones it never saw.
    """

    task: str
    seed: int = 0
    label = "Running the holdout set through the model"

    def __post_init__(self) -> None:
        get_task(self.task)  # an unknown task names the known ones
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or not 0 <= self.seed < 2**63:
            raise WorkbenchError(f"The data seed must be a whole number from 0 to {2**63 - 1} (e.g. 0), got {self.seed!r}.")
        object.__setattr__(self, "seed", int(self.seed))

    def check(self, model: LoadedModel) -> None:
        check_toy_model(model, get_task(self.task))

    def compute(self, model: LoadedModel, on_progress: Progress) -> ReverseIncrementAnalysis | CopyingAnalysis:
        if self.task == "reverse-increment":
            return analyse_reverse_increment(model, seed=self.seed)
        return analyse_copying(model, self.task, seed=self.seed)
