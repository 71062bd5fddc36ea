"""backup.create max_age counts the backups the state index records (wherever they ran), if the host still has them."""

from __future__ import annotations

from pathlib import Path

from maintkit.state import index as state_index
from tests.runs import local_env, one_site, run, write_inventory

TAKE = """\
name: nightly
stages:
  - env: production
    steps:
      - {id: backup, action: backup.create, with: {files: [public], backup_dir: "BACKUPS"}}
"""

FRESH = """\
name: update
stages:
  - env: production
    steps:
      - {id: backup, action: backup.create, with: {files: [public], backup_dir: "BACKUPS", max_age: 2h}}
"""


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    site = tmp_path / "site"
    (site / "public").mkdir(parents=True)
    (site / "public" / "index.html").write_text("<h1>shop</h1>\n")
    return site, write_inventory(tmp_path, one_site(local_env(site)))


def _step(result):  # noqa: ANN001, ANN202
    [site] = result.sites
    [step] = site.steps
    return step


def test_a_backup_in_another_folder_recorded_by_an_earlier_run_is_fresh(tmp_path: Path) -> None:
    site, inv = _setup(tmp_path)
    nightly_dir, update_dir = tmp_path / "nightly", tmp_path / "pre-update"
    taken = run(TAKE.replace("BACKUPS", str(nightly_dir)), inv, tmp_path / "state")
    assert _step(taken).status.value == "changed"
    [recorded] = state_index.backups(tmp_path / "state", "shop", "production")
    bid = recorded["id"]
    assert (recorded["dir"], recorded["run_id"]) == (str(nightly_dir), taken.run_id)
    assert sorted(p.name for p in nightly_dir.iterdir()) == [bid]

    # another folder, max_age: the host listing of that folder has nothing, the index knows the nightly one
    fresh = FRESH.replace("BACKUPS", str(update_dir))
    for _ in range(2):  # idempotent: nothing to do, twice
        again = run(fresh, inv, tmp_path / "state")
        step = _step(again)
        assert step.status.value == "unchanged", step.reason
        assert step.reason.startswith(f"backup {bid} in {nightly_dir} (recorded in the state index) from ")
        assert step.reason.endswith(" ago is fresh (max_age 2h)")
        assert not update_dir.exists()

    # gone from the host: the index entry does not count, a new backup is taken and recorded
    for child in (nightly_dir / bid).iterdir():
        child.unlink()
    (nightly_dir / bid).rmdir()
    made = run(fresh, inv, tmp_path / "state")
    step = _step(made)
    assert step.status.value == "changed"
    assert step.reason == (
        f"no backup of files public younger than 2h (recorded but gone from localhost: {bid}): "
        f"back up files public into {update_dir}"
    )
    [new] = [p.name for p in update_dir.iterdir()]
    assert [b["id"] for b in state_index.backups(tmp_path / "state", "shop", "production")] == [bid, new]


def test_plan_mode_records_nothing_in_the_index(tmp_path: Path) -> None:
    _, inv = _setup(tmp_path)
    plan = run(TAKE.replace("BACKUPS", str(tmp_path / "b")), inv, tmp_path / "state", check=True)
    assert _step(plan).status.value == "would-change"
    assert state_index.backups(tmp_path / "state", "shop", "production") == []
    assert not (tmp_path / "state" / "index").exists()
