"""The `marketingbot` command (also `python -m bot`). Commands are thin: bot/app.py builds, bot/lifecycle.py runs."""

from __future__ import annotations

import asyncio
import csv
import io
import ipaddress
import json
import sys
import traceback
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import typer

from bot.config import ConfigError, Settings, load_settings
from bot.ops.spreadsheet_safety import spreadsheet_safe

CONFIG_ERROR = 2  # exit code of every configuration refusal (a checklist failure exits 1)

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="MarketingBot: the agency partners' assistant.")
sheets_cli = typer.Typer(no_args_is_help=True, help="Read and write the spreadsheet through the gateway.")
cli.add_typer(sheets_cli, name="sheets")
outbox_cli = typer.Typer(no_args_is_help=True, help="Writes waiting for the sheet, and dead letters.")
cli.add_typer(outbox_cli, name="outbox")


def is_loopback_host(host: str) -> bool:
    """Whether WEB_HOST names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def _refuse(problems: list[str]) -> None:
    """Print each problem on one line and exit 2 when there are any."""
    if problems:
        for problem in problems:
            typer.echo(problem, err=True)
        raise typer.Exit(CONFIG_ERROR)


def _settings(**overrides: object) -> Settings:
    """The settings, or every problem printed (one line each) and exit 2. The data directory must be writable."""
    from bot.ops.preflight import data_dir_problems

    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        _refuse(str(exc).splitlines())
        raise  # unreachable: _refuse exits
    _refuse(data_dir_problems(settings))
    return settings


def _first_per_variable(problems: list[str]) -> list[str]:
    """One line per variable (a malformed token is not also reported as missing)."""
    seen: set[str] = set()
    kept = []
    for line in problems:
        name = line.split(":", 1)[0]
        if name not in seen:
            seen.add(name)
            kept.append(line)
    return kept


def _serve_or_refuse(settings: Settings, *, local: bool) -> None:
    """Run the application; a port taken in the meantime is one line and exit 2, not a hang."""
    from bot.lifecycle import PortUnavailable, run_application

    try:
        _run_masked(settings, run_application(settings, local=local))
    except PortUnavailable as exc:
        _refuse([str(exc)])


@cli.command()
def local() -> None:
    """The embedded default: local store with demo data, Mini App on http://127.0.0.1:8080, worker in-process."""
    from bot.ops.preflight import startup_problems

    settings = _settings(sheets_backend="local")
    if not is_loopback_host(settings.web_host):
        # The staff console and dev initData trust this machine: never serve them to the network.
        typer.echo(
            f"WEB_HOST={settings.web_host} is not a loopback address: `local` serves on 127.0.0.1 only", err=True
        )
        raise typer.Exit(2)
    _refuse(startup_problems(settings))
    _serve_or_refuse(settings, local=True)


@cli.command()
def run() -> None:
    """Production: everything from the environment / .env. Refuses (exit 2) what would fail later."""
    from bot.config import load_settings_lenient
    from bot.ops.checklist import structure_refusal
    from bot.ops.preflight import production_problems, startup_problems

    # Every problem at once: the settings' own, then what production needs (first line per variable).
    settings, problems = load_settings_lenient()
    if settings is not None:
        problems += production_problems(settings)
        problems += startup_problems(settings) if not problems else []
    _refuse(_first_per_variable(problems))
    assert settings is not None  # _refuse exits when there was no settings object
    _refuse(asyncio.run(structure_refusal(settings)))
    _serve_or_refuse(settings, local=False)


@cli.command()
def worker(
    once: Annotated[bool, typer.Option(help="Process one batch and exit.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between batches.")] = 10.0,
) -> None:
    """The analytics worker (the Python twin of the Apps Script) against the configured backend."""
    from bot.lifecycle import run_worker

    settings = _settings()
    _run_masked(settings, run_worker(settings, once=once, interval=interval))


@cli.command()
def check(
    skip: Annotated[
        list[str] | None,
        typer.Option(
            help="Item to leave out (repeatable): spreadsheet, sheets, bot-token, mini-app, staff-chat, "
            "ai, worker, prompt. deploy.sh skips mini-app on a first deploy, when nothing serves WEBAPP_URL yet."
        ),
    ] = None,
) -> None:
    """The go-live checklist: one line per item, ✔ or ✖ with how to fix it; exit 0 only when all hold."""
    from bot.config import load_settings_lenient
    from bot.ops.checklist import SKIPPABLE, run_checklist

    unknown = sorted(set(skip or ()) - set(SKIPPABLE))
    if unknown:
        typer.echo(f"--skip: unknown item {', '.join(unknown)} (known: {', '.join(SKIPPABLE)})", err=True)
        raise typer.Exit(CONFIG_ERROR)
    settings, problems = load_settings_lenient()
    if settings is None:
        typer.echo("✖ settings — " + "; ".join(problems))
        raise typer.Exit(1)
    from bot.logging_setup import setup_logging

    # Only warnings, and masked: a library's log line must not print a token next to the checklist.
    keys = (settings.telegram_bot_token, settings.gemini_api_key, settings.openai_api_key)
    setup_logging("WARNING", "text", [k.get_secret_value() for k in keys if k is not None])
    items = asyncio.run(run_checklist(settings, problems, skip=skip or ()))
    for item in items:
        typer.echo(item.line())
    failed = [i for i in items if not i.ok]
    typer.echo(f"{len(items) - len(failed)} of {len(items)} hold" + ("" if failed else ": ready to go live"))
    if failed:
        raise typer.Exit(1)


