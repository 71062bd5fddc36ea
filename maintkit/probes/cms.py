"""Probes of the cms family (``cms.update``).

:data:`WP_CLI_PROBE` reads whether wp-cli is installed on the host and its version line
(empty output when it is not); ``cms.update`` reports it with the WordPress facts. It is a
:class:`~maintkit.probes.CommandProbe`, so its raw output is the fact.

:class:`TreeHashes` reads the tree hash of installed packages
(:func:`~maintkit.probes.tree_hash.tree_hash_script`), the value a version lock records and a
promotion compares with what staging validated.

:class:`HelperRead` is one read-only run of maint's PHP helper (``cms.update``'s read of the
installed WordPress), its source fed from a here-document, so it can go with other probes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import ClassVar

from maintkit.probes import CommandProbe, Probe, RawOutput
from maintkit.probes.tree_hash import tree_hash_script, tree_lines
from maintkit.transport.base import here_document, join

WP_CLI_PROBE = CommandProbe(("sh", "-c", "command -v wp >/dev/null 2>&1 && wp --version 2>/dev/null || true"))


@dataclass(frozen=True)
class TreeHashes(Probe[dict[str, str | None]]):
    """The tree hashes of ``paths``: as a probe it stays in the stage's probe cache until anything
    changes on the host, so the steps that plan the same update (a precheck, a ``when:``, the
    update itself) hash the installed packages once."""

    kind: ClassVar[str] = "tree-hashes"
    paths: tuple[str, ...]

    def script(self) -> str:
        return tree_hash_script(list(self.paths))

    def parse(self, raw: RawOutput) -> dict[str, str | None]:
        return tree_lines(self.paths, raw.stdout)


#: ends the here-document that feeds the helper's source to PHP (never a line of the source)
HELPER_EOF = "MAINTKIT_WP_HELPER_SOURCE_END"


@functools.cache
def helper_source() -> bytes:
    """The PHP helper shipped in the package (``maintkit/php/wp_helper.php``), read once."""
    return resources.files("maintkit").joinpath("php/wp_helper.php").read_bytes()


@dataclass(frozen=True)
class HelperRead(Probe[RawOutput]):
    """A read-only run of the PHP helper (``argv`` reads the script from stdin: ``php ... --``),
    fed ``maintkit/php/wp_helper.php`` from a here-document; its raw output (stderr with it).

    ``name`` is the cache key's identity (the PHP binary and the WordPress root): every step
    that reads the state through the same PHP shares one read, whatever its ``argv`` says.
    Only checks read it: neither the lock's re-read nor a change's own verify does (:attr:`Probe.reread`).
    """

    argv: tuple[str, ...]
    name: str = field(default="")
    kind: ClassVar[str] = "wp.list"
    reread: ClassVar[bool] = False

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"

    def script(self) -> str:
        return f"{join(self.argv)} 2>&1 {here_document(helper_source().decode('utf-8'), HELPER_EOF)}"

    def parse(self, raw: RawOutput) -> RawOutput:
        return raw


__all__ = ["HELPER_EOF", "WP_CLI_PROBE", "HelperRead", "TreeHashes", "helper_source", "tree_hash_script", "tree_lines"]
