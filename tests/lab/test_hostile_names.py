"""Hostile names for the actions that touch trees: deploy, backup, cms snapshots, cache directories.

Names carry quotes, backslashes, newlines, leading dashes, spaces, globs, unicode and the
longest name a file system allows. For each action: apply, a second run changes nothing, a
rollback (forced by a failing later step with ``on_failure: rollback``) restores the exact
previous tree (:func:`tests.tree_snapshot.snapshot`: names, types, modes, contents, link
targets), and nothing outside the step's own paths changes. Most examples run with
``connection: local``; a few run the same over the real lab sshd.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings

from maintkit.results import RunResult, SiteStatus, StepStatus
from tests import runs
from tests.hostile_names import clip_name, distinct_names, hostile_names, valid_name
from tests.lab.gitrepo import BareRepo
from tests.tree_snapshot import diff, snapshot

SETTINGS = settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # shrinking a deploy example takes minutes
)


# ---------------------------------------------------------------------------- running


def _fresh(base: Path, name: str) -> Path:
    """A new directory ``base/<unique>/<name>`` (the hostile name as the last component)."""
    d = base / uuid.uuid4().hex[:8]
    d.mkdir(parents=True)
    return d / name


Remote = Callable[[Path], dict[str, Any]]


def write_local_inventory(where: Path, site_path: Path, vars: dict[str, Any], remote: Remote | None = None) -> Path:
    """One site ``shop`` whose staging environment is ``site_path`` on this machine.

    ``remote`` gives the environment's connection fields instead (a lab host over SSH).
    """
    env = remote(site_path) if remote else {"connection": "local", "path": str(site_path)}
    env |= {"url": "http://127.0.0.1:9", "vars": vars}
    return runs.write_inventory(where, runs.one_site(env, env_name="staging", platform="generic"), unique=True)


def run(where: Path, inventory: Path, playbook: str, **extra: Any) -> RunResult:
    """Run ``playbook`` in-process against the inventory (state under ``where``)."""
    environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(where)}
    return runs.run(playbook, inventory, where / "state", environ=environ, extra=extra or None)


def steps_of(res: RunResult) -> dict[str, StepStatus]:
    """Step id -> status of the only site."""
    return {s.step: s.status for s in res.sites[0].steps}


def errors_of(res: RunResult) -> str:
    """Every step error, for assertion messages."""
    site = res.sites[0]
    return "; ".join(f"{s.step}: {s.error}" for s in site.steps if s.error) or f"{site.status}: {site.error}"


FAIL_STEP = "      - {id: boom, action: command, with: {argv: [sh, -c, 'exit 7']}}\n"


def playbook(step: str, *, fail: bool = False) -> str:
    """A one-stage playbook with ``step`` (YAML lines under ``steps:``), optionally a failing step after it."""
    return (
        "name: hostile\non_failure: rollback\nstages:\n  - env: staging\n    steps:\n"
        + step
        + (FAIL_STEP if fail else "")
    )


def outside(root: Path) -> dict[str, Any]:
    """Snapshot of the decoy tree next to a site: nothing may ever change there."""
    return snapshot(root)


def make_decoys(parent: Path, name: str) -> Path:
    """Siblings whose names resemble ``name`` or match it as a glob; returns their container."""
    decoys = parent / "decoys"
    decoys.mkdir(exist_ok=True)
    for i, variant in enumerate(["*", "?", name[:1] or "x", "-" + name[:20], name[:50] + " ", "[" + name[:10]]):
        if not valid_name(variant):
            continue
        d = decoys / variant
        if d.exists():
            continue
        d.mkdir()
        (d / f"keep-{i}").write_text(f"decoy {i}\n")
        (d / "link").symlink_to(f"../{variant}/keep-{i}")
    return decoys


# ---------------------------------------------------------------------------- deploy


DEPLOY_STEP = """\
      - id: release
        action: deploy.release
        with:
          repo: "{{ vars.repo }}"
          ref: "{{ vars.ref }}"
          shared_files: "{{ vars.shared_files }}"
          shared_dirs: "{{ vars.shared_dirs }}"
          build: "{{ vars.build }}"
          keep: 10