def _run_masked(settings: Settings, main: Coroutine[Any, Any, None]) -> None:
    """Run a long-lived command; an exception escaping it is printed with secrets masked (PTB's InvalidToken
    quotes the token), never as the raw traceback, and exits 1."""
    from bot.lifecycle import PortUnavailable

    try:
        asyncio.run(main)
    except PortUnavailable:
        raise  # one line naming WEB_PORT (see _serve_or_refuse), not a traceback
    except Exception as exc:
        mask = secret_masker(settings)
        typer.echo(mask("".join(traceback.format_exception(exc))).rstrip(), err=True)
        typer.echo(mask(f"marketingbot stopped: {type(exc).__name__}: {exc}"), err=True)
        raise typer.Exit(1) from None


def secret_masker(settings: Settings) -> Callable[[str], str]:
    """Masks the configured secrets (and any Bot API token) in text printed to the terminal or deploy log."""
    from bot.app import secrets_of
    from bot.logging_setup import SecretFilter

    return SecretFilter(secrets_of(settings)).mask


@sheets_cli.command("init")
def sheets_init() -> None:
    """Create missing sheets and header rows (on Google also status dropdowns and frozen headers)."""
    from bot.ops.sheets import init_sheets

    created = asyncio.run(init_sheets(_settings()))
    typer.echo("created: " + (", ".join(created) if created else "nothing (all sheets exist)"))


@sheets_cli.command("dump")
def sheets_dump(
    sheet: str,
    fmt: Annotated[str, typer.Option("--format", help="csv or json")] = "csv",
) -> None:
    """Print a sheet: CSV, or JSON (an array of rows, header row first)."""
    from bot.ops.sheets import dump_sheet

    if fmt not in ("csv", "json"):
        typer.echo("--format must be csv or json", err=True)
        raise typer.Exit(2)
    try:
        rows = asyncio.run(dump_sheet(_settings(), sheet))
    except LookupError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    if fmt == "json":
        sys.stdout.write(json.dumps(rows, ensure_ascii=False) + "\n")
    else:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([[spreadsheet_safe(c) for c in row] for row in rows])
        sys.stdout.write(buf.getvalue())


@sheets_cli.command("set")
def sheets_set(sheet: str, cell: str, value: str) -> None:
    """Write one cell (A1 notation, e.g. G2) verbatim: how a staff edit is simulated locally."""
    from bot.ops.sheets import set_cell

    try:
        asyncio.run(set_cell(_settings(), sheet, cell, value))
    except (LookupError, ValueError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{sheet}!{cell.upper()} set")


def _state_path() -> str:
    from bot.app import gateway_config

    return str(gateway_config(_settings()).state_path)


@outbox_cli.command("list")
def outbox_list() -> None:
    """Print waiting writes and dead letters: id, state, age, sheet, op, last error."""
    from bot.ops.outbox_admin import list_entries, render

    for line in render(asyncio.run(list_entries(_state_path()))):
        typer.echo(line)


@outbox_cli.command("retry")
def outbox_retry(entry_id: int) -> None:
    """Move a dead letter back to the outbox (the running bot replays it within seconds)."""
    from bot.ops.outbox_admin import retry

    if not asyncio.run(retry(_state_path(), entry_id)):
        typer.echo(f"no dead letter with id {entry_id} (see marketingbot outbox list)", err=True)
        raise typer.Exit(1)
    typer.echo(f"{entry_id}: back in the outbox")


@outbox_cli.command("drop")
def outbox_drop(entry_id: int) -> None:
    """Delete one waiting write or dead letter for good."""
    from bot.ops.outbox_admin import drop

    if not asyncio.run(drop(_state_path(), entry_id)):
        typer.echo(f"no outbox entry or dead letter with id {entry_id} (see marketingbot outbox list)", err=True)
        raise typer.Exit(1)
    typer.echo(f"{entry_id}: dropped")


def main() -> None:
    """Console-script entry point."""
    cli()
