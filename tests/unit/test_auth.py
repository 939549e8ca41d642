"""Phone authorization and per-message access checks against the Auth sheet."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.services.auth import AuthOutcome, AuthService, normalize_phone
from gateway import AsyncSheetsGateway, SheetUnavailable
from gateway.schemas import AUTH, AuthCol
from tests.chat_support import FlakyBackend, ManualClock, add_partner, chat_gateway_config, flaky_gateway, moscow


@pytest.fixture
async def flaky(tmp_path: Path) -> AsyncIterator[tuple[AsyncSheetsGateway, FlakyBackend]]:
    """A gateway whose sheet can be taken down."""
    async with flaky_gateway(chat_gateway_config(tmp_path)) as sheet:
        yield sheet


@pytest.fixture
def clock() -> ManualClock:
    """Monday 23 Nov 2026, 14:05 in Moscow."""
    return ManualClock(moscow(2026, 11, 23, 14, 5))


def _writes(gw: AsyncSheetsGateway) -> int:
    return gw.metrics.calls["batch_update"] + gw.metrics.calls["append"]


@pytest.mark.parametrize(
    "raw",
    ["8 (916) 123-45-67", "+7 916 1234567", "79161234567", "+7(916)123-45-67", "9161234567", " 8-916-123-45-67 "],
)
def test_phone_formats_are_the_same_number(raw: str) -> None:
    """Every way people write a Russian mobile number normalizes to one E.164 form."""
    assert normalize_phone(raw) == "+79161234567"


@pytest.mark.parametrize("raw", ["", "abc", "123", "+7 916"])
def test_non_numbers_normalize_to_none(raw: str) -> None:
    """Text that is not a valid phone number gives None."""
    assert normalize_phone(raw) is None


async def test_own_contact_authorizes_in_one_write(local_gateway: AsyncSheetsGateway, clock: ManualClock) -> None:
    """The sender's own contact matching Auth.Телефон writes STATUS, Telegram ID and the date in one write."""
    await add_partner(local_gateway, "P-1", "8 (916) 123-45-67", name="Иванов Иван")
    auth = AuthService(local_gateway, clock=clock)
    before = _writes(local_gateway)
    result = await auth.authorize_contact(42, 42, "79161234567", "Ваня")
    assert result.ok and result.outcome is AuthOutcome.AUTHORIZED
    assert result.partner is not None and result.partner.code == "P-1" and result.partner.name == "Иванов Иван"
    assert "Иванов Иван" in result.message
    assert _writes(local_gateway) - before == 1
    row = await local_gateway.table(AUTH).get("P-1")
    assert row is not None
    assert row[AuthCol.STATUS] == "authorized"
    assert row[AuthCol.TELEGRAM_ID] == "42"
    assert row[AuthCol.AUTHORIZED_AT] == "2026-11-23 14:05:00"
    assert row[AuthCol.PHONE] == "8 (916) 123-45-67"  # staff's formatting is left alone


async def test_someone_elses_contact_is_refused(local_gateway: AsyncSheetsGateway) -> None:
    """A contact whose user_id is not the sender (or has none) is refused and nothing is written."""
    await add_partner(local_gateway, "P-1", "+79161234567")
    auth = AuthService(local_gateway)
    before = _writes(local_gateway)
    for contact_user in (43, None):
        result = await auth.authorize_contact(42, contact_user, "+79161234567")
        assert result.outcome is AuthOutcome.NOT_OWN_CONTACT and "собственный" in result.message
    assert _writes(local_gateway) == before
    row = await local_gateway.table(AUTH).get("P-1")
    assert row is not None and row[AuthCol.STATUS] == "" and row[AuthCol.TELEGRAM_ID] == ""


async def test_unknown_phone_explains_how_to_get_access(local_gateway: AsyncSheetsGateway) -> None:
    """A phone not in Auth is refused with an explanation of how to get access."""
    await add_partner(local_gateway, "P-1", "+79161234567")
    result = await AuthService(local_gateway).authorize_contact(42, 42, "+79990000000")
    assert result.outcome is AuthOutcome.NOT_FOUND and "менеджера" in result.message
    assert await AuthService(local_gateway).check(42) is None


async def test_blocked_row_is_not_reopened_by_sharing_the_contact(local_gateway: AsyncSheetsGateway) -> None:
    """A row staff set to `blocked` stays blocked when its owner shares the contact again."""
    await add_partner(local_gateway, "P-1", "+79161234567", status="blocked", telegram_id=42)
    result = await AuthService(local_gateway).authorize_contact(42, 42, "+79161234567")
    assert result.outcome is AuthOutcome.BLOCKED
    row = await local_gateway.table(AUTH).get("P-1")
    assert row is not None and row[AuthCol.STATUS] == "blocked"


