"""Filling a new release before the switch: its code (archive or host clone), shared links, build.

Everything here happens inside ``releases/<new>``; ``current`` is never touched, and a
failure raises ApplyFailed (the caller removes the half-built release).
"""

from __future__ import annotations

import os
import posixpath
import subprocess
import tempfile
from typing import Any

from maintkit._text import tail
from maintkit.action import Context
from maintkit.actions.deploy.git import GIT_ENV, controller_git_dir, display_url
from maintkit.actions.deploy.host import label, output_tail, run_command, stop_requested
from maintkit.actions.deploy.layout import Paths
from maintkit.actions.deploy.params import DeployReleaseParams
from maintkit.errors import ApplyFailed
from maintkit.transport.base import quote

#: what failed, by the exit code of the host-clone script
_CLONE_STEPS = {10: "clone", 11: "configure", 12: "fetch", 13: "fetch", 14: "find", 15: "check out"}


def fetch_code(ctx: Context, repo: str, transfer: str, commit: str, rdir: str) -> None:
    """Put the files of ``commit`` into ``rdir``: streamed from the controller, or from the host's clone."""
    if transfer == "archive":
        stream_archive(ctx, repo, commit, rdir)
    else:
        host_clone(ctx, repo, commit, rdir)


def stream_archive(ctx: Context, repo: str, commit: str, rdir: str) -> None:
    """``git archive`` on the controller, streamed into ``tar -x`` in ``rdir`` on the host."""
    git_dir = controller_git_dir(ctx, repo)
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
        raise ApplyFailed(f"git archive {commit[:7]} failed on the controller: {tail(git_err, 300)}")
    if not res.ok:
        raise ApplyFailed(f"cannot unpack {commit[:7]} into {rdir}: {output_tail(res)}")


def host_clone(ctx: Context, repo: str, commit: str, rdir: str) -> None:
    """Fetch ``commit`` into the host's cached bare clone and unpack it into ``rdir`` (one round trip)."""
    cache = Paths(ctx.path).cache
    q, qc = quote(cache), quote(commit)
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
    res = ctx.run_shell(script, env=dict(GIT_ENV), check=False)
    if not res.ok:
        step = _CLONE_STEPS.get(res.exit_code, "fetch")
        output = output_tail(res).replace(repo, display_url(repo))
        raise ApplyFailed(f"cannot {step} {commit[:7]} from {display_url(repo)} on the host: {output}")


def link_shared(ctx: Context, params: DeployReleaseParams, rdir: str) -> None:
    """Replace the shared paths of ``rdir`` by symlinks into ``<path>/shared`` (one round trip)."""
    shared = Paths(ctx.path).shared
    lines = []
    for d in params.shared_dirs:
        src, dst = posixpath.join(shared, d), posixpath.join(rdir, d)
        lines.append(
            f"mkdir -p -- {quote(src)} {quote(posixpath.dirname(dst))} && rm -rf -- {quote(dst)} && "
            f"ln -s -- {quote(src)} {quote(dst)} || exit 1"
        )
    for f in params.shared_files:
        src, dst = posixpath.join(shared, f), posixpath.join(rdir, f)
        missing = quote(f"shared file missing: {src} (create it on the host)")
        lines.append(f"if [ ! -e {quote(src)} ]; then echo {missing} >&2; exit 2; fi")
        lines.append(
            f"mkdir -p -- {quote(posixpath.dirname(dst))} && rm -rf -- {quote(dst)} && "
            f"ln -s -- {quote(src)} {quote(dst)} || exit 1"
        )
    if lines:
        res = ctx.run_shell("\n".join(lines), check=False)
        if not res.ok:
            raise ApplyFailed(f"cannot link shared files into {rdir}: {output_tail(res)}")


def run_build(ctx: Context, params: DeployReleaseParams, rdir: str, name: str, commit: str) -> None:
    """Run the build commands inside ``rdir`` with MAINT_RELEASE/MAINT_COMMIT; stop at the first failure."""
    kwargs: dict[str, Any] = {"env": {"MAINT_RELEASE": name, "MAINT_COMMIT": commit}}
    if params.build_timeout:
        kwargs["timeout"] = params.build_timeout
    for cmd in params.build:
        abort_if_stopping(ctx, f"before {label(cmd)}")
        res = run_command(ctx, cmd, cwd=rdir, **kwargs)
        if not res.ok:
            output = f": {output_tail(res)}" if output_tail(res) else ""
            raise ApplyFailed(
                f"build command failed ({res.why}): {label(cmd)}{output}; current was not touched",
                details={"build_command": label(cmd)},
            )


def abort_if_stopping(ctx: Context, where: str) -> None:
    """ApplyFailed when the run was asked to stop: the release is abandoned before the switch."""
    if stop_requested(ctx):
        raise ApplyFailed(f"interrupted {where}; the new release is removed and current was not touched")


__all__ = ["abort_if_stopping", "fetch_code", "host_clone", "link_shared", "run_build", "stream_archive"]
