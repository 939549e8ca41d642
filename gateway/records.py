"""Header mapping, records and row-number hints shared by reads and writes (`HeaderMap`, `Record`, `RowHints`)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from gateway.errors import SchemaError
from gateway.schemas import normalize_header


@dataclass(frozen=True)
class HeaderMap:
    """Where each header is in a sheet's first row (1-based columns), matched case-insensitively."""

    sheet: str
    headers: tuple[str, ...]
    _index: Mapping[str, int] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_row(cls, sheet: str, row: Sequence[str]) -> HeaderMap:
        """Build from the values of row 1; the first occurrence of a duplicated header wins."""
        index: dict[str, int] = {}
        for i, h in enumerate(row):
            norm = normalize_header(h)
            if norm and norm not in index:
                index[norm] = i + 1
        return cls(sheet, tuple(row), index)

    def col(self, header: str) -> int:
        """1-based column of `header`; SchemaError names the sheet and header when missing."""
        try:
            return self._index[normalize_header(header)]
        except KeyError:
            raise SchemaError(f"sheet {self.sheet!r} has no column {str(header)!r}", sheet=self.sheet) from None

    def has(self, header: str) -> bool:
        """Whether the header exists."""
        return normalize_header(header) in self._index

    @property
    def width(self) -> int:
        """Number of header cells."""
        return len(self.headers)

    def record(self, row: int, cells: Sequence[str], names: Iterable[str] = ()) -> Record:
        """A record of `cells`, keyed by the schema's header names (and the sheet's own for the rest)."""
        values: dict[str, str] = {}
        wanted = {normalize_header(n): n for n in names}
        for i, header in enumerate(self.headers):
            if not header:
                continue
            name = wanted.get(normalize_header(header), header)
            if name not in values:
                values[name] = cells[i] if i < len(cells) else ""
        for norm, name in wanted.items():
            values.setdefault(name, "")
            if norm not in self._index:
                values[name] = ""
        return Record(row, values)


@dataclass(frozen=True)
class Record(Mapping[str, str]):
    """One row as header → value (always strings; missing cells are '')."""

    row: int
    data: Mapping[str, str]

    def __getitem__(self, header: str) -> str:
        return self.data.get(header, "")

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


class RowHints:
    """key → row number guesses. Only hints: every row read back is checked against its key."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, tuple[str, ...]], dict[tuple[str, ...], int]] = {}

    def get(self, sheet: str, columns: tuple[str, ...], key: tuple[str, ...]) -> int | None:
        """The hinted row of `key`, if any."""
        return self._rows.get((sheet, _norm(columns)), {}).get(key)

    def set(self, sheet: str, columns: tuple[str, ...], key: tuple[str, ...], row: int) -> None:
        """Remember where `key` was seen."""
        self._rows.setdefault((sheet, _norm(columns)), {})[key] = row

    def replace(self, sheet: str, columns: tuple[str, ...], mapping: dict[tuple[str, ...], int]) -> None:
        """Replace every hint of one key after a full scan of its column(s)."""
        self._rows[(sheet, _norm(columns))] = mapping

    def forget_sheet(self, sheet: str) -> None:
        """Drop every hint of a sheet (its rows moved)."""
        for k in [k for k in self._rows if k[0] == sheet]:
            del self._rows[k]


_NUMERIC = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?$")


def normalize_key(text: str) -> str:
    """A key as matched: trimmed, and a whole number however staff typed or formatted it.

    `100001`, `100 001` (any spaces, incl. no-break ones), `100001.0`, `100001,0`, `1.00001E+5` are all
    `100001`; anything that is not a whole number (codes like `DEMO-001`) is only trimmed.
    """
    stripped = text.strip()
    compact = "".join(stripped.split())
    if not compact or not _NUMERIC.match(compact):
        return stripped
    try:
        number = Decimal(compact.replace(",", "."))
    except InvalidOperation:
        return stripped
    if not number.is_finite() or number != number.to_integral_value() or abs(number) >= Decimal(10) ** 30:
        return stripped
    return str(int(number))


def _norm(columns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(normalize_header(c) for c in columns)


def scan_keys(columns: Sequence[Sequence[Sequence[str]]]) -> dict[tuple[str, ...], int]:
    """Map each key tuple to its first row, from whole-column reads (header row included)."""
    height = max((len(c) for c in columns), default=0)
    out: dict[tuple[str, ...], int] = {}
    for i in range(1, height):  # skip the header row
        key = tuple(normalize_key(c[i][0] if i < len(c) and c[i] else "") for c in columns)
        if any(key) and key not in out:
            out[key] = i + 1
    return out
