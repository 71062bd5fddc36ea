"""A backup written with zstd, on a host that no longer has zstd: ``backup.restore`` and
``backup.verify`` refuse in their check, naming what is missing, and nothing changes; with zstd
back the same restore works. This machine's ``PATH`` is replaced by one that has every program
of /usr/bin and /bin but zstd's (the local transport runs its commands with it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.runs import local_env, one_site, one_step, run, write_inventory


def path_without_zstd(base: Path) -> str:
    """A folder of links to every program of /usr/bin and /bin except zstd and its aliases."""
    folder = base / "no-zstd-bin"
    folder.mkdir()
    for source in ("/usr/bin", "/bin"):
        for name in os.listdir(source):
            if "zstd" in name or (folder / name).exists() or (folder / name).is_symlink():
                continue
            (folder / name).symlink_to(os.path.join(source, name))
    return str(folder)


def test_a_zstd_backup_is_refused_where_there_is_no_zstd_and_nothing_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site, backups = tmp_path / "site", tmp_path / "backups"
    (site / "public").mkdir(parents=True)
    (site / "public" / "index.html").write_text("v1\n")
    inv = write_inventory(tmp_path, one_site(local_env(site)))
    state = tmp_path / "state"
    create = one_step("backup.create", step_id="backup", files=["public"], backup_dir=str(backups))
    restore_one = one_step("backup.restore", step_id="restore", backup="latest", what="files", backup_dir=str(backups))
    verify_one = one_step("backup.verify", step_id="verify", backup_dir=str(backups))
    taken = run(create, inv, state)
    assert taken.ok, taken.sites[0].error
    [bid] = [p.name for p in backups.iterdir()]
    assert (backups / bid / "files.tar.zst").is_file()
    (site / "public" / "index.html").write_text("v2\n")

    monkeypatch.setenv("PATH", path_without_zstd(tmp_path))
    restore = run(restore_one, inv, state, extra={"yes": True})
    verify = run(verify_one, inv, state)

    for result, step in ((restore, "restore"), (verify, "verify")):
        [only] = result.sites[0].steps
        assert not result.ok and only.step == step and only.status.value == "failed"
        assert "localhost lacks zstd" in str(only.error), only.error
    assert (site / "public" / "index.html").read_text() == "v2\n"
    assert [p.name for p in backups.iterdir()] == [bid]  # no safety backup was taken

    monkeypatch.undo()
    restored = run(restore_one, inv, state, extra={"yes": True})
    assert restored.ok, restored.sites[0].error
    assert (site / "public" / "index.html").read_text() == "v1\n"
