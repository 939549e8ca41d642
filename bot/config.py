"""Settings from the environment / `.env` (pydantic-settings). A bad value fails at start naming the variable."""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_ESCALATION_KEYWORDS = ("оператор", "менеджер", "человек", "operator")
DEFAULT_LOCAL_DEV_BOT_TOKEN = "000000:local-dev"
_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]+$")


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
    local_db_path: Path = Path("data/marketingbot.db")
    ai_provider: Literal["gemini", "openai", "offline"] | None = None
    gemini_api_key: SecretStr | None = None
    gemini_model: str = "gemini-2.5-flash"
    gemini_analysis_model: str = "gemini-2.5-pro"
    gemini_base_url: str | None = None
    openai_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    openai_model: str = "gpt-4o-mini"
    webapp_url: str | None = None
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8080, ge=1, le=65535)
    daily_ai_limit: int = Field(default=30, ge=0)
    queue_poll_seconds: float = Field(default=15.0, gt=0)
    operator_poll_seconds: float = Field(default=10.0, gt=0)  # how often «Ответ оператора» is read
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
            return [int(v) for v in re.split(r"[,\s]+", value.strip()) if v]
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
        if self.sheets_backend == "google":
            if not self.google_spreadsheet_id:
                raise ValueError("GOOGLE_SPREADSHEET_ID is required when SHEETS_BACKEND=google")
            if self.google_credentials_file is None and not self.sheets_api_base_url:
                raise ValueError("GOOGLE_CREDENTIALS_FILE is required when SHEETS_BACKEND=google")
            if self.google_credentials_file is not None and not self.google_credentials_file.is_file():
                raise ValueError(f"GOOGLE_CREDENTIALS_FILE: no such file {self.google_credentials_file}")
        if self.ai_provider == "gemini" and self.gemini_api_key is None:
            raise ValueError("GEMINI_API_KEY is required when AI_PROVIDER=gemini")
        if self.ai_provider == "openai" and not self.openai_base_url:
            raise ValueError("OPENAI_BASE_URL is required when AI_PROVIDER=openai")
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


def load_settings(**overrides: object) -> Settings:
    """Read settings; on error raise ConfigError whose message names each bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = "_".join(str(p) for p in err["loc"]).upper()
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{loc}: {msg}" if loc else msg)
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
