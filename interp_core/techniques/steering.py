"""Steering: add a direction to the residual stream and watch the model change its mind.

Context. The other techniques *find* directions (a probe, a patching map, a head's output);
steering tests whether one does what we think by writing it into a run.

Definitions (field guide §8).

- Activation addition (Turner et al. 2023): ``v = resid_pre[L](positive)[last] -
  resid_pre[L](negative)[last]``. The steered run adds ``c * v`` to ``blocks.{L}.hook_resid_pre``
  at every position except the first: position 0 is the attention sink on the default model (its
  residual norm is ~1,700 against ~60-100 elsewhere), and steering it breaks the model.
- Contrastive activation addition (Rimsky et al. 2024): ``v`` is the mean of the same difference
  over several (positive, negative) pairs.
- Directional ablation, the opposite test: ``x - (x . v_hat) v_hat`` at ``resid_pre`` of every
  block and every position, so no block reads the direction.

Generation is greedy and uses the model's KV cache: after the prompt, each step runs the one new
position only, so the steering hook is told the absolute position of the first position it sees
(:attr:`_Edit.offset`); absolute position 0 is never steered, whichever step it is in.

Reading. ``promoted`` is the vector read straight through the unembedding (final-norm weight,
centring for LayerNorm; the norm's scale only rescales); the lens rows read the *change* the
edit makes to the logit lens at the prompt's last position, at the steered layer and every later one.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from interp_core.core.errors import BadPromptError, OutOfRangeError, WorkbenchError, check_index
from interp_core.core.hooks import attached
from interp_core.core.model import LoadedModel
from interp_core.core.names import hook_name
from interp_core.techniques.contract import Progress, Request
from interp_core.techniques.readout import boundary_labels, boundary_names, readout

MAX_NEW_TOKENS = 200
MAX_COEFFICIENTS = 64
MAX_PAIRS = 64
TOP_K = 10
TokenCallback = Callable[[str, str], None]
"""``on_token(which, text_so_far)``, ``which`` = ``"unsteered"`` or ``"steered"``."""


class SteeringOverflowError(WorkbenchError):
    """The edit made the model's activations overflow (NaN or infinity)."""


# --- pairs -----------------------------------------------------------------------------------
Pair = tuple[str, str]


def parse_pairs(text: str) -> tuple[Pair, ...]:
    """``positive,negative`` per line (CSV quoting allowed; a ``positive,negative`` header is skipped)."""
    pairs = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise BadPromptError(f"Line {number} of the pairs has {len(row)} fields; each line needs two, "
                                 "'positive,negative' (quote a prompt that contains a comma).")
        if number == 1 and [c.strip().lower() for c in row] == ["positive", "negative"]:
            continue
        pairs.append((row[0], row[1]))
    return tuple(pairs)


def _check_pairs(pairs: tuple[Pair, ...]) -> None:
    if not pairs:
        raise BadPromptError("No prompt pair: type a positive and a negative prompt (or some pairs).")
    if len(pairs) > MAX_PAIRS:
        raise OutOfRangeError(f"At most {MAX_PAIRS} pairs, got {len(pairs)}: use fewer.")
    for i, (positive, negative) in enumerate(pairs, start=1):
        for side, text in (("positive", positive), ("negative", negative)):
            if not isinstance(text, str) or not text.strip():
                where = "" if len(pairs) == 1 else f" of pair {i}"
                raise BadPromptError(f"The {side} prompt{where} is empty: type some text, e.g. 'The capital of Italy'.")


def _floats(value: object, what: str) -> tuple[float, ...]:
    """A tuple of finite floats from a tuple/list or a ``"0,0.5,1"`` string."""
    items = [s for s in value.replace(" ", "").split(",") if s] if isinstance(value, str) else list(value or ())
    try:
        numbers = tuple(float(x) for x in items)
    except (TypeError, ValueError):
        raise OutOfRangeError(f"{what} must be numbers separated by commas, e.g. 0,0.5,1; got {value!r}.") from None
    if not all(math.isfinite(x) for x in numbers):
        raise OutOfRangeError(f"{what} must be finite numbers, got {value!r}.")
    return numbers


