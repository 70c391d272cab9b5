"""How fast is the information-flow computation, and does its memory stay bounded?

Run: ``.venv/bin/python benchmarks/flow.py [--device cpu|cuda] [--long 200]``.

On the default model SmolLM2-135M (30 layers, 9 heads, 3 KV heads, d_model 576):

- a 20-token prompt: one plain forward (median of 5) against every contribution of every block,
  :func:`interp_core.techniques.flow.contributions.contributions` (one recording forward plus the
  vectorised parts, median of 3); the issue asks for under 3 s on a 2-core CPU. The ratio to a plain
  forward is what holds on a loaded machine;
- the IOI prompt's reference numbers (field guide §7): the residual's share at block 23 and the
  largest attention part there, at the last position;
- a ``--long``-token prompt: its time, and the peak resident memory it added, beside the size the
  parts tensor ``(query, key, head, d_model)`` would have if it were built whole instead of in chunks.

The last line is JSON with every number. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from interp_core import load_model  # noqa: E402
from interp_core.techniques.flow.contributions import CHUNK_ELEMENTS, contributions  # noqa: E402

IOI = "When Mary and John went to the store, John gave a drink to"
TWENTY = "The quick brown fox jumps over the lazy dog while the farmer watches from the old wooden"


def median_seconds(fn, repeats: int, clock=time.perf_counter) -> float:
    """Median over ``repeats`` calls of ``fn``, by ``clock`` (wall time; ``time.process_time`` for this process's
    CPU seconds over all its threads, which other processes on a shared machine disturb far less)."""
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(clock() - start)
    return statistics.median(times)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def long_prompt(model, n_tokens: int) -> tuple[float, float, float]:
    """Seconds, peak resident memory added (MB), and the unchunked parts tensor's size per layer (MB)."""
    ids = torch.randint(1000, 20000, (1, n_tokens))
    before = peak_rss_mb()
    seconds = median_seconds(lambda: contributions(model, ids), 1)
    whole_mb = n_tokens ** 2 * model.info.n_heads * model.info.d_model * 4 / 2 ** 20
    return seconds, peak_rss_mb() - before, whole_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--long", type=int, default=200, help="tokens of the long prompt (memory check; 0 skips it)")
    args = parser.parse_args()
    model = load_model("smollm2-135m", device=args.device)
    info = model.info
    ids = model.tokenize(TWENTY)[:, :20]
    contributions(model, ids)  # warm-up: canonical weights are built once per model
    forward_s = median_seconds(lambda: model.forward(ids), 5)
    flow_s = median_seconds(lambda: contributions(model, ids), 3)
    forward_cpu = median_seconds(lambda: model.forward(ids), 3, time.process_time)
    flow_cpu = median_seconds(lambda: contributions(model, ids), 3, time.process_time)
    print(f"{info.name} on {args.device}, {torch.get_num_threads()} threads, 20 tokens: plain forward {forward_s:.3f} s, "
          f"all contributions {flow_s:.3f} s ({flow_s / forward_s:.1f} forwards); CPU seconds {forward_cpu:.3f} and "
          f"{flow_cpu:.3f} ({flow_cpu / forward_cpu:.1f} forwards)")

    ioi = contributions(model, model.tokenize(IOI))
    last = ioi.attn.shape[1] - 1
    key, head = divmod(int(ioi.attn[23, last].argmax()), info.n_heads)
    print(f"IOI, last position, block 23: residual keeps {ioi.attn_resid[23, last]:.3f} (guide: 0.50); largest attention "
          f"part head {head} reading position {key} ({model.token_strings(model.tokenize(IOI)[0, key:key + 1])[0]!r}) "
          f"{ioi.attn[23, last].max():.3f} (guide: head 0, ' Mary', about 0.11); block-0 MLP share min "
          f"{ioi.mlp[0].min():.3f} (guide: nearly all)")

    long_s = added = whole_mb = 0.0
    if args.long > 0:
        long_s, added, whole_mb = long_prompt(model, args.long)
        print(f"{args.long} tokens: {long_s:.2f} s; peak resident memory grew by {added:.0f} MB (the unchunked parts tensor "
              f"alone would be {whole_mb:.0f} MB per layer; a chunk is at most {CHUNK_ELEMENTS * 4 / 2 ** 20:.0f} MB)")
    print(json.dumps({"model": info.name, "device": args.device, "threads": torch.get_num_threads(),
                      "forward_20_s": round(forward_s, 4), "flow_20_s": round(flow_s, 4),
                      "ratio": round(flow_s / forward_s, 2), "forward_20_cpu_s": round(forward_cpu, 4),
                      "flow_20_cpu_s": round(flow_cpu, 4), "ioi_resid_block23": round(float(ioi.attn_resid[23, last]), 4),
                      "ioi_top_part": {"head": head, "key": key, "contribution": round(float(ioi.attn[23, last].max()), 4)},
                      "long_tokens": args.long, "long_s": round(long_s, 2), "long_peak_rss_added_mb": round(added, 1),
                      "unchunked_parts_mb_per_layer": round(whole_mb, 1)}))


if __name__ == "__main__":
    main()
