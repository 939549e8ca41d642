"""How fast the blue-green switch and a rollback are (targets: switch < 10 ms, rollback < 1 s).

Drives the real deploy.sh and rollback.sh in a temporary BASE with the stand-in project and stub service
manager of tests/integration/deploy_standin (stand-in /healthz server, fake_systemctl.py reading the real
marketingbot.service). Prints:
- the `current` switch as the scripts do it (`ln -s` to a temp name + `mv -T`), as rollback.sh reports it;
- the same switch as bare syscalls (symlink + rename) in-process, for reference;
- rollback.sh end to end: lock, switch, stop + start of the stand-in service, /healthz ok;
- deploy.sh of the stand-in: wall time and the restart -> healthy downtime it prints.
The real app starts slower than the stand-in: on the VM, rollback time = these figures + the app's start-up.
Run: `.venv/bin/python bench/deploy.py [--rollbacks 30] [--switches 2000] [--deploys 3]`.
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

HARNESS = Path(__file__).resolve().parents[1] / "tests" / "integration" / "deploy_standin" / "harness.py"
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
    args = parser.parse_args()
    harness = load_harness()

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


if __name__ == "__main__":
    main()
