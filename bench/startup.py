"""`marketingbot local` as a newcomer runs it: start-up time, idle memory, and /api/chat latency under load.

- start: from spawning `python -m bot local` to the first 200 from /healthz, on an EMPTY data directory (the
  demo data is seeded) and on an EXISTING one (already seeded); several runs each, median (target < 3 s);
- idle RSS: VmRSS of the process a few seconds after start-up, once the in-process worker has run
  (target < 150 MB); VmHWM (the peak) beside it;
- /api/chat: N requests from C concurrent clients with the offline AI (DAILY_AI_LIMIT=0: no daily cap).
  Once with every client as the demo partner (initData from /dev/init-data, as the page gets it: one
  partner's turns are serialised by design, so this is queueing), once with C different authorized partners
  (initData signed with the local dev token, as Telegram would sign theirs).
- --profile: what start-up spends its time on (imports, measured with `python -X importtime`, and the
  composition root's build_runtime on an empty and an existing store).

Prints figures; asserts nothing. Run: `.venv/bin/python -m bench.startup [--runs 5] [--requests 200]
[--clients 20] [--profile]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bot.config import DEFAULT_LOCAL_DEV_BOT_TOKEN
from bot.web.initdata import sign_init_data
from gateway import GatewayConfig, build_gateway
from gateway.schemas import AUTH, AuthCol
from tests.local_stack import free_port, running_local_stack, stack_env

ROOT = Path(__file__).resolve().parents[1]
IDLE_SETTLE = 3.0
BENCH_PARTNER_BASE = 200_000


def proc_status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status as a dict."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def mb(kib_text: str) -> float:
    """'123456 kB' → MB."""
    return int(kib_text.split()[0]) / 1024


def summary(values: list[float], unit: str = "s") -> str:
    """median (min–max) of the runs."""
    return (
        f"median {statistics.median(values):.2f} {unit} (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"
    )


def bench_start(runs: int, base: Path) -> tuple[Path, list[float], list[float]]:
    """Start-up on fresh and on existing directories; returns the existing directory and both timings."""
    empty: list[float] = []
    for i in range(runs):
        workdir = base / f"empty{i}"
        workdir.mkdir()
        with running_local_stack(workdir) as stack:
            empty.append(stack.healthy_after)
    existing_dir = base / "empty0"  # seeded by the first run
    existing: list[float] = []
    for _ in range(runs):
        with running_local_stack(existing_dir) as stack:
            existing.append(stack.healthy_after)
    return existing_dir, empty, existing


async def add_bench_partners(data_dir: Path, count: int) -> list[int]:
    """Authorized partners BENCH-001… in Auth (through the gateway, while the process is stopped)."""
    gw = build_gateway(GatewayConfig(backend="local", local_db_path=data_dir / "marketingbot.db"))
    await gw.start()
    ids = [BENCH_PARTNER_BASE + i for i in range(1, count + 1)]
    try:
        auth = gw.table(AUTH)
        for tid in ids:
            await auth.write(
                [
                    auth.op_upsert(
                        f"BENCH-{tid - BENCH_PARTNER_BASE:03d}",
                        {
                            AuthCol.PHONE: f"+7900{tid:07d}",
                            AuthCol.NAME: f"Партнёр {tid}",
                            AuthCol.STATUS: "authorized",
                            AuthCol.TELEGRAM_ID: str(tid),
                        },
                    )
                ]
            )
    finally:
        await gw.close()
    return ids


QUESTIONS = (
    "Какая комиссия партнёра по вторичке?",
    "Когда выплачивается вознаграждение?",
    "Какие документы нужны для задатка?",
    "Сколько действует закрепление клиента?",
)


async def chat_load(url: str, headers_for: Callable[[int], dict[str, str]], clients: int, requests: int) -> list[float]:
    """`requests` POST /api/chat spread over `clients` concurrent workers; the latency of each (s)."""
    latencies: list[float] = []
    failures: dict[int, int] = {}
    counter = iter(range(requests))

    async def worker(n: int, client: httpx.AsyncClient) -> None:
        for i in counter:
            began = time.perf_counter()
            response = await client.post(
                url + "/api/chat", json={"text": QUESTIONS[i % len(QUESTIONS)]}, headers=headers_for(n)
            )
            latencies.append(time.perf_counter() - began)
            if response.status_code != 200:
                failures[response.status_code] = failures.get(response.status_code, 0) + 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:
        await asyncio.gather(*(worker(n, client) for n in range(clients)))
    if failures:
        print(f"    non-200 answers: {failures}")
    return latencies


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))]


def print_latency(label: str, latencies: list[float], wall: float) -> None:
    """One line of latency figures."""
    ms = [v * 1000 for v in latencies]
    print(
        f"  {label}: p50 {percentile(ms, 50):.0f} ms, p95 {percentile(ms, 95):.0f} ms, max {max(ms):.0f} ms; "
        f"{len(ms) / wall:.0f} req/s"
    )


def bench_chat(existing_dir: Path, clients: int, requests: int) -> None:
    """Idle RSS, then /api/chat under load (one partner, then `clients` partners)."""
    ids = asyncio.run(add_bench_partners(existing_dir / "data", clients))
    with running_local_stack(existing_dir, extra={"DAILY_AI_LIMIT": "0"}) as stack:
        time.sleep(IDLE_SETTLE)  # the worker's first run and the first polls are done
        status = proc_status(stack.process.pid)
        print(f"idle RSS after start-up: {mb(status['VmRSS']):.0f} MB (peak VmHWM {mb(status['VmHWM']):.0f} MB)")

        dev = httpx.get(stack.url + "/dev/init-data", timeout=5.0).json()["init_data"]
        print(f"/api/chat, offline AI, {requests} requests from {clients} concurrent clients:")
        began = time.perf_counter()
        one = asyncio.run(chat_load(stack.url, lambda n: {"Authorization": f"tma {dev}"}, clients, requests))
        wall = time.perf_counter() - began
        print_latency("all as the demo partner (/dev/init-data; one partner's turns are serialised)", one, wall)

        signed = {
            n: "tma " + sign_init_data(DEFAULT_LOCAL_DEV_BOT_TOKEN, {"id": tid, "first_name": f"П{n}"})
            for n, tid in enumerate(ids)
        }
        began = time.perf_counter()
        many = asyncio.run(chat_load(stack.url, lambda n: {"Authorization": signed[n]}, clients, requests))
        print_latency(f"{clients} different partners", many, time.perf_counter() - began)
        status = proc_status(stack.process.pid)
        print(f"RSS after the load: {mb(status['VmRSS']):.0f} MB (peak VmHWM {mb(status['VmHWM']):.0f} MB)")


def profile(base: Path) -> None:
    """Where start-up time goes: the slowest imports and the composition root's build on both stores."""
    workdir = base / "importtime"
    workdir.mkdir()
    with running_local_stack(workdir, python_flags=("-X", "importtime")) as stack:
        print(f"start-up with -X importtime: {stack.healthy_after:.2f} s")
    rows = []
    for line in (workdir / "stack.log").read_text(errors="replace").splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.removeprefix("import time:").split("|")
            if cumulative.strip().isdigit():
                rows.append((int(cumulative), name[1:].rstrip()))  # nested imports keep their indent
    top_level = [(us, name) for us, name in rows if not name.startswith(" ")]
    total = sum(us for us, _ in top_level) / 1e6
    print(f"  imports: {total:.2f} s in total; the slowest (cumulative):")
    for us, name in sorted(rows, reverse=True)[:12]:
        print(f"    {us / 1e6:6.3f} s  {name}")
    code = (
        "import asyncio, sys, time\n"
        "t = time.perf_counter()\n"
        "from bot.app import build_runtime\nimport bot.lifecycle\n"
        "from bot.config import load_settings\n"
        "imported = time.perf_counter() - t\n"
        "async def main():\n"
        "    s = load_settings(sheets_backend='local')\n"
        "    for label in ('empty store', 'existing store'):\n"
        "        t = time.perf_counter()\n"
        "        rt = await build_runtime(s, local=True)\n"
        "        built = time.perf_counter() - t\n"
        "        await bot.lifecycle.close_runtime(rt)\n"
        "        print(f'  build_runtime on an {label}: {built:.2f} s')\n"
        "print(f'  import bot.app: {imported:.2f} s')\n"
        "asyncio.run(main())\n"
    )
    data = base / "build" / "data"
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=base,
        env=stack_env(data, free_port(), {"LOG_LEVEL": "WARNING"}),
        check=True,
    )


def main() -> None:
    """Parse arguments, run the benchmarks, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="start-ups per kind of data directory")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--profile", action="store_true", help="also break start-up time down")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        base = Path(tmp)
        existing_dir, empty, existing = bench_start(args.runs, base)
        print("marketingbot local → healthy /healthz (target < 3 s):")
        print(f"  empty data directory:    {summary(empty)}")
        print(f"  existing data directory: {summary(existing)}")
        bench_chat(existing_dir, args.clients, args.requests)
        if args.profile:
            print("start-up profile:")
            profile(base)


if __name__ == "__main__":
    main()
