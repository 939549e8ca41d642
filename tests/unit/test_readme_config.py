"""One source of truth for defaults: README's configuration table, the env example and the Apps Script agree
with the Settings class."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bot.config import Settings

ROOT = Path(__file__).resolve().parents[2]
# Defaults the table describes in words (derived at run time), not as a value.
DESCRIBED = {"AI_PROVIDER"}


def _table() -> dict[str, str]:
    """README's configuration table as {VARIABLE: default cell part}."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([A-Z0-9_]+)`", cells[0])
        defaults = [d.strip() for d in cells[1].split(", ")] if len(names) > 1 else [cells[1]]
        assert len(defaults) == len(names), f"{names}: one default per variable, got {cells[1]!r}"
        rows.update(zip(names, defaults, strict=True))
    return rows


def _expected(name: str, default: Any) -> str:
    """How the table writes a default value."""
    if default is None or default == "" or default == []:
        return "—"
    if isinstance(default, list):
        return "`" + ",".join(str(v) for v in default) + "`"
    if hasattr(default, "get_secret_value"):
        default = default.get_secret_value()
    if isinstance(default, float) and default.is_integer():
        default = int(default)
    return f"`{default}`"


def test_every_setting_is_in_the_readme_table_with_its_default() -> None:
    """Each Settings field appears in README's table, and the default shown equals the class's default."""
    table = _table()
    data_dir = Settings.model_fields["data_dir"].get_default()
    for field, info in Settings.model_fields.items():
        name = field.upper()
        assert name in table, f"{name} is missing from README's configuration table"
        if name in DESCRIBED:
            continue
        shown = table[name].replace("$DATA_DIR", str(data_dir))
        default = info.get_default(call_default_factory=True)
        if field == "prompt_path":
            assert str(default).endswith(shown.strip("`")), (name, shown, default)
            continue
        # Backticks are style: `60` and 60 both state the default 60.
        assert shown.strip("`") == _expected(field, default).strip("`"), (
            f"{name}: README says {table[name]}, Settings says {default!r}"
        )


def test_readme_lists_no_variable_the_settings_do_not_read() -> None:
    """No stale rows: every variable in the table is a Settings field."""
    assert set(_table()) <= {f.upper() for f in Settings.model_fields}


def test_env_example_lists_every_variable() -> None:
    """deploy/marketingbot.env.example mentions every variable (set or commented out)."""
    text = (ROOT / "deploy" / "marketingbot.env.example").read_text(encoding="utf-8")
    names = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))
    missing = {f.upper() for f in Settings.model_fields} - names
    assert not missing, f"missing from the env example: {sorted(missing)}"


def test_analysis_model_default_agrees_everywhere() -> None:
    """GEMINI_ANALYSIS_MODEL: the Python default, the Apps Script's default and both READMEs say the same."""
    default = Settings.model_fields["gemini_analysis_model"].get_default()
    worker = (ROOT / "gas" / "src" / "worker.js").read_text(encoding="utf-8")
    assert f"var DEFAULT_GEMINI_MODEL = '{default}';" in worker
    gas_readme = (ROOT / "gas" / "README.md").read_text(encoding="utf-8")
    assert f"| `GEMINI_ANALYSIS_MODEL` | `{default}` |" in gas_readme
    assert _table()["GEMINI_ANALYSIS_MODEL"] == f"`{default}`"
