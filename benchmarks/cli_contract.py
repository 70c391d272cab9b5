"""Record every CLI subcommand's JSON for fixed inputs, and compare two records byte for byte.

The CLI's subcommands, flags and JSON keys are a public contract. Before a refactor, record
the outputs; after it, record again and compare:

    python benchmarks/cli_contract.py record artifacts/cli_before
    python benchmarks/cli_contract.py record artifacts/cli_after
    python benchmarks/cli_contract.py compare artifacts/cli_before artifacts/cli_after

Each case runs ``python -m interp_core ... --json`` in a fresh process, on the default model
and on the shipped ``toy:induction`` model. Outputs are recorded as printed; ``compare`` masks
the values of wall-clock ``seconds`` keys and of ``out_dir`` (a temporary directory), the only
bytes that differ from run to run, and compares everything else byte for byte.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IOI_CLEAN = "When Mary and John went to the store, John gave a drink to"
IOI_CORRUPT = "When Mary and John went to the store, Mary gave a drink to"
TOY_SEQ = "BOS 5 9 12 40 7 5 9 12 40"
TOY_CORRUPT = "BOS 5 9 12 40 7 5 9 13 40"

CASES: dict[str, list[str]] = {
    # the default model
    "predict": ["predict", "--prompt", "The capital of France is", "--top-k", "5"],
    "logit_lens": ["logit-lens", "--prompt", "The capital of France is", "--target", " Paris"],
    "heads": ["heads", "--prompt", IOI_CLEAN],
    "pattern": ["pattern", "--prompt", IOI_CLEAN, "--layer", "16", "--head", "0"],
    "induction": ["induction", "--length", "20", "--ablate", "2", "--draws", "2"],
    "dla": ["dla", "--prompt", "The capital of France is", "--answer", " Paris", "--wrong", " Rome"],
    "patch_resid": ["patch", "--clean", IOI_CLEAN, "--corrupt", IOI_CORRUPT, "--answer", " Mary", "--wrong", " John",
                    "--target", "resid_pre"],
    "patch_attr": ["patch", "--clean", IOI_CLEAN, "--corrupt", IOI_CORRUPT, "--answer", " Mary", "--wrong", " John",
                   "--target", "resid_pre", "--method", "attribution"],
    "patch_heads": ["patch", "--clean", IOI_CLEAN, "--corrupt", IOI_CORRUPT, "--answer", " Mary", "--wrong", " John",
                    "--target", "head_out"],
    "circuits": ["circuits", "--layer", "18", "--head", "6", "--tokens", "Paris, cat"],
    "probe": ["probe", "--dataset", "facts", "--folds", "3"],
    "steer": ["steer", "--prompt", "The capital of France is", "--positive", "The capital of Italy", "--negative",
              "The capital of France", "--layer", "16", "--coefficient", "0.75", "--coefficients", "0,0.5,0.75,1,1.5",
              "--target", " Rome", "--max-new-tokens", "10"],
    # the shipped induction toy
    "toy_predict": ["predict", "--model", "toy:induction", "--prompt", TOY_SEQ],
    "toy_logit_lens": ["logit-lens", "--model", "toy:induction", "--prompt", TOY_SEQ],
    "toy_heads": ["heads", "--model", "toy:induction", "--prompt", TOY_SEQ],
    "toy_pattern": ["pattern", "--model", "toy:induction", "--prompt", TOY_SEQ, "--layer", "1", "--head", "0"],
    "toy_induction": ["induction", "--model", "toy:induction", "--length", "15", "--low", "0", "--high", "60"],
    "toy_dla": ["dla", "--model", "toy:induction", "--prompt", TOY_SEQ, "--answer", "12"],
    "toy_patch": ["patch", "--model", "toy:induction", "--clean", TOY_SEQ, "--corrupt", TOY_CORRUPT, "--answer", "12",
                  "--wrong", "13", "--target", "resid_pre"],
    "toy_circuits": ["circuits", "--model", "toy:induction"],
    "train_toy": ["train-toy", "--task", "reverse-increment", "--max-steps", "5", "--quiet", "--out", "{tmp}/toy"],
}
VOLATILE = re.compile(rb'"(seconds|out_dir)": ("[^"]*"|[-0-9.e]+)')


def run_case(name: str, argv: list[str], tmp: str) -> bytes:
    argv = [a.replace("{tmp}", tmp) for a in argv]
    done = subprocess.run([sys.executable, "-m", "interp_core", *argv, "--json"], cwd=ROOT, capture_output=True, timeout=900)
    return done.stdout + f"exit {done.returncode}\n".encode()


def record(folder: Path, only: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, argv in CASES.items():
        if only and name not in only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = run_case(name, argv, tmp)
        (folder / f"{name}.json").write_bytes(out)
        print(f"{name:16s} {len(out):9d} bytes  sha256 {hashlib.sha256(out).hexdigest()[:16]}", flush=True)


def compare(before: Path, after: Path) -> int:
    differ = 0
    for name in CASES:
        a, b = before / f"{name}.json", after / f"{name}.json"
        if not a.exists() or not b.exists():
            print(f"{name:16s} missing in {'before' if not a.exists() else 'after'}")
            continue
        same = VOLATILE.sub(rb'"\1": T', a.read_bytes()) == VOLATILE.sub(rb'"\1": T', b.read_bytes())
        differ += not same
        print(f"{name:16s} {'identical' if same else 'DIFFERS'}  sha256 {hashlib.sha256(a.read_bytes()).hexdigest()[:16]}")
    print(f"{differ} of {len(CASES)} cases differ")
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("folder", type=Path)
    rec.add_argument("--only", nargs="*", default=[])
    cmp = sub.add_parser("compare")
    cmp.add_argument("before", type=Path)
    cmp.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.verb == "record":
        record(args.folder, args.only)
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
