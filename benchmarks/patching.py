"""How fast is activation patching here, and does the fast path give the same numbers?

Run: ``.venv/bin/python benchmarks/patching.py [--device cpu|cuda] [--skip-real] [--quick]``.

Side by side, in one run, on (1) a random model of the default model's shape (llama, 30
layers, 9 heads, 3 KV heads, d_model 576, d_mlp 1536, vocab 49152) with a 20-token pair and
(2) the real default model SmolLM2-135M with the IOI pair (when its local copy is there):

- naive: one full forward pass of the corrupted prompt per patched cell (TransformerLens's way);
- batched: the cells through the whole model in chunks of 64, only the last position unembedded;
- batched + start at layer: :func:`interp_core.techniques.patching.exact_patching` (what the page runs);
- attribution: :func:`interp_core.techniques.attribution.attribution_patching`, one forward + one backward.

It checks that the batched residual grid equals the naive one within 1e-3, prints attribution's
correlation with the exact grid, then how the time grows with prompt length and layer count,
and the speed-up ratios last. It is a benchmark, not a test: it takes a few minutes on a CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from interp_core import load_model  # noqa: E402
from interp_core.core.model import LoadedModel  # noqa: E402
from interp_core.core.names import hook_name  # noqa: E402
from interp_core.techniques.attribution import agreement, attribution_patching  # noqa: E402
from interp_core.techniques.patching import (  # noqa: E402
    PatchPair,
    exact_patching,
    layer_cells,
    logit_diff,
    naive_patching,
    prepare_pair,
    write_cells,
)
from interp_core.testing.tiny_models import build_tokenizer  # noqa: E402

DEFAULT_SHAPE = dict(
    num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, hidden_size=576,
    intermediate_size=1536, vocab_size=49152, max_position_embeddings=2048,
)
CPU_TIME = False
IOI = ("When Mary and John went to the store, John gave a drink to",
       "When Mary and John went to the store, Mary gave a drink to", " Mary", " John")


def save_default_shape(directory: Path, n_layers: int) -> Path:
    """A random llama of the default's shape (HF's own init) with the small test tokenizer."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(**{**DEFAULT_SHAPE, "num_hidden_layers": n_layers}, tie_word_embeddings=True, bos_token_id=0, eos_token_id=0)
    AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    build_tokenizer().save_pretrained(directory)
    return directory


