"""Tuned lens (Belrose et al. 2023): one learned affine translator per layer before the readout.

Intuition. The logit lens reads every layer's residual stream with the final layer's
readout, ``unembed(final_norm(h))``, but intermediate layers need not speak the final
layer's "language": their features may sit in rotated or rescaled directions. The tuned lens
gives boundary ``b`` an affine map ``T_b(h) = h + h @ A_b + c_b``, initialised to the identity
(``A_b = 0, c_b = 0``, i.e. the logit lens), and trains it so that
``unembed(final_norm(T_b(h_b)))`` matches the model's final distribution: it minimises
KL(final || lens). The last boundary needs no translator. Show it beside the logit lens,
never instead: the translators are trained, so they can also add information of their own.

Training here, sized for a CPU. Text is sampled from the model itself (temperature 1, top-50)
unless a corpus is given, and the residual stream is recorded during sampling, so one pass
serves both. Each translator is first fitted in closed form, by ridge regression towards the
identity (target: the final residual's direction at the layer's own scale; ridge strength
``TrainConfig.ridge``), then refined by Adam on the KL itself, over the vocabulary tokens that
carry the final distributions' mass (``TrainConfig.vocab_subset``; 0 = the full vocabulary).
The held-out KL per layer of both lenses, over the full vocabulary, is stored with the lens.

Translators are saved as safetensors under ``workbench_home()/tuned_lens/<model>`` and
reloaded with :func:`load_tuned_lens`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from interp_core.core.errors import WorkbenchError
from interp_core.core.hooks import attached, capture_into
from interp_core.core.loading import workbench_home
from interp_core.core.model import LoadedModel
from interp_core.techniques.contract import Request
from interp_core.techniques.readout import boundary_labels, boundary_names, readout, residual_boundaries

Progress = Callable[[float, str], None]
FILE_NAME = "translators.safetensors"
SHIPPED_FILE_NAME = FILE_NAME + ".gz"  # the shipped form: the same bytes gzipped (int8 rows compress to 2/3)
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "data" / "tuned_lens"  # lenses trained once and shipped


class TunedLensError(WorkbenchError):
    """No tuned lens is saved for this model, or the saved one belongs to another model."""


@dataclass(frozen=True)
class TrainConfig:
    """How a tuned lens is trained. The defaults fit SmolLM2-135M in a few minutes on 2 CPU cores."""

    n_train_seqs: int = 160  # sequences sampled for training
    n_heldout_seqs: int = 8  # further sequences, never trained on, for the reported KL
    seq_len: int = 32  # tokens per sequence, BOS included (BOS itself is not trained on)
    ridge: float = 0.01  # closed-form stage: ridge strength towards identity, times mean diag(X^T X)
    kl_steps: int = 40  # Adam steps on the KL after the closed-form fit (0 = closed form only)
    batch_tokens: int = 128  # tokens per Adam step
    lr: float = 1e-3
    vocab_subset: int = 4096  # KL stage: tokens with the most final-distribution mass (0 = all)
    sample_top_k: int = 50  # sampling: keep the 50 likeliest tokens at each step
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_train_seqs < 1 or self.n_heldout_seqs < 1 or self.seq_len < 2:
            raise ValueError(f"need at least 1 training and 1 held-out sequence of 2+ tokens, got {self}")


@dataclass(frozen=True)
class TunedLens:
    """Trained translators for one model.

    Attributes:
        model_name: the model spec it was trained for; ``fingerprint`` identifies its weights.
        weight: ``A``, ``(n_layers, d_model, d_model)``; ``bias``: ``c``, ``(n_layers, d_model)``.
            Boundary ``b < n_layers`` maps ``h -> h + h @ A[b] + c[b]``; the last is the identity.
        heldout_kl_logit, heldout_kl_tuned: mean KL(final || lens) in nats on held-out text,
            ``(n_layers + 1,)``, one per boundary, for the logit lens and for this lens.
        train_tokens, train_seconds: how much text it saw and how long training took.
    """

    model_name: str
    fingerprint: str
    weight: torch.Tensor
    bias: torch.Tensor
    heldout_kl_logit: np.ndarray
    heldout_kl_tuned: np.ndarray
    train_tokens: int
    train_seconds: float
    config: dict

    def to_json(self) -> dict:
        return {
            "model_name": self.model_name, "fingerprint": self.fingerprint,
            "heldout_kl_logit": [float(v) for v in self.heldout_kl_logit],
            "heldout_kl_tuned": [float(v) for v in self.heldout_kl_tuned],
            "train_tokens": self.train_tokens, "train_seconds": self.train_seconds, "config": self.config,
        }

    def tables(self) -> dict[str, pd.DataFrame]:
        """``lens_heldout_kl``: mean held-out KL(final || lens) per layer boundary, for the logit lens
        then this tuned lens (long form: ``layer``, ``lens``, ``KL (nats)``)."""
        layers = list(boundary_labels(len(self.heldout_kl_logit) - 1))
        return {"lens_heldout_kl": pd.DataFrame({
            "layer": layers * 2,
            "lens": ["logit lens"] * len(layers) + ["tuned lens"] * len(layers),
            "KL (nats)": np.concatenate([self.heldout_kl_logit, self.heldout_kl_tuned]),
        })}

    def translate(self, resid: torch.Tensor, boundary: int) -> torch.Tensor:
        """``T_boundary(resid)`` for ``resid (..., d_model)``; the identity at the last boundary."""
        if boundary >= self.weight.shape[0]:
            return resid
        a, c = self.weight[boundary].to(resid.device), self.bias[boundary].to(resid.device)
        return resid + resid @ a + c

    def check_fits(self, model: LoadedModel) -> None:
        """Raise TunedLensError unless this lens was trained for ``model``'s weights."""
        if self.fingerprint != fingerprint(model):
            raise TunedLensError(
                f"The saved tuned lens was trained for other weights than those of '{model.info.name}'. "
                "Train it again for this model."
            )

    def save(self, directory: Path | None = None, *, int8: bool = False) -> Path:
        """Write the translators as safetensors; returns the file. With ``int8``, ``A`` is stored as int8
        rows with one scale each (:func:`int8_rows`, the shipped form); else in full float32."""
        from safetensors.torch import save_file

        directory = directory or lens_dir(self.model_name)
        directory.mkdir(parents=True, exist_ok=True)
        if int8:
            values, scale = int8_rows(self.weight.detach().cpu())
            weights = {"weight_int8": values, "weight_scale": scale}
        else:
            weights = {"weight": self.weight.detach().cpu().contiguous()}
        tensors = {
            **weights,
            "bias": self.bias.detach().cpu().contiguous(),
            "heldout_kl_logit": torch.as_tensor(self.heldout_kl_logit),
            "heldout_kl_tuned": torch.as_tensor(self.heldout_kl_tuned),
        }
        meta = {"model_name": self.model_name, "fingerprint": self.fingerprint, "train_tokens": str(self.train_tokens),
                "train_seconds": f"{self.train_seconds:.2f}", "config": json.dumps(self.config)}
        path = directory / FILE_NAME
        staging = path.with_suffix(".tmp")
        save_file(tensors, str(staging), metadata=meta)
        staging.replace(path)  # atomic: a reader never sees half a file
        return path


