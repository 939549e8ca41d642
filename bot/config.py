"""Settings from the environment / `.env` (pydantic-settings). A bad value fails at start naming the variable."""

from __future__ import annotations

import json
import os
import re
from contextvars import ContextVar
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_ESCALATION_KEYWORDS = ("оператор", "менеджер", "человек", "operator")
DEFAULT_LOCAL_DEV_BOT_TOKEN = "000000:local-dev"
_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
# Set by load_settings_lenient: cross-field problems are collected here instead of failing the whole object.
_lenient_sink: ContextVar[list[str] | None] = ContextVar("_lenient_sink", default=None)


class ConfigError(Exception):
    """The configuration is invalid; the message names the variable(s) and what is wrong."""


class Settings(BaseSettings):
    """Every variable of DESIGN §4. Field names are the lowercase environment variable names."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    telegram_bot_token: SecretStr | None = None
    admin_telegram_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    staff_chat_id: int | None = None
    sheets_backend: Literal["google", "local"] = "local"
    google_spreadsheet_id: str = ""
    google_credentials_file: Path | None = None
    # Everything the bot writes (local store, state/outbox, reports). Production sets it to shared/data/:
    # the release directory is read-only under the unit's sandbox.
    data_dir: Path = Path("data")
    local_db_path: Path = Path("data/marketingbot.db")  # default: DATA_DIR/marketingbot.db
    ai_provider: Literal["gemini", "openai", "offline"] | None = None
    gemini_api_key: SecretStr | None = None
    gemini_model: str = "gemini-2.5-flash"
    gemini_analysis_model: str = "gemini-2.5-flash"  # the Apps Script's default too (gas/src/worker.js)
    gemini_base_url: str | None = None
    openai_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    openai_model: str = "gpt-4o-mini"
    webapp_url: str | None = None
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8080, ge=1, le=65535)
    web_header_timeout: float = Field(default=10.0, gt=0)  # seconds a client has to send a request head
    web_keep_alive_timeout: float = Field(default=5.0, gt=0)  # idle keep-alive connections close after this
    web_max_concurrency: int = Field(default=500, ge=1)  # connections + requests at once; beyond: 503
    daily_ai_limit: int = Field(default=30, ge=0)
    partner_rate_per_minute: int = Field(default=20, ge=0)  # messages/API POSTs per partner per minute (0: off)
    partner_rate_burst: int = Field(default=5, ge=1)  # how many may come at once
    staff_notice_interval: float = Field(default=60.0, ge=0)  # one «В работе» notice per partner per interval
    queue_poll_seconds: float = Field(default=15.0, gt=0)
    operator_poll_seconds: float = Field(default=10.0, gt=0)  # how often «Ответ оператора» is read
    queue_retention_days: int = Field(default=30, ge=1)  # delivered Очередь rows older than this are archived
    escalation_keywords: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_ESCALATION_KEYWORDS)
    )
    working_hours: str = "09:00-20:00 Europe/Moscow"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    local_dev_bot_token: SecretStr = SecretStr(DEFAULT_LOCAL_DEV_BOT_TOKEN)
    webhook_url: str | None = None
    telegram_api_base_url: str | None = None
    sheets_api_base_url: str | None = None
    drive_api_base_url: str | None = None  # a Drive API emulator or proxy (report PDFs Apps Script keeps private)
    sheets_reads_per_minute: int = Field(default=60, ge=1)
    sheets_writes_per_minute: int = Field(default=60, ge=1)
    prompt_path: Path = Field(default_factory=lambda: default_prompt_path())
    # Zero-downtime slots (docs/deploy.md): the leader lease, this process's slot and its probe socket.
    leader_lock_file: Path | None = None  # default: leader.lock beside the state database
    leader_retry_seconds: float = Field(default=0.1, gt=0, le=5)
    slot: Literal["blue", "green"] | None = None
    slot_socket: Path | None = None

    @field_validator("admin_telegram_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [v for v in re.split(r"[,;\s]+", value.strip()) if v]
            if not all(re.fullmatch(r"-?\d+", v) for v in parts):
                shown = json.dumps(value, ensure_ascii=False)
                raise ValueError(f"{shown} is not a list of Telegram IDs (numbers separated by commas)")
            return [int(v) for v in parts]
        return value

    @field_validator("escalation_keywords", mode="before")
    @classmethod
    def _split_words(cls, value: object) -> object:
        if isinstance(value, str):
            return [w.strip().casefold() for w in value.split(",") if w.strip()]
        return value

    @field_validator("telegram_bot_token", "local_dev_bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _TOKEN.match(value.get_secret_value()):
            raise ValueError("must look like 123456:ABC-def (the token @BotFather gave)")
        return value

    @field_validator("working_hours")
    @classmethod
    def _hours_shape(cls, value: str) -> str:
        parse_working_hours(value)
        return value

    @field_validator("telegram_bot_token", "gemini_api_key", "openai_api_key", "slot", "slot_socket", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if "local_db_path" not in self.model_fields_set:
            # Through __dict__: the field stays "not set", so messages blame DATA_DIR, not LOCAL_DB_PATH.
            self.__dict__["local_db_path"] = self.data_dir / "marketingbot.db"
        # Every problem at once, one per line (load_settings splits them), each starting with its variable.
        problems: list[str] = []
        if self.sheets_backend == "google":
            if not self.google_spreadsheet_id:
                problems.append("GOOGLE_SPREADSHEET_ID: required when SHEETS_BACKEND=google (the id in the sheet URL)")
            if self.google_credentials_file is None and not self.sheets_api_base_url:
                problems.append(
                    "GOOGLE_CREDENTIALS_FILE: required when SHEETS_BACKEND=google (the service-account key)"
                )
            if self.google_credentials_file is not None and not self.google_credentials_file.is_file():
                problems.append(f"GOOGLE_CREDENTIALS_FILE: no such file {self.google_credentials_file}")
        if self.ai_provider == "gemini" and self.gemini_api_key is None:
            problems.append("GEMINI_API_KEY: required when AI_PROVIDER=gemini")
        if self.ai_provider == "openai" and not self.openai_base_url:
            problems.append("OPENAI_BASE_URL: required when AI_PROVIDER=openai")
        if self.webapp_url is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", self.webapp_url):
            problems.append(f"WEBAPP_URL: {self.webapp_url!r} is not a URL (expected https://your.domain/)")
        where = "LOCAL_DB_PATH" if "local_db_path" in self.model_fields_set else "DATA_DIR"
        problem = unwritable_dir(self.local_db_path.parent)
        if problem:
            problems.append(f"{where}: {problem}")
        elif self.local_db_path.is_dir():
            problems.append(
                f"LOCAL_DB_PATH: {self.local_db_path} is a directory; name a file in it, e.g. marketingbot.db"
            )
        sink = _lenient_sink.get()
        if problems and sink is not None:
            sink.extend(problems)  # load_settings_lenient: report them, keep the object for the other checks
        elif problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def effective_ai_provider(self) -> str:
        """The AI in use: the configured one, else Gemini when a key is set, else offline."""
        if self.ai_provider:
            return self.ai_provider
        return "gemini" if self.gemini_api_key is not None else "offline"

    @property
    def leader_lock_path(self) -> Path:
        """LEADER_LOCK_FILE, else leader.lock beside the state database (chat_memory.db, in shared/data)."""
        return self.leader_lock_file or self.local_db_path.parent / "leader.lock"

    @property
    def webapp_signing_token(self) -> str:
        """The token initData is signed with: the bot's, or the local dev token without a bot."""
        token = self.telegram_bot_token or self.local_dev_bot_token
        return token.get_secret_value()