"""


@pytest.fixture(scope="module")
def hostile_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BareRepo]:
    """A bare repository (module-wide); each example commits its own files to it."""
    base = tmp_path_factory.mktemp("hostile-repo")
    yield BareRepo(base / "app.git")
    shutil.rmtree(base, ignore_errors=True)


def _repo_files(names: list[str], version: str) -> dict[str, str | bytes | None]:
    files: dict[str, str | bytes | None] = {"VERSION": version + "\n"}
    for i, name in enumerate(names):
        files[f"code/{name}"] = f"file {i} {version} {name!r}\n"
        files[f"nested/{name}/inner-{i}.txt"] = f"inner {i}\n"
    return files


def _expected_release(files: dict[str, str | bytes | None]) -> dict[str, bytes]:
    return {k: (v.encode() if isinstance(v, str) else v) for k, v in files.items() if v is not None}


def _read_release(rdir: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for dirpath, _dirs, files in os.walk(rdir):
        for f in files:
            p = Path(dirpath) / f
            rel = str(p.relative_to(rdir))
            if not p.is_symlink():
                out[rel] = p.read_bytes()
    return out


def _current(site: Path) -> str:
    return os.readlink(site / "current").rsplit("/", 1)[-1]


def deploy_case(
    tmp: Path, repo: BareRepo, site_name: str, names: list[str], shared: list[str], remote: Remote | None = None
) -> None:
    """Deploy v1, then v2 with hostile names; idempotent; a rollback restores the exact tree."""
    site = _fresh(tmp, site_name)
    site.mkdir()
    decoys = make_decoys(site.parent, site_name)
    shared_file, shared_dir = shared
    (site / "shared").mkdir()
    (site / "shared" / shared_file).write_text("shared config\n")
    (site / "shared" / shared_file).chmod(0o640)
    files_v1 = _repo_files(names[:1], "v1")
    commit_tree(repo, files_v1, "v1")
    build = [["sh", "-c", 'pwd > built-in.txt; printf "%s" "$MAINT_RELEASE" > release-name.txt']]
    vars = {"repo": str(repo.path), "ref": "main", "shared_files": [shared_file], "shared_dirs": [shared_dir]}
    inv = write_local_inventory(tmp, site, {**vars, "build": build}, remote)
    first = run(tmp, inv, playbook(DEPLOY_STEP))
    assert first.ok, errors_of(first)
    rel1 = _current(site)
    # v2: every hostile name as a file and a directory of the repository
    files_v2 = _repo_files(names, "v2")
    commit_tree(repo, files_v2, "v2")
    before, decoys_before = snapshot(site), snapshot(decoys)
    res = run(tmp, inv, playbook(DEPLOY_STEP))
    assert res.ok, errors_of(res)
    assert steps_of(res) == {"release": StepStatus.CHANGED}
    rel2 = _current(site)
    assert rel2 != rel1
    rdir = site / "releases" / rel2
    got = _read_release(rdir)
    # the build ran inside the new release (bytes: read_text() would turn a "\r" of the name into "\n")
    assert (rdir / "built-in.txt").read_bytes() == os.fsencode(f"{rdir}\n")
    assert (rdir / "release-name.txt").read_text() == rel2
    for key in (".maint-release.json", "built-in.txt", "release-name.txt"):
        got.pop(key)
    assert got == _expected_release(files_v2)  # every hostile file arrived intact
    assert os.readlink(rdir / shared_file) == str(site / "shared" / shared_file)
    assert os.readlink(rdir / shared_dir) == str(site / "shared" / shared_dir)
    assert (site / "shared" / shared_dir).is_dir()
    assert (rdir / shared_file).read_text() == "shared config\n"
    deployed = snapshot(site)
    again = run(tmp, inv, playbook(DEPLOY_STEP))
    assert again.ok and again.changed == 0, errors_of(again)
    assert snapshot(site) == deployed
    # v3 over v2, then a failing step: the stage is rolled back to v2 exactly
    commit_tree(repo, {**files_v2, "VERSION": "v3\n"}, "v3")
    failed = run(tmp, inv, playbook(DEPLOY_STEP, fail=True))
    assert failed.exit_code == 1
    assert failed.sites[0].status is SiteStatus.ROLLED_BACK, errors_of(failed)
    assert steps_of(failed) == {"release": StepStatus.ROLLED_BACK, "boom": StepStatus.FAILED}
    assert _current(site) == rel2
    changed = diff(deployed, snapshot(site))
    log = site / ".maint" / "releases.jsonl"
    bad = [e for e in map(json.loads, log.read_text().splitlines()) if e["status"] == "bad"]
    assert len(bad) == 1
    rel3 = bad[0]["release"]
    # what a rolled-back deploy leaves by design: the bad release (kept for inspection,
    # pruned first) and its entries in the releases log; nothing else differs
    assert set(changed) == {".maint/releases.jsonl"} | {k for k in changed if k.startswith(f"releases/{rel3}")}
    assert any(k == f"releases/{rel3}" for k in changed)
    assert before.keys() <= deployed.keys()
    assert snapshot(decoys) == decoys_before


def commit_tree(repo: BareRepo, files: dict[str, str | bytes | None], message: str) -> None:
    """Make the repository hold exactly ``files`` (names taken literally, never as pathspecs)."""
    for child in repo.work_dir.iterdir():
        if child.name != ".git":
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    for rel, content in files.items():
        target = repo.work_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content or b"")
    repo._git("add", "-A", cwd=repo.work_dir)
    repo._git("commit", "-q", "--allow-empty", "-m", message, cwd=repo.work_dir)
    repo._git("push", "-q", "origin", f"HEAD:refs/heads/{repo.branch}", cwd=repo.work_dir)


RESERVED = {"code", "nested", "VERSION", "built-in.txt", "release-name.txt", ".maint-release.json"}


@SETTINGS
@given(
    site_name=hostile_names(),
    names=distinct_names(3),
    # deploy refuses a blank shared path (only whitespace) as a mistake, by design
    shared=distinct_names(2, newline=False).filter(lambda n: not RESERVED & set(n) and all(s.strip() for s in n)),
)
def test_deploy_hostile_names_local(
    tmp_path: Path, hostile_repo: BareRepo, site_name: str, names: list[str], shared: list[str]
) -> None:
    deploy_case(tmp_path, hostile_repo, site_name, names, shared)


# ---------------------------------------------------------------------------- backup


def populate(root: Path, names: list[str]) -> None:
    """A site tree using every name as a file, a directory and a symlink, with varied modes."""
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        f = root / name
        f.write_bytes(f"content {i} {name!r}\n".encode() + bytes(range(i, i + 8)))
        f.chmod((0o600, 0o644, 0o755, 0o640)[i % 4])
        d = root / f"dir-{i}" / name
        d.mkdir(parents=True)
        (d / name).write_text(f"inner {i}\n")
        d.chmod((0o700, 0o755, 0o750)[i % 3])
        (root / f"dir-{i}" / f"link-{i}").symlink_to(name)  # relative target with the hostile name
    (root / "absolute-link").symlink_to(root / names[0])
    (root / "dangling").symlink_to(names[-1] + ".missing")


def mutate(root: Path, names: list[str]) -> None:
    """Every kind of change a restore must undo: content, mode, deletion, addition, type, link target."""
    first, last = root / names[0], root / names[-1]
    first.write_text("changed\n")
    first.chmod(0o604)
    last.unlink()
    last.mkdir()  # a file became a directory
    (last / names[0]).write_text("new inside\n")
    (root / clip_name(f"new {names[0]}")).write_text("added after the backup\n")
    link = root / "dir-0" / "link-0"
    link.unlink()
    link.symlink_to("../elsewhere")
    shutil.rmtree(root / "dir-1") if (root / "dir-1").exists() else None


def without_maint(tree: dict[str, Any]) -> dict[str, Any]:
    """The snapshot without ``.maint`` (the lock and the backups themselves)."""
    return {k: v for k, v in tree.items() if k != ".maint" and not k.startswith(".maint/")}


BACKUP_STEP = """\
      - id: backup
        action: backup.create
        with: {files: true, max_age: 1h}
