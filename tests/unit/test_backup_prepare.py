"""A new backup's folders made in front of the first command that writes (``FolderPrep``), on
this machine's shell: once, before the script, out of its output, and failing as it alone did."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from maintkit.actions.backup.create import BackupJob, write_backup
from maintkit.actions.backup.db import DatabaseSpec
from maintkit.actions.backup.prepare import FolderPrep
from maintkit.errors import CommandFailed
from maintkit.results import CommandResult
from maintkit.testing import make_context
from maintkit.transport.base import quote
from maintkit.transport.local import LocalTransport

HOSTILE = "-b 'q\"uo\\te'\n$(id) *?[ab] ü"


def prep_in(tmp_path: Path) -> tuple[FolderPrep, Path, Path]:
    directory = tmp_path / "one" / HOSTILE
    part = directory / "20260101T000000Z-abcdef.partial"
    ctx = make_context(LocalTransport(), path=str(tmp_path))
    return FolderPrep(ctx, str(directory), str(part)), directory, part


def test_the_folders_go_in_front_of_the_first_script_only(tmp_path: Path) -> None:
    prep, directory, part = prep_in(tmp_path)
    directory.parent.mkdir()
    written = part / "dump"

    res = prep.run_shell(f"printf 'out\\n'; printf x > {quote(str(written))}")

    assert prep.done and res.ok and written.read_text() == "x"
    assert res.stdout == "out\n" and res.stdout_bytes == b"out\n"  # the preparation's line taken out
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700 and stat.S_IMODE(part.stat().st_mode) == 0o700
    later = prep.run_shell("true")
    assert later.command == "true"  # made once: later commands go as they are
    prep.ensure()  # nothing left to do, nothing sent
    assert prep.failure is None


def test_a_clash_fails_as_the_preparation_alone_and_the_script_never_runs(tmp_path: Path) -> None:
    prep, directory, part = prep_in(tmp_path)
    part.mkdir(parents=True)
    (part / "theirs").write_text("kept\n")
    written = tmp_path / "written"

    with pytest.raises(CommandFailed) as failed:
        prep.run_shell(f"touch -- {quote(str(written))}", check=False)

    assert failed.value is prep.failure and not prep.done
    assert failed.value.result.command == prep.command
    assert prep.command == (
        f"mkdir -p -- {quote(str(directory))} && chmod 700 -- {quote(str(directory))} && "
        f"mkdir -m 700 -- {quote(str(part))}"
    )
    assert failed.value.result.exit_code == 1 and "File exists" in failed.value.result.stderr
    assert not written.exists() and [p.name for p in part.iterdir()] == ["theirs"]


def test_ensure_makes_the_folders_when_nothing_was_written(tmp_path: Path) -> None:
    prep, directory, part = prep_in(tmp_path)
    prep.ensure()
    assert prep.done and part.is_dir() and stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_a_script_failing_after_the_folders_fails_as_itself(tmp_path: Path) -> None:
    prep, _, part = prep_in(tmp_path)
    with pytest.raises(CommandFailed) as failed:
        prep.run_shell("echo oops >&2; exit 3")
    assert prep.done and part.is_dir() and prep.failure is None  # the folder is this backup's own
    assert failed.value.result.exit_code == 3 and failed.value.result.stderr == "oops\n"
    assert failed.value.result.command == "echo oops >&2; exit 3"  # the script, as it failed
    res = prep.run_shell("exit 4", check=False)
    assert res.exit_code == 4


class Noting(LocalTransport):
    """This machine's shell, noting every command line it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def _execute(self, line: str, **kwargs: Any) -> CommandResult:
        self.lines.append(line)
        return super()._execute(line, **kwargs)


@pytest.mark.parametrize("priority", ["normal", "low"])
def test_postgresql_makes_the_folders_with_its_dump_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, priority: str
) -> None:
    """``dump_stepwise`` (stand-ins for psql and pg_dump on the PATH): the table reads write
    nothing and go first; the folders go in front of the dump, the first command that writes;
    at low priority pg_dump runs 10 nicer than the caller (it writes its niceness into the dump)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "psql": "#!/bin/sh\ncase $(cat) in *COUNT*) printf '0\\t3\\n';; *) printf 'items\\tBASE TABLE\\t3\\n';; esac\n",
        "pg_dump": "#!/bin/sh\nprintf 'PGDMP dump of items at %s\\n' \"$(nice)\"\n",
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    transport = Noting()
    ctx = make_context(transport, path=str(tmp_path))
    directory = tmp_path / HOSTILE
    job = BackupJob([DatabaseSpec(name="shop", engine="postgresql")], priority=priority)

    manifest = write_backup(ctx, job, str(directory), frozenset({"pg_dump", "pg_restore", "psql"}))

    firsts = [line.split()[0] for line in transport.lines]
    # tables and counts, the folders and the dump, tables and counts again, size and sha256, the manifest
    assert firsts == ["psql", "psql", "mkdir", "psql", "psql", "printf", "umask"]
    assert transport.lines[2].startswith(FolderPrep(ctx, str(directory), f"{manifest.directory}.partial").command)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700 and [p.name for p in directory.iterdir()] == [manifest.id]
    [item] = manifest.items
    dumped = Path(manifest.path(item["file"]))
    niceness = min(os.nice(0) + 10, 19) if priority == "low" else os.nice(0)
    assert dumped.read_text() == f"PGDMP dump of items at {niceness}\n" and item["size"] == dumped.stat().st_size
    assert item["sha256"] == hashlib.sha256(dumped.read_bytes()).hexdigest()
    assert item["tables"] == {"items": {"type": "table", "rows": 3}}
