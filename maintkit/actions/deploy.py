"""``deploy.release`` and ``deploy.rollback``: git deploys into a release layout with an atomic switch.

Layout on the host (``P`` is the environment's path)::

    P/releases/<UTC time>-<sha7>/   one directory per release, with .maint-release.json once complete
    P/shared/                       files and directories linked into every release
    P/current -> releases/<name>    switched atomically (new symlink, then mv -T)
    P/.maint/releases.jsonl         the releases log: one JSON object per line
    P/.maint/repo                   cached bare clone (transfer: clone)

The ref is resolved to a commit on the controller (GitPython); that commit is what is
deployed and recorded. Code reaches the host either from a cached clone on the host
(``transfer: clone``) or, when the host cannot reach the repository, as ``git archive``
streamed from the controller over SSH into ``tar -x`` (``transfer: archive``, the default
for a repository that is a local path on the controller).

Releases log statuses: ``deployed`` (the release became current by a deploy),
``rolled-back`` (it became current again by a rollback) and ``bad`` (it was rolled back
from; it is never chosen again). A release's status is its latest entry. Rollback and
cleanup only read and change files: they never ask the application anything, so they work
when the application is fatally broken.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import posixpath
import re
import subprocess
import tempfile
import threading
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator

from maintkit._text import head, tail
from maintkit.action import Action, Context, Params
from maintkit.actions.file import switch_symlink
from maintkit.errors import ApplyFailed, CheckFailed, MaintkitError, RollbackFailed, VerifyFailed
from maintkit.probes import Probe, RawOutput, decode_hex
from maintkit.results import Change, Check, CommandResult
from maintkit.transport.base import quote

if TYPE_CHECKING:
    from git import Repo

MARKER = ".maint-release.json"
LOG = ".maint/releases.jsonl"
HOST_CACHE = ".maint/repo"
RELEASE_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{7}(?:-\d+)?$")
SHA_RE = re.compile(r"^[0-9a-f]{40}$")
GOOD = ("deployed", "rolled-back")
GIT_TIMEOUT = 300.0
#: every git maint runs (controller and host): no prompts, and no user or system config, so a
#: ~/.gitconfig (url.insteadOf rewrites, hooksPath, signing) cannot change what is fetched
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
LOG_TAIL = 5000

#: A build or after-switch command: an argument list (quoted for you) or, explicitly, a shell script.
Command = list[str] | str


# --------------------------------------------------------------------------- parameters


def _relative(value: str) -> str:
    # names are kept exactly (no stripping): " config.php" is a different file than "config.php"
    norm = posixpath.normpath(value) if value.strip() else ""
    if not norm or norm.startswith("/") or norm in (".", "..") or norm.startswith("../") or "\n" in value:
        raise ValueError(f"{value!r} must be a relative path inside the release")
    return norm


def _commands(value: list[Any]) -> list[Any]:
    for cmd in value:
        if isinstance(cmd, list) and not cmd:
            raise ValueError("an argument list must not be empty")
        if isinstance(cmd, str) and not cmd.strip():
            raise ValueError("a shell command must not be empty")
    return value


class DeployReleaseParams(Params):
    """Parameters of ``deploy.release``."""

    repo: str = Field(..., min_length=1, description="Git repository: URL, or a path on the controller")
    ref: str = Field("main", min_length=1, description="Branch, tag or commit to deploy")
    transfer: Literal["clone", "archive"] | None = Field(
        None,
        description="clone: the host fetches into <path>/.maint/repo; archive: git archive streamed from the "
        "controller (for hosts that cannot reach the repository). Default: archive for a local path, else clone",
    )
    shared_files: list[str] = Field(default_factory=list, description="Files of <path>/shared linked into each release")
    shared_dirs: list[str] = Field(
        default_factory=list, description="Directories of <path>/shared linked into each release"
    )
    build: list[Command] = Field(
        default_factory=list,
        description="Commands run inside the new release before the switch: argument lists, or shell strings",
    )
    build_timeout: float | None = Field(None, gt=0, description="Seconds each build command may take")
    after_switch: list[Command] = Field(
        default_factory=list, description="Commands run after the switch and after a rollback (e.g. reload php-fpm)"
    )
    keep: int = Field(5, ge=1, description="Releases to keep (current and the rollback target are always kept)")

    @field_validator("repo")
    @classmethod
    def _safe_repo(cls, v: str) -> str:
        if v.startswith("-") or any(ord(c) < 32 for c in v):
            raise ValueError(f"invalid repository {display_url(v)!r}")
        return v

    @field_validator("ref")
    @classmethod
    def _safe_ref(cls, v: str) -> str:
        if v.startswith("-") or any(c.isspace() or ord(c) < 32 for c in v) or ".." in v:
            raise ValueError(f"invalid git ref {v!r}")
        return v

    @field_validator("shared_files", "shared_dirs")
    @classmethod
    def _relative_paths(cls, v: list[str]) -> list[str]:
        return [_relative(p) for p in v]

    @field_validator("build", "after_switch")
    @classmethod
    def _non_empty(cls, v: list[Any]) -> list[Any]:
        return _commands(v)


class DeployRollbackParams(Params):
    """Parameters of ``deploy.rollback``."""

    to: str | None = Field(
        None, description="Release to switch to (name, unique prefix or commit prefix); default: the previous good one"
    )
    after_switch: list[Command] = Field(default_factory=list, description="Commands run after the switch")

    @field_validator("after_switch")
    @classmethod
    def _non_empty(cls, v: list[Any]) -> list[Any]:
        return _commands(v)


# --------------------------------------------------------------------------- host state


@dataclass(frozen=True)
class Release:
    """One directory under ``releases/``; ``meta`` is its marker (None while half-built)."""

    name: str
    meta: dict[str, Any] | None

    @property
    def complete(self) -> bool:
        """True when the release has its completion marker."""
        return self.meta is not None

    @property
    def commit(self) -> str | None:
        """The commit recorded in the marker."""
        return str(self.meta["commit"]) if self.meta and "commit" in self.meta else None

    @property
    def sort_key(self) -> tuple[str, str]:
        """Chronological order: marker build time, then name."""
        return (str((self.meta or {}).get("built_at", "")) or self.name, self.name)


@dataclass(frozen=True)
class DeployState:
    """What the host's release layout looks like (read by :class:`ReleaseLayout`)."""

    current: str | None  # "link" target, or None
    current_kind: str  # "link" | "none" | "other"
    releases: dict[str, Release] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    unmanaged: tuple[str, ...] = ()

    @property
    def current_release(self) -> str | None:
        """Name of the release ``current`` points at, if it points into ``releases/``."""
        if self.current is None:
            return None
        parent, name = posixpath.split(self.current.rstrip("/"))
        return name if posixpath.basename(parent) == "releases" and name in self.releases else None

    @property
    def current_commit(self) -> str | None:
        """The commit of the current release (from its marker)."""
        name = self.current_release
        return self.releases[name].commit if name else None

    def status_of(self, name: str) -> str | None:
        """The release's latest status in the log."""
        for entry in reversed(self.log):
            if entry.get("release") == name:
                return str(entry.get("status"))
        return None

    def partials(self) -> list[str]:
        """Half-built releases (no marker) that are not current: leftovers of interrupted runs."""
        return sorted(n for n, r in self.releases.items() if not r.complete and n != self.current_release)

    def previous_good(self, exclude: str | None = None) -> str | None:
        """The release a rollback from ``exclude`` (default: current) would choose, or None.

        The most recent release that was current and is not marked bad, still complete on
        disk. Without a usable log, the newest complete, not bad release older than current.
        """
        exclude = exclude or self.current_release
        seen: set[str] = set()
        for entry in reversed(self.log):
            name = str(entry.get("release", ""))
            if name in seen:
                continue
            seen.add(name)
            if entry.get("status") in GOOD and name != exclude and self._usable(name):
                return name
        ordered = sorted(self.releases.values(), key=lambda r: r.sort_key)
        cut = self.releases.get(exclude or "")
        older = [r for r in ordered if cut is None or r.sort_key < cut.sort_key]
        for rel in reversed(older):
            if rel.name != exclude and self._usable(rel.name) and rel.name not in seen:
                return rel.name
        return None

    def _usable(self, name: str) -> bool:
        rel = self.releases.get(name)
        return rel is not None and rel.complete and self.status_of(name) != "bad"

    def replaced_by_current(self) -> str | None:
        """The release that was current before the current one was deployed (from the log)."""
        cur = self.current_release
        for entry in reversed(self.log):
            if entry.get("release") == cur and entry.get("status") == "deployed":
                prev = entry.get("previous")
                return str(prev) if prev else None
        return None

    def prune_plan(self, keep: int) -> list[str]:
        """Complete releases to delete so that ``keep`` remain.

        Releases marked bad count last (they go first). Never deleted: current, the release a
        rollback would choose, and the release current replaced.
        """
        safe = {n for n in (self.current_release, self.previous_good(), self.replaced_by_current()) if n}
        complete = [r for r in self.releases.values() if r.complete]
        newest = sorted(complete, key=lambda r: r.sort_key, reverse=True)
        ordered = sorted(newest, key=lambda r: self.status_of(r.name) == "bad")  # stable: good first
        return sorted(r.name for r in ordered[keep:] if r.name not in safe)