"""
RESTORE_STEP = """\
      - id: restore
        action: backup.restore
        with: {backup: "{{ vars.backup_id }}", what: files}
"""


def backup_ids(site: Path, kind: str = "backup") -> list[str]:
    """Ids of the complete backups of ``kind`` in the site's default backup directory."""
    d = site / ".maint" / "backups"
    found = []
    for m in sorted(d.glob("*/manifest.json")) if d.is_dir() else []:
        if json.loads(m.read_text()).get("kind") == kind:
            found.append(m.parent.name)
    return found


def backup_case(tmp: Path, site_name: str, names: list[str], remote: Remote | None = None) -> None:
    """backup.create then backup.restore of a hostile site; idempotent; rollbacks exact."""
    site = _fresh(tmp, site_name)
    populate(site, names)
    decoys = make_decoys(site.parent, site_name)
    decoys_before = snapshot(decoys)
    original = snapshot(site)
    inv = write_local_inventory(tmp, site, {}, remote)
    res = run(tmp, inv, playbook(BACKUP_STEP))
    assert res.ok and steps_of(res) == {"backup": StepStatus.CHANGED}, errors_of(res)
    assert without_maint(snapshot(site)) == original
    [bid] = backup_ids(site)
    again = run(tmp, inv, playbook(BACKUP_STEP))
    assert again.ok and again.changed == 0, errors_of(again)
    assert backup_ids(site) == [bid]
    # restore after every kind of change brings back the exact tree
    mutate(site, names)
    mutated = snapshot(site)
    inv = write_local_inventory(tmp, site, {"backup_id": bid}, remote)
    restored = run(tmp, inv, playbook(RESTORE_STEP))
    assert restored.ok and steps_of(restored) == {"restore": StepStatus.CHANGED}, errors_of(restored)
    assert without_maint(snapshot(site)) == original
    twice = run(tmp, inv, playbook(RESTORE_STEP))  # restoring again changes nothing in the tree
    assert twice.ok, errors_of(twice)
    assert without_maint(snapshot(site)) == original
    # a restore rolled back by a failing later step puts back the mutated tree exactly
    mutate(site, names)
    mutated = snapshot(site)
    failed = run(tmp, inv, playbook(RESTORE_STEP, fail=True))
    assert failed.sites[0].status is SiteStatus.ROLLED_BACK, errors_of(failed)
    assert steps_of(failed) == {"restore": StepStatus.ROLLED_BACK, "boom": StepStatus.FAILED}
    assert without_maint(snapshot(site)) == without_maint(mutated)
    assert snapshot(decoys) == decoys_before