def default_prompt_path() -> Path:
    """prompts/system_prompt.txt of the source tree this package runs from, else of the working directory
    (a release directory, where the package is installed into the release's own venv)."""
    beside_package = Path(__file__).resolve().parents[1] / "prompts" / "system_prompt.txt"
    return beside_package if beside_package.is_file() else Path("prompts/system_prompt.txt")


def parse_working_hours(text: str) -> tuple[time, time, str]:
    """'09:00-20:00 Europe/Moscow' → (start, end, tz name)."""
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*[-–]\s*(\d{1,2}):(\d{2})(?:\s+(\S+))?\s*", text)
    if not m:
        raise ValueError("must look like 09:00-20:00 Europe/Moscow")
    h1, m1, h2, m2 = (int(g) for g in m.groups()[:4])
    try:
        start, end = time(h1, m1), time(h2, m2)
    except ValueError as exc:
        raise ValueError(f"bad time: {exc}") from None
    tz = m.group(5) or "Europe/Moscow"
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r}") from None
    return start, end, tz


def unwritable_dir(folder: Path) -> str | None:
    """Why the bot could not create files in `folder` (creating it if needed), or None. Touches nothing."""
    probe = folder.absolute()
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return f"{folder} cannot be created: {probe} is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        where = "" if probe == folder.absolute() else f" (its nearest existing parent {probe})"
        return f"{folder} is not writable by this user{where}; point it at a writable directory such as shared/data"
    return None


