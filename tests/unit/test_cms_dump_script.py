"""cms.update's dump before an update: ``mariadb-dump | gzip -1`` in one pipe, through real shells.

``mariadb-dump`` is a stand-in on PATH here (the lab tests dump real MariaDB databases: see
tests/lab/test_wp_round_trip_failures.py and tests/lab/test_cms_wordpress.py); ``gzip`` is the
real one unless a test replaces it. Each shell the hosts may run the script with (dash as
``sh``, bash) gets the same cases: the dump and the compression succeed, the dump fails after
writing part of its output, the compression fails, the destination cannot be written; and
hostile folder and database names (hypothesis) reach the dump as one argument each.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from maintkit.actions.cms.db import _dump_script
from tests.hostile_names import hostile_names

SHELLS = [s for s in ("sh", "dash", "bash") if shutil.which(s)]
#: what the stand-in dump writes: more than a pipe holds at once (64 KiB), so both sides overlap
SQL = b"".join(b"INSERT INTO `wp_posts` VALUES (%d,'it''s \\\\ a \"post\"');\n" % i for i in range(20000))


def stand_in(bin_dir: Path, name: str, body: str) -> None:
    """An executable ``name`` in ``bin_dir`` running the shell ``body``."""
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.fixture()
def host(tmp_path: Path) -> Path:
    """A folder with ``bin/`` (stand-ins, first on PATH), the dump's content and a snapshot folder."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "snap dir 'x'").mkdir()
    (tmp_path / "dump.sql").write_bytes(SQL)
    return tmp_path


def run(host: Path, shell: str, dump_body: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The script run by ``shell`` with the stand-in dump; its result and the destination."""
    stand_in(host / "bin", "mariadb-dump", dump_body)
    dest = host / "snap dir 'x'" / "database.sql.gz"
    script = _dump_script("shop", str(host / "db.cnf"), str(dest))
    env = {**os.environ, "PATH": f"{host / 'bin'}:{os.environ['PATH']}", "ARGS": str(host / "args")}
    return subprocess.run([shell, "-c", script], capture_output=True, text=True, env=env, timeout=60), dest


@pytest.mark.parametrize("shell", SHELLS)
def test_the_dump_is_compressed_as_it_is_written_into_a_private_file(host: Path, shell: str) -> None:
    res, dest = run(host, shell, f'printf "%s\\n" "$@" > "$ARGS"; cat {host / "dump.sql"}\n')

    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    assert gzip.decompress(dest.read_bytes()) == SQL
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert (host / "args").read_text().splitlines() == [
        f"--defaults-file={host / 'db.cnf'}", "--single-transaction", "--routines", "--triggers", "--hex-blob", "shop",
    ]  # fmt: skip
    assert sorted(p.name for p in dest.parent.iterdir()) == ["database.sql.gz"]  # no uncompressed copy


@pytest.mark.parametrize("shell", SHELLS)
def test_a_failing_dump_leaves_no_file_and_exits_with_its_status(host: Path, shell: str) -> None:
    body = f'head -c 100000 {host / "dump.sql"}; echo "mariadb-dump: Got error: 1356" >&2; exit 2\n'
    res, dest = run(host, shell, body)

    assert (res.returncode, res.stdout, res.stderr) == (2, "", "mariadb-dump: Got error: 1356\n")
    assert list(dest.parent.iterdir()) == []


@pytest.mark.parametrize("shell", SHELLS)
def test_a_failing_compression_leaves_no_file_and_exits_with_its_status(host: Path, shell: str) -> None:
    stand_in(host / "bin", "gzip", 'head -c 10 >/dev/null; echo "gzip: No space left on device" >&2; exit 5\n')
    res, dest = run(host, shell, f"cat {host / 'dump.sql'}\n")

    assert res.returncode == 5 and res.stdout == ""
    assert res.stderr == "gzip: No space left on device\n"  # the dump died of the broken pipe, silently
    assert list(dest.parent.iterdir()) == []


@pytest.mark.parametrize("shell", SHELLS)
def test_both_failing_exit_with_the_compressions_status(host: Path, shell: str) -> None:
    stand_in(host / "bin", "gzip", "cat >/dev/null; echo gzip failed >&2; exit 5\n")
    res, dest = run(host, shell, "echo partial; echo dump failed >&2; exit 3\n")

    assert res.returncode == 5 and sorted(res.stderr.splitlines()) == ["dump failed", "gzip failed"]
    assert list(dest.parent.iterdir()) == []


@pytest.mark.parametrize("shell", SHELLS)
def test_an_unwritable_destination_fails_and_writes_nothing(host: Path, shell: str) -> None:
    if os.geteuid() == 0:  # root writes anywhere: a missing folder instead
        shutil.rmtree(host / "snap dir 'x'")
    else:
        (host / "snap dir 'x'").chmod(0o500)
    res, dest = run(host, shell, f"cat {host / 'dump.sql'}\n")

    assert res.returncode != 0 and res.stdout == ""
    assert not dest.exists()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(folder=hostile_names(), database=hostile_names(newline=False))
def test_hostile_names_reach_the_dump_as_one_argument_each(tmp_path: Path, folder: str, database: str) -> None:
    """A snapshot folder and a database name a shell would get wrong: the dump gets both as they
    are, the file lands exactly there, and a failure removes only that file."""
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    (base / "bin").mkdir()
    snap = base / folder
    snap.mkdir()
    (snap / "other file").write_text("not the dump's\n")
    args = base / "args"
    stand_in(
        base / "bin",
        "mariadb-dump",
        'for a in "$@"; do printf "%s\\0" "$a"; done > "$ARGS"; printf "%s" "$DUMP_OUT"; exit "$DUMP_RC"\n',
    )
    dest = snap / "database.sql.gz"
    script = _dump_script(database, str(base / "my cnf"), str(dest))
    env = {**os.environ, "PATH": f"{base / 'bin'}:{os.environ['PATH']}", "ARGS": str(args), "DUMP_OUT": "SQL;\n"}

    ok = subprocess.run(["sh", "-c", script], capture_output=True, env={**env, "DUMP_RC": "0"}, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert args.read_bytes().split(b"\0")[-3:] == [b"--hex-blob", os.fsencode(database), b""]
    assert gzip.decompress(dest.read_bytes()) == b"SQL;\n"
    failed = subprocess.run(["sh", "-c", script], capture_output=True, env={**env, "DUMP_RC": "3"}, timeout=60)
    assert failed.returncode == 3
    assert sorted(p.name for p in snap.iterdir()) == ["other file"]  # only the dump's file removed
    assert sorted(p.name for p in base.iterdir()) == sorted(["args", "bin", folder])  # nothing else written
