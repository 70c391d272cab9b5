"""Train a toy task's tiny GPT-2 with a seed, then save it as an ordinary HF model directory.

The loop is plain PyTorch on the Hugging Face module (``model.train()``, AdamW, cross-entropy
on the task's ``loss_mask``), not through :class:`~interp_core.core.model.LoadedModel`: training
needs gradients on the weights, which the shared, frozen LoadedModel never gives. With the
same seed on the CPU two runs give identical losses (tested): the seed fixes the data, the
initial weights and the batch order, and the loop uses no dropout.

The saved directory holds ``config.json`` + ``model.safetensors``, a word-level tokenizer
(one token per space-separated symbol, ``BOS`` included) and ``toy_task.json`` with the task,
the hyperparameters and the loss curve, so the app can show how a shipped model was made.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from interp_core.core.errors import WorkbenchError
from interp_core.core.loading import is_shipped_toy, pick_device, user_toy_dir, valid_toy_name
from interp_core.core.model import LoadedModel
from interp_core.techniques.contract import Progress, Request
from interp_core.techniques.toy.tasks import BOS, UNK, TaskSpec, ToyDataset, get_task, make_dataset

TASK_FILE = "toy_task.json"
FINAL_LOSS_SAMPLE = 4096  # training sequences the final loss is measured on (all of them when fewer)
CURVE_POINTS = 25  # holdout checks per run: enough to see a phase change, cheap next to training


@dataclass(frozen=True)
class CurvePoint:
    """The run after ``step`` optimiser steps (``epoch`` passes over the data, fractional).

    ``train_loss`` is the mean loss of the steps since the previous point; ``holdout_loss`` and
    ``holdout_accuracy`` are measured on the whole holdout set with the weights of that moment.
    """

    step: int
    epoch: float
    train_loss: float
    holdout_loss: float
    holdout_accuracy: float


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    Attributes:
        step_loss: ``(steps,)`` the loss of every optimiser step.
        history: :data:`CURVE_POINTS` :class:`CurvePoint` s spread evenly over the run (fewer when it is shorter).
        epochs_run: passes over the training set begun (the last may be partial under ``max_steps``).
        final_loss: loss of the final weights on the training set (``loss_mask``; its first
            :data:`FINAL_LOSS_SAMPLE` sequences when it has more), nats.
        holdout_accuracy: fraction of holdout predictions (``eval_mask``) whose argmax is right.
    """

    task: str
    hyperparameters: dict
    step_loss: np.ndarray
    history: tuple[CurvePoint, ...]
    epochs_run: int
    final_loss: float
    holdout_loss: float
    holdout_accuracy: float
    seconds: float
    device: str
    out_dir: str | None

    def to_json(self) -> dict:
        return {
            "task": self.task,
            "hyperparameters": self.hyperparameters,
            "final_loss": self.final_loss,
            "holdout_loss": self.holdout_loss,
            "holdout_accuracy": self.holdout_accuracy,
            "epochs_run": self.epochs_run,
            "steps": int(len(self.step_loss)),
            "seconds": self.seconds,
            "device": self.device,
            "out_dir": self.out_dir,
            "history": [asdict(h) for h in self.history],
        }

    def tables(self) -> dict[str, pd.DataFrame]:
        """``toy_training_curve``: one row per curve point (step, epoch, train and holdout loss, holdout accuracy)."""
        return {"toy_training_curve": pd.DataFrame([asdict(h) for h in self.history], columns=list(CurvePoint.__dataclass_fields__))}


