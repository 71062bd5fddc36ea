"""The git state backend against real remotes: a bare repository served by a lab sshd, and one
served over HTTP by ``git http-backend`` behind Basic token authentication.

Two controllers are two stores with separate state folders (nothing local shared). They clone,
publish and pull each other's run folders byte for byte; the files they check out are
readable by the owner only; two processes publishing at the same moment for 20 rounds lose
no commit; a token authenticates without ever reaching ``.git/config``, a file or an error.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from maintkit.errors import StateError
from maintkit.state.git import GitStore
from maintkit.state.select import open_store, parse_spec
from tests.lab.git_remote import GitRemote, HttpGitServer, basic_header, ssh_git_remote
from tests.lab.sshd import LabHost

pytestmark = pytest.mark.lab

START = "maint state: start maint-state"
#: bytes a text-mode checkout would change: CRLF, a lone CR, no final newline, not UTF-8
EVENTS = b'{"seq": 1, "event": "run.started"}\r\n{"seq": 2}\rtail\xff\xfe'


@pytest.fixture
def remote(ssh_hosts: list[tuple[LabHost, Path]]) -> GitRemote:
    host, scratch = ssh_hosts[0]
    return ssh_git_remote(host, scratch)


def _store(remote: GitRemote, state_dir: Path, **extra: object) -> GitStore:
    return GitStore(remote.options(**extra), state_dir=state_dir, environ={})


def _write_run(root: Path, run_id: str, events: bytes = EVENTS) -> Path:
    """A run folder as the runner leaves it (files created 0644 here: the clone must not care)."""
    folder = root / "runs" / run_id
    (folder / "locks").mkdir(parents=True)
    (folder / "events.jsonl").write_bytes(events)
    (folder / "summary.json").write_text(json.dumps({"run_id": run_id}) + "\n")
    (folder / "locks" / "shop.json").write_text('{"packages": {}}\n')
    for path in folder.rglob("*"):
        path.chmod(0o644 if path.is_file() else 0o755)
    return folder


def _tree(root: Path) -> dict[str, bytes]:
    """Every file of a clone except git's own, relative path -> bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(root).parts[:1]
    }


