"""The ``--dataset`` flags that ``patch`` and ``dla`` share: a built-in generator or a CSV file of prompt pairs."""

from __future__ import annotations

import argparse
from pathlib import Path

from interp_core.core.errors import UsageError
from interp_core.techniques.contract import Request


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dataset ioi|factual|FILE.csv``, ``--n``, ``--seed``, ``--template``."""
    parser.add_argument("--dataset", default=None,
                        help="run over many pairs: ioi, factual, or a CSV file with columns clean, corrupt, answer, wrong")
    parser.add_argument("--n", type=int, default=32, help="pairs a generator draws (--dataset ioi|factual; default 32)")
    parser.add_argument("--seed", type=int, default=0, help="the generator's seed (default 0)")
    parser.add_argument("--template", type=int, default=0, help="which IOI template (0, 1, 2; default 0)")


def dataset_request(request_type: type[Request], args: argparse.Namespace, **extra: object) -> Request:
    """The dataset request the flags name; a ``.csv`` (or any existing file) is read here."""
    source = args.dataset
    if source in ("ioi", "factual"):
        return request_type(dataset=source, n=args.n, seed=args.seed, template=args.template, **extra)
    path = Path(source)
    if not path.is_file():
        raise UsageError(f"--dataset is ioi, factual or a CSV file; {source!r} is neither (no such file).")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"--dataset {source}: the file could not be read as UTF-8 text ({error}).") from None
    return request_type(dataset="csv", csv=text, **extra)
