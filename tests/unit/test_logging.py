"""Secrets never reach the logs: the bot token inside httpx request URLs is masked."""

from __future__ import annotations

import logging

import pytest

from bot.logging_setup import SecretFilter, setup_logging


def test_token_in_url_and_known_secrets_are_masked() -> None:
    """A Bot API URL's token and any configured secret are replaced with ***."""
    f = SecretFilter(["gem-secret-key"])
    line = "HTTP Request: POST https://api.telegram.org/bot123456:AAH-xyz_987/sendMessage key=gem-secret-key"
    masked = f.mask(line)
    assert "123456:AAH-xyz_987" not in masked and "gem-secret-key" not in masked
    assert "/bot***/sendMessage" in masked


def test_root_handler_masks_every_logger(capsys: pytest.CaptureFixture[str]) -> None:
    """After setup_logging, a record from any logger (httpx included) is printed without the token."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("httpx").level)
    try:
        setup_logging("INFO", "text", ["123456:SECRET_token"])
        logging.getLogger("httpx").warning("GET https://x/bot123456:SECRET_token/getUpdates")
        logging.getLogger("bot.any").info("token is 123456:SECRET_token")
        err = capsys.readouterr().err
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        logging.getLogger("httpx").setLevel(saved[2])
    assert "SECRET_token" not in err and "/bot***/getUpdates" in err


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_tracebacks_are_masked_too(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A logged exception whose message carries the token (e.g. a request URL) is printed masked."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("httpx").level)
    try:
        setup_logging("INFO", fmt, ["123456:SECRET_token"])
        try:
            raise RuntimeError("POST https://api.telegram.org/bot123456:SECRET_token/sendMessage failed")
        except RuntimeError:
            logging.getLogger("bot.any").exception("send failed")
        err = capsys.readouterr().err
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        logging.getLogger("httpx").setLevel(saved[2])
    assert "SECRET_token" not in err and "RuntimeError" in err and "/bot***/sendMessage" in err
