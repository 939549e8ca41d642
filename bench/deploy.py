"""How fast the blue-green switch and a rollback are (targets: switch < 10 ms, rollback < 1 s).

Drives the real deploy.sh and rollback.sh in a temporary BASE with the stand-in project and stub service
manager of tests/integration/deploy_standin (stand-in /healthz server, fake_systemctl.py reading the real
marketingbot.service). Prints:
- the `current` switch as the scripts do it (`ln -s` to a temp name + `mv -T`), as rollback.sh reports it;
- the same switch as bare syscalls (symlink + rename) in-process, for reference;
- rollback.sh end to end: lock, switch, stop + start of the stand-in service, /healthz ok;
- deploy.sh of the stand-in: wall time and the restart -> healthy downtime it prints.
The real app starts slower than the stand-in: on the VM, rollback time = these figures + the app's start-up.

First (unless --slot-deploys 0), the zero-downtime slots with the REAL app
(tests/integration/deploy_standin/realapp.py): `--slot-deploys` consecutive deploy.sh runs
(DEPLOY_LAYOUT=slots; polling, or webhook with `--webhook`), then `--slot-rollbacks` rollback.sh runs
alternating between the last two releases, under 20 Mini App clients and 20 partners
writing to the bot, against the fake Telegram, Sheets and Gemini servers. Per hand-over: the longest gap in
Telegram processing (no reply sent to any partner) and the slowest Mini App request during the hand-over
(from the new slot's start to deploy.sh's return), and the failed requests. Goals: 0 failed requests,
gap < 1 s, p99 request < 1 s. Prints the hand-over sequence from the logs of the last deploy.
Run: `.venv/bin/python -m bench.deploy [--rollbacks 30] [--switches 2000] [--deploys 3] [--slot-deploys 10]
[--slot-rollbacks 10] [--webhook] [--slots-only]`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "tests" / "integration" / "deploy_standin" / "harness.py"
SWITCH_LINE = re.compile(r"switched current -> \S+ in (\d+\.\d) ms")
DOWNTIME_LINE = re.compile(r"downtime \(restart -> healthy\): (\d+\.\d+) s")


def load_harness() -> ModuleType:
    """Imports the deploy test harness by path (tests/ need not be importable)."""
    spec = importlib.util.spec_from_file_location("deploy_standin_harness", HARNESS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def summary(values_ms: list[float]) -> str:
    """Median, p95 and max of a sample, in milliseconds."""
    ordered = sorted(values_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    median = statistics.median(ordered)
    return f"median {median:8.2f} ms   p95 {p95:8.2f} ms   max {ordered[-1]:8.2f} ms   (n={len(ordered)})"


def bench_syscall_switch(root: Path, iterations: int) -> list[float]:
    """Times symlink-to-temp + rename over `current`, in-process (no fork/exec)."""
    for name in ("a", "b"):
        (root / "releases" / name).mkdir(parents=True)
    current, tmp = root / "current", root / ".current.tmp"
    os.symlink("releases/a", current)
    samples = []
    for i in range(iterations):
        start = time.perf_counter()
        os.symlink(f"releases/{'b' if i % 2 == 0 else 'a'}", tmp)
        os.replace(tmp, current)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def main() -> None:
    """Runs the benchmarks and prints the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rollbacks", type=int, default=30)
    parser.add_argument("--switches", type=int, default=2000)
    parser.add_argument("--deploys", type=int, default=3)
    parser.add_argument("--slot-deploys", type=int, default=10, help="real-app slot deploys (0: skip)")
    parser.add_argument("--slot-rollbacks", type=int, default=10, help="real-app slot rollbacks after them")
    parser.add_argument("--webhook", action="store_true", help="the slot bench in webhook mode (default polling)")
    parser.add_argument("--slots-only", action="store_true", help="skip the stand-in figures")
    args = parser.parse_args()
    harness = load_harness()
    if args.slot_deploys:
        bench_slots(harness, args.slot_deploys, args.slot_rollbacks, webhook=args.webhook)
    if args.slots_only:
        return

    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        root = Path(tmp)
        site = harness.Site(root / "site")
        try:
            deploy_wall, downtimes, names = [], [], []
            for i in range(max(2, args.deploys)):
                site.repo.commit_release(f"1.{i}")
                start = time.perf_counter()
                result = site.deploy()
                deploy_wall.append((time.perf_counter() - start) * 1000)
                if result.returncode != 0:
                    sys.exit(f"deploy failed:\n{result.stdout}")
                downtimes += [float(m) * 1000 for m in DOWNTIME_LINE.findall(result.stdout)]
                names.append(site.current())

            script_switch, rollback_wall = [], []
            start = time.perf_counter()
            first = site.rollback()  # no argument: previous release from the history
            no_arg_ms = (time.perf_counter() - start) * 1000
            if first.returncode != 0:
                sys.exit(f"rollback failed:\n{first.stdout}")
            script_switch += [float(m) for m in SWITCH_LINE.findall(first.stdout)]
            for i in range(args.rollbacks):
                target = names[-1] if i % 2 == 0 else names[-2]
                start = time.perf_counter()
                result = site.rollback(target)
                rollback_wall.append((time.perf_counter() - start) * 1000)
                if result.returncode != 0:
                    sys.exit(f"rollback failed:\n{result.stdout}")
                script_switch += [float(m) for m in SWITCH_LINE.findall(result.stdout)]
        finally:
            site.stop_service()
        syscall_switch = bench_syscall_switch(root / "syscalls", args.switches)

    load = os.getloadavg()[0]
    print(f"deploy bench (stand-in project, stub service manager; {os.cpu_count()} CPUs, load average {load:.1f})")
    print(f"switch, as the scripts do it (ln -s + mv -T)     {summary(script_switch)}   target < 10 ms")
    print(f"switch, bare syscalls (symlink + rename)         {summary(syscall_switch)}")
    print(f"rollback.sh end to end, named release            {summary(rollback_wall)}   target < 1000 ms")
    print(f"rollback.sh end to end, previous from history    {no_arg_ms:8.2f} ms (n=1)")
    print(f"deploy.sh end to end (venv, install, smoke, ...) {summary(deploy_wall)}")
    print(f"deploy downtime, restart -> healthy              {summary(downtimes)}")


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of a non-empty sample."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def bench_slots(harness: ModuleType, deploys: int, rollbacks: int, *, webhook: bool) -> None:
    """Real-app slot hand-overs under load: `deploys` deploys, then `rollbacks` rollback.sh runs alternating
    between the last two releases; one line per hand-over and the hand-over log of the last deploy."""
    from tests.fakes.gemini_server import FakeGeminiServer
    from tests.fakes.sheets_server import FakeSheetsServer
    from tests.fakes.telegram_server import FakeTelegramServer
    from tests.integration.deploy_standin import realapp

    rows: list[tuple[str, float, float, float, int, int, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-slots-") as tmp:
        site = harness.Site(Path(tmp) / "site")
        env = {"HEALTH_TIMEOUT": "60", "LEASE_TIMEOUT": "30", "SMOKE_TIMEOUT": "60", "CHECK_OPTS": "--skip mini-app"}
        with FakeTelegramServer() as tg, FakeSheetsServer() as sheets, FakeGeminiServer() as ai:
            try:
                realapp.prepare_site(site, tg, sheets, ai, webhook=webhook)
                site.repo.commit_release("1.0", exec_python=realapp.exec_python())
                first = site.deploy(**env)
                if first.returncode != 0:
                    sys.exit(f"first deploy failed:\n{first.stdout}")
                load = realapp.Load(site.port, tg, tg.token)
                sampler = realapp.RoleSampler(site.base)
                windows: list[tuple[float, float]] = []
                names: list[str] = []
                last_output = ""
                with realapp.running(sampler, load):
                    time.sleep(3)
                    for i in range(deploys):
                        site.repo.commit_release(f"2.{i}", exec_python=realapp.exec_python())
                        result = site.deploy(**env)
                        done = time.time()
                        if result.returncode != 0:
                            sys.exit(f"deploy {i + 1} failed:\n{result.stdout}")
                        last_output = result.stdout
                        windows.append((last_slot_start(site.state), done))
                        names.append(f"deploy {i + 1:2d}")
                        time.sleep(1)
                    releases = site.releases()
                    for i in range(rollbacks):
                        result = site.rollback(releases[-2] if i % 2 == 0 else releases[-1], **env)
                        done = time.time()
                        if result.returncode != 0:
                            sys.exit(f"rollback {i + 1} failed:\n{result.stdout}")
                        windows.append((last_slot_start(site.state), done))
                        names.append(f"rollback {i + 1:2d}")
                        time.sleep(1)
                    time.sleep(2)
                replies = realapp.wait_all_answered(tg, load.sent, timeout=60)
                gaps = realapp.processing_gaps(tg, windows)
                for name, window, gap in zip(names, windows, gaps, strict=True):
                    during = [r for r in load.requests if r.start <= window[1] and r.start + r.seconds >= window[0]]
                    failed = sum(1 for r in during if r.error is not None)
                    seconds = [r.seconds for r in during] or [0.0]
                    latency = max(realapp.reply_latencies(tg, load, window), default=0.0)
                    rows.append((name, gap, max(seconds), percentile(seconds, 0.99), len(during), failed, latency))
                lost = sum(max(0, len(t) - replies[u]) for u, t in load.sent.items())
                wrong = [u for u, t in load.sent.items() if realapp.user_entries(sheets, u) != t]
                mode = "webhook" if webhook else "polling"
                print(f"slot hand-overs, real app ({mode}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})")
                print(
                    "              longest Telegram gap   slowest request   p99 request   requests   failed"
                    "   slowest message -> reply"
                )
                for name, gap, slowest, p99, count, failed, latency in rows:
                    print(
                        f"{name:11s}   {gap * 1000:14.0f} ms   {slowest * 1000:12.0f} ms   {p99 * 1000:8.0f} ms"
                        f"   {count:8d}   {failed:6d}   {latency * 1000:14.0f} ms"
                    )
                all_failed = len(load.failures())
                messages = sum(len(t) for t in load.sent.values())
                print(
                    f"all: {len(load.requests)} Mini App requests, {all_failed} failed; {messages} partner messages, "
                    f"{lost} unanswered, {len(wrong)} partners whose log differs from what they sent; "
                    f"{len(sampler.both_leaders)} of {sampler.samples} role samples with two leaders"
                )
                worst_gap = max(r[1] for r in rows)
                worst_p99 = max(r[3] for r in rows)
                verdict = all_failed == 0 and worst_gap < 1.0 and worst_p99 < 1.0
                print(f"goals (0 failed, gap < 1 s, p99 < 1 s): {'met' if verdict else 'NOT met'}")
                print("hand-over of the last deploy, deploy.sh:")
                keep = False
                for line in last_output.splitlines():
                    keep = keep or "hand-over:" in line
                    if keep and "  | " not in line:
                        print("  " + line)
                print("hand-over of the last deploy, the two slots' logs (bot.leadership / bot.lifecycle):")
                for line in handover_journal(site.state, windows[deploys - 1]):
                    print("  " + line)
            finally:
                for unit in ("marketingbot@blue", "marketingbot@green", "marketingbot.socket"):
                    realapp.systemctl(site, "stop", unit)


def last_slot_start(state: Path) -> float:
    """When the stub service manager last started a slot (its event log's timestamp)."""
    starts = [
        float(line.split(" ", 1)[0])
        for line in (state / "events.log").read_text().splitlines()
        if " start marketingbot@" in line
    ]
    return starts[-1]


def handover_journal(state: Path, window: tuple[float, float]) -> list[str]:
    """The slots' leadership and start/stop lines inside the window, in time order, tagged with the slot."""
    import datetime as dt

    lines = []
    for journal in sorted(state.glob("journal-marketingbot@*.log")):
        slot = journal.stem.split("@")[1]
        for line in journal.read_text(errors="replace").splitlines():
            if not re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", line):
                continue
            keys = ("bot.leadership", "bot.lifecycle:", "Application.stop", "Application started")
            if not any(k in line for k in keys):
                continue
            stamp = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if window[0] - 0.5 <= stamp <= window[1] + 0.5:
                lines.append((stamp, f"[{slot}] {line}"))
    return [text for _, text in sorted(lines)]


if __name__ == "__main__":
    main()
