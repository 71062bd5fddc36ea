"""Benchmark: how long after ``maint run`` starts does its first connection reach the host?

    python benchmarks/first_packet.py [--runs 11]      # as root: it starts an sshd instance

One lab host (a real sshd on loopback). Between maint and that sshd sits a relay on
127.0.0.99 that notes the moment it accepts a connection and then copies bytes both ways; the
inventory points maint at the relay (its known_hosts file lists the host's key under the
relay's address, so host keys are verified as always). Two figures, from starting the
``maint run`` process: when the relay accepts its TCP connection (the first packet), and when
the first byte of SSH arrives from maint (its version line, sent once paramiko is loaded: maint
dials the TCP connection before importing it). Every run is the no-op run of the benchmark's
five-step workload (one first run converges the directory before counting). Prints every
figure, the medians, and the median wall time of the whole run. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fresh_dirs, lab_inventory, start_lab, write_playbook
from tools import maint_argv

RELAY_IP = "127.0.0.99"


class Relay:
    """A TCP relay to ``target`` that records when it accepts each connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.accepted: list[float] = []
        self.first_byte: list[float] = []  # when the first accepted connection's client spoke
        self.sock = socket.create_server((RELAY_IP, 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(time.perf_counter())
            upstream = socket.create_connection(self.target)
            threading.Thread(target=_pump, args=(client, upstream, self.first_byte), daemon=True).start()
            threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()

    def close(self) -> None:
        self.sock.close()


def _pump(src: socket.socket, dst: socket.socket, first: list[float] | None = None) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            if first is not None and not first:
                first.append(time.perf_counter())
            dst.sendall(data)
    for s in (src, dst):
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)


def relayed_known_hosts(known_hosts: Path, host: str, port: int, relay_port: int, out: Path) -> None:
    """The host's key lines, listed under the relay's address."""
    prefix = f"[{host}]:{port} "
    lines = [line for line in known_hosts.read_text().splitlines() if line.startswith(prefix)]
    if not lines:
        raise SystemExit(f"{known_hosts} lists no key for {prefix.strip()}")
    out.write_text("".join(f"[{RELAY_IP}]:{relay_port} {line[len(prefix) :]}\n" for line in lines))


def main() -> None:
    """Start the lab and the relay, converge once, then time the counted runs."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--runs", type=int, default=11)
    args = ap.parse_args()
    lab = start_lab([1])
    try:
        host, work = lab.hosts[0], lab.base / "first-packet"
        work.mkdir()
        relay = Relay((host.ip, host.port))
        inventory = lab_inventory(lab.hosts[:1], fresh_dirs(lab, 1, "fp"))
        env = inventory["sites"]["s0"]["environments"]["production"]
        relayed_known_hosts(Path(env["known_hosts"]), host.ip, host.port, relay.port, work / "known_hosts")
        env.update(host=RELAY_IP, port=relay.port, known_hosts=str(work / "known_hosts"))
        (work / "inventory.json").write_text(json.dumps(inventory))
        write_playbook(work)
        argv = maint_argv("maint", work / "bench.yml", work / "inventory.json", work / "state", 1)
        environ = {**os.environ, "MAINT_PLAIN": "1"}
        subprocess.run(argv, env=environ, capture_output=True, check=True)  # converge
        firsts, spoke, walls = [], [], []
        for _ in range(args.runs):
            relay.accepted.clear()
            relay.first_byte.clear()
            start = time.perf_counter()
            subprocess.run(argv, env=environ, capture_output=True, check=True)
            walls.append(time.perf_counter() - start)
            firsts.append(relay.accepted[0] - start)
            spoke.append(relay.first_byte[0] - start)
        relay.close()
    finally:
        lab.stop()
    print("TCP connection accepted after start (s):", " ".join(f"{x:.3f}" for x in firsts))
    print("first SSH byte from maint after start (s):", " ".join(f"{x:.3f}" for x in spoke))
    print(f"medians: TCP {statistics.median(firsts):.3f} s, SSH {statistics.median(spoke):.3f} s; "
          f"whole no-op run {statistics.median(walls):.3f} s")  # fmt: skip


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("run as root: the lab starts sshd")
    main()
