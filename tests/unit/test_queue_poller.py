"""QueuePoller: one read per poll, exactly-once delivery across restarts, errors and stuck requests."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bot.services.queue_poller import DELIVERY_LEDGER, QueuePoller, make_pdf_loader
from gateway import AsyncSheetsGateway, DeliveryPhase, GatewayConfig, build_gateway
from gateway.schemas import QUEUE, QueueCol
from tests.unit.analytics_support import Crash, FakeClock, RecordingMessenger, put_queue_rows, queue_row

BASE_URL = "http://127.0.0.1:8080"
PDF = b"%PDF-1.4 fake report\n%%EOF"
USER = 100001


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    """A reports folder holding job-1.pdf."""
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "job-1.pdf").write_bytes(PDF)
    return folder


def make_poller(
    gw: AsyncSheetsGateway, messenger: RecordingMessenger, reports: Path, clock: FakeClock | None = None, **kw: object
) -> QueuePoller:
    """A poller reading our reports folder, stuck after 10 minutes."""
    return QueuePoller(
        gw,
        messenger,
        stuck_after=timedelta(minutes=10),
        pdf_loader=make_pdf_loader(reports, BASE_URL),
        clock=clock or FakeClock(),
        **kw,  # type: ignore[arg-type]
    )


def done_row(job_id: str = "job-1", **values: str) -> dict[str, str]:
    """A finished row waiting for delivery."""
    base = {
        "status": "DONE",
        "attempts": "1",
        "result_text": "📊 Аналитика 360 · OBJ-1\nРекомендация: сохранить цену",
        "pdf_url": f"{BASE_URL}/reports/{job_id}.pdf",
        "finished_at": "2026-11-24 12:00:30",
    }
    base.update(values)
    return queue_row(job_id, **base)


async def delivered_at(gw: AsyncSheetsGateway, job_id: str) -> str:
    """The delivered_at cell of a row."""
    rec = await gw.table(QUEUE).get(job_id)
    assert rec is not None
    return rec[QueueCol.DELIVERED_AT]


async def test_done_is_delivered_as_text_and_pdf_exactly_once(local_gateway: AsyncSheetsGateway, reports: Path) -> None:
    """A DONE row sends the summary then the PDF document, marks delivered_at, and never sends again."""
    await put_queue_rows(local_gateway, [done_row()])
    messenger = RecordingMessenger()
    poller = make_poller(local_gateway, messenger, reports)
    stats = await poller.poll_once()
    assert stats.delivered == 1
    kinds = [(s.kind, s.chat_id) for s in messenger.sent]
    assert kinds == [("text", USER), ("document", USER)]
    assert messenger.sent[0].text.startswith("📊 Аналитика 360 · OBJ-1")
    assert messenger.sent[1].data == PDF and messenger.sent[1].filename == "analytics_OBJ-1.pdf"
    assert await delivered_at(local_gateway, "job-1") == "2026-11-24 12:00:00"
    for _ in range(3):
        await poller.poll_once()
    assert len(messenger.sent) == 2


async def test_missing_pdf_sends_the_link(local_gateway: AsyncSheetsGateway, reports: Path) -> None:
    """When the PDF bytes cannot be loaded (e.g. a Drive link), the partner gets the link instead."""
    url = "https://drive.google.com/file/d/abc/view"
    await put_queue_rows(local_gateway, [done_row(pdf_url=url)])
    messenger = RecordingMessenger()
    await make_poller(local_gateway, messenger, reports).poll_once()
    assert [s.kind for s in messenger.sent] == ["text", "text"]
    assert url in messenger.sent[1].text


async def test_error_row_sends_the_workers_error(local_gateway: AsyncSheetsGateway, reports: Path) -> None:
    """An ERROR row sends one clear Russian message carrying the worker's error, then is marked."""
    error = "Объект с кодом NOPE-1 не найден в базе агентства."
    await put_queue_rows(local_gateway, [queue_row("job-e", object_code="NOPE-1", status="ERROR", error=error)])
    messenger = RecordingMessenger()
    poller = make_poller(local_gateway, messenger, reports)
    stats = await poller.poll_once()
    assert stats.errors_reported == 1
    [msg] = messenger.sent
    assert msg.chat_id == USER and error in msg.text and "Не удалось подготовить" in msg.text
    assert await delivered_at(local_gateway, "job-e")
    await poller.poll_once()
    assert len(messenger.sent) == 1


