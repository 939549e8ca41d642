"""The data layer: every read and write of the spreadsheet and the state file goes through `AsyncSheetsGateway`.

This package is the only door to it. Code outside gateway/ imports from `gateway` itself, and from
`gateway.schemas` (the sheet contracts: titles, headers, statuses) — never from the other modules, which
may be renamed or split at will (tests/unit/test_gateway_boundary.py holds bot/ and bench/ to this).
One export is not about data: `CallGuard` (breaker + retries), which bot/ai shares for its model calls.
The Google backends (gspread, google-auth) load only when one of their names is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.a1 import MAX_CELL_CHARS, A1Range
from gateway.a1 import parse as parse_a1
from gateway.backend import Rows, SheetsBackend
from gateway.drive_links import drive_file_id, drive_report_stem
from gateway.errors import (
    AccessDenied,
    BadRequest,
    CellTooLarge,
    GatewayError,
    GridFull,
    QuotaExceeded,
    RangeProtected,
    RowNotFound,
    SchemaError,
    SheetMissing,
    SheetUnavailable,
    StructureFault,
    TransientBackendError,
)
from gateway.factory import STATE_FILE_NAME, GatewayConfig, build_gateway
from gateway.gateway import AsyncSheetsGateway
from gateway.guard import CallGuard
from gateway.journal import InboxUpdate, TurnJournal, UpdateInbox
from gateway.ledgers import DeliveryLedger, JournaledJob, Ledgers, LegacyDecoder, Remembered
from gateway.logentry import STAMPED_HEADER, UNSTAMPED_HEADER, entry_starts, is_entry_start
from gateway.metrics import GatewayMetrics
from gateway.ops import OpKind, WriteOp
from gateway.private import private_dir, write_private
from gateway.records import HeaderMap, Record, normalize_key
from gateway.resilience import RetryPolicy
from gateway.retention import MoveResult, move_rows, prune_state
from gateway.state import DeliveryPhase, DeliveryRecord, LedgerEntry, QueuedWrite, StateStore
from gateway.table import Table

if TYPE_CHECKING:
    from gateway.backends.drive import DriveFiles
    from gateway.backends.google import RebasedSession

_LAZY = {"DriveFiles": "gateway.backends.drive", "RebasedSession": "gateway.backends.google"}


def __getattr__(name: str) -> Any:
    # The Google client libraries cost a noticeable import time; load them only for callers that use them.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gateway' has no attribute {name!r}")


__all__ = [
    "MAX_CELL_CHARS",
    "STAMPED_HEADER",
    "STATE_FILE_NAME",
    "UNSTAMPED_HEADER",
    "A1Range",
    "AccessDenied",
    "AsyncSheetsGateway",
    "BadRequest",
    "CallGuard",
    "CellTooLarge",
    "DeliveryLedger",
    "DeliveryPhase",
    "DeliveryRecord",
    "DriveFiles",
    "GatewayConfig",
    "GatewayError",
    "GatewayMetrics",
    "GridFull",
    "HeaderMap",
    "InboxUpdate",
    "JournaledJob",
    "LedgerEntry",
    "Ledgers",
    "LegacyDecoder",
    "MoveResult",
    "OpKind",
    "QueuedWrite",
    "QuotaExceeded",
    "RangeProtected",
    "RebasedSession",
    "Record",
    "Remembered",
    "RetryPolicy",
    "RowNotFound",
    "Rows",
    "SchemaError",
    "SheetMissing",
    "SheetUnavailable",
    "SheetsBackend",
    "StateStore",
    "StructureFault",
    "Table",
    "TransientBackendError",
    "TurnJournal",
    "UpdateInbox",
    "WriteOp",
    "build_gateway",
    "drive_file_id",
    "drive_report_stem",
    "entry_starts",
    "is_entry_start",
    "move_rows",
    "normalize_key",
    "parse_a1",
    "private_dir",
    "prune_state",
    "write_private",
]
