"""The three toy tasks of the seed documents (GUIDE §4): data, vocabulary and model shape.

Every sequence starts with ``BOS``; tokens are written as space-separated words, so the
prompt ``"BOS 0 1 2 3 3 2 1 0"`` is nine tokens, one per symbol. Logit position ``p``
predicts the token at position ``p + 1``; each dataset carries two masks over those
predictions: ``loss_mask`` (what training minimises) and ``eval_mask`` (what accuracy counts).

- ``reverse-increment``: ``[BOS, x0..x7, y0..y7]`` over ``0..3`` with
  ``y_i = (x_{7-i} + 1) mod 4``. All ``4^8 = 65,536`` inputs, split 60,000 / 5,536; loss and
  accuracy on the 8 ``y`` predictions (logit positions 8..15).
- ``pattern-copy``: ``[BOS, s0..s23]``, ``s`` a random pattern of length 3-5 over ``0..7``
  repeated; loss on predicting ``s1..s23`` (as in the write-up, which had no BOS), accuracy on
  the predictions after the pattern has been shown twice (``s_j`` with ``j >= 2 * period``).
- ``induction``: ``[BOS, body]``, ``body`` 40 random tokens over ``0..63`` holding a segment
  ``r`` (length 4-20, no repeated token) immediately repeated at a random offset; loss on every
  prediction, accuracy on the second copy of ``r`` after its first token (what induction solves).
  Its model is llama-family (rotary positions), not GPT-2: with GPT-2's learned absolute
  positions the layer-0 previous-token head, which induction needs, had not formed after 4,500
  steps, while with rotary positions (relative offsets built into ``q . k``) the whole circuit
  forms within about 500 (measured; see ``toy_models/README.md``). The segment's offset varies,
  so no fixed-offset head can stand in for induction.

Axis glossary as in :mod:`interp_core.core.names`; ``n`` = sequences.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from interp_core.core.errors import WorkbenchError

BOS = "BOS"
UNK = "UNK"
INDUCTION_SEGMENT = (4, 20)  # shortest and longest repeated segment of the induction task


@dataclass(frozen=True)
class TaskSpec:
    """One toy task: its vocabulary, model shape and default hyperparameters.

    Attributes:
        name: the task's public name (CLI ``--task``).
        n_symbols: data tokens ``"0" .. str(n_symbols - 1)``; then ``BOS`` and ``UNK``.
        n_ctx: sequence length including BOS (the model's context).
        model: the shape in GPT2Config's words (n_layer, n_head, n_embd, n_inner, activation_function);
            for ``architecture="llama"`` they map onto LlamaConfig (the MLP is then gated SiLU).
        architecture: ``"gpt2"`` (learned positions, LayerNorm) or ``"llama"`` (rotary, RMSNorm).
        epochs, lr, batch_size, weight_decay: training defaults that reach the reported results.
        n_train, n_holdout: dataset sizes.
        summary: one line for the page.
    """

    name: str
    n_symbols: int
    n_ctx: int
    model: dict = field(hash=False)
    epochs: int
    lr: float
    batch_size: int
    weight_decay: float
    n_train: int
    n_holdout: int
    summary: str
    architecture: str = "gpt2"

    @property
    def description(self) -> str:
        """The model in one line for the page, e.g. ``"GPT-2, 1 layer(s), 1 head(s), d_model 4, ..."``."""
        m = self.model
        if self.architecture == "llama":
            kind, mlp, norm = "llama-family (rotary positions)", f"d_mlp {m['n_inner']} (gated SiLU)", "RMSNorm"
        else:
            kind, mlp, norm = "GPT-2 (learned positions)", f"d_mlp {m['n_inner']} ({m['activation_function']})", "LayerNorm"
        return f"{kind}, {m['n_layer']} layer(s), {m['n_head']} head(s), d_model {m['n_embd']}, {mlp}, {norm}"

    @property
    def vocab(self) -> list[str]:
        return [str(i) for i in range(self.n_symbols)] + [BOS, UNK]

    @property
    def bos_id(self) -> int:
        return self.n_symbols


@dataclass(frozen=True)
class ToyDataset:
    """Token sequences with their prediction masks.

    Attributes:
        train, holdout: ``(n, n_ctx)`` int64 token ids.
        train_loss_mask, holdout_loss_mask: ``(n, n_ctx - 1)`` bool, predictions in the loss.
        holdout_eval_mask: ``(n, n_ctx - 1)`` bool, predictions counted by accuracy.
        holdout_period: ``(n,)`` the pattern/segment length of each holdout sequence (0 if none).
        holdout_offset: ``(n,)`` where the segment starts (induction; 0 otherwise).
    """

    train: torch.Tensor
    holdout: torch.Tensor
    train_loss_mask: torch.Tensor
    holdout_loss_mask: torch.Tensor
    holdout_eval_mask: torch.Tensor
    holdout_period: np.ndarray
    holdout_offset: np.ndarray


TASKS: dict[str, TaskSpec] = {
    "reverse-increment": TaskSpec(
        name="reverse-increment", n_symbols=4, n_ctx=17,
        model=dict(n_layer=1, n_head=1, n_embd=4, n_inner=16, activation_function="relu"),
        epochs=10, lr=1e-2, batch_size=256, weight_decay=0.0, n_train=60_000, n_holdout=5_536,
        summary="[BOS, x0..x7, y0..y7] with y_i = (x_{7-i} + 1) mod 4: reverse the input and add one.",
    ),
    "pattern-copy": TaskSpec(
        name="pattern-copy", n_symbols=8, n_ctx=25,
        model=dict(n_layer=2, n_head=2, n_embd=64, n_inner=256, activation_function="gelu_new"),
        epochs=100, lr=1e-3, batch_size=64, weight_decay=0.0, n_train=1_000, n_holdout=500,
        summary="24 tokens: a random pattern of length 3-5 over 8 symbols, repeated. Continue it.",
    ),
    "induction": TaskSpec(
        name="induction", n_symbols=64, n_ctx=41,
        model=dict(n_layer=2, n_head=2, n_embd=64, n_inner=256, activation_function="silu"),
        epochs=4, lr=1e-3, batch_size=64, weight_decay=0.0, n_train=20_000, n_holdout=1_000,
        summary="40 random tokens holding a segment (4-20 tokens) immediately repeated: predict the repeat from its first copy.",
        architecture="llama",
    ),
}


def get_task(name: str) -> TaskSpec:
    """The task called ``name``; raises WorkbenchError listing the known ones."""
    if name not in TASKS:
        raise WorkbenchError(f"Unknown toy task '{name}'. Choose one of: {', '.join(TASKS)}.")
    return TASKS[name]


def make_dataset(task: str | TaskSpec, seed: int = 0) -> ToyDataset:
    """Generate ``task``'s train and holdout sets; the same ``seed`` gives the same data."""
    spec = get_task(task) if isinstance(task, str) else task
    rng = np.random.default_rng(seed)
    if spec.name == "reverse-increment":
        return _reverse_increment(spec, rng)
    if spec.name == "pattern-copy":
        return _pattern_copy(spec, rng)
    return _induction(spec, rng)


def _with_bos(spec: TaskSpec, body: np.ndarray) -> torch.Tensor:
    bos = np.full((body.shape[0], 1), spec.bos_id, dtype=np.int64)
    return torch.from_numpy(np.concatenate([bos, body.astype(np.int64)], axis=1))


def _reverse_increment(spec: TaskSpec, rng: np.random.Generator) -> ToyDataset:
    codes = np.arange(4**8)
    x = (codes[:, None] // 4 ** np.arange(7, -1, -1)) % 4  # (65536, 8): every input once
    y = (x[:, ::-1] + 1) % 4
    order = rng.permutation(len(codes))
    seqs = _with_bos(spec, np.concatenate([x, y], axis=1))[order]
    mask = torch.zeros(spec.n_ctx - 1, dtype=torch.bool)
    mask[8:16] = True  # logit at position 8 + i predicts y_i (token position 9 + i)
    n_train = spec.n_train
    hold = seqs[n_train:n_train + spec.n_holdout]
    hold_mask = mask.expand(len(hold), -1).clone()
    return ToyDataset(
        seqs[:n_train], hold, mask.expand(n_train, -1).clone(), hold_mask, hold_mask,
        np.zeros(len(hold), dtype=int), np.zeros(len(hold), dtype=int),
    )


def _pattern_copy(spec: TaskSpec, rng: np.random.Generator) -> ToyDataset:
    total = spec.n_train + spec.n_holdout
    seen: dict[tuple, int] = {}
    length = spec.n_ctx - 1
    while len(seen) < total:  # unique sequences, so the holdout is never seen in training
        period = int(rng.integers(3, 6))
        pattern = rng.integers(0, spec.n_symbols, size=period)
        seq = tuple(np.resize(pattern, length).tolist())
        seen.setdefault(seq, period)
    body = np.array(list(seen.keys()))
    periods = np.array(list(seen.values()))
    seqs = _with_bos(spec, body)
    loss = torch.zeros(total, length, dtype=torch.bool)
    loss[:, 1:] = True  # predict s1..s23 from s0..s22; the guess of s0 from BOS is left out
    positions = torch.arange(length)
    # logit p predicts s_p; count it once the pattern has been shown twice (p >= 2 * period)
    evals = positions[None, :] >= 2 * torch.from_numpy(periods)[:, None]
    n = spec.n_train
    return ToyDataset(seqs[:n], seqs[n:], loss[:n], loss[n:], evals[n:], periods[n:], np.zeros(total - n, dtype=int))


def _induction(spec: TaskSpec, rng: np.random.Generator) -> ToyDataset:
    total = spec.n_train + spec.n_holdout
    length = spec.n_ctx - 1
    body = rng.integers(0, spec.n_symbols, size=(total, length))
    periods = rng.integers(INDUCTION_SEGMENT[0], INDUCTION_SEGMENT[1] + 1, size=total)
    offsets = np.array([rng.integers(0, length - 2 * t + 1) for t in periods])
    evals = torch.zeros(total, length, dtype=torch.bool)
    for row, (t, start) in enumerate(zip(periods, offsets)):
        segment = rng.permutation(spec.n_symbols)[:t]  # no repeated token inside the segment
        body[row, start:start + t] = segment
        body[row, start + t:start + 2 * t] = segment
        # body index j sits at token position j + 1; logit at position j predicts body[j].
        # The second copy's tokens after its first: body[start+t+1 .. start+2t-1].
        evals[row, start + t + 1:start + 2 * t] = True
    seqs = _with_bos(spec, body)
    loss = torch.ones(total, length, dtype=torch.bool)
    n = spec.n_train
    return ToyDataset(seqs[:n], seqs[n:], loss[:n], loss[n:], evals[n:], periods[n:], offsets[n:])
