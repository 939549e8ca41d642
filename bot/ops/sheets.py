"""`marketingbot sheets init|dump|set`: what the CLI does with the sheets, each on a gateway of its own."""

from __future__ import annotations

from bot.app import open_gateway
from bot.config import Settings
from bot.web.staff_console import GatewayStaffConsole


async def init_sheets(settings: Settings) -> list[str]:
    """`marketingbot sheets init`."""
    async with open_gateway(settings) as gw:
        return await gw.ensure_sheets()


async def dump_sheet(settings: Settings, sheet: str) -> list[list[str]]:
    """`marketingbot sheets dump`: every row, header first (index i is sheet row i+1)."""
    async with open_gateway(settings) as gw:
        return await GatewayStaffConsole(gw).dump(sheet)


async def set_cell(settings: Settings, sheet: str, cell: str, value: str) -> None:
    """`marketingbot sheets set`: one cell, verbatim (RAW)."""
    async with open_gateway(settings) as gw:
        await GatewayStaffConsole(gw).set_cell(sheet, cell, value)
