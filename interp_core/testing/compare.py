"""Compare two JSON results of the same analysis number by number (two devices, two dtypes, two loads).

Used by the dispatch and half-precision tests and by ``benchmarks/gpu_check.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# Keys whose values are wall-clock measurements or places on disk, never equal between two runs.
VOLATILE_KEYS = frozenset({"seconds", "out_dir", "elapsed", "load_seconds"})


@dataclass
class Comparison:
    """What differs between two JSON values.

    Attributes:
        max_abs: the largest ``|a - b|`` over numbers at the same place (0 when none).
        max_rel: the largest ``|a - b| / max(|a|, |b|, 1)`` (the scale-free version).
        numbers: how many numbers were compared.
        mismatches: places (``top[0].token``) where the structure or a non-number differs.
    """

    max_abs: float = 0.0
    max_rel: float = 0.0
    numbers: int = 0
    mismatches: list[str] = field(default_factory=list)

    def within(self, tolerance: float) -> bool:
        """Same structure and text, and every number within ``tolerance`` (relative to ``max(|x|, 1)``)."""
        return not self.mismatches and self.max_rel <= tolerance


def compare_json(a: object, b: object, path: str = "", out: Comparison | None = None) -> Comparison:
    """Walk ``a`` and ``b`` together; numbers are compared by size of difference, everything else exactly."""
    out = out if out is not None else Comparison()
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str) or a is None or b is None:
        if a != b:
            out.mismatches.append(f"{path or '.'}: {a!r} != {b!r}"[:200])
        return out
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        out.numbers += 1
        if math.isnan(a) and math.isnan(b):
            return out
        diff = abs(a - b)
        if math.isnan(diff):
            out.mismatches.append(f"{path}: {a!r} != {b!r}")
            return out
        out.max_abs = max(out.max_abs, diff)
        out.max_rel = max(out.max_rel, diff / max(abs(a), abs(b), 1.0))
        return out
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            out.mismatches.append(f"{path or '.'}: keys {sorted(set(a) ^ set(b))} in one only")
        for key in a.keys() & b.keys():
            if key not in VOLATILE_KEYS:
                compare_json(a[key], b[key], f"{path}.{key}" if path else str(key), out)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.mismatches.append(f"{path}: lengths {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            compare_json(x, y, f"{path}[{i}]", out)
        return out
    out.mismatches.append(f"{path}: {type(a).__name__} != {type(b).__name__}")
    return out