async def test_row_without_code_is_authorized_by_phone(local_gateway: AsyncSheetsGateway) -> None:
    """A staff row with a phone but no partner code is still found and updated."""
    await local_gateway.table(AUTH).write(
        [local_gateway.table(AUTH).op_insert({AuthCol.PHONE: "+7 916 123-45-67", AuthCol.NAME: "Без кода"})]
    )
    auth = AuthService(local_gateway)
    result = await auth.authorize_contact(42, 42, "+79161234567")
    assert result.ok
    partner = await auth.check(42)
    assert partner is not None and partner.name == "Без кода"


async def test_check_reads_the_sheet_every_time(local_gateway: AsyncSheetsGateway) -> None:
    """Staff revoking (STATUS or Telegram ID) takes effect on the very next check; avtorizovan counts."""
    await add_partner(local_gateway, "P-1", "+79161234567", status="avtorizovan", telegram_id=42, name="Иван")
    auth = AuthService(local_gateway)
    partner = await auth.check(42)
    assert partner is not None and partner.code == "P-1" and partner.phone == "+79161234567"
    await local_gateway.table(AUTH).write([local_gateway.table(AUTH).op_upsert("P-1", {AuthCol.STATUS: "blocked"})])
    assert await auth.check(42) is None
    await local_gateway.table(AUTH).write(
        [local_gateway.table(AUTH).op_upsert("P-1", {AuthCol.STATUS: "authorized", AuthCol.TELEGRAM_ID: ""})]
    )
    assert await auth.check(42) is None
    await local_gateway.table(AUTH).write([local_gateway.table(AUTH).op_upsert("P-1", {AuthCol.TELEGRAM_ID: "42"})])
    assert await auth.check(42) is not None


async def test_authorized_status_without_binding_denies(local_gateway: AsyncSheetsGateway) -> None:
    """STATUS authorized on a row bound to another Telegram ID does not let this user in."""
    await add_partner(local_gateway, "P-1", "+79161234567", status="authorized", telegram_id=7)
    assert await AuthService(local_gateway).check(42) is None


async def test_last_known_good_only_while_the_sheet_is_down(
    flaky: tuple[AsyncSheetsGateway, FlakyBackend], clock: ManualClock
) -> None:
    """When Auth is unreadable, a recently confirmed partner is still let in; others get SheetUnavailable."""
    gw, backend = flaky
    await add_partner(gw, "P-1", "+79161234567", status="authorized", telegram_id=42)
    await add_partner(gw, "P-2", "+79161234568", status="authorized", telegram_id=43)
    auth = AuthService(gw, fallback_ttl=600, monotonic=clock.monotonic)
    assert await auth.check(42) is not None
    backend.down = True
    partner = await auth.check(42)
    assert partner is not None and partner.code == "P-1"
    with pytest.raises(SheetUnavailable):
        await auth.check(43)  # never seen: no fallback
    clock.advance(seconds=601)
    with pytest.raises(SheetUnavailable):
        await auth.check(42)  # remembered answer too old


async def test_a_seen_revocation_is_not_undone_by_an_outage(flaky: tuple[AsyncSheetsGateway, FlakyBackend]) -> None:
    """A partner the bot already saw revoked is not let back in from memory when the sheet goes down."""
    gw, backend = flaky
    await add_partner(gw, "P-1", "+79161234567", status="authorized", telegram_id=42)
    auth = AuthService(gw)
    assert await auth.check(42) is not None
    await gw.table(AUTH).write([gw.table(AUTH).op_upsert("P-1", {AuthCol.STATUS: "blocked"})])
    assert await auth.check(42) is None
    backend.down = True
    with pytest.raises(SheetUnavailable):
        await auth.check(42)


async def test_authorization_while_the_sheet_is_down(flaky: tuple[AsyncSheetsGateway, FlakyBackend]) -> None:
    """Sharing the contact during an outage says the service is temporarily unavailable."""
    gw, backend = flaky
    await add_partner(gw, "P-1", "+79161234567")
    backend.down = True
    result = await AuthService(gw).authorize_contact(42, 42, "+79161234567")
    assert result.outcome is AuthOutcome.UNAVAILABLE and "временно" in result.message


async def test_revoking_the_row_a_partner_last_authorized_with_takes_effect(local_gateway: AsyncSheetsGateway) -> None:
    """A partner re-authorizes with a new phone's row; staff then block that row: the old row no longer lets them in."""
    await add_partner(local_gateway, "P-OLD", "+79161234567", status="authorized", telegram_id=42)
    await add_partner(local_gateway, "P-NEW", "+79251234567")
    auth = AuthService(local_gateway)
    assert (await auth.authorize_contact(42, 42, "+79251234567")).ok
    partner = await auth.check(42)
    assert partner is not None and partner.code == "P-NEW"
    await local_gateway.table(AUTH).write([local_gateway.table(AUTH).op_upsert("P-NEW", {AuthCol.STATUS: "blocked"})])
    assert await auth.check(42) is None
