"""The lock scripts start few processes, and still do exactly what they did.

* On a lab host over SSH, each script runs under ``strace -f`` in dash and in bash: the
  programs it starts are listed exactly (a process that only forks a subshell shows up as a
  pid without an exec and fails the count).
* The holder's ``gen`` and ``expires_epoch`` are read with shell builtins: a property test
  runs the former ``sed | head`` pipelines and the new ``fields`` on the same generated holder
  files (valid ones, missing fields, hostile values, several lines, empty, no file) in both shells.
* The holder is written by the printf builtin, byte for byte what the former here-document
  wrote; a full disk still fails the lock with cat's message and leaves nothing behind.
* bash reads the clock with its printf builtin (no ``date``), in UTC whatever the login user's
  TZ; a bash whose answer is not sane, and every other shell, run the single ``date`` call,
  and its portable fallback stamps the same lease.
* A claim left by a dead script is cleared, a live one is respected.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maintkit import lock_shell, locks
from maintkit.transport.base import quote
from tests.lab.sshd import LabHost, SshLab, chown_login_user

SHELLS = ("dash", "bash")
#: Linux's clock id of the time at the last tick (what time() and bash's ``%(%s)T`` read)
CLOCK_REALTIME_COARSE = 5
#: the former readers of the holder's fields (three processes per call)
OLD_GEN_OF = r"""sed -n 's/.*"gen": "\([0-9a-f][0-9a-f]*\)".*/\1/p' "$L/holder.json" 2>/dev/null | head -n 1"""
OLD_EXPIRES_OF = r"""sed -n 's/.*"expires_epoch": \([0-9][0-9]*\).*/\1/p' "$L/holder.json" 2>/dev/null | head -n 1"""


@pytest.fixture
def lab_host(ssh_lab: SshLab) -> LabHost:
    """The first lab host (the lab logs in as deploy)."""
    return ssh_lab.hosts[0]


def _holder(run_id: str, site: str, lease: int = 600) -> dict[str, Any]:
    return locks.leased({"run_id": run_id, "actor": "ops", "controller": "elsewhere", "pid": 4242}, site, lease)


def _traced(host: LabHost, shell: str, script: str, trace: Path) -> tuple[int, str, list[str], int]:
    """Run ``script`` with ``shell -c`` on ``host`` under strace: exit code, output, programs, pids."""
    t = host.transport()
    try:
        argv = ["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(trace), "--", shell, "-c", script]
        res = t.run_shell(" ".join(quote(a) for a in argv), check=False, timeout=30)
    finally:
        t.close()
    assert trace.is_file(), res.stdout + res.stderr
    lines = trace.read_text().splitlines()
    trace.unlink()
    execs = [ln.split('"')[1].rsplit("/", 1)[-1] for ln in lines if "execve(" in ln and ln.endswith("= 0")]
    return res.exit_code, res.stdout, execs, len({ln.split()[0] for ln in lines})


@pytest.mark.parametrize("shell", SHELLS)
def test_each_lock_script_starts_exactly_these_programs(ssh_lab: SshLab, lab_host: LabHost, shell: str) -> None:
    work = ssh_lab.scratch(lab_host, f"lock-processes-{shell}")
    site = work / "site"
    site.mkdir()
    chown_login_user(site)
    s, trace = str(site), work / "trace"
    mine, other = _holder("run-mine", s), _holder("run-other", s)

    def run(script: str) -> tuple[int, list[str]]:
        code, _out, execs, pids = _traced(lab_host, shell, script, trace)
        assert pids == len(execs), execs  # every process started is a program: no bare subshell
        return code, execs

    date = ["date"] if shell == "dash" else []  # bash reads the clock with its printf builtin
    assert run(locks.peek_script(s)) == (0, [shell])
    assert run(locks.acquire_script(s, mine)) == (0, [shell, "mkdir", *date, "mkdir"])
    assert run(locks.peek_script(s)) == (0, [shell, "cat", "date"])
    assert run(locks.read_script(s)) == (0, [shell, "cat", "date"])
    assert run(locks.acquire_script(s, other)) == (locks.LOCK_EXIT, [shell, *date, "mkdir", "cat"])
    assert run(locks.renew_script(s, mine["gen"], 600)) == (0, [shell, "mkdir", *date, "sed", "mv", "rmdir"])
    assert run(locks.release_script(s, "run-other")) == (locks.LOST_EXIT, [shell])
    claim = ["mkdir"] if shell == "dash" else []  # bash reads the clock: 600 s of lease left, no claim
    assert run(locks.release_script(s, "run-mine")) == (0, [shell, *claim, "rm"])
    assert not (site / ".maint" / "lock").exists()
    assert run(locks.release_script(s, "run-mine")) == (0, [shell])
    assert run(locks.acquire_script(s, mine)) == (0, [shell, *date, "mkdir"])
    assert run(locks.clear_script(s, "run-mine", mine["gen"])) == (0, [shell, "mkdir", "rm"])
    assert run(locks.acquire_script(s, _holder("run-dead", s, lease=0))) == (0, [shell, *date, "mkdir"])
    took = [shell, *date, "mkdir", "mkdir", "cat", "mv", "rmdir"]
    assert run(locks.acquire_script(s, mine)) == (0, took)
    assert json.loads((site / ".maint" / "lock" / "holder.json").read_text())["run_id"] == "run-mine"
    assert sorted(p.name for p in (site / ".maint").iterdir()) == ["lock"]
    assert sorted(p.name for p in (site / ".maint" / "lock").iterdir()) == ["holder.json"]
    assert run(locks.release_script(s, "run-mine")) == (0, [shell, *claim, "rm"])
    # a lease within RELEASE_MARGIN of its end: the release claims first, in every shell
    assert run(locks.acquire_script(s, _holder("run-short", s, lease=locks.RELEASE_MARGIN))) == (
        0,
        [shell, *date, "mkdir"],
    )
    assert run(locks.release_script(s, "run-short")) == (0, [shell, "mkdir", "rm"])
    assert sorted(p.name for p in (site / ".maint").iterdir()) == []


def _fields(shell: str, content: bytes | None) -> list[tuple[str, str]]:
    """(old, new) of gen and of expires_epoch for a holder file of ``content`` (None: no file)."""
    with tempfile.TemporaryDirectory() as d:
        lock = Path(d) / ".maint" / "lock"
        lock.mkdir(parents=True)
        if content is not None:
            (lock / "holder.json").write_bytes(content)
        script = (
            lock_shell.lock_vars(d)
            + f'og=$({OLD_GEN_OF}); oe=$({OLD_EXPIRES_OF}); fields; printf "%s\\n" "$og" "$hg" "$oe" "$he"'
        )
        res = subprocess.run([shell, "-c", script], capture_output=True, check=True)
    assert res.stderr == b""
    og, hg, oe, he = res.stdout.decode().split("\n")[:4]
    return [(og, hg), (oe, he)]


def _hex() -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789abcdefABg", min_size=0, max_size=6)


PIECES = st.one_of(
    st.sampled_from(['"gen": "', '"expires_epoch": ', '"', "\\", "\n", "\r", " ", "}", "{", ", ", "\\n", "é", "\t"]),
    _hex(),
    st.text(alphabet="0123456789", min_size=1, max_size=12),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=8),
    st.builds(lambda g: f'"gen": "{g}"', _hex()),
    st.builds(lambda e: f'"expires_epoch": {e}', st.integers(min_value=0, max_value=10**12)),
    st.builds(
        lambda rid, lease: (
            json.dumps({**_holder(rid, "/srv/x", lease), "expires": "2030-01-01T00:00:00Z"})[:-1]
            + f', "expires_epoch": {1_700_000_000 + lease}}}'
        ),
        st.text(max_size=12),
        st.integers(min_value=0, max_value=10**6),
    ),
)


@pytest.mark.parametrize("shell", SHELLS)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(PIECES, max_size=12))
def test_the_builtin_field_reader_agrees_with_the_former_sed_pipeline(shell: str, parts: list[str]) -> None:
    for old, new in _fields(shell, "".join(parts).encode()):
        assert new == old


@pytest.mark.parametrize("shell", SHELLS)
def test_the_field_reader_on_known_holders(shell: str) -> None:
    gen, exp = '"gen": "', '"expires_epoch": '
    cases: list[tuple[bytes | None, str, str]] = [
        (None, "", ""),
        (b"", "", ""),
        (f'{{"run_id": "r", {gen}0a1b", {exp}17}}\n'.encode(), "0a1b", "17"),
        (f'{{{gen}0a1b", {exp}17}}'.encode(), "0a1b", "17"),  # no final newline
        (f'{gen}0A1b", {exp}x7\n'.encode(), "", ""),  # upper case, no digit
        (f'{gen}ab", {gen}zz", {exp}1, {exp}2x\n'.encode(), "ab", "2"),  # the last valid one in the line
        (f'{gen}{gen}cafe"\n'.encode(), "cafe", ""),  # overlapping keys
        (f"{gen}0{gen}\n".encode(), "0", ""),  # the closing quote opens the next key
        (f'{gen}ab\n"\nx {gen}cd" {exp}9\n{gen}ef"\n'.encode(), "cd", "9"),  # the first line with one
        (f'{gen}ab\\"\n'.encode(), "", ""),
    ]
    for content, want_gen, want_exp in cases:
        assert _fields(shell, content) == [(want_gen, want_gen), (want_exp, want_exp)], content


@contextlib.contextmanager
def _full_tmpfs(path: Path) -> Iterator[Path]:
    """A tiny real file system on ``path``, filled to its last byte (the suite runs as root)."""
    path.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)], capture_output=True)
    assert res.returncode == 0, res.stderr
    try:
        (path / ".maint").mkdir()
        fill = subprocess.run(["dd", "if=/dev/zero", f"of={path}/fill", "bs=4096"], capture_output=True, text=True)
        assert "No space left on device" in fill.stderr
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


@pytest.mark.parametrize("shell", SHELLS)
def test_a_full_disk_fails_the_lock_with_cats_message_and_leaves_nothing(tmp_path: Path, shell: str) -> None:
    with _full_tmpfs(tmp_path / "site") as site:
        script = locks.acquire_script(str(site), _holder("run-full", str(site)))
        res = subprocess.run([shell, "-c", script], capture_output=True, text=True)
        assert (res.returncode, res.stdout, res.stderr) == (
            locks.LOCK_FAILED_EXIT,
            "cat: write error: No space left on device\n",
            "",
        )
        assert sorted(p.name for p in (site / ".maint").iterdir()) == []
        (site / "fill").unlink()
        assert subprocess.run([shell, "-c", script], capture_output=True).returncode == 0


def _stamped(shell: str, site: Path, env: dict[str, str] | None = None, prelude: str = "") -> dict[str, Any]:
    """Take the lock of ``site`` with ``shell`` (``prelude`` first): the holder is exact, its lease UTC."""
    holder = _holder("run-clock", str(site), lease=600)
    # the lower bound is read from the kernel's coarse clock: bash's clock (time()) may be that
    # one, which lags the precise clock by up to a tick, so a precise reading taken first could
    # be a second ahead of the script's; no later reading of either clock is below this one
    before = int(time.clock_gettime(CLOCK_REALTIME_COARSE))
    script = prelude + locks.acquire_script(str(site), holder)
    res = subprocess.run([f"/usr/bin/{shell}", "-c", script], capture_output=True, env=env)
    after = int(time.time())
    assert (res.returncode, res.stdout, res.stderr) == (0, b"", b"")
    raw = (site / ".maint" / "lock" / "holder.json").read_bytes()
    stamped: dict[str, Any] = json.loads(raw)
    assert before + 600 <= stamped["expires_epoch"] <= after + 600
    assert stamped["expires"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamped["expires_epoch"]))
    assert {k: v for k, v in stamped.items() if k not in ("expires", "expires_epoch")} == holder
    # byte for byte what the former here-document wrote: the prefix, the expiry, one newline
    tail = f', "expires": "{stamped["expires"]}", "expires_epoch": {stamped["expires_epoch"]}}}\n'
    assert raw == (json.dumps(holder)[:-1] + tail).encode()
    return stamped


def _date_shim(tmp_path: Path, *, relative: bool) -> tuple[dict[str, str], Path]:
    """A ``date`` first in PATH noting each call (with ``relative=False``: refusing relative dates)."""
    shim = tmp_path / "bin"
    shim.mkdir()
    calls = tmp_path / "calls"
    refuse = "" if relative else 'case "$*" in *seconds*|*-v*) echo "date: invalid date" >&2; exit 1 ;; esac\n'
    (shim / "date").write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$*" >> {quote(str(calls))}\n{refuse}exec /usr/bin/date "$@"\n'
    )
    (shim / "date").chmod(0o755)
    return {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"}, calls


#: in bash: run the lock script as a shell without bash's clock (dash, busybox...) would
NOT_BASH = "unset BASH_VERSION\n"


@pytest.mark.parametrize("shell", SHELLS)
def test_one_date_call_and_its_portable_fallback_stamp_the_same_lease(tmp_path: Path, shell: str) -> None:
    env, calls = _date_shim(tmp_path, relative=False)
    (tmp_path / "a").mkdir()
    _stamped(shell, tmp_path / "a", env=env)
    if shell == "bash":  # bash's own clock: no date at all
        assert not calls.exists()
        nodate = tmp_path / "nodate"  # a PATH with only what taking a free lock runs
        nodate.mkdir()
        for tool in ("mkdir", "mv"):
            (nodate / tool).symlink_to(f"/usr/bin/{tool}")
        (tmp_path / "c").mkdir()
        _stamped(shell, tmp_path / "c", env={**os.environ, "PATH": str(nodate)})
        (tmp_path / "b").mkdir()
        _stamped(shell, tmp_path / "b", env=env, prelude=NOT_BASH)
    # a date without relative dates (neither "-d 'N seconds'" nor BSD's -v): the two former calls
    lines = calls.read_text().splitlines()
    assert [ln.split()[:2] for ln in lines] == [["-u", "-d"], ["-u", "-v+600S"], ["-u", "+%s"], ["-u", "-d"]]
    assert lines[0] == "-u -d 600 seconds +%s %Y-%m-%dT%H:%M:%SZ"
    assert lines[3].startswith("-u -d @")


@pytest.mark.parametrize("tz", ["Asia/Kolkata", "EST5EDT", "XYZ-7", "UTC0"])
def test_bashs_clock_stamps_utc_whatever_the_login_users_tz(tmp_path: Path, tz: str) -> None:
    env, calls = _date_shim(tmp_path, relative=True)
    _stamped("bash", tmp_path, env={**env, "TZ": tz})
    assert not calls.exists()


#: bash shells whose clock answers badly: the sanity checks send the script to ``date``
INSANE = {
    "no digits": 'printf() { if [ "$1" = -v ] && [ "$2" = now ]; then now=17x; return 0; fi; builtin printf "$@"; }\n',
    "no %()T": 'printf() { if [ "$1" = -v ] && [ "$2" = now ]; then return 1; fi; builtin printf "$@"; }\n',
    "TZ ignored": 'printf() { if [ "$1" = -v ] && [ "$2" = iso ]; then iso=2030-01-01T05:30:00+0530; return 0; fi;'
    ' builtin printf "$@"; }\n',
}


@pytest.mark.parametrize("why", sorted(INSANE))
def test_an_insane_bash_clock_falls_back_to_date(tmp_path: Path, why: str) -> None:
    env, calls = _date_shim(tmp_path, relative=True)
    _stamped("bash", tmp_path, env={**env, "TZ": "XYZ-7"}, prelude=INSANE[why])
    assert calls.read_text().splitlines() == ["-u -d 600 seconds +%s %Y-%m-%dT%H:%M:%SZ"]


@pytest.mark.parametrize("shell", SHELLS)
def test_a_dead_scripts_claim_is_cleared_and_a_live_one_respected(tmp_path: Path, shell: str) -> None:
    site = str(tmp_path)
    holder = _holder("run-c", site)
    assert subprocess.run([shell, "-c", locks.acquire_script(site, holder)]).returncode == 0
    claim = tmp_path / ".maint" / "lock" / f"claim.{holder['gen']}"
    claim.mkdir()
    release = locks.release_script(site, "run-c")
    assert subprocess.run([shell, "-c", release], capture_output=True).returncode == locks.LOST_EXIT
    assert claim.is_dir()
    old = time.time() - 120
    os.utime(claim, (old, old))
    res = subprocess.run([shell, "-c", release], capture_output=True)
    assert (res.returncode, res.stdout, res.stderr) == (0, b"", b"")
    assert not (tmp_path / ".maint" / "lock").exists()