async def test_restart_after_sending_before_marking_does_not_resend(
    local_gateway: AsyncSheetsGateway, local_gateway_config: GatewayConfig, reports: Path
) -> None:
    """A restart between delivery and the delivered_at mark writes the mark and sends nothing again."""
    await put_queue_rows(local_gateway, [done_row()])
    first = RecordingMessenger()
    await make_poller(local_gateway, first, reports).poll_once()
    assert len(first.sent) == 2
    # The delivered_at write is lost (as if the process died right before it), then the bot restarts.
    await local_gateway.table(QUEUE).write([local_gateway.table(QUEUE).op_upsert("job-1", {QueueCol.DELIVERED_AT: ""})])
    await local_gateway.close()
    gw2 = build_gateway(local_gateway_config)
    await gw2.start()
    try:
        second = RecordingMessenger()
        stats = await make_poller(gw2, second, reports).poll_once()
        assert second.sent == [] and stats.delivered == 0
        assert await delivered_at(gw2, "job-1")
    finally:
        await gw2.close()
        await local_gateway.start()  # the fixture closes it again


async def test_crash_mid_delivery_resumes_with_the_missing_part(
    local_gateway: AsyncSheetsGateway, reports: Path
) -> None:
    """A crash right after the text went out resumes with the PDF only: the text is not repeated."""
    await put_queue_rows(local_gateway, [done_row()])
    crashing = RecordingMessenger(crash_after="text")
    with pytest.raises(Crash):
        await make_poller(local_gateway, crashing, reports).poll_once()
    after = RecordingMessenger()
    await make_poller(local_gateway, after, reports).poll_once()
    assert [s.kind for s in crashing.sent] == ["text"]
    # The text's counter was not saved before the crash: the one step Telegram cannot make idempotent is
    # sent again (a duplicate rather than a lost report); everything before it is not.
    assert [s.kind for s in after.sent] == ["text", "document"]
    entry = await local_gateway.state.delivery_get(DELIVERY_LEDGER, "job-1#1@2026-11-24 12:00:30")
    assert entry is not None and entry.phase is DeliveryPhase.SENT


async def test_crash_after_document_does_not_repeat_the_text(local_gateway: AsyncSheetsGateway, reports: Path) -> None:
    """A crash while the PDF is in flight resends only the PDF, never the already-counted text."""
    await put_queue_rows(local_gateway, [done_row()])
    crashing = RecordingMessenger(crash_after="document")
    with pytest.raises(Crash):
        await make_poller(local_gateway, crashing, reports).poll_once()
    after = RecordingMessenger()
    await make_poller(local_gateway, after, reports).poll_once()
    assert [s.kind for s in crashing.sent] == ["text", "document"]
    assert [s.kind for s in after.sent] == ["document"]


@pytest.mark.parametrize("pending", [1, 20, 200])
async def test_one_read_per_poll_however_many_pending(
    local_gateway: AsyncSheetsGateway, local_gateway_config: GatewayConfig, reports: Path, pending: int
) -> None:
    """Each poll, the first after a restart included, costs exactly one batch_get for 1, 20 or 200 pending."""
    await put_queue_rows(local_gateway, [queue_row(f"job-{i:03d}") for i in range(pending)])
    gw2 = build_gateway(local_gateway_config)  # a restarted bot: nothing known about the sheet yet
    await gw2.start()
    try:
        poller = make_poller(gw2, RecordingMessenger(), reports)
        for _ in range(3):
            before = gw2.metrics.calls["batch_get"]
            stats = await poller.poll_once()
            assert gw2.metrics.calls["batch_get"] - before == 1
            assert stats.pending == pending
    finally:
        await gw2.close()


async def test_columns_reordered_by_staff_still_work_after_restart(
    local_gateway: AsyncSheetsGateway, local_gateway_config: GatewayConfig, reports: Path
) -> None:
    """With staff's own column order a restarted poller still reads the right cells and delivers."""
    headers = ["Комментарий", *reversed(QUEUE.headers)]
    await local_gateway.write_range(f"'{QUEUE.title}'!A1:N1", [headers])
    await put_queue_rows(local_gateway, [done_row(), queue_row("job-2")])
    gw2 = build_gateway(local_gateway_config)
    await gw2.start()
    try:
        messenger = RecordingMessenger()
        poller = make_poller(gw2, messenger, reports)
        stats = await poller.poll_once()
        before = gw2.metrics.calls["batch_get"]
        await poller.poll_once()
        assert gw2.metrics.calls["batch_get"] - before == 1
        assert stats.pending == 1 and stats.delivered == 1
        assert [s.kind for s in messenger.sent] == ["text", "document"]
        assert messenger.sent[0].text.startswith("📊 Аналитика 360 · OBJ-1")
        assert await delivered_at(gw2, "job-1")
    finally:
        await gw2.close()


