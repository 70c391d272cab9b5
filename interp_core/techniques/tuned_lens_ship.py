"""Train the tuned lens that ships with the project for the default model, in one command::

    .venv/bin/python -m interp_core.techniques.tuned_lens_ship            # about 10-20 min on 2 CPU cores

What it does (everything is recorded in the shipped file's metadata and in ``README.md`` beside it):

1. Samples :data:`SHIP_CONFIG` text from the default model itself (BOS, temperature 1, top-50,
   seed 0) and records the residual stream at every boundary.
2. Fits the full-rank float32 translators exactly as the in-app training does
   (:func:`~interp_core.techniques.tuned_lens.fit_translators`: ridge, then Adam on the KL).
3. Stores each ``A_b`` as int8 rows with one float32 scale per row (the bias stays float32), the
   safetensors file gzipped (int8 rows compress to about 2/3), so it fits the repository's 10 MB
   limit (the full float32 lens is about 40 MB). A float16
   rank-128 truncated SVD (the largest rank that fits) was tried first and kept 1.2-15x the full
   lens's KL: the translators are not low-rank on this model.
4. Reports the mean KL(final || lens) per layer on the held-out sequences (never trained on)
   for the logit lens, the full lens and the shipped lens, and writes the shipped file and the
   README with that table to ``interp_core/data/tuned_lens/<model>/``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from interp_core.core.loading import DEFAULT_MODEL, load_model
from interp_core.techniques.readout import boundary_labels
from interp_core.techniques.tuned_lens import (
    SHIPPED_FILE_NAME,
    TrainConfig,
    TunedLens,
    fingerprint,
    fit_translators,
    gzip_lens_file,
    heldout_kl,
    shipped_lens_dir,
    training_residuals,
    with_int8,
)

SHIP_CONFIG = TrainConfig(n_train_seqs=160, n_heldout_seqs=12, seq_len=32, kl_steps=40, batch_tokens=128, seed=0)
SIZE_LIMIT_BYTES = 10_000_000  # the 10 MB, in decimal units


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def ship(model_spec: str = DEFAULT_MODEL, cfg: TrainConfig = SHIP_CONFIG, out_dir: Path | None = None,
         full_out: Path | None = None) -> dict:
    """Train, compress, measure and write the shipped lens; returns the record written to ``record.json``."""
    started = time.perf_counter()
    model = load_model(model_spec, device="cpu")
    torch.manual_seed(cfg.seed)
    _log(f"loaded {model.info.name}; sampling {cfg.n_train_seqs + cfg.n_heldout_seqs} sequences of {cfg.seq_len} tokens")
    train, test = training_residuals(model, cfg, None, lambda f, m: None)
    _log(f"training tokens {train.shape[1]}, held-out {test.shape[1]}; fitting")
    a, c = fit_translators(model, train, cfg, lambda f, m: None)
    n = model.info.n_layers
    full = TunedLens(model.info.name, fingerprint(model), a, c, np.zeros(n + 1), np.zeros(n + 1),
                     int(train.shape[1]), time.perf_counter() - started, asdict(cfg))
    if full_out is not None:  # the full float32 lens, to try another stored form without training again
        full.save(full_out)
    shipped = with_int8(full)
    _log("fitted; measuring held-out KL of the logit, full and int8 lenses")
    kl_logit, kl_full, kl_shipped = (heldout_kl(model, test, lens) for lens in (None, full, shipped))
    shipped = replace(shipped, heldout_kl_logit=kl_logit, heldout_kl_tuned=kl_shipped,
                      train_seconds=time.perf_counter() - started,
                      config={**shipped.config, "data": "text sampled from the model (BOS, temperature 1, top-k 50)",
                              "test_tokens": int(test.shape[1])})
    out_dir = out_dir or shipped_lens_dir(model.info.name)
    plain = shipped.save(out_dir, int8=True)
    safetensors_bytes = plain.stat().st_size
    path = gzip_lens_file(plain)
    record = {
        "model": model.info.name, "fingerprint": full.fingerprint, "config": asdict(cfg), "storage": "int8 per row, gzipped safetensors",
        "safetensors_bytes": safetensors_bytes,
        "train_tokens": int(train.shape[1]), "test_tokens": int(test.shape[1]),
        "file_bytes": path.stat().st_size, "seconds": round(time.perf_counter() - started, 1),
        "layers": list(boundary_labels(n)), "kl_logit": kl_logit.round(5).tolist(),
        "kl_full": kl_full.round(5).tolist(), "kl_shipped": kl_shipped.round(5).tolist(),
    }
    (out_dir / "record.json").write_text(json.dumps(record, indent=1) + "\n")
    (out_dir / "README.md").write_text(readme(record))
    _log(f"wrote {path} ({record['file_bytes'] / 1e6:.2f} MB) in {record['seconds']:.0f} s")
    if record["file_bytes"] >= SIZE_LIMIT_BYTES:
        _log(f"WARNING: over the repository's limit of {SIZE_LIMIT_BYTES:,} bytes; do not commit it as it is")
    return record


def readme(record: dict) -> str:
    """The README beside the shipped file: how it was trained, and the held-out KL table."""
    cfg = record["config"]
    rows = "\n".join(
        f"| {layer} | {lg:.3f} | {fu:.3f} | {sh:.3f} | {sh / fu if fu > 1e-6 else 1.0:.3f} |"
        for layer, lg, fu, sh in zip(record["layers"], record["kl_logit"], record["kl_full"], record["kl_shipped"])
    )
    return f"""# Tuned lens shipped for `{record['model']}`

