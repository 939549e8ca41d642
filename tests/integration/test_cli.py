"""The `marketingbot` command: sheets init/dump/set and check, run as a real subprocess on a local store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run(tmp: Path, *args: str, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "GEMINI_", "SHEETS_", "GOOGLE_"))}
    env.update(LOCAL_DB_PATH=str(tmp / "data" / "sheets.db"), PYTHONPATH=str(ROOT), WEB_PORT=str(_free_port()))
    env.update(extra)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def initialized_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory after one real `sheets init` (run once per module: each subprocess costs seconds)."""
    template = tmp_path_factory.mktemp("initialized-store")
    res = _run(template, "sheets", "init")
    assert res.returncode == 0, res.stderr
    assert "Обращения" in res.stdout
    return template


@pytest.fixture
def workdir(tmp_path: Path, initialized_store: Path) -> Path:
    """tmp_path holding its own copy of a freshly initialized store (tests write to it)."""
    shutil.copytree(initialized_store / "data", tmp_path / "data")
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


def test_check_lists_every_item_and_names_sheets_init_on_an_empty_store(
    workdir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`check` prints one ✔/✖ line per item; the sheets hold after `sheets init`, an empty store names the fix."""
    done = _run(workdir, "check", "--skip", "worker")
    lines = done.stdout.splitlines()
    assert "✔ every sheet and header" in done.stdout and "✔ analytics worker" in done.stdout
    assert all(line[0] in "✔✖" for line in lines[:-1]) and len(lines) >= 11
    # No bot token, no WEBAPP_URL, no staff chat in this bare configuration: not ready, exit 1.
    assert done.returncode == 1 and "✖ bot token" in done.stdout
    empty = _run(tmp_path_factory.mktemp("empty"), "check")
    assert empty.returncode == 1 and "✖ every sheet and header" in empty.stdout and "sheets init" in empty.stdout


def test_bad_configuration_exits_2_naming_every_variable(tmp_path: Path) -> None:
    """Every bad variable is reported at once, in plain words, one line each; exit 2."""
    env_file = tmp_path / ".env"
    env_file.write_text("ADMIN_TELEGRAM_IDS=abc\nSTAFF_CHAT_ID=12x\nSHEETS_BACKEND=excel\n", encoding="utf-8")
    res = _run(tmp_path, "sheets", "init", WEB_PORT="abc")
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        'ADMIN_TELEGRAM_IDS: "abc" is not a list of Telegram IDs (numbers separated by commas)',
        'STAFF_CHAT_ID: "12x" is not a whole number',
        "SHEETS_BACKEND: \"excel\" must be one of 'google' or 'local'",
        'WEB_PORT: "abc" is not a whole number',
    ]


@pytest.mark.parametrize("case", ["under a file", "a directory", "not a database"])
def test_bad_local_db_path_is_one_line(tmp_path: Path, case: str) -> None:
    """A LOCAL_DB_PATH that cannot be created, is a directory or is not a database: one line naming it,
    no traceback, exit 2."""
    (tmp_path / "afile").write_text("x")
    (tmp_path / "notes.db").write_text("not a database")
    path = {
        "under a file": tmp_path / "afile" / "db" / "x.db",
        "a directory": tmp_path,
        "not a database": tmp_path / "notes.db",
    }[case]
    res = _run(tmp_path, "local", LOCAL_DB_PATH=str(path))
    assert res.returncode == 2 and len(res.stderr.splitlines()) == 1, res.stderr
    assert res.stderr.startswith("LOCAL_DB_PATH: ") and "Traceback" not in res.stderr


def test_busy_port_is_one_line_naming_web_port(tmp_path: Path) -> None:
    """A second server on a taken port exits 2 within seconds with one line naming WEB_PORT."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = _run(tmp_path, "local", WEB_PORT=str(port), timeout=20)
    assert (
        res.returncode == 2
        and res.stderr.strip()
        == f"WEB_PORT: port {port} on 127.0.0.1 is already in use (is another marketingbot running?)"
    )


TOKEN = "7012345678:AAH1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvWx"


@pytest.mark.parametrize(
    ("token", "words"),
    [
        (None, "TELEGRAM_BOT_TOKEN: not set"),
        ("123:abc", "TELEGRAM_BOT_TOKEN: 123:**** is not a bot token"),
        ("000000:local-dev", "TELEGRAM_BOT_TOKEN: is the local development token"),
    ],
)
def test_run_refuses_without_a_real_token(workdir: Path, token: str | None, words: str) -> None:
    """`run` without a real bot token exits 2 with one line naming TELEGRAM_BOT_TOKEN (secret masked)."""
    extra = {"TELEGRAM_BOT_TOKEN": token} if token else {}
    res = _run(workdir, "run", SHEETS_BACKEND="local", **extra)
    assert res.returncode == 2 and res.stderr.splitlines() == [res.stderr.strip()], res.stderr
    assert res.stderr.startswith(words) and "abc" not in res.stderr


def test_run_requires_sheets_backend_explicitly(workdir: Path) -> None:
    """Forgetting SHEETS_BACKEND never runs production on the local store: exit 2 naming it."""
    res = _run(workdir, "run", TELEGRAM_BOT_TOKEN=TOKEN)
    assert res.returncode == 2 and res.stderr.startswith("SHEETS_BACKEND: not set"), res.stderr


def test_run_refuses_a_store_without_its_sheets(tmp_path: Path) -> None:
    """`run` on a store lacking the sheets exits 2 with one line naming them and `marketingbot sheets init`."""
    res = _run(tmp_path, "run", TELEGRAM_BOT_TOKEN=TOKEN, SHEETS_BACKEND="local", timeout=60)
    assert res.returncode == 2 and len(res.stderr.splitlines()) == 1, res.stderr
    assert "«Очередь»" in res.stderr and "marketingbot sheets init" in res.stderr


async def test_cli_writes_while_the_bot_writes_the_same_store(tmp_path: Path) -> None:
    """The CLI (another process) and a running gateway write the same local file at once; nothing is lost."""
    import asyncio

    from gateway import GatewayConfig, build_gateway
    from gateway.schemas import APPEALS, AppealCol

    gw = build_gateway(GatewayConfig(backend="local", local_db_path=tmp_path / "data" / "sheets.db"))
    await gw.start()
    await gw.ensure_sheets()
    try:
        table = gw.table(APPEALS)

        async def bot_writes() -> None:
            for i in range(30):
                await table.write([table.op_append_text(str(1000 + i), AppealCol.LOG, f"bot {i}")])

        cli = [asyncio.to_thread(_run, tmp_path, "sheets", "set", "Архив", f"A{r}", f"cli {r}") for r in range(2, 7)]
        results = await asyncio.gather(bot_writes(), *cli)
        assert all(r.returncode == 0 for r in results[1:]), [r.stderr for r in results[1:]]
        rows = {r[AppealCol.TELEGRAM_ID]: r[AppealCol.LOG] for r in await table.all()}
        assert rows == {str(1000 + i): f"bot {i}" for i in range(30)}
        archive = json.loads(_run(tmp_path, "sheets", "dump", "Архив", "--format", "json").stdout)
        assert [row[0] for row in archive[1:]] == [f"cli {r}" for r in range(2, 7)]
    finally:
        await gw.close()


def test_port_taken_after_the_preflight_stops_cleanly_within_seconds(tmp_path: Path) -> None:
    """If the port is taken between the preflight and the bind, the app stops cleanly (no hang holding the
    store open) and reports the port."""
    import socket

    script = (
        "import asyncio, sys\n"
        "from bot.config import load_settings\n"
        "from bot.lifecycle import PortUnavailable, run_application\n"
        "settings = load_settings(sheets_backend='local', web_port=int(sys.argv[1]))\n"
        "try:\n"
        "    asyncio.run(run_application(settings, local=True))\n"
        "except PortUnavailable as exc:\n"
        "    print(exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "GEMINI_", "SHEETS_", "GOOGLE_"))}
    env.update(LOCAL_DB_PATH=str(tmp_path / "data" / "sheets.db"), PYTHONPATH=str(ROOT))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = subprocess.run(
            [sys.executable, "-c", script, str(port)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"WEB_PORT: cannot listen on 127.0.0.1:{port} (is another marketingbot running?)"
    assert "MarketingBot stopped" in res.stderr  # the gateway and the store were closed


def test_run_reports_bad_values_and_production_needs_together(tmp_path: Path) -> None:
    """`run` lists the bad values and the missing production settings in one go, one line per variable."""
    res = _run(tmp_path, "run", ADMIN_TELEGRAM_IDS="abc", TELEGRAM_BOT_TOKEN="not-a-token")
    assert res.returncode == 2
    names = [line.split(":", 1)[0] for line in res.stderr.splitlines()]
    assert names == ["TELEGRAM_BOT_TOKEN", "ADMIN_TELEGRAM_IDS", "SHEETS_BACKEND"], res.stderr
    assert "not-a-token" not in res.stderr