async def test_long_results_are_read_only_when_due(local_gateway: AsyncSheetsGateway, reports: Path) -> None:
    """Polls read the short columns; a poll with a report to deliver costs one more read for its text."""
    history = [done_row(f"old-{i}", result_text="отчёт " * 500, delivered_at="2026-11-24 11:00:00") for i in range(30)]
    await put_queue_rows(local_gateway, [*history, *(queue_row(f"job-{i:03d}") for i in range(200)), done_row()])
    messenger = RecordingMessenger()
    poller = make_poller(local_gateway, messenger, reports)
    reads = []
    for _ in range(3):
        before = local_gateway.metrics.calls["batch_get"]
        await poller.poll_once()
        reads.append(local_gateway.metrics.calls["batch_get"] - before)
    # Delivering poll: the short columns, the due row's whole text, and the delivered_at write's verify-read.
    assert reads == [3, 1, 1]
    assert messenger.sent[0].text.startswith("📊 Аналитика 360 · OBJ-1")
    assert [s.kind for s in messenger.sent] == ["text", "document"]


async def test_stuck_request_is_reported_once(
    local_gateway: AsyncSheetsGateway, local_gateway_config: GatewayConfig, reports: Path
) -> None:
    """A request NEW for longer than stuck_after is reported to the partner and staff once, even after a restart."""
    await put_queue_rows(
        local_gateway,
        [
            queue_row("job-s", created_at="2026-11-24 11:55:00"),
            queue_row("job-p", status="PROCESSING", created_at="2026-11-24 11:40:00"),
        ],
    )
    clock = FakeClock()
    messenger = RecordingMessenger()
    poller = make_poller(local_gateway, messenger, reports, clock)
    assert (await poller.poll_once()).stuck_reported == 1  # job-p: 20 min; job-s: 5 min
    clock.advance(timedelta(minutes=6))
    assert (await poller.poll_once()).stuck_reported == 1  # job-s now 11 min
    assert (await poller.poll_once()).stuck_reported == 0
    assert (await make_poller(local_gateway, messenger, reports, clock).poll_once()).stuck_reported == 0
    partner = messenger.to(USER)
    assert len(partner) == 2 and all("дольше обычного" in s.text for s in partner)
    assert len(messenger.staff) == 2 and "job-p" in messenger.staff[0].text and "PROCESSING" in messenger.staff[0].text


async def test_oldest_pending_age_is_reported(local_gateway: AsyncSheetsGateway, reports: Path) -> None:
    """Poll stats carry the age of the oldest pending request (the queue lag for /healthz)."""
    await put_queue_rows(
        local_gateway,
        [queue_row("a", created_at="2026-11-24 11:58:00"), queue_row("b", created_at="2026-11-24 11:59:30")],
    )
    stats = await make_poller(local_gateway, RecordingMessenger(), reports).poll_once()
    assert stats.oldest_pending_seconds == 120


async def test_failed_sends_retry_then_staff_is_told(local_gateway: AsyncSheetsGateway, reports: Path) -> None:
    """Telegram refusing a message is retried next poll; after max failures staff are told and it stops."""
    await put_queue_rows(local_gateway, [done_row()])
    messenger = RecordingMessenger(fail_kinds={"text"})
    poller = make_poller(local_gateway, messenger, reports, max_send_failures=3)
    assert (await poller.poll_once()).send_failures == 1
    assert (await poller.poll_once()).send_failures == 1
    await poller.poll_once()
    assert len(messenger.staff) == 1 and "job-1" in messenger.staff[0].text
    messenger.fail_kinds.clear()
    await poller.poll_once()
    assert messenger.to(USER) == [] and len(messenger.staff) == 1
    assert await delivered_at(local_gateway, "job-1") == ""


async def test_blocked_partner_is_given_up_at_once(local_gateway: AsyncSheetsGateway, reports: Path) -> None:
    """A permanent delivery error (the partner blocked the bot) stops retries at once and tells staff."""
    await put_queue_rows(local_gateway, [done_row()])
    messenger = RecordingMessenger(blocked={USER})
    poller = make_poller(local_gateway, messenger, reports)
    await poller.poll_once()
    await poller.poll_once()
    assert len(messenger.staff) == 1 and "Forbidden" in messenger.staff[0].text
    entry = await local_gateway.state.delivery_get(DELIVERY_LEDGER, "job-1#1@2026-11-24 12:00:30")
    assert entry is not None and entry.phase is DeliveryPhase.FAILED


async def test_transient_failure_then_success_delivers_once(local_gateway: AsyncSheetsGateway, reports: Path) -> None:
    """A send that fails once is delivered on the next poll, text and PDF once each."""
    await put_queue_rows(local_gateway, [done_row()])
    messenger = RecordingMessenger(fail_kinds={"document"})
    poller = make_poller(local_gateway, messenger, reports)
    await poller.poll_once()
    messenger.fail_kinds.clear()
    await poller.poll_once()
    await poller.poll_once()
    assert [s.kind for s in messenger.to(USER)] == ["text", "document"]


