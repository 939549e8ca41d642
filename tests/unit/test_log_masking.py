"""The bot token never reaches any log output: uvicorn's handlers, handlers added later, escaping tracebacks."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import uvicorn

from bot.logging_setup import setup_logging

TOKEN = "7654321:AAmasking-test-secret-value-123"
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Puts the logging configuration (handlers, levels, record factory) back after the test."""
    names = ("", "httpx", *UVICORN_LOGGERS)
    saved = {
        n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level, logging.getLogger(n).propagate) for n in names
    }
    factory = logging.getLogRecordFactory()
    yield
    for n, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(n)
        lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate
    logging.setLogRecordFactory(factory)


@pytest.mark.usefixtures("restore_logging")
def test_uvicorn_handlers_configured_after_setup_are_masked(capfd: pytest.CaptureFixture[str]) -> None:
    """uvicorn installs its own handlers when its Config is built (after our setup): their lines are masked."""
    setup_logging("INFO", "text", [TOKEN])
    uvicorn.Config(lambda *a: None, log_level="info")  # configures uvicorn's loggers and handlers
    logging.getLogger("uvicorn.error").warning("bad request from bot%s", TOKEN)
    logging.getLogger("uvicorn.access").info('GET /x?t=%s HTTP/1.1" 200', TOKEN)
    out, err = capfd.readouterr()
    assert "bad request" in out + err
    assert TOKEN not in out + err


@pytest.mark.usefixtures("restore_logging")
def test_a_handler_added_later_is_masked(capfd: pytest.CaptureFixture[str]) -> None:
    """A handler some library adds after setup_logging prints the token masked, tracebacks included."""
    setup_logging("INFO", "text", [TOKEN])
    late = logging.StreamHandler()
    lib = logging.getLogger("some.library")
    lib.addHandler(late)
    lib.propagate = False
    try:
        try:
            raise RuntimeError(f"rejected token {TOKEN}")
        except RuntimeError:
            lib.exception("call failed for %s", TOKEN)
    finally:
        lib.removeHandler(late)
        lib.propagate = True
    out, err = capfd.readouterr()
    assert "call failed" in err and "RuntimeError" in err
    assert TOKEN not in out + err


def test_any_bot_token_shape_is_masked_even_if_not_configured() -> None:
    """A Bot API token pasted anywhere in a line (not only in a /bot URL) is masked."""
    from bot.logging_setup import SecretFilter

    masked = SecretFilter([]).mask(f"The token `{TOKEN}` was rejected by the server.")
    assert TOKEN not in masked and "rejected" in masked


@pytest.mark.usefixtures("restore_logging")
def test_uvicorn_access_lines_without_secrets_keep_their_arguments(capfd: pytest.CaptureFixture[str]) -> None:
    """Masking leaves ordinary records intact, so uvicorn's access formatter (which unpacks args) still works."""
    setup_logging("INFO", "text", [TOKEN])
    uvicorn.Config(lambda *a: None, log_level="info")
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", "/healthz", "1.1", 200)
    out, err = capfd.readouterr()
    assert "/healthz" in out + err and "Logging error" not in out + err