def int8_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row of each ``A_b`` as int8 with its own float32 scale (symmetric, absmax / 127).

    ``weight (n_layers, d_model, d_model)`` -> ``values`` int8 of the same shape and ``scale
    (n_layers, d_model, 1)``, with ``values * scale ~= weight`` to within half a step of its row.
    A row multiplies one residual coordinate, so a few huge coordinates (the attention sink) only
    scale their own rows' error, which a low-rank cut spreads over every direction.
    """
    scale = (weight.abs().amax(dim=-1, keepdim=True) / 127).clamp_min(1e-12).float()
    values = torch.round(weight.float() / scale).clamp(-127, 127).to(torch.int8)
    return values.contiguous(), scale.contiguous()


def with_int8(lens: TunedLens) -> TunedLens:
    """``lens`` with each ``A_b`` replaced by exactly what :meth:`TunedLens.save` with ``int8=True`` stores."""
    values, scale = int8_rows(lens.weight)
    return replace(lens, weight=values.float() * scale, config={**lens.config, "storage": "int8 per row"})


def _safe_name(model_name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_name).strip("_.")[-60:] or "model"
    if safe != model_name:
        safe += "-" + hashlib.sha1(model_name.encode()).hexdigest()[:8]
    return safe


def lens_dir(model_name: str) -> Path:
    """``workbench_home()/tuned_lens/<safe name>``; names with odd characters get a hash suffix."""
    return workbench_home() / "tuned_lens" / _safe_name(model_name)


def shipped_lens_dir(model_name: str) -> Path:
    """Where the project ships a trained lens for ``model_name`` (``interp_core/data/tuned_lens/<safe name>``)."""
    return SHIPPED_DIR / _safe_name(model_name)


def lens_file(model_name: str) -> Path | None:
    """The lens file used for ``model_name``: one trained on this machine, else the shipped one, else ``None``."""
    for directory in (lens_dir(model_name), shipped_lens_dir(model_name)):
        if (path := _file_in(directory)) is not None:
            return path
    return None


def _file_in(directory: Path) -> Path | None:
    """The lens file in ``directory``: plain safetensors, else its gzipped form, else ``None``."""
    for name in (FILE_NAME, SHIPPED_FILE_NAME):
        if (directory / name).is_file():
            return directory / name
    return None


def gzip_lens_file(path: Path) -> Path:
    """Gzip a saved lens file beside itself (``.gz``, no timestamp, so the bytes depend only on the lens) and
    remove the plain file; returns the new path. This is how the shipped lens is stored."""
    target = path.with_name(path.name + ".gz")
    staging = target.with_suffix(".tmp")
    staging.write_bytes(gzip.compress(path.read_bytes(), compresslevel=9, mtime=0))
    staging.replace(target)
    path.unlink()
    return target


def read_lens_file(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The metadata and tensors of a lens file, plain safetensors or gzipped safetensors.

    A gzipped file is decompressed in memory and parsed by ``safetensors`` (never pickle); its metadata is
    the ``__metadata__`` entry of the safetensors header (8-byte little-endian length, then JSON)."""
    from safetensors import safe_open
    from safetensors.torch import load as load_safetensors

    if path.suffix != ".gz":
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {}), {k: f.get_tensor(k) for k in f.keys()}
    data = gzip.decompress(path.read_bytes())
    header_len = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8:8 + header_len]).get("__metadata__", {})
    return meta, load_safetensors(data)