@SETTINGS
@given(site_name=hostile_names(), names=distinct_names(3))
def test_backup_restore_hostile_names_local(tmp_path: Path, site_name: str, names: list[str]) -> None:
    backup_case(tmp_path, site_name, _site_names(names))


def _site_names(names: list[str]) -> list[str]:
    """Names that do not collide with the fixed entries :func:`populate` and :func:`mutate` add."""
    return [n for n in names if not n.startswith(("dir-", "new ", "absolute-link", "dangling"))] or ["x"]


# ---------------------------------------------------------------------------- cache directories

CACHE_STEP = """\
      - id: cache
        action: cache.clear
        with: {targets: [directory], directory: "{{ vars.cache_dir }}"}
"""


def cache_case(tmp: Path, dir_name: str, names: list[str]) -> None:
    """A cache directory full of hostile entries is emptied; its look-alike neighbours are not."""
    parent = _fresh(tmp, "cache")
    cache = parent / dir_name
    populate(cache, names)
    cache.chmod(0o750)
    (cache / "only-a-link").symlink_to(parent / "decoys")  # a link out of the cache: removed, never followed
    decoys = make_decoys(parent, dir_name)
    for variant in ("*", dir_name + "*", dir_name[:-1] + "?", clip_name(dir_name + " ")):
        if valid_name(variant) and not (parent / variant).exists():
            (parent / variant).mkdir()
            (parent / variant / "keep").write_text("neighbour\n")
    site = _fresh(tmp, "site")  # the run's lock lives there, away from the cache's neighbours
    site.mkdir()
    neighbours = {k: v for k, v in snapshot(parent).items() if k != dir_name and not k.startswith(dir_name + "/")}
    inv = write_local_inventory(tmp, site, {"cache_dir": str(cache)})
    res = run(tmp, inv, playbook(CACHE_STEP))
    assert res.ok and steps_of(res) == {"cache": StepStatus.CHANGED}, errors_of(res)
    assert snapshot(cache) == {".": ("dir", 0o750, "")}  # emptied completely, the directory itself kept
    after = snapshot(parent)
    assert {k: v for k, v in after.items() if k != dir_name} == neighbours
    again = run(tmp, inv, playbook(CACHE_STEP))
    assert again.ok and again.changed == 0 and steps_of(again) == {"cache": StepStatus.UNCHANGED}
    assert snapshot(parent) == after
    # a failing later step: the clear cannot be undone (a cache refills itself) and says so by
    # succeeding at doing nothing; the neighbours are still untouched
    populate(cache, names[:1])
    failed = run(tmp, inv, playbook(CACHE_STEP, fail=True))
    assert failed.sites[0].status is SiteStatus.ROLLED_BACK, errors_of(failed)
    assert steps_of(failed) == {"cache": StepStatus.ROLLED_BACK, "boom": StepStatus.FAILED}
    assert snapshot(cache) == {".": ("dir", 0o750, "")}
    assert snapshot(parent) == after
    assert snapshot(decoys) == {
        k[len("decoys/") :] or ".": v for k, v in neighbours.items() if k == "decoys" or k.startswith("decoys/")
    }


