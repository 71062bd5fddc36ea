"""A new link and a new directory are made in place, by one program each, through a real shell.

* ``file.symlink`` on a path that was missing runs ``ln -s -T`` alone (no temporary link, no
  ``mv``): the link is exactly the wanted one, and anything that appeared at the path after
  the check (a directory, a file, a dangling link) fails the change and is left exactly as it
  was: ``-T`` never lets ``ln`` make the link inside a directory.
* ``file.directory`` with a mode and no owner creates the last missing directory with
  ``mkdir -m MODE`` (no ``chmod``): the mode is exact under any umask, setgid included; the
  parents it creates get the umask's mode, as before.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from maintkit.actions.file import FileDirectory, FileDirectoryParams, FileSymlink, FileSymlinkParams, _DirPlan
from maintkit.errors import ApplyFailed
from maintkit.probes import FileInfo
from maintkit.results import Check
from maintkit.testing import make_context
from maintkit.transport.local import LocalTransport


class Noting(LocalTransport):
    """The local transport (a real ``sh``), noting every script it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []

    def run_shell(self, script: str, **kwargs: object) -> object:  # type: ignore[override]
        self.scripts.append(script)
        return super().run_shell(script, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def _link(path: Path, target: str, before: FileInfo) -> tuple[Noting, list[object]]:
    t = Noting()
    act = FileSymlink(FileSymlinkParams(path=str(path), target=target))
    changes = act.apply(make_context(t, path=str(path.parent)), Check.change("test", snapshot=before))
    return t, list(changes)


def test_a_missing_link_is_made_by_ln_alone(tmp_path: Path) -> None:
    t, changes = _link(tmp_path / "current", "-rf releases/1", FileInfo(False))
    assert os.readlink(tmp_path / "current") == "-rf releases/1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current"]  # no temporary link left
    change_script = t.scripts[0].split("\n", 1)[0]
    assert change_script == f"( ln -s -T -- '-rf releases/1' {tmp_path}/current"
    assert len(changes) == 1


@pytest.mark.parametrize("there", ["empty dir", "dir", "file", "dangling link"])
def test_whatever_appeared_after_the_check_fails_the_link_and_is_left_alone(tmp_path: Path, there: str) -> None:
    path = tmp_path / "current"
    if there.endswith("dir"):
        path.mkdir()
        if there == "dir":
            (path / "keep").write_text("x")
    elif there == "file":
        path.write_text("mine")
    else:
        path.symlink_to("nowhere")
    before = sorted((str(p.relative_to(tmp_path)), p.is_symlink()) for p in tmp_path.rglob("*"))
    with pytest.raises(ApplyFailed, match="File exists"):
        _link(path, "/srv/app", FileInfo(False))  # the check saw nothing there
    assert sorted((str(p.relative_to(tmp_path)), p.is_symlink()) for p in tmp_path.rglob("*")) == before
    if there == "file":
        assert path.read_text() == "mine"
    if there == "dangling link":
        assert os.readlink(path) == "nowhere"


@pytest.mark.parametrize("mask", [0o000, 0o077, 0o777])
@pytest.mark.parametrize("mode", ["750", "2775", "700", "0"])
def test_a_new_directory_gets_its_mode_from_mkdir_whatever_the_umask(
    tmp_path: Path, umask: None, mask: int, mode: str
) -> None:
    os.umask(mask)
    a, b = tmp_path / "-a", tmp_path / "-a" / "b c"
    t = Noting()
    act = FileDirectory(FileDirectoryParams(path=str(b), mode=mode))
    act.apply(
        make_context(t, path=str(tmp_path)), Check.change("test", snapshot=_DirPlan(FileInfo(False), (str(a), str(b))))
    )
    os.umask(0o022)
    assert stat.S_IMODE(b.stat().st_mode) == int(mode, 8)
    assert stat.S_IMODE(a.stat().st_mode) == 0o777 & ~mask  # a parent: plain mkdir, as before
    assert "chmod" not in t.scripts[0]
    assert t.scripts[0].startswith(f"( mkdir -- {a}")
    assert f"mkdir -m {mode} -- '{b}'" in t.scripts[0]


def test_an_owner_keeps_chown_then_chmod(tmp_path: Path) -> None:
    me = os.getuid()
    b = tmp_path / "d"
    t = Noting()
    act = FileDirectory(FileDirectoryParams(path=str(b), mode="2750", owner=str(me)))
    act.apply(make_context(t, path=str(tmp_path)), Check.change("test", snapshot=_DirPlan(FileInfo(False), (str(b),))))
    assert stat.S_IMODE(b.stat().st_mode) == 0o2750  # the chown (which clears setgid) came first
    assert f"mkdir -- {b}" in t.scripts[0] and "chmod -- 2750" in t.scripts[0]
