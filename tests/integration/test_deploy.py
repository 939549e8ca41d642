"""deploy.sh, rollback.sh and marketingbot.service, driven for real in a temporary BASE.

The service manager is deploy_standin/fake_systemctl.py (it runs what the real unit file says, with
/home/marketing rewritten to the temporary BASE); the deployed project is a tiny stand-in git repo whose
releases choose whether their smoke test passes and whether /healthz answers ok.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.integration.deploy_standin.harness import Site


def _load_harness() -> ModuleType:
    path = Path(__file__).resolve().parent / "deploy_standin" / "harness.py"
    spec = importlib.util.spec_from_file_location("deploy_standin_harness", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


# Loaded by path: tests/ may or may not be a package, and the harness is shared with bench/deploy.py.
harness = _load_harness()

RELEASE_NAME = re.compile(r"^\d{8}_\d{6}_[0-9a-f]{7,}$")
LOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} (deploy|rollback)\.sh: ")

# Resolves BASE/current in a loop until STOP exists; prints how many reads failed (missing or dangling link).
READER = r"""
import json, os, sys
from pathlib import Path
current, ready, stop = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
reads = failures = 0
seen = set()
examples = []
while not stop.exists():
    for _ in range(200):
        try:
            os.stat(current / ".venv")
            seen.add(os.readlink(current))
        except OSError as exc:
            failures += 1
            if len(examples) < 3:
                examples.append(repr(exc))
        reads += 1
    if reads == 200:
        ready.touch()
print(json.dumps({"reads": reads, "failures": failures, "targets": len(seen), "examples": examples}))
"""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """A temporary BASE with a stand-in repo; the stand-in service is stopped afterwards."""
    created = harness.Site(tmp_path)
    yield created
    created.stop_service()


def deploy_ok(site: Site, version: str, **env: str) -> str:
    """Commits and deploys a healthy release; returns its release name."""
    site.repo.commit_release(version)
    result = site.deploy(**env)
    assert result.returncode == 0, result.stdout
    name = site.current()
    assert name is not None
    return name


def test_good_deploy_switches_current_and_records_history(site: Site) -> None:
    """A good deploy builds a clean release, switches `current`, restarts into it and appends to the history."""
    first_commit = site.repo.commit_release("1.0")
    first = site.deploy()
    assert first.returncode == 0, first.stdout
    name1 = site.current()
    assert name1 is not None and RELEASE_NAME.match(name1) and name1.endswith("_" + first_commit[:7])
    assert site.healthz()["version"] == "1.0"

    release = site.base / "releases" / name1
    assert not (release / ".git").exists() and not (release / "stray.txt").exists()
    for item in (".env", "credentials.json", "chat_memory.db", "logs"):
        link = release / item
        assert link.is_symlink() and link.resolve() == (site.base / "shared" / item).resolve()
    # The release's .env is the shared one, not the untracked file in the developer's checkout.
    assert "WEB_PORT" in (release / ".env").read_text()

    assert "## [1.0] - 2025-01-01" in first.stdout and "Stand-in change shipped in 1.0." in first.stdout
    assert re.search(r"downtime \(restart -> healthy\): \d+\.\d\d s", first.stdout)
    assert "mode: long polling" in first.stdout
    assert all(LOG_LINE.match(line) for line in first.stdout.splitlines()), first.stdout

    with (site.base / "shared" / ".env").open("a") as env_file:
        env_file.write("WEBHOOK_URL=https://bot.example.invalid/telegram\n")
    site.repo.commit_release("1.1")
    second = site.deploy()
    assert second.returncode == 0, second.stdout
    assert "mode: webhook" in second.stdout
    name2 = site.current()
    assert name2 is not None and name2 != name1
    assert site.healthz() == {"status": "ok", "version": "1.1", "cwd": str(site.base / "releases" / name2)}
    assert [line[1:] for line in site.history()] == [["deploy", name1, "-"], ["deploy", name2, name1]]
    events = site.events()
    assert events[-3] == "reset-failed" and events[-2].startswith("stop ")
    assert events[-1].startswith(f"start {site.base / 'releases' / name2} ")


def test_failed_smoke_test_is_never_switched_in(site: Site) -> None:
    """A release failing `marketingbot check` or a critical import is removed; the running one is untouched."""
    good = deploy_ok(site, "1.0")
    restarts = len(site.events())

    site.repo.commit_release("1.1-broken-config", check_ok=False)
    bad_check = site.deploy()
    assert bad_check.returncode == 1, bad_check.stdout
    assert "GOOGLE_SPREADSHEET_ID is not set" in bad_check.stdout
    assert "running release is untouched" in bad_check.stdout

    site.repo.commit_release("1.2-missing-dependency")
    bad_import = site.deploy(SMOKE_IMPORTS="bot gateway telegram")
    assert bad_import.returncode == 1, bad_import.stdout
    assert "import telegram failed: ModuleNotFoundError" in bad_import.stdout

    assert site.current() == good
    assert site.releases() == [good]
    assert len(site.events()) == restarts
    assert site.healthz()["version"] == "1.0"
    assert [line[1] for line in site.history()] == ["deploy"]


def _sandbox_supported() -> bool:
    path = harness.FAKE_SYSTEMD_RUN
    spec = importlib.util.spec_from_file_location("fake_systemd_run", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return bool(module.sandbox_supported())


@pytest.mark.skipif(not _sandbox_supported(), reason="needs mount namespaces (root) to reproduce a read-only release")
def test_release_failing_only_in_the_unit_sandbox_is_never_switched_in(site: Site) -> None:
    """The smoke test runs `check` in the unit's sandbox: a release writing inside itself fails before the switch."""
    good = deploy_ok(site, "1.0")
    restarts = len(site.events())
    assert (site.base / "shared" / "data" / ".write-probe").exists()  # DATA_DIR from the unit: shared/data

    site.repo.commit_release("1.1-writes-into-release", data_in_release=True)
    bad = site.deploy()
    assert bad.returncode == 1, bad.stdout
    assert "in the unit's sandbox" in bad.stdout and "Read-only file system" in bad.stdout
    assert "running release is untouched" in bad.stdout
    assert site.current() == good and site.releases() == [good]
    assert len(site.events()) == restarts

    unsandboxed = site.deploy(SANDBOX_RUN="")  # the same release passes when the check runs outside the sandbox
    assert unsandboxed.returncode == 0, unsandboxed.stdout
    assert "not sandboxed" in unsandboxed.stdout


