"""Stub of `systemd-run --wait --pipe --collect -p Key=Value … COMMAND` for the deploy tests (SANDBOX_RUN).

It reproduces what matters for deploy.sh's smoke test: the command runs in WorkingDirectory with the unit's
Environment= and EnvironmentFile= (and not the caller's environment), and — when the machine allows mount
namespaces (root, as in CI containers) — with the deploy root (FAKE_SYSTEMCTL_ROOT, the test's /home/marketing)
mounted read-only except the ReadWritePaths, as ProtectSystem=strict + ProtectHome=read-only + ReadWritePaths do.
User= is not switched (the test user runs everything). Variables named STANDIN_* pass through: they are the
stand-in app's test knobs, not configuration.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fake_systemctl import read_env_file  # noqa: E402 - a sibling script, not a package

FLAGS = {"--wait", "--pipe", "--collect", "--quiet", "-q", "-P", "-G"}


def parse(argv: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """The -p properties (each key with all its values) and the command."""
    props: dict[str, list[str]] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-p", "--property"):
            key, _, value = argv[i + 1].partition("=")
            props.setdefault(key, []).append(value)
            i += 2
        elif arg.startswith("--property="):
            key, _, value = arg.removeprefix("--property=").partition("=")
            props.setdefault(key, []).append(value)
            i += 1
        elif arg in FLAGS or arg.startswith("--service-type="):
            i += 1
        elif arg == "--":
            return props, argv[i + 1 :]
        elif arg.startswith("-"):
            raise SystemExit(f"fake systemd-run: unsupported option {arg}")
        else:
            return props, argv[i:]
    raise SystemExit("fake systemd-run: no command")


def environment(props: dict[str, list[str]]) -> dict[str, str]:
    """What systemd gives the service: a bare PATH, Environment= and EnvironmentFile= (files win)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    env.update({k: v for k, v in os.environ.items() if k.startswith("STANDIN_")})
    for line in props.get("Environment", []):
        for item in shlex.split(line):
            key, _, value = item.partition("=")
            env[key] = value
    for raw in props.get("EnvironmentFile", []):
        optional = raw.startswith("-")
        path = Path(raw.removeprefix("-"))
        if path.is_file():
            env.update(read_env_file(path))
        elif not optional:
            raise SystemExit(f"fake systemd-run: EnvironmentFile {path} is missing (systemd would refuse to start)")
    return env


def sandbox_supported() -> bool:
    """True when this machine lets us build the read-only mount namespace (else the stub runs unsandboxed)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, check=False)
    return probe.returncode == 0


def sandboxed(command: list[str], root: str, writable: list[str], cwd: str) -> list[str]:
    """`command` inside a mount namespace where `root` is read-only except `writable`, started in `cwd`."""
    script = ['mount --bind "$1" "$1" && mount -o remount,bind,ro "$1"']
    for path in writable:
        quoted = shlex.quote(path)
        script.append(f"mount --bind {quoted} {quoted} && mount -o remount,bind,rw {quoted}")
    # cd again: a directory entered before the mounts would still be on the writable mount.
    script.append(f'cd {shlex.quote(cwd)} && shift && exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-ec", " && ".join(script), "sh", root, *command]


def main() -> int:
    """Runs the command the way the unit would."""
    props, command = parse(sys.argv[1:])
    cwd = (props.get("WorkingDirectory") or [os.getcwd()])[-1]
    root = os.environ.get("FAKE_SYSTEMCTL_ROOT", "")
    writable = [p for line in props.get("ReadWritePaths", []) for p in line.split() if Path(p).exists()]
    readonly = props.get("ProtectHome", [""])[-1] == "read-only" or props.get("ProtectSystem", [""])[-1] == "strict"
    if readonly and root and sandbox_supported():
        command = sandboxed(command, root, writable, cwd)
    elif readonly:
        print("fake systemd-run: no mount namespaces here; running without the read-only sandbox", file=sys.stderr)
    return subprocess.run(command, cwd=cwd, env=environment(props), check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
