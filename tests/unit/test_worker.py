"""AnalyticsWorker: claiming, statuses, retries, the PDF, the optional AI narrative, two workers at once."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from pathlib import Path

import pytest

import bot.services.worker as worker_module
from bot.analytics.analysis import analyze, fmt_rub
from bot.analytics.seed import seed_demo_market
from bot.services.worker import AnalyticsWorker
from gateway import AsyncSheetsGateway, GatewayConfig, build_gateway
from gateway.schemas import MARKET, OBJECTS, QUEUE, QueueCol
from tests.unit.analytics_support import FakeClock, put_objects, put_queue_rows, queue_row, small_market

BASE_URL = "http://127.0.0.1:8080"


@pytest.fixture
async def gw(local_gateway: AsyncSheetsGateway) -> AsyncSheetsGateway:
    """The local gateway with one agency object and a dozen comparable listings."""
    await put_objects(local_gateway)
    market = local_gateway.table(MARKET)
    await local_gateway.write([market.op_insert(r) for r in small_market()])
    return local_gateway


def make_worker(
    gw: AsyncSheetsGateway, tmp_path: Path, clock: FakeClock | None = None, **kw: object
) -> AnalyticsWorker:
    """A worker writing PDFs to tmp_path/reports, with a short settle time."""
    options: dict[str, object] = {"settle": 0.01, "clock": clock or FakeClock()}
    options.update(kw)
    return AnalyticsWorker(gw, tmp_path / "reports", BASE_URL, **options)  # type: ignore[arg-type]


async def row(gw: AsyncSheetsGateway, job_id: str) -> dict[str, str]:
    """The row of Очередь with this id."""
    rec = await gw.table(QUEUE).get(job_id)
    assert rec is not None
    return dict(rec)


async def test_new_row_ends_done_with_text_and_pdf(gw: AsyncSheetsGateway, tmp_path: Path) -> None:
    """A NEW row is claimed and ends DONE with the summary, a PDF on disk and its URL, attempts 1."""
    await put_queue_rows(gw, [queue_row("job-1")])
    run = await make_worker(gw, tmp_path).run_once()
    assert run.done == ("job-1",) and run.claimed == ("job-1",)
    r = await row(gw, "job-1")
    assert r[QueueCol.STATUS] == "DONE"
    assert r[QueueCol.ATTEMPTS] == "1"
    assert r[QueueCol.STARTED_AT].startswith("2026-11-24T12:00:00.") and r[QueueCol.STARTED_AT].endswith("+03:00")
    assert r[QueueCol.FINISHED_AT] == "2026-11-24 12:00:00"
    assert r[QueueCol.PDF_URL] == f"{BASE_URL}/reports/job-1.pdf"
    assert r[QueueCol.ERROR] == ""
    assert "Аналитика 360 · OBJ-1" in r[QueueCol.RESULT_TEXT]
    assert (tmp_path / "reports" / "job-1.pdf").read_bytes().startswith(b"%PDF")


async def test_summary_figures_match_the_analysis(gw: AsyncSheetsGateway, tmp_path: Path) -> None:
    """The stored summary carries the median the analysis computes from the same sheets."""
    await put_queue_rows(gw, [queue_row("job-1")])
    await make_worker(gw, tmp_path).run_once()
    objects, market = await gw.table(OBJECTS).all(), await gw.table(MARKET).all()
    report = analyze("OBJ-1", objects, market, FakeClock().now.date())
    assert report.median_ppm2 is not None
    assert fmt_rub(report.median_ppm2) in (await row(gw, "job-1"))[QueueCol.RESULT_TEXT]


async def test_unknown_object_is_a_final_error(gw: AsyncSheetsGateway, tmp_path: Path) -> None:
    """A code missing from Объекты ends ERROR with the analysis' Russian message and is not retried."""
    await put_queue_rows(gw, [queue_row("job-x", object_code="NOPE-1")])
    worker = make_worker(gw, tmp_path)
    run = await worker.run_once()
    assert run.failed == ("job-x",)
    r = await row(gw, "job-x")
    assert r[QueueCol.STATUS] == "ERROR" and "NOPE-1" in r[QueueCol.ERROR] and "не найден" in r[QueueCol.ERROR]
    assert (await worker.run_once()).claimed == ()


