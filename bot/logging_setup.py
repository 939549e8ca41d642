"""Logging: text or JSON lines, and a filter that keeps secrets (the bot token in httpx URLs) out of logs."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable

_BOT_URL_TOKEN = re.compile(r"/bot\d+:[A-Za-z0-9_-]+")
# A Bot API token anywhere in a line (PTB's InvalidToken message quotes it): digits, a colon, 30+ characters.
_BARE_TOKEN = re.compile(r"\b\d{5,}:[A-Za-z0-9_-]{30,}")
# The record factory before ours, so that calling setup_logging again never stacks maskers.
_ORIGINAL_FACTORY = logging.getLogRecordFactory()
_PLAIN = logging.Formatter()  # formats tracebacks for masking; stateless


class SecretFilter(logging.Filter):
    """Masks every known secret and any Bot API token in a URL (httpx logs request URLs at INFO)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s and len(s) >= 6]

    def mask(self, text: str) -> str:
        """Text with secrets replaced."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _BARE_TOKEN.sub("***", _BOT_URL_TOKEN.sub("/bot***", text))

    def filter(self, record: logging.LogRecord) -> bool:
        original = record.getMessage()
        message = self.mask(original)
        if message != original:
            # Only a record that carried a secret loses its args: formatters that read them (uvicorn's access
            # log unpacks its five) keep working for every other line.
            record.msg, record.args = message, None
        # A traceback ends with the exception's message, which may carry a URL: format it now, masked
        # (formatters print a record's exc_text when it is set).
        if record.exc_info and not record.exc_text:
            record.exc_text = _PLAIN.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line for journald / log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exc"] = record.exc_text
        return json.dumps(data, ensure_ascii=False)


def install_record_masking(secret_filter: SecretFilter) -> None:
    """Mask every record as it is created, so every handler prints it masked: uvicorn's own (configured after
    ours), a library's added later, ones on loggers that do not propagate."""

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = _ORIGINAL_FACTORY(*args, **kwargs)
        secret_filter.filter(record)
        return record

    logging.setLogRecordFactory(factory)


def setup_logging(level: str, fmt: str, secrets: Iterable[str]) -> None:
    """Configure the root logger once; every record is masked at creation (covers every handler), and the
    root handler filters too (covers records made before this ran)."""
    secret_filter = SecretFilter(secrets)
    install_record_masking(secret_filter)
    handler = logging.StreamHandler()
    handler.addFilter(secret_filter)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO; keep it at WARNING (and masked anyway).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
