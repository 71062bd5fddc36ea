"""Rebasing local state commits onto the remote branch without touching the working tree.

A run keeps writing its folder (``events.jsonl`` grows while it publishes), so ``git rebase``
— which checks the upstream out and replays — could swap a file from under an open handle.
Here each local commit is rebuilt on top of the new base in a private index: the paths it
changed take its version (run folders are unique paths, so there is nothing to merge), except
a ``*.jsonl`` file both sides appended to, which gets the other side's lines followed by
ours. A commit that changes nothing any more is dropped. Only then do the branch, the index
and the files that differ between the old and the new tip move (:func:`move_to`), and files
the new tip does not change are never rewritten.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from maintkit.state.git_cmd import GitCmd

_ZERO = "0" * 40


@dataclass(frozen=True)
class _Change:
    old_sha: str
    new_mode: str
    new_sha: str
    status: str
    path: str


def _changes(cmd: GitCmd, commit: str) -> list[_Change]:
    """What ``commit`` changed against its first parent (everything, for a root commit)."""
    out = cmd.run("diff-tree", "-r", "-z", "--no-renames", "--no-commit-id", "--root", commit)
    fields = out.split("\0")
    changes: list[_Change] = []
    i = 0
    while i + 1 < len(fields) and fields[i].startswith(":"):
        _old_mode, new_mode, old_sha, new_sha, status = fields[i][1:].split(" ")
        changes.append(_Change(old_sha, new_mode, new_sha, status[:1], fields[i + 1]))
        i += 2
    return changes


def _tree_entry(cmd: GitCmd, tree: str, path: str) -> str | None:
    """The blob sha of ``path`` in ``tree``, or None."""
    out = cmd.run("ls-tree", "-z", tree, "--", path)
    for entry in out.split("\0"):
        meta, tab, name = entry.partition("\t")
        if tab and name == path and meta.split(" ")[1] == "blob":
            return meta.split(" ")[2]
    return None


def appended(old: bytes, ours: bytes, theirs: bytes) -> bytes | None:
    """``theirs`` followed by what ``ours`` appended to ``old``; None when ours is not an append."""
    if not ours.startswith(old) or not theirs.startswith(old) or (old and not old.endswith(b"\n")):
        return None
    added = ours[len(old) :]
    if theirs and added and not theirs.endswith(b"\n"):
        theirs += b"\n"
    return theirs + added


def _merged_blob(cmd: GitCmd, change: _Change, base: str) -> str:
    """The blob ``change.path`` gets on top of ``base``: ours, or both appends for a JSONL file."""
    if not change.path.endswith(".jsonl"):
        return change.new_sha
    theirs = _tree_entry(cmd, base, change.path)
    if theirs is None or theirs in (change.old_sha, change.new_sha):
        return change.new_sha
    old = b"" if change.old_sha == _ZERO else cmd.blob(change.old_sha)
    merged = appended(old, cmd.blob(change.new_sha), cmd.blob(theirs))
    return change.new_sha if merged is None else cmd.write_blob(merged)


def _index_info(cmd: GitCmd, changes: list[_Change], base: str) -> bytes:
    lines = []
    for change in changes:
        if change.status == "D":
            lines.append(f"0 {_ZERO}\t{change.path}")
        else:
            lines.append(f"{change.new_mode} {_merged_blob(cmd, change, base)}\t{change.path}")
    return b"".join(line.encode("utf-8", "surrogateescape") + b"\0" for line in lines)


def _tree_on(cmd: GitCmd, commit: str, base: str) -> str:
    """The tree of ``base`` with the changes of ``commit`` applied (a private index)."""
    fd, name = tempfile.mkstemp(prefix="maint-replay.", suffix=".index", dir=cmd.root / ".git")
    os.close(fd)
    index = Path(name)
    index.unlink()
    try:
        cmd.run("read-tree", base, index=index)
        info = _index_info(cmd, _changes(cmd, commit), base)
        with tempfile.TemporaryFile(dir=cmd.root / ".git") as fh:
            fh.write(info)
            fh.seek(0)
            cmd.run("update-index", "-z", "--index-info", index=index, stdin=fh)
        return cmd.run("write-tree", index=index).strip()
    finally:
        index.unlink(missing_ok=True)


def _recommit(cmd: GitCmd, commit: str, tree: str, parent: str) -> str:
    """A copy of ``commit`` (message, author, author date) with ``tree`` on ``parent``."""
    name, email, date = cmd.run("log", "-1", "--format=%an%x00%ae%x00%aI", commit).split("\0")
    message = cmd.run("log", "-1", "--format=%B", commit)
    author = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": date}
    with tempfile.TemporaryFile(dir=cmd.root / ".git") as fh:
        fh.write(message.encode("utf-8", "surrogateescape"))
        fh.seek(0)
        status, out, err = cmd.call("commit-tree", tree, "-p", parent, "-F", "-", stdin=fh, env=author)
    if status != 0:
        raise cmd.error("git commit-tree", err)
    return str(out).strip()


def replay(cmd: GitCmd, onto: str, head: str) -> str:
    """The commits of ``head`` missing from ``onto``, rebuilt on top of it; the new tip.

    Merge commits are skipped (their sides are replayed); commits that no longer change
    anything are dropped.
    """
    commits = cmd.run("rev-list", "--reverse", "--no-merges", "--topo-order", head, "--not", onto).split()
    tip = onto
    for commit in commits:
        tree = _tree_on(cmd, commit, tip)
        if tree == cmd.run("rev-parse", f"{tip}^{{tree}}").strip():
            continue
        tip = _recommit(cmd, commit, tree, tip)
    return tip


def move_to(cmd: GitCmd, old: str | None, new: str, branch: str) -> None:
    """Move ``branch`` (checked out) from ``old`` to ``new``: only files that differ are touched.

    A file the new tip changes that was also changed locally and not yet published makes
    this fail (StateError) before anything moved.
    """
    cmd.run("read-tree", "-m", "-u", old or cmd.run("hash-object", "-w", "-t", "tree", "/dev/null").strip(), new)
    args = ["update-ref", "-m", "maint state: update", f"refs/heads/{branch}", new]
    cmd.run(*args, *([old] if old else [_ZERO]))


__all__ = ["appended", "move_to", "replay"]