async def test_unexpected_failure_retries_then_errors(
    gw: AsyncSheetsGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception puts the row back to NEW until max_attempts, then ERROR in Russian."""

    def broken_pdf(*_: object) -> bytes:
        raise OSError("disk full")

    monkeypatch.setattr(worker_module, "render_pdf", broken_pdf)
    await put_queue_rows(gw, [queue_row("job-1")])
    worker = make_worker(gw, tmp_path, max_attempts=3)
    for attempt in (1, 2):
        run = await worker.run_once()
        assert run.retried == ("job-1",)
        r = await row(gw, "job-1")
        assert (r[QueueCol.STATUS], r[QueueCol.ATTEMPTS]) == ("NEW", str(attempt))
    run = await worker.run_once()
    assert run.failed == ("job-1",)
    r = await row(gw, "job-1")
    assert (r[QueueCol.STATUS], r[QueueCol.ATTEMPTS]) == ("ERROR", "3")
    assert "внутренней ошибки" in r[QueueCol.ERROR] and "disk full" not in r[QueueCol.ERROR]


async def test_batch_takes_the_oldest_first(gw: AsyncSheetsGateway, tmp_path: Path) -> None:
    """At most `batch` rows are claimed per run, oldest created_at first."""
    rows = [queue_row(f"job-{i}", created_at=f"2026-11-24 11:{59 - i:02d}:00") for i in range(4)]
    await put_queue_rows(gw, rows)
    run = await make_worker(gw, tmp_path, batch=2).run_once()
    assert set(run.done) == {"job-3", "job-2"}
    assert (await row(gw, "job-0"))[QueueCol.STATUS] == "NEW"


async def test_foreign_claim_during_settle_wins(gw: AsyncSheetsGateway, tmp_path: Path) -> None:
    """A row whose claim token is overwritten by another worker before the check is left alone."""
    await put_queue_rows(gw, [queue_row("job-1")])
    task = asyncio.create_task(make_worker(gw, tmp_path, settle=0.3).run_once())
    for _ in range(100):
        if (await row(gw, "job-1"))[QueueCol.STATUS] == "PROCESSING":
            break
        await asyncio.sleep(0.01)
    await gw.table(QUEUE).write(
        [gw.table(QUEUE).op_upsert("job-1", {QueueCol.STARTED_AT: "2026-11-24 12:00:00 #otherworker"})]
    )
    run = await task
    assert run.lost == ("job-1",) and run.processed == ()
    assert (await row(gw, "job-1"))[QueueCol.STATUS] == "PROCESSING"
    assert not (tmp_path / "reports" / "job-1.pdf").exists()


async def test_result_dropped_when_lease_was_taken_over(gw: AsyncSheetsGateway, tmp_path: Path) -> None:
    """If another worker takes the row over while this one computes, this one's result is not written."""
    await put_queue_rows(gw, [queue_row("job-1")])

    async def slow_narrator(prompt: str) -> str:
        await gw.table(QUEUE).write(
            [gw.table(QUEUE).op_upsert("job-1", {QueueCol.STARTED_AT: "2026-11-24 12:00:00 #otherworker"})]
        )
        return "Цена близка к рынку."

    run = await make_worker(gw, tmp_path, ai_narrator=slow_narrator).run_once()
    assert run.lost == ("job-1",) and run.done == ()
    assert (await row(gw, "job-1"))[QueueCol.STATUS] == "PROCESSING"
    assert not (tmp_path / "reports" / "job-1.pdf").exists()


async def test_two_workers_never_process_the_same_row(
    gw: AsyncSheetsGateway, tmp_path: Path, local_gateway_config: GatewayConfig
) -> None:
    """Two workers (separate gateways on one store) racing over 12 rows process each exactly once."""
    await put_queue_rows(gw, [queue_row(f"job-{i:02d}") for i in range(12)])
    other_gw = build_gateway(local_gateway_config)
    await other_gw.start()
    try:
        a = make_worker(gw, tmp_path, batch=4, settle=0.05)
        b = make_worker(other_gw, tmp_path, batch=4, settle=0.05)
        seen_a: list[str] = []
        seen_b: list[str] = []
        for _ in range(10):
            run_a, run_b = await asyncio.gather(a.run_once(), b.run_once())
            seen_a += run_a.processed
            seen_b += run_b.processed
            if not run_a.claimed and not run_b.claimed and not run_a.lost and not run_b.lost:
                break
    finally:
        await other_gw.close()
    assert not set(seen_a) & set(seen_b)
    assert len(seen_a) + len(seen_b) == 12 == len(set(seen_a) | set(seen_b))
    for rec in await gw.table(QUEUE).all():
        assert (rec[QueueCol.STATUS], rec[QueueCol.ATTEMPTS]) == ("DONE", "1")


async def test_two_workers_on_one_gateway(gw: AsyncSheetsGateway, tmp_path: Path) -> None:
    """Two workers sharing one gateway (claims coalesced into one write) still split the rows."""
    await put_queue_rows(gw, [queue_row(f"job-{i}") for i in range(5)])
    a, b = make_worker(gw, tmp_path), make_worker(gw, tmp_path)
    run_a, run_b = await asyncio.gather(a.run_once(), b.run_once())
    assert not set(run_a.processed) & set(run_b.processed)
    assert len(run_a.processed) + len(run_b.processed) == 5


async def test_dead_worker_lease_is_reclaimed(gw: AsyncSheetsGateway, tmp_path: Path) -> None:
    """A row left PROCESSING past the lease is claimed again; with no attempts left it ends ERROR."""
    await put_queue_rows(
        gw,
        [
            queue_row("fresh", status="PROCESSING", started_at="2026-11-24 11:55:00 #w1", attempts="1"),
            queue_row("stale", status="PROCESSING", started_at="2026-11-24 11:40:00 #w1", attempts="1"),
            queue_row("spent", status="PROCESSING", started_at="2026-11-24 11:40:00 #w1", attempts="3"),
        ],
    )
    run = await make_worker(gw, tmp_path, lease=timedelta(minutes=10), max_attempts=3).run_once()
    assert run.done == ("stale",) and run.expired == ("spent",)
    assert (await row(gw, "stale"))[QueueCol.ATTEMPTS] == "2"
    assert (await row(gw, "fresh"))[QueueCol.STATUS] == "PROCESSING"
    spent = await row(gw, "spent")
    assert spent[QueueCol.STATUS] == "ERROR" and "прервалась" in spent[QueueCol.ERROR]


async def test_rerun_by_staff_clears_delivered_at(gw: AsyncSheetsGateway, tmp_path: Path) -> None:
    """A delivered row that staff set back to NEW is processed again and becomes undelivered."""
    await put_queue_rows(gw, [queue_row("job-1", status="NEW", attempts="1", delivered_at="2026-11-24 11:00:00")])
    await make_worker(gw, tmp_path).run_once()
    r = await row(gw, "job-1")
    assert (r[QueueCol.STATUS], r[QueueCol.ATTEMPTS], r[QueueCol.DELIVERED_AT]) == ("DONE", "2", "")


async def test_valid_ai_narrative_is_used(gw: AsyncSheetsGateway, tmp_path: Path) -> None:
    """A narrative whose numbers are all computed figures replaces the template reasoning."""
    prompts: list[str] = []

    async def narrator(prompt: str) -> str:
        prompts.append(prompt)
        return "Объект стоит в рыночном диапазоне, цену стоит сохранить и следить за спросом."

    await put_queue_rows(gw, [queue_row("job-1")])
    await make_worker(gw, tmp_path, ai_narrator=narrator).run_once()
    text = (await row(gw, "job-1"))[QueueCol.RESULT_TEXT]
    assert "следить за спросом" in text
    assert prompts and "OBJ-1" in prompts[0]


@pytest.mark.parametrize("answer", ["Цена завышена на 47,3% — снизьте до 8 111 111 ₽.", RuntimeError("quota")])
async def test_bad_or_failing_ai_narrative_falls_back(
    gw: AsyncSheetsGateway, tmp_path: Path, answer: str | Exception
) -> None:
    """A narrative with invented numbers, or an AI error, leaves the template text in place."""

    async def narrator(prompt: str) -> str:
        if isinstance(answer, Exception):
            raise answer
        return answer

    await put_queue_rows(gw, [queue_row("job-1")])
    await make_worker(gw, tmp_path, ai_narrator=narrator).run_once()
    r = await row(gw, "job-1")
    assert r[QueueCol.STATUS] == "DONE"
    assert "47,3" not in r[QueueCol.RESULT_TEXT] and "Рекомендация:" in r[QueueCol.RESULT_TEXT]


async def test_unsafe_ids_get_a_safe_file_name(gw: AsyncSheetsGateway, tmp_path: Path) -> None:
    """A staff-typed id with path characters never escapes the reports folder."""
    await put_queue_rows(gw, [queue_row("../../etc/evil")])
    await make_worker(gw, tmp_path).run_once()
    url = (await row(gw, "../../etc/evil"))[QueueCol.PDF_URL]
    name = url.rsplit("/", 1)[1]
    assert "/" not in name and ".." not in name and (tmp_path / "reports" / name).is_file()


async def test_run_forever_stops_on_event(gw: AsyncSheetsGateway, tmp_path: Path) -> None:
    """run_forever processes the queue and returns once the stop event is set."""
    await put_queue_rows(gw, [queue_row("job-1")])
    stop = asyncio.Event()
    task = asyncio.create_task(make_worker(gw, tmp_path).run_forever(0.02, stop))
    for _ in range(200):
        if (await row(gw, "job-1"))[QueueCol.STATUS] == "DONE":
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert (await row(gw, "job-1"))[QueueCol.STATUS] == "DONE"


async def test_seed_is_idempotent_and_bulk(local_gateway: AsyncSheetsGateway) -> None:
    """Seeding fills empty Объекты/Рынок with few API calls and does nothing the second time."""
    before = sum(local_gateway.metrics.calls.values())
    first = await seed_demo_market(local_gateway, date(2026, 11, 24))
    calls = sum(local_gateway.metrics.calls.values()) - before
    assert first.objects == 20 and first.market >= 2000
    assert calls <= 6
    second = await seed_demo_market(local_gateway, date(2026, 11, 24))
    assert (second.objects, second.market) == (0, 0)
    codes = [r["code"] for r in await local_gateway.table(OBJECTS).all()]
    assert codes[0] == "DEMO-0001" and codes[-1] == "DEMO-0020"
