"""``file.content``, ``file.directory``, ``file.symlink``: files on the host, atomically, reversibly.

Rollback scope: each action records, BEFORE it changes anything, what the path was (type,
mode, owner, content or link target) and, for ``file.directory``, which directories are
missing (a probe). Rollback acts only on those recorded paths and never on a tool's output.
A path that did not exist is removed again only while it is still what the action made.
Every command puts ``--`` before its operands; temporary names are short siblings
(``.maint-`` and random hex, at most 31 bytes), so names up to the file system's limit work.
"""

from __future__ import annotations

import difflib
import hashlib
import posixpath
import secrets
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pydantic import Field, field_validator

from maintkit._text import tail
from maintkit.action import Action, Context, Params
from maintkit.errors import ApplyFailed, CheckFailed, CommandFailed, RollbackFailed
from maintkit.probes import FileInfo, FileState, MissingDirs, Probe, hex_script
from maintkit.results import Change, Check
from maintkit.transport.base import join, quote

P = TypeVar("P", bound="_AbsolutePath")

MAX_UNDO_BYTES = 16 * 1024 * 1024
#: exit code of a rollback script that found the path changed since apply (left in place)
_CHANGED = 3


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
        if "\0" in v:
            raise ValueError("path must not contain a NUL byte")
        return v.rstrip("/") or "/"


class _Owned(_AbsolutePath):
    mode: str | None = Field(None, description="Octal mode, e.g. '0644'")
    owner: str | None = Field(None, description="Owner user name")
    group: str | None = Field(None, description="Owner group name")

    @field_validator("mode", mode="before", json_schema_input_type=str | int | None)
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


#: setuid and setgid: a chown clears them, so a mode holding them is set again after it
_SETID = 0o6000


def _attrs_lines(p: _Owned, *, chmod: bool = True, mode: int | None = None) -> list[str]:
    """Commands setting owner/group of ``p.path``, then its mode; empty when nothing is asked.

    The mode is ``p.mode`` (with ``chmod``), else ``mode`` (the mode the file already has) again
    after an owner or group change when it holds setuid/setgid bits, which the chown cleared.
    """
    lines = []
    if p.owner or p.group:
        spec = (p.owner or "") + (f":{p.group}" if p.group else "")
        lines.append(join(["chown", "-h", "--", spec, p.path]))
    if chmod and p.mode is not None:
        lines.append(join(["chmod", "--", p.mode, p.path]))
    elif lines and mode is not None and mode & _SETID:
        lines.append(join(["chmod", "--", f"{mode:04o}", p.path]))
    return lines


def _owner_script(path: str, before: FileInfo) -> str:
    """Give ``path`` back its recorded owner where the login user may (best effort).

    A non-root login cannot hand a file to a group it is not in; the content, mode and link
    target are what a rollback guarantees, the owner is restored whenever the user is allowed to.
    A recorded mode with setuid/setgid bits is set again after the chown (which cleared them).
    """
    spec = f"{before.owner}:{before.group}"
    script = f"{{ chown -h -- {quote(spec)} {quote(path)} 2>/dev/null || :; }}"
    if before.type != "symlink" and before.mode and int(before.mode, 8) & _SETID:  # chmod follows links
        script += " && " + join(["chmod", "--", before.mode, path])
    return script


def _sibling_tmp(path: str, pattern: str = "") -> str:
    """A short temporary name in ``path``'s directory (fits even beside a 255-byte name)."""
    suffix = pattern or secrets.token_hex(6)
    return posixpath.join(posixpath.dirname(path) or "/", f".maint-{suffix}")


def _tmp_token() -> str:
    """96 random bits naming a temporary sibling (``.maint-`` + 24 hex: 31 bytes, far below 255)."""
    return secrets.token_hex(12)


#: mode bits a new file can get from the umask alone; any other bit (x, setuid, setgid, sticky) needs chmod
_UMASK_BITS = 0o666


