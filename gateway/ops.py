"""Write operations: what a caller asks the gateway to change, expressed by key, never by row number.

Ops are plain data so they can be journaled in the outbox and replayed after a restart. Each one is
idempotent when replayed with `idempotent=True` (see Writer): set-cells ops are naturally so, an
insert is skipped when its key already exists, and appended text is skipped when the cell already
holds it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from enum import StrEnum


class OpKind(StrEnum):
    UPSERT = "upsert"  # set cells on the keyed row (creating it when `create`)
    INSERT = "insert"  # add a row unless one with the same key exists
    APPEND_TEXT = "append_text"  # append text to one cell of the keyed row (creating it when `create`)


@dataclass(frozen=True)
class WriteOp:
    """One change to one row, addressed by the values of its key columns."""

    kind: OpKind
    sheet: str
    key_columns: tuple[str, ...]
    key: tuple[str, ...]
    values: dict[str, str] = field(default_factory=dict)
    insert_defaults: dict[str, str] = field(default_factory=dict)
    text_column: str | None = None
    text: str = ""
    create: bool = True
    archive_overflow: bool = False
    op_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_json(self) -> str:
        """Serialize for the outbox."""
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> WriteOp:
        """Inverse of to_json."""
        data = json.loads(raw)
        data["kind"] = OpKind(data["kind"])
        data["key_columns"] = tuple(data["key_columns"])
        data["key"] = tuple(data["key"])
        return cls(**data)


def upsert(
    sheet: str,
    key_column: str,
    key: str,
    values: dict[str, str],
    *,
    create: bool = True,
    insert_defaults: dict[str, str] | None = None,
) -> WriteOp:
    """Set `values` on the row whose `key_column` equals `key`."""
    return WriteOp(
        OpKind.UPSERT, sheet, (key_column,), (key,), dict(values), dict(insert_defaults or {}), create=create
    )


def insert(sheet: str, key_columns: tuple[str, ...], values: dict[str, str]) -> WriteOp:
    """Add a row unless a row with the same values in `key_columns` exists."""
    return WriteOp(OpKind.INSERT, sheet, key_columns, tuple(values.get(c, "") for c in key_columns), dict(values))


def append_text(
    sheet: str,
    key_column: str,
    key: str,
    column: str,
    text: str,
    *,
    values: dict[str, str] | None = None,
    insert_defaults: dict[str, str] | None = None,
    create: bool = True,
    archive_overflow: bool = False,
) -> WriteOp:
    """Append `text` to `column` of the keyed row and set `values` in the same write."""
    return WriteOp(
        OpKind.APPEND_TEXT,
        sheet,
        (key_column,),
        (key,),
        dict(values or {}),
        dict(insert_defaults or {}),
        text_column=column,
        text=text,
        create=create,
        archive_overflow=archive_overflow,
    )