def test_smoke_test_takes_the_units_sandbox_and_skips_the_mini_app_on_a_first_deploy(site: Site) -> None:
    """The check gets the unit's properties with the new release as working directory; the first deploy
    skips the Mini App item (nothing serves WEBAPP_URL yet), later ones do not."""
    recorder = site.root / "record_sandbox.sh"
    log = site.root / "sandbox.log"
    stub = f"{sys.executable} {harness.FAKE_SYSTEMD_RUN}"
    recorder.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\nexec {stub} "$@"\n')
    recorder.chmod(0o755)
    first = deploy_ok(site, "1.0", SANDBOX_RUN=f"{recorder}")
    second = deploy_ok(site, "1.1", SANDBOX_RUN=f"{recorder}")
    calls = log.read_text().splitlines()
    assert len(calls) == 2
    base = site.base
    unit = harness.UNIT_FILE.read_text()
    writable = re.findall(r"^ReadWritePaths=(.+)$", unit, flags=re.MULTILINE)
    assert writable
    for call, name in zip(calls, (first, second), strict=True):
        assert f"-p WorkingDirectory={base}/releases/{name} " in call
        for paths in writable:  # the unit's own writable paths, moved to BASE
            assert f"-p ReadWritePaths={paths.replace('/home/marketing', str(base))} " in call
        assert "-p ProtectSystem=strict " in call and "-p ExecStart" not in call
        assert f"-p EnvironmentFile={base}/shared/.env " in call and "-p User=marketing " in call
        assert f"-p Environment=DATA_DIR={base}/shared/data " in call
        skip = " --skip mini-app" if name == first else ""
        assert call.endswith(f"{base}/releases/{name}/.venv/bin/marketingbot check{skip}")


def test_never_healthy_release_is_rolled_back_automatically(site: Site) -> None:
    """A release whose /healthz never says ok is switched back out, exit 2, and is not "previous" later."""
    oldest = deploy_ok(site, "1.0")
    good = deploy_ok(site, "1.1")
    site.repo.commit_release("1.2-unhealthy", healthy=False)
    result = site.deploy(HEALTH_TIMEOUT="3")
    assert result.returncode == 2, result.stdout
    assert "did not become healthy" in result.stdout and "HTTP 503" in result.stdout
    assert site.current() == good
    assert site.healthz()["version"] == "1.1"
    bad = [name for name in site.releases() if name not in (oldest, good)]
    assert len(bad) == 1
    assert [line[1:] for line in site.history()[-2:]] == [["deploy", bad[0], good], ["auto-rollback", good, bad[0]]]

    back = site.rollback()
    assert back.returncode == 0, back.stdout
    assert site.current() == oldest


