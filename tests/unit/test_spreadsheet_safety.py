"""Cells a spreadsheet program would evaluate are exported as text."""

from __future__ import annotations

import pytest

from bot.ops.spreadsheet_safety import spreadsheet_safe


@pytest.mark.parametrize("cell", ["=1+1", "+7", "-3", "@A1", "\tx", "\rx"])
def test_formula_triggers_get_a_leading_quote(cell: str) -> None:
    """A cell starting with = + - @ tab or CR is prefixed with a single quote."""
    assert spreadsheet_safe(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["", "Привет", "1+1", "a=b", " =x", "'quoted"])
def test_ordinary_cells_are_unchanged(cell: str) -> None:
    """Anything else is written exactly as stored."""
    assert spreadsheet_safe(cell) == cell
