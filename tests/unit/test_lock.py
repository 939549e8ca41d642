"""requirements.lock (what deploy.sh installs with --require-hashes) matches pyproject.toml's pins."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock() -> dict[str, tuple[str, list[str]]]:
    """{normalized name: (version, hashes)} of requirements.lock."""
    entries: dict[str, tuple[str, list[str]]] = {}
    current = ""
    for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        m = REQUIREMENT.match(line)
        if m:
            current = _norm(m.group(1))
            entries[current] = (m.group(2), [])
        for digest in re.findall(r"--hash=sha256:([0-9a-f]{64})", line):
            entries[current][1].append(digest)
    return entries


def test_every_pin_of_pyproject_is_locked_at_the_same_version() -> None:
    """Each runtime dependency pinned in pyproject.toml appears in the lock with the same version."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lock = _lock()
    for dep in project["dependencies"]:
        m = REQUIREMENT.match(dep)
        assert m, f"{dep} is not pinned with =="
        name, version = _norm(m.group(1)), m.group(2)
        assert name in lock, f"{name} is missing from requirements.lock (run `make lock`)"
        assert lock[name][0] == version, f"{name}: pyproject pins {version}, the lock has {lock[name][0]}"


def test_every_locked_package_has_a_hash_and_no_machine_specific_source() -> None:
    """pip's --require-hashes needs a sha256 for every package; the lock names no local index or wheel folder;
    setuptools is locked too (the project is installed with --no-build-isolation)."""
    lock = _lock()
    assert lock and all(hashes for _, hashes in lock.values()), [n for n, (_, h) in lock.items() if not h]
    text = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    assert not re.search(r"^\s*(--find-links|--index-url|--extra-index-url|-f |-i )", text, flags=re.MULTILINE)
    assert "setuptools" in lock
