"""maintkit does what it was told, whatever dotfiles the users on the machine have.

The session plants hostile dotfiles (``tests/hostile_dotfiles.py``, fixture in
``tests/conftest.py``); the lab tests that use MariaDB, git and SSH pass with them. This
module checks the plant itself (in place, restored exactly, shared between sessions, a
killed session's plant repaired) and the product's side where it is cheap to show directly.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr

from maintkit.actions.backup.db import DatabaseSpec, DbClient
from maintkit.actions.deploy import GIT_ENV
from maintkit.actions.mariadb import client_argv
from maintkit.transport.ssh import SSHTransport
from tests.hostile_dotfiles import HOSTILE, MARK, Home, Plant, hostile_dotfiles
from tests.lab.sshd import SshLab

pytestmark = pytest.mark.lab


def fake_home(tmp_path: Path) -> Home:
    home = tmp_path / "home"
    home.mkdir()
    return Home("someone", home, os.getuid(), os.getgid())


# ---------------------------------------------------------------- the plant
@pytest.mark.parametrize("user", ["root", "deploy"])
def test_the_session_has_hostile_dotfiles_in_place(user: str) -> None:
    entry = pwd.getpwnam(user)
    for rel, text in HOSTILE.items():
        path = Path(entry.pw_dir) / rel
        assert path.read_text() == text, path
        st = path.stat()
        assert (st.st_uid, st.st_mode & 0o777) == (entry.pw_uid, 0o600), path
    assert "password=wrong" in (Path(entry.pw_dir) / ".my.cnf").read_text()


def test_originals_are_restored_exactly_and_the_last_session_out_restores(tmp_path: Path) -> None:
    home = fake_home(tmp_path)
    original = home.path / ".gitconfig"
    original.write_bytes(b"[user]\n\tname = Real Person\n")
    original.chmod(0o640)
    os.utime(original, (1_000_000_000, 1_000_000_000))
    state = tmp_path / "state"
    first, second = Plant([home], state, tag="first"), Plant([home], state, tag="second")

    first.enter()
    for rel, text in HOSTILE.items():
        assert (home.path / rel).read_text() == text
    second.enter()  # a second session joins: the originals are not backed up again
    first.leave()  # not the last one out: the plant stays
    assert (home.path / ".gitconfig").read_text() == HOSTILE[".gitconfig"]
    assert json.loads((state / "holders.json").read_text())["holders"] == [second.me]
    second.leave()

    assert original.read_bytes() == b"[user]\n\tname = Real Person\n"
    st = original.stat()
    assert (st.st_mode & 0o777, st.st_mtime) == (0o640, 1_000_000_000)
    assert not (home.path / ".my.cnf").exists()
    assert not (home.path / ".ssh").exists()  # created for the plant, removed again
    assert sorted(p.name for p in home.path.iterdir()) == [".gitconfig"]


def test_an_ssh_directory_that_existed_is_kept_with_its_files(tmp_path: Path) -> None:
    home = fake_home(tmp_path)
    (home.path / ".ssh").mkdir(mode=0o700)
    (home.path / ".ssh" / "known_hosts").write_text("host ssh-ed25519 AAAA\n")
    with hostile_dotfiles([home], tmp_path / "state"):
        assert (home.path / ".ssh" / "config").read_text().startswith(MARK)
    assert sorted(p.name for p in (home.path / ".ssh").iterdir()) == ["known_hosts"]


def test_a_killed_sessions_plant_is_restored_by_the_next_session(tmp_path: Path) -> None:
    home = fake_home(tmp_path)
    (home.path / ".my.cnf").write_text("[client]\nuser=mine\n")
    state = tmp_path / "state"
    gone = subprocess.Popen(["sleep", "60"])
    killed = Plant([home], state)
    killed.me = {"pid": gone.pid, "start": Path(f"/proc/{gone.pid}/stat").read_text().rsplit(")", 1)[-1].split()[19]}
    killed.enter()
    gone.kill()
    gone.wait()  # the session dies without leaving: its plant stays behind
    assert (home.path / ".my.cnf").read_text() == HOSTILE[".my.cnf"]

    with hostile_dotfiles([home], state):  # the next session drops the dead holder
        assert (home.path / ".my.cnf").read_text() == HOSTILE[".my.cnf"]
        assert len(json.loads((state / "holders.json").read_text())["holders"]) == 1
    assert (home.path / ".my.cnf").read_text() == "[client]\nuser=mine\n"
    assert not (home.path / ".ssh").exists() and not (home.path / ".gitconfig").exists()


# ---------------------------------------------------------------- the product ignores them
def test_ssh_ignores_the_controller_users_ssh_config(ssh_lab: SshLab) -> None:
    assert (Path(pwd.getpwuid(os.getuid()).pw_dir) / ".ssh" / "config").read_text() == HOSTILE[".ssh/config"]
    host = ssh_lab.hosts[0]
    for user in ("deploy", "root"):
        t: SSHTransport = host.transport(user=user)
        try:
            res = t.run(["sh", "-c", 'id -un; echo "$SSH_CONNECTION"'])
        finally:
            t.close()
        name, conn = res.stdout.splitlines()
        assert name == user
        assert conn.split()[2:] == [host.ip, str(host.port)]  # the inventory's address and port


def test_mariadb_clients_read_only_the_option_file_they_are_given() -> None:
    tools = frozenset({"mariadb", "mariadb-dump"})
    with_password = DbClient(DatabaseSpec(name="shop", password=SecretStr("pw-1234")), tools, cred_file="/b/.cred-1")
    assert with_password.client("shop")[:2] == ["mariadb", "--defaults-file=/b/.cred-1"]
    assert with_password.dump_argv()[:2] == ["mariadb-dump", "--defaults-file=/b/.cred-1"]
    with_file = DbClient(DatabaseSpec(name="shop", defaults_file="/etc/shop.cnf", user="shop"), tools)
    assert with_file.dump_argv()[:3] == ["mariadb-dump", "--defaults-file=/etc/shop.cnf", "--user=shop"]
    user_only = DbClient(DatabaseSpec(name="shop", user="shop", host="127.0.0.1"), tools)
    assert user_only.client()[:4] == ["mariadb", "--no-defaults", "--host=127.0.0.1", "--user=shop"]
    nothing = DbClient(DatabaseSpec(name="shop"), tools)  # the documented default: ~/.my.cnf
    assert nothing.dump_argv()[:2] == ["mariadb-dump", "--single-transaction"]
    assert client_argv("mariadb-dump", "/snap/db.cnf") == ["mariadb-dump", "--defaults-file=/snap/db.cnf"]
    assert client_argv("mariadb", None) == [
        "mariadb",
        "--default-character-set=utf8mb4",
    ]  # a statement client talks utf8mb4


def test_the_hostile_my_cnf_really_overrides_defaults_extra_file(tmp_path: Path) -> None:
    """Why ``--defaults-file``: with ``--defaults-extra-file`` the client still reads ~/.my.cnf
    afterwards and its settings win (the last value counts), with ``--defaults-file`` it does not."""
    good = tmp_path / "good.cnf"
    good.write_text("[client]\nport=3\nuser=shop\n")

    def effective(option: str) -> dict[str, str]:
        out = subprocess.run(["mariadb", option, "--print-defaults"], capture_output=True, text=True, check=True)
        args = out.stdout.splitlines()[1].split()
        return dict(a[2:].split("=", 1) for a in args)  # later values replace earlier ones

    extra = effective(f"--defaults-extra-file={good}")
    assert (extra["port"], extra["user"], extra["password"]) == ("1", "nobody", "wrong")
    assert effective(f"--defaults-file={good}") == {"port": "3", "user": "shop"}


def test_git_runs_without_user_or_system_config(tmp_path: Path) -> None:
    """The hostile ~/.gitconfig rewrites every local path to a missing URL; with the
    environment maint gives git, the path is used as given."""
    bare = tmp_path / "repo.git"
    subprocess.run(["git", "init", "--bare", "-q", str(bare)], check=True, env={**os.environ, **GIT_ENV})
    plain = subprocess.run(["git", "ls-remote", "--", str(bare)], capture_output=True, text=True)
    assert plain.returncode != 0 and "/nonexistent/" in plain.stderr  # the rewrite is really active
    ours = subprocess.run(
        ["git", "ls-remote", "--", str(bare)], capture_output=True, text=True, env={**os.environ, **GIT_ENV}
    )
    assert (ours.returncode, ours.stdout, ours.stderr) == (0, "", "")
    signing = subprocess.run(
        ["git", "config", "--get", "commit.gpgsign"], capture_output=True, env={**os.environ, **GIT_ENV}
    )
    assert signing.returncode == 1  # not set: the hostile file is not read