`{SHIPPED_FILE_NAME}` (gzipped safetensors) holds one affine translator per layer, `h -> h + h @ A_b + c_b`, trained once for the
default model (weights fingerprint `{record['fingerprint']}`) so the Logit Lens page shows the tuned lens on
first load. A lens trained in the app (`~/.cache/interp-workbench/tuned_lens/`) takes precedence.

Retrain with one command (writes this directory again):

```bash
.venv/bin/python -m interp_core.techniques.tuned_lens_ship
```

- Data: {cfg['n_train_seqs']} training sequences of {cfg['seq_len']} tokens sampled from the model itself
  (BOS first, temperature 1, top-{cfg['sample_top_k']}, seed {cfg['seed']}); {record['train_tokens']} training tokens
  (BOS dropped). {cfg['n_heldout_seqs']} more sequences ({record['test_tokens']} tokens), never trained on, give the table.
- Fit: closed-form ridge towards the identity (strength {cfg['ridge']}), then {cfg['kl_steps']} Adam steps
  (lr {cfg['lr']}, {cfg['batch_tokens']} tokens a step) on KL(final || lens) over the {cfg['vocab_subset']}
  tokens with the most final mass.
- Stored form: each `A_b` as int8 rows with one float32 scale per row (`weight_int8` `(layers, d_model,
  d_model)`, `weight_scale` `(layers, d_model, 1)`), bias float32, the safetensors file gzipped: {record['file_bytes']:,}
  bytes ({record['file_bytes'] / 1e6:.2f} MB; {record.get('safetensors_bytes', 0):,} bytes before gzip; the full float32
  lens would be about 40 MB). A float16 rank-128
  truncated SVD (the largest rank under the limit) kept 1.2-15x the full lens's KL per layer: rejected.
- Took {record['seconds']:.0f} s on a shared 2-core CPU.

Mean KL(final || lens) in nats per layer boundary on the held-out tokens (full vocabulary):

| layer | logit lens | full lens (float32, full rank) | shipped lens | shipped / full |
|---|---|---|---|---|
{rows}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--out", type=Path, default=None, help="directory to write (default: the shipped one)")
    parser.add_argument("--full-out", type=Path, default=None, help="also save the full float32 lens here (not shipped)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    record = ship(args.model, out_dir=args.out, full_out=args.full_out)
    print(json.dumps({k: record[k] for k in ("storage", "file_bytes", "seconds")}))


if __name__ == "__main__":
    main()