def build_tokenizer(spec: TaskSpec) -> object:
    """A word-level tokenizer: ``"BOS 0 1 2"`` -> one id per space-separated symbol; unknown -> UNK."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(spec.vocab)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=BOS, eos_token=BOS, unk_token=UNK, pad_token=UNK)


def build_model(spec: TaskSpec, seed: int) -> torch.nn.Module:
    """A freshly initialised model of the task's architecture and shape (no dropout, untied unembedding)."""
    if spec.architecture == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        shape = spec.model
        config = LlamaConfig(
            vocab_size=len(spec.vocab), hidden_size=shape["n_embd"], intermediate_size=shape["n_inner"],
            num_hidden_layers=shape["n_layer"], num_attention_heads=shape["n_head"], num_key_value_heads=shape["n_head"],
            hidden_act=shape["activation_function"], max_position_embeddings=spec.n_ctx, bos_token_id=spec.bos_id,
            eos_token_id=spec.bos_id, pad_token_id=spec.bos_id + 1, tie_word_embeddings=False,
        )
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(spec.vocab), n_positions=spec.n_ctx, bos_token_id=spec.bos_id, eos_token_id=spec.bos_id,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=False, **spec.model,
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config)


def masked_loss(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits (n, pos, d_vocab)`` predicting ``tokens[:, 1:]`` where ``mask (n, pos-1)``."""
    per_token = F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")  # (n, pos-1)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


@torch.no_grad()
def evaluate(model: torch.nn.Module, tokens: torch.Tensor, loss_mask: torch.Tensor, eval_mask: torch.Tensor,
             chunk: int = 512) -> tuple[float, float]:
    """``(loss on loss_mask, accuracy on eval_mask)`` of ``model`` on ``tokens (n, pos)``."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum, loss_n, right, total = 0.0, 0.0, 0, 0
    for start in range(0, len(tokens), chunk):
        batch = tokens[start:start + chunk].to(device)
        lm, em = loss_mask[start:start + chunk].to(device), eval_mask[start:start + chunk].to(device)
        logits = model(input_ids=batch, use_cache=False).logits
        per_token = F.cross_entropy(logits[:, :-1].transpose(1, 2), batch[:, 1:], reduction="none")
        loss_sum += float((per_token * lm).sum())
        loss_n += float(lm.sum())
        hit = logits[:, :-1].argmax(-1) == batch[:, 1:]
        right += int((hit & em).sum())
        total += int(em.sum())
    model.train(was_training)
    return loss_sum / max(loss_n, 1.0), right / max(total, 1)


def _hyperparameters(spec: TaskSpec, epochs: int | None, lr: float | None, batch_size: int | None,
                     weight_decay: float | None, seed: int) -> dict:
    hyper = {
        "epochs": spec.epochs if epochs is None else _whole("epochs", epochs),
        "lr": spec.lr if lr is None else float(lr),
        "batch_size": spec.batch_size if batch_size is None else _whole("batch size", batch_size),
        "weight_decay": spec.weight_decay if weight_decay is None else float(weight_decay),
        "seed": _whole("seed", seed),
    }
    if hyper["epochs"] < 1 or hyper["batch_size"] < 1:
        raise WorkbenchError(f"epochs and batch size must be at least 1, got {hyper['epochs']} and {hyper['batch_size']}.")
    if not 0 < hyper["lr"] < 1:  # also refuses NaN and infinity
        raise WorkbenchError(f"The learning rate must be between 0 and 1 (e.g. 0.001), got {hyper['lr']}.")
    if not math.isfinite(hyper["weight_decay"]) or hyper["weight_decay"] < 0:
        raise WorkbenchError(f"Weight decay must be a finite number, 0 or more (e.g. 0.01), got {hyper['weight_decay']}.")
    if not 0 <= hyper["seed"] < 2**63:
        raise WorkbenchError(f"The seed must be a whole number from 0 to {2**63 - 1} (e.g. 0), got {hyper['seed']}.")
    return hyper


def _whole(what: str, value: object) -> int:
    """``int(value)``; a WorkbenchError when ``value`` is not a finite number."""
    try:
        as_float = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise WorkbenchError(f"The {what} must be a whole number, got {value!r}.") from None
    if not math.isfinite(as_float):
        raise WorkbenchError(f"The {what} must be a whole number, got {value!r}.")
    return int(value)  # type: ignore[call-overload]


def _check_max_steps(max_steps: int | None) -> int | None:
    if max_steps is None:
        return None
    steps = _whole("maximum number of steps", max_steps)
    if steps < 1:
        raise WorkbenchError(f"The maximum number of steps must be at least 1 (or left out for whole epochs), got {steps}.")
    return steps


def prepare_out_dir(out_dir: str | Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Check that a model can be saved in ``out_dir`` before any training is spent on it.

    Refuses an empty name, a path that exists and is not a directory, and (unless ``overwrite``)
    a directory that exists and is not empty. Creates the parent folders and a hidden staging
    sibling ``<parent>/.<name>.partial-<pid>-<random>``, which proves the place is writable; the model is
    saved there and renamed to ``out_dir`` at the end (:func:`_publish`), so a failure never
    leaves a partial model behind.

    Returns:
        ``(target, staging)``.
    """
    text = str(out_dir)
    if not text.strip():
        raise WorkbenchError("The output directory is empty: give a directory to save the model in, e.g. --out toy_models/mine.")
    target = Path(text).expanduser()
    if target.name in ("", ".", ".."):
        raise WorkbenchError(f"'{text}' cannot be the output directory: name a new directory for the model, e.g. '{text.rstrip('/')}/mine'.")
    target = target.absolute()
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise WorkbenchError(f"'{text}' exists and is not a directory: pick another name for the model.")
        if any(target.iterdir()) and not overwrite:
            raise WorkbenchError(
                f"'{text}' already exists and is not empty: pick another name for the model "
                "(or, on the command line, pass --overwrite to replace it)."
            )
    blocker = next((p for p in target.parents if p.exists() or p.is_symlink()), None)
    if blocker is not None and not blocker.is_dir():
        raise WorkbenchError(f"Cannot save a model in '{text}': '{blocker}' is a file, not a directory. Pick another place.")
    staging = target.parent / f".{target.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"  # unique per run, also per thread
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    except OSError as error:
        raise WorkbenchError(
            f"Cannot save a model in '{text}': {error.strerror or error} ({error.filename or target.parent}). "
            "Pick a directory you can write to."
        ) from None
    return target, staging


def _publish(staging: Path, target: Path, *, overwrite: bool) -> None:
    """Move the finished model from ``staging`` to ``target``, replacing what was there (only with ``overwrite``)."""
    old = None
    if target.is_dir() and any(target.iterdir()):
        if not overwrite:  # someone saved there while this run trained
            raise WorkbenchError(f"'{target}' was filled by another run while this one trained; pick another name for the model.")
        old = target.parent / f".{target.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        target.rename(old)
    elif target.is_dir():
        target.rmdir()
    try:
        staging.rename(target)
    except OSError as error:
        if old is not None:
            old.rename(target)  # put the previous model back
        raise WorkbenchError(f"Could not move the trained model into '{target}': {error.strerror or error}.") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def train_toy(
    task: str,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    weight_decay: float | None = None,
    seed: int = 0,
    device: str | None = None,
    out_dir: str | Path | None = None,
    max_steps: int | None = None,
    on_progress: Progress | None = None,
    on_point: Callable[[CurvePoint], None] | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train ``task``'s model from scratch; hyperparameters left ``None`` take the task's defaults.

    The learning rate follows a cosine from ``lr`` down to ``lr / 10`` over the run.

    Args:
        max_steps: stop after this many optimiser steps (short runs in tests).
        out_dir: save the trained model there (an HF directory plus ``toy_task.json``). Checked
            before training (see :func:`prepare_out_dir`); written atomically, only once the
            run succeeded.
        overwrite: replace ``out_dir`` if it exists and is not empty (else WorkbenchError).
        on_progress: ``(fraction, message)`` about every 2 % of the run.
        on_point: called with each :class:`CurvePoint` as it is measured (a live curve).

    Raises:
        WorkbenchError: a bad hyperparameter or output directory (before training), or a run
            whose final or holdout loss is not finite (nothing is saved then).
    """
    spec = get_task(task)
    hyper = _hyperparameters(spec, epochs, lr, batch_size, weight_decay, seed)
    max_steps = _check_max_steps(max_steps)
    progress = on_progress or (lambda fraction, message: None)
    torch_device = pick_device(device)
    target = staging = None
    if out_dir is not None:
        target, staging = prepare_out_dir(out_dir, overwrite=overwrite)
    try:
        result, model = _train(spec, hyper, torch_device, max_steps, progress, on_point, out_dir)
        if staging is not None and target is not None:
            save_toy(model, spec, result, staging)
            _publish(staging, target, overwrite=overwrite)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    progress(1.0, f"done: holdout accuracy {result.holdout_accuracy:.2%}")
    return result


@dataclass(frozen=True)
class ToyTrainRequest(Request):
    """Train ``task``'s model from scratch (:func:`train_toy`) and save it in ``out``.

    It builds its own model, so it runs with ``model=None``. The fields are train-toy's flags;
    hyperparameters left None take the task's defaults, and bad ones are refused on creation.

    Attributes:
        run_id: a page's id for one click of its Train button. Each click trains anew: a result
            cached for the same settings could describe weights that another run has replaced since.
        on_point: a live view's callback for each :class:`CurvePoint`; not part of the request's
            identity (equal requests with other callbacks are one cache entry).
    """

    task: str
    out: str | None = None
    overwrite: bool = False
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    weight_decay: float | None = None
    seed: int = 0
    max_steps: int | None = None
    device: str | None = None
    run_id: str = ""
    on_point: Callable[[CurvePoint], None] | None = field(default=None, compare=False, repr=False)
    heavy = True

    def __post_init__(self) -> None:
        _hyperparameters(get_task(self.task), self.epochs, self.lr, self.batch_size, self.weight_decay, self.seed)
        _check_max_steps(self.max_steps)

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"Training {Path(self.out).name if self.out else self.task}"

    def compute(self, model: LoadedModel | None, on_progress: Progress) -> TrainResult:
        return train_toy(self.task, epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, weight_decay=self.weight_decay,
                         seed=self.seed, device=self.device, out_dir=self.out, max_steps=self.max_steps,
                         on_progress=on_progress, on_point=self.on_point, overwrite=self.overwrite)


def save_name_problem(name: str, *, may_replace: bool = False) -> str | None:
    """Why a trained model cannot be saved as ``toy:NAME`` in the user's toy folder, or None when it can.

    Args:
        may_replace: the caller trained the model of that name itself (a page session's own model),
            so it may replace it; anyone else's model is never replaced.
    """
    if not valid_toy_name(name):
        return f"'{name}' cannot be a model name: use letters, digits, '-', '_' or '.', up to 64 characters, no spaces."
    if is_shipped_toy(name):
        return f"`toy:{name}` is a shipped model; pick another name so that it stays as shipped."
    target = user_toy_dir() / name
    taken = target.exists() and (not target.is_dir() or any(target.iterdir()))
    if taken and not may_replace:
        return (f"A toy model named `toy:{name}` already exists (another participant may have trained it); pick another "
                "name. Models you trained in this session can be retrained under the same name.")
    return None


def _train(spec: TaskSpec, hyper: dict, torch_device: torch.device, max_steps: int | None, progress: Progress,
           on_point: Callable[[CurvePoint], None] | None, out_dir: str | Path | None) -> tuple[TrainResult, torch.nn.Module]:
    data = make_dataset(spec, hyper["seed"])
    model = build_model(spec, hyper["seed"]).to(torch_device)
    started = time.perf_counter()
    threads = torch.get_num_threads()
    if torch_device.type == "cpu":
        torch.set_num_threads(1)  # these models are too small to gain from threads; 2 threads were 20x slower under load
    try:
        step_loss, history = _loop(model, data, hyper, max_steps, progress, on_point)
    finally:
        torch.set_num_threads(threads)
    progress(1.0, "measuring the final loss")
    sample = slice(0, FINAL_LOSS_SAMPLE)  # the training order is random, so its first rows are a fair sample
    final_loss, _ = evaluate(model, data.train[sample], data.train_loss_mask[sample], data.train_loss_mask[sample])
    holdout_loss, holdout_accuracy = evaluate(model, data.holdout, data.holdout_loss_mask, data.holdout_eval_mask)
    if not (math.isfinite(final_loss) and math.isfinite(holdout_loss)):
        raise WorkbenchError(
            f"Training diverged: the final training loss is {final_loss} and the holdout loss {holdout_loss} "
            f"(lr {hyper['lr']}, weight decay {hyper['weight_decay']}), so nothing was saved. "
            "Try a smaller learning rate or weight decay."
        )
    seconds = time.perf_counter() - started
    result = TrainResult(
        spec.name, hyper, np.array(step_loss), tuple(history), math.ceil(len(step_loss) / steps_per_epoch(data, hyper)),
        final_loss, holdout_loss, holdout_accuracy,
        round(seconds, 2), str(torch_device), None if out_dir is None else str(out_dir),
    )
    return result, model


def steps_per_epoch(data: ToyDataset, hyper: dict) -> int:
    return math.ceil(len(data.train) / hyper["batch_size"])


def _loop(model: torch.nn.Module, data: ToyDataset, hyper: dict, max_steps: int | None,
          progress: Progress, on_point: Callable[[CurvePoint], None] | None) -> tuple[list[float], list[CurvePoint]]:
    """The optimisation itself; returns per-step losses and the curve measured along the way."""
    device = next(model.parameters()).device
    shuffler = torch.Generator().manual_seed(hyper["seed"])
    optimiser = torch.optim.AdamW(model.parameters(), lr=hyper["lr"], weight_decay=hyper["weight_decay"])
    n, size = len(data.train), hyper["batch_size"]
    per_epoch = steps_per_epoch(data, hyper)
    total = per_epoch * hyper["epochs"] if max_steps is None else min(max_steps, per_epoch * hyper["epochs"])
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: 0.1 + 0.45 * (1 + math.cos(math.pi * min(s / total, 1.0))))
    check_every = max(1, math.ceil(total / CURVE_POINTS))
    step_loss: list[float] = []
    history: list[CurvePoint] = []
    model.train()
    for epoch in range(hyper["epochs"]):
        order = torch.randperm(n, generator=shuffler)
        for start in range(0, n, size):
            index = order[start:start + size]
            tokens, mask = data.train[index].to(device), data.train_loss_mask[index].to(device)
            loss = masked_loss(model(input_ids=tokens, use_cache=False).logits, tokens, mask)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            step_loss.append(loss.item())
            step = len(step_loss)
            if step % max(1, total // 50) == 0:
                progress(step / total, f"epoch {epoch + 1}/{hyper['epochs']}, step {step}/{total}, loss {step_loss[-1]:.4f}")
            if step % check_every == 0 or step == total:
                hold_loss, hold_acc = evaluate(model, data.holdout, data.holdout_loss_mask, data.holdout_eval_mask)
                since = step_loss[(history[-1].step if history else 0):]
                history.append(CurvePoint(step, round(step / per_epoch, 4), float(np.mean(since)), hold_loss, hold_acc))
                if on_point is not None:
                    on_point(history[-1])
            if step >= total:
                break
        if len(step_loss) >= total:
            break
    model.eval()
    return step_loss, history


def save_toy(model: torch.nn.Module, spec: TaskSpec, result: TrainResult, out_dir: Path) -> Path:
    """Save ``model`` with its tokenizer and ``toy_task.json`` (task, hyperparameters, curves) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    build_tokenizer(spec).save_pretrained(out_dir)
    record = result.to_json()
    record["prompt_format"] = "space-separated symbols, starting with BOS, e.g. 'BOS 0 1 2 3'"
    (out_dir / TASK_FILE).write_text(json.dumps(record, indent=1))
    return out_dir


def read_task_record(model_dir: str | Path) -> dict | None:
    """The ``toy_task.json`` of a saved toy model, or None when the directory has none."""
    path = Path(model_dir) / TASK_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def task_of_toy(name: str) -> str | None:
    """The task a toy model ``toy:NAME`` (or bare ``NAME``) was trained on; None if unknown or not a toy."""
    from interp_core.core.loading import toy_model_dir

    try:
        record = read_task_record(toy_model_dir(name))
    except WorkbenchError:
        return None
    return record.get("task") if record else None
