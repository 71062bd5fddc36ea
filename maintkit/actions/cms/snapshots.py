"""Package trees on a host: tree hashes, ``cp -a`` snapshots, their exact restore, and the
atomic exchange (``swap_lines``) the restore and the WordPress switch use.

Everything that touches the host goes through ``ctx.run`` / ``ctx.run_shell`` with quoted
arguments. :func:`restore_path` uses only file copies and renames, never PHP, so it works
when the site is broken.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from maintkit._text import tail
from maintkit.action import Context
from maintkit.errors import ApplyFailed, RollbackFailed
from maintkit.probes.cms import HELPER_EOF, TreeHashes, tree_hash_script, tree_lines
from maintkit.probes.tree_hash import PERL
from maintkit.results import CommandResult
from maintkit.transport.base import atomic_put_script, chain, here_document, quote

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


def snapshot_script(src: str, dest: str, *, upload: str | None = None, size: int | None = None) -> str:
    """Shell of :func:`snapshot_path`: ``cp -a src dest`` (dest's parent is created), printing
    ``copied`` or ``absent``; with ``upload`` (a path), stdin is written there first (atomically,
    mode 0600; with ``size``, exactly that many bytes of it, the rest left for the next part of
    a round trip) and exit 81 says it cannot be (nothing is copied then)."""
    put = ""
    if upload is not None:
        failed = f"{{ echo 'cannot write '{quote(upload)} >&2; exit 81; }}"
        put = f"( {atomic_put_script(upload, 0o600, size=size)}\n) || {failed}\n"
    return put + (
        f"if [ -e {quote(src)} ] || [ -L {quote(src)} ]; then "
        f"mkdir -p -- {quote(dest.rsplit('/', 1)[0] or '/')} && rm -rf -- {quote(dest)} && "
        f"cp -a -- {quote(src)} {quote(dest)} "
        "&& echo copied; else echo absent; fi"
    )


def snapshot_result(res: CommandResult, src: str, *, upload: str | None = None) -> bool:
    """What a run of :func:`snapshot_script` did: True when ``src`` was copied, False when it does
    not exist; ApplyFailed naming ``upload`` when it could not be written, or the failed copy."""
    if res.exit_code == 81 and upload is not None:
        raise ApplyFailed(f"cannot write {upload} on the host: {tail(res.stderr or res.stdout)}")
    if res.exit_code != 0:
        raise ApplyFailed(f"snapshot of {src} failed: {tail(res.stderr or res.stdout)}")
    return "copied" in res.stdout


def snapshot_path(ctx: Context, src: str, dest: str, *, upload: tuple[bytes, str] | None = None) -> bool:
    """``cp -a src dest`` (dest's parent is created); False when ``src`` does not exist.

    ``upload``: ``(data, path)`` written first (atomically, mode 0600) in the same round trip;
    ApplyFailed naming ``path`` when it cannot be written (nothing is copied then)."""
    path = upload[1] if upload is not None else None
    script = snapshot_script(src, dest, upload=path)
    res = ctx.run_shell(script, check=False, stdin=upload[0] if upload is not None else None)
    return snapshot_result(res, src, upload=path)


#: renameat2(AT_FDCWD, new, AT_FDCWD, dest, RENAME_EXCHANGE) in perl (perl-base is part of every
#: Debian and Ubuntu). The system call's number per architecture, taken from perl's own build
#: (``archname``: a 32-bit perl on a 64-bit kernel makes 32-bit calls); x32 and the others have
#: no entry and fall back. ``Config`` starts in a third of ``POSIX``'s time. Exit 0 only when
#: the two were exchanged.
_EXCHANGE_PL = (
    "use Config;my %n=(x86_64=>316,i386=>353,i486=>353,i586=>353,i686=>353,aarch64=>276,"
    "riscv64=>276,loongarch64=>276,arm=>382,armv7l=>382,powerpc=>357,powerpc64=>357,"
    "powerpc64le=>357,ppc64=>357,ppc64le=>357,s390x=>347);"
    "my ($a)=$Config{archname}=~/^([^-]+)-linux(?!.*x32)/ or exit 9;my $nr=$n{$a} or exit 9;"
    "exit(syscall($nr,-100,$ARGV[0],-100,$ARGV[1],2)==0 ? 0 : 9)"
)


#: printed by :func:`swap_lines` when it fell back to two renames (``dest`` was missing a moment)
RENAMED_MARK = "@@maint-swap renames"


def swap_lines(new: str, dest: str, old: str) -> str:
    """Shell lines putting ``new`` at ``dest`` and what was at ``dest`` (if anything) at ``old``.

    Where the kernel and the file system can (Linux 3.15+, ext4, xfs, btrfs, tmpfs), the two
    are exchanged in one atomic ``renameat2(RENAME_EXCHANGE)``: a request never finds ``dest``
    missing. Elsewhere (no perl, an unknown machine, a file system without the flag) two
    renames, with ``dest`` missing between them for as long as a process start, announced by a
    line :data:`RENAMED_MARK` on stdout; when the second fails the first is undone. Exit 5 or 6
    on a failure; ``old`` must not exist.
    """
    n, d, o = quote(new), quote(dest), quote(old)
    there = f"{{ [ -e {d} ] || [ -L {d} ]; }}"
    return (
        f"if {there} && {PERL} -e {quote(_EXCHANGE_PL)} -- {n} {d} 2>/dev/null; then\n"
        f"  mv -T -- {n} {o} || exit 5\n"
        f"else\n"
        f"  if {there}; then echo {quote(RENAMED_MARK)}; mv -T -- {d} {o} || exit 5; fi\n"
        f"  mv -T -- {n} {d} || {{ [ -e {o} ] && mv -T -- {o} {d}; exit 6; }}\n"
        f"fi\n"
    )


def restore_script(snapshot: str | None, dest: str) -> str:
    """Shell that puts ``snapshot`` back at ``dest`` (or removes ``dest`` when snapshot is None).

    The copy is made next to ``dest`` first and then swapped in (:func:`swap_lines`), so
    ``dest`` is never half restored.
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
        + swap_lines(f"{parent}/.maint-restore-{tag}", dest, f"{parent}/.maint-old-{tag}")
        + f"rm -rf -- {old}\n"
    )


def restore_path(ctx: Context, snapshot: str | None, dest: str) -> bool:
    """Run :func:`restore_script`; raise RollbackFailed when it fails. True when the snapshot
    was put back by two renames (``dest`` was missing a moment: :data:`RENAMED_MARK`)."""
    res = ctx.run_shell(restore_script(snapshot, dest), check=False)
    if res.exit_code != 0:
        raise RollbackFailed(f"restoring {dest} from {snapshot} failed: {tail(res.stderr or res.stdout)}")
    return RENAMED_MARK in res.stdout.splitlines()


@dataclass
class Prepared:
    """What :func:`prepare_script` found: the sizes of the files asked about (missing ones left
    out) and which of the paths asked about exist (a dangling symlink counts: it is there)."""

    sizes: dict[str, int]
    existing: set[str]


def prepare_script(
    private: str,
    *,
    parent: str,
    dirs: Sequence[str] = (),
    sizes: Sequence[str] = (),
    exists: Sequence[str] = (),
    upload: tuple[str, str] | None = None,
    end: str = HELPER_EOF,
) -> str:
    """Shell that makes ``parent`` (``mkdir -p``, its mode kept), ``private`` (``mkdir -p`` +
    ``chmod 700``) and ``dirs`` (``mkdir -p``); writes ``upload`` (path, text: atomically, mode
    0600, the text from a here-document ending at the line ``end``, so the round trip's stdin
    stays free for another part; the text must be ASCII and must not hold that line); then prints
    the size of each file of ``sizes`` and whether each path of ``exists`` is there (read with
    :func:`prepared`). It fails when a directory or the upload cannot be made."""
    made = [["mkdir", "-p", "--", parent], ["mkdir", "-p", "--", private], ["chmod", "700", "--", private]]
    script = chain(*made, *(["mkdir", "-p", "--", d] for d in dirs)) + " || exit $?\n"
    if upload is not None:
        path, text = upload
        script += f"{{ ( {atomic_put_script(path, 0o600)}\n) || exit $?; }} {here_document(text, end)}"
    for i, path in enumerate(sizes):
        q = quote(path)
        script += f"[ -f {q} ] && printf 'S{i}\\t%s\\n' \"$(stat -c %s -- {q})\"\n"
    for i, path in enumerate(exists):
        q = quote(path)
        script += f"{{ [ -e {q} ] || [ -L {q} ]; }} && echo E{i}\n"
    return script + "true\n"


def prepared(stdout: str, *, sizes: Sequence[str] = (), exists: Sequence[str] = ()) -> Prepared:
    """What a run of :func:`prepare_script` answered (the paths are named by their position,
    so no path can confuse the parsing)."""
    found = Prepared({}, set())
    for line in stdout.split("\n"):
        key, _, value = line.partition("\t")
        if key.startswith("S") and key[1:].isdigit() and value.isdigit() and int(key[1:]) < len(sizes):
            found.sizes[sizes[int(key[1:])]] = int(value)
        elif key.startswith("E") and key[1:].isdigit() and int(key[1:]) < len(exists):
            found.existing.add(exists[int(key[1:])])
    return found


__all__ = [
    "PackageUndo",
    "cached_tree_hashes",
    "prepare_script",
    "prepared",
    "restore_path",
    "restore_script",
    "sha256_hex",
    "snapshot_path",
    "snapshot_result",
    "snapshot_script",
    "tree_hash_script",
    "tree_hashes",
    "zip_tree_hash",
]
