"""file.directory, file.content and file.symlink with hostile names, through the real runner.

For every generated example: apply changes exactly the step's paths, a second run changes
nothing, and a run whose last step fails rolls back to the exact previous tree (names,
types, modes, owners, contents, link targets), leaving every decoy alone: an existing empty
directory the new directory is created in, an empty directory and files with similar names,
and names a glob in the new names would match. Most examples run with ``connection: local``;
fewer over the real sshd lab, where quoting goes through a remote shell.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maintkit.probes import FileState, MissingDirs, run_batch
from maintkit.results import SiteStatus, StepStatus
from maintkit.transport.local import LocalTransport
from tests.lab.sshd import LOGIN_USER, LabHost
from tests.runs import one_site, run, write_inventory

# quotes, backslash, newline, tab, spaces, dashes, globs, shell syntax, unicode (2-, 3- and 4-byte)
ALPHABET = "ab-_.' \"\\\n\t*?[]{}$`;&|<>()~#!%éß日本😀"


def _fit(text: str, limit: int = 255) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (on a character boundary)."""
    while len(text.encode()) > limit:
        text = text[:-1]
    return text


_short = st.text(ALPHABET, min_size=1, max_size=12)
_long = st.text(ALPHABET, min_size=1, max_size=6).map(lambda s: _fit(s * 300))
_dash = st.sampled_from(["", "-", "--", "-rf ", "-n"])
NAMES = st.builds(lambda d, n: _fit(d + n), _dash, st.one_of(_short, _short, _long)).filter(
    lambda s: s not in (".", "..")
)
#: link targets: relative or absolute, any of the names above, also several components
TARGETS = st.one_of(NAMES, st.lists(NAMES, min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts)))
CONTENT = st.text(ALPHABET, max_size=200)


@dataclass(frozen=True)
class Case:
    """One generated example: the new names and what exists before the run."""

    parent: str  # an existing empty directory (decoy) the new directories are created in
    new1: str
    new2: str
    content_name: str
    content: str
    content_before: str | None  # None: the file does not exist before
    link_name: str
    target: str
    link_before: str | None  # None: the link does not exist before

    def decoy_names(self, name: str) -> list[str]:
        """Names that look like ``name``: a quote, space or glob away, or what its glob matches."""
        out = {name + "x", "x" + name, name.replace("'", ""), name.replace(" ", "") or "s", name.strip() or "t"}
        for ch in "*?[":
            out.add(name.replace(ch, "z"))
        own = {name, self.parent, self.content_name, self.link_name}
        return sorted({f for f in map(_fit, out) if f and f not in (".", "..") and f not in own})


CASES = st.builds(
    Case,
    parent=NAMES,
    new1=NAMES,
    new2=NAMES,
    content_name=NAMES,
    content=CONTENT,
    content_before=st.one_of(st.none(), CONTENT),
    link_name=NAMES,
    target=TARGETS,
    link_before=st.one_of(st.none(), TARGETS),
).filter(
    lambda c: (
        len({c.parent, c.content_name, c.link_name}) == 3
        and c.content != c.content_before
        and c.target != c.link_before
    )
)


def build_tree(root: Path, case: Case) -> None:
    """The tree before the run: decoys everywhere, the content file and the link when they pre-exist."""
    root.mkdir(mode=0o755)
    (root / case.parent).mkdir(mode=0o755)
    for name in sorted({case.new1, case.content_name, case.link_name, case.parent}):
        for decoy in case.decoy_names(name):
            if (root / decoy).exists() or (root / decoy).is_symlink():
                continue
            if len(decoy) % 2:
                (root / decoy).mkdir()  # an empty directory
            else:
                (root / decoy).write_text("decoy\n")
    for decoy in case.decoy_names(case.new1):
        if decoy != case.new1:
            (root / case.parent / decoy).write_text("decoy inside\n")
    if case.content_before is not None:
        (root / case.content_name).write_bytes(case.content_before.encode())
        (root / case.content_name).chmod(0o604)
    if case.link_before is not None:
        (root / case.link_name).symlink_to(case.link_before)


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every path under ``root``: type, mode, owner, and content or link target."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st_ = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISLNK(st_.st_mode):
                out[rel] = ("link", st_.st_uid, os.readlink(p))
            elif stat.S_ISDIR(st_.st_mode):
                out[rel] = ("dir", oct(st_.st_mode), st_.st_uid, st_.st_gid)
            else:
                out[rel] = ("file", oct(st_.st_mode), st_.st_uid, st_.st_gid, Path(p).read_bytes())
    return out


PLAYBOOK = """\
name: hostile
stages:
  - env: production
    steps:
      - {id: dir, action: file.directory, with: {path: "{{ vars.dir }}", mode: "0750"}}
      - {id: content, action: file.content, with: {path: "{{ vars.file }}", content: "{{ vars.body }}", mode: "0640"}}
      - {id: link, action: file.symlink, with: {path: "{{ vars.link }}", target: "{{ vars.target }}"}}
"""
FAILING = PLAYBOOK + '      - {id: boom, action: command, with: {argv: [sh, -c, "exit 1"]}}\n'