async def test_bad_telegram_id_is_reported_to_staff(local_gateway: AsyncSheetsGateway, reports: Path) -> None:
    """A finished row without a usable telegram_id cannot be delivered: staff are told once."""
    await put_queue_rows(local_gateway, [done_row(telegram_id="иван")])
    messenger = RecordingMessenger()
    poller = make_poller(local_gateway, messenger, reports)
    await poller.poll_once()
    await poller.poll_once()
    assert [s.kind for s in messenger.sent] == ["staff"] and "telegram_id" in messenger.staff[0].text


async def test_rerun_with_a_new_attempt_is_delivered_again(local_gateway: AsyncSheetsGateway, reports: Path) -> None:
    """A row staff re-ran (a new attempt number, delivered_at cleared) is delivered again, once."""
    await put_queue_rows(local_gateway, [done_row()])
    messenger = RecordingMessenger()
    poller = make_poller(local_gateway, messenger, reports)
    await poller.poll_once()
    await local_gateway.table(QUEUE).write(
        [local_gateway.table(QUEUE).op_upsert("job-1", {QueueCol.ATTEMPTS: "2", QueueCol.DELIVERED_AT: ""})]
    )
    await poller.poll_once()
    await poller.poll_once()
    assert [s.kind for s in messenger.sent] == ["text", "document", "text", "document"]


async def test_pdf_loader_stays_inside_the_reports_folder(reports: Path, tmp_path: Path) -> None:
    """The loader serves our reports by URL, refuses traversal and non-PDF files, and ignores other hosts."""
    (tmp_path / "secret.pdf").write_bytes(PDF)
    (reports / "notes.pdf").write_bytes(b"not a pdf")
    load = make_pdf_loader(reports, BASE_URL)
    assert await load(f"{BASE_URL}/reports/job-1.pdf") == PDF
    assert await load(f"{BASE_URL}/reports/../secret.pdf") is None
    assert await load(f"{BASE_URL}/reports/notes.pdf") is None
    assert await load(f"{BASE_URL}/reports/absent.pdf") is None
    assert await load("https://example.invalid/x.pdf") is None  # no HTTP client given: never fetched


async def test_rerun_with_the_attempts_reset_is_delivered_again(
    local_gateway: AsyncSheetsGateway, reports: Path
) -> None:
    """Staff re-run a delivered row after resetting «attempts»: the new result (same attempt number, new finish
    time) still reaches the partner, once."""
    await put_queue_rows(local_gateway, [done_row()])
    messenger = RecordingMessenger()
    poller = make_poller(local_gateway, messenger, reports)
    await poller.poll_once()
    rerun = {
        QueueCol.ATTEMPTS: "1",
        QueueCol.FINISHED_AT: "2026-11-24 12:05:10",
        QueueCol.RESULT_TEXT: "📊 Аналитика 360 · OBJ-1\nНовые данные",
        QueueCol.DELIVERED_AT: "",
    }
    await local_gateway.table(QUEUE).write([local_gateway.table(QUEUE).op_upsert("job-1", rerun)])
    await poller.poll_once()
    await poller.poll_once()
    assert [s.kind for s in messenger.sent] == ["text", "document", "text", "document"]
    assert "Новые данные" in messenger.sent[2].text and await delivered_at(local_gateway, "job-1")


async def test_a_delivery_recorded_before_finish_times_were_keyed_is_honoured(
    local_gateway: AsyncSheetsGateway, reports: Path
) -> None:
    """A ledger record under the older key (id#attempt) still counts: a given-up delivery is not retried."""
    await put_queue_rows(local_gateway, [done_row()])
    await local_gateway.state.ledger_set(DELIVERY_LEDGER, "job-1#1", "failed", '{"done": 0, "failures": 1}')
    messenger = RecordingMessenger()
    await make_poller(local_gateway, messenger, reports).poll_once()
    assert messenger.sent == []


async def test_a_half_done_delivery_of_an_older_release_resumes_with_the_pdf(
    local_gateway: AsyncSheetsGateway, reports: Path
) -> None:
    """An older release's JSON record (text counted, PDF pending) resumes with the PDF only after an upgrade."""
    await put_queue_rows(local_gateway, [done_row()])
    key = "job-1#1@2026-11-24 12:00:30"
    await local_gateway.state.ledger_set(DELIVERY_LEDGER, key, "sending", '{"done": 1, "failures": 0}')
    messenger = RecordingMessenger()
    await make_poller(local_gateway, messenger, reports).poll_once()
    assert [s.kind for s in messenger.sent] == ["document"] and await delivered_at(local_gateway, "job-1")
