"""Security review findings (issue 12) in the `marketingbot` command, run as a real subprocess."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.telegram_server import FakeTelegramServer

ROOT = Path(__file__).resolve().parents[2]
# A well-formed token the fake Bot API does not know: Telegram answers 401, PTB raises InvalidToken.
WRONG_TOKEN = "987654:AAwrong-token-that-must-never-be-printed"


def run_cli(tmp: Path, *args: str, timeout: float = 60, **env_vars: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m bot ARGS` in `tmp` with a local store and the given environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "GEMINI_", "SHEETS_", "GOOGLE_"))}
    env.update(LOCAL_DB_PATH=str(tmp / "data" / "sheets.db"), PYTHONPATH=str(ROOT), **env_vars)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.org"])
def test_local_refuses_a_non_loopback_web_host(tmp_path: Path, host: str) -> None:
    """`marketingbot local` with a non-loopback WEB_HOST exits 2 at once with one line naming WEB_HOST."""
    res = run_cli(tmp_path, "local", timeout=20, WEB_HOST=host, WEB_PORT="1")
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "WEB_HOST" in lines[0], res.stderr


def test_check_never_prints_the_bot_token(tmp_path: Path, telegram_server: FakeTelegramServer) -> None:
    """`check` with a token Telegram rejects reports the failure without the token (PTB's InvalidToken has it)."""
    assert run_cli(tmp_path, "sheets", "init").returncode == 0
    res = run_cli(tmp_path, "check", TELEGRAM_BOT_TOKEN=WRONG_TOKEN, TELEGRAM_API_BASE_URL=telegram_server.api_base_url)
    assert res.returncode == 1
    out = res.stdout + res.stderr
    assert "telegram" in out.lower()
    assert WRONG_TOKEN not in out and WRONG_TOKEN.split(":")[1] not in out


FORMULA_LIKE = ['=HYPERLINK("http://x")', "+7 916", "-2+3", "@SUM(A1)", "\tx"]


@pytest.fixture(scope="module")
def dumped(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[list[str]], list[list[str]]]:
    """One store with FORMULA_LIKE[i] set in Обращения E(i+2) by `sheets set`, dumped once as CSV and once as
    JSON (one set of subprocesses for every value: each costs seconds)."""
    tmp = tmp_path_factory.mktemp("formula-like")
    assert run_cli(tmp, "sheets", "init").returncode == 0
    for row, value in enumerate(FORMULA_LIKE, start=2):
        res = run_cli(tmp, "sheets", "set", "Обращения", f"E{row}", "--", value)
        assert res.returncode == 0, res.stderr
    res = run_cli(tmp, "sheets", "dump", "Обращения")
    assert res.returncode == 0, res.stderr
    raw = run_cli(tmp, "sheets", "dump", "Обращения", "--format", "json")
    assert raw.returncode == 0, raw.stderr
    return list(csv.reader(io.StringIO(res.stdout))), json.loads(raw.stdout)


@pytest.mark.parametrize("row", range(2, 2 + len(FORMULA_LIKE)), ids=FORMULA_LIKE)
def test_csv_dump_escapes_cells_a_spreadsheet_would_evaluate(
    dumped: tuple[list[list[str]], list[list[str]]], row: int
) -> None:
    """`sheets dump --format csv` prefixes cells starting with = + - @ or tab with a quote; JSON stays verbatim."""
    value = FORMULA_LIKE[row - 2]
    csv_rows, json_rows = dumped
    assert csv_rows[row - 1][4] == "'" + value
    assert json_rows[row - 1][4] == value


def test_run_failing_at_start_prints_no_token(tmp_path: Path, telegram_server: FakeTelegramServer) -> None:
    """`run` with a token Telegram rejects exits non-zero, and neither its log nor its traceback shows the token."""
    from tests.local_stack import free_port

    assert run_cli(tmp_path, "sheets", "init").returncode == 0
    res = run_cli(
        tmp_path,
        "run",
        timeout=60,
        SHEETS_BACKEND="local",
        TELEGRAM_BOT_TOKEN=WRONG_TOKEN,
        TELEGRAM_API_BASE_URL=telegram_server.api_base_url,
        WEB_PORT=str(free_port()),
        AI_PROVIDER="offline",
    )
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "InvalidToken" in out or "rejected" in out, out[-2000:]
    assert WRONG_TOKEN.split(":")[1] not in out, out[-2000:]
