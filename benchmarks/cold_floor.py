"""The cold floor: the least a no-op run of the workload could cost over NEW connections.

For every host, one plain paramiko connection (host key verified against the host's
known_hosts, the key file only) and ONE exec of the warm floor's read-only batch
(:func:`tools.floor_script`: what maint's no-op reads), all hosts in parallel; nothing else:
no lock, no audit log, no state, no plan. Every answer is checked (the link target and the
file's hash), so the floor never measures a read that failed. It is what any tool that opens
one SSH connection per host and run pays on these hosts: the handshakes and one session.

    python benchmarks/cold_floor.py HOSTS_JSON            # the no-op floor
    python benchmarks/cold_floor.py HOSTS_JSON --first    # the first run's floor

HOSTS_JSON as for fabric_baseline.py, on hosts a first run has already converged. Exit 1 when
any host's answer is wrong. With ``--first`` the one exec per host does the workload instead
(:func:`tools.first_floor_script`: Fabric's five commands in one shell, nothing else) on fresh
directories; exit 1 when it failed on any host. benchmarks/peers.py runs it as the peer
``cold-floor``, and checks the files after a first run as for every tool.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CONTENT_SHA256
from tools import Record, first_floor_script, floor_output_ok, floor_script


def read_one(h: Record) -> bool:
    """One connection, one batched read; whether the answer shows the converged state."""
    status, text = one_exec(h, floor_script(str(h["path"])))
    return status == 0 and floor_output_ok(text, str(h["path"]), CONTENT_SHA256)


def write_one(h: Record) -> bool:
    """One connection, one exec doing the workload; whether it exited 0."""
    status, _ = one_exec(h, first_floor_script(str(h["path"])))
    return status == 0


def connect(h: Record) -> paramiko.SSHClient:
    """A new connection to ``h``: its host key checked against its known_hosts, its key file only."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(h["known_hosts"]))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(str(h["ip"]), port=int(h["port"]), username=str(h["user"]), key_filename=str(h["key"]),
                       look_for_keys=False, allow_agent=False, timeout=10)  # fmt: skip
    except BaseException:
        client.close()
        raise
    return client


def one_exec(h: Record, script: str) -> tuple[int, str]:
    """A new verified connection, ``script`` in one exec; its exit status and output."""
    client = connect(h)
    try:
        _, out, _ = client.exec_command(script)
        text = out.read().decode()
        return out.channel.recv_exit_status(), text
    finally:
        client.close()


def main() -> None:
    """Read every host of HOSTS_JSON once (``--first``: do the workload on each), in parallel."""
    if len(sys.argv) not in (2, 3) or sys.argv[2:] not in ([], ["--first"]):
        raise SystemExit("usage: cold_floor.py HOSTS_JSON [--first]")
    first = sys.argv[2:] == ["--first"]
    hosts: list[Record] = json.loads(Path(sys.argv[1]).read_text())
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        answers = list(pool.map(write_one if first else read_one, hosts))
    if not all(answers):
        what = "could not do the workload" if first else "did not answer with the converged state"
        raise SystemExit(f"cold floor: {answers.count(False)} host(s) {what}")


if __name__ == "__main__":
    main()