def put_script(path: str, mode: int) -> str:
    """Shell writing stdin to ``path`` atomically: temp sibling, owner, mode, ``mv -T``. Exit 0 or 1.

    Programs started for a new file: ``cat`` and ``mv`` (plus ``chmod`` when ``mode`` has a bit
    outside 0666, after the ``chown``, which would clear setuid/setgid); the temp file gets the
    existing file's owner and group when allowed (``chown``).

    The temp file is created with the umask ``0777 & ~mode``: it never has a permission ``mode``
    lacks, not even while it is written (0600 for a secret from its first byte), and has exactly
    ``mode`` when no chmod is needed. What protects the write from a planted file: the name is
    chosen on the controller (96 random bits, :func:`_tmp_token`) and is unpredictable; the
    script refuses (exit 1, nothing touched) when anything already has that name, including a
    dangling symlink, a FIFO or a device (``[ -e ] || [ -L ]``, builtins); then the file is
    opened once, for the whole write, under ``set -C``. With noclobber, dash 0.5.12 and bash 5.2
    (also ``--posix``) ``stat`` the name: a missing name is opened with ``O_CREAT|O_EXCL``
    (which fails on any name that appeared meanwhile, a dangling symlink included: nothing is
    followed), a regular file or a symlink to one is refused, but a FIFO or a device is opened
    as it is: the builtin test above refuses those. A refused open exits 1 and removes nothing;
    a failure after the file was created removes the temp file.
    """
    p = quote(path)
    owner = f'{{ [ ! -e {p} ] || chown --reference={p} -- "$tmp" 2>/dev/null || :; }}'
    chmod = f'chmod -- {mode:04o} "$tmp" && ' if mode & ~_UMASK_BITS else ""
    exists = "printf '%s\\n' \"$tmp: exists already, nothing written\" >&2; exit 1"
    return (
        f"umask {0o777 & ~mode:03o}; tmp={quote(_sibling_tmp(path, _tmp_token()))}\n"
        f'if [ -e "$tmp" ] || [ -L "$tmp" ]; then {exists}; fi\n'
        # the redirection opens the file before the group runs; a refused open skips it (no rm)
        f'set -C; {{ set +C; if cat >&3 && {owner} && {chmod}mv -f -T -- "$tmp" {p}; then exit 0; fi\n'
        'rm -f -- "$tmp"; exit 1; } 3> "$tmp" || exit 1'
    )


def _change_then_probe(ctx: Context, script: str, path: str, *, stdin: bytes | None = None) -> str:
    """Run the change and read the path's new state in the same round trip (for verify)."""
    try:
        return ctx.run_and_probe(script, [FileState(path)], stdin=stdin)
    except CommandFailed as exc:
        res = exc.result
        err = tail(res.stderr or res.stdout, 300)
        raise ApplyFailed(f"{path}: {err or res.why}{' (timed out)' if err and res.timed_out else ''}") from None


def _run_undo(ctx: Context, script: str, path: str, what: str, *, stdin: bytes | None = None) -> None:
    """Run a rollback script; exit 3 means the path changed since apply and was left alone."""
    res = ctx.run_shell(script, check=False, stdin=stdin)
    if res.exit_code == _CHANGED:
        raise RollbackFailed(f"{path}: changed since this run {what} it; left in place")
    if not res.ok:
        raise RollbackFailed(f"{path}: cannot roll back: {tail(res.stderr or res.stdout, 300)}")


def _remove_if_script(path: str, test: str) -> str:
    """Remove ``path`` if ``test`` holds; exit 3 when something else is there now."""
    return f'p={quote(path)}\nif {test}; then rm -f -- "$p"\nelif [ -e "$p" ] || [ -L "$p" ]; then exit {_CHANGED}; fi'


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
            raise CheckFailed(f"{path} exists and is a {info.type}, not a {self.kind}")
        return info


class FileContentParams(_Owned):
    """Parameters of ``file.content``."""

    content: str = Field(..., description="Exact file content")


@dataclass(frozen=True)
class _ContentUndo:
    """What ``file.content`` recorded before writing: the old state and bytes, and what it wrote."""

    before: FileInfo
    data: bytes | None
    written: str


