"""``file.content`` writes a new file with two programs, and a planted temporary name stops it.

* On a lab host over SSH, the change script of ``file.content`` runs under ``strace -f`` in dash
  and in bash: a new 0644 file starts exactly ``cat`` and ``mv`` (``chmod`` joins them for
  0755); the file ends with the exact content and mode, nothing else is left in its
  directory, and a second run changes nothing.
* While it is written, the temporary file already has its final permissions (never more),
  so a secret written 0600 is 0600 from its first byte.
* Anything already at the temporary name (a regular file, a symlink to a file outside, a
  dangling symlink, a FIFO) fails the write: the target, the planted name and the file the
  link points to stay exactly as they were. Without the builtin test in front, noclobber alone
  refuses the first three in both shells (a FIFO it would open: that is what the test is for).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from maintkit.actions import file as file_actions
from maintkit.inventory import Environment
from maintkit.results import RunResult, SiteStatus, StepStatus
from maintkit.transport.base import Transport, join
from maintkit.transport.factory import transport_for
from tests.lab.sshd import LabHost, SshLab, chown_login_user
from tests.runs import one_site, run, write_inventory

SHELLS = ("dash", "bash")
TOKEN = "0123456789abcdef01234567"
TMP_NAME = f".maint-{TOKEN}"
PLAYBOOK = """\
name: put
stages:
  - env: production
    steps:
      - {id: put, action: file.content, with: {path: "{{ vars.file }}", content: "{{ vars.body }}", mode: "%s"}}
"""
BODY = "line one\nsecond 'line' $HOME\n"
KINDS = ("regular file", "symlink to a file outside", "dangling symlink", "fifo")


@pytest.fixture
def lab_host(ssh_lab: SshLab) -> LabHost:
    """The first lab host (the lab logs in as deploy)."""
    return ssh_lab.hosts[0]


@pytest.fixture
def fixed_token(monkeypatch: pytest.MonkeyPatch) -> str:
    """Every temporary name of ``file.content`` is ``.maint-`` + :data:`TOKEN`."""
    monkeypatch.setattr(file_actions, "_tmp_token", lambda: TOKEN)
    return TOKEN


class Traced:
    """A real transport running each script that writes through :data:`TOKEN` under strace."""

    def __init__(self, inner: Transport, shell: str, trace: Path) -> None:
        self.inner, self.shell, self.trace = inner, shell, trace
        self.host = inner.host

    def run_shell(self, script: str, **kwargs: Any) -> Any:
        if TOKEN in script:
            syscalls = "trace=execve,clone,clone3,fork,vfork"
            argv = ["strace", "-f", "-qq", "-e", syscalls, "-o", str(self.trace), "--", self.shell, "-c", script]
            script = join(argv)
        return self.inner.run_shell(script, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _factory(shell: str, trace: Path) -> Callable[[Environment], Any]:
    return lambda env: Traced(transport_for(env, {}), shell, trace)


_CHILD = re.compile(r"^(\d+)\s+(?:<\.\.\. )?(?:clone3?|v?fork)\b.*= (\d+)$")


def change_script_programs(trace: Path) -> list[str]:
    """The programs started by the batch's first subshell (the change script), in order."""
    lines = trace.read_text().splitlines()
    top = lines[0].split()[0]
    children: dict[str, list[str]] = {}
    for line in lines:
        m = _CHILD.match(line)
        if m:
            children.setdefault(m.group(1), []).append(m.group(2))
    ours, todo = set(), list(children[top][:1])
    while todo:
        pid = todo.pop()
        ours.add(pid)
        todo += children.get(pid, [])
    started, programs = {}, []
    for line in lines:  # an execve may be split in two lines ("<unfinished ...>", "<... execve resumed>")
        pid = line.split()[0]
        if "execve(" in line:
            started[pid] = line.split('"')[1].rsplit("/", 1)[-1]
        if ("execve(" in line or "<... execve resumed>" in line) and line.endswith("= 0") and pid in ours:
            programs.append(started[pid])
    return programs


def _workspace(ssh_lab: SshLab, lab_host: LabHost, label: str) -> Path:
    """A scratch directory with ``site`` (the environment) and ``d`` (the file's folder), both the login user's."""
    work = ssh_lab.scratch(lab_host, label)
    for sub in ("site", "d"):
        (work / sub).mkdir()
        chown_login_user(work / sub)
    return work


