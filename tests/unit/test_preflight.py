"""`marketingbot run`'s refusals before anything is opened: token, SHEETS_BACKEND, data directory, port."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bot.config import Settings
from bot.ops.preflight import data_dir_problems, mask_token, port_problems, production_problems, token_problems

REAL = "7012345678:AAH1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvWx"


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (None, "TELEGRAM_BOT_TOKEN: not set"),
        ("000000:local-dev", "TELEGRAM_BOT_TOKEN: is the local development token"),
        ("123456:short", "TELEGRAM_BOT_TOKEN: 123456:**** is not a bot token"),
        ("1:" + "a" * 40, "TELEGRAM_BOT_TOKEN: 1:**** is not a bot token"),
    ],
)
def test_token_refusals_name_the_variable_and_mask_the_secret(tmp_path: Path, token: str | None, expected: str) -> None:
    """Absent, dev or malformed tokens are refused in one line; the secret part never appears."""
    (line,) = token_problems(_settings(tmp_path, telegram_bot_token=token))
    assert line.startswith(expected) and "short" not in line and "aaaa" not in line


def test_a_real_token_passes(tmp_path: Path) -> None:
    """A token of BotFather's shape is accepted."""
    assert token_problems(_settings(tmp_path, telegram_bot_token=REAL)) == []


def test_a_custom_dev_token_is_refused_too(tmp_path: Path) -> None:
    """The configured LOCAL_DEV_BOT_TOKEN is a dev token whatever its shape."""
    s = _settings(tmp_path, telegram_bot_token=REAL, local_dev_bot_token=REAL)
    assert token_problems(s)[0].startswith("TELEGRAM_BOT_TOKEN: is the local development token")


def test_mask_keeps_only_the_bot_id() -> None:
    """The bot id is public, the rest is a secret."""
    assert mask_token(REAL) == "7012345678:****" and mask_token("garbage") == "****"


def test_run_requires_sheets_backend_explicitly(tmp_path: Path) -> None:
    """No SHEETS_BACKEND → refused; an explicit `local` is a deliberate choice and accepted."""
    implicit = production_problems(_settings(tmp_path, telegram_bot_token=REAL))
    assert [p.split(":")[0] for p in implicit] == ["SHEETS_BACKEND"]
    assert production_problems(_settings(tmp_path, telegram_bot_token=REAL, sheets_backend="local")) == []


def test_unwritable_data_dir_is_one_line(tmp_path: Path) -> None:
    """A data directory that cannot be created or written is refused naming the variable."""
    (tmp_path / "f").write_text("x")
    # model_construct: the settings validator would refuse this path already; the preflight must too.
    s = Settings.model_construct(local_db_path=tmp_path / "f" / "x.db")
    (line,) = data_dir_problems(s)
    assert line.startswith(f"LOCAL_DB_PATH: cannot write in {tmp_path / 'f'}")


def test_busy_port_names_web_port() -> None:
    """A taken port → one line naming WEB_PORT; a free one → nothing."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert port_problems("127.0.0.1", port) == [
            f"WEB_PORT: port {port} on 127.0.0.1 is already in use (is another marketingbot running?)"
        ]
    assert port_problems("127.0.0.1", port) == []


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "is not JSON"),
        ('{"installed": {"client_id": "x"}}', "is not a service-account key"),
        ('{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----"}', None),
    ],
)
def test_credentials_file_must_be_a_service_account_key(tmp_path: Path, content: str, words: str | None) -> None:
    """`run` refuses an OAuth client file or garbage as GOOGLE_CREDENTIALS_FILE, naming the variable."""
    key = tmp_path / "credentials.json"
    key.write_text(content)
    s = _settings(
        tmp_path,
        telegram_bot_token=REAL,
        sheets_backend="google",
        google_spreadsheet_id="sheet-id",
        google_credentials_file=key,
    )
    problems = production_problems(s)
    if words is None:
        assert problems == []
    else:
        (line,) = problems
        assert line.startswith("GOOGLE_CREDENTIALS_FILE: ") and words in line
