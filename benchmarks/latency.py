"""Benchmark: maint and Fabric over a network with a round-trip time, as a distant fleet is.

The lab's hosts are on loopback, where a round trip costs microseconds, so the other harnesses
cannot see what a round trip costs over the internet. Here every connection goes through a relay
(one thread of this process, asyncio) that holds each chunk of bytes, in each direction, for half
the round-trip time before passing it on, in order. The relay listens on another loopback
address (``127.0.2.N``, the host's port); a known_hosts file names the hosts' keys there, so host
keys are verified exactly as without it.

    python benchmarks/latency.py --hosts 50 --rtt-ms 40 --concurrency 10 --pairs 3 [--json F]

For each pair (after one warm-up pair): Fabric's five commands on fresh directories
(benchmarks/fabric_baseline.py, ``--concurrency`` hosts at once), maint's first run on fresh
directories, maint's no-op run (the same command again), Fabric again on fresh directories. maint runs with ``--concurrency`` sites at
once; its state folder is kept between pairs, so from the second pair on a first run reads
before it locks, as in benchmarks/peers.py. Reported: each side's wall time and the per-pair
ratios. Run as root (it starts sshd instances). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, Timer, fresh_dirs, host_records, start_lab, workload_problems, write_playbook
from daemon import maint_exe
from tools import maint_argv, maint_changed, maint_inventory


class Relay:
    """TCP relays holding every chunk ``one_way`` seconds in each direction, order kept."""

    def __init__(self, one_way: float) -> None:
        self.one_way = one_way
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def listen(self, ip: str, port: int, upstream: tuple[str, int]) -> None:
        """Relay connections to ``ip:port`` to ``upstream``."""

        async def start() -> None:
            await asyncio.start_server(lambda r, w: self._pair(r, w, upstream), ip, port)

        asyncio.run_coroutine_threadsafe(start(), self.loop).result()

    async def _pair(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: tuple[str, int]) -> None:
        ureader, uwriter = await asyncio.open_connection(*up)
        for w in (writer, uwriter):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY
        await asyncio.gather(self._pump(reader, uwriter), self._pump(ureader, writer))
        for w in (writer, uwriter):
            w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.ensure_future(self._send(queue, writer))
        try:
            while data := await reader.read(65536):
                queue.put_nowait((self.loop.time() + self.one_way, data))
        except ConnectionError:
            pass
        queue.put_nowait((self.loop.time() + self.one_way, b""))
        await sender

    async def _send(self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter) -> None:
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - self.loop.time()))
            if not data:  # the end of this direction, passed on (the other may go on)
                if writer.can_write_eof() and not writer.is_closing():
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                return
            try:
                writer.write(data)
                await writer.drain()
            except ConnectionError:
                return

    def stop(self) -> None:
        """Close every relayed connection, then stop the relay's loop."""

        async def close() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def relayed(records: list[dict[str, Any]], lab: Any, relay: Relay, work: Path) -> list[dict[str, Any]]:
    """The host records as reached through ``relay`` (a relay per host; their known_hosts)."""
    known, out = work / "relay_known_hosts", []
    lines = []
    for i, (rec, host) in enumerate(zip(records, lab.hosts, strict=False)):
        ip = f"127.0.2.{i + 2}"
        relay.listen(ip, host.port, (host.ip, host.port))
        lines.append(f"[{ip}]:{host.port} {host.hostkey_pub}\n")
        out.append({**rec, "ip": ip, "known_hosts": str(known)})
    known.write_text("".join(lines))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--rtt-ms", type=float, default=40.0)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    n = args.hosts
    lab = start_lab([n])
    relay = Relay(args.rtt_ms / 2000.0)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"maint-latency-{os.getpid()}"
    work.mkdir()
    try:
        out = measure(args, lab, relay, work)
    finally:
        relay.stop()
        lab.stop()
    report(out, args)


def measure(args: argparse.Namespace, lab: Any, relay: Relay, work: Path) -> dict[str, list[float]]:
    """Every timed run's wall seconds, by side (the warm-up pair left out)."""
    n, timer = args.hosts, Timer()
    write_playbook(work)
    dirs = fresh_dirs(lab, n, "latency")
    records = relayed(host_records(lab.hosts[:n], dirs), lab, relay, work)
    (work / "hosts.json").write_text(json.dumps(records))
    inv = work / "inv.json"
    inv.write_text(json.dumps(maint_inventory(records)))
    maint = maint_argv(maint_exe(), work / "bench.yml", inv, work / "state", args.concurrency)
    fabric = [sys.executable, str(ROOT / "benchmarks" / "fabric_baseline.py"), str(work / "hosts.json")]
    env = {**os.environ, "MAINT_PLAIN": "1", "MAINT_DAEMON": "0", "FABRIC_WORKERS": str(args.concurrency)}
    out: dict[str, list[float]] = {"fabric": [], "maint first": [], "fabric again": [], "maint no-op": []}
    for k in range(args.pairs + 1):
        for side, argv, fresh in (
            ("fabric", fabric, True),
            ("maint first", maint, True),
            ("maint no-op", maint, False),
            ("fabric again", fabric, True),
        ):
            if fresh:
                fresh_dirs(lab, n, "latency")
            m, _ = timer.run(argv, env)
            check(side, dirs, work)
            if k:
                out[side].append(m.wall)
            print(f"pair {k} {side}: {m.wall:.2f} s", flush=True)
    return out


def check(side: str, dirs: list[Path], work: Path) -> None:
    """Fail loudly unless the run did the work (maint: 3 changes per host first, none after)."""
    problems = workload_problems(dirs)
    if problems:
        raise SystemExit(f"{side}: " + "; ".join(problems[:3]))
    if side.startswith("maint"):
        runs = sorted((work / "state" / "runs").iterdir())
        changed = maint_changed(json.loads((runs[-1] / "summary.json").read_text()))
        if changed != (3 * len(dirs) if side == "maint first" else 0):
            raise SystemExit(f"{side}: changed {changed} steps")


def report(out: dict[str, list[float]], args: argparse.Namespace) -> None:
    """Medians and per-pair ratios to Fabric; the JSON with every figure."""
    med = {side: statistics.median(v) for side, v in out.items()}
    first = [m / f for m, f in zip(out["maint first"], out["fabric"], strict=True)]
    noop = [m / f for m, f in zip(out["maint no-op"], out["fabric again"], strict=True)]
    print(f"\n{args.hosts} hosts, round trip {args.rtt_ms:g} ms, {args.concurrency} at once")
    for side, value in med.items():
        print(f"{side}: median {value:.2f} s")
    print(f"maint first / Fabric: {statistics.median(first):.2f}x ({', '.join(f'{r:.2f}' for r in first)})")
    print(f"maint no-op / Fabric: {statistics.median(noop):.2f}x ({', '.join(f'{r:.2f}' for r in noop)})")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "walls": out}, indent=1))


if __name__ == "__main__":
    main()