def _run_put(host: LabHost, work: Path, target: Path, mode: str, **kw: Any) -> RunResult:
    env = host.env(work / "site", vars={"file": str(target), "body": BODY})
    return run(PLAYBOOK % mode, write_inventory(work, one_site(env)), work / "state", **kw)


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(("mode", "programs"), [("0644", ["cat", "mv"]), ("0755", ["cat", "chmod", "mv"])])
def test_a_new_file_is_written_by_cat_and_mv_only(
    ssh_lab: SshLab, lab_host: LabHost, fixed_token: str, shell: str, mode: str, programs: list[str]
) -> None:
    work = _workspace(ssh_lab, lab_host, f"put-{shell}-{mode}")
    target, trace = work / "d" / "new.conf", work / "trace"
    first = _run_put(lab_host, work, target, mode, transport_factory=_factory(shell, trace))
    assert first.ok and first.changed == 1, first.sites[0].error
    assert change_script_programs(trace) == programs
    assert target.read_bytes() == BODY.encode()
    assert stat.S_IMODE(target.stat().st_mode) == int(mode, 8)
    assert sorted(os.listdir(work / "d")) == ["new.conf"]
    trace.unlink()
    second = _run_put(lab_host, work, target, mode, transport_factory=_factory(shell, trace))
    assert second.ok and second.changed == 0, second.sites[0].error
    assert [s.status for s in second.sites[0].steps] == [StepStatus.UNCHANGED]
    assert not trace.exists()  # nothing was written the second time


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o400, 0o644, 0o700, 0o755, 0o2750, 0o4755])
def test_the_file_being_written_never_has_more_permissions_than_its_mode(
    tmp_path: Path, fixed_token: str, shell: str, mode: int
) -> None:
    target, tmp = tmp_path / "secret", tmp_path / TMP_NAME
    proc = subprocess.Popen(
        [shell, "-c", file_actions.put_script(str(target), mode)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(b"half ")
        proc.stdin.flush()
        assert _wait_for(lambda: tmp.is_file() and tmp.read_bytes() == b"half ", proc), "never held the first half"
        assert stat.S_IMODE(tmp.stat().st_mode) == mode & 0o666
        assert proc.communicate(b"secret\n", timeout=30) == (b"", b"")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert target.read_bytes() == b"half secret\n"
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert os.listdir(tmp_path) == ["secret"]


def _wait_for(cond: Callable[[], bool], proc: subprocess.Popen[bytes], limit: float = 30.0) -> bool:
    """Poll ``cond`` until it holds (True), or the process ends or ``limit`` seconds pass (False)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if cond():
            return True
        if proc.poll() is not None:
            return cond()
        os.sched_yield()
    return False


@pytest.fixture
def planted(tmp_path: Path) -> Iterator[Callable[[Path, str], Callable[[], Any]]]:
    """Plant ``kind`` at ``dir/.maint-TOKEN`` (the file outside is ``tmp_path/outside``); returns a
    function giving the exact state of the planted name and the outside file (to compare)."""
    outside = tmp_path / "outside"
    outside.write_bytes(b"outside, keep\n")

    def plant(d: Path, kind: str) -> Callable[[], Any]:
        name = d / TMP_NAME
        if kind == "regular file":
            name.write_bytes(b"planted\n")
        elif kind == "symlink to a file outside":
            name.symlink_to(outside)
        elif kind == "dangling symlink":
            name.symlink_to(d / "nowhere")
        else:
            os.mkfifo(name)

        def state() -> Any:
            st = os.lstat(name)
            what = os.readlink(name) if stat.S_ISLNK(st.st_mode) else None
            body = name.read_bytes() if stat.S_ISREG(st.st_mode) else None
            return (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), what, body, outside.read_bytes())

        return state

    yield plant


def _put(shell: str, script: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([shell, "-c", script], input=b"new\n", capture_output=True, timeout=30)


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("existing", [False, True])
def test_a_planted_temporary_name_fails_the_write_and_is_left_alone(
    tmp_path: Path, fixed_token: str, planted: Any, shell: str, kind: str, existing: bool
) -> None:
    d = tmp_path / "d"
    d.mkdir()
    target = d / "target"
    if existing:
        target.write_bytes(b"old\n")
    state = planted(d, kind)
    before = state()
    res = _put(shell, file_actions.put_script(str(target), 0o644))
    assert (res.returncode, res.stdout, res.stderr) == (
        1,
        b"",
        f"{d / TMP_NAME}: exists already, nothing written\n".encode(),
    )
    assert state() == before
    assert (target.read_bytes() if existing else target.exists()) == (b"old\n" if existing else False)
    assert sorted(os.listdir(d)) == sorted([TMP_NAME, *(["target"] if existing else [])])


#: what each shell says when noclobber alone refuses a name (the open fails, nothing is written)
NOCLOBBER = {
    "dash": "dash: 3: cannot create {tmp}: File exists\n",  # dash: the line of the redirection
    "bash": "bash: line 4: {tmp}: cannot overwrite existing file\n",  # bash: the last line of the command
}


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("kind", KINDS[:3])
def test_noclobber_alone_refuses_a_file_or_any_symlink(
    tmp_path: Path, fixed_token: str, planted: Any, shell: str, kind: str
) -> None:
    d = tmp_path / "d"
    d.mkdir()
    target = d / "target"
    state = planted(d, kind)
    before = state()
    script = file_actions.put_script(str(target), 0o600)
    check = 'if [ -e "$tmp" ] || [ -L "$tmp" ]; then'
    assert script.count(check) == 1
    res = _put(shell, script.replace(check, "if false; then"))
    assert (res.returncode, res.stdout, res.stderr) == (1, b"", NOCLOBBER[shell].format(tmp=d / TMP_NAME).encode())
    assert state() == before
    assert not target.exists() and not (d / "nowhere").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_file_content_over_ssh_fails_on_a_planted_name_and_writes_once_it_is_gone(
    ssh_lab: SshLab, lab_host: LabHost, fixed_token: str, planted: Any, kind: str
) -> None:
    work = _workspace(ssh_lab, lab_host, f"put-planted-{kind}")
    d = work / "d"
    target = d / "app.conf"
    target.write_bytes(b"old\n")
    chown_login_user(target)
    state = planted(d, kind)
    before = state()
    failed = _run_put(lab_host, work, target, "0640")
    site = failed.sites[0]
    assert failed.exit_code == 1 and site.status is SiteStatus.ROLLED_BACK, site.error
    assert [s.status for s in site.steps] == [StepStatus.FAILED]
    assert site.steps[0].error == f"apply: {target}: {d / TMP_NAME}: exists already, nothing written"
    assert (state(), target.read_bytes()) == (before, b"old\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    (d / TMP_NAME).unlink()
    done = _run_put(lab_host, work, target, "0640")
    assert done.ok and done.changed == 1, done.sites[0].error
    assert (target.read_bytes(), stat.S_IMODE(target.stat().st_mode)) == (BODY.encode(), 0o640)
    assert sorted(os.listdir(d)) == ["app.conf"]
