"""File archives for the backup actions: ``tar`` piped through zstd (when available) or gzip.

Paths are relative to a base directory (the environment's path) and archived with
``tar -C BASE``, so a restore extracts them back to the same place. ``<base>/.maint`` (locks,
backups) is always left out. Every tar call has ``--no-unquote``: GNU tar otherwise reads
backslash escapes in ``-C`` directories and names (a path ``a\\1`` would become ``a<SOH>``).
"""

from __future__ import annotations

from typing import Any

from maintkit.transport.base import join, quote

from .codec import Compression, compress_argv, decompress_argv
from .db import low, pipeline

ALWAYS_EXCLUDED = (".maint",)


def archive_name(compression: Compression) -> str:
    """``files.tar.zst`` or ``files.tar.gz``."""
    return "files.tar.zst" if compression == "zstd" else "files.tar.gz"


def normalize_paths(base: str, paths: list[str]) -> list[str]:
    """Paths relative to ``base`` (``.`` for the base itself); ValueError for paths outside it."""
    base = base.rstrip("/")
    out: list[str] = []
    for raw in paths:
        p = raw.rstrip("/") or "/"
        if p.startswith("/"):
            if p == base:
                p = "."
            elif p.startswith(base + "/"):
                p = p[len(base) + 1 :]
            else:
                raise ValueError(f"{raw} is outside the environment path {base}")
        parts = [x for x in p.split("/") if x not in ("", ".")]
        if any(x == ".." for x in parts):
            raise ValueError(f"{raw}: '..' is not allowed")
        out.append("/".join(parts) or ".")
    return out


def create_script(
    base: str, paths: list[str], excludes: list[str], compression: Compression, out: str, *, low_priority: bool = False
) -> str:
    """Archive ``paths`` under ``base`` into ``out``; GNU tar's exit 1 (a file changed while read) is tolerated.

    ``low_priority``: tar and the compressor run at low priority (``db.LOW_PRIORITY_SETUP``)."""
    argv = ["tar", "--no-unquote", "-C", base, "--warning=no-file-changed", "--warning=no-file-removed"]
    # only the environment's own .maint; a directory named .maint deeper in the site is data
    argv += ["--anchored", *(f"--exclude={p}{e}" for e in ALWAYS_EXCLUDED for p in ("./", "")), "--no-anchored"]
    argv += [f"--exclude={e}" for e in excludes]
    argv += ["-cf", "-", "--", *paths]
    tolerant = low(join(argv), low_priority) + " || [ $? -eq 1 ]"
    squeeze = low(join(compress_argv(compression)), low_priority)
    return pipeline(f"( {tolerant} )", squeeze, out=out, low_priority=low_priority)


def count_script(path: str, compression: str) -> str:
    """Print the number of entries in an archive (fails when it cannot be read to the end)."""
    return pipeline(join(decompress_argv(compression, path)), join(["tar", "-tf", "-"]), "wc -l")


def extract_script(path: str, compression: str, base: str) -> str:
    """Extract an archive over ``base`` (files in the archive replace those on disk; others stay)."""
    return pipeline(join(decompress_argv(compression, path)), join(["tar", "--no-unquote", "-C", base, "-xpf", "-"]))


def _glob_pattern(pattern: str) -> str:
    """A tar exclude pattern as a shell ``case`` pattern: ``*``, ``?`` and ``[...]`` stay globs."""
    out, literal = [], ""
    for ch in pattern:
        if ch in "*?[]":
            out += [quote(literal)] if literal else []
            out.append(ch)
            literal = ""
        else:
            literal += ch
    return "".join(out + ([quote(literal)] if literal else []))


_SAME_TYPE = (
    # keep "$1" (live) when "$2" (the backup's copy) exists with the same type
    'same() { if [ -L "$1" ]; then [ -L "$2" ]; elif [ -L "$2" ]; then false; '
    'elif [ -d "$1" ]; then [ -d "$2" ]; else [ -e "$2" ] && [ ! -d "$2" ]; fi; }\n'
)


def exact_restore_script(
    path: str, compression: str, base: str, paths: list[str], excludes: list[str], stage: str
) -> str:
    """Make the archived ``paths`` under ``base`` exactly what the archive holds.

    The archive is extracted into ``stage`` (a fresh directory on the same file system)
    first; then every entry under the archived paths that the backup does not hold, or holds
    with another type, is removed (``<base>/.maint`` and the excluded patterns are left
    alone), and the archive is extracted over ``base``. Only paths under the recorded
    ``paths`` are touched; nothing is taken from parsed tool output.
    """
    st = quote(stage)
    globs = [_glob_pattern(e) for e in excludes if e not in ALWAYS_EXCLUDED]
    skip = 'case "$rel" in .maint | .maint/*) continue ;; esac\n'
    if globs:
        skip += f'case "$rel" in {" | ".join(f"{g} | {g}/* | */{g} | */{g}/*" for g in globs)}) continue ;; esac\n'
    # sh -c PRUNE BASE STAGE ENTRY...: $0 is the base, $1 the staged copy, then the live entries
    prune = (
        f'{_SAME_TYPE}b=$0; s=$1; shift\nfor x do rel=${{x#"$b"/}}\n{skip}'
        'same "$x" "$s/$rel" || rm -rf -- "$x" || exit 1\ndone'
    )
    lines = [
        f"rm -rf -- {st} && mkdir -p -m 700 -- {st} || exit 80",
        f"( {extract_script(path, compression, stage)} ) || {{ rm -rf -- {st}; exit 81; }}",
    ]
    for rel in paths:
        root = base if rel == "." else f"{base.rstrip('/')}/{rel}"
        depth = ["-mindepth", "1"] if rel == "." else []
        find = join(["find", root, *depth, "-depth", "-exec", "sh", "-c", prune, base, stage]) + " {} +"
        r = quote(root)
        lines.append(f"if [ -e {r} ] || [ -L {r} ]; then {find} || {{ rm -rf -- {st}; exit 82; }}; fi")
    lines += [
        f"( {extract_script(path, compression, base)} ) || {{ rm -rf -- {st}; exit 83; }}",
        f"rm -rf -- {st}",
    ]
    return "\n".join(lines) + "\n"


def compare_script(path: str, compression: str, base: str) -> str:
    """``tar --compare`` of the archive against ``base``; prints the differences, exits 0.

    tar runs with ``LC_ALL=C``: :func:`content_differences` reads its English messages, which a
    host's own language would translate (and every difference would go unnoticed).
    """
    tar = "LC_ALL=C " + join(["tar", "--no-unquote", "-C", base, "-df", "-"])
    inner = pipeline(join(decompress_argv(compression, path)), tar)
    return f"( {inner} ) 2>&1; true"


def content_differences(output: str) -> list[str]:
    """The lines of ``tar --compare`` output that mean different content or missing files."""
    keep = ("Contents differ", "No such file", "Size differs", "File type differs", "Symlink differs")
    return [line.strip() for line in output.splitlines() if any(k in line for k in keep)]


def files_item(
    name: str, compression: Compression, base: str, paths: list[str], excludes: list[str], entries: int
) -> dict[str, Any]:
    """The manifest item of a file archive (size and sha256 are added after writing)."""
    return {
        "type": "files",
        "file": name,
        "compression": compression,
        "base": base,
        "paths": paths,
        "excludes": [*ALWAYS_EXCLUDED, *excludes],
        "entries": entries,
    }