def timed(fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
    """``(fn(*args, **kwargs), seconds)``: CPU seconds of this process with ``--cpu-time``
    (robust when other jobs share the machine), else wall-clock seconds."""
    clock = time.process_time if CPU_TIME else time.perf_counter
    start = clock()
    value = fn(*args, **kwargs)
    return value, clock() - start


def random_pair(model: LoadedModel, n_pos: int, seed: int = 0) -> PatchPair:
    """Random token ids; the corrupted prompt differs at one position in the middle."""
    gen = torch.Generator().manual_seed(seed)
    vocab = min(model.info.d_vocab, 400)  # ids the small tokenizer can print
    clean = torch.randint(1, vocab, (1, n_pos), generator=gen)
    corrupt = clean.clone()
    corrupt[0, n_pos // 2] = (clean[0, n_pos // 2] + 7) % vocab
    strs = tuple(model.token_strings(clean[0]))
    return PatchPair(clean, corrupt, 5, 6, strs, tuple(model.token_strings(corrupt[0])), "<5>", "<6>")


def batched_full_forward(model: LoadedModel, pair: PatchPair, chunk: int = 64) -> np.ndarray:
    """The middle way: cells in chunks of ``chunk`` through the whole model, last position only."""
    _, clean_cache = model.run_with_cache(pair.clean_tokens, [hook_name("hook_resid_pre", L) for L in range(model.info.n_layers)])
    cells = [(layer, cell) for layer in range(model.info.n_layers) for cell in layer_cells(model, pair, "resid_pre")]
    out = []
    for start in range(0, len(cells), chunk):
        part = cells[start : start + chunk]
        hooks = []
        for layer in sorted({layer for layer, _ in part}):
            rows = [i for i, (l_, _) in enumerate(part) if l_ == layer]
            mine = [part[i][1] for i in rows]

            def hook(value: torch.Tensor, name: str, rows=rows, mine=mine, layer=layer) -> torch.Tensor:
                new = value.clone()
                new[rows] = write_cells("resid_pre", value[rows], clean_cache[hook_name("hook_resid_pre", layer)], mine)
                return new

            hooks.append((hook_name("hook_resid_pre", layer), hook))
        logits = model.forward(pair.corrupt_tokens.expand(len(part), -1), hooks=hooks, last_position_only=True)
        out.append(logit_diff(logits, pair.answer_id, pair.wrong_id).cpu().numpy())
    return np.concatenate(out).reshape(model.info.n_layers, -1)


def compare(model: LoadedModel, pair: PatchPair, title: str, middle: bool = True) -> dict:
    """Naive vs batched vs batched+start-at-layer vs attribution on the residual grid."""
    print(f"\n== {title}: {model.info.n_layers} layers x {pair.n_pos} positions = {model.info.n_layers * pair.n_pos} cells ==")
    naive, t_naive = timed(naive_patching, model, pair, "resid_pre")
    print(f"naive, one full forward per cell     {t_naive:8.2f} s")
    if middle:
        full, t_full = timed(batched_full_forward, model, pair)
        print(f"batched (64), whole model            {t_full:8.2f} s   max |diff| vs naive {np.abs(full - naive.patched).max():.2e}")
    fast, t_fast = timed(exact_patching, model, pair, "resid_pre")
    diff = float(np.abs(fast.patched - naive.patched).max())
    print(f"batched + start at patched layer     {t_fast:8.2f} s   max |diff| vs naive {diff:.2e}")
    attr, t_attr = timed(attribution_patching, model, pair)
    corr = agreement(fast, attr["resid_pre"])
    print(f"attribution (1 fwd + 1 bwd)          {t_attr:8.2f} s   correlation with exact (resid_pre) {corr:.3f}")
    for target in ("attn_out", "mlp_out", "head_out"):
        exact_t, t_t = timed(exact_patching, model, pair, target)
        print(f"   exact {target:<9} {t_t:6.2f} s; attribution correlation {agreement(exact_t, attr[target]):.3f}")
    print(f"clean metric {fast.clean_metric:.3f}, corrupted {fast.corrupt_metric:.3f}")
    assert diff < 1e-3, f"batched grid differs from the naive one by {diff}"
    return {"title": title, "naive": t_naive, "fast": t_fast, "attr": t_attr, "diff": diff, "corr": corr}


def scaling(model_dirs: dict[int, LoadedModel], device: str, lengths: list[int]) -> None:
    """Time the batched grid and attribution as the prompt and the model grow."""
    print("\n== growth: batched+start-at-layer residual grid and attribution (naive per-cell time x cells) ==")
    print(f"{'layers':>6} {'pos':>4} {'cells':>6} {'fast s':>8} {'attr s':>7} {'1 fwd s':>8} {'naive est s':>11}")
    for n_layers, model in model_dirs.items():
        for n_pos in lengths:
            pair = random_pair(model, n_pos, seed=n_pos)
            _, t_fast = timed(exact_patching, model, pair, "resid_pre")
            _, t_attr = timed(attribution_patching, model, pair)
            reps = 5
            _, t_fwd = timed(lambda m=model, t=pair.corrupt_tokens: [m.forward(t) for _ in range(5)])
            cells = n_layers * n_pos
            print(f"{n_layers:>6} {n_pos:>4} {cells:>6} {t_fast:8.2f} {t_attr:7.2f} {t_fwd / reps:8.3f} {t_fwd / reps * cells:11.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-real", action="store_true", help="skip the real default model")
    parser.add_argument("--quick", action="store_true", help="shorter growth table")
    parser.add_argument("--cpu-time", action="store_true", help="report process CPU seconds instead of wall-clock (busy machines)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    global CPU_TIME
    CPU_TIME = args.cpu_time
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, timing {'CPU' if CPU_TIME else 'wall-clock'} seconds, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        models = {}
        for n_layers in (15, 30):
            directory = save_default_shape(Path(tmp) / f"l{n_layers}", n_layers)
            models[n_layers] = load_model(str(directory), device=args.device)
        runs.append(compare(models[30], random_pair(models[30], 20), "random model of the default's shape, 20 tokens"))
        if not args.skip_real:
            real = load_model("smollm2-135m", device=args.device)
            runs.append(compare(real, prepare_pair(real, *IOI), "SmolLM2-135M, IOI pair", middle=False))
        scaling(models if not args.quick else {30: models[30]}, args.device, [10, 20, 40] if not args.quick else [10, 20])
    print("\n== ratios (naive time / fast time) ==")
    for run in runs:
        print(f"{run['title']}: exact grid {run['naive'] / run['fast']:.1f}x faster than naive (goal 10x), "
              f"attribution {run['naive'] / run['attr']:.1f}x (goal 50x), correlation {run['corr']:.2f}, max diff {run['diff']:.1e}")


if __name__ == "__main__":
    main()
