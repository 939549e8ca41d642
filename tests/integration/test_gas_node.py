"""The Apps Script code under Node: its tests (shared vectors, queue worker with stubs) and the tsc type-check.

Needs Node.js; without it the tests are skipped locally and fail under CI. The type-check needs
gas/node_modules: when it is missing it is installed from npm's local cache only (`npm ci --offline`,
never the network); `make test` runs `npm ci` in gas/ beforehand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

GAS = Path(__file__).resolve().parents[2] / "gas"
pytestmark = pytest.mark.node

if shutil.which("node") is None or shutil.which("npm") is None:
    if os.environ.get("CI"):
        raise RuntimeError("Node.js and npm are required under CI for the Apps Script tests")
    pytest.skip("Node.js is not installed", allow_module_level=True)


def npm(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Runs npm in gas/ and returns the finished process (output captured)."""
    return subprocess.run(
        ["npm", *args],
        cwd=GAS,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "NO_UPDATE_NOTIFIER": "1"},
    )


def ensure_node_modules() -> None:
    """Makes gas/node_modules exist, from npm's cache only; skips (or fails under CI) when it cannot."""
    if (GAS / "node_modules" / "typescript").is_dir():
        return
    done = npm("ci", "--offline", "--no-audit", "--no-fund")
    if done.returncode != 0:
        message = f"gas/node_modules is missing and `npm ci --offline` failed: run `npm ci` in gas/\n{done.stderr}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def test_node_tests_pass() -> None:
    """`npm test` (node --test: shared vectors through analysis.js, the queue worker on stubs) passes."""
    done = npm("test")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout
    passed = int(done.stdout.split("# pass ")[1].split()[0])
    assert passed >= 30  # every vector and every worker test ran


def test_apps_script_code_type_checks() -> None:
    """`npm run typecheck` (tsc --noEmit, checkJs against @types/google-apps-script) reports no error."""
    ensure_node_modules()
    done = npm("run", "typecheck")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
