"""The gateway is the only door to the data: code outside gateway/ imports `gateway` and its sheet contracts only."""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import gateway

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_MODULES = {"gateway", "gateway.schemas"}  # the package itself and the sheet contracts
SUBMODULES = {m.name for m in pkgutil.iter_modules(gateway.__path__)}


def _outside_files() -> list[Path]:
    return sorted(p for d in ("bot", "bench") for p in (ROOT / d).rglob("*.py"))


def _violations(source: str, *, storage: bool = True) -> list[str]:
    """Every import in `source` that reaches past the gateway's door (and of a storage library, with `storage`)."""
    libs = {"gspread", "sqlite3", "aiosqlite"} if storage else set()
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("gateway.") and a.name not in PUBLIC_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            top = node.module.split(".")[0]
            if top == "gateway" and node.module not in PUBLIC_MODULES:
                out.append(node.module)
            elif node.module == "gateway":
                out += [f"gateway.{a.name}" for a in node.names if a.name in SUBMODULES]
            elif top in libs:
                out.append(node.module)
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.split(".")[0] in libs]
    return out


def test_bot_and_bench_enter_the_gateway_only_through_its_door() -> None:
    """No module of bot/ or bench/ imports a gateway submodule (other than gateway.schemas); bot/ never gspread or
    sqlite (bench/gateway.py drives plain gspread on purpose, as the baseline it measures against)."""
    found = {}
    for path in _outside_files():
        rel = path.relative_to(ROOT)
        if v := _violations(path.read_text(), storage=rel.parts[0] == "bot"):
            found[str(rel)] = v
    assert found == {}


def test_the_rule_catches_each_way_past_the_door() -> None:
    """Submodule imports (plain, from, or as a name of the package) and storage libraries are all reported."""
    src = (
        "import gateway.state\n"
        "from gateway.table import Table\n"
        "from gateway import a1, Record\n"
        "from gateway.schemas import APPEALS\n"
        "import gateway\n"
        "import sqlite3\n"
        "from gspread import Client\n"
    )
    assert _violations(src) == ["gateway.state", "gateway.table", "gateway.a1", "sqlite3", "gspread"]


def test_every_public_name_is_importable_from_the_package() -> None:
    """Each name the package lists as public resolves (lazily loaded backends included)."""
    assert all(getattr(gateway, name) is not None for name in gateway.__all__)
