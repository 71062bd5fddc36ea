"""The files side of ``staging.refresh``: what is excluded, the tree digest, the copy and the snapshot.

Excludes are paths relative to the environment's path (``*`` globs allowed), anchored at its
top: ``rsync --exclude=/P``, ``find -path ./P -prune``, ``tar --anchored --exclude=./P``.
Excluded target files are never deleted (rsync's ``--delete`` spares them), so the target's
own ``wp-config.php`` and ``.maint/`` stay. The digest lists every copied file with its size,
mtime and mode: cheap to compute, and changed by any write.
"""

from __future__ import annotations

import hashlib
import tempfile

from maintkit._text import tail
from maintkit.actions.staging.dbcopy import pipe_script, stream_compressor, stream_decompressor
from maintkit.actions.staging.guards import GUARD_PLUGIN
from maintkit.actions.staging.params import StagingRefreshParams
from maintkit.actions.staging.sides import Side, Sides
from maintkit.errors import ApplyFailed
from maintkit.transport.base import join, quote

ALWAYS = [".maint"]
WORDPRESS = ["wp-config.php", GUARD_PLUGIN, "wp-content/cache", "wp-content/upgrade"]
WP_UPLOADS = "wp-content/uploads"


def excludes(p: StagingRefreshParams, platform: str) -> list[str]:
    """Relative paths never copied nor deleted on the target."""
    out = list(ALWAYS)
    if platform == "wordpress":
        out += WORDPRESS
        if not p.uploads:
            out.append(WP_UPLOADS)
    elif p.uploads_dir and not p.uploads:
        out.append(p.uploads_dir.strip("/"))
    out += [e.strip("/") for e in p.exclude]
    return list(dict.fromkeys(out))


def rsync_excludes(paths: list[str]) -> list[str]:
    """``--exclude=/P`` arguments."""
    return [f"--exclude=/{p}" for p in paths]


def listing_script(path: str, paths: list[str]) -> str:
    """Shell that prints the sha256 of the sorted listing (path, size, mtime, mode, type) of ``path``."""
    prune = " -o ".join(f"-path {quote('./' + p)}" for p in paths)
    fmt = "-printf '%P\\t%s\\t%T@\\t%m\\t%y\\n'"
    find = f"find . \\( {prune} \\) -prune -o {fmt}" if paths else f"find . {fmt}"
    return f"cd -- {quote(path)} || exit 3\n{find} | LC_ALL=C sort | sha256sum"


def copy_files(sides: Sides, paths: list[str], timeout: float, work: str) -> None:
    """Make the target's tree the source's (without ``paths``): rsync on the target's host or a tar stream."""
    src, dst = sides.source, sides.target
    if sides.via_host:
        argv = ["rsync", "-a", "--delete", *rsync_excludes(paths), "--", f"{src.path}/", f"{dst.path}/"]
        res = dst.run(argv, timeout, check=False)
        if not res.ok:
            raise ApplyFailed(f"rsync from {src.path} to {dst.path} failed: {tail(res.stderr)}")
        return
    incoming = f"{work}/incoming"
    tar = join(["tar", "-C", src.path, "--anchored", *[f"--exclude=./{p}" for p in paths], "-cf", "-", "."])
    with tempfile.TemporaryFile(prefix="maint-refresh-files-") as spool:
        res = src.shell(pipe_script(tar, stream_compressor(sides, timeout)), timeout, check=False, stdout_sink=spool)
        if not res.ok:
            raise ApplyFailed(f"archiving {src.path} on {src.env.name} failed: {tail(res.stderr)}")
        unpack = f"rm -rf -- {quote(incoming)} && mkdir -m 700 -- {quote(incoming)} && " + pipe_script(
            stream_decompressor(spool), join(["tar", "-C", incoming, "-xf", "-"])
        )
        res = dst.shell(unpack, timeout, check=False, stdin=spool)
        if not res.ok:
            raise ApplyFailed(f"unpacking the files on {dst.env.name} failed: {tail(res.stderr)}")
    sync = ["rsync", "-a", "--delete", *rsync_excludes(paths), "--", f"{incoming}/", f"{dst.path}/"]
    res = dst.run(sync, timeout, check=False)
    dst.run(["rm", "-rf", "--", incoming], timeout, check=False)
    if not res.ok:
        raise ApplyFailed(f"syncing the files into {dst.path} failed: {tail(res.stderr)}")


def snapshot_files(target: Side, snap: str, timeout: float) -> None:
    """Copy the target's tree (without ``.maint``) to ``snap``."""
    argv = ["rsync", "-a", "--delete", *rsync_excludes(ALWAYS), "--", f"{target.path}/", f"{snap}/"]
    res = target.run(argv, timeout, check=False)
    if not res.ok:
        raise ApplyFailed(f"snapshot of {target.path} failed: {tail(res.stderr)}")


def restore_files(target: Side, snap: str, timeout: float) -> None:
    """Put the snapshot back exactly (files added since are deleted; ``.maint`` is left alone)."""
    missing = f"[ -d {quote(snap)} ] || {{ echo 'snapshot missing: '{quote(snap)} >&2; exit 3; }}"
    res = target.shell(missing, timeout, check=False)
    if not res.ok:
        raise ApplyFailed(tail(res.stderr))
    argv = ["rsync", "-a", "--delete", *rsync_excludes(ALWAYS), "--", f"{snap}/", f"{target.path}/"]
    res = target.run(argv, timeout, check=False)
    if not res.ok:
        raise ApplyFailed(f"restoring {target.path} from {snap} failed: {tail(res.stderr)}")


def digest_of(text: str) -> str:
    """sha256 of a text (for combined digests)."""
    return hashlib.sha256(text.encode()).hexdigest()


__all__ = [
    "copy_files",
    "excludes",
    "listing_script",
    "restore_files",
    "rsync_excludes",
    "snapshot_files",
]
