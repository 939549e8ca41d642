"""The composition root: settings → gateway → services → Telegram application → web app.

Everything is built here and passed down through constructors; nothing else creates clients.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from bot.config import Settings
from gateway import AsyncSheetsGateway
from gateway.a1 import A1Range, parse
from gateway.factory import GatewayConfig, build_gateway
from gateway.schemas import normalize_header

log = logging.getLogger(__name__)


def gateway_config(settings: Settings) -> GatewayConfig:
    """The gateway's parameters from the settings."""
    return GatewayConfig(
        backend=settings.sheets_backend,
        local_db_path=settings.local_db_path,
        spreadsheet_id=settings.google_spreadsheet_id,
        credentials_file=str(settings.google_credentials_file) if settings.google_credentials_file else None,
        sheets_api_base_url=settings.sheets_api_base_url,
        reads_per_minute=settings.sheets_reads_per_minute,
        writes_per_minute=settings.sheets_writes_per_minute,
    )


@contextlib.asynccontextmanager
async def open_gateway(settings: Settings) -> AsyncIterator[AsyncSheetsGateway]:
    """A started gateway, closed (outbox flushed) on exit."""
    gw = build_gateway(gateway_config(settings))
    await gw.start()
    try:
        yield gw
    finally:
        await gw.close()


async def _resolve_title(gw: AsyncSheetsGateway, sheet: str) -> str:
    titles = await gw.backend.sheet_titles()
    for title in titles:
        if normalize_header(title) == normalize_header(sheet):
            return title
    raise LookupError(f"no sheet {sheet!r}; sheets: {', '.join(titles) or 'none (run: marketingbot sheets init)'}")


async def init_sheets(settings: Settings) -> list[str]:
    """`marketingbot sheets init`."""
    async with open_gateway(settings) as gw:
        return await gw.ensure_sheets()


async def dump_sheet(settings: Settings, sheet: str) -> list[list[str]]:
    """`marketingbot sheets dump`: every row, header first (index i is sheet row i+1)."""
    async with open_gateway(settings) as gw:
        title = await _resolve_title(gw, sheet)
        (rows,) = await gw.read_ranges([str(A1Range(title))])
        return rows


async def set_cell(settings: Settings, sheet: str, cell: str, value: str) -> None:
    """`marketingbot sheets set`: one cell, verbatim (RAW)."""
    async with open_gateway(settings) as gw:
        title = await _resolve_title(gw, sheet)
        rng = parse(f"{title}!{cell}") if "!" not in cell else parse(cell)
        if rng.row1 is None or rng.col1 is None or (rng.row1, rng.col1) != (rng.row2, rng.col2):
            raise ValueError(f"{cell!r} is not one cell (expected e.g. G2)")
        target = A1Range(title, rng.row1, rng.col1, rng.row1, rng.col1)
        await gw.write_range(str(target), [[value]])