@SETTINGS
@given(dir_name=hostile_names(), names=distinct_names(3))
@example(dir_name="nel\x85line\u2028sep", names=["a", "b\x85c", "-d e"])  # YAML line breaks in a name
def test_cache_directory_hostile_names_local(tmp_path: Path, dir_name: str, names: list[str]) -> None:
    cache_case(tmp_path, dir_name, names)


# ---------------------------------------------------------------------------- cms snapshots


def _zip_of(root: Path, top: str) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                p = Path(dirpath) / f
                if not p.is_symlink():
                    zf.writestr(f"{top}/{p.relative_to(root)}", p.read_bytes())
    return buf.getvalue()


def cms_snapshot_case(tmp: Path, plugin: str, names: list[str]) -> None:
    """snapshot_path / restore_path / tree_hashes of a plugin directory with a hostile name."""
    from maintkit.actions.cms.snapshots import restore_path, snapshot_path, tree_hashes, zip_tree_hash
    from maintkit.testing import make_context
    from maintkit.transport.local import LocalTransport

    site = _fresh(tmp, "wp")
    plugins = site / "wp-content" / "plugins"
    populate(plugins / plugin, names)
    (plugins / "other").mkdir()
    (plugins / "other" / "keep.php").write_text("<?php // another plugin\n")
    decoys = make_decoys(plugins, plugin)
    decoys_before = snapshot(decoys)
    ctx = make_context(LocalTransport(), path=str(site))
    src, snap = plugins / plugin, site / ".maint" / "snap" / "files" / plugin
    before, others = snapshot(src), {k: v for k, v in snapshot(plugins).items() if not k.startswith(plugin)}
    want = zip_tree_hash(_zip_of(src, plugin), plugin)
    assert tree_hashes(ctx, [str(src), str(plugins / "missing")]) == {str(src): want, str(plugins / "missing"): None}
    assert snapshot_path(ctx, str(src), str(snap)) is True
    assert snapshot(snap) == before  # the copy is exact
    mutate(src, names)
    assert tree_hashes(ctx, [str(src)])[str(src)] != want
    restore_path(ctx, str(snap), str(src))
    assert snapshot(src) == before  # put back exactly
    assert tree_hashes(ctx, [str(src)]) == {str(src): want}
    restore_path(ctx, str(snap), str(src))  # a second restore changes nothing
    assert snapshot(src) == before
    restore_path(ctx, None, str(src))  # a plugin that did not exist before is removed
    assert not src.exists() and not src.is_symlink()
    assert {k: v for k, v in snapshot(plugins).items() if not k.startswith(plugin)} == others
    assert sorted(p.name for p in plugins.iterdir()) == sorted(["other", "decoys"])  # no leftovers
    assert snapshot_path(ctx, str(src), str(snap)) is False  # absent source: nothing copied
    assert snapshot(decoys) == decoys_before


@SETTINGS
@given(plugin=hostile_names().filter(lambda n: n not in ("other", "decoys", "missing")), names=distinct_names(3))
def test_cms_snapshot_helpers_hostile_names_local(tmp_path: Path, plugin: str, names: list[str]) -> None:
    cms_snapshot_case(tmp_path, plugin, names)


# ---------------------------------------------------------------------------- the same over SSH

SSH_SITE = "-rf 'q\"uo\\te'\n$(id) *?[ab] ünï日本 " + "é" * 40
SSH_NAMES = ["--help", "new\nline \\1", "x" * 255]


@pytest.fixture()
def ssh_root(ssh_lab: Any) -> Iterator[tuple[Path, Remote]]:
    """A scratch directory on the first lab host and its connection fields (as root)."""
    host = ssh_lab.hosts[0]
    base = ssh_lab.scratch(host, "hostile")
    yield base, lambda path: host.env(path, user="root")
    shutil.rmtree(base, ignore_errors=True)


def test_deploy_hostile_names_over_ssh(ssh_root: tuple[Path, Remote], tmp_path: Path) -> None:
    base, remote = ssh_root
    repo = BareRepo(tmp_path / "repo" / "app.git")
    deploy_case(base, repo, SSH_SITE, SSH_NAMES, ["-shared 'conf'.php", "media *"], remote)


def test_backup_restore_hostile_names_over_ssh(ssh_root: tuple[Path, Remote]) -> None:
    base, remote = ssh_root
    backup_case(base, SSH_SITE, _site_names(SSH_NAMES), remote)