def fingerprint(model: LoadedModel) -> str:
    """A short digest of the unembedding and first block, so a lens is never used on other weights."""
    found = _fingerprints.get(model)  # a loaded model's weights never change: digest them once
    if found is None:
        w = model.weights
        probe = torch.cat([w.W_U[:, :64].flatten(), w.blocks[0].W_Q.flatten()[:4096], w.ln_final_w.flatten()]).float().cpu()
        found = _fingerprints[model] = hashlib.sha1(np.round(probe.numpy(), 4).tobytes()).hexdigest()[:16]
    return found


_fingerprints: weakref.WeakKeyDictionary[LoadedModel, str] = weakref.WeakKeyDictionary()
_read_lock = threading.Lock()
_read_lenses: OrderedDict[tuple, TunedLens] = OrderedDict()  # by file identity; a page asks for the lens once per request
READ_LENSES_KEPT = 2


def load_tuned_lens(model: LoadedModel, directory: Path | None = None) -> TunedLens | None:
    """The saved tuned lens of ``model``, or ``None`` if none is saved (or it fits other weights).

    Without ``directory``: the lens trained on this machine (:func:`lens_dir`) if it fits the
    model, else the one shipped with the project (:func:`shipped_lens_dir`)."""
    if directory is None:
        for where in (lens_dir(model.info.name), shipped_lens_dir(model.info.name)):
            if (lens := load_tuned_lens(model, where)) is not None:
                return lens
        return None
    path = _file_in(directory)
    if path is None:
        return None
    lens = _read_lens(path)
    if lens.fingerprint != fingerprint(model):
        return None
    if lens.weight.shape != (model.info.n_layers, model.info.d_model, model.info.d_model):
        return None
    return lens


