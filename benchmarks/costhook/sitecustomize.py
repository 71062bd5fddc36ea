"""Loaded by ``benchmarks/monthly_cost.py`` into the ``maint`` it runs (``PYTHONPATH``): records
the machine's CPU spent during every SSH command and HTTP request of the run.

Only when ``MAINTKIT_BENCH_COST`` names the file to write; otherwise it does nothing. The
machine's CPU comes from :func:`machine_ns` (every process: sshd, the shells, PHP, MariaDB,
nginx and maint itself), so the figures are only meaningful with one command at a time
(``--concurrency 1``) and nothing else running.
"""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

_CPUACCT = Path("/sys/fs/cgroup/cpuacct/cpuacct.usage")  # cgroup v1: nanoseconds
_CPU_STAT = Path("/sys/fs/cgroup/cpu.stat")  # cgroup v2 root: usage_usec


def machine_ns() -> int:
    """CPU nanoseconds of the whole machine: cgroup accounting when readable, else /proc/stat."""
    if _CPUACCT.exists():
        return int(_CPUACCT.read_text())
    if _CPU_STAT.exists():
        for line in _CPU_STAT.read_text().splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) * 1000
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return sum(int(x) for x in fields[1:4] + fields[6:9]) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


#: where the patched transport came from (written with the records)
_SEEN: dict[str, str] = {}


def _timed(method: Any, kind: str, describe: Any, records: list[dict[str, Any]]) -> Any:
    """``method`` recording, per call, its wall time and the machine's CPU under ``kind``
    (``describe(*args)`` names the call)."""

    def timed(self: Any, *args: Any, **kw: Any) -> Any:
        c0, t0 = machine_ns(), time.time()
        try:
            return method(self, *args, **kw)
        finally:
            cpu = (machine_ns() - c0) / 1e9
            records.append({"kind": kind, "t": t0, "s": time.time() - t0, "cpu": cpu, "line": describe(*args)})

    return timed


def _patch_ssh(ssh: Any, records: list[dict[str, Any]]) -> None:
    _SEEN["transport"] = str(ssh.__file__)
    ssh.SSHTransport._execute = _timed(ssh.SSHTransport._execute, "ssh", lambda line: line[:300], records)


class _WhenImported(importlib.abc.MetaPathFinder):
    """Patches ``maintkit.transport.ssh`` when the run imports it (from wherever ``python -m``
    finds maintkit: importing it here, before the run's path is set, could take another copy)."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "maintkit.transport.ssh":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        loader = spec.loader if spec is not None else None
        if loader is None:
            return spec
        run = loader.exec_module

        def exec_module(module: Any) -> None:
            run(module)
            _patch_ssh(module, self.records)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _install(out: str) -> None:
    records: list[dict[str, Any]] = []
    sys.meta_path.insert(0, _WhenImported(records))
    import requests

    describe = lambda request: f"{request.method} {request.url}"  # noqa: E731
    requests.Session.send = _timed(requests.Session.send, "http", describe, records)  # type: ignore[method-assign]
    start = (machine_ns(), time.time())

    def write() -> None:
        total = (machine_ns() - start[0]) / 1e9
        Path(out).write_text(json.dumps({"t0": start[1], "t1": time.time(), "cpu": total, "records": records, **_SEEN}))

    atexit.register(write)


if os.environ.get("MAINTKIT_BENCH_COST"):
    _install(os.environ["MAINTKIT_BENCH_COST"])
