"""PromotionService on the local store with a recording Messenger: who gets what, exactly once, at what pace."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from datetime import datetime
from typing import Any

import pytest

from bot.services.auth import Partner
from bot.services.ports import DeliveryError
from bot.services.promotions import (
    LEDGER_PREFIX,
    OPT_OUT_FOOTER,
    Pacer,
    Promotion,
    PromotionNotFound,
    PromotionService,
    StartDateError,
    compose,
    format_errors,
    parse_start,
    picture_url,
)
from bot.services.sheet_time import MOSCOW
from gateway import AsyncSheetsGateway
from gateway.schemas import AUTH, PROMOTIONS, AuthCol, PromoCol
from tests.chat_support import ManualClock, moscow
from tests.promo_support import Crash, PromoMessenger, add_promo, promo_row, seed_partners

FAST = {"rate_per_second": 5000.0, "retry_backoff": 0.001, "progress_interval": 0.0}


async def crashes(coro: Awaitable[object]) -> None:
    """Await `coro` and check it died of a simulated Crash (the workers' TaskGroup wraps it in a group)."""
    with pytest.raises(BaseException) as info:
        await coro
    exc = info.value
    if isinstance(exc, BaseExceptionGroup):
        assert exc.subgroup(Crash) is not None, exc
    else:
        assert isinstance(exc, Crash), exc


def service(gw: AsyncSheetsGateway, messenger: PromoMessenger, **kw: Any) -> PromotionService:
    """A fast PromotionService (pacing is tested on its own)."""
    return PromotionService(gw, messenger, **{**FAST, **kw})


# -- pure helpers ----------------------------------------------------------------------------------


def test_picture_urls() -> None:
    """http(s) links are kept, Drive share links become direct downloads, anything else is not a picture."""
    assert picture_url("https://example.org/a.jpg") == "https://example.org/a.jpg"
    direct = "https://drive.google.com/uc?export=download&id=1AbCdEfGhIjKlMnOp"
    assert picture_url("https://drive.google.com/file/d/1AbCdEfGhIjKlMnOp/view?usp=sharing") == direct
    assert picture_url("https://drive.google.com/open?id=1AbCdEfGhIjKlMnOp") == direct
    assert picture_url(" https://docs.google.com/uc?id=1AbCdEfGhIjKlMnOp&export=view ") == direct
    assert picture_url("картинка.jpg") is None
    assert picture_url("ftp://example.org/a.jpg") is None
    assert picture_url("") is None
    assert Promotion("X", picture="photo.png").picture_problem.startswith("картинка не отправлена")


def test_start_formats() -> None:
    """«Начало» accepts ISO and Russian date-times and bare dates in Moscow time; empty means now."""
    assert parse_start("2026-11-23 14:05") == datetime(2026, 11, 23, 14, 5, tzinfo=MOSCOW)
    assert parse_start("23.11.2026 14:05") == datetime(2026, 11, 23, 14, 5, tzinfo=MOSCOW)
    assert parse_start("23.11.2026") == datetime(2026, 11, 23, tzinfo=MOSCOW)
    assert parse_start("2026-11-23") == datetime(2026, 11, 23, tzinfo=MOSCOW)
    assert parse_start("2026-11-23 14:05:30") == datetime(2026, 11, 23, 14, 5, 30, tzinfo=MOSCOW)
    assert parse_start("  ") is None
    with pytest.raises(StartDateError):
        parse_start("завтра")


def test_compose_parts() -> None:
    """Title and text go as one caption when they fit; a long text follows the picture; no picture, plain text."""
    short = Promotion("A", title="Заголовок", text="Текст", picture="https://x.org/p.png")
    assert [(p.text, p.photo_url) for p in compose(short)] == [
        ("Заголовок\n\nТекст\n\n" + OPT_OUT_FOOTER, "https://x.org/p.png")
    ]
    long = Promotion("B", title="Заголовок", text="слово " * 400, picture="https://x.org/p.png")
    parts = compose(long)
    assert parts[0].text == "Заголовок" and parts[0].photo_url == "https://x.org/p.png"
    assert " ".join(p.text for p in parts[1:]).split() == ["слово"] * 400 + OPT_OUT_FOOTER.split()
    assert [p.photo_url for p in compose(long, with_picture=False)] == [None]
    assert compose(Promotion("C", text="x" * 5000), footer="")[1].text == "x" * 904


def test_errors_text() -> None:
    """«Ошибки» is the count, then reasons by frequency, then notes."""
    from collections import Counter

    assert format_errors(Counter()) == "0"
    text = format_errors(Counter({"чат не найден": 1, "заблокировали бота": 2}), ["картинка не отправлена"])
    assert text == "3: заблокировали бота — 2, чат не найден — 1. картинка не отправлена"


async def test_pacer_spacing_and_pause() -> None:
    """Slots are evenly spaced at the rate (plus margin) and a pause holds every slot back."""
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    pacer = Pacer(10, margin=0.0, clock=lambda: now[0], sleep=sleep)
    stamps = []
    for _ in range(5):
        await pacer.wait()
        stamps.append(round(now[0], 6))
    assert stamps == [0.0, 0.1, 0.2, 0.3, 0.4]
    pacer.pause(2.0)
    await pacer.wait()
    assert now[0] == pytest.approx(2.4)


# -- broadcasting ----------------------------------------------------------------------------------


async def test_broadcast_reaches_each_partner_once(local_gateway: AsyncSheetsGateway) -> None:
    """A READY promotion reaches every authorized partner once; the row ends SENT with the counts."""
    gw = local_gateway
    ids = await seed_partners(gw, 30)
    await add_promo(gw)
    messenger = PromoMessenger()
    reports = await service(gw, messenger).poll_once()
    assert [(r.promo_id, r.sent, r.failed, r.finished) for r in reports] == [("A1", 30, 0, True)]
    assert messenger.counts() == dict.fromkeys(ids, 1)
    assert messenger.to(ids[0])[0].text == f"Скидка 10% на комиссию\n\nТолько до конца месяца.\n\n{OPT_OUT_FOOTER}"
    row = await promo_row(gw)
    assert (row[PromoCol.STATUS], row[PromoCol.SENT], row[PromoCol.ERRORS]) == ("SENT", "30", "0")
    assert "доставлено 30" in messenger.staff[0]
    assert await service(gw, messenger).poll_once() == []
    assert len(messenger.delivered) == 30


async def test_audience_opt_out_blocked_and_unauthorized(local_gateway: AsyncSheetsGateway) -> None:
    """Opted-out and unauthorized partners are skipped; blocked ones are counted in «Ошибки», not raised."""
    gw = local_gateway
    ids = await seed_partners(gw, 10, opted_out=[500_001, 500_002])
    await gw.table(AUTH).write(
        [gw.table(AUTH).op_insert({AuthCol.CODE: "X-1", AuthCol.STATUS: "blocked", AuthCol.TELEGRAM_ID: "700001"})]
    )
    await gw.table(AUTH).write(
        [gw.table(AUTH).op_insert({AuthCol.CODE: "X-2", AuthCol.STATUS: "authorized", AuthCol.TELEGRAM_ID: ""})]
    )
    await gw.table(AUTH).write(
        [gw.table(AUTH).op_insert({AuthCol.CODE: "X-3", AuthCol.STATUS: "avtorizovan", AuthCol.TELEGRAM_ID: "700003"})]
    )
    await add_promo(gw)
    messenger = PromoMessenger(blocked={500_003, 500_004, 500_005})
    (report,) = await service(gw, messenger).poll_once()
    got = set(messenger.counts())
    assert got == (set(ids) - {500_001, 500_002, 500_003, 500_004, 500_005}) | {700_003}
    assert (report.sent, report.failed, report.opted_out) == (6, 3, 2)
    row = await promo_row(gw)
    assert row[PromoCol.SENT] == "6" and row[PromoCol.ERRORS] == "3: заблокировали бота — 3"


async def test_audience_list_of_codes(local_gateway: AsyncSheetsGateway) -> None:
    """«Аудитория» as a list of partner codes (commas or spaces, any case) reaches only them."""
    gw = local_gateway
    await seed_partners(gw, 5)
    await add_promo(gw, audience="p-500001, P-500003  P-999999")
    messenger = PromoMessenger()
    await service(gw, messenger).poll_once()
    assert set(messenger.counts()) == {500_001, 500_003}


async def test_start_time_and_bad_rows(local_gateway: AsyncSheetsGateway) -> None:
    """A future «Начало» waits; an unreadable date or an empty promotion is reported in «Ошибки» once."""
    gw = local_gateway
    await seed_partners(gw, 3)
    await add_promo(gw, "LATER", start="2026-11-23 15:00")
    await add_promo(gw, "BADDATE", start="завтра")
    await add_promo(gw, "EMPTY", title="", text="")
    await add_promo(gw, "DRAFT", status="DRAFT")
    clock = ManualClock(moscow(2026, 11, 23, 14, 0))
    messenger = PromoMessenger()
    svc = service(gw, messenger, clock=clock)
    assert await svc.poll_once() == []
    assert messenger.delivered == []
    assert (await promo_row(gw, "BADDATE"))[PromoCol.ERRORS].startswith("не понял дату в «Начало»")
    assert (await promo_row(gw, "EMPTY"))[PromoCol.ERRORS].startswith("акция пустая")
    assert (await promo_row(gw, "LATER"))[PromoCol.STATUS] == "READY"
    calls = gw.metrics.total_calls
    assert await svc.poll_once() == []
    assert gw.metrics.total_calls - calls == 1  # one read of Акции; the problems are not rewritten
    clock.advance(hours=1)
    reports = await svc.poll_once()
    assert [r.promo_id for r in reports] == ["LATER"] and len(messenger.delivered) == 3
    assert (await promo_row(gw, "DRAFT"))[PromoCol.STATUS] == "DRAFT"


async def test_sheet_calls_do_not_grow_with_recipients(local_gateway: AsyncSheetsGateway) -> None:
    """A broadcast costs the same number of sheet calls for 20 and for 200 recipients (progress is time-gated)."""
    gw = local_gateway
    await seed_partners(gw, 200)
    costs = []
    for promo_id, audience in (("SMALL", " ".join(f"P-{500_000 + i}" for i in range(20))), ("BIG", "all")):
        await add_promo(gw, promo_id, audience=audience)
        before = gw.metrics.total_calls
        (report,) = await service(gw, PromoMessenger(), progress_interval=3600.0).poll_once()
        costs.append(gw.metrics.total_calls - before)
        assert report.finished
    assert costs[0] == costs[1]
    assert costs[0] <= 8


async def test_crash_after_telegram_accepted_doubles_only_that_partner(local_gateway: AsyncSheetsGateway) -> None:
    """A kill between Telegram's acceptance and the ledger write resends to that one partner only (the window)."""
    gw = local_gateway
    ids = await seed_partners(gw, 20)
    await add_promo(gw)
    victim = ids[7]

    async def die_after(kind: str, chat_id: int) -> None:
        if chat_id == victim:
            raise Crash

    first = PromoMessenger(after=die_after)
    await crashes(service(gw, first, max_in_flight=1).poll_once())
    assert (await promo_row(gw))[PromoCol.STATUS] == "SENDING"
    second = PromoMessenger()
    (report,) = await service(gw, second).poll_once()
    total = {tid: first.counts().get(tid, 0) + second.counts().get(tid, 0) for tid in ids}
    assert total == {tid: 2 if tid == victim else 1 for tid in ids}
    assert report.sent == 20 and (await promo_row(gw))[PromoCol.STATUS] == "SENT"


async def test_crash_before_the_send_doubles_nobody(local_gateway: AsyncSheetsGateway) -> None:
    """A kill before a message reaches Telegram resumes with that partner, and nobody gets it twice."""
    gw = local_gateway
    ids = await seed_partners(gw, 20)
    await add_promo(gw)

    async def die_before(kind: str, chat_id: int) -> None:
        if chat_id == ids[12]:
            raise Crash

    first = PromoMessenger(before=die_before)
    await crashes(service(gw, first, max_in_flight=3).poll_once())
    second = PromoMessenger()
    await service(gw, second).poll_once()
    total = {tid: first.counts().get(tid, 0) + second.counts().get(tid, 0) for tid in ids}
    assert total == dict.fromkeys(ids, 1)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
async def test_cancelled_at_a_random_point_resumes_exactly_once(local_gateway: AsyncSheetsGateway, seed: int) -> None:
    """Cancelling the broadcast task at any point and polling again delivers to everyone exactly once."""
    gw = local_gateway
    ids = await seed_partners(gw, 60)
    await add_promo(gw, picture="https://example.org/p.jpg", text="слово " * 300)  # two parts per partner
    rnd = random.Random(seed)
    first = PromoMessenger(delay=0.001)
    task = asyncio.create_task(service(gw, first, max_in_flight=4).poll_once())
    target = rnd.randrange(1, 110)
    await first.wait_for(target, task)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    second = PromoMessenger()
    (report,) = await service(gw, second).poll_once()
    for tid in ids:
        kinds = [d.kind for d in first.to(tid) + second.to(tid)]
        assert kinds == ["photo", "text"], (tid, kinds)
    assert report.sent == 60


async def test_stop_finishes_in_flight_and_leaves_sending(local_gateway: AsyncSheetsGateway) -> None:
    """stop() lets the sends in flight finish, leaves SENDING, and the next service resumes the rest."""
    gw = local_gateway
    ids = await seed_partners(gw, 40)
    await add_promo(gw)
    first = PromoMessenger(delay=0.005)
    svc = service(gw, first, max_in_flight=2)
    poll = asyncio.create_task(svc.poll_once())  # as the promotions job runs it
    await first.wait_for(5)
    await svc.stop()
    await poll
    assert await svc.poll_once() == []  # no new poll once stopped
    assert 5 <= len(first.delivered) < 40
    row = await promo_row(gw)
    assert row[PromoCol.STATUS] == "SENDING" and row[PromoCol.SENT] == str(len(first.delivered))
    second = PromoMessenger()
    await service(gw, second).poll_once()
    assert {tid: first.counts().get(tid, 0) + second.counts().get(tid, 0) for tid in ids} == dict.fromkeys(ids, 1)


async def test_retry_after_pauses_and_retries(local_gateway: AsyncSheetsGateway) -> None:
    """A 429 RetryAfter pauses sending for the time Telegram asked and the message still goes out once."""
    gw = local_gateway
    ids = await seed_partners(gw, 5)
    await add_promo(gw)
    floods = [1]

    async def flood(kind: str, chat_id: int) -> None:
        if chat_id == ids[2] and floods[0]:
            floods[0] -= 1
            raise DeliveryError("RetryAfter: Flood control exceeded", permanent=False, retry_after=0.3)

    messenger = PromoMessenger(before=flood)
    loop = asyncio.get_running_loop()
    started = loop.time()
    (report,) = await service(gw, messenger, max_in_flight=1).poll_once()
    assert loop.time() - started >= 0.3
    assert messenger.counts() == dict.fromkeys(ids, 1) and report.failed == 0


async def test_transient_errors_retry_then_fail(local_gateway: AsyncSheetsGateway) -> None:
    """A passing network error is retried; one that persists is recorded as a failure with its reason."""
    gw = local_gateway
    ids = await seed_partners(gw, 3)
    await add_promo(gw)
    left = {ids[0]: 1, ids[1]: 99}

    async def flaky(kind: str, chat_id: int) -> None:
        if left.get(chat_id, 0) > 0:
            left[chat_id] -= 1
            raise DeliveryError("NetworkError: connection reset", permanent=False)

    messenger = PromoMessenger(before=flaky)
    (report,) = await service(gw, messenger).poll_once()
    assert set(messenger.counts()) == {ids[0], ids[2]}
    assert report.failed == 1
    assert (await promo_row(gw))[PromoCol.ERRORS] == "1: временная ошибка: NetworkError: connection reset — 1"


async def test_unusable_picture_falls_back_to_text(local_gateway: AsyncSheetsGateway) -> None:
    """When Telegram cannot fetch the picture the promotion goes out as text and «Ошибки» says so."""
    gw = local_gateway
    ids = await seed_partners(gw, 6)
    await add_promo(gw, picture="https://example.org/missing.jpg")
    messenger = PromoMessenger(refuse_photos=True, blocked={ids[0]})
    (report,) = await service(gw, messenger, max_in_flight=1).poll_once()
    assert set(messenger.counts()) == set(ids[1:])
    assert all(d.kind == "text" for d in messenger.delivered)
    assert report.failed == 1
    errors = (await promo_row(gw))[PromoCol.ERRORS]
    assert errors.startswith("1: заблокировали бота — 1. картинка не отправлена")


async def test_resume_continues_with_the_next_part(local_gateway: AsyncSheetsGateway) -> None:
    """A crash between the picture and the text of a long promotion resumes with the text only."""
    gw = local_gateway
    ids = await seed_partners(gw, 3)
    await add_promo(gw, picture="https://example.org/p.jpg", text="слово " * 300)

    async def die_on_text(kind: str, chat_id: int) -> None:
        if chat_id == ids[1] and kind == "text":
            raise Crash

    first = PromoMessenger(before=die_on_text)
    await crashes(service(gw, first, max_in_flight=1).poll_once())
    second = PromoMessenger()
    await service(gw, second).poll_once()
    assert [d.kind for d in first.to(ids[1])] == ["photo"]
    assert [d.kind for d in second.to(ids[1])] == ["text"]
    assert [d.kind for d in first.to(ids[0]) + second.to(ids[0])] == ["photo", "text"]


async def test_staff_pause_and_resume(local_gateway: AsyncSheetsGateway) -> None:
    """Staff changing «Статус» mid-broadcast stops it at the next progress point; READY again finishes it."""
    gw = local_gateway
    ids = await seed_partners(gw, 30)
    await add_promo(gw)
    paused = [False]

    async def staff_pause(kind: str, chat_id: int) -> None:
        if chat_id == ids[9] and not paused[0]:
            paused[0] = True
            await gw.table(PROMOTIONS).write(
                [gw.table(PROMOTIONS).op_upsert("A1", {PromoCol.STATUS: "DRAFT"}, create=False)]
            )

    first = PromoMessenger(after=staff_pause)
    (report,) = await service(gw, first, max_in_flight=1, progress_every=5).poll_once()
    assert not report.finished and 10 <= len(first.delivered) < 30
    row = await promo_row(gw)
    assert row[PromoCol.STATUS] == "DRAFT" and row[PromoCol.SENT] == str(len(first.delivered))
    await gw.table(PROMOTIONS).write([gw.table(PROMOTIONS).op_upsert("A1", {PromoCol.STATUS: "READY"}, create=False)])
    second = PromoMessenger()
    (report,) = await service(gw, second).poll_once()
    assert report.finished and report.sent == 30
    assert {tid: first.counts().get(tid, 0) + second.counts().get(tid, 0) for tid in ids} == dict.fromkeys(ids, 1)


async def test_progress_written_every_n_recipients(local_gateway: AsyncSheetsGateway) -> None:
    """While sending, «Отправлено» is updated every `progress_every` recipients, not per recipient."""
    gw = local_gateway
    ids = await seed_partners(gw, 12)
    await add_promo(gw)
    seen: list[str] = []

    async def look(kind: str, chat_id: int) -> None:
        seen.append((await promo_row(gw))[PromoCol.SENT])

    await service(gw, PromoMessenger(before=look), max_in_flight=1, progress_every=5).poll_once()
    assert seen == ["0"] * 5 + ["5"] * 5 + ["10"] * 2 and len(ids) == 12


async def test_send_test_goes_to_the_admin_only(local_gateway: AsyncSheetsGateway) -> None:
    """/broadcast_test sends to one chat, touches no ledger or status, and tells how many would get it."""
    gw = local_gateway
    await seed_partners(gw, 4, opted_out=[500_000])
    await add_promo(gw, status="DRAFT", picture="https://example.org/p.jpg")
    messenger = PromoMessenger()
    svc = service(gw, messenger)
    result = await svc.send_test("A1", 42)
    assert [(d.kind, d.chat_id) for d in messenger.delivered] == [("photo", 42)]
    assert (result.recipients, result.opted_out, result.notes) == (3, 1, ())
    assert await gw.state.ledger_list(LEDGER_PREFIX + "A1") == []
    assert await gw.state.delivery_list(LEDGER_PREFIX + "A1") == {}
    assert (await promo_row(gw))[PromoCol.STATUS] == "DRAFT"
    with pytest.raises(PromotionNotFound):
        await svc.send_test("NOPE", 42)
    refusing = PromoMessenger(refuse_photos=True)
    result = await service(gw, refusing).send_test("A1", 42)
    assert [d.kind for d in refusing.delivered] == ["text"] and "картинка не отправлена" in result.notes[0]


async def test_opt_in_and_out_written_to_auth(local_gateway: AsyncSheetsGateway) -> None:
    """The partner's choice lands in Auth «Рассылка» as да/нет (by code, or by Telegram ID without one)."""
    gw = local_gateway
    await seed_partners(gw, 1)
    await gw.table(AUTH).write(
        [gw.table(AUTH).op_insert({AuthCol.STATUS: "authorized", AuthCol.TELEGRAM_ID: "700009", AuthCol.PHONE: "1"})]
    )
    svc = service(gw, PromoMessenger())
    await svc.set_opt_in(Partner("P-500000", "", "", 500_000), False)
    await svc.set_opt_in(Partner("", "", "", 700_009), False)
    assert (await gw.table(AUTH).get("P-500000") or {})[AuthCol.PROMO_OPT_IN] == "нет"
    assert (await gw.table(AUTH).get("700009", AuthCol.TELEGRAM_ID) or {})[AuthCol.PROMO_OPT_IN] == "нет"
    await svc.set_opt_in(Partner("P-500000", "", "", 500_000), True)
    assert (await gw.table(AUTH).get("P-500000") or {})[AuthCol.PROMO_OPT_IN] == "да"


async def test_an_older_release_broadcast_resumes_without_resending(local_gateway: AsyncSheetsGateway) -> None:
    """Recipients recorded in the old string ledger ('sent', 'failed', 'sending' `p:1`) are honoured after an
    upgrade: only the unfinished part and the partners not reached yet are sent."""
    gw = local_gateway
    a, b, c, d = await seed_partners(gw, 4)
    await add_promo(gw, status="SENDING", picture="https://example.org/p.jpg", text="Длинный текст. " * 120)
    kind = LEDGER_PREFIX + "A1"
    await gw.state.ledger_set(kind, str(a), "sent", "p")
    await gw.state.ledger_set(kind, str(b), "failed", "бот заблокирован")
    await gw.state.ledger_set(kind, str(c), "sending", "p:1")  # the photo went out, the text had not
    messenger = PromoMessenger()
    (report,) = await service(gw, messenger).poll_once()
    sent = [(x.kind, x.chat_id) for x in messenger.delivered]
    assert sent == [("text", c), ("photo", d), ("text", d)]
    assert report.sent == 3 and report.failed == 1 and "бот заблокирован" in report.errors
