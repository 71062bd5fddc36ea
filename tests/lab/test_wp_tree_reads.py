"""What a promotion reads on production (the monthly-update, over SSH): package hashes and wp-cli.

Production's plan compares every package it does not update with the tree hash staging
validated (drift). Three steps plan the same update (the precheck, the maintenance window's
``when: will_change('update')`` and the update itself); the hashes are a probe, kept until
anything changes on the host, so the packages are hashed once before the change (it was three
times). After it, verify hashes what was installed.

cache.clear asks whether wp-cli is installed with a probe in its check, answered by the read
after the update's change (never a round trip of its own); so is the update's own look for
wp-cli, which the maintenance window's ``will_change('update')`` needs (read with the backup's
change).

Counted exactly: strace follows the production host's sshd and every tree-hash script it runs
is read back from the ``execve`` of its shell.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from maintkit.results import StepStatus
from tests.cms_helpers import make_shop_cart_zip, wp_plugin_version
from tests.lab.wp_fixtures import Shop, run, steps, write_inventory

pytestmark = pytest.mark.lab

#: the loop of maintkit.probes.cms.tree_hash_script, as strace prints it inside a shell's argv
TREE_LOOP = re.compile(r'for p in (.*?); do if \[ -d \\"\$p\\" \]; then h=\$\(cd -- ')


class SshdTrace:
    """``strace -f`` on one sshd: every program its sessions start, with the whole argv."""

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        argv = ["strace", "-f", "-s", "1000000", "-e", "trace=execve", "-o", str(out), "-p", str(pid)]
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        first = self.proc.stderr.readline()  # strace says so once it is attached: the gate
        assert "attached" in first, first

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        self.proc.communicate(timeout=30)
        return self.out.read_text(errors="replace")


def tree_reads(trace: str, root: Path) -> Counter[tuple[str, ...]]:
    """The package paths (relative to ``root``) of each tree-hash script in ``trace``."""
    reads: Counter[tuple[str, ...]] = Counter()
    for line in trace.splitlines():
        if "execve(" not in line or "resumed" in line:
            continue
        for match in TREE_LOOP.finditer(line):
            paths = shlex.split(match.group(1).encode().decode("unicode_escape"))
            reads[tuple(str(Path(p).relative_to(root)) for p in paths)] += 1
    return reads


def test_production_hashes_the_installed_packages_once_before_the_change(shop: Shop, tmp_path: Path) -> None:
    make_shop_cart_zip(shop.repo, "1.1.0")
    inv = write_inventory(shop)
    trace = SshdTrace(shop.production_host.pid, tmp_path / "sshd.trace")
    try:
        result = run(shop, inv)
    finally:
        text = trace.stop()

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-3000:]
    assert steps(result, "production")["update"].status is StepStatus.CHANGED
    assert wp_plugin_version(shop.production.path, "shop-cart") == "1.1.0"
    others = ("wp-content/plugins/akismet", "wp-content/themes/twentytwentythree")
    assert tree_reads(text, shop.production.path) == Counter(
        {
            others: 1,  # the plan's drift check: once for the three steps that plan
            ("wp-content/plugins/shop-cart",): 1,  # verify: the installed files are what staging validated
        }
    )
    # cache.clear's look for wp-cli is read with the batch after the update's change, not in a
    # round trip of its own (it was `sh -c 'command -v "$1"' sh wp`)
    shells = [line for line in text.splitlines() if "execve(" in line and "resumed" not in line]
    assert not [line for line in shells if 'command -v \\"$1\\"' in line]
    looks = [line for line in shells if "command -v -- wp" in line]
    # only ever with other probes of the stage (a probe block ends by printing its exit code, `$?`)
    assert looks and all("@@mk-" in line and line.count("$?") >= 2 for line in looks)
    # the update's look for wp-cli, which the maintenance window's will_change('update') asks
    # for, comes with the backup's read after its change, not in a round trip of its own
    wp_cli = [line for line in shells if "wp --version" in line and "maint-pgid" in line]  # the sessions' shells
    assert wp_cli and all("@@mk-" in line and line.count("$?") >= 2 for line in wp_cli), wp_cli
