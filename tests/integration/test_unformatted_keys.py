"""Keys match however staff typed them: numbers read UNFORMATTED from Google, spellings normalized on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import AsyncSheetsGateway
from gateway.a1 import sheet_range
from gateway.schemas import AUTH, AuthCol
from tests.conftest import google_config, started_gateway
from tests.fakes.sheets_server import FakeSheetsServer


@pytest.mark.parametrize("shown", ["100 001", "1.00001E+5", "100001.00"])
async def test_a_telegram_id_typed_as_a_number_matches_whatever_its_format_shows(tmp_path: Path, shown: str) -> None:
    """A Telegram ID staff typed as a number (shown `100 001` / `1.00001E+5`) is found by `100001`; the gateway
    asks for UNFORMATTED_VALUE and the fake answers a JSON number, as Google does."""
    with FakeSheetsServer(sheets=()) as server:
        async with started_gateway(google_config(tmp_path, server)) as gw:
            await gw.table(AUTH).write(
                [gw.table(AUTH).op_upsert("P-1", {AuthCol.PHONE: "+79000000001", AuthCol.STATUS: "authorized"})]
            )
            server.type_number(AUTH.title, "E2", 100001, shown)
            assert server.cell(AUTH.title, "E2") == shown  # what a FORMATTED read would have matched against
            rec = await gw.table(AUTH).get("100001", column=AuthCol.TELEGRAM_ID)
            assert rec is not None and rec[AuthCol.CODE] == "P-1" and rec[AuthCol.TELEGRAM_ID] == "100001"
            renders = {r.params.get("valueRenderOption", [""])[0] for r in server.request_log if r.kind == "batchGet"}
            assert renders == {"UNFORMATTED_VALUE"}


@pytest.mark.parametrize("typed", ["100 001", "100001.0", "1.00001E+5", " 100001 "])
async def test_a_telegram_id_typed_as_text_in_another_spelling_matches(
    any_gateway: AsyncSheetsGateway, typed: str
) -> None:
    """On both backends a Telegram ID typed as text with spaces, a zero fraction or in scientific notation matches,
    and a write by that key updates the staff's row instead of adding a second one."""
    auth = any_gateway.table(AUTH)
    await auth.write([auth.op_upsert("P-2", {AuthCol.PHONE: "+79000000002"})])
    await any_gateway.write_range(f"{sheet_range(AUTH.title)}!E2", [[typed]])
    any_gateway.locator.hints.forget_sheet(AUTH.title)
    rec = await auth.get("100001", column=AuthCol.TELEGRAM_ID)
    assert rec is not None and rec[AuthCol.CODE] == "P-2"
    await auth.write(
        [auth.op_upsert("100001", {AuthCol.STATUS: "authorized"}, column=AuthCol.TELEGRAM_ID, create=False)]
    )
    rows = [r for r in await auth.all() if r[AuthCol.CODE] or r[AuthCol.TELEGRAM_ID]]
    assert [(r[AuthCol.CODE], r[AuthCol.STATUS]) for r in rows] == [("P-2", "authorized")]
