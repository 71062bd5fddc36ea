"""``file.content``, ``file.directory``, ``file.symlink``: files on the host, atomically, reversibly."""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pydantic import Field, field_validator

from maintkit.action import Action, Context, Params
from maintkit.errors import ApplyFailed, CheckFailed, RollbackFailed
from maintkit.probes import FileInfo, FileState, Probe
from maintkit.results import Change, Check
from maintkit.transport.base import join, quote

P = TypeVar("P", bound="_AbsolutePath")

MAX_UNDO_BYTES = 16 * 1024 * 1024


def _mode(value: str | int | None) -> str | None:
    if value is None:
        return None
    text = oct(value)[2:] if isinstance(value, int) else str(value)
    text = text.lstrip("0") or "0"
    if not all(c in "01234567" for c in text) or len(text) > 4:
        raise ValueError(f"invalid mode {value!r} (use octal such as '0644')")
    return text


class _AbsolutePath(Params):
    path: str = Field(..., description="Absolute path on the host")

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("path must be absolute")
        return v.rstrip("/") or "/"


class _Owned(_AbsolutePath):
    mode: str | None = Field(None, description="Octal mode, e.g. '0644'")
    owner: str | None = Field(None, description="Owner user name")
    group: str | None = Field(None, description="Owner group name")

    @field_validator("mode", mode="before")
    @classmethod
    def _valid_mode(cls, v: Any) -> str | None:
        return _mode(v)


def _attr_diffs(p: _Owned, info: FileInfo) -> list[str]:
    out = []
    if p.mode is not None and info.mode.lstrip("0") != p.mode.lstrip("0"):
        out.append(f"mode {info.mode} -> {p.mode}")
    if p.owner is not None and info.owner != p.owner:
        out.append(f"owner {info.owner} -> {p.owner}")
    if p.group is not None and info.group != p.group:
        out.append(f"group {info.group} -> {p.group}")
    return out


def _attrs_script(p: _Owned, *, chmod: bool = True) -> str:
    """Shell lines setting owner/group (and mode) of ``p.path``; empty when nothing is asked."""
    lines = []
    if p.owner or p.group:
        spec = (p.owner or "") + (f":{p.group}" if p.group else "")
        lines.append(join(["chown", "-h", spec, p.path]))
    if chmod and p.mode is not None:
        lines.append(join(["chmod", p.mode, p.path]))
    return "".join(f" && {line}" for line in lines)


def _change_then_probe(ctx: Context, script: str, path: str, action: str, *, stdin: bytes | None = None) -> str:
    """Run the change and read the path's new state in the same round trip (for verify)."""
    from maintkit.errors import CommandFailed

    try:
        return ctx.run_and_probe(script, [FileState(path)], stdin=stdin)
    except CommandFailed as exc:
        err = (exc.result.stderr or exc.result.stdout).strip()[-300:]
        raise ApplyFailed(f"{path}: {err or f'exit {exc.result.exit_code}'}", action=action) from None


def _restore_attrs(ctx: Context, path: str, before: FileInfo) -> None:
    if before.type != "symlink":
        ctx.run(["chmod", before.mode, path])
    ctx.run(["chown", "-h", f"{before.owner}:{before.group}", path], check=False)


class _PathAction(Action[P]):
    """Shared by the file actions: the state of ``params.path``, prefetched in the stage's batch."""

    kind: ClassVar[str] = ""

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        return [FileState(self.params.path)]

    def _state(self, ctx: Context) -> FileInfo:
        """The path's state; a path of another type is a blocking problem, never overwritten."""
        path = self.params.path
        info = ctx.probe(FileState(path))
        if info.exists and info.type != self.kind:
            raise CheckFailed(f"{path} exists and is a {info.type}, not a {self.kind}", action=self.name)
        return info


class FileContentParams(_Owned):
    """Parameters of ``file.content``."""

    content: str = Field(..., description="Exact file content")


@dataclass
class _ContentUndo:
    before: FileInfo
    data: bytes | None