class FileContent(_PathAction[FileContentParams]):
    """Ensure a file has exactly this content (and mode/owner). Atomic write; rollback restores it."""

    name = "file.content"
    chainable = True
    kind = "file"
    Params = FileContentParams
    summary = "Ensure a file's exact content, mode and owner (atomic write, reversible)."
    rollback_kind = "undo"

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
        script = " && ".join([f"( {put_script(p.path, mode)}\n)", *_attrs_lines(p, chmod=False, mode=mode)])
        _change_then_probe(ctx, script, p.path, stdin=self._data)
        written = hashlib.sha256(self._data).hexdigest()
        return [
            Change(
                target=p.path,
                summary="created" if not before.exists else "updated",
                before=before.sha256,
                after=written,
                undo=_ContentUndo(before, old, written),
            )
        ]

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        for change in reversed(changes):
            undo: _ContentUndo = change.undo
            path = change.target
            if not undo.before.exists:
                ours = f'[ -f "$p" ] && [ ! -L "$p" ] && [ "$(sha256sum < "$p")" = {quote(undo.written + "  -")} ]'
                _run_undo(ctx, _remove_if_script(path, ours), path, "wrote")
            elif undo.data is None:
                raise RollbackFailed(f"{path}: previous content was too large to keep for undo")
            else:
                script = f"( {put_script(path, int(undo.before.mode, 8))}\n) && {_owner_script(path, undo.before)}"
                _run_undo(ctx, script, path, "wrote", stdin=undo.data)

    @classmethod
    def change_from_record(cls, record: dict[str, Any]) -> Change | None:
        """A file this action created can be removed again; an updated one cannot (its previous
        content is never written to the audit log)."""
        if record.get("summary") != "created" or not isinstance(record.get("after"), str):
            return None
        undo = _ContentUndo(FileInfo(exists=False), None, record["after"])
        return Change(record["target"], "created", None, record["after"], undo=undo)


class FileDirectoryParams(_Owned):
    """Parameters of ``file.directory``."""


@dataclass(frozen=True)
class _DirPlan:
    """Recorded before ``file.directory`` changes anything: the old state and the missing directories."""

    before: FileInfo
    missing: tuple[str, ...] = ()


def _mkdirs_script(missing: tuple[str, ...], then: list[str], mode: str | None = None) -> str:
    """Create exactly ``missing`` (top-down, plain ``mkdir``; the last one with ``mode``, exact
    whatever the umask), then run ``then``.

    A directory that appeared meanwhile makes ``mkdir`` fail; whatever this script created
    is removed again on any failure, so a failed apply leaves nothing behind.
    """
    lines = []
    for i, path in enumerate(missing):
        undo = join(["rmdir", "--", *reversed(missing[:i])]) + "; " if i else ""
        opt = f"-m {quote(mode)} " if mode and i == len(missing) - 1 else ""
        lines.append(f"mkdir {opt}-- {quote(path)} || {{ {undo}exit 1; }}")
    undo_all = join(["rmdir", "--", *reversed(missing)])
    lines += [f"{line} || {{ {undo_all}; exit 1; }}" for line in then]
    return "\n".join(lines)


class FileDirectory(_PathAction[FileDirectoryParams]):
    """Ensure a directory exists with mode/owner. Rollback removes the directories it created (when empty)."""

    name = "file.directory"
    chainable = True
    kind = "directory"
    Params = FileDirectoryParams
    summary = "Ensure a directory exists with mode and owner (reversible)."
    rollback_kind = "undo"

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        return [FileState(self.params.path), MissingDirs(self.params.path)]

    def check(self, ctx: Context) -> Check:
        p = self.params
        info = self._state(ctx)
        if not info.exists:
            missing = ctx.probe(MissingDirs(p.path))
            if not missing or missing[-1] != p.path:
                raise CheckFailed(f"cannot tell which parent directories of {p.path} exist")
            return Check.change("directory missing", snapshot=_DirPlan(info, missing))
        diffs = _attr_diffs(p, info)
        if not diffs:
            return Check.ok("directory as wanted")
        return Check.change(", ".join(diffs), snapshot=_DirPlan(info))

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        p = self.params
        plan: _DirPlan = check.snapshot
        if plan.missing and not (p.owner or p.group):  # the mode comes with mkdir: no chmod
            script = _mkdirs_script(plan.missing, [], p.mode)
        else:
            attrs = _attrs_lines(p)
            script = _mkdirs_script(plan.missing, attrs) if plan.missing else " && ".join(attrs) or "true"
        _change_then_probe(ctx, script, p.path)
        return [
            Change(
                p.path,
                "created" if plan.missing else "attributes changed",
                before=plan.before.mode or None,
                after={"created": list(plan.missing)} if plan.missing else None,
                undo=plan,
            )
        ]

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        for change in reversed(changes):
            plan: _DirPlan = change.undo
            if plan.missing:
                res = ctx.run(["rmdir", "--", *reversed(plan.missing)], check=False)
                if not res.ok:
                    raise RollbackFailed(f"cannot remove {change.target}: {tail(res.stderr, 300)}")
            elif plan.before.exists:
                mode = join(["chmod", "--", plan.before.mode, change.target])
                _run_undo(ctx, f"{mode} && {_owner_script(change.target, plan.before)}", change.target, "changed")

    @classmethod
    def change_from_record(cls, record: dict[str, Any]) -> Change | None:
        """The directories it created, or the mode it had before, as recorded."""
        after, before = record.get("after"), record.get("before")
        if isinstance(after, dict) and isinstance(after.get("created"), list):
            plan = _DirPlan(FileInfo(exists=False), tuple(str(p) for p in after["created"]))
        elif isinstance(before, str) and before:
            plan = _DirPlan(FileInfo(exists=True, type="directory", mode=before))
        else:
            return None
        return Change(record["target"], str(record.get("summary")), before, after, undo=plan)