def _read_lens(path: Path) -> TunedLens:
    """The lens in ``path``, read once per version of the file (path, inode, size, modification time):
    reading and de-quantising the shipped file costs about 0.15 s of CPU, on every lens request otherwise.
    A saved lens replaces its file (a new inode), so a retrained lens is always read afresh."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    with _read_lock:
        if (found := _read_lenses.get(key)) is not None:
            _read_lenses.move_to_end(key)
            return found
    meta, t = read_lens_file(path)
    weight = t["weight"] if "weight" in t else t["weight_int8"].float() * t["weight_scale"].float()
    lens = TunedLens(
        model_name=meta["model_name"], fingerprint=meta["fingerprint"], weight=weight, bias=t["bias"].float(),
        heldout_kl_logit=t["heldout_kl_logit"].numpy(), heldout_kl_tuned=t["heldout_kl_tuned"].numpy(),
        train_tokens=int(meta["train_tokens"]), train_seconds=float(meta["train_seconds"]), config=json.loads(meta["config"]),
    )
    with _read_lock:
        _read_lenses[key] = lens
        while len(_read_lenses) > READ_LENSES_KEPT:
            _read_lenses.popitem(last=False)
    return lens


def require_tuned_lens(model: LoadedModel) -> TunedLens:
    """The saved tuned lens, or TunedLensError saying how to train one."""
    lens = load_tuned_lens(model)
    if lens is None:
        raise TunedLensError(
            f"No tuned lens is saved for '{model.info.name}'. Train one with the 'Train tuned lens' button on the "
            f"Logit Lens page, or run: python -m interp_core logit-lens --model {model.info.name} --lens tuned --train "
            "--prompt '...' (a few minutes on a CPU)."
        )
    return lens


# --- text and residuals --------------------------------------------------------------------
def sample_residuals(model: LoadedModel, n_seqs: int, seq_len: int, *, seed: int = 0, top_k: int = 50,
                     on_progress: Progress | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``n_seqs`` sequences from the model (BOS first, temperature 1, top-``top_k``) and
    record the residual stream at every boundary while doing so (one pass, with a KV cache).

    Returns:
        ``tokens (n_seqs, seq_len)`` and ``resid (n_layers + 1, n_seqs, seq_len, d_model)``.
    """
    progress = on_progress or (lambda fraction, message: None)
    names = boundary_names(model.info.n_layers)
    tok = model.tokenizer
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    generator = torch.Generator().manual_seed(seed)
    ids = torch.full((n_seqs, 1), int(start), dtype=torch.long)
    store: dict[str, torch.Tensor] = {}
    steps: list[torch.Tensor] = []
    past = None
    hooks = [(n, capture_into(store)) for n in names]
    for t in range(seq_len):
        # The lock and hooks only around each step's forward: another session's request runs between steps
        # (holding them for the whole sampling blocked every other participant for as long).
        with model.lock, attached(model.adapter, hooks), torch.no_grad():
            out = model.hf_model(input_ids=ids[:, -1:].to(model.device), past_key_values=past, use_cache=True)
        past = out.past_key_values
        with torch.no_grad():
            steps.append(torch.stack([store[n][:, -1].float().cpu() for n in names]))  # (boundary, seq, d_model)
            if t < seq_len - 1:
                logits = out.logits[:, -1].float().cpu()
                kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
                probs = logits.masked_fill(logits < kth, float("-inf")).softmax(-1)
                ids = torch.cat([ids, torch.multinomial(probs, 1, generator=generator)], dim=1)
        progress((t + 1) / seq_len, f"sampled {t + 1}/{seq_len} tokens of {n_seqs} sequences")
    return ids, torch.stack(steps, dim=2)


def corpus_residuals(model: LoadedModel, texts: Sequence[str], seq_len: int) -> torch.Tensor:
    """The residual stream at every boundary for each text (first ``seq_len`` tokens), flattened
    over tokens after the first: ``(n_layers + 1, tokens, d_model)``."""
    chunks = []
    for text in texts:
        ids = model.tokenize(text)[:, :seq_len]
        _, resid = residual_boundaries(model, ids)
        chunks.append(resid[:, 0, 1:].float().cpu())
    return torch.cat(chunks, dim=1)


# --- training ------------------------------------------------------------------------------
def heldout_kl(model: LoadedModel, resid: torch.Tensor, lens: TunedLens | None, chunk: int = 128) -> np.ndarray:
    """Mean KL(final || lens) in nats per boundary over tokens ``resid (boundary, tokens, d_model)``,
    on the full vocabulary; ``lens=None`` is the logit lens."""
    out = np.zeros(resid.shape[0])
    with torch.no_grad():
        for start in range(0, resid.shape[1], chunk):
            part = resid[:, start : start + chunk].to(model.device)
            final = readout(model, part[-1]).log_softmax(-1)
            for b in range(resid.shape[0]):
                h = part[b] if lens is None else lens.translate(part[b], b)
                lp = readout(model, h).log_softmax(-1)
                out[b] += float((final.exp() * (final - lp)).sum(-1).clamp_min(0).sum())
    return out / resid.shape[1]


