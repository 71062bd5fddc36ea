"""Hostile dotfiles for the lab users, for a whole test session, restored afterwards.

The machines the suite runs on are shared: a login user may already have a ``~/.my.cnf``
for another database, a ``~/.ssh/config`` that redirects hosts, a ``~/.gitconfig`` with
URL rewrites or signing turned on, a ``~/.netrc`` with credentials for the lab's web
servers. maintkit must do what it was told regardless, so the suite plants such files
(:data:`HOSTILE`) for root and ``deploy`` and must pass with them.

Several test sessions may run at once on one machine. They share one plant: the first
session in backs up the originals and plants, the last one out restores. Holders are
recorded (pid and process start time) in a state directory under a ``flock``; a holder
whose process is gone is dropped, so a killed session's plant is restored by the next
session that starts or ends. Planted files carry :data:`MARK`, so a planted file is never
mistaken for an original.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import pwd
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.lab.procs import same_process, start_time

MARK = "# maintkit test suite: hostile dotfile (restored when the test session ends)"

_MY_CNF_SECTION = "user=nobody\npassword=wrong\nhost=127.0.0.1\nport=1\ndatabase=other\n"
HOSTILE: dict[str, str] = {
    ".my.cnf": (
        f"{MARK}\n"
        f"[client]\n{_MY_CNF_SECTION}"
        f"[mysql]\n{_MY_CNF_SECTION}"
        f"[mysqldump]\n{_MY_CNF_SECTION}"
        f"[mariadb-dump]\n{_MY_CNF_SECTION}"
    ),
    ".ssh/config": (
        f"{MARK}\n"
        "Host *\n"
        "    User nobody\n"
        "    Port 1\n"
        "    IdentityFile /nonexistent\n"
        "    StrictHostKeyChecking no\n"
        "    UserKnownHostsFile /dev/null\n"
    ),
    ".gitconfig": (
        f"{MARK}\n"
        "[user]\n    name = Evil\n    email = evil@nonexistent.invalid\n"
        '[url "file:///nonexistent/"]\n    insteadOf = /\n'
        "[core]\n    hooksPath = /nonexistent\n"
        "[commit]\n    gpgsign = true\n"
        "[tag]\n    gpgsign = true\n"
    ),
    # requests (and curl -n) would send these to the lab's web servers, over a header maint set
    ".netrc": f"{MARK}\nmachine 127.0.0.1 login nobody password hostile-netrc\nmachine localhost login nobody password hostile-netrc\n",
}
USERS = ("root", "deploy")
STATE_DIR = Path("/var/tmp/maintkit-hostile-dotfiles")


@dataclass(frozen=True)
class Home:
    """A user whose home gets hostile dotfiles."""

    user: str
    path: Path
    uid: int
    gid: int


def lab_homes(users: Sequence[str] = USERS) -> list[Home]:
    """The homes of the lab users that exist on this machine (only our own when not root)."""
    if os.geteuid() != 0:
        users = [pwd.getpwuid(os.geteuid()).pw_name]
    homes: list[Home] = []
    for name in users:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        homes.append(Home(name, Path(entry.pw_dir), entry.pw_uid, entry.pw_gid))
    return homes


def _alive(holder: dict[str, object]) -> bool:
    pid = holder.get("pid")
    return isinstance(pid, int) and same_process(pid, holder.get("start"))


class Plant:
    """Plants and restores the hostile dotfiles of ``homes``; state lives in ``state_dir``."""

    def __init__(self, homes: Sequence[Home], state_dir: Path = STATE_DIR, tag: str = "") -> None:
        self.homes = list(homes)
        self.state_dir = state_dir
        #: this holder: our process (``tag`` tells apart several holders in one process)
        self.me: dict[str, object] = {"pid": os.getpid(), "start": start_time(os.getpid()), "tag": tag}

    # ---- shared state under a lock -------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[dict[str, list[dict[str, object]]]]:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.state_dir / "lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = self.state_dir / "holders.json"
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                state = {"holders": []}
            state["holders"] = [h for h in state["holders"] if _alive(h)]
            yield state
            path.write_text(json.dumps(state))

    def enter(self) -> None:
        """Join the plant (planting if this is the first live session)."""
        with self._locked() as state:
            if not state["holders"]:
                self._restore_all()  # a killed session may have left its plant behind
                self._plant_all()
            state["holders"].append(self.me)

    def leave(self) -> None:
        """Leave the plant (restoring the originals if this was the last live session)."""
        with self._locked() as state:
            state["holders"] = [h for h in state["holders"] if h != self.me]
            if not state["holders"]:
                self._restore_all()

    # ---- files ---------------------------------------------------------------------------
    def _backup_dir(self, home: Home) -> Path:
        return self.state_dir / "originals" / home.user

    def _plant_all(self) -> None:
        for home in self.homes:
            for rel, text in HOSTILE.items():
                self._plant(home, rel, text)

    def _plant(self, home: Home, rel: str, text: str) -> None:
        target = home.path / rel
        backup = self._backup_dir(home) / rel.replace("/", "__")
        backup.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if target.parent != home.path and not target.parent.exists():
            target.parent.mkdir(mode=0o700)
            os.chown(target.parent, home.uid, home.gid)
            (backup.parent / (backup.name + ".created-dir")).write_text(str(target.parent))
        if target.is_file() and MARK not in target.read_text(errors="replace"):
            shutil.copy2(target, backup)  # content, mode and times; owner kept below
            st = target.stat()
            (backup.parent / (backup.name + ".owner")).write_text(f"{st.st_uid}:{st.st_gid}")
        tmp = target.with_name(target.name + ".maintkit-hostile")
        tmp.write_text(text)
        os.chown(tmp, home.uid, home.gid)
        tmp.chmod(0o600)
        os.replace(tmp, target)

    def _restore_all(self) -> None:
        for home in self.homes:
            for rel in HOSTILE:
                self._restore(home, rel)

    def _restore(self, home: Home, rel: str) -> None:
        target = home.path / rel
        backup = self._backup_dir(home) / rel.replace("/", "__")
        owner = backup.parent / (backup.name + ".owner")
        created = backup.parent / (backup.name + ".created-dir")
        if backup.is_file():
            tmp = target.with_name(target.name + ".maintkit-restore")
            shutil.copy2(backup, tmp)
            uid, gid = (int(x) for x in owner.read_text().split(":"))
            os.chown(tmp, uid, gid)
            os.replace(tmp, target)
            backup.unlink()
            owner.unlink()
        elif target.is_file() and MARK in target.read_text(errors="replace"):
            target.unlink()
        if created.is_file():
            directory = Path(created.read_text())
            created.unlink()
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()


@contextmanager
def hostile_dotfiles(homes: Sequence[Home] | None = None, state_dir: Path = STATE_DIR) -> Iterator[Plant]:
    """Hostile dotfiles in place for the body; the originals are back afterwards."""
    plant = Plant(lab_homes() if homes is None else homes, state_dir)
    plant.enter()
    atexit.register(plant.leave)  # also when the session ends without its teardown
    try:
        yield plant
    finally:
        atexit.unregister(plant.leave)
        plant.leave()
