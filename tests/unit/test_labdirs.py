"""The sweep of lab folders and sudo rules left by a test run that was killed
(``tests/lab/labdirs.py``): only what names an owner that is gone, never what a live process uses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import labdirs

RULE = "deploy ALL=(ALL:ALL) NOPASSWD: ALL\n"


@pytest.fixture()
def gone() -> str:
    """The owner line of a process that ran and ended."""
    code = "from tests.lab.labdirs import owner_of; print(owner_of())"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def folder(tmp: Path, name: str, owner: str | None) -> Path:
    path = tmp / name
    path.mkdir()
    (path / "data").write_text("x")
    if owner is not None:
        (path / labdirs.OWNER_FILE).write_text(owner + "\n")
    return path


@pytest.fixture()
def holder(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts to hold a folder; each ends when its stdin closes."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()


def test_only_folders_and_rules_of_a_gone_owner_nobody_uses_are_swept(
    tmp_path: Path, gone: str, holder: list[subprocess.Popen[bytes]]
) -> None:
    tmp, sudoers = tmp_path / "tmp", tmp_path / "sudoers.d"
    tmp.mkdir()
    sudoers.mkdir()
    me = labdirs.owner_of()
    assert me is not None and me.split()[0] == str(os.getpid())
    dead = folder(tmp, "maintkit-lab-web-dead", gone)
    ssh_dead = folder(tmp, "maintkit-ssh-dead", gone)
    template_dead = folder(tmp, "maintkit-mariadb-template-dead", gone)
    reused = folder(tmp, "maintkit-lab-db-reused", f"{os.getpid()} 1")  # this pid, another start time
    mine = folder(tmp, "maintkit-lab-web-mine", me)
    legacy = folder(tmp, "maintkit-lab-web-legacy", None)
    other = folder(tmp, "other-lab-dead", gone)
    elsewhere = folder(tmp_path, "elsewhere", gone)
    (tmp / "maintkit-lab-link").symlink_to(elsewhere)  # a link to a folder with a gone owner
    someone = folder(tmp, "maintkit-lab-someone", gone)
    os.chown(someone, 65534, 65534)  # another user's folder (nobody's), with a gone owner
    worked_in = folder(tmp, "maintkit-lab-wp-cwd", gone)
    named = folder(tmp, "maintkit-lab-redis-argv", gone)
    wait = "import sys; sys.stdin.read()"
    holder.append(subprocess.Popen([sys.executable, "-c", wait], stdin=subprocess.PIPE, cwd=worked_in))
    holder.append(subprocess.Popen([sys.executable, "-c", wait, f"--config={named}/x.conf"], stdin=subprocess.PIPE))
    rules = {
        "maintkit-lab-aaaaaa": labdirs.OWNER_COMMENT + gone + "\n" + RULE,
        "maintkit-lab-bbbbbb": labdirs.OWNER_COMMENT + me + "\n" + RULE,
        "maintkit-lab-cccccc": RULE,
        "someone-else": labdirs.OWNER_COMMENT + gone + "\n" + RULE,
    }
    for name, text in rules.items():
        (sudoers / name).write_text(text)

    removed = labdirs.sweep(tmp, sudoers)

    assert removed == [reused, dead, ssh_dead, template_dead, sudoers / "maintkit-lab-aaaaaa"]
    kept = (mine, legacy, other, worked_in, named, someone, tmp / "maintkit-lab-link")
    assert sorted(p.name for p in tmp.iterdir()) == sorted(p.name for p in kept)
    assert (elsewhere / "data").read_text() == "x" and (someone / "data").read_text() == "x"
    assert sorted(p.name for p in sudoers.iterdir()) == ["maintkit-lab-bbbbbb", "maintkit-lab-cccccc", "someone-else"]
    assert (worked_in / "data").read_text() == "x" and (named / "data").read_text() == "x"


def test_a_lab_folder_and_a_sudo_rule_name_this_process() -> None:
    path = labdirs.lab_tmpdir("maintkit-lab-unit-")
    try:
        assert path.parent == Path("/tmp") and path.name.startswith("maintkit-lab-unit-")
        assert (path / labdirs.OWNER_FILE).read_text() == f"{labdirs.owner_of()}\n"
    finally:
        shutil.rmtree(path)
    rule = labdirs.sudo_rule(RULE)
    assert rule == f"{labdirs.OWNER_COMMENT}{labdirs.owner_of()}\n{RULE}"


def test_the_rule_with_its_owner_line_is_valid_sudoers(tmp_path: Path) -> None:
    path = tmp_path / "rule"
    path.write_text(labdirs.sudo_rule(RULE))
    path.chmod(0o440)
    res = subprocess.run(["visudo", "-c", "-q", "-f", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
