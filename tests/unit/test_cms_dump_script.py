"""cms.update's dump before an update: ``mariadb-dump | zstd`` (``| gzip -1`` on a host without
zstd) in one pipe, through real shells.

``mariadb-dump`` is a stand-in on PATH here (the lab tests dump real MariaDB databases: see
tests/lab/test_wp_round_trip_failures.py and tests/lab/test_cms_wordpress.py); ``zstd`` and
``gzip`` are the real ones unless a test replaces one. Every case runs with a PATH of its own
(the stand-ins, then links to the programs the script needs), with zstd on it or not. Each shell
the hosts may run the script with (dash as ``sh``, bash) gets the same cases: the dump and the
compression succeed, the dump fails after writing part of its output, the compression fails, the
destination cannot be written; the rollback's restore reads whichever file the dump wrote; and
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

from maintkit.actions.cms.db import DbUndo, _dump_script, restore_script
from maintkit.actions.dumpfile import WROTE_GZ, WROTE_ZST, dump_files, written_file
from tests.hostile_names import hostile_names

SHELLS = [s for s in ("sh", "dash", "bash") if shutil.which(s)]
COMPRESSORS = ["zstd", "gzip"]
#: the programs the script and the stand-ins run, linked into each case's PATH
PROGRAMS = ("cat", "head", "rm", "gzip")
#: what the stand-in dump writes: more than a pipe holds at once (64 KiB), so both sides overlap
SQL = b"".join(b"INSERT INTO `wp_posts` VALUES (%d,'it''s \\\\ a \"post\"');\n" % i for i in range(20000))
#: the path cms.update records for the dump (the file is ``.zst``, or ``.gz`` without zstd)
RECORDED = "database.sql.zst"


def stand_in(bin_dir: Path, name: str, body: str) -> None:
    """An executable ``name`` in ``bin_dir`` running the shell ``body``."""
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def tools_path(base: Path, compressor: str) -> str:
    """``base/bin`` (the stand-ins) then ``base/tools``: links to :data:`PROGRAMS`, and to zstd
    when ``compressor`` is zstd (else the host has none)."""
    tools = base / "tools"
    tools.mkdir()
    for name in (*PROGRAMS, "zstd") if compressor == "zstd" else PROGRAMS:
        real = shutil.which(name)
        assert real is not None, f"{name} is not installed"
        (tools / name).symlink_to(real)
    return f"{base / 'bin'}:{tools}"


def unpack(path: Path) -> bytes:
    """The file decompressed by the program its name says."""
    if path.suffix == ".zst":
        return subprocess.run(["zstd", "-q", "-dc", "--", str(path)], capture_output=True, check=True).stdout
    return gzip.decompress(path.read_bytes())


@pytest.fixture(params=COMPRESSORS)
def host(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A folder with ``bin/`` (stand-ins), ``tools/`` (see :func:`tools_path`), the dump's content
    and a snapshot folder; ``PATH`` file: the PATH of the case."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "PATH").write_text(tools_path(tmp_path, request.param))
    (tmp_path / "snap dir 'x'").mkdir()
    (tmp_path / "dump.sql").write_bytes(SQL)
    return tmp_path


def compressor(host: Path) -> str:
    return "zstd" if (host / "tools" / "zstd").exists() else "gzip"


def run(host: Path, shell: str, dump_body: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The script run by ``shell`` with the stand-in dump; its result and the file it writes
    (``.zst`` with zstd on PATH, else ``.gz``)."""
    stand_in(host / "bin", "mariadb-dump", dump_body)
    recorded = host / "snap dir 'x'" / RECORDED
    script = _dump_script("shop", str(host / "db.cnf"), str(recorded))
    env = {**os.environ, "PATH": (host / "PATH").read_text(), "ARGS": str(host / "args")}
    shell_path = shutil.which(shell)
    assert shell_path is not None
    res = subprocess.run([shell_path, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    zst, gz = dump_files(str(recorded))
    return res, Path(zst if compressor(host) == "zstd" else gz)


@pytest.mark.parametrize("shell", SHELLS)
def test_the_dump_is_compressed_as_it_is_written_into_a_private_file(host: Path, shell: str) -> None:
    res, dest = run(host, shell, f'printf "%s\\n" "$@" > "$ARGS"; cat {host / "dump.sql"}\n')

    wrote = WROTE_ZST if compressor(host) == "zstd" else WROTE_GZ
    assert (res.returncode, res.stdout, res.stderr) == (0, f"{wrote}\n", "")  # which file it wrote
    assert written_file(str(host / "snap dir 'x'" / RECORDED), res.stdout) == str(dest)
    assert unpack(dest) == SQL
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert (host / "args").read_text().splitlines() == [
        f"--defaults-file={host / 'db.cnf'}", "--single-transaction", "--routines", "--triggers", "--hex-blob", "shop",
    ]  # fmt: skip
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]  # no uncompressed copy
    assert dest.name == ("database.sql.zst" if compressor(host) == "zstd" else "database.sql.gz")


@pytest.mark.parametrize("shell", SHELLS)
def test_a_failing_dump_leaves_no_file_and_exits_with_its_status(host: Path, shell: str) -> None:
    body = f'head -c 100000 {host / "dump.sql"}; echo "mariadb-dump: Got error: 1356" >&2; exit 2\n'
    res, dest = run(host, shell, body)

    assert (res.returncode, res.stdout, res.stderr) == (2, "", "mariadb-dump: Got error: 1356\n")
    assert list(dest.parent.iterdir()) == []


@pytest.mark.parametrize("shell", SHELLS)
def test_a_failing_compression_leaves_no_file_and_exits_with_its_status(host: Path, shell: str) -> None:
    name = compressor(host)
    stand_in(host / "bin", name, f'head -c 10 >/dev/null; echo "{name}: No space left on device" >&2; exit 5\n')
    res, dest = run(host, shell, f"cat {host / 'dump.sql'}\n")

    assert res.returncode == 5 and res.stdout == ""
    assert res.stderr == f"{name}: No space left on device\n"  # the dump died of the broken pipe, silently
    assert list(dest.parent.iterdir()) == []


@pytest.mark.parametrize("shell", SHELLS)
def test_both_failing_exit_with_the_compressions_status(host: Path, shell: str) -> None:
    name = compressor(host)
    stand_in(host / "bin", name, f"cat >/dev/null; echo {name} failed >&2; exit 5\n")
    res, dest = run(host, shell, "echo partial; echo dump failed >&2; exit 3\n")

    assert res.returncode == 5 and sorted(res.stderr.splitlines()) == ["dump failed", f"{name} failed"]
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
    dest = snap / "database.sql.zst"  # zstd is on the host's PATH (the suite installs it)
    script = _dump_script(database, str(base / "my cnf"), str(dest))
    env = {**os.environ, "PATH": f"{base / 'bin'}:{os.environ['PATH']}", "ARGS": str(args), "DUMP_OUT": "SQL;\n"}

    ok = subprocess.run(["sh", "-c", script], capture_output=True, env={**env, "DUMP_RC": "0"}, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert written_file(str(dest), ok.stdout.decode()) == str(dest)
    assert args.read_bytes().split(b"\0")[-3:] == [b"--hex-blob", os.fsencode(database), b""]
    assert unpack(dest) == b"SQL;\n"
    failed = subprocess.run(["sh", "-c", script], capture_output=True, env={**env, "DUMP_RC": "3"}, timeout=60)
    assert failed.returncode == 3
    assert sorted(p.name for p in snap.iterdir()) == ["other file"]  # only the dump's file removed
    assert sorted(p.name for p in base.iterdir()) == sorted(["args", "bin", folder])  # nothing else written


@pytest.mark.parametrize("shell", SHELLS)
def test_the_rollback_loads_whichever_file_the_dump_wrote(host: Path, shell: str) -> None:
    """The restore reads ``.zst`` when the dump wrote one, else ``.gz`` (a host without zstd, or
    a dump written before zstd), whichever of the two names the record holds, into the client
    byte for byte, and
    leaves no decompressed copy; a damaged file fails with exit 3 before the client runs."""
    res, dest = run(host, shell, f"cat {host / 'dump.sql'}\n")
    assert res.returncode == 0, res.stderr
    stand_in(host / "bin", "mariadb", 'cat > "$ARGS.loaded"; printf "%s\\n" "$@" > "$ARGS"\n')
    env = {**os.environ, "PATH": (host / "PATH").read_text(), "ARGS": str(host / "args")}
    shell_path = shutil.which(shell)
    assert shell_path is not None
    recorded = [str(dest), str(dest.parent / RECORDED)]  # the file written, as records name it now
    for path in recorded:  # and the path the records of the previous release named for both files
        undo = DbUndo("shop", path, str(host / "db.cnf"), ["wp_posts"])
        loaded = subprocess.run([shell_path, "-c", restore_script(undo)], capture_output=True, env=env, timeout=60)
        assert loaded.returncode == 0, loaded.stderr
        assert (host / "args.loaded").read_bytes() == SQL
        assert (host / "args").read_text().splitlines() == [
            f"--defaults-file={host / 'db.cnf'}", "--default-character-set=utf8mb4", "shop",
        ]  # fmt: skip
        assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]
        (host / "args.loaded").unlink()
    dest.write_bytes(dest.read_bytes()[:200])  # truncated
    undo = DbUndo("shop", str(dest.parent / RECORDED), None, [])
    broken = subprocess.run([shell_path, "-c", restore_script(undo)], capture_output=True, env=env, timeout=60)
    assert broken.returncode == 3 and not (host / "args.loaded").exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]


def test_one_recorded_path_stands_for_a_zst_and_a_gz_file() -> None:
    assert dump_files("/s/x/database.sql.zst") == ("/s/x/database.sql.zst", "/s/x/database.sql.gz")
    assert dump_files("/s/x/database.sql.gz") == ("/s/x/database.sql.zst", "/s/x/database.sql.gz")  # an older record
    assert dump_files("/s/x/dump") == ("/s/x/dump.zst", "/s/x/dump.gz")