# --- requests --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _VectorSpec(Request):
    """The fields that define the steering vector, shared by both requests."""

    prompt: str
    positive: str = ""
    negative: str = ""
    layer: int = 0
    pairs: tuple[Pair, ...] = ()

    @property
    def all_pairs(self) -> tuple[Pair, ...]:
        """``(positive, negative)`` (when typed) followed by ``pairs``."""
        first = ((self.positive, self.negative),) if (self.positive or self.negative) else ()
        return first + self.pairs

    def _validate(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise BadPromptError("The prompt to steer is empty: type some text, e.g. 'The capital of France is'.")
        object.__setattr__(self, "pairs", tuple((str(p), str(n)) for p, n in self.pairs))
        _check_pairs(self.all_pairs)
        if isinstance(self.layer, bool) or not isinstance(self.layer, (int, np.integer)):
            raise OutOfRangeError(f"layer must be a whole number, got {self.layer!r}.")
        object.__setattr__(self, "layer", int(self.layer))

    def check(self, model: LoadedModel) -> None:
        check_index("layer", self.layer, model.info.n_layers)


@dataclass(frozen=True)
class SteerRequest(_VectorSpec):
    """Steer ``prompt``'s greedy continuation with the vector of ``all_pairs`` at ``layer``.

    Attributes:
        coefficient: ``c`` of the steered continuation (ignored with ``ablate``).
        coefficients: also sweep these coefficients on the prompt's next token (empty: no sweep).
        target: the token whose probability the sweep follows (None: the unsteered top prediction).
        max_new_tokens: length of each continuation, 0..200.
        ablate: project the direction out at every block instead of adding it.
    """

    coefficient: float = 1.0
    coefficients: tuple[float, ...] = ()
    target: str | None = None
    max_new_tokens: int = 20
    ablate: bool = False
    label = "Steering the continuation"

    def __post_init__(self) -> None:
        self._validate()
        (coefficient,) = _floats([self.coefficient], "coefficient")
        object.__setattr__(self, "coefficient", coefficient)
        object.__setattr__(self, "coefficients", _floats(self.coefficients, "coefficients"))
        if len(self.coefficients) > MAX_COEFFICIENTS:
            raise OutOfRangeError(f"At most {MAX_COEFFICIENTS} coefficients in a sweep, got {len(self.coefficients)}.")
        n = self.max_new_tokens
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= MAX_NEW_TOKENS:
            raise OutOfRangeError(f"max-new-tokens must be a whole number from 0 to {MAX_NEW_TOKENS}, got {n!r}.")
        object.__setattr__(self, "max_new_tokens", int(n))
        object.__setattr__(self, "target", self.target or None)
        object.__setattr__(self, "ablate", bool(self.ablate))

    def compute(self, model: LoadedModel, on_progress: Progress) -> SteerResult:
        return steer(model, self, on_progress=on_progress)


@dataclass(frozen=True)
class SweepRequest(_VectorSpec):
    """The probability of ``target`` as the prompt's next token, for each coefficient."""

    coefficients: tuple[float, ...] = ()
    target: str | None = None
    label = "Sweeping the coefficient"

    def __post_init__(self) -> None:
        self._validate()
        object.__setattr__(self, "coefficients", _floats(self.coefficients, "coefficients"))
        if not 1 <= len(self.coefficients) <= MAX_COEFFICIENTS:
            raise OutOfRangeError(f"A sweep needs 1 to {MAX_COEFFICIENTS} coefficients, got {len(self.coefficients)}.")
        object.__setattr__(self, "target", self.target or None)

    def compute(self, model: LoadedModel, on_progress: Progress) -> SweepResult:
        vector = steering_vector(model, self.all_pairs, self.layer)
        return sweep(model, self.prompt, vector, self.layer, self.coefficients, self.target)


# --- results ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepResult:
    """``target_prob`` and the top next token ``(coefficient,)`` after the steered prompt."""

    target: str
    coefficients: tuple[float, ...]
    target_prob: np.ndarray
    top_tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        assert self.target_prob.shape == (len(self.coefficients),) == (len(self.top_tokens),)

    def entries(self) -> list[dict]:
        return [{"coefficient": c, "target_prob": float(p), "top_token": t}
                for c, p, t in zip(self.coefficients, self.target_prob, self.top_tokens)]

    def to_json(self) -> dict:
        return {"target": self.target, "sweep": self.entries()}

    def tables(self) -> dict[str, pd.DataFrame]:
        """``steering_sweep``: one row per coefficient."""
        return {"steering_sweep": pd.DataFrame(self.entries())}


@dataclass(frozen=True)
class SteerResult:
    """Both greedy continuations, the vector and what it promotes.

    Attributes:
        unsteered, steered: the continuations (text after the prompt).
        vector_norm: ``|v|``; ``n_pairs`` pairs were averaged.
        promoted, promoted_scores: the top tokens of the unembedded vector ``(k,)``.
        lens_layers: boundary labels from the steered layer on ``(layer,)``;
        lens_tokens, lens_change: the tokens whose log-probability the edit raises most at the
            prompt's last position, and by how much, at each of them ``(layer, k)``.
        sweep: the coefficient sweep, when one was asked for.
    """

    prompt: str
    layer: int
    coefficient: float
    ablate: bool
    n_pairs: int
    unsteered: str
    steered: str
    vector_norm: float
    promoted: tuple[str, ...]
    promoted_scores: np.ndarray
    lens_layers: tuple[str, ...]
    lens_tokens: np.ndarray
    lens_change: np.ndarray
    sweep: SweepResult | None = None

    def __post_init__(self) -> None:
        assert self.lens_tokens.shape == self.lens_change.shape and len(self.lens_layers) == self.lens_change.shape[0]

    def to_json(self) -> dict:
        out = {
            "prompt": self.prompt, "layer": self.layer, "coefficient": self.coefficient, "ablate": self.ablate,
            "n_pairs": self.n_pairs, "unsteered": self.unsteered, "steered": self.steered,
            "vector_norm": self.vector_norm,
            "promoted": [{"token": t, "score": float(s)} for t, s in zip(self.promoted, self.promoted_scores)],
            "lens": [{"layer": name, "tokens": list(toks), "change": [float(x) for x in change]}
                     for name, toks, change in zip(self.lens_layers, self.lens_tokens, self.lens_change)],
        }
        if self.sweep is not None:
            out.update(self.sweep.to_json())
        return out

    def tables(self) -> dict[str, pd.DataFrame]:
        """``steering_continuations``, ``steering_promoted``, ``steering_lens`` (one row per layer and
        rank) and, with a sweep, ``steering_sweep``."""
        k = self.lens_change.shape[1]
        tables = {
            "steering_continuations": pd.DataFrame({"run": ["unsteered", "steered"], "text": [self.unsteered, self.steered]}),
            "steering_promoted": pd.DataFrame({"rank": range(1, len(self.promoted) + 1), "token": [repr(t) for t in self.promoted],
                                               "score": self.promoted_scores}),
            "steering_lens": pd.DataFrame({
                "layer": np.repeat(self.lens_layers, k), "rank": np.tile(np.arange(1, k + 1), len(self.lens_layers)),
                "token": [repr(t) for t in self.lens_tokens.ravel()], "change": self.lens_change.ravel(),
            }),
        }
        if self.sweep is not None:
            tables.update(self.sweep.tables())
        return tables

    def lens_table(self, k: int) -> pd.DataFrame:
        """The ``steering_lens`` rows of the ``k`` most changed tokens per layer (ranks 1..k)."""
        table = self.tables()["steering_lens"]
        return table[table["rank"] <= k].reset_index(drop=True)


# --- the vector and the edits ------------------------------------------------------------------
def _last_resid(model: LoadedModel, text: str, layer: int, side: str) -> torch.Tensor:
    ids = model.tokenize(text)
    if ids.shape[1] < 2:
        raise BadPromptError(f"The {side} prompt {text!r} is a single token; its last token would be the first position, "
                             "the attention sink, whose activations are unlike any other. Use two tokens or more.")
    _, cache = model.run_with_cache(ids, [hook_name("hook_resid_pre", layer)], stop_at_layer=layer + 1)
    return cache[hook_name("hook_resid_pre", layer)][0, -1]


def steering_vector(model: LoadedModel, pairs: tuple[Pair, ...], layer: int) -> torch.Tensor:
    """``mean_i resid_pre[layer](positive_i)[last] - resid_pre[layer](negative_i)[last]`` ``(d_model,)``."""
    check_index("layer", layer, model.info.n_layers)
    _check_pairs(pairs)
    diffs = [_last_resid(model, p, layer, "positive") - _last_resid(model, n, layer, "negative") for p, n in pairs]
    return torch.stack(diffs).mean(0)


class _Edit:
    """A resid_pre hook that knows the absolute position of the first position it sees (``offset``):
    with a KV cache, a generation step runs the new position alone."""

    offset = 0
    what = "the edit"

    def absolute(self, value: torch.Tensor) -> torch.Tensor:
        return self.offset + torch.arange(value.shape[1], device=value.device)

    def hooks(self) -> list[tuple[str, Callable]]:
        raise NotImplementedError


class Addition(_Edit):
    """``resid_pre[layer] += c * v`` at every absolute position but 0; ``coefficient`` may be ``(batch,)``."""

    def __init__(self, vector: torch.Tensor, layer: int, coefficient: float | torch.Tensor) -> None:
        self.vector, self.layer = vector, layer
        self.coefficient = torch.as_tensor(coefficient, dtype=vector.dtype, device=vector.device).reshape(-1, 1, 1)
        self.what = f"coefficient {float(self.coefficient.flatten()[0]):g}"

    def __call__(self, value: torch.Tensor, name: str) -> torch.Tensor:
        steered = (self.absolute(value) >= 1).to(value.dtype)[None, :, None]  # (1, pos, 1): position 0 untouched
        out = value + self.coefficient * steered * self.vector
        # Every later norm divides by the root of the mean square: once the square overflows float32 the
        # run is NaN or silently zero, so stop here and say why.
        fine = torch.isfinite(out.pow(2).sum(-1)).all(-1)  # (batch,)
        if not fine.all():
            row = int((~fine).nonzero()[0, 0])
            c = float(self.coefficient.flatten()[min(row, self.coefficient.numel() - 1)])
            raise SteeringOverflowError(f"With coefficient {c:g} the residual stream overflows (its squared norm is beyond "
                                        "float32), so the model's output would be NaN. Use a smaller coefficient: useful "
                                        "ones are usually below a few units.")
        return out

    def hooks(self) -> list[tuple[str, Callable]]:
        return [(hook_name("hook_resid_pre", self.layer), self)]


class Ablation(_Edit):
    """``x - (x . v_hat) v_hat`` at resid_pre of every block, every position."""

    def __init__(self, vector: torch.Tensor, n_layers: int) -> None:
        self.unit, self.n_layers = vector / vector.norm(), n_layers
        self.what = "the direction ablated"

    def __call__(self, value: torch.Tensor, name: str) -> torch.Tensor:
        return value - (value @ self.unit)[..., None] * self.unit

    def hooks(self) -> list[tuple[str, Callable]]:
        return [(hook_name("hook_resid_pre", layer), self) for layer in range(self.n_layers)]


def _check_finite(logits: torch.Tensor, what: str) -> None:
    if not torch.isfinite(logits).all():
        raise SteeringOverflowError(f"With {what} the model's activations overflowed (NaN or infinity). "
                                    "Use a smaller coefficient: useful ones are usually below a few units.")


# --- running ---------------------------------------------------------------------------------
def _stop_ids(model: LoadedModel) -> set[int]:
    """The tokens a base model's continuation ends at: its special tokens (end of text, a chat marker)."""
    return set(getattr(model.tokenizer, "all_special_ids", []) or []) | {model.tokenizer.eos_token_id}


def generate(model: LoadedModel, ids: torch.Tensor, max_new_tokens: int, edit: _Edit | None = None,
             on_text: Callable[[str], None] | None = None) -> tuple[str, list[int]]:
    """Greedy continuation of ``ids (1, pos)`` with the model's KV cache, ``edit`` attached throughout.

    Returns the continuation's text and token ids; stops early at a special token (end of text)."""
    stop = _stop_ids(model)
    new: list[int] = []
    text = ""
    past = None
    step_ids = ids.to(model.device)
    hooks = edit.hooks() if edit is not None else []
    with model.lock, attached(model.adapter, hooks), torch.no_grad():
        for _ in range(max_new_tokens):
            if edit is not None:
                edit.offset = ids.shape[1] + len(new) - step_ids.shape[1]  # absolute position of step_ids[0]
            out = model.hf_model(input_ids=step_ids, past_key_values=past, use_cache=True, logits_to_keep=1)
            _check_finite(out.logits, edit.what if edit is not None else "no edit")
            past = out.past_key_values
            token = int(out.logits[0, -1].argmax())
            if token in stop:
                break
            new.append(token)
            text = model.tokenizer.decode(new)
            if on_text is not None:
                on_text(text)
            step_ids = torch.tensor([[token]], device=model.device)
    return text, new


def generate_pair(model: LoadedModel, ids: torch.Tensor, max_new_tokens: int, edit: Addition,
                  on_text: Callable[[int, str], None] | None = None) -> tuple[tuple[str, list[int]], tuple[str, list[int]]]:
    """The unsteered and the steered greedy continuation of ``ids (1, pos)`` as one batch of two rows, with the KV cache.

    Row 0 gets coefficient 0 (adding an exact zero leaves it the unedited run), row 1 the edit's coefficient: each
    token costs one forward for both instead of one each, and a forward of one new position is bound by reading
    the weights, so the pair takes about the time of one continuation. Each row stops at its first special token;
    ``on_text(row, text)`` follows both. Returns ``((text, ids) unsteered, (text, ids) steered)``, as
    :func:`generate` gives them.
    """
    stop = _stop_ids(model)
    pair = Addition(edit.vector, edit.layer, torch.cat([torch.zeros(1, dtype=edit.vector.dtype, device=edit.vector.device),
                                                        edit.coefficient.flatten()[:1]]))
    pair.what = edit.what
    new: tuple[list[int], list[int]] = ([], [])
    texts = ["", ""]
    done = [False, False]
    past = None
    step_ids = ids.to(model.device).repeat(2, 1)
    with model.lock, attached(model.adapter, pair.hooks()), torch.no_grad():
        for step in range(max_new_tokens):
            pair.offset = 0 if step == 0 else ids.shape[1] + step - 1  # absolute position of step_ids[:, 0]
            out = model.hf_model(input_ids=step_ids, past_key_values=past, use_cache=True, logits_to_keep=1)
            _check_finite(out.logits[:1], "no edit")
            _check_finite(out.logits[1:], pair.what)
            past = out.past_key_values
            tokens = out.logits[:, -1].argmax(-1).tolist()
            for row, token in enumerate(tokens):
                if done[row] or token in stop:
                    done[row] = True
                    continue
                new[row].append(token)
                texts[row] = model.tokenizer.decode(new[row])
                if on_text is not None:
                    on_text(row, texts[row])
            if all(done):
                break
            step_ids = torch.tensor([[token] for token in tokens], device=model.device)  # a stopped row's is discarded
    return (texts[0], new[0]), (texts[1], new[1])


def edited_logits(model: LoadedModel, ids: torch.Tensor, edit: _Edit | None, names: list[str] = ()) -> tuple[torch.Tensor, dict]:
    """One forward of ``ids (batch, pos)`` from position 0 with ``edit`` attached, recording ``names``."""
    if edit is not None:
        edit.offset = 0
    logits, cache = model.run_with_cache(ids, list(names), hooks=edit.hooks() if edit is not None else ())
    return logits, cache


def sweep(model: LoadedModel, prompt: str, vector: torch.Tensor, layer: int, coefficients: tuple[float, ...],
          target: str | None) -> SweepResult:
    """Every coefficient at once, one batch row each: P(``target``) and the top token after ``prompt``."""
    ids = model.tokenize(prompt)
    target_id = model.single_token_id(target) if target else int(model.forward(ids, last_position_only=True)[0, -1].argmax())
    edit = Addition(vector, layer, torch.tensor(coefficients))
    logits, _ = edited_logits(model, ids.repeat(len(coefficients), 1), edit)
    probs = logits[:, -1].double().softmax(-1)  # (coefficient, d_vocab)
    for c, row in zip(coefficients, probs):
        _check_finite(row, f"coefficient {c:g}")
    return SweepResult(
        target=model.token_strings([target_id])[0], coefficients=tuple(coefficients),
        target_prob=probs[:, target_id].cpu().numpy(), top_tokens=tuple(model.token_strings(probs.argmax(-1))),
    )


def promoted_tokens(model: LoadedModel, vector: torch.Tensor, k: int = TOP_K) -> tuple[tuple[str, ...], np.ndarray]:
    """The top tokens of the unembedded vector: ``(w_norm * centre(v)) @ W_U``."""
    w = model.weights
    x = model.adapter.centre(vector)  # a no-op for RMSNorm
    scores = (x * w.ln_final_w) @ w.W_U
    top = scores.topk(k)
    return tuple(model.token_strings(top.indices)), top.values.float().cpu().numpy()


def lens_change(model: LoadedModel, ids: torch.Tensor, edit: _Edit, layer: int, k: int = 5) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Logit-lens log-probability change (edited - plain) at the last position, boundaries ``layer..n_layers``."""
    names = boundary_names(model.info.n_layers)[layer:]
    _, plain = edited_logits(model, ids, None, names)
    _, steered = edited_logits(model, ids, edit, names)
    before = torch.stack([plain[n][0, -1] for n in names])
    after = torch.stack([steered[n][0, -1] for n in names])  # (layer, d_model)
    change = readout(model, after).log_softmax(-1) - readout(model, before).log_softmax(-1)
    top = change.topk(min(k, change.shape[-1]), dim=-1)
    tokens = np.array([model.token_strings(row) for row in top.indices], dtype=object)
    return boundary_labels(model.info.n_layers)[layer:], tokens, top.values.float().cpu().numpy()


def steer(model: LoadedModel, request: SteerRequest, *, on_progress: Progress | None = None,
          on_token: TokenCallback | None = None) -> SteerResult:
    """Both greedy continuations of ``request.prompt``, the vector's readings and the optional sweep."""
    progress = on_progress or (lambda fraction, message="": None)
    request.check(model)
    ids = model.tokenize(request.prompt)
    model.check_length(ids.shape[1] + request.max_new_tokens, what="The prompt plus the continuation")
    if request.target:
        model.single_token_id(request.target)  # a bad target fails before any generation
    progress(0.05, "computing the steering vector")
    vector = steering_vector(model, request.all_pairs, request.layer)
    edit = Ablation(vector, model.info.n_layers) if request.ablate else Addition(vector, request.layer, request.coefficient)
    lens_layers, lens_tokens, lens_values = lens_change(model, ids, edit, request.layer)
    if isinstance(edit, Addition):  # both continuations in one batch of two rows
        progress(0.2, "generating both continuations")
        (unsteered, _), (steered, _) = generate_pair(model, ids, request.max_new_tokens, edit,
                                                     on_token and (lambda row, t: on_token(("unsteered", "steered")[row], t)))
    else:
        progress(0.2, "generating the unsteered continuation")
        unsteered, _ = generate(model, ids, request.max_new_tokens, None, on_token and (lambda t: on_token("unsteered", t)))
        progress(0.55, "generating the steered continuation")
        steered, _ = generate(model, ids, request.max_new_tokens, edit, on_token and (lambda t: on_token("steered", t)))
    found = sweep(model, request.prompt, vector, request.layer, request.coefficients, request.target) if request.coefficients else None
    promoted, scores = promoted_tokens(model, vector, min(TOP_K, model.info.d_vocab))
    progress(1.0, "done")
    return SteerResult(
        prompt=request.prompt, layer=request.layer, coefficient=request.coefficient, ablate=request.ablate,
        n_pairs=len(request.all_pairs), unsteered=unsteered, steered=steered, vector_norm=float(vector.norm()),
        promoted=promoted, promoted_scores=scores, lens_layers=lens_layers, lens_tokens=lens_tokens,
        lens_change=lens_values, sweep=found,
    )
