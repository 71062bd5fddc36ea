"""The controller's git: which commit a ref names, and where ``git archive`` reads it from.

A ref is resolved once per run and repository (every site and stage of one run deploys the
same commit, even if someone pushes while the run is going): the commit is kept in the run's
memo (``ctx.options.memo``), and git work on one controller mirror is serialised by a lock of
that memo. Without a run id (an action called directly) every call resolves afresh.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

from maintkit._text import tail
from maintkit.action import Context
from maintkit.caches import RunMemo
from maintkit.errors import CheckFailed

if TYPE_CHECKING:
    from git import Repo

SHA_RE = re.compile(r"^[0-9a-f]{40}$")
GIT_TIMEOUT = 300.0
#: every git maint runs (controller and host): no prompts, and no user or system config, so a
#: ~/.gitconfig (url.insteadOf rewrites, hooksPath, signing) cannot change what is fetched
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
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


def _mirror(repo: str, state_dir: Path, memo: RunMemo) -> Repo:
    """A bare mirror of a remote repository on the controller, fetched (for transfer: archive)."""
    import git

    digest = hashlib.sha256(display_url(repo).encode()).hexdigest()[:16]
    path = state_dir / "git" / f"{digest}.git"
    env = dict(GIT_ENV)
    with memo.lock(("deploy.mirror", str(path))):
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


def _resolve(repo: str, ref: str, transfer: str, state_dir: Path, memo: RunMemo) -> str:
    local = local_repo_path(repo)
    if local is not None:
        if not local.exists():
            raise CheckFailed(f"repository {repo} not found on the controller")
        return _resolve_local(_open_repo(local), ref, repo)
    if transfer == "archive":
        return _resolve_local(_mirror(repo, state_dir, memo), ref, repo)
    return _resolve_remote(repo, ref)


def resolve_commit(ctx: Context, repo: str, ref: str, *, transfer: str) -> str:
    """Resolve ``ref`` of ``repo`` to a full commit id on the controller, once per run.

    The first site of a run to ask resolves it; every other site of the run gets that commit
    (the memo's lock makes concurrent sites wait for it). Without a run id: always afresh.
    """
    memo, state_dir = ctx.options.memo, ctx.options.state_dir
    if not ctx.run_id:
        return _resolve(repo, ref, transfer, state_dir, memo)
    key = ("deploy.commit", repo, ref)
    with memo.lock(key):
        known = memo.get(key)
        if isinstance(known, str):
            return known
        sha = _resolve(repo, ref, transfer, state_dir, memo)
        memo.put(key, sha)
        return sha


def controller_git_dir(ctx: Context, repo: str) -> str:
    """The git directory ``git archive`` reads ``repo`` from on the controller (a mirror is fetched)."""
    local = local_repo_path(repo)
    if local is not None:
        return str(_open_repo(local).git_dir)
    return str(_mirror(repo, ctx.options.state_dir, ctx.options.memo).git_dir)


__all__ = ["GIT_ENV", "GIT_TIMEOUT", "controller_git_dir", "display_url", "local_repo_path", "resolve_commit"]
