"""What `marketingbot run` (and `local`) verify before opening anything: one plain line per problem.

Each function returns the problems it found as `VARIABLE: what is wrong — how to fix it` lines; the CLI prints
them and exits 2. Nothing here raises for a bad configuration.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import tempfile

from bot.config import DEFAULT_LOCAL_DEV_BOT_TOKEN, Settings
from gateway import STATE_FILE_NAME

SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file

# What @BotFather issues: the bot's numeric id, a colon and a 35-character secret.
REAL_TOKEN = re.compile(r"^\d{5,}:[A-Za-z0-9_-]{35,}$")


def mask_token(token: str) -> str:
    """`123456:ABC…xyz` → `123456:****` (the bot id is public; the secret part never appears)."""
    head, sep, _ = token.partition(":")
    return f"{head}:****" if sep and head.isdigit() else "****"


def token_problems(settings: Settings) -> list[str]:
    """Why TELEGRAM_BOT_TOKEN cannot run production: absent, malformed, or the local dev token."""
    fix = "put the token @BotFather gave you in TELEGRAM_BOT_TOKEN (docs/deploy.md, «Create the bot»)"
    if settings.telegram_bot_token is None:
        return [f"TELEGRAM_BOT_TOKEN: not set — {fix}"]
    token = settings.telegram_bot_token.get_secret_value()
    dev = {DEFAULT_LOCAL_DEV_BOT_TOKEN, settings.local_dev_bot_token.get_secret_value()}
    if token in dev:
        return [f"TELEGRAM_BOT_TOKEN: is the local development token — {fix}"]
    if not REAL_TOKEN.match(token):
        return [f"TELEGRAM_BOT_TOKEN: {mask_token(token)} is not a bot token (digits:35+ characters) — {fix}"]
    return []


def backend_problems(settings: Settings) -> list[str]:
    """Production must name its store: forgetting SHEETS_BACKEND must not silently run on the laptop store."""
    if "sheets_backend" in settings.model_fields_set:
        return []
    return [
        "SHEETS_BACKEND: not set — `marketingbot run` needs SHEETS_BACKEND=google (the agency's spreadsheet) "
        "or, deliberately, SHEETS_BACKEND=local"
    ]


def data_dir_problems(settings: Settings) -> list[str]:
    """Creates the data directory if needed and proves a file can be written there."""
    folder = settings.local_db_path.parent
    where = "LOCAL_DB_PATH" if "local_db_path" in settings.model_fields_set else "DATA_DIR"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return [f"{where}: cannot write in {folder} ({reason}) — point it at a writable directory such as shared/data"]
    # The local store and the state file beside it are SQLite files: anything else would fail deep inside.
    for path, name in ((settings.local_db_path, "LOCAL_DB_PATH"), (folder / STATE_FILE_NAME, where)):
        try:
            with path.open("rb") as fh:
                head = fh.read(len(SQLITE_MAGIC))
        except FileNotFoundError:
            continue
        except OSError as exc:
            return [f"{name}: cannot read {path} ({exc.strerror})"]
        if head and head != SQLITE_MAGIC:
            return [f"{name}: {path} is not a MarketingBot data file (not an SQLite database) — move it away"]
    return []


def port_problems(host: str, port: int) -> list[str]:
    """WEB_HOST:WEB_PORT must be free (unless systemd hands us the listening socket)."""
    if os.environ.get("LISTEN_FDS"):
        return []  # socket activation: the port is held for us by the service manager
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return [f"WEB_PORT: port {port} on {host} is already in use (is another marketingbot running?)"]
            if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                return [f"WEB_HOST: {host} is not an address of this machine"]
            if exc.errno == errno.EACCES:
                return [f"WEB_PORT: port {port} needs root; use a port above 1023 behind the reverse proxy"]
            return [f"WEB_PORT: cannot listen on {host}:{port} ({exc.strerror})"]
    return []


def host_problems(host: str) -> list[str]:
    """WEB_HOST must resolve (a typo would otherwise surface as a traceback from the web server)."""
    with contextlib.suppress(OSError):
        socket.getaddrinfo(host, None)
        return []
    return [f"WEB_HOST: {host!r} is not a host name or address of this machine"]


def credentials_problems(settings: Settings) -> list[str]:
    """GOOGLE_CREDENTIALS_FILE must be a service-account JSON key (not an OAuth client or an API key file)."""
    path = settings.google_credentials_file
    if settings.sheets_backend != "google" or path is None or not path.is_file():
        return []  # absent or missing files are the settings' own problems
    fix = "download a JSON key of the service account (docs/deploy.md, step 3)"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return [f"GOOGLE_CREDENTIALS_FILE: cannot read {path} ({exc}) — check its owner and mode (root:marketing 0640)"]
    except ValueError:
        return [f"GOOGLE_CREDENTIALS_FILE: {path} is not JSON — {fix}"]
    if not isinstance(data, dict) or data.get("type") != "service_account" or not data.get("private_key"):
        return [f"GOOGLE_CREDENTIALS_FILE: {path} is not a service-account key — {fix}"]
    return []


def production_problems(settings: Settings) -> list[str]:
    """Everything `marketingbot run` refuses to start without (the sheet's structure is checked separately)."""
    return (
        token_problems(settings)
        + backend_problems(settings)
        + credentials_problems(settings)
        + data_dir_problems(settings)
    )


def startup_problems(settings: Settings) -> list[str]:
    """What any serving command (`run`, `local`) needs before it opens the store: a writable data dir, a free port."""
    problems = data_dir_problems(settings) + host_problems(settings.web_host)
    if not problems:
        problems += port_problems(settings.web_host, settings.web_port)
    return problems
