"""HeadId: the one way a head is named ("L3H7") and read back."""

from __future__ import annotations

import pytest

from interp_core.core.errors import BadHeadIdError, WorkbenchError
from interp_core.core.head_id import HeadId, head_label


class TestHeadId:
    def test_str_is_the_label_every_page_shows(self):
        """str(HeadId(3, 7)) is "L3H7", and head_label is the same string."""
        assert str(HeadId(3, 7)) == "L3H7" == head_label(3, 7)

    def test_parse_round_trips(self):
        """parse(str(h)) == h for multi-digit layers and heads."""
        for head in (HeadId(0, 0), HeadId(12, 3), HeadId(29, 8), HeadId(100, 15)):
            assert HeadId.parse(str(head)) == head

    @pytest.mark.parametrize("text", ["", "L3", "H7", "L3H", "LH7", "l3h7", "L3H7 ", " L3H7", "L-1H2", "L3H7x", "L3.0H7", "L٣H7", 3])
    def test_parse_is_strict(self, text):
        """Anything but L<digits>H<digits> raises a WorkbenchError that shows the expected form."""
        with pytest.raises(BadHeadIdError, match="L3H7") as caught:
            HeadId.parse(text)
        assert isinstance(caught.value, WorkbenchError)

    def test_orders_by_layer_then_head(self):
        """Sorting heads gives layer order first, then head order (not string order: L10 after L2)."""
        heads = [HeadId(10, 0), HeadId(2, 5), HeadId(2, 1)]
        assert sorted(heads) == [HeadId(2, 1), HeadId(2, 5), HeadId(10, 0)]

    def test_frozen_and_hashable(self):
        """A HeadId can key a dict and cannot be changed."""
        head = HeadId(1, 2)
        assert {head: 1}[HeadId(1, 2)] == 1
        with pytest.raises(AttributeError):
            head.layer = 3  # type: ignore[misc]

    def test_rejects_negative_or_non_int(self):
        """Fields must be non-negative ints."""
        for bad in ((-1, 0), (0, -2), (1.0, 0), (True, 0)):
            with pytest.raises(BadHeadIdError):
                HeadId(*bad)

    def test_grid_order(self):
        """grid(n_layers, n_heads) lists heads in (layer, head) order."""
        assert [str(h) for h in HeadId.grid(2, 2)] == ["L0H0", "L0H1", "L1H0", "L1H1"]
