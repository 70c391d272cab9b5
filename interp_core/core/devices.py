"""Where a module runs and what its weights are, for models dispatched by accelerate.

A model loaded with a ``device_map`` (:class:`interp_core.core.load_options.LoadOptions`) is split
over devices by Hugging Face accelerate's big model inference: every dispatched module carries an
``AlignDevicesHook`` (``module._hf_hook``) that moves its inputs to the module's *execution device*
and, for a module offloaded to the CPU or to disk, loads its weights from ``hook.weights_map``
just before its forward and puts them back on the ``meta`` device after it. So, outside a forward:

- a parameter may be a ``meta`` tensor with no values: :func:`real_tensor` reads its values
  from the offload store instead (the one place that knows how);
- ``parameter.device`` is not where the module computes: :func:`execution_device` is.

Undispatched models have no hooks; both functions then return the parameter and its device.
"""

from __future__ import annotations

import torch
from torch import nn


def _hooks(module: nn.Module) -> list[object]:
    """The accelerate hooks on ``module`` (a ``SequentialHook`` unpacked), possibly none."""
    hook = getattr(module, "_hf_hook", None)
    if hook is None:
        return []
    return list(getattr(hook, "hooks", None) or [hook])


def execution_device(module: nn.Module) -> torch.device:
    """The device ``module``'s forward computes on: its accelerate hook's execution device, else the
    device of its first parameter or buffer (the CPU for a module without either)."""
    for hook in _hooks(module):
        device = getattr(hook, "execution_device", None)
        if device is not None:
            return torch.device(device if not isinstance(device, int) else f"cuda:{device}")
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.device.type != "meta":
            return tensor.device
    return torch.device("cpu")


def real_tensor(module: nn.Module, name: str) -> torch.Tensor | None:
    """The values of ``module``'s own parameter or buffer ``name`` (e.g. ``"weight"``), detached, on
    the module's execution device; None when the module has no such tensor (a missing bias).

    A tensor offloaded by accelerate is a ``meta`` tensor between forwards; its values are read from
    the offload store (``module._hf_hook.weights_map``, a CPU dict or memory-mapped safetensors on
    disk) and copied to the execution device. Callers get a copy they may keep; the model is not
    changed, so the module goes on being offloaded.

    Raises:
        RuntimeError: a meta tensor whose values no hook knows (a bug: a model loaded without weights).
    """
    tensor = getattr(module, name, None)
    if tensor is None:
        return None
    if tensor.device.type != "meta":
        return tensor.detach()
    for hook in _hooks(module):
        store = getattr(hook, "weights_map", None)
        if store is not None and name in store:
            return store[name].detach().to(execution_device(module), tensor.dtype)
    raise RuntimeError(f"{type(module).__name__}.{name} is on the meta device and no accelerate hook holds its values.")

