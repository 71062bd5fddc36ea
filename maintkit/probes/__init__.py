"""Read-only probes: typed facts about a host, cached per site environment per run and batched.

A probe is a small shell snippet (built from quoted arguments) plus a parser. The
runner collects the probes every step of a stage will need and sends them to the
host in ONE round trip (:func:`run_batch`); ``Context.probe`` then answers from the
cache. After any change on a host its cache is dropped, so verification reads fresh
state. The batch is one shell: probes run as its functions (no subshell each), and every
:class:`FileState` of it is read by one ``stat`` (one ``sha256sum``, one ``readlink``).

The base lives in :mod:`maintkit.probes.base`, the generic probes in
:mod:`maintkit.probes.files` and :mod:`maintkit.probes.command`; all are re-exported here.
Family modules (``maintkit.probes.<family>``) import the base from here and are never
imported by this package (that would be a circle).
"""

from __future__ import annotations

from maintkit.probes.base import Probe, RawOutput, decode_hex, hex_script, run_batch, run_batch_result
from maintkit.probes.command import CommandProbe
from maintkit.probes.files import FileInfo, FileState, MissingDirs, ancestors

__all__ = [
    "CommandProbe",
    "FileInfo",
    "FileState",
    "MissingDirs",
    "Probe",
    "RawOutput",
    "ancestors",
    "decode_hex",
    "hex_script",
    "run_batch",
    "run_batch_result",
]
