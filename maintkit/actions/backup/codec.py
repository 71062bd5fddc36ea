"""How backups compress: zstd where the host has it (``auto``), else gzip (the argv:
:mod:`maintkit.actions.compression`).

zstd at its default level compresses a database dump about as fast as ``mariadb-dump`` writes
it and smaller than gzip at its default level, which takes several times as long as the dump
itself. Every item of a manifest records its ``compression``, so a restore decompresses each
file with the program it was written with, whatever the action's setting is today; an item
without one (written before databases could be zstd) is gzip.
"""

from __future__ import annotations

from typing import Any, Literal

from maintkit.actions.compression import compress_argv, decompress_argv

__all__ = [
    "Compression",
    "choose_compression",
    "compress_argv",
    "decompress_argv",
    "item_compression",
    "missing_decoders",
]

Compression = Literal["zstd", "gzip"]


def choose_compression(wanted: str, tools: frozenset[str]) -> Compression:
    """``auto`` picks zstd when the host has it, else gzip."""
    if wanted == "zstd" or (wanted == "auto" and "zstd" in tools):
        return "zstd"
    return "gzip"


def item_compression(item: dict[str, Any]) -> str:
    """A manifest item's compression (gzip when it names none: written before it was recorded)."""
    return str(item.get("compression", "gzip"))


def missing_decoders(items: list[dict[str, Any]], tools: frozenset[str]) -> list[str]:
    """The decompressors the items need that the host lacks (``["zstd"]`` or nothing)."""
    needs = any(item_compression(i) == "zstd" for i in items)
    return ["zstd"] if needs and "zstd" not in tools else []
