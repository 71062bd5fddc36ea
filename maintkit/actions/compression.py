"""The compressors maint runs on hosts: zstd where the host has it, else gzip; their argv, once.

``backup.*`` (its archives and dumps, :mod:`maintkit.actions.backup.codec`), the rollback dumps
of ``cms.update`` and ``staging.refresh`` (:mod:`maintkit.actions.dumpfile`) and
``staging.refresh``'s stream through the controller build their commands from here.
"""

from __future__ import annotations

#: the shell test for zstd on a host (exit 0 when ``zstd`` is on its PATH)
HAS_ZSTD = "command -v zstd >/dev/null 2>&1"


def compress_argv(compression: str, *, threads: bool = True, gzip_level: int | None = None) -> list[str]:
    """The compressor writing stdin compressed to stdout: zstd at its default level (on every core
    with ``threads``), else gzip (at ``gzip_level``, default its own)."""
    if compression == "zstd":
        return ["zstd", "-q", "-c", "-T0"] if threads else ["zstd", "-q", "-c"]
    return ["gzip", *([f"-{gzip_level}"] if gzip_level else []), "-c"]


def decompress_argv(compression: str, path: str | None = None) -> list[str]:
    """The command writing ``path`` (stdin when None) decompressed to stdout."""
    argv = ["zstd", "-q", "-dc"] if compression == "zstd" else ["gzip", "-dc"]
    return [*argv, "--", path] if path is not None else argv


#: the command lines the rollback dumps and staging.refresh's stream compress with: zstd on one
#: thread (it keeps up with a dump), and gzip's fastest level where there is no zstd
ZSTD_ONE_THREAD = " ".join(compress_argv("zstd", threads=False))
GZIP_FAST = " ".join(compress_argv("gzip", gzip_level=1))
