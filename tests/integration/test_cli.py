"""The `marketingbot` command: sheets init/dump/set and check, run as a real subprocess on a local store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "GEMINI_", "SHEETS_", "GOOGLE_"))}
    env.update(LOCAL_DB_PATH=str(tmp / "data" / "sheets.db"), PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    res = _run(tmp_path, "sheets", "init")
    assert res.returncode == 0, res.stderr
    assert "Обращения" in res.stdout
    return tmp_path


def test_set_then_dump_json_round_trips_verbatim(workdir: Path) -> None:
    """`sheets set` stores a formula-looking value verbatim and `sheets dump --format json` shows it at row 2."""
    assert _run(workdir, "sheets", "set", "Обращения", "D2", "555").returncode == 0
    assert _run(workdir, "sheets", "set", "обращения", "g2", '=IMPORTXML("http://x","//a")').returncode == 0
    res = _run(workdir, "sheets", "dump", "Обращения", "--format", "json")
    rows = json.loads(res.stdout)
    assert rows[0][:4] == ["Дата", "Код партнера", "ФИО", "Telegram ID"]
    assert rows[1][3] == "555" and rows[1][6] == '=IMPORTXML("http://x","//a")'


def test_dump_csv_and_unknown_sheet(workdir: Path) -> None:
    """CSV dump starts with the header; an unknown sheet exits 1 listing the real ones."""
    res = _run(workdir, "sheets", "dump", "Auth")
    assert res.returncode == 0 and res.stdout.startswith("Код партнера,Телефон,ФИО,STATUS")
    bad = _run(workdir, "sheets", "dump", "Nope")
    assert bad.returncode == 1 and "no sheet 'Nope'" in bad.stderr and "Очередь" in bad.stderr


def test_set_rejects_a_range(workdir: Path) -> None:
    """`sheets set` writes one cell only."""
    res = _run(workdir, "sheets", "set", "Auth", "A1:B2", "x")
    assert res.returncode == 1 and "not one cell" in res.stderr


def test_check_passes_on_initialized_store_and_fails_on_empty(
    workdir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`check` exits 0 after `sheets init`, and 1 with a clear message on a store without sheets."""
    ok = _run(workdir, "check")
    assert ok.returncode == 0, ok.stderr
    empty = _run(tmp_path_factory.mktemp("empty"), "check")
    assert empty.returncode == 1 and "sheets init" in empty.stderr


def test_bad_configuration_exits_1_naming_the_variable(tmp_path: Path) -> None:
    """A bad variable stops the command at start with its name."""
    env_file = tmp_path / ".env"
    env_file.write_text("WEB_PORT=abc\n", encoding="utf-8")
    res = _run(tmp_path, "check")
    assert res.returncode == 1 and "WEB_PORT" in res.stderr


async def test_cli_writes_while_the_bot_writes_the_same_store(tmp_path: Path) -> None:
    """The CLI (another process) and a running gateway write the same local file at once; nothing is lost."""
    import asyncio

    from gateway.factory import GatewayConfig, build_gateway
    from gateway.schemas import APPEALS, AppealCol

    gw = build_gateway(GatewayConfig(backend="local", local_db_path=tmp_path / "data" / "sheets.db"))
    await gw.start()
    await gw.ensure_sheets()
    try:
        table = gw.table(APPEALS)

        async def bot_writes() -> None:
            for i in range(30):
                await table.append_text(str(1000 + i), AppealCol.LOG, f"bot {i}")

        cli = [asyncio.to_thread(_run, tmp_path, "sheets", "set", "Архив", f"A{r}", f"cli {r}") for r in range(2, 7)]
        results = await asyncio.gather(bot_writes(), *cli)
        assert all(r.returncode == 0 for r in results[1:]), [r.stderr for r in results[1:]]
        rows = {r[AppealCol.TELEGRAM_ID]: r[AppealCol.LOG] for r in await table.all()}
        assert rows == {str(1000 + i): f"bot {i}" for i in range(30)}
        archive = json.loads(_run(tmp_path, "sheets", "dump", "Архив", "--format", "json").stdout)
        assert [row[0] for row in archive[1:]] == [f"cli {r}" for r in range(2, 7)]
    finally:
        await gw.close()
