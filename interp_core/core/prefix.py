"""Replaying decoder blocks over the last positions of a prompt only.

Under causal attention, position ``q`` reads the keys and values of positions ``<= q`` and
nothing later. A run that differs from a recorded one only from position ``start`` on therefore
has the recorded run's residuals, keys and values at every position before ``start``, in every
block. Such a run can skip those positions: each block gets the residual of positions
``start..`` only, and its attention reads the recorded keys and values of positions ``..start-1``
through the model's own KV-cache hook (``past_key_values.update``), exactly as during
generation. Rotary positions, masks and position ids are sliced to the real positions.

:class:`KeyValueRecorder` records a run's keys and values (as the attention module stores them:
``(batch, kv_head, pos, d_head)``, after any rotation); :class:`PrefixKeyValues` hands them back.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from interp_core.core.arch.base import Adapter

# Keyword arguments of a decoder block that carry one entry per position, and the axis it is on.
_POSITION_AXIS: dict[str, int] = {"attention_mask": -2, "position_ids": -1, "cache_position": -1}
_CACHE_ARGUMENTS = ("past_key_values", "layer_past")  # what HF families call the KV cache argument


def cache_argument(block: nn.Module) -> str | None:
    """The name of ``block``'s KV-cache argument (``past_key_values`` or ``layer_past``), or None."""
    parameters = inspect.signature(block.forward).parameters
    return next((name for name in _CACHE_ARGUMENTS if name in parameters), None)


def _no_cache_argument(block_or_type: object) -> ValueError:
    name = block_or_type if isinstance(block_or_type, str) else type(block_or_type).__name__
    return ValueError(f"{name} takes no KV-cache argument ({' or '.join(_CACHE_ARGUMENTS)}), so it cannot be run "
                      "over the last positions of a prompt.")


class KeyValueRecorder:
    """A stand-in KV cache that records what each attention layer computes and changes nothing."""

    def __init__(self) -> None:
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: object,
               **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys[layer_idx], self.values[layer_idx] = key_states.detach(), value_states.detach()
        return key_states, value_states

    def recorded(self) -> PrefixKeyValues:
        return PrefixKeyValues(dict(self.keys), dict(self.values))

    def attach(self, block: nn.Module) -> torch.utils.hooks.RemovableHandle:
        """Give ``block`` this recorder as its KV cache on every call until the handle is removed."""
        name = cache_argument(block)
        if name is None:
            raise _no_cache_argument(block)
        index = list(inspect.signature(block.forward).parameters).index(name)  # counts the residual, which comes first

        def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            if len(args) > index:
                args = (*args[:index], self, *args[index + 1 :])
            else:
                kwargs = {**kwargs, name: self}
            return args, kwargs

        return block.register_forward_pre_hook(pre_hook, with_kwargs=True)


@dataclass(frozen=True)
class PrefixKeyValues:
    """The keys and values of a recorded run, per layer ``(1, kv_head, pos, d_head)``."""

    keys: dict[int, torch.Tensor]
    values: dict[int, torch.Tensor]

    def row(self, index: int) -> PrefixKeyValues:
        """The recording of one prompt of a batch, ``(1, kv_head, pos, d_head)`` per layer."""
        return PrefixKeyValues({layer: k[index : index + 1] for layer, k in self.keys.items()},
                               {layer: v[index : index + 1] for layer, v in self.values.items()})

    def cache(self, start: int) -> _PrefixCache:
        """A KV cache that prepends positions ``0..start-1`` of the recorded run."""
        return _PrefixCache(self, start)


class _PrefixCache:
    """What an attention layer sees as its past: the recorded keys and values before ``start``."""

    def __init__(self, recorded: PrefixKeyValues, start: int) -> None:
        self.recorded, self.start = recorded, start

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: object,
               **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        """``key_states (batch, kv_head, pos - start, d_head)`` -> the full ``(batch, kv_head, pos, d_head)``."""
        batch = key_states.shape[0]
        keys = self.recorded.keys[layer_idx][..., : self.start, :].to(key_states.device, key_states.dtype)
        values = self.recorded.values[layer_idx][..., : self.start, :].to(value_states.device, value_states.dtype)
        return (torch.cat([keys.expand(batch, -1, -1, -1), key_states], dim=-2),
                torch.cat([values.expand(batch, -1, -1, -1), value_states], dim=-2))


def block_keywords(block: nn.Module, args: tuple, kwargs: dict) -> dict:
    """Every argument a block was called with besides the residual, by name."""
    signature = inspect.signature(block.forward)
    bound = signature.bind_partial(None, *args, **kwargs).arguments
    first = next(iter(signature.parameters))
    named = {name: value for name, value in bound.items() if name != first}
    for name, parameter in signature.parameters.items():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD and name in named:
            named.update(named.pop(name))
    return named


