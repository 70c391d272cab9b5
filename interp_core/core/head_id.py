"""One name for one attention head: ``HeadId(layer=3, head=7)``, written ``"L3H7"``.

Every label that names a head (chart axes, tables, JSON keys such as ``"from"``/``"to"`` of a
composition pair, toy-model head scores, URL values of head pickers) is ``str(HeadId(...))``,
and every place that reads one back uses :meth:`HeadId.parse`, so the format lives here only.
Part of the runtime floor: imports nothing of the engine but :mod:`interp_core.core.errors`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from interp_core.core.errors import BadHeadIdError

_PATTERN = re.compile(r"L([0-9]+)H([0-9]+)")


@dataclass(frozen=True, order=True)
class HeadId:
    """Attention head ``head`` of layer ``layer`` (both 0-based); orders by layer, then head.

    Attributes:
        layer: block index, ``0 <= layer < n_layers``.
        head: query-head index within the block, ``0 <= head < n_heads``.
    """

    layer: int
    head: int

    def __post_init__(self) -> None:
        for field, value in (("layer", self.layer), ("head", self.head)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise BadHeadIdError(f"HeadId {field} must be a non-negative int, got {value!r}.")

    def __str__(self) -> str:
        return f"L{self.layer}H{self.head}"

    @classmethod
    def parse(cls, text: str) -> HeadId:
        """``"L3H7" -> HeadId(3, 7)``; strict: no spaces, signs, lower case or extra text.

        Raises:
            BadHeadIdError: ``text`` is not ``L<layer>H<head>`` with non-negative integers.
        """
        match = _PATTERN.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise BadHeadIdError(f"A head is named like 'L3H7' (layer 3, head 7), got {text!r}.")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def grid(cls, n_layers: int, n_heads: int) -> list[HeadId]:
        """Every head of ``n_layers x n_heads`` in (layer, head) order."""
        return [cls(layer, head) for layer in range(n_layers) for head in range(n_heads)]


def head_label(layer: int, head: int) -> str:
    """``"L{layer}H{head}"``: shorthand for ``str(HeadId(layer, head))``."""
    return str(HeadId(int(layer), int(head)))
