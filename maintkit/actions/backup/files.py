"""File archives for the backup actions: ``tar`` piped through zstd (when available) or gzip.

Paths are relative to a base directory (the environment's path) and archived with
``tar -C BASE``, so a restore extracts them back to the same place. ``.maint`` (locks,
backups) is always left out.
"""

from __future__ import annotations

from typing import Any, Literal

from maintkit.transport.base import join

from .db import pipeline

Compression = Literal["zstd", "gzip"]
ALWAYS_EXCLUDED = (".maint",)


def choose_compression(wanted: str, tools: frozenset[str]) -> Compression:
    """``auto`` picks zstd when the host has it, else gzip."""
    if wanted == "zstd" or (wanted == "auto" and "zstd" in tools):
        return "zstd"
    return "gzip"


def archive_name(compression: Compression) -> str:
    """``files.tar.zst`` or ``files.tar.gz``."""
    return "files.tar.zst" if compression == "zstd" else "files.tar.gz"


def _compress(compression: str) -> list[str]:
    return ["zstd", "-q", "-c", "-T0"] if compression == "zstd" else ["gzip", "-c"]


def _decompress(compression: str, path: str) -> list[str]:
    return ["zstd", "-q", "-dc", "--", path] if compression == "zstd" else ["gzip", "-dc", "--", path]


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


def create_script(base: str, paths: list[str], excludes: list[str], compression: Compression, out: str) -> str:
    """Archive ``paths`` under ``base`` into ``out``; GNU tar's exit 1 (a file changed while read) is tolerated."""
    argv = ["tar", "-C", base, "--warning=no-file-changed", "--warning=no-file-removed"]
    argv += [f"--exclude={e}" for e in (*ALWAYS_EXCLUDED, *excludes)]
    argv += ["-cf", "-", "--", *paths]
    tolerant = join(argv) + " || [ $? -eq 1 ]"
    return pipeline(f"( {tolerant} )", join(_compress(compression)), out=out)


def count_script(path: str, compression: str) -> str:
    """Print the number of entries in an archive (fails when it cannot be read to the end)."""
    return pipeline(join(_decompress(compression, path)), join(["tar", "-tf", "-"]), "wc -l")


def extract_script(path: str, compression: str, base: str) -> str:
    """Extract an archive over ``base`` (files in the archive replace those on disk; others stay)."""
    return pipeline(join(_decompress(compression, path)), join(["tar", "-C", base, "-xpf", "-"]))


def compare_script(path: str, compression: str, base: str) -> str:
    """``tar --compare`` of the archive against ``base``; prints the differences, exits 0."""
    inner = pipeline(join(_decompress(compression, path)), join(["tar", "-C", base, "-df", "-"]))
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