def step_vars(root: Path, case: Case) -> dict[str, str]:
    return {
        "dir": str(root / case.parent / case.new1 / case.new2),
        "file": str(root / case.content_name),
        "body": case.content,
        "link": str(root / case.link_name),
        "target": case.target,
    }


def check_case(work: Path, case: Case, env_for: Any, prepare: Any = None) -> None:
    """Apply, apply again, then (on a fresh copy of the same tree) fail and roll back."""
    root = work / "root"
    build_tree(root, case)
    if prepare:
        prepare(root)
    before = snapshot(root)
    first = run(PLAYBOOK, write_inventory(work, one_site(env_for(root, case))), work / "state")
    assert first.ok, first.sites[0].error
    assert first.changed == 3
    new_dir = root / case.parent / case.new1 / case.new2
    assert stat.S_IMODE(new_dir.stat().st_mode) == 0o750 and not any(new_dir.iterdir())
    assert (root / case.content_name).read_bytes() == case.content.encode()
    assert stat.S_IMODE((root / case.content_name).stat().st_mode) == 0o640
    assert os.readlink(root / case.link_name) == case.target
    after = snapshot(root)
    expected = {
        case.parent + "/" + case.new1,
        case.parent + "/" + case.new1 + "/" + case.new2,
        case.content_name,
        case.link_name,
    }
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert changed == expected, "only the steps' own paths change"

    second = run(PLAYBOOK, write_inventory(work, one_site(env_for(root, case))), work / "state")
    assert second.ok and second.changed == 0, second.sites[0].error
    assert {s.status for s in second.sites[0].steps} == {StepStatus.UNCHANGED}
    assert snapshot(root) == after

    root2 = work / "root2"
    build_tree(root2, case)
    if prepare:
        prepare(root2)
    before2 = snapshot(root2)
    failed = run(FAILING, write_inventory(work, one_site(env_for(root2, case))), work / "state")
    site = failed.sites[0]
    assert failed.exit_code == 1 and site.status is SiteStatus.ROLLED_BACK, site.error
    assert [s.status for s in site.steps] == [StepStatus.ROLLED_BACK] * 3 + [StepStatus.FAILED]
    assert snapshot(root2) == before2, "rollback restores the exact previous tree"


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(case=CASES)
def test_hostile_names_local(tmp_path: Path, case: Case) -> None:
    work = Path(tempfile.mkdtemp(dir=tmp_path))

    def env_for(root: Path, c: Case) -> dict[str, Any]:
        return {"connection": "local", "path": str(work / "site"), "vars": step_vars(root, c)}

    check_case(work, case, env_for)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(case=CASES)
def test_hostile_names_over_ssh(ssh_hosts: list[tuple[LabHost, Path]], case: Case) -> None:
    host, scratch = ssh_hosts[0]
    work = Path(tempfile.mkdtemp(dir=scratch))
    pw = pwd.getpwnam(LOGIN_USER)
    os.chown(work, pw.pw_uid, pw.pw_gid)

    def give_to_login_user(root: Path) -> None:
        subprocess.run(["chown", "-R", "-h", "--", f"{LOGIN_USER}:{LOGIN_USER}", str(root)], check=True)

    def env_for(root: Path, c: Case) -> dict[str, Any]:
        return {**host.env(work / "site"), "vars": step_vars(root, c)}

    check_case(work, case, env_for, give_to_login_user)


# -- the probes themselves, on this host -------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES, target=TARGETS, body=st.binary(max_size=64))
def test_file_state_reads_any_name_and_target_exactly(tmp_path: Path, name: str, target: str, body: bytes) -> None:
    d = Path(tempfile.mkdtemp(dir=tmp_path))
    (d / name).write_bytes(body)
    link = d / _fit("L" + name)
    link.symlink_to(target)
    probes = [FileState(str(d / name)), FileState(str(link)), FileState(str(d / _fit("M" + name)))]
    raw, _ = run_batch(LocalTransport(), probes)
    f, ln, missing = (p.parse(raw[p.key]) for p in probes)
    assert (f.exists, f.type, f.size, f.sha256) == (True, "file", len(body), hashlib.sha256(body).hexdigest())
    assert (ln.exists, ln.type, ln.target) == (True, "symlink", target)
    assert missing.exists is False


def test_missing_dirs_names_exactly_the_directories_to_create(tmp_path: Path) -> None:
    base = tmp_path / "a'b\nc" / "-x"
    base.mkdir(parents=True)
    probe = MissingDirs(str(base / "new\\one" / "*"))
    raw, _ = run_batch(LocalTransport(), [probe])
    assert probe.parse(raw[probe.key]) == (str(base / "new\\one"), str(base / "new\\one" / "*"))
    exists = MissingDirs(str(base))
    raw, _ = run_batch(LocalTransport(), [exists])
    assert exists.parse(raw[exists.key]) == ()
