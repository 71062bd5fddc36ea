"""Record every argv a remote command line gives to chosen programs: a PATH shim over SSH.

:func:`argv_shim` writes one shim script per program name into ``<directory>/bin``; each
writes its full argv and environment (NUL-separated) to a fresh file under
``<directory>/calls`` and then ``exec``s the real program. The shims are put first on the
PATH of commands that arrive with a fresh client key, authorized for the login user with a
forced command (``PATH=<bin>:$PATH exec "$SHELL" -c "$SSH_ORIGINAL_COMMAND"``): an environment
whose ``key_file`` is that key runs everything exactly as before, but through the shims.
Nothing is sampled and nothing depends on timing: every call is on disk when it returns.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.lab.sshd import LOGIN_USER, SshLab

_SHIM = """#!/bin/sh
call=$(mktemp {calls}/{name}.XXXXXX) || exit 126
printf '%s\\0' {name} "$@" > "$call.argv"
env -0 > "$call.env"
exec {real} "$@"
"""


@dataclass(frozen=True)
class Call:
    """One recorded call: the program name and its arguments, and its environment."""

    argv: list[str]
    env: dict[str, str]


@dataclass(frozen=True)
class ArgvShim:
    """Where the shims are; ``key_file`` is the client key whose commands go through them."""

    bin_dir: Path
    calls_dir: Path
    key_file: Path

    def calls(self) -> list[Call]:
        """Every call recorded so far, in the order of their file names (not of time)."""
        out = []
        for argv_file in sorted(self.calls_dir.glob("*.argv")):
            argv = argv_file.read_bytes().decode().split("\0")[:-1]
            raw = argv_file.with_suffix(".env").read_bytes().decode().split("\0")[:-1]
            out.append(Call(argv, dict(item.split("=", 1) for item in raw if "=" in item)))
        return out


@contextmanager
def argv_shim(lab: SshLab, directory: Path, names: list[str], user: str = LOGIN_USER) -> Iterator[ArgvShim]:
    """Shims for ``names`` under ``directory``, reached by ``user`` logins with the key it yields.

    The key's line is removed from the lab's authorized keys afterwards.
    """
    bin_dir, calls_dir = directory / "bin", directory / "calls"
    bin_dir.mkdir(parents=True)
    calls_dir.mkdir()
    shutil.chown(calls_dir, user, user)
    for name in names:
        real = shutil.which(name)
        assert real is not None, f"{name} is not installed"
        shim = bin_dir / name
        shim.write_text(_SHIM.format(calls=shlex.quote(str(calls_dir)), name=shlex.quote(name), real=shlex.quote(real)))
        shim.chmod(0o755)
    key = directory / "shim_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "argv-shim", "-f", str(key)], check=True)
    forced = f'PATH={shlex.quote(str(bin_dir))}:"$PATH" exec "$SHELL" -c "$SSH_ORIGINAL_COMMAND"'
    line = f"command={_option_value(forced)} {key.with_suffix('.pub').read_text().strip()}\n"
    authorized = lab.auth_dir / user
    before = authorized.read_text()
    authorized.write_text(before + line)
    try:
        yield ArgvShim(bin_dir, calls_dir, key)
    finally:
        authorized.write_text(authorized.read_text().replace(line, ""))


def _option_value(text: str) -> str:
    """An authorized_keys option value: double-quoted, inner double quotes escaped (sshd
    unescapes only ``\\"``)."""
    assert "\\" not in text, text
    return '"' + text.replace('"', '\\"') + '"'
