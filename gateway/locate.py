"""Finding rows by key: header and row-number hints are verified against every row read back.

Staff may sort, insert or delete rows and reorder columns at any moment. Hints only save reads;
a key that does not match its hinted row triggers a re-read of the key column(s) and another try.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from gateway import a1
from gateway.backend import Rows
from gateway.errors import BadRequest, SchemaError, TransientBackendError
from gateway.records import HeaderMap, RowHints, normalize_key, scan_keys

ReadFn = Callable[[Sequence[str]], Awaitable[list[Rows]]]
MAX_ROUNDS = 5


@dataclass(frozen=True)
class Want:
    """A row wanted by the values of its key columns."""

    sheet: str
    columns: tuple[str, ...]
    key: tuple[str, ...]


@dataclass(frozen=True)
class Found:
    """Where a wanted row is now, and its cells as just read."""

    row: int
    cells: list[str]


class RowLocator:
    """Resolves keys to fresh rows with as few reads as the hints allow."""

    def __init__(self, read: ReadFn) -> None:
        self._read = read
        self.headers: dict[str, HeaderMap] = {}
        self.hints = RowHints()

    async def header(self, sheet: str) -> HeaderMap:
        """The sheet's header map, read fresh."""
        (row,) = await self._read([a1.row_range(sheet, 1)])
        hm = HeaderMap.from_row(sheet, row[0] if row else [])
        self.headers[sheet] = hm
        return hm

    async def locate(
        self, wants: Sequence[Want], extra_sheets: Sequence[str] = ()
    ) -> tuple[dict[str, HeaderMap], dict[Want, Found | None]]:
        """Fresh header maps of every sheet involved, and each wanted row (None when the key is absent)."""
        sheets = sorted({w.sheet for w in wants} | set(extra_sheets))
        found: dict[Want, Found | None] = {}
        scanned: set[tuple[str, tuple[str, ...]]] = set()
        # Keys with no hint go straight to a scan of their key column (in round one when the header is known).
        need_scan = {(w.sheet, w.columns) for w in wants if self.hints.get(w.sheet, w.columns, w.key) is None}
        for _ in range(MAX_ROUNDS):
            open_wants = [w for w in wants if w not in found]
            row_reads = sorted(
                {(w.sheet, r) for w in open_wants if (r := self.hints.get(w.sheet, w.columns, w.key)) is not None}
            )
            scans = sorted(s for s in need_scan if s[0] in self.headers)
            # The headers the scanned columns are picked by; a concurrent caller may refresh self.headers meanwhile.
            basis = {sheet: self.headers[sheet] for sheet, _ in scans}
            ranges = [a1.row_range(s, 1) for s in sheets]
            ranges += [a1.row_range(s, r) for s, r in row_reads]
            for sheet, cols in scans:
                hm = self.headers[sheet]
                ranges += [a1.column_range(sheet, hm.col(c)) for c in cols]
            try:
                results = await self._read(ranges)
            except BadRequest:
                if not row_reads:
                    raise
                # A hinted row beyond the grid (staff deleted rows): drop the hints, scan instead.
                for sheet, _ in row_reads:
                    self.hints.forget_sheet(sheet)
                need_scan |= {(w.sheet, w.columns) for w in open_wants}
                continue
            fresh: dict[str, HeaderMap] = {}
            stale_header = False
            for sheet, res in zip(sheets, results[: len(sheets)], strict=True):
                hm = HeaderMap.from_row(sheet, res[0] if res else [])
                if not hm.headers:
                    raise SchemaError(f"sheet {sheet!r} has no header row", sheet=sheet)
                old = self.headers.get(sheet)
                if old is not None and old.headers != hm.headers:
                    self.hints.forget_sheet(sheet)
                if sheet in basis and basis[sheet].headers != hm.headers:
                    stale_header = True
                fresh[sheet] = hm
                self.headers[sheet] = hm
            for w in open_wants:
                for c in w.columns:
                    fresh[w.sheet].col(c)  # a missing key column is a SchemaError, not a retry
            if stale_header and scans:
                need_scan |= {(w.sheet, w.columns) for w in open_wants}
                continue  # the scanned columns were located with an outdated header
            pos = len(sheets)
            images: dict[tuple[str, int], list[str]] = {}
            for sheet, r in row_reads:
                res = results[pos]
                images[(sheet, r)] = list(res[0]) if res else []
                pos += 1
            for sheet, cols in scans:
                columns = results[pos : pos + len(cols)]
                pos += len(cols)
                self.hints.replace(sheet, cols, scan_keys(columns))
                scanned.add((sheet, cols))
                need_scan.discard((sheet, cols))
            for w in open_wants:
                hm = fresh[w.sheet]
                r = self.hints.get(w.sheet, w.columns, w.key)
                if r is not None and (w.sheet, r) in images:
                    cells = images[(w.sheet, r)]
                    if _key_of(hm, cells, w.columns) == w.key:
                        found[w] = Found(r, cells)
                        continue
                if (w.sheet, w.columns) in scanned:
                    if r is None:
                        found[w] = None  # the key column was just read: the key is absent
                    # else: the scan gave a row we have not read yet; read it next round
                    elif (w.sheet, r) in images:
                        scanned.discard((w.sheet, w.columns))  # rows moved between reads
                        need_scan.add((w.sheet, w.columns))
                else:
                    need_scan.add((w.sheet, w.columns))
            if all(w in found for w in wants):
                return fresh, found
        raise TransientBackendError("rows kept moving while being located; try again")


def _key_of(hm: HeaderMap, cells: Sequence[str], columns: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for c in columns:
        i = hm.col(c) - 1
        out.append(normalize_key(cells[i]) if i < len(cells) else "")
    return tuple(out)