def _modes(root: Path) -> dict[str, int]:
    """Permission bits of the clone and everything in it except ``.git``."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for p in root.rglob("*"):
        if p.relative_to(root).parts[0] != ".git":
            found[str(p.relative_to(root))] = stat.S_IMODE(p.lstat().st_mode)
    return found


def test_two_controllers_publish_and_pull_byte_for_byte(remote: GitRemote, tmp_path: Path) -> None:
    a = _store(remote, tmp_path / "a")
    b = _store(remote, tmp_path / "b")
    a.pull()  # the remote has no branch yet: reading creates nothing, here or there
    assert remote.git("for-each-ref") == ""
    assert sorted(p.name for p in a.root.iterdir()) == [".git"]

    _write_run(a.root, "R1")
    a.publish([a.root / "runs" / "R1"], "run R1")  # the first publish starts the branch
    a.publish([a.root / "runs" / "R1"], "run R1 again")  # nothing changed: no commit
    assert remote.subjects() == [START, "run R1"]
    assert remote.git("show", "refs/heads/maint-state:.gitattributes") == "* -text\n"

    b.pull()
    assert _tree(b.root) == _tree(a.root)
    assert (b.root / "runs/R1/events.jsonl").read_bytes() == EVENTS
    modes = _modes(b.root)
    assert {k: v for k, v in modes.items() if v not in (0o600, 0o700)} == {}
    assert modes["."] == modes["runs"] == modes["runs/R1"] == 0o700
    assert modes["runs/R1/events.jsonl"] == 0o600
    assert stat.S_IMODE((tmp_path / "b" / "stores").stat().st_mode) == 0o700

    # B adds a run and appends to A's events (a file changed, not only added); A pulls both
    _write_run(b.root, "R2")
    with open(b.root / "runs/R1/events.jsonl", "ab") as fh:
        fh.write(b'\n{"seq": 3}\n')
    b.publish([b.root / "runs/R2", b.root / "runs/R1/events.jsonl"], "run R2")
    a.pull()
    assert _tree(a.root) == _tree(b.root)
    assert (a.root / "runs/R1/events.jsonl").read_bytes() == EVENTS + b'\n{"seq": 3}\n'
    assert remote.subjects() == [START, "run R1", "run R2"]
    a.pull()  # nothing new: nothing changes
    assert remote.subjects() == [START, "run R1", "run R2"]
    assert _tree(a.root) == _tree(b.root)


def test_publish_adds_only_the_paths_given_and_rebases_behind_a_rejected_push(
    remote: GitRemote, tmp_path: Path
) -> None:
    a = _store(remote, tmp_path / "a")
    b = _store(remote, tmp_path / "b")
    a.pull()
    b.pull()
    _write_run(a.root, "RA")
    (a.root / "scratch.tmp").write_text("not for the store\n")
    a.publish([a.root / "runs/RA"], "run RA")
    _write_run(b.root, "RB")  # B has not seen RA: its push is rejected, then rebased and retried
    b.publish([b.root / "runs/RB"], "run RB")

    assert remote.subjects() == [START, "run RA", "run RB"]
    assert remote.git("rev-list", "--merges", "refs/heads/maint-state") == ""  # linear history
    files = remote.git("ls-tree", "-r", "--name-only", "refs/heads/maint-state").split()
    assert "scratch.tmp" not in files
    assert sorted(f for f in files if f.startswith("runs/")) == sorted(
        f"runs/{r}/{n}" for r in ("RA", "RB") for n in ("events.jsonl", "summary.json", "locks/shop.json")
    )
    assert sorted(p.name for p in (b.root / "runs").iterdir()) == ["RA", "RB"]  # B's clone got RA too


def test_rebase_never_swaps_a_file_a_run_is_still_writing(remote: GitRemote, tmp_path: Path) -> None:
    a = _store(remote, tmp_path / "a")
    b = _store(remote, tmp_path / "b")
    events = a.root / "runs/RA/events.jsonl"
    events.parent.mkdir(parents=True)
    with open(events, "ab", buffering=0) as log:  # the run's open audit log
        log.write(b'{"seq": 1}\n')
        a.publish([events.parent], "RA stage 1")
        inode = events.stat().st_ino
        _write_run(b.root, "RB")
        b.publish([b.root / "runs/RB"], "run RB")  # A is now behind
        log.write(b'{"seq": 2}\n')
        (a.root / "runs/RA/summary.json").write_text("{}\n")
        # events.jsonl has unpublished changes while A's push is rejected and rebased
        a.publish([a.root / "runs/RA/summary.json"], "RA summary")
        log.write(b'{"seq": 3}\n')
        assert events.stat().st_ino == inode
        a.publish([events.parent], "RA end")
    assert events.read_bytes() == b'{"seq": 1}\n{"seq": 2}\n{"seq": 3}\n'
    assert remote.subjects() == [START, "RA stage 1", "run RB", "RA summary", "RA end"]
    assert remote.git("show", "refs/heads/maint-state:runs/RA/events.jsonl") == '{"seq": 1}\n{"seq": 2}\n{"seq": 3}\n'
    assert remote.git("show", "refs/heads/maint-state~1:runs/RA/events.jsonl") == '{"seq": 1}\n'


def test_jsonl_both_sides_appended_keeps_both(remote: GitRemote, tmp_path: Path) -> None:
    a = _store(remote, tmp_path / "a")
    b = _store(remote, tmp_path / "b")
    a.pull()
    series = Path("index/shop/production/certs.jsonl")
    (a.root / series).parent.mkdir(parents=True)
    (a.root / series).write_text('{"n": 1}\n')
    a.publish([a.root / series], "cert 1")
    b.pull()
    with open(a.root / series, "a") as fh:
        fh.write('{"n": 2, "from": "a"}\n')
    a.publish([a.root / series], "cert 2 a")
    with open(b.root / series, "a") as fh:
        fh.write('{"n": 2, "from": "b"}\n')
    b.publish([b.root / series], "cert 2 b")  # rejected, then both appends kept
    a.pull()
    expected = '{"n": 1}\n{"n": 2, "from": "a"}\n{"n": 2, "from": "b"}\n'
    assert (a.root / series).read_text() == (b.root / series).read_text() == expected
    assert remote.subjects() == [START, "cert 1", "cert 2 a", "cert 2 b"]


_WORKER = r"""
import json, sys
from pathlib import Path
from maintkit.state.git import GitStore

