"""The local staff console's access to the sheets (StaffPort), through the gateway like everything else."""

from __future__ import annotations

from gateway import A1Range, AsyncSheetsGateway, parse_a1
from gateway.schemas import ALL_SCHEMAS, normalize_header


def dropdowns(sheet: str) -> dict[str, list[str]]:
    """The allowed values per column header of a sheet: the same definition `sheets init` turns into the real
    sheet's data validation, so the local console offers the same dropdowns."""
    for schema in ALL_SCHEMAS:
        if normalize_header(schema.title) == normalize_header(sheet):
            return {str(header): [str(v) for v in values] for header, values in schema.dropdowns.items()}
    return {}


class GatewayStaffConsole:
    """Lists, dumps and edits sheets of the local store for `/staff` (local mode only)."""

    def __init__(self, gw: AsyncSheetsGateway) -> None:
        self._gw = gw

    async def sheets(self) -> list[str]:
        """Sheet titles in order."""
        return await self._gw.sheet_titles()

    async def _title(self, sheet: str) -> str:
        titles = await self.sheets()
        for title in titles:
            if normalize_header(title) == normalize_header(sheet):
                return title
        known = ", ".join(titles) or "none (run: marketingbot sheets init)"
        raise LookupError(f"no sheet {sheet!r}; sheets: {known}")

    async def dump(self, sheet: str) -> list[list[str]]:
        """Every row, header first."""
        title = await self._title(sheet)
        return await self._gw.read_sheet(title)

    async def set_cell(self, sheet: str, a1: str, value: str) -> None:
        """Write one cell verbatim (RAW); ValueError for anything but one cell."""
        title = await self._title(sheet)
        rng = parse_a1(f"{title}!{a1}") if "!" not in a1 else parse_a1(a1)
        if rng.row1 is None or rng.col1 is None or (rng.row1, rng.col1) != (rng.row2, rng.col2):
            raise ValueError(f"{a1!r} is not one cell (expected e.g. G2)")
        await self._gw.write_range(str(A1Range(title, rng.row1, rng.col1, rng.row1, rng.col1)), [[value]])