def _parse_json(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class ReleaseLayout(Probe[DeployState]):
    """Read a release layout in one round trip: ``current``, each release's marker, the releases log."""

    path: str
    kind: ClassVar[str] = "deploy.layout"

    def script(self) -> str:
        p = quote(self.path.rstrip("/") or "/")
        return (
            f"p={p}\n"
            # the link target as hex: a newline or any other byte in it is read back exactly
            "if [ -L \"$p/current\" ]; then printf 'current\\tlink\\t'; "
            "readlink -n -- \"$p/current\" | od -An -v -tx1 | tr -d ' \\n'; echo;\n"
            "elif [ -e \"$p/current\" ]; then printf 'current\\tother\\t\\n'; else printf 'current\\tnone\\t\\n'; fi\n"
            'if [ -d "$p/releases" ]; then for d in "$p"/releases/*; do\n'
            '  [ -d "$d" ] && [ ! -L "$d" ] || continue; n=${d##*/}\n'
            f'  if [ -f "$d/{MARKER}" ]; then printf \'release\\t%s\\t\' "$n"; '
            f"head -c 8192 \"$d/{MARKER}\" | tr '\\n\\t' '  '; printf '\\n';\n"
            "  else printf 'partial\\t%s\\t\\n' \"$n\"; fi\n"
            "done; fi\n"
            f'if [ -f "$p/{LOG}" ]; then tail -n {LOG_TAIL} "$p/{LOG}" | sed \'s/^/log\t/\'; fi\n'
            "exit 0"
        )

    def parse(self, raw: RawOutput) -> DeployState:
        if raw.exit_code != 0:
            raise CheckFailed(f"cannot read the release layout of {self.path} (exit {raw.exit_code})")
        current: str | None = None
        kind = "none"
        releases: dict[str, Release] = {}
        log: list[dict[str, Any]] = []
        unmanaged: list[str] = []
        for line in raw.stdout.splitlines():
            tag, _, rest = line.partition("\t")
            if tag == "current":
                kind, _, target = rest.partition("\t")
                current = decode_hex(target) if kind == "link" else None
            elif tag in ("release", "partial"):
                name, _, body = rest.partition("\t")
                if not RELEASE_RE.match(name):
                    unmanaged.append(name)
                    continue
                releases[name] = Release(name, (_parse_json(body) or {"corrupt": True}) if tag == "release" else None)
            elif tag == "log" and (entry := _parse_json(rest)) is not None:
                log.append(entry)
        return DeployState(current, kind, releases, log, tuple(unmanaged))


# --------------------------------------------------------------------------- the controller's git


_RESOLVED: dict[tuple[str, str, str], str] = {}
_GIT_LOCKS: dict[str, threading.Lock] = {}
_GUARD = threading.Lock()
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@")


def display_url(repo: str) -> str:
    """``repo`` without credentials (user:password@ of URLs), for logs and markers."""
    return _USERINFO.sub(r"\1", repo)


def local_repo_path(repo: str) -> Path | None:
    """The controller path of ``repo`` when it is a local path or file:// URL, else None."""
    if repo.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(repo).path))
    if "://" in repo:
        return None
    head, colon, _ = repo.partition(":")
    if colon and "/" not in head:
        return None  # scp-like: user@host:path
    return Path(repo).expanduser()