options, name, rounds, state_dir = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
store = GitStore(options, state_dir=state_dir, environ={})
store.pull()
print("ready", flush=True)
for i in range(rounds):
    assert sys.stdin.readline() == "go\n"
    folder = store.root / "runs" / f"{name}-{i:02d}"
    folder.mkdir(parents=True)
    (folder / "events.jsonl").write_text(f'{{"run": "{name}-{i:02d}", "seq": 1}}\n')
    (folder / "summary.json").write_text(f'{{"status": "ok", "round": {i}}}\n')
    store.publish([folder], f"{name} round {i}")
    print(f"done {i}", flush=True)
"""


def _worker(remote: GitRemote, name: str, rounds: int, state_dir: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", _WORKER, json.dumps(remote.options()), name, str(rounds), str(state_dir)]
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])  # fmt: skip


def test_two_processes_publishing_at_once_lose_no_commit(remote: GitRemote, tmp_path: Path) -> None:
    rounds = 20
    # the remote has no branch: in round 0 both start it, one wins, the other's start is dropped
    procs = {n: _worker(remote, n, rounds, tmp_path / n) for n in ("left", "right")}
    try:
        for proc in procs.values():
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        for i in range(rounds):  # a barrier per round: both publish at the same moment
            for proc in procs.values():
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            for proc in procs.values():
                assert proc.stdout is not None and proc.stdout.readline() == f"done {i}\n"
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.close()
            assert proc.wait(60) == 0
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    subjects = remote.subjects()
    assert len(subjects) == 1 + 2 * rounds
    assert sorted(subjects[1:]) == sorted(f"{n} round {i}" for n in procs for i in range(rounds))
    assert remote.git("rev-list", "--merges", "refs/heads/maint-state") == ""
    reader = _store(remote, tmp_path / "reader")
    reader.pull()
    tree = _tree(reader.root)
    for name in procs:
        for i in range(rounds):
            run = f"runs/{name}-{i:02d}"
            assert tree.pop(f"{run}/events.jsonl") == f'{{"run": "{name}-{i:02d}", "seq": 1}}\n'.encode()
            assert tree.pop(f"{run}/summary.json") == f'{{"status": "ok", "round": {i}}}\n'.encode()
    assert tree == {".gitattributes": b"* -text\n"}


def _all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


def test_https_token_authenticates_and_is_never_stored_or_shown(tmp_path: Path) -> None:
    token = "ghs_" + os.urandom(18).hex()
    header = basic_header("x-access-token", token)
    served = tmp_path / "served"
    subprocess.run(["git", "init", "-q", "--bare", str(served / "state.git")], check=True,
                   env={**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null"})  # fmt: skip
    with HttpGitServer(served, token) as server:
        spec = parse_spec(json.dumps({"backend": "git", "remote": server.url("state.git"), "token_env": "TOK"}), "t")
        store = open_store(spec, state_dir=tmp_path / "state", environ={"TOK": token})
        _write_run(store.root, "R1")
        store.publish([store.root / "runs/R1"], "run R1")
        assert set(server.seen_auth) == {header}  # every request carried the token, and only it

        wrong = open_store(spec, state_dir=tmp_path / "wrong", environ={"TOK": token[:-4] + "0000"})
        with pytest.raises(StateError) as err:
            wrong.pull()
    remote = GitRemote(served / "state.git", server.url("state.git"))
    assert remote.subjects() == [START, "run R1"]
    message = str(err.value)
    assert message.startswith(f"git ls-remote failed for {server.url('state.git')}#maint-state: ")
    for secret in (token, token[:-4], header, header.split()[1]):
        assert secret not in message
        assert secret.encode() not in _all_bytes(tmp_path / "state")
        assert secret.encode() not in _all_bytes(tmp_path / "wrong")
    config = (store.root / ".git" / "config").read_text()
    assert f"url = {server.url('state.git')}\n" in config
    assert "extraheader" not in config.lower()


def test_unreachable_https_remote_error_names_no_token(tmp_path: Path) -> None:
    token = "ghp_" + os.urandom(18).hex()
    store = GitStore(
        {"remote": "https://127.0.0.1:9/acme/state.git", "token_env": "TOK"},
        state_dir=tmp_path / "state",
        environ={"TOK": token},
    )
    with pytest.raises(StateError) as err:
        store.pull()
    assert str(err.value).startswith("git ls-remote failed for https://127.0.0.1:9/acme/state.git#maint-state: ")
    assert token not in str(err.value)
    assert token.encode() not in _all_bytes(tmp_path / "state")
