"""Package trees on a host: tree hashes, ``cp -a`` snapshots and their exact restore.

Everything that touches the host goes through ``ctx.run`` / ``ctx.run_shell`` with quoted
arguments. :func:`restore_path` uses only file copies and renames, never PHP, so it works
when the site is broken.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from maintkit._text import tail
from maintkit.action import Context
from maintkit.errors import ApplyFailed, RollbackFailed
from maintkit.probes.cms import TreeHashes, tree_hash_script, tree_lines
from maintkit.transport.base import quote

# -- tree hashes ---------------------------------------------------------------------------------


def tree_hashes(ctx: Context, paths: list[str]) -> dict[str, str | None]:
    """Tree hash per path on the host (None when the path does not exist), read now."""
    if not paths:
        return {}
    res = ctx.run_shell(tree_hash_script(paths), check=False)
    return tree_lines(paths, res.stdout)


def cached_tree_hashes(ctx: Context, paths: list[str]) -> dict[str, str | None]:
    """:func:`tree_hashes` answered from the stage's probe cache (for planning, which reads
    what is installed; a change drops the cache, so a read after it is fresh)."""
    return ctx.probe(TreeHashes(tuple(paths))) if paths else {}


def _tree_from_entries(entries: list[tuple[str, bytes]]) -> str:
    lines = sorted((f"./{rel}".encode(), data) for rel, data in entries)
    h = hashlib.sha256()
    for rel, data in lines:
        h.update(f"{hashlib.sha256(data).hexdigest()}  ".encode() + rel + b"\n")
    return h.hexdigest()


def zip_tree_hash(data: bytes, top: str) -> str:
    """The tree hash of the files under ``top/`` in a zip (see :func:`tree_hash_script`)."""
    import io
    import zipfile

    prefix = top.rstrip("/") + "/"
    entries: list[tuple[str, bytes]] = []
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            if info.is_dir() or not info.filename.startswith(prefix):
                continue
            mode = (info.external_attr >> 16) & 0o170000
            if mode == 0o120000:  # symlink entries are not regular files
                continue
            entries.append((info.filename[len(prefix) :], zf.read(info)))
    return _tree_from_entries(entries)


def sha256_hex(data: bytes) -> str:
    """sha256 of bytes, hex."""
    return hashlib.sha256(data).hexdigest()


# -- snapshots -----------------------------------------------------------------------------------


@dataclass
class PackageUndo:
    """Snapshots to put back for one change: ``(snapshot or None, dest)`` pairs (None = remove dest)."""

    entries: list[tuple[str | None, str]]
    remove_new: list[str] = field(default_factory=list)


def mkdir_private(ctx: Context, path: str, *, parent: str | None = None) -> None:
    """``mkdir -p`` + ``chmod 700`` of ``path`` (after ``mkdir -p`` of ``parent``, which keeps its
    mode), in one round trip."""
    first = [["mkdir", "-p", "--", parent]] if parent else []
    ctx.run_each(*first, ["mkdir", "-p", "--", path], ["chmod", "700", "--", path])


def snapshot_path(ctx: Context, src: str, dest: str) -> bool:
    """``cp -a src dest`` (dest's parent is created); False when ``src`` does not exist."""
    script = (
        f"if [ -e {quote(src)} ] || [ -L {quote(src)} ]; then "
        f"mkdir -p -- {quote(dest.rsplit('/', 1)[0] or '/')} && rm -rf -- {quote(dest)} && "
        f"cp -a -- {quote(src)} {quote(dest)} "
        "&& echo copied; else echo absent; fi"
    )
    res = ctx.run_shell(script, check=False)
    if res.exit_code != 0:
        raise ApplyFailed(f"snapshot of {src} failed: {tail(res.stderr or res.stdout)}")
    return "copied" in res.stdout


def restore_script(snapshot: str | None, dest: str) -> str:
    """Shell that puts ``snapshot`` back at ``dest`` (or removes ``dest`` when snapshot is None).

    The copy is made next to ``dest`` first and then swapped in with renames, so ``dest``
    is never half restored.
    """
    d = quote(dest)
    if snapshot is None:
        return f"rm -rf -- {d}"
    # short sibling names: ``dest`` + a suffix could exceed the 255-byte name limit
    parent, _, name = dest.rpartition("/")
    tag = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    tmp, old = quote(f"{parent}/.maint-restore-{tag}"), quote(f"{parent}/.maint-old-{tag}")
    s = quote(snapshot)
    return (
        f"[ -e {s} ] || [ -L {s} ] || {{ echo 'snapshot missing: '{s} >&2; exit 3; }}\n"
        f"rm -rf -- {tmp} {old} && cp -a -- {s} {tmp} || exit 4\n"
        f"if [ -e {d} ] || [ -L {d} ]; then mv -T -- {d} {old} || exit 5; fi\n"
        f"mv -T -- {tmp} {d} || {{ [ -e {old} ] && mv -T -- {old} {d}; exit 6; }}\n"
        f"rm -rf -- {old}\n"
    )


def restore_path(ctx: Context, snapshot: str | None, dest: str) -> None:
    """Run :func:`restore_script`; raise RollbackFailed when it fails."""
    res = ctx.run_shell(restore_script(snapshot, dest), check=False)
    if res.exit_code != 0:
        raise RollbackFailed(f"restoring {dest} from {snapshot} failed: {tail(res.stderr or res.stdout)}")


def file_sizes(ctx: Context, paths: list[str]) -> dict[str, int]:
    """Current size of each existing file (missing files are left out)."""
    if not paths:
        return {}
    script = (
        f"for p in {' '.join(quote(p) for p in paths)}; do "
        '[ -f "$p" ] && printf \'%s\\t%s\\n\' "$p" "$(stat -c %s -- "$p")"; done; true'
    )
    res = ctx.run_shell(script, check=False)
    out: dict[str, int] = {}
    for line in res.stdout.splitlines():
        path, _, size = line.rpartition("\t")
        if size.isdigit():
            out[path] = int(size)
    return out


__all__ = [
    "PackageUndo",
    "cached_tree_hashes",
    "file_sizes",
    "mkdir_private",
    "restore_path",
    "restore_script",
    "sha256_hex",
    "snapshot_path",
    "tree_hash_script",
    "tree_hashes",
    "zip_tree_hash",
]