def suffix_keywords(keywords: dict, cache_name: str | None, start: int, prefix: PrefixKeyValues | None, n_pos: int,
                    dtype: torch.dtype) -> dict:
    """The block's keyword arguments for positions ``start..`` of ``n_pos`` only, with the prefix's KV cache
    passed as ``cache_name`` (:func:`cache_argument`).

    ``start == 0`` (or no prefix) gives the keywords unchanged, without a cache. Where the full run
    had no explicit mask (causality left to the kernel, which would align a shorter query block to
    the wrong keys), an explicit causal mask ``(1, 1, n_pos - start, n_pos)`` is given.

    Raises:
        ValueError: a run from a later position on a block that takes no KV-cache argument.
    """
    out = dict(keywords)
    if start == 0 or prefix is None:
        return out
    if cache_name is None:
        raise _no_cache_argument("This model's decoder block")
    for name, value in out.items():
        if name in _POSITION_AXIS and isinstance(value, torch.Tensor):
            axis = _POSITION_AXIS[name]
            out[name] = value.narrow(axis, start, value.shape[axis] - start)
        elif name == "position_embeddings" and value is not None:
            out[name] = tuple(t[:, start:] for t in value)  # (cos, sin), each (1, pos, rotary_dim)
    if out.get("attention_mask") is None:
        device = next(iter(prefix.keys.values())).device
        future = torch.ones(n_pos, n_pos, dtype=torch.bool, device=device).triu(1)[start:]
        mask = torch.zeros(future.shape, dtype=dtype, device=device).masked_fill(future, torch.finfo(dtype).min)
        out["attention_mask"] = mask[None, None]
    out[cache_name] = prefix.cache(start)
    return out


def block_over_row_suffixes(adapter: Adapter, layer: int, resid: torch.Tensor, starts: torch.Tensor,
                            prefix: PrefixKeyValues, *, last_position_only: bool = False,
                            prefix_rows: torch.Tensor | None = None) -> torch.Tensor:
    """Block ``layer`` over rows that agree with the recorded run before their own start.

    Every linear map runs once over all rows' positions ``>= start``, flattened into one batch of
    tokens (no row recomputes a position it shares with the recorded run, and the matrices are
    large, which a CPU runs fastest); attention runs per row over all positions, reading the
    recorded keys and values before the row's start.

    Args:
        resid: ``(rows, pos, d_model)``, each row's residual entering the block; values before a
            row's start are ignored.
        starts: ``(rows,)`` the first position where each row may differ from the recorded run.
        prefix: the recorded run's keys and values.
        last_position_only: the last block of a run read at its last position: keys and values of
            every own position, but the attention output and the MLP of the last position only.
        prefix_rows: ``(rows,)`` which prompt of a batched recording each row agrees with (rows of
            several prompts of one length in one call); None: every row agrees with prompt 0.

    Returns:
        ``(rows, pos, d_model)``: the residual leaving the block at positions ``>= start`` (only the
        last with ``last_position_only``); elsewhere ``resid``'s values unchanged.
    """
    n_rows, n_pos, _ = resid.shape
    positions = torch.arange(n_pos, device=resid.device)
    own = positions[None, :] >= starts.to(resid.device)[:, None]  # (rows, pos)
    x = resid[own]  # (tokens, d_model)
    parts = adapter.block_parts(layer)
    q, k, v = parts.qkv(parts.ln1(x))  # (tokens, head or kv_head, d_head)

    def padded(t: torch.Tensor) -> torch.Tensor:
        out = t.new_zeros(n_rows, n_pos, *t.shape[1:])
        out[own] = t
        return out

    q, k = adapter.rotary(layer, positions, padded(q), padded(k))  # (rows, pos, head, d_head)
    mine = own[:, :, None, None]

    def recorded(t: torch.Tensor) -> torch.Tensor:
        """``(batch, kv_head, pos, d_head)`` -> ``(pos, kv_head, d_head)`` or, per row, ``(rows, pos, kv_head, d_head)``."""
        if prefix_rows is None:
            return t[0].transpose(0, 1)
        return t[prefix_rows.to(t.device)].transpose(1, 2)

    k = torch.where(mine, k, recorded(prefix.keys[layer]).to(k.device, k.dtype))  # recorded on the block's device
    v = torch.where(mine, padded(v), recorded(prefix.values[layer]).to(v.device, v.dtype))
    group = q.shape[2] // k.shape[2]  # query heads per KV head
    if group > 1:
        k, v = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
    scores = torch.einsum("rqhd,rkhd->rhqk", q, k) * adapter.attention_scale(layer)
    future = torch.ones(n_pos, n_pos, dtype=torch.bool, device=resid.device).triu(1)
    pattern = scores.masked_fill(future, float("-inf")).float().softmax(-1).to(v.dtype)
    z = torch.einsum("rhqk,rkhd->rqhd", pattern, v)  # (rows, pos, head, d_head)
    if last_position_only:
        own = torch.zeros_like(own)
        own[:, -1] = True
        x = resid[:, -1]
    attn_out = parts.out(z[own].flatten(-2))
    if adapter.parallel_residual:
        out = x + attn_out + parts.mlp(parts.ln2(x))
    else:
        mid = x + attn_out
        out = mid + parts.mlp(parts.ln2(mid))
    new = resid.clone()
    new[own] = out.to(new.dtype)
    return new
