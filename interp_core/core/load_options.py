"""How a model is loaded besides which one: precision, and dispatch over devices with accelerate.

:class:`LoadOptions` is part of a loaded model's identity: two loads of the same weights with other
options are different models to every cache (:meth:`LoadOptions.key` goes into the fingerprint).
The defaults (float32, no device map) load exactly as before: one device, :func:`pick_device`'s.

Dispatch is Hugging Face accelerate's big model inference, used through ``transformers``'
``from_pretrained(device_map=, max_memory=, offload_folder=)``: ``auto`` / ``balanced`` /
``balanced_low_0`` / ``sequential`` fill the GPUs, then the CPU, then (with an offload folder) the
disk; an explicit map names a device (``0``, ``"cuda:1"``, ``"cpu"``, ``"disk"``) per module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from interp_core.core.errors import ModelLoadError

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_DEVICE_MAP_HELP = (f"one of {', '.join(DEVICE_MAP_STRATEGIES)}, or a JSON object from module names to devices "
                    "such as '{\"model.layers.0\": 0, \"model.layers.1\": \"cpu\", \"lm_head\": \"disk\"}'")


@dataclass(frozen=True)
class LoadOptions:
    """Precision and dispatch of one load (frozen and hashable: a cache key).

    Attributes:
        dtype: ``float32`` (default), ``bfloat16`` or ``float16``: the weights' and activations' dtype.
            Techniques compute softmaxes, sums and metrics in float32 whatever this is.
        device_map: None (one device), a strategy name (:data:`DEVICE_MAP_STRATEGIES`), or an explicit
            map as sorted ``(module name, device)`` pairs.
        max_memory: ``(device, bytes)`` pairs capping what each device may hold (with a strategy).
        offload_folder: where weights mapped to ``disk`` are written; without one, a map that needs
            the disk is refused (a silent disk offload would make every forward read the weights again).
    """

    dtype: str = "float32"
    device_map: str | tuple[tuple[str, str], ...] | None = None
    max_memory: tuple[tuple[str, int], ...] | None = None
    offload_folder: str | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ModelLoadError(f"dtype '{self.dtype}' is not one of {', '.join(DTYPES)}; pick one of those.")
        if isinstance(self.device_map, str) and self.device_map not in DEVICE_MAP_STRATEGIES:
            raise ModelLoadError(f"device map '{self.device_map}' is not {_DEVICE_MAP_HELP}.")
        if self.max_memory is not None and self.device_map is None:
            raise ModelLoadError("A memory limit (max_memory) applies to a dispatched model only; "
                                 "give a device map as well, e.g. --device-map auto.")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def dispatched(self) -> bool:
        return self.device_map is not None

    def key(self) -> str:
        """A stable text of every option (empty for the defaults, so default fingerprints do not change)."""
        if self == LoadOptions():
            return ""
        return json.dumps([self.dtype, self.device_map, self.max_memory, self.offload_folder])

    def describe(self) -> str:
        """Short text for captions: ``bfloat16 · device map auto``."""
        parts = [self.dtype]
        if isinstance(self.device_map, str):
            parts.append(f"device map {self.device_map}")
        elif self.device_map is not None:
            parts.append("explicit device map")
        return " · ".join(parts)

    def hf_arguments(self) -> dict:
        """The keyword arguments of ``from_pretrained`` these options mean (``dtype`` always)."""
        out: dict = {"dtype": self.torch_dtype}
        if self.device_map is not None:
            out["device_map"] = self.device_map if isinstance(self.device_map, str) else {
                name: int(device) if device.isdigit() else device for name, device in self.device_map}
        if self.max_memory is not None:
            out["max_memory"] = {int(d) if d.isdigit() else d: size for d, size in self.max_memory}
        if self.offload_folder is not None:
            out["offload_folder"] = self.offload_folder
        return out


def parse_memory_size(text: str) -> int:
    """``"20GiB"``, ``"512MB"``, ``"1000"`` (bytes) -> bytes.

    Raises:
        ModelLoadError: not a size.
    """
    match = _MEMORY_RE.match(text)
    if not match:
        raise ModelLoadError(f"'{text}' is not a memory size; write e.g. 20GiB, 512MiB or 8GB.")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "B").lower()])


def parse_max_memory(text: str | None) -> tuple[tuple[str, int], ...] | None:
    """``"0:20GiB,cpu:60GiB"`` -> ``(("0", 21474836480), ("cpu", 64424509440))``; None for empty.

    Raises:
        ModelLoadError: an entry without ``DEVICE:SIZE``, an unknown device, or a bad size.
    """
    if text is None or not text.strip():
        return None
    out: dict[str, int] = {}
    for entry in text.split(","):
        device, sep, size = entry.strip().rpartition(":")
        device = device.strip().lower()
        if not sep or not device:
            raise ModelLoadError(f"'{entry.strip()}' in --max-memory is not DEVICE:SIZE; write e.g. \"0:20GiB,cpu:60GiB\".")
        if device.startswith("cuda:"):
            device = device.removeprefix("cuda:")
        if not (device.isdigit() or device in ("cpu", "mps", "disk")):
            raise ModelLoadError(f"'{device}' in --max-memory is not a device; use a GPU index (0, 1, ...), cpu or mps.")
        out[device] = parse_memory_size(size)
    return tuple(out.items())


def parse_device_map(value: str | Mapping | None) -> str | tuple[tuple[str, str], ...] | None:
    """A strategy name, a JSON object (text) or a mapping -> :attr:`LoadOptions.device_map`.

    Raises:
        ModelLoadError: neither a strategy nor a JSON object of module names to devices.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("{"):
            if text.lower() not in DEVICE_MAP_STRATEGIES:
                raise ModelLoadError(f"--device-map '{text}' is not {_DEVICE_MAP_HELP}.")
            return text.lower()
        try:
            value = json.loads(text)
        except ValueError as error:
            raise ModelLoadError(f"--device-map is not valid JSON ({error}); it must be {_DEVICE_MAP_HELP}.") from None
    if not isinstance(value, Mapping) or not value:
        raise ModelLoadError(f"The device map must be {_DEVICE_MAP_HELP}.")
    return tuple(sorted((str(name), str(device)) for name, device in value.items()))


def make_options(dtype: str | None = None, device_map: str | Mapping | None = None, max_memory: str | None = None,
                 offload_folder: str | None = None) -> LoadOptions:
    """:class:`LoadOptions` from the text of CLI flags or sidebar widgets (None or empty: the default)."""
    return LoadOptions(dtype=(dtype or "float32").strip().lower(), device_map=parse_device_map(device_map),
                       max_memory=parse_max_memory(max_memory), offload_folder=(offload_folder or "").strip() or None)