def test_deploy_interrupted_after_switch_returns_to_old_release(site: Site) -> None:
    """Ctrl-C while the new release is being health-checked switches back to the old release before exiting."""
    good = deploy_ok(site, "1.0")
    site.repo.commit_release("1.1-unhealthy", healthy=False)
    starts = len([event for event in site.events() if event.startswith("start ")])
    deploy = subprocess.Popen(
        [str(harness.DEPLOY_SH)],
        env=site.env(HEALTH_TIMEOUT="60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len([event for event in site.events() if event.startswith("start ")]) == starts:
            assert deploy.poll() is None and time.monotonic() < deadline, "the new release was never started"
            time.sleep(0.02)
        assert site.current() != good
        os.killpg(deploy.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        output, _ = deploy.communicate(timeout=harness.SCRIPT_TIMEOUT)
    finally:
        if deploy.poll() is None:
            deploy.kill()
    assert deploy.returncode == 2, output
    assert "stopped after the switch" in output
    assert site.current() == good
    assert site.healthz()["version"] == "1.0"


def test_first_release_never_healthy_leaves_nothing_active(site: Site) -> None:
    """With no earlier release to return to, an unhealthy first deploy stops the service and removes `current`."""
    site.repo.commit_release("1.0-unhealthy", healthy=False)
    result = site.deploy(HEALTH_TIMEOUT="0.5")
    assert result.returncode == 2, result.stdout
    assert site.current() is None and not (site.base / "current").exists()
    assert site.events()[-1].startswith("stop ")


def test_rollback_returns_to_previous_release(site: Site) -> None:
    """rollback.sh goes to the previous release, refuses when none is left, and accepts a named release."""
    first = deploy_ok(site, "1.0")
    second = deploy_ok(site, "1.1")

    back = site.rollback()
    assert back.returncode == 0, back.stdout
    assert site.current() == first
    assert site.healthz()["version"] == "1.0"
    assert site.history()[-1][1:] == ["rollback", first, second]
    assert re.search(r"rolled back to \S+ \(status=ok\) in \d+\.\d\d s end to end", back.stdout)

    # The release we just left is bad: a second rollback must not bounce back to it.
    again = site.rollback()
    assert again.returncode == 1 and "no previous release" in again.stdout
    assert site.current() == first

    listed = site.rollback("--list")
    assert listed.stdout.splitlines() == [f"{first} (active)", second]

    named = site.rollback(second)
    assert named.returncode == 0, named.stdout
    assert site.current() == second and site.healthz()["version"] == "1.1"

    missing = site.rollback("20000101_000000_deadbee")
    assert missing.returncode == 1 and "not a deployed release" in missing.stdout
    assert site.current() == second


def test_pruning_keeps_n_and_never_deletes_active_or_previous(site: Site) -> None:
    """KEEP=2 leaves exactly two releases: the active one and the previous one, even when that one is the oldest."""
    a = deploy_ok(site, "1.0", KEEP="5")
    b = deploy_ok(site, "1.1", KEEP="5")
    assert site.rollback().returncode == 0
    assert site.current() == a
    c = deploy_ok(site, "1.2", KEEP="2")
    # Newest-first would keep c and b; the previous release a must survive instead.
    assert site.releases() == [a, c]
    assert b not in site.releases()

    d = deploy_ok(site, "1.3", KEEP="2")
    assert site.releases() == [c, d]


def test_concurrent_deploys_one_refuses(site: Site, tmp_path: Path) -> None:
    """While one deploy holds the lock, a second deploy and a rollback refuse (exit 3) without touching anything."""
    site.repo.commit_release("1.0")
    started, gate = tmp_path / "check-started", tmp_path / "check-gate"
    first = subprocess.Popen(
        [str(harness.DEPLOY_SH)],
        env=site.env(STANDIN_CHECK_STARTED=str(started), STANDIN_CHECK_GATE=str(gate)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert first.poll() is None and time.monotonic() < deadline, "first deploy never reached its smoke test"
            time.sleep(0.02)
        building = site.releases()
        assert len(building) == 1

        second = site.deploy()
        assert second.returncode == 3, second.stdout
        assert "another deploy or rollback is running" in second.stdout
        rollback = site.rollback()
        assert rollback.returncode == 3, rollback.stdout
        assert site.releases() == building and site.current() is None
    finally:
        gate.touch()
        output, _ = first.communicate(timeout=harness.SCRIPT_TIMEOUT)
    assert first.returncode == 0, output
    assert site.current() == building[0]


def run_reader(site: Site, tmp_path: Path, switch: Callable[[], object]) -> dict[str, object]:
    """Runs READER against BASE/current while `switch()` runs; returns the reader's counts."""
    ready, stop = tmp_path / "reader-ready", tmp_path / "reader-stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(site.base / "current"), str(ready), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert reader.poll() is None and time.monotonic() < deadline, "reader did not start"
            time.sleep(0.01)
        switch()
    finally:
        stop.touch()
        output, _ = reader.communicate(timeout=30)
    counts: dict[str, object] = json.loads(output)
    return counts


def test_switch_is_atomic_for_readers(site: Site, tmp_path: Path) -> None:
    """A reader resolving `current` in a loop during 50 rollback.sh switches never sees it missing or dangling."""
    a = site.fake_release("20250101_000000_aaaaaaa", activate=True)
    b = site.fake_release("20250101_000001_bbbbbbb")

    def switch_50_times() -> None:
        # Only the switch is under test here: `true` as service manager, a /healthz that is always ok.
        with harness.ok_health_server() as health_url:
            for i in range(50):
                target = b if i % 2 == 0 else a
                result = site.rollback(target, SYSTEMCTL="true", HEALTH_URL=health_url)
                assert result.returncode == 0, result.stdout
                assert site.current() == target

    counts = run_reader(site, tmp_path, switch_50_times)
    assert counts["failures"] == 0, counts
    assert counts["targets"] == 2, counts
    assert len([line for line in site.history() if line[1] == "rollback"]) == 50


def test_reader_catches_a_non_atomic_switch(site: Site, tmp_path: Path) -> None:
    """Control for the atomicity test: the same reader does see the gap of a naive `rm` + `ln -s` switch."""
    a = site.fake_release("20250101_000000_aaaaaaa", activate=True)
    naive = f'cd "{site.base}" && for i in $(seq 200); do rm -f current; ln -s releases/{a} current; done'
    counts = run_reader(site, tmp_path, lambda: subprocess.run(["bash", "-c", naive], check=True))
    assert isinstance(counts["failures"], int) and counts["failures"] > 0, counts


def shellcheck_or_skip() -> str:
    """Path of shellcheck; a skip when it is missing, a failure when missing in CI."""
    found = shutil.which("shellcheck")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("shellcheck is not installed (apt-get install shellcheck); CI must run this check")
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    return found


def test_scripts_pass_shellcheck() -> None:
    """`shellcheck deploy.sh rollback.sh` reports nothing, and rollback.sh is also clean on its own with -x."""
    shellcheck = shellcheck_or_skip()
    for args in (["deploy.sh", "rollback.sh"], ["-x", "rollback.sh"]):
        result = subprocess.run(
            [shellcheck, *args], cwd=harness.PROJECT_ROOT, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
    for script in (harness.DEPLOY_SH, harness.ROLLBACK_SH):
        assert "set -euo pipefail" in script.read_text()
        assert os.access(script, os.X_OK)


def verify_unit(text: str, root: Path) -> subprocess.CompletedProcess[str]:
    """Runs systemd-analyze verify on the unit with /home/marketing moved to ROOT, where the paths exist."""
    executable = root / "current" / ".venv" / "bin" / "marketingbot"
    executable.parent.mkdir(parents=True, exist_ok=True)
    executable.write_text("#!/bin/sh\nexit 0\n")
    executable.chmod(0o755)
    (root / "shared" / "data").mkdir(parents=True, exist_ok=True)
    (root / "shared" / ".env").write_text("")
    unit = root / "marketingbot.service"
    unit.write_text(text.replace("/home/marketing", str(root)))
    return subprocess.run(
        ["systemd-analyze", "verify", str(unit)], cwd=root, capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not available")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd-analyze verify accepts the unit without a single warning, and does flag an injected mistake."""
    text = harness.UNIT_FILE.read_text()
    clean = verify_unit(text, tmp_path / "clean")
    assert clean.returncode == 0 and clean.stdout + clean.stderr == "", clean.stdout + clean.stderr

    broken = verify_unit(text.replace("Restart=always", "Restart=sometimes"), tmp_path / "broken")
    assert "sometimes" in broken.stdout + broken.stderr


def test_unit_has_the_settings_deploy_relies_on() -> None:
    """The unit restarts through `current`, reads shared/.env, stops with SIGTERM and a grace period, is hardened."""
    lines = set(harness.UNIT_FILE.read_text().splitlines())
    for expected in (
        "Restart=always",
        "WorkingDirectory=/home/marketing/current",
        "ExecStart=/home/marketing/current/.venv/bin/marketingbot run",
        "EnvironmentFile=/home/marketing/shared/.env",
        "User=marketing",
        "KillSignal=SIGTERM",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "ReadWritePaths=/home/marketing/shared/data",
    ):
        assert expected in lines, expected
    assert any(re.fullmatch(r"TimeoutStopSec=\d+", line) for line in lines)
    assert any(re.fullmatch(r"RestartSec=\d+", line) for line in lines)


# -- zero-downtime slots (DEPLOY_LAYOUT=slots) with the stand-in ------------------------------------------


def start_held_socket(site: Site) -> int:
    """What `systemctl enable --now marketingbot.socket` does once per server; returns the holder's pid."""
    (site.base / "shared" / "data").mkdir(exist_ok=True)
    started = subprocess.run(
        [sys.executable, str(harness.FAKE_SYSTEMCTL), "start", "marketingbot.socket"],
        env=site.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    return int((site.state / "marketingbot.socket.pid").read_text())


def slot_healthz(site: Site, slot: str) -> dict[str, object] | None:
    """/healthz on the slot's own unix socket; None when nothing answers there."""
    sock = site.base / "shared" / "data" / f"slot-{slot}.sock"
    probe = (
        "import http.client, socket, sys\n"
        "class C(http.client.HTTPConnection):\n"
        "    def connect(self):\n"
        "        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(sys.argv[1])\n"
        "c = C('localhost', timeout=5); c.request('GET', '/healthz'); print(c.getresponse().read().decode())\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(sock)], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        return None
    body: dict[str, object] = json.loads(done.stdout)
    return body


@pytest.fixture
def slot_site(site: Site) -> Iterator[Site]:
    """A site in the slot layout with the held socket; slots and socket are stopped afterwards."""
    start_held_socket(site)
    yield site
    for unit in ("marketingbot@blue", "marketingbot@green", "marketingbot.socket"):
        subprocess.run(
            [sys.executable, str(harness.FAKE_SYSTEMCTL), "stop", unit], env=site.env(), capture_output=True, timeout=60
        )


def slot_deploy(site: Site, version: str, **behaviour: bool) -> subprocess.CompletedProcess[str]:
    """Commits a stand-in release and runs deploy.sh in the slot layout."""
    site.repo.commit_release(version, **behaviour)
    result: subprocess.CompletedProcess[str] = site.deploy(DEPLOY_LAYOUT="slots", HEALTH_TIMEOUT="5", LEASE_TIMEOUT="3")
    return result


def test_slots_alternate_on_one_held_socket(slot_site: Site) -> None:
    """Deploys go blue → green → (rollback) blue: the new slot starts before the old one stops, `current`
    switches in between, the lease moves, and the port is the same socket throughout."""
    site = slot_site
    holder = int((site.state / "marketingbot.socket.pid").read_text())
    first = slot_deploy(site, "1.0")
    assert first.returncode == 0, first.stdout
    one = site.current()
    assert (site.base / "slots" / "blue").resolve() == site.base / "releases" / str(one)
    assert site.healthz()["version"] == "1.0" and slot_healthz(site, "blue") is not None

    second = slot_deploy(site, "1.1")
    assert second.returncode == 0, second.stdout
    two = site.current()
    assert re.search(r"lease moved: slot green \(\S+\) is the leader", second.stdout), second.stdout
    events = [e for e in site.events() if not e.startswith(("reset-failed", "enable", "disable"))]
    assert events[-2].startswith(f"start marketingbot@green {site.base / 'releases' / str(two)} ")
    assert events[-1].startswith("stop marketingbot@blue ")
    lines = second.stdout.splitlines()
    order = [
        next(i for i, line in enumerate(lines) if text in line)
        for text in ("slot green is ready", "switched current", "stopping marketingbot@blue", "lease moved")
    ]
    assert order == sorted(order), second.stdout
    assert slot_healthz(site, "blue") is None
    green = slot_healthz(site, "green")
    assert green is not None and green["role"] == "leader" and green["version"] == "1.1"
    assert site.healthz()["version"] == "1.1"

    back = site.rollback(DEPLOY_LAYOUT="slots", HEALTH_TIMEOUT="5", LEASE_TIMEOUT="3")
    assert back.returncode == 0, back.stdout
    assert site.current() == one
    assert "rolled back to" in back.stdout and "zero-downtime hand-over" in back.stdout
    blue = slot_healthz(site, "blue")
    assert blue is not None and blue["role"] == "leader" and blue["version"] == "1.0"
    assert slot_healthz(site, "green") is None
    assert [line[1:] for line in site.history()] == [["deploy", one, "-"], ["deploy", two, one], ["rollback", one, two]]
    assert int((site.state / "marketingbot.socket.pid").read_text()) == holder  # never re-bound


def test_slots_release_never_ready_is_never_switched_in(slot_site: Site) -> None:
    """A release whose slot never answers ok is stopped again; `current`, the live slot and its lease stay."""
    site = slot_site
    good = slot_deploy(site, "1.0")
    assert good.returncode == 0, good.stdout
    live = site.current()
    bad = slot_deploy(site, "1.1-unhealthy", healthy=False)
    assert bad.returncode == 1, bad.stdout
    assert "did not become ready" in bad.stdout and "running release is untouched" in bad.stdout
    assert site.current() == live
    blue = slot_healthz(site, "blue")
    assert blue is not None and blue["role"] == "leader" and blue["version"] == "1.0"
    assert slot_healthz(site, "green") is None
    assert [line[1] for line in site.history()] == ["deploy"]
    assert site.healthz()["version"] == "1.0"


def test_slots_release_that_never_takes_the_lease_is_switched_back(slot_site: Site) -> None:
    """A release that serves but never takes the leader lease is switched back the same way (exit 2): the
    old release runs and leads again, and is "previous" no more for the failed one."""
    site = slot_site
    good = slot_deploy(site, "1.0")
    assert good.returncode == 0, good.stdout
    live = site.current()
    stuck = slot_deploy(site, "1.1-no-lease", leads=False)
    assert stuck.returncode == 2, stuck.stdout
    assert "did not take the leader lease" in stuck.stdout and "switched back" in stuck.stdout
    assert site.current() == live
    blue = slot_healthz(site, "blue")
    assert blue is not None and blue["role"] == "leader" and blue["version"] == "1.0"
    assert slot_healthz(site, "green") is None
    failed = [name for name in site.releases() if name != live]
    assert [line[1:] for line in site.history()[-2:]] == [
        ["deploy", failed[0], live],
        ["auto-rollback", live, failed[0]],
    ]


def test_slot_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """marketingbot.socket and marketingbot@blue.service verify without a warning, and the slot unit runs
    the slot's release on the held socket with its own probe socket and the shared lease."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not available")
    root = tmp_path / "home"
    for rel in ("slots/blue/.venv/bin", "current/.venv/bin"):
        executable = root / rel / "marketingbot"
        executable.parent.mkdir(parents=True)
        executable.write_text("#!/bin/sh\nexit 0\n")
        executable.chmod(0o755)
    (root / "shared").mkdir()
    (root / "shared" / ".env").write_text("")
    units = tmp_path / "units"
    units.mkdir()
    for name in ("marketingbot.socket", "marketingbot@.service", "marketingbot.service"):
        text = (harness.PROJECT_ROOT / name).read_text().replace("/home/marketing", str(root))
        (units / name).write_text(text)
    (units / "marketingbot@blue.service").write_text((units / "marketingbot@.service").read_text())
    checked = subprocess.run(
        ["systemd-analyze", "verify", "marketingbot.socket", "marketingbot@blue.service"],
        cwd=units,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0 and checked.stdout + checked.stderr == "", checked.stdout + checked.stderr
    lines = set((harness.PROJECT_ROOT / "marketingbot@.service").read_text().splitlines())
    for expected in (
        "Sockets=marketingbot.socket",
        "WorkingDirectory=/home/marketing/slots/%i",
        "ExecStart=/home/marketing/slots/%i/.venv/bin/marketingbot run",
        "Environment=SLOT=%i",
        "Environment=SLOT_SOCKET=/home/marketing/shared/data/slot-%i.sock",
        "Environment=LEADER_LOCK_FILE=/home/marketing/shared/data/leader.lock",
        "KillSignal=SIGTERM",
        "NoNewPrivileges=yes",
        "ReadWritePaths=/home/marketing/shared",
    ):
        assert expected in lines, expected


def test_slots_deploy_interrupted_after_switch_hands_back(slot_site: Site) -> None:
    """Ctrl-C while deploy.sh waits for the lease to move hands over back to the old release before exiting."""
    site = slot_site
    good = slot_deploy(site, "1.0")
    assert good.returncode == 0, good.stdout
    live = site.current()
    site.repo.commit_release("1.1-no-lease", leads=False)
    deploy = subprocess.Popen(
        [str(harness.DEPLOY_SH)],
        env=site.env(DEPLOY_LAYOUT="slots", HEALTH_TIMEOUT="5", LEASE_TIMEOUT="60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while site.current() == live or slot_healthz(site, "blue") is not None:
            assert deploy.poll() is None and time.monotonic() < deadline, "the old slot was never stopped"
            time.sleep(0.05)
        os.killpg(deploy.pid, signal.SIGINT)
        output, _ = deploy.communicate(timeout=harness.SCRIPT_TIMEOUT)
    finally:
        if deploy.poll() is None:
            deploy.kill()
    assert deploy.returncode == 2, output
    assert "stopped after the switch" in output and "switched back" in output
    assert site.current() == live
    blue = slot_healthz(site, "blue")
    assert blue is not None and blue["role"] == "leader" and blue["version"] == "1.0"
    assert slot_healthz(site, "green") is None


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not available")
def test_worker_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """deploy/marketingbot-worker.service is accepted without a warning and runs `marketingbot worker` sandboxed."""
    text = (harness.PROJECT_ROOT / "deploy" / "marketingbot-worker.service").read_text()
    assert "ExecStart=/home/marketing/current/.venv/bin/marketingbot worker --interval 10" in text
    assert "ReadWritePaths=/home/marketing/shared" in text
    assert "Environment=DATA_DIR=/home/marketing/shared/data" in text
    clean = verify_unit(text, tmp_path / "worker")
    assert clean.returncode == 0 and clean.stdout + clean.stderr == "", clean.stdout + clean.stderr


def _tiny_wheel(folder: Path, name: str = "tinydep", version: str = "1.0") -> Path:
    """A minimal pure-Python wheel (what the lock pins in this test)."""
    import base64
    import hashlib
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": "VALUE = 1\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, content in files.items():
            zf.writestr(path, content)
            digest = base64.urlsafe_b64encode(hashlib.sha256(content.encode()).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(content.encode())}")
        record.append(f"{info}/RECORD,,")
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


def test_release_installs_from_its_hashed_lock_and_a_tampered_package_is_refused(site: Site, tmp_path: Path) -> None:
    """With requirements.lock, deploy.sh installs each package only if its sha256 matches; a mismatch fails
    the build and nothing is switched."""
    import hashlib

    wheels = tmp_path / "wheels"
    wheel = _tiny_wheel(wheels)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    lock = site.repo.path / "requirements.lock"
    lock.write_text(f"tinydep==1.0 \\\n    --hash=sha256:{digest}\n")
    site.repo.git("add", "requirements.lock")
    pip_opts = f"--no-index --no-cache-dir --find-links {wheels}"
    good = deploy_ok(site, "1.0", DEPLOY_PIP_OPTS=pip_opts)
    output = (site.base / "releases" / good / ".venv").glob("lib/python*/site-packages/tinydep.py")
    assert list(output), "the locked package was not installed"

    lock.write_text(f"tinydep==1.0 \\\n    --hash=sha256:{'0' * 64}\n")
    site.repo.git("add", "requirements.lock")
    site.repo.commit_release("1.1-tampered")
    bad = site.deploy(DEPLOY_PIP_OPTS=pip_opts)
    assert bad.returncode == 1, bad.stdout
    assert "--require-hashes" in bad.stdout and "DO NOT MATCH THE HASHES" in bad.stdout
    assert site.current() == good and site.releases() == [good]
