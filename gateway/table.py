"""`Table`: key-based reads and writes on one sheet, the building block of the domain repositories."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence

from gateway import a1
from gateway.backend import Rows
from gateway.errors import GatewayError, SchemaError, TransientBackendError
from gateway.locate import RowLocator, Want
from gateway.ops import WriteOp, append_text, insert, upsert
from gateway.records import HeaderMap, Record, normalize_key
from gateway.schemas import SheetSchema

ReadFn = Callable[[Sequence[str]], Awaitable[list[Rows]]]
WriteFn = Callable[[Sequence[WriteOp]], Awaitable[None]]


class Table:
    """One sheet seen through its schema. Every read is fresh from the sheet; writes go through the outbox."""

    def __init__(self, schema: SheetSchema, read: ReadFn, write: WriteFn, locator: RowLocator) -> None:
        self.schema = schema
        self.title = schema.title
        self._read = read
        self._write = write
        self._locator = locator

    def _key_column(self, column: str | None) -> str:
        col = column or self.schema.key
        if col is None:
            raise SchemaError(f"sheet {self.title!r} has no key column; pass one")
        return col

    # -- reads ---------------------------------------------------------------------------------

    async def get(self, key: str, column: str | None = None) -> Record | None:
        """The row whose `column` (default: the schema key) equals `key`, read fresh; None if absent."""
        return (await self.get_many([key], column))[key]

    async def get_many(self, keys: Iterable[str], column: str | None = None) -> dict[str, Record | None]:
        """Several rows by key in as few reads as possible."""
        col = self._key_column(column)
        keys = list(dict.fromkeys(keys))
        wants = {k: Want(self.title, (col,), (normalize_key(k),)) for k in keys}
        headers, found = await self._locator.locate(list(wants.values()))
        hm = headers[self.title]
        out: dict[str, Record | None] = {}
        for k, w in wants.items():
            f = found[w]
            out[k] = hm.record(f.row, f.cells, self.schema.headers) if f else None
        return out

    async def all(self) -> list[Record]:
        """Every data row (one read). Empty rows are skipped."""
        (rows,) = await self._read([a1.sheet_range(self.title)])
        if not rows:
            raise SchemaError(f"sheet {self.title!r} has no header row", sheet=self.title)
        hm = HeaderMap.from_row(self.title, rows[0])
        self._locator.headers[self.title] = hm
        return [hm.record(i + 2, cells, self.schema.headers) for i, cells in enumerate(rows[1:]) if any(cells)]

    async def select(self, columns: Sequence[str], *, default_header: bool = False) -> list[Record]:
        """Only `columns` of every data row, normally in one read (the header is verified in the same call).

        With `default_header`, a sheet whose header was not read yet is assumed to have the schema's layout,
        so even the first select after a start is one read; a wrong guess costs one more read, never a wrong value.
        """
        if default_header and self.title not in self._locator.headers:
            self._locator.headers[self.title] = HeaderMap.from_row(self.title, list(self.schema.headers))
        for _ in range(3):
            hm = self._locator.headers.get(self.title) or await self._locator.header(self.title)
            cols = [hm.col(c) for c in columns]
            results = await self._read([a1.row_range(self.title, 1)] + [a1.column_range(self.title, c) for c in cols])
            fresh = HeaderMap.from_row(self.title, results[0][0] if results[0] else [])
            self._locator.headers[self.title] = fresh
            if fresh.headers != hm.headers:
                continue  # staff moved columns between our header read and this one
            height = max((len(r) for r in results[1:]), default=0)
            out = []
            for i in range(1, height):
                values = {
                    c: (res[i][0] if i < len(res) and res[i] else "")
                    for c, res in zip(columns, results[1:], strict=True)
                }
                if any(values.values()):
                    out.append(Record(i + 1, values))
            return out
        raise TransientBackendError(f"columns of {self.title!r} kept moving")

    async def reread(self, records: Sequence[Record], column: str | None = None) -> dict[str, Record]:
        """Whole rows of `records` (e.g. from a narrow select) again by row number, in one read, keyed by the
        trimmed value of `column` (default: the schema key). A row whose key changed since (staff sorted or
        deleted rows) is left out: the caller sees it on its next select."""
        col = self._key_column(column)
        ranges = [a1.row_range(self.title, 1)] + [a1.row_range(self.title, r.row) for r in records]
        results = await self._read(ranges)
        hm = HeaderMap.from_row(self.title, results[0][0] if results[0] else [])
        out: dict[str, Record] = {}
        for rec, res in zip(records, results[1:], strict=True):
            whole = hm.record(rec.row, res[0] if res else [], self.schema.headers)
            if normalize_key(whole[col]) == normalize_key(rec[col]):
                out[rec[col].strip()] = whole
        return out

    async def header(self) -> HeaderMap:
        """The sheet's header row, fresh."""
        return await self._locator.header(self.title)

    # -- writes --------------------------------------------------------------------------------

    def op_upsert(
        self,
        key: str,
        values: dict[str, str],
        *,
        column: str | None = None,
        create: bool = True,
        insert_defaults: dict[str, str] | None = None,
    ) -> WriteOp:
        """Set `values` on the keyed row (`column`, default the schema key); create it unless create=False."""
        return upsert(self.title, self._key_column(column), key, values, create=create, insert_defaults=insert_defaults)

    def op_insert(self, values: dict[str, str], key_columns: tuple[str, ...] | None = None) -> WriteOp:
        """Add a row (skipped on replay if its key already exists)."""
        cols = key_columns or ((self.schema.key,) if self.schema.key else tuple(self.schema.headers[:1]))
        return insert(self.title, cols, values)

    def op_append_text(
        self,
        key: str,
        column: str,
        text: str,
        *,
        values: dict[str, str] | None = None,
        insert_defaults: dict[str, str] | None = None,
        create: bool = True,
        archive_overflow: bool = False,
        key_column: str | None = None,
    ) -> WriteOp:
        """Append `text` to one cell of the keyed row, setting `values` in the same op."""
        return append_text(
            self.title,
            self._key_column(key_column),
            key,
            column,
            text,
            values=values,
            insert_defaults=insert_defaults,
            create=create,
            archive_overflow=archive_overflow,
        )

    async def write(self, ops: Sequence[WriteOp]) -> None:
        """Apply ops (built by the `op_*` methods, of this table or others) in one acknowledged write:
        returns once they are in the sheet or durably in the outbox."""
        await self._write(ops)


__all__ = ["GatewayError", "Record", "Table"]
