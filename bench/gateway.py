"""Gateway vs a straightforward gspread bot, side by side against the fake Sheets server.

Each simulated user performs chat-turn-like logical operations: read their own Обращения row, then append
a line to their log. The fake server adds ~150 ms latency per call and enforces Google's 60 reads +
60 writes per minute. Baseline: what a straightforward bot does per operation — open the worksheet,
`get_all_values`, find the row, `update_cell` (gspread 6, no retries: a 429 loses the write).

Prints API calls per logical operation, bytes read per operation at two sheet sizes, 429s, lost
writes and p50/p95 latency. Run: `.venv/bin/python -m bench.gateway [--users 1 10 50] [--latency 0.15]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import gspread
from google.auth.credentials import AnonymousCredentials

from gateway import GatewayConfig, RebasedSession, build_gateway
from gateway.schemas import APPEALS, AppealCol
from tests.fakes.sheets_server import FakeSheetsServer


@dataclass
class Result:
    """Figures of one run."""

    name: str
    users: int
    ops: int
    calls: int
    bytes_read: int
    quota_429: int
    lost_writes: int
    latencies: list[float]

    def row(self) -> str:
        lat = sorted(self.latencies) or [0.0]
        p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
        return (
            f"{self.name:<9} users={self.users:<3} ops={self.ops:<4} calls/op={self.calls / self.ops:6.3f} "
            f"bytes-read/op={self.bytes_read / self.ops:9.0f} 429s={self.quota_429:<4} lost={self.lost_writes:<3} "
            f"p50={statistics.median(lat) * 1000:7.0f} ms p95={p95 * 1000:7.0f} ms"
        )


def _seed(server: FakeSheetsServer, rows: int) -> None:
    header = list(APPEALS.headers)
    data = [header] + [
        [
            "2026-11-01",
            f"P-{i}",
            f"Партнёр {i}",
            str(500_000 + i),
            f"[2026-11-01 10:00] Пользователь: привет {i}",
            "Ответ ИИ",
            "",
            "",
        ]
        for i in range(rows)
    ]
    if APPEALS.title not in server.sheet_titles():
        server.add_sheet(APPEALS.title, rows=max(1000, rows + 500))
    server.set_values(APPEALS.title, data)


def _user_ids(users: int) -> list[str]:
    return [str(500_000 + i) for i in range(users)]


def baseline(server: FakeSheetsServer, users: int, ops_per_user: int) -> Result:
    """Straightforward gspread: every op opens the sheet, reads all values, finds the row, update_cell."""
    from concurrent.futures import ThreadPoolExecutor

    creds = AnonymousCredentials()  # type: ignore[no-untyped-call]
    client = gspread.Client(auth=creds, session=RebasedSession(creds, server.url))
    server.reset_counters()
    lost = 0
    latencies: list[float] = []

    def one(tid: str, n: int) -> tuple[float, bool]:
        t0 = time.perf_counter()
        try:
            ws = client.open_by_key(server.spreadsheet_id).worksheet(APPEALS.title)
            values = ws.get_all_values()
            row = next(i + 1 for i, r in enumerate(values) if len(r) > 3 and r[3] == tid)
            old = values[row - 1][4]
            ws.update_cell(row, 5, old + f"\n[2026-11-24 12:00] Пользователь: сообщение {n}")
            return time.perf_counter() - t0, True
        except gspread.exceptions.APIError:
            return time.perf_counter() - t0, False

    with ThreadPoolExecutor(max_workers=users) as pool:
        for n in range(ops_per_user):
            for lat, ok in pool.map(one, _user_ids(users), [n] * users):
                latencies.append(lat)
                lost += 0 if ok else 1
    return Result(
        "baseline",
        users,
        users * ops_per_user,
        server.reads + server.writes,
        server.bytes_sent,
        server.responses[429],
        lost,
        latencies,
    )


async def ours(server: FakeSheetsServer, users: int, ops_per_user: int, tmp: Path) -> Result:
    """The gateway: coalesced, key-verified reads and writes; the limiter keeps it under the quota."""
    cfg = GatewayConfig(
        backend="google",
        spreadsheet_id=server.spreadsheet_id,
        sheets_api_base_url=server.url,
        local_db_path=tmp / f"state-{users}" / "x.db",
    )
    gw = build_gateway(cfg)
    await gw.start()
    table = gw.table(APPEALS)
    # A running bot has learned the header and where each user's row is (hints, verified on every read);
    # that one-time O(sheet) scan is a start-up cost, not a per-operation one.
    await table.get_many(_user_ids(users))
    server.reset_counters()
    latencies: list[float] = []

    async def one(tid: str, n: int) -> None:
        t0 = time.perf_counter()
        await table.get(tid)
        await table.write([table.op_append_text(tid, AppealCol.LOG, f"[2026-11-24 12:00] Пользователь: сообщение {n}")])
        latencies.append(time.perf_counter() - t0)

    try:
        for n in range(ops_per_user):
            await asyncio.gather(*(one(tid, n) for tid in _user_ids(users)))
        lost = gw.outbox_depth
    finally:
        await gw.close()
    # Every acknowledged write must be in the sheet exactly once.
    values = server.values(APPEALS.title)
    for tid in _user_ids(users):
        row = next(r for r in values if len(r) > 3 and r[3] == tid)
        lost += sum(1 for n in range(ops_per_user) if row[4].count(f"сообщение {n}") != 1)
    return Result(
        "gateway",
        users,
        users * ops_per_user,
        server.reads + server.writes,
        server.bytes_sent,
        server.responses[429],
        lost,
        latencies,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--ops", type=int, default=2, help="logical operations per user")
    parser.add_argument("--latency", type=float, default=0.15)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 2000], help="sheet sizes (rows)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            print(f"\n== sheet of {size} rows, latency {args.latency * 1000:.0f} ms, quota 60 reads + 60 writes/min")
            for users in args.users:
                for name in ("gateway", "baseline"):
                    with FakeSheetsServer(sheets=()) as server:
                        _seed(server, size)
                        server.set_latency(args.latency)
                        server.quota_per_minute(reads=60, writes=60)
                        if name == "gateway":
                            res = asyncio.run(ours(server, users, args.ops, Path(tmp)))
                        else:
                            res = baseline(server, users, args.ops)
                    print(res.row(), flush=True)


if __name__ == "__main__":
    main()