class FileContent(_PathAction[FileContentParams]):
    """Ensure a file has exactly this content (and mode/owner). Atomic write; rollback restores it."""

    name = "file.content"
    kind = "file"
    Params = FileContentParams
    summary = "Ensure a file's exact content, mode and owner (atomic write, reversible)."
    reversible = True

    @property
    def _data(self) -> bytes:
        return self.params.content.encode("utf-8")

    def check(self, ctx: Context) -> Check:
        p = self.params
        info = self._state(ctx)
        want = hashlib.sha256(self._data).hexdigest()
        reasons = []
        if not info.exists:
            reasons.append("file missing")
        elif info.sha256 != want:
            reasons.append("content differs")
        reasons += _attr_diffs(p, info) if info.exists else []
        if not reasons:
            return Check.ok("content, mode and owner as wanted")
        diff = None
        if ctx.options.diff:
            old = ctx.get(p.path).decode("utf-8", "replace") if info.exists and info.size < 1_000_000 else ""
            diff = "".join(
                difflib.unified_diff(old.splitlines(True), p.content.splitlines(True), p.path + " (before)", p.path)
            )
        return Check.change(", ".join(reasons), diff=diff, snapshot=info)

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        p = self.params
        before: FileInfo = check.snapshot
        old = ctx.get(p.path) if before.exists and before.size <= MAX_UNDO_BYTES else None
        mode = int(p.mode, 8) if p.mode else (int(before.mode, 8) if before.exists else 0o644)
        from maintkit.transport.local import atomic_put_script

        script = f"( {atomic_put_script(p.path, mode)}\n){_attrs_script(p, chmod=False)}"
        _change_then_probe(ctx, script, p.path, self.name, stdin=self._data)
        return [
            Change(
                target=p.path,
                summary="created" if not before.exists else "updated",
                before=before.sha256,
                after=hashlib.sha256(self._data).hexdigest(),
                undo=_ContentUndo(before, old),
            )
        ]

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        for change in reversed(changes):
            undo: _ContentUndo = change.undo
            if not undo.before.exists:
                ctx.run(["rm", "-f", "--", change.target])
            elif undo.data is None:
                raise RollbackFailed(f"{change.target}: previous content was too large to keep for undo")
            else:
                ctx.put(undo.data, change.target, mode=int(undo.before.mode, 8))
                _restore_attrs(ctx, change.target, undo.before)


class FileDirectoryParams(_Owned):
    """Parameters of ``file.directory``."""


class FileDirectory(_PathAction[FileDirectoryParams]):
    """Ensure a directory exists with mode/owner. Rollback removes it if it created it (when empty)."""

    name = "file.directory"
    kind = "directory"
    Params = FileDirectoryParams
    summary = "Ensure a directory exists with mode and owner (reversible)."
    reversible = True

    def check(self, ctx: Context) -> Check:
        p = self.params
        info = self._state(ctx)
        if not info.exists:
            return Check.change("directory missing", snapshot=info)
        diffs = _attr_diffs(p, info)
        return Check.change(", ".join(diffs), snapshot=info) if diffs else Check.ok("directory as wanted")

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        p = self.params
        before: FileInfo = check.snapshot
        # remember which parents mkdir creates, so rollback removes exactly those
        mkdir = join(["mkdir", "-p", "-v", "--", p.path]) if not before.exists else "true"
        out = _change_then_probe(ctx, mkdir + _attrs_script(p), p.path, self.name)
        created = [line.split("'", 2)[1] for line in out.splitlines() if line.count("'") >= 2]
        return [
            Change(
                p.path,
                "created" if created else "attributes changed",
                before=before.mode or None,
                undo=(before, created),
            )
        ]

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        for change in reversed(changes):
            before, created = change.undo
            if created:
                res = ctx.run(["rmdir", "--", *reversed(created)], check=False)
                if not res.ok:
                    raise RollbackFailed(f"cannot remove {change.target}: {res.stderr.strip()}")
            else:
                _restore_attrs(ctx, change.target, before)


class FileSymlinkParams(_AbsolutePath):
    """Parameters of ``file.symlink``."""

    path: str = Field(..., description="Absolute path of the link")
    target: str = Field(..., description="What the link points to")


def switch_script(path: str, target: str) -> str:
    """Shell lines pointing ``path`` at ``target`` atomically (new link + ``mv -T``)."""
    tmp = f"{path}.maint-tmp"
    return (
        f"ln -sfn {quote(target)} {quote(tmp)} && mv -T -f {quote(tmp)} {quote(path)}"
        f" || {{ rc=$?; rm -f {quote(tmp)}; exit $rc; }}"
    )


def switch_symlink(ctx: Context, path: str, target: str) -> None:
    """Point ``path`` at ``target`` atomically (new link + ``mv -T``)."""
    res = ctx.run_shell(switch_script(path, target), check=False)
    if not res.ok:
        raise ApplyFailed(f"cannot switch {path} -> {target}: {res.stderr.strip()}")


class FileSymlink(_PathAction[FileSymlinkParams]):
    """Ensure a symlink points at a target, switched atomically. Rollback restores the old target."""

    name = "file.symlink"
    kind = "symlink"
    Params = FileSymlinkParams
    summary = "Ensure a symlink points at a target (atomic switch, reversible)."
    reversible = True

    def check(self, ctx: Context) -> Check:
        p = self.params
        info = self._state(ctx)
        if info.exists and info.target == p.target:
            return Check.ok(f"points to {p.target}")
        was = info.target if info.exists else "missing"
        return Check.change(f"{was} -> {p.target}", diff=f"-{was}\n+{p.target}\n", snapshot=info)

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        p = self.params
        before: FileInfo = check.snapshot
        _change_then_probe(ctx, switch_script(p.path, p.target), p.path, self.name)
        return [Change(p.path, "switched", before=before.target, after=p.target, undo=before)]

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        for change in reversed(changes):
            before: FileInfo = change.undo
            if before.exists and before.target is not None:
                switch_symlink(ctx, change.target, before.target)
            else:
                ctx.run(["rm", "-f", "--", change.target])


__all__ = ["FileContent", "FileDirectory", "FileSymlink", "switch_script", "switch_symlink"]
