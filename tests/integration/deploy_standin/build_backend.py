"""In-tree PEP 517 build backend of the stand-in project (copied into its repo as `standin_build.py`).

Needs only the standard library, so `pip install --no-index .` works with no network and no setuptools or
wheel: the deploy tests build a real wheel and pip installs it into each release's .venv, as in production.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

NAME = "standin_marketingbot"
VERSION = "0.0.0"
PACKAGES = ("bot", "gateway")
ENTRY_POINTS = "[console_scripts]\nmarketingbot = bot.cli:main\n"


def _record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def _package_files() -> list[tuple[str, bytes]]:
    files = []
    for package in PACKAGES:
        for path in sorted(Path(package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                files.append((path.as_posix(), path.read_bytes()))
    return files


def get_requires_for_build_wheel(config_settings: object = None) -> list[str]:
    """The stand-in needs nothing to build."""
    return []


def build_wheel(wheel_directory: str, config_settings: object = None, metadata_directory: object = None) -> str:
    """Writes a pure-Python wheel of the stand-in packages and its console script."""
    dist_info = f"{NAME}-{VERSION}.dist-info"
    files = _package_files()
    files.append((f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n".encode()))
    files.append(
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: standin_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
    )
    files.append((f"{dist_info}/entry_points.txt", ENTRY_POINTS.encode()))
    record = [_record_line(name, data) for name, data in files] + [f"{dist_info}/RECORD,,"]
    files.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))
    wheel_name = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(Path(wheel_directory) / wheel_name, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files:
            wheel.writestr(name, data)
    return wheel_name
