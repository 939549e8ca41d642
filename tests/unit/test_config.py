"""Settings: every DESIGN §4 variable is read; a bad value fails at start naming the variable."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, load_settings, parse_working_hours


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    """No ambient configuration leaks into these tests (nor a stray .env)."""
    import os

    for name in list(os.environ):
        if name.startswith(("TELEGRAM_", "GEMINI_", "OPENAI_", "SHEETS_", "GOOGLE_", "WEB_", "LOCAL_", "AI_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(str(tmp_path))


def test_defaults_need_no_configuration() -> None:
    """With nothing set, the embedded default works: local store, offline AI, port 8080, limit 30, poll 15 s."""
    s = load_settings()
    assert s.sheets_backend == "local" and s.effective_ai_provider == "offline"
    assert (s.web_port, s.daily_ai_limit, s.queue_poll_seconds) == (8080, 30, 15.0)
    assert s.escalation_keywords == ["оператор", "менеджер", "человек", "operator"]
    assert s.webapp_signing_token == "000000:local-dev"


def test_lists_and_keys_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """ADMIN_TELEGRAM_IDS and ESCALATION_KEYWORDS accept comma lists; a Gemini key selects Gemini."""
    monkeypatch.setenv("ADMIN_TELEGRAM_IDS", "1, 22 ,333")
    monkeypatch.setenv("ESCALATION_KEYWORDS", "Жалоба, позвоните")
    monkeypatch.setenv("GEMINI_API_KEY", "k-123")
    s = load_settings()
    assert s.admin_telegram_ids == [1, 22, 333]
    assert s.escalation_keywords == ["жалоба", "позвоните"]
    assert s.effective_ai_provider == "gemini"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WEB_PORT", "eighty"),
        ("WEB_PORT", "70000"),
        ("DAILY_AI_LIMIT", "-1"),
        ("SHEETS_BACKEND", "excel"),
        ("AI_PROVIDER", "claude"),
        ("TELEGRAM_BOT_TOKEN", "not-a-token"),
        ("WORKING_HOURS", "9-20"),
        ("LOG_FORMAT", "xml"),
    ],
)
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """A wrong value raises ConfigError whose message names the variable."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_google_backend_requires_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """SHEETS_BACKEND=google without a spreadsheet id or credentials is refused with the variable's name."""
    monkeypatch.setenv("SHEETS_BACKEND", "google")
    with pytest.raises(ConfigError, match="GOOGLE_SPREADSHEET_ID"):
        load_settings()
    monkeypatch.setenv("GOOGLE_SPREADSHEET_ID", "abc")
    with pytest.raises(ConfigError, match="GOOGLE_CREDENTIALS_FILE"):
        load_settings()
    monkeypatch.setenv("SHEETS_API_BASE_URL", "http://127.0.0.1:9")
    assert load_settings().sheets_backend == "google"  # an emulator may run with anonymous credentials


def test_secrets_are_not_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    """Printing the settings never shows the bot token or API keys."""
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456:SECRETSECRET")
    monkeypatch.setenv("GEMINI_API_KEY", "gem-secret-key")
    text = repr(load_settings())
    assert "SECRETSECRET" not in text and "gem-secret-key" not in text


def test_dotenv_file_is_read(tmp_path: object) -> None:
    """Variables in ./.env are used."""
    from pathlib import Path

    Path(".env").write_text("WEB_PORT=9090\nDAILY_AI_LIMIT=5\n", encoding="utf-8")
    s = load_settings()
    assert (s.web_port, s.daily_ai_limit) == (9090, 5)


def test_working_hours_parse() -> None:
    """'09:00-20:00 Europe/Moscow' parses; a night shift and another zone too."""
    start, end, tz = parse_working_hours("22:00-06:30 Asia/Yekaterinburg")
    assert (start.hour, end.hour, end.minute, tz) == (22, 6, 30, "Asia/Yekaterinburg")
    with pytest.raises(ValueError):
        parse_working_hours("09:00-20:00 Mars/Olympus")


def test_every_problem_is_reported_at_once_in_plain_words(monkeypatch: pytest.MonkeyPatch) -> None:
    """Field errors and cross-field errors come together, one line each, never a library message."""
    monkeypatch.setenv("ADMIN_TELEGRAM_IDS", "abc")
    monkeypatch.setenv("WEB_PORT", "70000")
    monkeypatch.setenv("DAILY_AI_LIMIT", "-1")
    monkeypatch.setenv("SHEETS_BACKEND", "google")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "secret-token-value")
    with pytest.raises(ConfigError) as err:
        load_settings()
    lines = str(err.value).splitlines()
    assert lines == [
        "TELEGRAM_BOT_TOKEN: must look like 123456:ABC-def (the token @BotFather gave)",
        'ADMIN_TELEGRAM_IDS: "abc" is not a list of Telegram IDs (numbers separated by commas)',
        'WEB_PORT: "70000" must be at most 65535',
        'DAILY_AI_LIMIT: "-1" must be at least 0',
        "GOOGLE_SPREADSHEET_ID: required when SHEETS_BACKEND=google (the id in the sheet URL)",
        "GOOGLE_CREDENTIALS_FILE: required when SHEETS_BACKEND=google (the service-account key)",
    ]
    assert "secret-token-value" not in str(err.value)


def test_data_dir_holds_the_default_store(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    """LOCAL_DB_PATH defaults to DATA_DIR/marketingbot.db (production sets DATA_DIR to shared/data)."""
    from pathlib import Path

    monkeypatch.setenv("DATA_DIR", "/srv/shared/data")
    assert load_settings().local_db_path == Path("/srv/shared/data/marketingbot.db")
    monkeypatch.setenv("LOCAL_DB_PATH", "elsewhere/x.db")
    assert load_settings().local_db_path == Path("elsewhere/x.db")


def test_data_dir_under_a_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    """A data directory that cannot be created is reported naming DATA_DIR."""
    from pathlib import Path

    blocker = Path(str(tmp_path)) / "file"
    blocker.write_text("x")
    monkeypatch.setenv("DATA_DIR", str(blocker / "data"))
    with pytest.raises(ConfigError, match=r"^DATA_DIR: .* is not a directory"):
        load_settings()


def test_webapp_url_must_be_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """WEBAPP_URL=not-a-url fails at start naming the variable."""
    monkeypatch.setenv("WEBAPP_URL", "not-a-url")
    with pytest.raises(ConfigError, match=r"^WEBAPP_URL: 'not-a-url' is not a URL"):
        load_settings()