def _git_lock(key: str) -> threading.Lock:
    with _GUARD:
        return _GIT_LOCKS.setdefault(key, threading.Lock())


def _git_error(exc: Exception, repo: str) -> str:
    text = str(getattr(exc, "stderr", "") or "").strip()
    if text.startswith("stderr: '") and text.endswith("'"):
        text = text[9:-1].strip()
    text = " ".join(text.split()).replace(repo, display_url(repo))
    return tail(_USERINFO.sub(r"\1", text), 500)


def _open_repo(path: Path) -> Repo:
    import git

    try:
        return git.Repo(str(path))
    except (git.exc.NoSuchPathError, git.exc.InvalidGitRepositoryError) as exc:
        raise CheckFailed(f"{path} is not a git repository on the controller ({type(exc).__name__})") from None


def _mirror(repo: str, state_dir: Path) -> Repo:
    """A bare mirror of a remote repository on the controller, fetched (for transfer: archive)."""
    import git

    digest = hashlib.sha256(display_url(repo).encode()).hexdigest()[:16]
    path = state_dir / "git" / f"{digest}.git"
    env = dict(GIT_ENV)
    with _git_lock(str(path)):
        try:
            if not (path / "HEAD").exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                return git.Repo.clone_from(repo, str(path), multi_options=["--mirror"], env=env)
            mirror = git.Repo(str(path))
            mirror.git.remote("set-url", "origin", repo)
            mirror.git.fetch("--prune", "--force", "origin", env=env, kill_after_timeout=GIT_TIMEOUT)
            return mirror
        except git.exc.GitCommandError as exc:
            raise CheckFailed(f"cannot fetch {display_url(repo)} on the controller: {_git_error(exc, repo)}") from None


def _resolve_local(repo: Repo, ref: str, url: str) -> str:
    import git

    try:
        return str(repo.git.rev_parse("--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"))
    except git.exc.GitCommandError as exc:
        why = _git_error(exc, url)
        raise CheckFailed(
            f"ref {ref!r} does not name a commit in {display_url(url)}" + (f": {why}" if why else "")
        ) from None


def _resolve_remote(repo: str, ref: str) -> str:
    import git

    if SHA_RE.match(ref):
        return ref
    try:
        out = git.cmd.Git().ls_remote(repo, env=dict(GIT_ENV), kill_after_timeout=GIT_TIMEOUT)
    except git.exc.GitCommandError as exc:
        raise CheckFailed(f"cannot list the refs of {display_url(repo)}: {_git_error(exc, repo)}") from None
    refs: dict[str, str] = {}
    for line in str(out).splitlines():
        sha, tab, name = line.partition("\t")
        if tab:
            refs[name.strip()] = sha.strip()
    names = (
        [ref] if ref.startswith("refs/") or ref == "HEAD" else [f"refs/{ref}", f"refs/tags/{ref}", f"refs/heads/{ref}"]
    )
    for candidate in names:
        found = refs.get(f"{candidate}^{{}}") or refs.get(candidate)
        if found:
            return found
    raise CheckFailed(
        f"ref {ref!r} not found in {display_url(repo)} (use a branch, a tag or a full 40-character commit id)"
    )


