"""Аналитика 360: sheet reads per queue poll (target: 1 whatever the backlog) and worker throughput.

For 1, 20 and 200 pending requests (plus a history of delivered rows, as a real Очередь accumulates),
five polls are run and the backend reads per poll are counted: on the local store (gateway metrics) and
on the google backend against the fake Sheets v4 server (the server's own count and bytes sent).
Then the Python worker processes 10 requests over the demo data (analysis + PDF) on the local store.
When A's `bench/analytics_compute.py` exists its figures (analysis time over 10 000 listings, Python and
Node) are printed too.

Run: `.venv/bin/python -m bench.analytics [--pending 1 20 200] [--history 500] [--no-compute]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from bot.analytics.seed import seed_demo_market
from bot.services.ports import InlineButton, utc_now
from bot.services.queue_poller import QueuePoller, make_pdf_loader
from bot.services.sheet_time import stamp
from bot.services.worker import AnalyticsWorker
from gateway import AsyncSheetsGateway, GatewayConfig, build_gateway
from gateway.schemas import QUEUE, QueueCol
from tests.fakes.sheets_server import FakeSheetsServer

ROOT = Path(__file__).resolve().parents[1]
POLLS = 5


class NullMessenger:
    """Counts sends; delivers nothing."""

    def __init__(self) -> None:
        self.sends = 0

    async def send_text(
        self, chat_id: int, text: str, *, buttons: Sequence[str] | Sequence[InlineButton] | None = None
    ) -> None:
        self.sends += 1

    async def send_document(self, chat_id: int, data: bytes, filename: str, caption: str) -> None:
        self.sends += 1

    async def send_photo(self, chat_id: int, photo_url: str, caption: str) -> None:
        self.sends += 1

    async def notify_staff(self, text: str) -> None:
        self.sends += 1


def _rows(pending: int, history: int) -> list[dict[str, str]]:
    written = stamp(utc_now())
    done = [
        {
            QueueCol.ID: f"old-{i:05d}",
            QueueCol.CREATED_AT: written,
            QueueCol.OBJECT_CODE: "DEMO-0001",
            QueueCol.TELEGRAM_ID: str(100_000 + i % 50),
            QueueCol.STATUS: "DONE",
            QueueCol.ATTEMPTS: "1",
            QueueCol.RESULT_TEXT: "📊 Аналитика 360 · DEMO-0001\n" + "текст отчёта " * 60,
            QueueCol.DELIVERED_AT: written,
        }
        for i in range(history)
    ]
    new = [
        {
            QueueCol.ID: f"new-{i:05d}",
            QueueCol.CREATED_AT: written,
            QueueCol.OBJECT_CODE: "DEMO-0001",
            QueueCol.TELEGRAM_ID: str(100_000 + i),
            QueueCol.STATUS: "NEW",
            QueueCol.ATTEMPTS: "0",
        }
        for i in range(pending)
    ]
    return [{str(k): v for k, v in r.items()} for r in done + new]


async def _polls(gw: AsyncSheetsGateway, server: FakeSheetsServer | None) -> str:
    # A fresh gateway, as after a restart: the first poll reads whole rows (learning the header), later
    # polls only the short columns.
    poller = QueuePoller(gw, NullMessenger(), stuck_after=timedelta(hours=1), pdf_loader=make_pdf_loader(None, None))
    reads: list[int] = []
    sent: list[int] = []
    took: list[float] = []
    for _ in range(POLLS):
        before = gw.metrics.calls["batch_get"]
        if server is not None:
            server.reset_counters()
        t0 = time.perf_counter()
        await poller.poll_once()
        took.append(time.perf_counter() - t0)
        reads.append(gw.metrics.calls["batch_get"] - before)
        if server is not None:
            await asyncio.sleep(0.05)  # the server counts a response once it is written out
            sent.append(server.bytes_sent)
    line = f"reads/poll={max(reads)} (each of {POLLS}: {reads})"
    if server is not None:
        server.reset_counters()
        await gw.table(QUEUE).all()  # for comparison: what reading whole rows would cost every poll
        await asyncio.sleep(0.05)
        line += f" bytes/poll={statistics.mean(sent):,.0f} (whole rows: {server.bytes_sent:,})"
    return line + f" median time/poll={statistics.median(took) * 1000:.1f} ms"


async def poll_figures(backend: str, pending: int, history: int, tmp: Path) -> str:
    """Reads per poll for one backlog on one backend."""
    server: FakeSheetsServer | None = None
    if backend == "google":
        server = FakeSheetsServer()
        server.__enter__()
        cfg = GatewayConfig(
            backend="google",
            local_db_path=tmp / "state" / "x.db",
            spreadsheet_id=server.spreadsheet_id,
            sheets_api_base_url=server.url,
            reads_per_minute=None,
            writes_per_minute=None,
        )
    else:
        cfg = GatewayConfig(backend="local", local_db_path=tmp / "sheets.db")
    try:
        setup = build_gateway(cfg)
        await setup.start()
        try:
            await setup.ensure_sheets([QUEUE])
            table = setup.table(QUEUE)
            await setup.write([table.op_insert(r) for r in _rows(pending, history)])
        finally:
            await setup.close()
        gw = build_gateway(cfg)
        await gw.start()
        try:
            return f"{backend:<6} pending={pending:<4} history={history:<5} " + await _polls(gw, server)
        finally:
            await gw.close()
    finally:
        if server is not None:
            server.__exit__(None, None, None)


async def worker_figures(tmp: Path, jobs: int = 10) -> str:
    """Python worker: analysis + PDF for `jobs` requests over the demo data on the local store."""
    gw = build_gateway(GatewayConfig(backend="local", local_db_path=tmp / "sheets.db"))
    await gw.start()
    try:
        await gw.ensure_sheets()
        seeded = await seed_demo_market(gw, utc_now().date())
        table = gw.table(QUEUE)
        written = stamp(utc_now())
        await gw.write(
            [
                table.op_insert(
                    {
                        "id": f"job-{i}",
                        "created_at": written,
                        "object_code": f"DEMO-{i % 20 + 1:04d}",
                        "telegram_id": "100001",
                        "status": "NEW",
                        "attempts": "0",
                    }
                )
                for i in range(jobs)
            ]
        )
        worker = AnalyticsWorker(gw, tmp / "reports", "http://127.0.0.1:8080", batch=jobs, settle=0.0)
        reads = gw.metrics.calls["batch_get"]
        t0 = time.perf_counter()
        run = await worker.run_once()
        took = time.perf_counter() - t0
        reads = gw.metrics.calls["batch_get"] - reads
        return (
            f"worker: {len(run.done)} reports over {seeded.market:,} listings in {took:.2f} s "
            f"({took / max(1, len(run.done)) * 1000:.0f} ms per report incl. PDF), backend reads for the batch={reads}"
        )
    finally:
        await gw.close()


def compute_figures() -> str | None:
    """A's compute benchmark (Python and Node analysis time), when it exists."""
    script = ROOT / "bench" / "analytics_compute.py"
    if not script.is_file():
        return None
    done = subprocess.run(
        [sys.executable, "-m", "bench.analytics_compute"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=False,
    )
    return (done.stdout + done.stderr).strip()


async def main(args: argparse.Namespace) -> None:
    print("Queue poll: backend reads per poll (target 1, whatever the backlog)")
    for backend in ("local", "google"):
        for pending in args.pending:
            with tempfile.TemporaryDirectory() as tmp:
                print("  " + await poll_figures(backend, pending, args.history, Path(tmp)))
    with tempfile.TemporaryDirectory() as tmp:
        print(await worker_figures(Path(tmp)))
    if args.compute:
        figures = compute_figures()
        print("Compute benchmark (bench/analytics_compute.py):" if figures else "bench/analytics_compute.py: absent")
        if figures:
            print(figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, nargs="+", default=[1, 20, 200])
    parser.add_argument("--history", type=int, default=500, help="delivered rows already in Очередь")
    parser.add_argument("--no-compute", dest="compute", action="store_false")
    asyncio.run(main(parser.parse_args()))
