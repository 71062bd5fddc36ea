"""Loaded by ``benchmarks/monthly_cost.py`` into the ``maint`` it runs (``PYTHONPATH``): records
the machine's CPU spent during every SSH command and HTTP request of the run.

Only when ``MAINTKIT_BENCH_COST`` names the file to write; otherwise it does nothing. The
machine's CPU comes from :func:`machine_ns` (every process: sshd, the shells, PHP, MariaDB,
nginx and maint itself), so the figures are only meaningful with one command at a time
(``--concurrency 1``) and nothing else running.

With ``MAINTKIT_BENCH_PAUSE`` naming a folder that holds two FIFOs, ``ask`` and ``done``, maint
stops after each site: it writes the site's name and a newline to ``ask`` and waits for a line
on ``done`` (the harness runs the job by hand on a shop of its own meanwhile). The machine's CPU
during each pause is recorded and left out of the run's total, so maint and the job by hand
alternate shop by shop and the machine's speed, which drifts over minutes, is the same for both.
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


def ask_harness(folder: str, name: str) -> str:
    """Write ``name`` to the harness's ``ask`` FIFO and wait for its answer on ``done``.

    An end of file is no answer: opening ``done`` does not wait when the harness has not yet
    closed its end from the answer before, and that end's close then reads as an empty file."""
    with open(f"{folder}/ask", "w") as ask:
        ask.write(name + "\n")
    while True:
        with open(f"{folder}/done") as done:
            answer = done.readline().strip()
        if answer:
            return answer


def _patch_site(site: Any, pauses: list[dict[str, Any]], folder: str) -> None:
    """After each site, hand the machine to the harness until it says it is done."""
    _SEEN["runner"] = str(site.__file__)
    run_site = site.run_site

    def paused(state: Any, one: Any, stages: Any) -> Any:
        try:
            return run_site(state, one, stages)
        finally:
            c0, t0 = machine_ns(), time.time()
            answer = ask_harness(folder, one.name)
            pauses.append({"site": one.name, "t": t0, "s": time.time() - t0, "cpu": (machine_ns() - c0) / 1e9})
            if answer != "ok":
                raise SystemExit(f"the harness answered {answer!r} after {one.name}")

    site.run_site = paused


class _WhenImported(importlib.abc.MetaPathFinder):
    """Patches maintkit's modules when the run imports them (from wherever ``python -m`` finds
    maintkit: importing them here, before the run's path is set, could take another copy);
    ``patches``: module name -> what to do with the module once it ran."""

    def __init__(self, patches: dict[str, Any]) -> None:
        self.patches = patches

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        patch = self.patches.pop(name, None)
        if patch is None:
            return None
        if not self.patches:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        loader = spec.loader if spec is not None else None
        if loader is None:
            return spec
        run = loader.exec_module

        def exec_module(module: Any) -> None:
            run(module)
            patch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _install(out: str) -> None:
    records: list[dict[str, Any]] = []
    pauses: list[dict[str, Any]] = []
    patches: dict[str, Any] = {"maintkit.transport.ssh": lambda module: _patch_ssh(module, records)}
    folder = os.environ.get("MAINTKIT_BENCH_PAUSE")
    if folder:
        patches["maintkit.runner.site"] = lambda module: _patch_site(module, pauses, folder)
    sys.meta_path.insert(0, _WhenImported(patches))
    import requests

    describe = lambda request: f"{request.method} {request.url}"  # noqa: E731
    requests.Session.send = _timed(requests.Session.send, "http", describe, records)  # type: ignore[method-assign]
    start = (machine_ns(), time.time())

    def write() -> None:
        total = (machine_ns() - start[0]) / 1e9
        data = {"t0": start[1], "t1": time.time(), "cpu": total, "records": records, "pauses": pauses, **_SEEN}
        Path(out).write_text(json.dumps(data))

    atexit.register(write)


if os.environ.get("MAINTKIT_BENCH_COST"):
    _install(os.environ["MAINTKIT_BENCH_COST"])
