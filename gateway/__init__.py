"""The data layer: every read and write of the spreadsheet goes through `AsyncSheetsGateway`."""

from gateway.errors import (
    BadRequest,
    CellTooLarge,
    GatewayError,
    QuotaExceeded,
    RowNotFound,
    SchemaError,
    SheetUnavailable,
    StructureFault,
)
from gateway.gateway import AsyncSheetsGateway
from gateway.records import Record, normalize_key

__all__ = [
    "AsyncSheetsGateway",
    "BadRequest",
    "CellTooLarge",
    "GatewayError",
    "QuotaExceeded",
    "Record",
    "RowNotFound",
    "SchemaError",
    "SheetUnavailable",
    "StructureFault",
    "normalize_key",
]
