"""A disk cache of probing hidden states, one file per (model weights, bundled dataset, pool).

Extracting the states of the bundled POS set runs the model over 410 sentences (tens of
seconds on a 2-core CPU); reading them back takes a fraction of a second. Only bundled
datasets are cached (an upload is used once); the key holds the model's weights fingerprint,
the dataset file's content hash and the pool, so a changed model or dataset is never served
old states. The newest :data:`KEEP` files are kept, the rest removed.

Files: ``workbench_home()/probe_features/<key>.npz`` with the arrays of
:class:`~interp_core.techniques.probing.ProbeFeatures` (``states (n_layers + 1, n_items, d_model)``
float16, labels, groups, types, tokens, classes, layer names).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from interp_core.core.disk_cache import mark_used, write_newest
from interp_core.core.loading import workbench_home
from interp_core.techniques.probe_data import BUNDLED, DATA_DIR

KEEP = 6
VERSION = "1"  # bump when what extract_features stores changes


def cache_dir() -> Path:
    """The folder of the cached states (the test suite points it at a temporary folder of its own)."""
    return workbench_home() / "probe_features"


def cache_path(model_fingerprint: str, dataset: str, pool: str) -> Path | None:
    """Where the states of a bundled ``dataset`` are cached for these weights; ``None`` for other datasets."""
    if dataset not in BUNDLED:
        return None
    content = hashlib.sha1((DATA_DIR / BUNDLED[dataset]["file"]).read_bytes()).hexdigest()
    key = hashlib.sha1(f"{VERSION}|{model_fingerprint}|{dataset}|{pool}|{content}".encode()).hexdigest()[:20]
    return cache_dir() / f"{dataset}-{key}.npz"


def read(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or ``None`` when there is no (readable) file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        mark_used(path)
        return arrays
    except (OSError, ValueError, KeyError):
        return None


def write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically (a reader never sees half a file), then prune to the newest :data:`KEEP` files.
    A cache that cannot be written (read-only home, full disk) is skipped silently: it only saves time."""
    write_newest(path, lambda staging: np.savez(staging, **arrays), KEEP)
