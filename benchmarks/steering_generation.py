"""Steering's two continuations: two generations one after the other against one batch of two rows.

    .venv/bin/python benchmarks/steering_generation.py [--model smollm2-135m] [--tokens 30] [--repeats 3]

Prints the seconds of each way per repeat, their ratio (measured in the same run) and whether the texts are the
same. The page's preset (Paris -> Rome, layer 16, c = 0.75) on the default model. A forward of one new position
is bound by reading the weights, so the batch of two costs about one generation (2-core machine: 1.8-2.0x).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the server runs torch (ui/serve.py)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from interp_core import load_model  # noqa: E402
from interp_core.techniques.steering import Addition, generate, generate_pair, steering_vector  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tokens", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = load_model(args.model)
    ids = model.tokenize("The capital of France is")
    layer = min(16, model.info.n_layers - 1)
    edit = Addition(steering_vector(model, (("The capital of Italy", "The capital of France"),), layer), layer, 0.75)
    generate(model, ids, 2, None)  # warm-up
    for repeat in range(args.repeats):
        started = time.perf_counter()
        separate = (generate(model, ids, args.tokens, None), generate(model, ids, args.tokens, edit))
        two = time.perf_counter() - started
        started = time.perf_counter()
        pair = generate_pair(model, ids, args.tokens, edit)
        one = time.perf_counter() - started
        print(f"repeat {repeat + 1}: two generations {two:.2f} s, one batch of two {one:.2f} s, "
              f"ratio {two / one:.2f}x, same texts: {pair == separate}", flush=True)


if __name__ == "__main__":
    main()
