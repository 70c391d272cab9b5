"""The hook-point vocabulary: one set of names for every architecture.

Every technique in the workbench speaks these names and never a model class. An
architecture adapter (``interp_core.core.arch``) maps each name onto a module of the
Hugging Face model. The names follow TransformerLens, the field's vocabulary.

Axis glossary (used in every docstring of the package):

- ``batch``: prompts run together.
- ``pos``: token position; ``query``/``key`` are positions seen from an attention head.
- ``d_model``: the residual stream width.
- ``head``: query heads (``n_heads``); ``kv_head``: key/value heads (``n_kv_heads``,
  fewer than ``n_heads`` under grouped-query attention, where query head ``h`` reads
  KV head ``h // (n_heads // n_kv_heads)``).
- ``d_head``: one head's width; ``d_mlp``: the MLP's hidden width; ``d_vocab``: vocabulary.

Hook points and the shapes of what they carry:

===============================  ==============================  ========
name                             shape                           editable
===============================  ==============================  ========
``hook_embed``                   (batch, pos, d_model)           yes
``hook_pos_embed``               (batch, pos, d_model)           yes (learned positions only)
``blocks.{L}.hook_resid_pre``    (batch, pos, d_model)           yes
``blocks.{L}.attn.hook_q``       (batch, pos, head, d_head)      yes (before rotary)
``blocks.{L}.attn.hook_k``       (batch, pos, kv_head, d_head)   yes (before rotary)
``blocks.{L}.attn.hook_v``       (batch, pos, kv_head, d_head)   yes
``blocks.{L}.attn.hook_pattern`` (batch, head, query, key)       no
``blocks.{L}.attn.hook_z``       (batch, pos, head, d_head)      yes
``blocks.{L}.hook_attn_out``     (batch, pos, d_model)           yes
``blocks.{L}.hook_resid_mid``    (batch, pos, d_model)           no (sequential blocks only)
``blocks.{L}.mlp.hook_post``     (batch, pos, d_mlp)             yes
``blocks.{L}.hook_mlp_out``      (batch, pos, d_model)           yes
``blocks.{L}.hook_resid_post``   (batch, pos, d_model)           yes
``ln_final.hook_scale``          (batch, pos, 1)                 no
``ln_final.hook_normalized``     (batch, pos, d_model)           yes
===============================  ==============================  ========
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from interp_core.core.errors import UnknownHookError

GLOBAL_POINTS: tuple[str, ...] = (
    "hook_embed",
    "hook_pos_embed",
    "ln_final.hook_scale",
    "ln_final.hook_normalized",
)

BLOCK_POINTS: tuple[str, ...] = (
    "hook_resid_pre",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_pattern",
    "attn.hook_z",
    "hook_attn_out",
    "hook_resid_mid",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
)

_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")


@dataclass(frozen=True)
class HookName:
    """A parsed hook-point name: ``point`` is the part after ``blocks.{layer}.``."""

    point: str
    layer: int | None

    def __str__(self) -> str:
        return self.point if self.layer is None else f"blocks.{self.layer}.{self.point}"


def hook_name(point: str, layer: int | None = None) -> str:
    """Build a hook-point name strictly.

    Args:
        point: a block point such as ``"hook_resid_pre"`` or ``"attn.hook_z"``, or a
            global point such as ``"hook_embed"``.
        layer: the block index for block points; ``None`` for global points.

    Raises:
        UnknownHookError: the point is not in the vocabulary, or the layer is missing
            for a block point (or given for a global one).
    """
    if point in BLOCK_POINTS:
        if layer is None or layer < 0:
            raise UnknownHookError(f"'{point}' is a block hook point and needs a layer >= 0, got {layer!r}.")
        return f"blocks.{layer}.{point}"
    if point in GLOBAL_POINTS:
        if layer is not None:
            raise UnknownHookError(f"'{point}' is not inside a block; call it without a layer.")
        return point
    raise UnknownHookError(
        f"Unknown hook point '{point}'. Block points: {', '.join(BLOCK_POINTS)}; "
        f"global points: {', '.join(GLOBAL_POINTS)}."
    )


def parse_hook_name(name: str) -> HookName:
    """Split ``blocks.3.attn.hook_z`` into ``HookName("attn.hook_z", 3)``; rejects unknown names."""
    match = _BLOCK_RE.match(name)
    if match:
        layer, point = int(match.group(1)), match.group(2)
        if point in BLOCK_POINTS:
            return HookName(point, layer)
    elif name in GLOBAL_POINTS:
        return HookName(name, None)
    raise UnknownHookError(
        f"Unknown hook point '{name}'. Valid names look like 'hook_embed', 'blocks.0.hook_resid_pre', "
        f"'blocks.3.attn.hook_z'; block points are {', '.join(BLOCK_POINTS)}."
    )
