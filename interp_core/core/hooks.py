"""Hooks that always come off: capture and edit activations by hook-point name.

Hooks are registered only inside :func:`attached`, which removes every handle in
``finally`` (the pattern of baukit's ``Trace`` and TransformerLens's ``hooks()``), so an
exception inside a hooked forward never leaves a hook behind. A replacement a hook returns is moved
to the device and dtype of the activation it replaces, so a value recorded on one device (or in
float32) can patch a module on another (a model dispatched over devices). Callers that share one model
between threads must hold the model's lock around the whole context; :class:`LoadedModel`
does this for every forward it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from interp_core.core.arch.base import Adapter, Site
from interp_core.core.errors import UnknownHookError
from interp_core.core.names import parse_hook_name

HookFn = Callable[[torch.Tensor, str], "torch.Tensor | None"]
"""``fn(activation, name) -> replacement or None``; the activation has the canonical shape."""

HookList = Sequence[tuple[str, HookFn]]


class StopForward(Exception):
    """Raised by a hook to end a forward pass early once everything needed is captured."""


def resolve(adapter: Adapter, name: str) -> Site:
    """The site of a hook-point name in this model, or UnknownHookError naming what exists."""
    parsed = parse_hook_name(name)
    if parsed.layer is None:
        return adapter.global_site(parsed.point)
    if parsed.layer >= adapter.n_layers:
        raise UnknownHookError(f"'{name}' names layer {parsed.layer}, but this model has layers 0..{adapter.n_layers - 1}.")
    return adapter.block_site(parsed.point, parsed.layer)


def _apply(site: Site, name: str, fn: HookFn, raw: torch.Tensor) -> torch.Tensor | None:
    value = site.read(raw)
    new = fn(value, name)
    if new is None:
        return None
    if site.write is None:
        raise UnknownHookError(f"'{name}' can be read but not edited; edit a neighbouring hook point instead.")
    if new.shape != value.shape:
        raise ValueError(f"A hook on '{name}' returned shape {tuple(new.shape)}; it must keep {tuple(value.shape)}.")
    return site.write(raw, new.to(raw.device, raw.dtype))


def _register(site: Site, name: str, fn: HookFn) -> torch.utils.hooks.RemovableHandle:
    if site.where == "input":

        def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple | None:
            if args:
                new = _apply(site, name, fn, args[0])
                return None if new is None else ((new, *args[1:]), kwargs)
            new = _apply(site, name, fn, kwargs["hidden_states"])
            return None if new is None else (args, {**kwargs, "hidden_states": new})

        return site.module.register_forward_pre_hook(pre_hook, with_kwargs=True)

    def forward_hook(module: nn.Module, args: tuple, output: object) -> object:
        if isinstance(output, tuple):
            i = site.tuple_index
            new = _apply(site, name, fn, output[i])
            return None if new is None else (*output[:i], new, *output[i + 1 :])
        new = _apply(site, name, fn, output)  # type: ignore[arg-type]
        return new

    return site.module.register_forward_hook(forward_hook)


@contextmanager
def attached(adapter: Adapter, hooks: HookList) -> Iterator[None]:
    """Register ``hooks`` (name, fn) on the model for the body of the ``with``; always remove them.

    Hooks on the same point run in the order given, each seeing the previous one's edit.
    Every name is resolved before any hook is registered, so a bad name registers nothing.
    """
    sites = [(resolve(adapter, name), name, fn) for name, fn in hooks]
    handles: list[torch.utils.hooks.RemovableHandle] = []
    try:
        for site, name, fn in sites:
            handles.append(_register(site, name, fn))
        yield
    finally:
        for handle in handles:
            handle.remove()


def capture_into(store: dict[str, torch.Tensor], *, detach: bool = True, device: torch.device | None = None,
                 dtype: torch.dtype | None = None) -> HookFn:
    """A hook that records its activation under its name (a clone, so later edits cannot reach it),
    moved to ``device`` and ``dtype`` when given (a dispatched model keeps its records on its main
    device; a half-precision model records float32, where techniques compare and sum)."""

    def hook(value: torch.Tensor, name: str) -> None:
        if (device is not None and value.device != device) or (dtype is not None and value.dtype != dtype):
            store[name] = value.to(device or value.device, dtype or value.dtype)  # a copy: the clone
        else:
            store[name] = value.detach().clone() if detach else value
        if detach:
            store[name] = store[name].detach()

    return hook


def stop_after(module: nn.Module) -> torch.utils.hooks.RemovableHandle:
    """Raise StopForward as soon as ``module`` has produced its output."""

    def hook(mod: nn.Module, args: tuple, output: object) -> None:
        raise StopForward

    return module.register_forward_hook(hook)
