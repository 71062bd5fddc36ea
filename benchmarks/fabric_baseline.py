"""Plain Fabric doing the benchmark's 5 steps on N hosts in parallel (the baseline).

Usage: python fabric_baseline.py HOSTS_JSON   (FABRIC_WORKERS: hosts at once, default all)
HOSTS_JSON: [{"ip":..., "port":..., "user":..., "key":..., "known_hosts":..., "path":...}, ...]
The 5 commands mirror benchmarks/bench.py's playbook: a directory, a file's content, a symlink,
a read-only command, a no-op command. Host keys are verified (RejectPolicy), as maintkit does.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor

import paramiko
from fabric import Connection


def one(h: dict[str, object]) -> None:
    c = Connection(
        str(h["ip"]),
        user=str(h["user"]),
        port=int(h["port"]),  # type: ignore[arg-type]
        connect_timeout=10,
        connect_kwargs={"key_filename": h["key"], "look_for_keys": False, "allow_agent": False},
    )
    c.client.load_host_keys(str(h["known_hosts"]))
    c.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    p = str(h["path"])
    q = shlex.quote
    c.run(f"mkdir -p {q(p + '/app')}", hide=True)
    c.run(f"printf '%s\\n' 'hello from maint' > {q(p + '/app/config.txt')}", hide=True)
    c.run(f"ln -sfn {q(p + '/app')} {q(p + '/current')}", hide=True)
    c.run("uname -r", hide=True)
    c.run("true", hide=True)
    c.close()


def main() -> None:
    hosts = json.load(open(sys.argv[1]))
    workers = int(os.environ.get("FABRIC_WORKERS") or len(hosts))  # benchmarks/latency.py: as maint's --concurrency
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, hosts))


if __name__ == "__main__":
    main()