def resolve_commit(repo: str, ref: str, *, transfer: str, state_dir: Path, run_id: str) -> str:
    """Resolve ``ref`` of ``repo`` to a full commit id on the controller, once per run."""
    key = (run_id, repo, ref)
    with _GUARD:
        if key in _RESOLVED and run_id:
            return _RESOLVED[key]
    local = local_repo_path(repo)
    if local is not None:
        if not local.exists():
            raise CheckFailed(f"repository {repo} not found on the controller")
        sha = _resolve_local(_open_repo(local), ref, repo)
    elif transfer == "archive":
        sha = _resolve_local(_mirror(repo, state_dir), ref, repo)
    else:
        sha = _resolve_remote(repo, ref)
    with _GUARD:
        _RESOLVED[key] = sha
    return sha


def _controller_git_dir(repo: str, state_dir: Path) -> str:
    local = local_repo_path(repo)
    if local is not None:
        return str(_open_repo(local).git_dir)
    return str(_mirror(repo, state_dir).git_dir)


# --------------------------------------------------------------------------- helpers on the host


def _actor() -> str:
    actor = os.environ.get("GITHUB_ACTOR")
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _now() -> datetime:
    return datetime.now(UTC)


def log_after_switch(ctx: Context, entries: list[dict[str, Any]], change: Change, what: str, action: str) -> None:
    """Append ``entries`` to the releases log once ``current`` was switched; a failure raises
    ApplyFailed carrying ``change``, so the runner knows to switch it back."""
    try:
        append_log(ctx, entries)
    except MaintkitError as exc:
        raise ApplyFailed(
            f"{what}, but writing {LOG} failed: {exc}", action=action, details={"switched": True}, changes=[change]
        ) from exc


def _tail(res: CommandResult) -> str:
    return tail(res.stderr.strip() or res.stdout, 500)


def _run_command(ctx: Context, cmd: Command, *, cwd: str | None = None, **kwargs: Any) -> CommandResult:
    if isinstance(cmd, list):
        return ctx.run(cmd, cwd=cwd, check=False, **kwargs)
    return ctx.run_shell(cmd, cwd=cwd, check=False, **kwargs)


def _label(cmd: Command) -> str:
    text = " ".join(cmd) if isinstance(cmd, list) else cmd.strip().splitlines()[0]
    return head(text, 120)