def _ridge_fit(model: LoadedModel, x: torch.Tensor, final: torch.Tensor, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form ``A, c`` so that ``x + x @ A + c`` points where the final residual points.

    ``x, final (tokens, d_model)``. The target is the final residual's normalised direction
    times ``x``'s own norm scale, so the identity (the logit lens) is the ``ridge -> inf`` limit.
    """
    target = model.adapter.apply_norm(final) * model.adapter.norm_scale(x) - x  # what A and c must add
    xa = torch.cat([x, torch.ones(len(x), 1)], dim=1).double()
    gram = xa.T @ xa
    penalty = ridge * gram.diagonal()[:-1].mean()
    gram[range(len(gram) - 1), range(len(gram) - 1)] += penalty  # no penalty on the bias
    solution = torch.linalg.solve(gram, xa.T @ target.double()).float()
    return solution[:-1], solution[-1]


def _kl_refine(model: LoadedModel, resid: torch.Tensor, a: torch.Tensor, c: torch.Tensor, cfg: TrainConfig,
               progress: Progress) -> None:
    """Adam on KL(final || lens) over a vocabulary subset; updates ``a, c`` in place."""
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    final_all = resid[-1]
    vocab = None
    if cfg.vocab_subset and cfg.vocab_subset < model.info.d_vocab:  # the tokens holding the final mass
        with torch.no_grad():
            mass = sum(readout(model, final_all[i : i + 256].to(model.device)).softmax(-1).sum(0) for i in range(0, len(final_all), 256))
        vocab = mass.topk(cfg.vocab_subset).indices
    a.requires_grad_(True)
    c.requires_grad_(True)
    optimiser = torch.optim.Adam([a, c], lr=cfg.lr)
    n_layers = a.shape[0]
    for step in range(cfg.kl_steps):
        idx = torch.randint(0, resid.shape[1], (cfg.batch_tokens,), generator=generator)
        with torch.no_grad():
            final = readout(model, final_all[idx].to(model.device), vocab).log_softmax(-1)
        optimiser.zero_grad()
        for b in range(n_layers):  # one layer at a time keeps memory at one (batch, vocab) block
            h = resid[b, idx].to(model.device)
            lp = readout(model, h + h @ a[b] + c[b], vocab).log_softmax(-1)
            loss = (final.exp() * (final - lp)).sum(-1).mean()
            loss.backward()
        optimiser.step()
        progress((step + 1) / cfg.kl_steps, f"KL step {step + 1}/{cfg.kl_steps}")
    a.requires_grad_(False)
    c.requires_grad_(False)


def fit_translators(model: LoadedModel, train: torch.Tensor, cfg: TrainConfig,
                    progress: Progress) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form ridge fit, then Adam on the KL, from residuals ``train (n_layers + 1, tokens, d_model)``.

    Returns ``A (n_layers, d_model, d_model)`` and ``c (n_layers, d_model)``.
    """
    n, d = model.info.n_layers, model.info.d_model
    a, c = torch.zeros(n, d, d), torch.zeros(n, d)
    if cfg.ridge > 0:
        for b in range(n):
            a[b], c[b] = _ridge_fit(model, train[b], train[-1], cfg.ridge)
            progress(0.2 * (b + 1) / n, f"closed-form fit of translator {b + 1}/{n}")
    if cfg.kl_steps > 0:
        _kl_refine(model, train, a, c, cfg, lambda f, m: progress(0.2 + 0.8 * f, m))
    return a.detach(), c.detach()


def train_tuned_lens(model: LoadedModel, config: TrainConfig | None = None, *, texts: Sequence[str] | None = None,
                     save: bool = True, on_progress: Progress | None = None) -> TunedLens:
    """Train (and by default save) a tuned lens for ``model``.

    Args:
        config: sizes and rates; the defaults fit SmolLM2-135M on 2 CPU cores in minutes.
        texts: a training corpus; ``None`` samples text from the model itself. With a corpus,
            its last ``n_heldout_seqs`` texts are held out.
        on_progress: ``(fraction, message)`` callback.
    """
    cfg = config or TrainConfig()
    progress = on_progress or (lambda fraction, message: None)
    started = time.perf_counter()
    train, held = training_residuals(model, cfg, texts, lambda f, m: progress(0.35 * f, m))
    a, c = fit_translators(model, train, cfg, lambda f, m: progress(0.35 + 0.45 * f, m))
    n = model.info.n_layers
    lens = TunedLens(model.info.name, fingerprint(model), a, c, np.zeros(n + 1), np.zeros(n + 1),
                     int(train.shape[1]), 0.0, asdict(cfg))
    progress(0.8, "held-out KL of the logit lens")
    kl_logit = heldout_kl(model, held, None)
    progress(0.9, "held-out KL of the tuned lens")
    kl_tuned = heldout_kl(model, held, lens)
    lens = TunedLens(lens.model_name, lens.fingerprint, lens.weight, lens.bias, kl_logit, kl_tuned,
                     lens.train_tokens, time.perf_counter() - started, lens.config)
    if save:
        lens.save()
    progress(1.0, f"trained in {lens.train_seconds:.0f} s")
    return lens


def training_residuals(model: LoadedModel, cfg: TrainConfig, texts: Sequence[str] | None,
                        progress: Progress) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and held-out residuals, each ``(n_layers + 1, tokens, d_model)`` (BOS dropped)."""
    if texts is not None:
        if len(texts) <= cfg.n_heldout_seqs:
            raise TunedLensError(f"The corpus has {len(texts)} texts; it needs more than {cfg.n_heldout_seqs} (the held-out ones).")
        held = corpus_residuals(model, texts[-cfg.n_heldout_seqs :], cfg.seq_len)
        return corpus_residuals(model, texts[: -cfg.n_heldout_seqs], cfg.seq_len), held
    total = cfg.n_train_seqs + cfg.n_heldout_seqs
    _, resid = sample_residuals(model, total, cfg.seq_len, seed=cfg.seed, top_k=cfg.sample_top_k, on_progress=progress)
    resid = resid[:, :, 1:]  # drop BOS: its residual is the same in every sequence
    flat = lambda r: r.reshape(r.shape[0], -1, r.shape[-1])  # (boundary, seq * pos, d_model)
    return flat(resid[:, : cfg.n_train_seqs]), flat(resid[:, cfg.n_train_seqs :])


def estimate_seconds(model: LoadedModel, config: TrainConfig | None = None) -> float:
    """A rough training time from a short timing of this machine's matrix multiply."""
    cfg = config or TrainConfig()
    n, d, v = model.info.n_layers, model.info.d_model, model.info.d_vocab
    x, w = torch.randn(64, d, device=model.device), model.weights.W_U
    x @ w  # warm-up
    began = time.perf_counter()
    for _ in range(3):
        x @ w
    flops_per_s = 3 * 2 * 64 * d * v / max(time.perf_counter() - began, 1e-6)
    tokens = (cfg.n_train_seqs + cfg.n_heldout_seqs) * cfg.seq_len
    held = cfg.n_heldout_seqs * (cfg.seq_len - 1)
    vocab = cfg.vocab_subset or v
    flops = (
        tokens * 2 * model.info.n_params * 1.6  # sampling (small batches run below peak)
        + 2 * held * (n + 1) * 2 * d * v  # held-out KL, two lenses
        + cfg.kl_steps * cfg.batch_tokens * n * 3 * 2 * d * vocab  # KL refinement, forward and backward
        + n * tokens * d * d * 2  # closed-form fit
    )
    return flops / flops_per_s


# --- requests ------------------------------------------------------------------------------
QUICK_TRAINING = TrainConfig(n_train_seqs=24, n_heldout_seqs=4, seq_len=32, kl_steps=10, batch_tokens=64)


@dataclass(frozen=True)
class TrainTunedLensRequest(Request):
    """Train and save a tuned lens (``quick``: :data:`QUICK_TRAINING`, for small models and demos)."""

    quick: bool = False
    label = "Training the tuned lens"
    heavy = True

    def compute(self, model: LoadedModel, on_progress: Progress) -> TunedLens:
        return train_tuned_lens(model, QUICK_TRAINING if self.quick else TrainConfig(), on_progress=on_progress)


@dataclass(frozen=True)
class SavedTunedLensRequest(Request):
    """The tuned lens saved for the model; ``version`` (the file's modification time) makes a
    retrained lens a new request, so a cached old one is never served."""

    version: float = 0.0
    label = "Loading the tuned lens"

    def compute(self, model: LoadedModel, on_progress: Progress) -> TunedLens:
        return require_tuned_lens(model)


def saved_lens_version(model: LoadedModel) -> float:
    """The used lens file's modification time (one trained here, else the shipped one), or 0 when none is."""
    path = lens_file(model.info.name)
    return path.stat().st_mtime if path is not None else 0.0