class FileSymlinkParams(_AbsolutePath):
    """Parameters of ``file.symlink``."""

    path: str = Field(..., description="Absolute path of the link")
    target: str = Field(..., min_length=1, description="What the link points to")


def switch_script(path: str, target: str) -> str:
    """Shell lines pointing ``path`` at ``target`` atomically (new link beside it + ``mv -T``)."""
    tmp = quote(_sibling_tmp(path))
    return (
        f"ln -s -- {quote(target)} {tmp} && mv -T -f -- {tmp} {quote(path)} || {{ rc=$?; rm -f -- {tmp}; exit $rc; }}"
    )


def switch_symlink(ctx: Context, path: str, target: str) -> None:
    """Point ``path`` at ``target`` atomically (new link + ``mv -T``)."""
    res = ctx.run_shell(switch_script(path, target), check=False)
    if not res.ok:
        raise ApplyFailed(f"cannot switch {path} -> {target}: {res.stderr.strip()}")


def _target_is(target: str) -> str:
    """Shell test: ``$p`` is a symlink whose target is exactly ``target`` (compared as hex bytes)."""
    want = target.encode("utf-8", "surrogateescape").hex()
    got = hex_script('readlink -n -- "$p"').removesuffix("; echo")
    return f'[ -L "$p" ] && [ "$({got})" = {want} ]'


class FileSymlink(_PathAction[FileSymlinkParams]):
    """Ensure a symlink points at a target, switched atomically. Rollback restores the old target."""

    name = "file.symlink"
    chainable = True
    kind = "symlink"
    Params = FileSymlinkParams
    summary = "Ensure a symlink points at a target (atomic switch, reversible)."
    rollback_kind = "undo"

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
        # a new link is made in place: symlink(2) is atomic; -T: anything there by now fails it
        script = switch_script(p.path, p.target) if before.exists else join(["ln", "-s", "-T", "--", p.target, p.path])
        _change_then_probe(ctx, script, p.path)
        return [Change(p.path, "switched", before=before.target, after=p.target, undo=(before, p.target))]

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        for change in reversed(changes):
            before, made = change.undo
            path = change.target
            if before.exists and before.target is not None:
                script = f"( {switch_script(path, before.target)}\n) && {_owner_script(path, before)}"
                _run_undo(ctx, script, path, "switched")
            else:
                _run_undo(ctx, _remove_if_script(path, _target_is(made)), path, "created")

    @classmethod
    def change_from_record(cls, record: dict[str, Any]) -> Change | None:
        """The previous and the new link target, as recorded."""
        before, after = record.get("before"), record.get("after")
        if not isinstance(after, str) or not (before is None or isinstance(before, str)):
            return None
        info = FileInfo(exists=before is not None, type="symlink", target=before)
        return Change(record["target"], "switched", before, after, undo=(info, after))


__all__ = ["FileContent", "FileDirectory", "FileSymlink", "put_script", "switch_script", "switch_symlink"]
