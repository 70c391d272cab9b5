"""How fast is activation patching here, and does the fast path give the same numbers?

Run: ``.venv/bin/python benchmarks/patching.py [--device cpu|cuda] [--skip-real] [--quick]``.

Side by side, in one run, on (1) a random model of the default model's shape (llama, 30
layers, 9 heads, 3 KV heads, d_model 576, d_mlp 1536, vocab 49152) with a 20-token pair and
(2) the real default model SmolLM2-135M with the IOI pair (when its local copy is there):

- naive: one full forward pass of the corrupted prompt per patched cell (TransformerLens's way);
- batched: the cells through the whole model in chunks of 64, only the last position unembedded;
- exact: :func:`interp_core.techniques.patching.exact_patching` (what the page runs): each cell from its
  patched layer and only from its patched position on, earlier positions' keys and values reused;
- attribution: :func:`interp_core.techniques.attribution.attribution_patching`, one forward + one backward.

It checks that the batched residual grid equals the naive one within 1e-3, prints attribution's
correlation with the exact grid, the dataset sweep (issue #18: ``--dataset-pairs`` IOI pairs, resid_pre,
all pairs batched against the sequential loop of single-pair exact sweeps, same numbers checked to 1e-4;
``--dataset-only`` runs just that), then how the time grows with prompt length (10, 20, 40, 80 tokens)
and layer count, the speed-up ratios, and last two JSON lines (issue #24's record): a pair that
differs at its first token, then the IOI grid, each ``{"cells", "naive_s", "exact_s", "ratio",
"max_abs_diff"}`` with the naive loop and the exact sweep (median of 3) timed in the same run. It is a benchmark, not a test: it takes a few minutes on a CPU.
"""

from __future__ import annotations

import argparse
import json
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
from interp_core.techniques.dataset_patching import dataset_patching  # noqa: E402
from interp_core.techniques.datasets import ioi as ioi_dataset  # noqa: E402
from interp_core.techniques.datasets import prepare_dataset  # noqa: E402
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
# A pair of the same length whose prompts differ at their first token (and the third): no cell can be skipped
# and the rows patched at position 0 run every position.
FIRST_TOKEN = ("John and Mary went to the store. Then John gave a drink to",
               "Mary and John went to the store. Then John gave a drink to", " Mary", " John")


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


def first_token_pair(model: LoadedModel, n_pos: int, seed: int = 0) -> PatchPair:
    """Random token ids; the corrupted prompt differs at position 0, so every cell runs."""
    pair = random_pair(model, n_pos, seed)
    corrupt = pair.clean_tokens.clone()
    corrupt[0, 0] = (corrupt[0, 0] + 7) % min(model.info.d_vocab, 400)
    return PatchPair(pair.clean_tokens, corrupt, 5, 6, pair.tokens, tuple(model.token_strings(corrupt[0])), "<5>", "<6>")


def calibration(tmp: Path, device: str) -> None:
    """Measured exact sweeps next to :func:`estimate_exact_cost` (whose constants come from here)."""
    from transformers import AutoModelForCausalLM, GPT2Config

    from interp_core.techniques.patching import estimate_exact_cost

    torch.manual_seed(0)
    gpt2_dir = tmp / "gpt2-small-shape"
    AutoModelForCausalLM.from_config(GPT2Config(n_layer=12, n_head=12, n_embd=768, vocab_size=50257)).save_pretrained(gpt2_dir)
    build_tokenizer().save_pretrained(gpt2_dir)
    models = {"default shape": load_model(str(save_default_shape(tmp / "cal30", 30)), device=device),
              "GPT-2-small shape": load_model(str(gpt2_dir), device=device)}
    print("\n== calibration: resid_pre, pairs differing at their first token (every cell runs) ==")
    for title, model in models.items():
        info = model.info
        for n_pos in ((10, 20, 40, 80) if title == "default shape" else (20,)):
            pair = first_token_pair(model, n_pos)
            _, seconds = median_of(3 if n_pos <= 40 else 1, exact_patching, model, pair, "resid_pre")
            estimate = estimate_exact_cost(n_layers=info.n_layers, n_heads=info.n_heads, d_model=info.d_model, d_mlp=info.d_mlp,
                                           d_vocab=info.d_vocab, n_tokens=n_pos, target="resid_pre",
                                           gated_mlp=model.adapter.gated_mlp).seconds
            print(f"{title:<18} {n_pos:>3} tokens: measured {seconds:7.2f} s, estimated {estimate:7.2f} s")


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


