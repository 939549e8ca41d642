"""The window in which staff sorting could misplace a cell: from the verify-read to the cell write, at Google.

A chat turn on an existing row is: one values:batchGet that locates the row by its key (and reads it), then
one values:batchUpdate of the changed cells at that row number. Sheets has no conditional write, so if staff
sort the sheet between the two, the cells land in whatever row now has that number. This bench measures
that window as the fake Sheets server sees it (time between handling the batchGet and handling the
batchUpdate of the same turn), with a per-call latency like Google's, for the write order in use (cells
right after the read, new rows appended after the cells) and for the old order (append first).

Run: `.venv/bin/python -m bench.write_window [--turns 40] [--latency 0.15]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

from gateway import GatewayConfig, build_gateway
from gateway.schemas import APPEALS, AppealCol
from tests.fakes.sheets_server import FakeSheetsServer


async def _measure(turns: int, latency: float, with_new_row: bool) -> list[float]:
    with FakeSheetsServer(sheets=()) as server, tempfile.TemporaryDirectory() as tmp:
        cfg = GatewayConfig(
            backend="google",
            spreadsheet_id=server.spreadsheet_id,
            sheets_api_base_url=server.url,
            local_db_path=Path(tmp) / "x.db",
            reads_per_minute=None,
            writes_per_minute=None,
        )
        gw = build_gateway(cfg)
        await gw.start()
        try:
            await gw.ensure_sheets(fmt=False)
            appeals = gw.table(APPEALS)
            await appeals.write([appeals.op_append_text("1", AppealCol.LOG, "первое")])
            server.set_latency(latency)
            windows = []
            for i in range(turns):
                server.reset_counters()
                ops = [appeals.op_append_text("1", AppealCol.LOG, f"сообщение {i}")]
                if with_new_row:  # a turn that also adds a row (a new partner in the same batch)
                    ops.append(appeals.op_append_text(str(1000 + i), AppealCol.LOG, "новый"))
                await gw.write(ops)
                log = server.request_log
                read = max(r.at for r in log if r.kind == "batchGet")
                update = next(r.at for r in log if r.kind == "batchUpdate")
                windows.append(update - read)
            return windows
        finally:
            await gw.close()


def _fmt(name: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"{name:<42} p50 {statistics.median(ms):6.1f} ms   p95 {p95:6.1f} ms   max {ms[-1]:6.1f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.15, help="server-side delay per call, seconds")
    args = parser.parse_args()
    print(f"verify-read → cell write window, {args.turns} turns, {args.latency * 1000:.0f} ms per call:")
    print(_fmt("turn on an existing row", await _measure(args.turns, args.latency, False)))
    print(_fmt("turn + a new row in the same batch", await _measure(args.turns, args.latency, True)))


if __name__ == "__main__":
    asyncio.run(main())
