"""A1 notation helpers."""

import pytest

from gateway import a1


def test_column_letters_round_trip() -> None:
    """Column letters convert both ways, including multi-letter columns."""
    for i in (1, 2, 26, 27, 52, 53, 702, 703):
        assert a1.col_index(a1.col_letter(i)) == i
    assert a1.col_letter(27) == "AA"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'Обращения'!A1:H1", a1.A1Range("Обращения", 1, 1, 1, 8)),
        ("'Очередь'!5:5", a1.A1Range("Очередь", 5, None, 5, None)),
        ("'Auth'!E:E", a1.A1Range("Auth", None, 5, None, 5)),
        ("'It''s'!B7", a1.A1Range("It's", 7, 2, 7, 2)),
        ("Auth!A2:C", a1.A1Range("Auth", 2, 1, None, 3)),
        ("'База знаний'", a1.A1Range("База знаний")),
    ],
)
def test_parse_forms(text: str, expected: a1.A1Range) -> None:
    """Every range form the gateway builds parses back to the same bounds."""
    assert a1.parse(text) == expected


def test_str_round_trips() -> None:
    """A range printed by the helpers parses to itself."""
    for rng in (a1.row_range("A b", 3), a1.column_range("X", 28), a1.cell_range("Q", 9, 4), a1.sheet_range("Z")):
        assert str(a1.parse(rng)) == rng


@pytest.mark.parametrize("bad", ["!A1", "'open", "Sheet!A0", "Sheet!1A", "'S'x"])
def test_bad_ranges_are_rejected(bad: str) -> None:
    """Malformed ranges raise ValueError instead of addressing the wrong cells."""
    with pytest.raises(ValueError):
        a1.parse(bad)