def median_of(repeats: int, fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
    """``(last value, median seconds)`` of ``repeats`` calls."""
    times, value = [], None
    for _ in range(repeats):
        value, seconds = timed(fn, *args, **kwargs)
        times.append(seconds)
    return value, float(np.median(times))


def contract_line(model: LoadedModel, pair: PatchPair, naive: float | None = None, naive_grid: np.ndarray | None = None) -> dict:
    """The issue's JSON record for one pair: naive loop once, exact sweep median of 3, same run."""
    if naive is None or naive_grid is None:
        result, naive = timed(naive_patching, model, pair, "resid_pre")
        naive_grid = result.patched
    exact, exact_s = median_of(3, exact_patching, model, pair, "resid_pre")
    cells = int(exact.patched.size)
    return {"cells": cells, "naive_s": round(naive, 3), "exact_s": round(exact_s, 3), "ratio": round(naive / exact_s, 1),
            "max_abs_diff": float(np.abs(exact.patched - naive_grid).max())}


def compare(model: LoadedModel, pair: PatchPair, title: str, middle: bool = True) -> dict:
    """Naive vs batched vs batched+start-at-layer vs attribution on the residual grid."""
    print(f"\n== {title}: {model.info.n_layers} layers x {pair.n_pos} positions = {model.info.n_layers * pair.n_pos} cells ==")
    naive, t_naive = timed(naive_patching, model, pair, "resid_pre")
    print(f"naive, one full forward per cell     {t_naive:8.2f} s")
    if middle:
        full, t_full = timed(batched_full_forward, model, pair)
        print(f"batched (64), whole model            {t_full:8.2f} s   max |diff| vs naive {np.abs(full - naive.patched).max():.2e}")
    fast, t_fast = median_of(3, exact_patching, model, pair, "resid_pre")
    diff = float(np.abs(fast.patched - naive.patched).max())
    print(f"exact: from patched layer and position {t_fast:6.2f} s   max |diff| vs naive {diff:.2e} (median of 3)")
    attr, t_attr = timed(attribution_patching, model, pair)
    corr = agreement(fast, attr["resid_pre"])
    print(f"attribution (1 fwd + 1 bwd)          {t_attr:8.2f} s   correlation with exact (resid_pre) {corr:.3f}")
    for target in ("attn_out", "mlp_out", "head_out"):
        exact_t, t_t = timed(exact_patching, model, pair, target)
        print(f"   exact {target:<9} {t_t:6.2f} s; attribution correlation {agreement(exact_t, attr[target]):.3f}")
    print(f"clean metric {fast.clean_metric:.3f}, corrupted {fast.corrupt_metric:.3f}")
    assert diff < 1e-3, f"batched grid differs from the naive one by {diff}"
    return {"title": title, "naive": t_naive, "fast": t_fast, "attr": t_attr, "diff": diff, "corr": corr,
            "naive_grid": naive.patched}


def scaling(model_dirs: dict[int, LoadedModel], device: str, lengths: list[int]) -> None:
    """Time the batched grid and attribution as the prompt and the model grow."""
    print("\n== growth: exact residual grid and attribution (naive = one forward's time x cells) ==")
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


def dataset_run(model: LoadedModel, n_pairs: int) -> dict:
    """``n_pairs`` IOI pairs, resid_pre: every pair as rows of one batched sweep, then pair by pair; same numbers."""
    data = ioi_dataset(model, n_pairs, seed=0)
    pairs = prepare_dataset(model, data)
    print(f"\n== SmolLM2-135M, {n_pairs} IOI pairs of {pairs[0].n_pos} tokens, resid_pre ==")
    batched, t_batched = timed(dataset_patching, model, data, pairs, "resid_pre")
    print(f"batched (all pairs together): {t_batched:.1f} s", flush=True)
    looped, t_loop = timed(dataset_patching, model, data, pairs, "resid_pre", batched=False)
    diff = float(np.abs(batched.per_pair_patched - looped.per_pair_patched).max())
    print(f"sequential per-pair loop: {t_loop:.1f} s; ratio {t_loop / t_batched:.2f}x; max |diff| {diff:.1e}; "
          f"mean clean {batched.clean_metric:.2f}, corrupted {batched.corrupt_metric:.2f}")
    return {"pairs": n_pairs, "batched_s": t_batched, "loop_s": t_loop, "ratio": t_loop / t_batched, "max_abs_diff": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-real", action="store_true", help="skip the real default model")
    parser.add_argument("--quick", action="store_true", help="shorter growth table")
    parser.add_argument("--cpu-time", action="store_true", help="report process CPU seconds instead of wall-clock (busy machines)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--calibrate", action="store_true", help="only measure the cost estimate's calibration points")
    parser.add_argument("--dataset-pairs", type=int, default=32, help="IOI pairs of the dataset sweep (0: skip it)")
    parser.add_argument("--dataset-only", action="store_true", help="only the dataset sweep, batched vs the per-pair loop")
    args = parser.parse_args()
    global CPU_TIME
    CPU_TIME = args.cpu_time
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, timing {'CPU' if CPU_TIME else 'wall-clock'} seconds, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if args.calibrate:
        with tempfile.TemporaryDirectory() as tmp:
            calibration(Path(tmp), args.device)
        return
    if args.dataset_only:
        print(json.dumps(dataset_run(load_model("smollm2-135m", device=args.device), args.dataset_pairs)))
        return
    runs = []
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        models = {}
        for n_layers in (15, 30):
            directory = save_default_shape(Path(tmp) / f"l{n_layers}", n_layers)
            models[n_layers] = load_model(str(directory), device=args.device)
        runs.append(compare(models[30], random_pair(models[30], 20), "random model of the default's shape, 20 tokens"))
        if not args.skip_real:
            real = load_model("smollm2-135m", device=args.device)
            ioi = prepare_pair(real, *IOI)
            runs.append(compare(real, ioi, "SmolLM2-135M, IOI pair", middle=False))
            print("\n== SmolLM2-135M, a pair differing at its first token ==")
            lines.append(contract_line(real, prepare_pair(real, *FIRST_TOKEN)))
            print(f"naive {lines[-1]['naive_s']:.2f} s, exact {lines[-1]['exact_s']:.2f} s")
            lines.append(contract_line(real, ioi, runs[-1]["naive"], runs[-1]["naive_grid"]))
            if args.dataset_pairs:
                dataset_run(real, args.dataset_pairs)
        scaling(models if not args.quick else {30: models[30]}, args.device, [10, 20, 40, 80] if not args.quick else [10, 20])
    print("\n== ratios (naive time / exact time) ==")
    for run in runs:
        print(f"{run['title']}: exact grid {run['naive'] / run['fast']:.1f}x faster than naive, "
              f"attribution {run['naive'] / run['attr']:.1f}x, correlation {run['corr']:.2f}, max diff {run['diff']:.1e}")
    # Last lines, one JSON object each: the pair differing at its first token, then the IOI grid (goals: ratio >= 15 and >= 60).
    for line in lines:
        print(json.dumps(line))


if __name__ == "__main__":
    main()