_SECRET_FIELDS = frozenset({"telegram_bot_token", "gemini_api_key", "openai_api_key", "local_dev_bot_token"})


def _plain(err: Any) -> str:
    """One pydantic error in words a person understands (never the library's dump)."""
    field = str(err["loc"][0]) if err["loc"] else ""
    given = "the value" if field in _SECRET_FIELDS else json.dumps(err.get("input"), ensure_ascii=False, default=str)
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return f"{given} is not a whole number"
    if kind in ("float_parsing", "float_type"):
        return f"{given} is not a number"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = {"greater_than_equal": "at least", "greater_than": "above", "less_than_equal": "at most"}.get(
            kind, "below"
        )
        limit = next(iter(ctx.values()), "")
        return f"{given} must be {bound} {limit}"
    if kind == "literal_error":
        return f"{given} must be one of {ctx.get('expected', '')}"
    if kind in ("bool_parsing", "bool_type"):
        return f"{given} must be true or false"
    return str(err["msg"]).removeprefix("Value error, ")


def settings_problems(exc: ValidationError) -> list[str]:
    """Each error of `exc` as `VARIABLE: what is wrong` (a multi-line cross-field error becomes several)."""
    lines: list[str] = []
    for err in exc.errors():
        loc = "_".join(str(p) for p in err["loc"]).upper()
        for msg in _plain(err).splitlines():
            lines.append(f"{loc}: {msg}" if loc else msg)
    return lines


def load_settings_lenient(**overrides: object) -> tuple[Settings | None, list[str]]:
    """Settings with every bad variable reported; the bad ones fall back to their defaults so the rest can
    still be checked (`marketingbot check` goes on with the other items). None when even that fails."""
    problems: list[str] = []
    fallback: dict[str, object] = dict(overrides)
    for _ in range(3):
        sink: list[str] = []
        reset = _lenient_sink.set(sink)
        try:
            settings = Settings(**fallback)  # type: ignore[arg-type]
            return settings, problems + sink
        except ValidationError as exc:
            problems += [p for p in settings_problems(exc) if p not in problems]
            bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"] and str(e["loc"][0]) in Settings.model_fields}
            if not bad:
                break
            for name in bad:
                info = Settings.model_fields[name]
                fallback[name] = info.get_default(call_default_factory=True)
        finally:
            _lenient_sink.reset(reset)
    return None, problems


def load_settings(**overrides: object) -> Settings:
    """Read settings; on error raise ConfigError listing every bad variable, one per line."""
    settings, problems = load_settings_lenient(**overrides)
    if problems or settings is None:
        raise ConfigError("\n".join(problems or ["invalid configuration"]))
    return settings