class _Paths:
    """Absolute paths of one environment's layout."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/") or "/"
        self.releases = posixpath.join(self.root, "releases")
        self.shared = posixpath.join(self.root, "shared")
        self.current = posixpath.join(self.root, "current")
        self.meta = posixpath.join(self.root, ".maint")
        self.log = posixpath.join(self.root, LOG)
        self.cache = posixpath.join(self.root, HOST_CACHE)

    def release(self, name: str) -> str:
        return posixpath.join(self.releases, name)


def _remove_dirs(ctx: Context, paths: Sequence[str]) -> None:
    if paths:
        res = ctx.run(["rm", "-rf", "--", *paths], check=False)
        if not res.ok:
            raise ApplyFailed(f"cannot remove {', '.join(paths)}: {_tail(res)}", action="deploy.release")


def _read_text(ctx: Context, path: str) -> str:
    res = ctx.run_shell(f"if [ -f {quote(path)} ]; then cat -- {quote(path)}; fi", check=False)
    if not res.ok:
        raise ApplyFailed(f"cannot read {path}: {_tail(res)}")
    return res.stdout


def append_log(ctx: Context, entries: Sequence[dict[str, Any]]) -> None:
    """Append entries to ``<path>/.maint/releases.jsonl`` (rewritten atomically, mode 0600)."""
    paths = _Paths(ctx.path)
    ctx.run(["mkdir", "-p", "--", paths.meta])
    old = _read_text(ctx, paths.log)
    if old and not old.endswith("\n"):
        old += "\n"
    lines = "".join(json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n" for e in entries)
    ctx.put((old + lines).encode(), paths.log, mode=0o600)


def _entry(ctx: Context, status: str, release: str, commit: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "time": _now().isoformat(timespec="seconds"),
        "status": status,
        "release": release,
        "commit": commit,
        "actor": _actor(),
        "run_id": ctx.run_id,
        **{k: v for k, v in extra.items() if v is not None},
    }


def switch_current(ctx: Context, target_release: str | None, raw_target: str | None = None) -> None:
    """Point ``current`` at ``releases/<name>`` atomically (or at ``raw_target``; None removes it)."""
    paths = _Paths(ctx.path)
    if target_release is None and raw_target is None:
        res = ctx.run(["rm", "-f", "--", paths.current], check=False)
        if not res.ok:
            raise ApplyFailed(f"cannot remove {paths.current}: {_tail(res)}")
        return
    switch_symlink(ctx, paths.current, raw_target or f"releases/{target_release}")


def run_after_switch(ctx: Context, commands: Sequence[Command]) -> list[str]:
    """Run the after-switch commands in ``<path>/current``; return the failures (label: output)."""
    failures = []
    for cmd in commands:
        res = _run_command(ctx, cmd, cwd=_Paths(ctx.path).current)
        if not res.ok:
            failures.append(f"{_label(cmd)}: exit {res.exit_code}: {_tail(res)}")
    return failures


def stop_requested(ctx: Context) -> bool:
    """True when the run was asked to stop (SIGINT/SIGTERM) and the context can tell.

    Used to abandon a release before the switch instead of switching and rolling back. The
    runner exposes it as ``Context.stop_requested`` (a callable); without it this is False.
    """
    probe = getattr(ctx, "stop_requested", None)
    return bool(probe()) if callable(probe) else False


def _fresh_state(ctx: Context) -> DeployState:
    ctx.invalidate()
    return ctx.probe(ReleaseLayout(ctx.path))


def _check_layout(state: DeployState, path: str, action: str) -> None:
    if state.current_kind == "other":
        raise CheckFailed(
            f"{path}/current exists and is not a symlink: move it away (e.g. into {path}/releases/) first",
            action=action,
        )


# --------------------------------------------------------------------------- deploy.release


@dataclass
class _Plan:
    commit: str
    state: DeployState
    deploy: bool
    partials: list[str]


@dataclass
class _Deployed:
    release: str
    commit: str
    previous: str | None  # previous release name
    previous_target: str | None  # raw previous link target (None: there was no current)
    previous_commit: str | None


class DeployRelease(Action[DeployReleaseParams]):
    """Deploy a git commit into ``<path>/releases/<time>-<sha7>``, build it, switch ``current`` atomically.

    The ref is resolved on the controller; the release is built before the switch (a failing
    build removes it and never touches ``current``); after the switch ``after_switch`` runs
    (e.g. reload php-fpm so OPcache drops old files). Unchanged when ``current`` already holds
    the commit. Keeps ``keep`` releases, never deleting current or the rollback target, and
    removes half-built leftovers of interrupted runs. Rollback switches back and marks the
    release bad in ``<path>/.maint/releases.jsonl``.
    """

    name = "deploy.release"
    Params = DeployReleaseParams
    summary = "Deploy a git ref into a new release, build, switch current atomically (reversible)."
    rollback_kind = "undo"

    def __init__(self, params: DeployReleaseParams, step_id: str | None = None) -> None:
        super().__init__(params, step_id)
        self._last: _Deployed | None = None

    @property
    def transfer(self) -> str:
        """The effective transfer mode."""
        p = self.params
        return p.transfer or ("archive" if local_repo_path(p.repo) is not None else "clone")

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        return [ReleaseLayout(ctx.path)]

    def _resolve(self, ctx: Context) -> str:
        p = self.params
        try:
            return resolve_commit(
                p.repo, p.ref, transfer=self.transfer, state_dir=ctx.options.state_dir, run_id=ctx.run_id
            )
        except CheckFailed as exc:
            exc.action = self.name
            raise

    def check(self, ctx: Context) -> Check:
        p = self.params
        commit = self._resolve(ctx)
        state = ctx.probe(ReleaseLayout(ctx.path))
        _check_layout(state, ctx.path, self.name)
        partials = state.partials()
        cur = state.current_release
        data = {"commit": commit, "ref": p.ref, "current": cur}
        if state.current_commit == commit:
            prune = state.prune_plan(p.keep)
            plan = _Plan(commit, state, False, partials)
            if not partials and not prune:
                return Check.ok(f"current is {cur} at {commit[:7]} ({p.ref})", release=cur, **data)
            reason = _cleanup_reason(partials, prune)
            return Check.change(reason, diff=_diff(None, None, partials, prune), snapshot=plan, release=cur, **data)
        was = f"{cur} ({(state.current_commit or '?')[:7]})" if cur else (state.current or "nothing")
        plan = _Plan(commit, state, True, partials)
        reason = f"deploy {commit[:7]} ({p.ref}) over {was}"
        if partials:
            reason += f"; remove {len(partials)} half-built release(s)"
        return Check.change(reason, diff=_diff(was, commit, partials, []), snapshot=plan, **data)

    # ---- apply ------------------------------------------------------------------------------
    def apply(self, ctx: Context, check: Check) -> list[Change]:
        plan: _Plan = check.snapshot
        paths = _Paths(ctx.path)
        changes: list[Change] = []
        if plan.partials:
            _remove_dirs(ctx, [paths.release(n) for n in plan.partials])
            changes.append(Change(paths.releases, f"removed {len(plan.partials)} half-built release(s)", plan.partials))
        if plan.deploy:
            changes.append(self._deploy(ctx, plan))
        pruned = _fresh_state(ctx).prune_plan(self.params.keep)
        if pruned:
            _remove_dirs(ctx, [paths.release(n) for n in pruned])
            changes.append(Change(paths.releases, f"removed {len(pruned)} old release(s)", pruned))
        return changes

    def _deploy(self, ctx: Context, plan: _Plan) -> Change:
        p = self.params
        paths = _Paths(ctx.path)
        name = _release_name(plan.commit, plan.state)
        rdir = paths.release(name)
        ctx.record(commit=plan.commit, release=name, ref=p.ref)
        ctx.run(["mkdir", "-p", "--", paths.releases, paths.shared, paths.meta])
        ctx.run(["mkdir", "--", rdir])
        try:
            self._fetch_code(ctx, plan.commit, rdir)
            self._link_shared(ctx, rdir)
            self._build(ctx, rdir, name, plan.commit)
            self._abort_if_stopping(ctx, "before the switch")
            marker = {
                "release": name,
                "commit": plan.commit,
                "ref": p.ref,
                "built_at": _now().isoformat(timespec="microseconds"),
                "run_id": ctx.run_id,
            }
            ctx.put(json.dumps(marker, sort_keys=True).encode() + b"\n", posixpath.join(rdir, MARKER), mode=0o644)
        except BaseException:
            _discard(ctx, rdir)
            raise
        state = plan.state
        deployed = _Deployed(name, plan.commit, state.current_release, state.current, state.current_commit)
        switch_current(ctx, name)
        self._last = deployed
        change = Change(
            paths.current,
            f"deployed {name} ({plan.commit[:7]})",
            before={"release": deployed.previous, "commit": deployed.previous_commit},
            after={"release": name, "commit": plan.commit},
            undo=deployed,
        )
        entry = _entry(
            ctx, "deployed", name, plan.commit, ref=p.ref, repo=display_url(p.repo), previous=deployed.previous
        )
        log_after_switch(ctx, [entry], change, f"switched current to {name}", self.name)
        failures = run_after_switch(ctx, p.after_switch)
        if failures:
            self._undo(ctx, deployed, reason="after_switch failed")
            raise ApplyFailed(f"after_switch failed, switched back: {'; '.join(failures)}", action=self.name)
        return change

    def _fetch_code(self, ctx: Context, commit: str, rdir: str) -> None:
        if self.transfer == "archive":
            self._stream_archive(ctx, commit, rdir)
        else:
            self._host_clone(ctx, commit, rdir)

    def _stream_archive(self, ctx: Context, commit: str, rdir: str) -> None:
        git_dir = _controller_git_dir(self.params.repo, ctx.options.state_dir)
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(  # the controller's git, argument list, no shell
                ["git", "--git-dir", git_dir, "-c", "tar.umask=0022", "archive", "--format=tar", commit],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env={**os.environ, **GIT_ENV},
            )
            try:
                assert proc.stdout is not None
                res = ctx.run(["tar", "--no-unquote", "-x", "-f", "-", "-C", rdir], stdin=proc.stdout, check=False)
            finally:
                if proc.poll() is None:
                    proc.kill()
                code = proc.wait()
            err.seek(0)
            git_err = err.read().decode("utf-8", "replace").strip()
        if code != 0:
            raise ApplyFailed(
                f"git archive {commit[:7]} failed on the controller: {tail(git_err, 300)}", action=self.name
            )
        if not res.ok:
            raise ApplyFailed(f"cannot unpack {commit[:7]} into {rdir}: {_tail(res)}", action=self.name)

    def _host_clone(self, ctx: Context, commit: str, rdir: str) -> None:
        cache = _Paths(ctx.path).cache
        repo = self.params.repo
        q, qc = quote(cache), quote(commit)
        env = dict(GIT_ENV)
        script = (
            f"if [ ! -d {q} ]; then git clone --bare --quiet -- {quote(repo)} {q} || exit 10; fi\n"
            f"git --git-dir={q} remote set-url origin {quote(repo)} || exit 11\n"
            f"git --git-dir={q} fetch --quiet --force --prune origin "
            "'+refs/heads/*:refs/heads/*' '+refs/tags/*:refs/tags/*' || exit 12\n"
            f"git --git-dir={q} cat-file -e {qc}^{{commit}} 2>/dev/null || "
            f"git --git-dir={q} fetch --quiet origin {qc} || exit 13\n"
            f"git --git-dir={q} cat-file -e {qc}^{{commit}} || exit 14\n"
            f"git --git-dir={q} -c tar.umask=0022 archive --format=tar {qc} | "
            f"tar --no-unquote -x -f - -C {quote(rdir)} || exit 15\n"
        )
        res = ctx.run_shell(script, env=env, check=False)
        if not res.ok:
            what = {10: "clone", 11: "configure", 12: "fetch", 13: "fetch", 14: "find", 15: "check out"}
            step = what.get(res.exit_code, "fetch")
            output = _tail(res).replace(repo, display_url(repo))
            raise ApplyFailed(
                f"cannot {step} {commit[:7]} from {display_url(repo)} on the host: {output}",
                action=self.name,
            )

    def _link_shared(self, ctx: Context, rdir: str) -> None:
        p = self.params
        paths = _Paths(ctx.path)
        lines = []
        for d in p.shared_dirs:
            src, dst = posixpath.join(paths.shared, d), posixpath.join(rdir, d)
            lines.append(
                f"mkdir -p -- {quote(src)} {quote(posixpath.dirname(dst))} && rm -rf -- {quote(dst)} && "
                f"ln -s -- {quote(src)} {quote(dst)} || exit 1"
            )
        for f in p.shared_files:
            src, dst = posixpath.join(paths.shared, f), posixpath.join(rdir, f)
            missing = quote(f"shared file missing: {src} (create it on the host)")
            lines.append(f"if [ ! -e {quote(src)} ]; then echo {missing} >&2; exit 2; fi")
            lines.append(
                f"mkdir -p -- {quote(posixpath.dirname(dst))} && rm -rf -- {quote(dst)} && "
                f"ln -s -- {quote(src)} {quote(dst)} || exit 1"
            )
        if lines:
            res = ctx.run_shell("\n".join(lines), check=False)
            if not res.ok:
                raise ApplyFailed(f"cannot link shared files into {rdir}: {_tail(res)}", action=self.name)

    def _build(self, ctx: Context, rdir: str, name: str, commit: str) -> None:
        p = self.params
        kwargs: dict[str, Any] = {"env": {"MAINT_RELEASE": name, "MAINT_COMMIT": commit}}
        if p.build_timeout:
            kwargs["timeout"] = p.build_timeout
        for cmd in p.build:
            self._abort_if_stopping(ctx, f"before {_label(cmd)}")
            res = _run_command(ctx, cmd, cwd=rdir, **kwargs)
            if not res.ok:
                why = "timed out" if res.timed_out else f"exit {res.exit_code}"
                output = f": {_tail(res)}" if _tail(res) else ""
                raise ApplyFailed(
                    f"build command failed ({why}): {_label(cmd)}{output}; current was not touched",
                    action=self.name,
                    details={"build_command": _label(cmd)},
                )

    def _abort_if_stopping(self, ctx: Context, where: str) -> None:
        if stop_requested(ctx):
            raise ApplyFailed(
                f"interrupted {where}; the new release is removed and current was not touched", action=self.name
            )

    # ---- verify / rollback ------------------------------------------------------------------
    def verify(self, ctx: Context) -> None:
        deployed = self._last
        state = _fresh_state(ctx)
        if deployed is not None and (
            state.current_release != deployed.release or state.current_commit != deployed.commit
        ):
            raise VerifyFailed(
                f"current points at {state.current_release or state.current}, expected {deployed.release}",
                action=self.name,
            )
        if state.partials():
            raise VerifyFailed(f"half-built releases remain: {', '.join(state.partials())}", action=self.name)

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        for change in reversed(changes):
            if isinstance(change.undo, _Deployed):
                self._undo(ctx, change.undo, reason=f"rolled back by run {ctx.run_id}")

    def _undo(self, ctx: Context, deployed: _Deployed, reason: str) -> None:
        state = _fresh_state(ctx)
        if state.current_release == deployed.release:
            try:
                switch_current(ctx, deployed.previous, deployed.previous_target)
            except MaintkitError as exc:
                raise RollbackFailed(f"cannot switch current back from {deployed.release}: {exc}") from exc
        elif state.current != deployed.previous_target:
            raise RollbackFailed(
                f"current points at {state.current or 'nothing'}, not at {deployed.release} which this run deployed; "
                "not touching it"
            )
        entries = [_entry(ctx, "bad", deployed.release, deployed.commit, reason=reason)]
        if deployed.previous is not None:
            entries.append(
                _entry(
                    ctx, "rolled-back", deployed.previous, deployed.previous_commit, reason=f"from {deployed.release}"
                )
            )
        append_log(ctx, entries)
        ctx.invalidate()
        failures = run_after_switch(ctx, self.params.after_switch) if deployed.previous_target else []
        if failures:
            raise RollbackFailed(
                f"switched back to {deployed.previous}, but after_switch failed: {'; '.join(failures)}"
            )


def _discard(ctx: Context, rdir: str) -> None:
    """Remove a half-built release; a failure here must not hide why the deploy failed."""
    with contextlib.suppress(MaintkitError):  # the next run removes it (no completion marker)
        ctx.run(["rm", "-rf", "--", rdir], check=False)


def _release_name(commit: str, state: DeployState) -> str:
    base = f"{_now().strftime('%Y%m%dT%H%M%SZ')}-{commit[:7]}"
    name, n = base, 1
    while name in state.releases:
        n += 1
        name = f"{base}-{n}"
    return name


def _cleanup_reason(partials: list[str], prune: list[str]) -> str:
    parts = []
    if partials:
        parts.append(f"remove {len(partials)} half-built release(s) left by an interrupted run")
    if prune:
        parts.append(f"remove {len(prune)} old release(s) beyond keep")
    return "; ".join(parts)


def _diff(was: str | None, commit: str | None, partials: list[str], prune: list[str]) -> str:
    lines = []
    if commit is not None:
        lines += [f"-current -> {was}", f"+current -> releases/<new>-{commit[:7]}"]
    lines += [f"-releases/{n} (half-built)" for n in partials]
    lines += [f"-releases/{n}" for n in prune]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- deploy.rollback


@dataclass
class _Switched:
    from_release: str
    from_commit: str | None
    to_release: str
    to_commit: str | None


def _match_release(state: DeployState, to: str) -> str:
    if to in state.releases:
        return to
    found = sorted(
        {n for n in state.releases if n.startswith(to)}
        | {n for n, r in state.releases.items() if r.commit and len(to) >= 7 and r.commit.startswith(to)}
    )
    if len(found) == 1:
        return found[0]
    if not found:
        raise CheckFailed(f"no release matches {to!r} (known: {', '.join(sorted(state.releases)) or 'none'})")
    raise CheckFailed(f"{to!r} matches several releases: {', '.join(found)}; give the full release name")


class DeployRollback(Action[DeployRollbackParams]):
    """Switch ``current`` back to the previous good release (or ``to``) and mark the old one bad.

    Pure filesystem over SSH: it never asks the application anything, so it works when the
    application is fatally broken. ``after_switch`` runs afterwards (e.g. reload php-fpm).
    Without ``to`` every run steps back one release; with ``to`` it is idempotent.
    """

    name = "deploy.rollback"
    Params = DeployRollbackParams
    summary = "Switch current back to the previous good release and mark the current one bad (reversible)."
    rollback_kind = "undo"

    def __init__(self, params: DeployRollbackParams, step_id: str | None = None) -> None:
        super().__init__(params, step_id)
        self._done: _Switched | None = None

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        return [ReleaseLayout(ctx.path)]

    def _target(self, state: DeployState) -> str:
        to = self.params.to
        if to is None:
            target = state.previous_good()
            if target is None:
                raise CheckFailed("no earlier good release to roll back to", action=self.name)
            return target
        name = _match_release(state, to)
        rel = state.releases[name]
        if not rel.complete:
            raise CheckFailed(f"release {name} is half-built (no {MARKER}); cannot switch to it", action=self.name)
        if state.status_of(name) == "bad" and name != state.current_release:
            raise CheckFailed(
                f"release {name} is marked bad in {LOG}; deploy its commit again instead", action=self.name
            )
        return name

    def check(self, ctx: Context) -> Check:
        state = ctx.probe(ReleaseLayout(ctx.path))
        _check_layout(state, ctx.path, self.name)
        cur = state.current_release
        if cur is None:
            raise CheckFailed(
                f"{ctx.path}/current does not point at a release ({state.current or 'missing'})", action=self.name
            )
        try:
            target = self._target(state)
        except CheckFailed as exc:
            exc.action = self.name
            raise
        data = {"current": cur, "release": target, "commit": state.releases[target].commit}
        if target == cur:
            return Check.ok(f"current is already {target}", **data)
        snap = _Switched(cur, state.current_commit, target, state.releases[target].commit)
        return Check.change(
            f"switch current from {cur} to {target}; mark {cur} bad",
            diff=f"-current -> releases/{cur}\n+current -> releases/{target}\n",
            snapshot=snap,
            **data,
        )

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        snap: _Switched = check.snapshot
        switch_current(ctx, snap.to_release)
        # from here on current is switched: every failure carries the change, so the runner
        # can switch it back (the change is this action's own record, not parsed output)
        change = Change(
            _Paths(ctx.path).current,
            f"rolled back {snap.from_release} -> {snap.to_release}",
            before={"release": snap.from_release, "commit": snap.from_commit},
            after={"release": snap.to_release, "commit": snap.to_commit},
            undo=snap,
        )
        ctx.record(release=snap.to_release, commit=snap.to_commit, rolled_back_from=snap.from_release)
        entries = [
            _entry(ctx, "bad", snap.from_release, snap.from_commit, reason="rolled back"),
            _entry(ctx, "rolled-back", snap.to_release, snap.to_commit, reason=f"from {snap.from_release}"),
        ]
        log_after_switch(ctx, entries, change, f"switched to {snap.to_release}", self.name)
        failures = run_after_switch(ctx, self.params.after_switch)
        if failures:
            raise ApplyFailed(
                f"switched to {snap.to_release}, but after_switch failed: {'; '.join(failures)}",
                action=self.name,
                details={"switched": True},
                changes=[change],
            )
        self._done = snap
        return [change]

    def verify(self, ctx: Context) -> None:
        snap = self._done
        state = _fresh_state(ctx)
        if snap is not None and state.current_release != snap.to_release:
            raise VerifyFailed(
                f"current points at {state.current_release}, expected {snap.to_release}", action=self.name
            )

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        for change in reversed(changes):
            snap: _Switched = change.undo
            state = _fresh_state(ctx)
            if state.current_release not in (snap.to_release, snap.from_release):
                raise RollbackFailed(f"current points at {state.current_release}; not switching it back")
            switch_current(ctx, snap.from_release)
            append_log(ctx, [_entry(ctx, "deployed", snap.from_release, snap.from_commit, reason="rollback undone")])
            failures = run_after_switch(ctx, self.params.after_switch)
            if failures:
                raise RollbackFailed(
                    f"switched back to {snap.from_release}, but after_switch failed: {'; '.join(failures)}"
                )


__all__ = [
    "DeployRelease",
    "DeployReleaseParams",
    "DeployRollback",
    "DeployRollbackParams",
    "DeployState",
    "Release",
    "ReleaseLayout",
    "append_log",
    "display_url",
    "local_repo_path",
    "resolve_commit",
    "run_after_switch",
    "switch_current",
]
