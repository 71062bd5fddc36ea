"""What a change reads ahead, what waits for its step, and what the lock's read leaves out.

After a change, its round trip reads the step's own probes, every later file probe (one
``stat``) and the other probes of the later steps up to the first one that may change; a
later probe a change dropped is read when its step comes. Counted here with probe commands
that log each run; a probe never runs more often than one read per change that could affect it.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, ClassVar

from maintkit.action import Action, Context, Params
from maintkit.probes import CommandProbe, Probe
from maintkit.registry import Registry
from maintkit.results import Change, Check, SiteStatus, StepStatus
from tests.runs import events, local_env, one_site, run, sites_of, write_inventory

COUNTER = """#!/bin/sh
echo "$1" >> "{log}"
echo "read $1"
"""

PLAYBOOK = """\
name: read-ahead
stages:
  - env: production
    steps:
      - {{id: dir, action: file.directory, with: {{path: "{{{{ env.path }}}}/app"}}}}
      - {{id: ro1, action: command, with: {{argv: [{c}, ro1], read_only: true}}}}
      - {{id: conf, action: file.content, with: {{path: "{{{{ env.path }}}}/app/x", content: "x\\n"}}}}
      - {{id: ro2, action: command, with: {{argv: [{c}, ro2], read_only: true}}}}
      - {{id: guarded, action: command, with: {{argv: ["false"], unless: [{c}, guard]}}}}
      - {{id: ro3, action: command, with: {{argv: [{c}, ro3], read_only: true}}}}
"""


def _counts(log: Path) -> dict[str, int]:
    names = log.read_text().split() if log.exists() else []
    out = {n: names.count(n) for n in ("ro1", "ro2", "guard", "ro3")}
    log.unlink(missing_ok=True)
    return out


def test_each_probe_is_read_once_per_change_that_may_affect_it(tmp_path: Path) -> None:
    log, counter = tmp_path / "reads.log", tmp_path / "counter"
    counter.write_text(COUNTER.format(log=log))
    counter.chmod(0o755)
    site = tmp_path / "site"
    site.mkdir()
    inv = write_inventory(tmp_path, one_site(local_env(site)))
    text = PLAYBOOK.format(c=counter)

    first = run(text, inv, tmp_path / "state")
    steps = {s.step: s.status for s in first.sites[0].steps}
    assert steps == {
        "dir": StepStatus.CHANGED, "ro1": StepStatus.UNCHANGED, "conf": StepStatus.CHANGED,
        "ro2": StepStatus.UNCHANGED, "guarded": StepStatus.UNCHANGED, "ro3": StepStatus.UNCHANGED,
    }  # fmt: skip
    assert [s.data.get("stdout") for s in first.sites[0].steps if s.step.startswith("ro")] == [
        "read ro1", "read ro2", "read ro3",
    ]  # fmt: skip
    # the lock with the first read (the stage never finished here): guard only, the read-only
    # commands coming after a step that may change (dir) are left for the reads after the changes;
    # dir's change reads ro1 and stops at conf (it may change); conf's change reads ro2 and guard
    # (which may change); ro3, dropped by both changes, is read when its step comes. Each
    # read-only command runs once. Before: 3, 4, 4 and 4, then 2, 2, 2 and 2.
    assert _counts(log) == {"ro1": 1, "ro2": 1, "guard": 2, "ro3": 1}

    again = run(text, inv, tmp_path / "state")
    assert all(s.status is StepStatus.UNCHANGED for s in again.sites[0].steps)
    assert _counts(log) == {"ro1": 1, "ro2": 1, "guard": 1, "ro3": 1}  # one round trip: the first read


RACE = """\
name: race
stages:
  - env: production
    steps:
      - {{id: dir, action: file.directory, with: {{path: "{app}"}}}}
      - {{id: stamp, action: command, with: {{argv: [touch, "{stamp}"], creates: "{stamp}"}}}}
      - {{id: meanwhile, action: command, with: {{argv: [sh, -c, "mkdir -p '{app}' && touch '{stamp}'; echo made"], read_only: true}}}}
"""


def test_what_later_steps_read_before_the_lock_is_read_again_under_it(tmp_path: Path) -> None:
    """The first read sees neither path; the last step's probe then makes both (as another process
    could, between the first read and the lock). `dir` needs a change, takes the lock, finds the
    directory under it and changes nothing: `stamp` must not act on what it read before the lock."""
    site = tmp_path / "site"
    site.mkdir()
    app, stamp = site / "app", site / "stamp"
    inv = write_inventory(tmp_path, one_site(local_env(site)))
    app.mkdir()
    stamp.touch()
    settle(RACE.format(app=app, stamp=stamp), inv, tmp_path / "state")  # nothing to do: as wanted
    app.rmdir()
    stamp.unlink()
    result = run(RACE.format(app=app, stamp=stamp), inv, tmp_path / "state")
    assert result.sites[0].status is SiteStatus.OK, result.sites[0].error
    steps = {s.step: (s.status, s.reason) for s in result.sites[0].steps}
    assert steps["dir"][0] is StepStatus.UNCHANGED
    assert steps["stamp"] == (StepStatus.UNCHANGED, f"{stamp} exists")
    names = [e["event"] for e in events(result.run_dir)]
    assert "lock.acquired" in names and "step.applied" not in names


def settle(text: str, inv: Path, state: Path, **kw: Any) -> None:
    """One run first, so that the stage has finished here: the next run reads before it locks
    (a stage that never did takes the lock in its first round trip, runner/settled.py)."""
    first = run(text, inv, state, **kw)
    assert first.sites[0].status is SiteStatus.OK, first.sites[0].error


TICK = """#!/bin/sh
n=$(($(cat "$1" 2>/dev/null || echo 0) + 1))
echo "$n" > "$1"
echo "$n"
"""


class AdHocParams(Params):
    declared: list[str]
    asked: list[str]


class AdHoc(Action[AdHocParams]):
    """Declares one probe and asks for another only in its check (both count their runs)."""

    name: ClassVar[str] = "test.adhoc"
    Params: ClassVar[type[AdHocParams]] = AdHocParams
    reversible: ClassVar[bool] = True
    seen: ClassVar[list[str]] = []

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        return [CommandProbe(tuple(self.params.declared))]

    def check(self, ctx: Context) -> Check:
        ctx.probe(CommandProbe(tuple(self.params.declared)))
        AdHoc.seen.append(ctx.probe(CommandProbe(tuple(self.params.asked))).stdout.strip())
        return Check.change("would change")

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        return [Change("target", "changed")]

    def verify(self, ctx: Context) -> None:
        """Nothing to verify."""

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Nothing to undo."""


def test_what_a_check_asked_for_before_the_lock_is_read_again_under_it(tmp_path: Path) -> None:
    """The declared probe reads differently under the lock (it counts its runs), so the check
    runs again: what it asked for on its own before the lock (also a count) is read afresh
    then, not taken from the read made without the lock."""
    tick = tmp_path / "tick"
    tick.write_text(TICK)
    tick.chmod(0o755)
    site = tmp_path / "site"
    site.mkdir()
    inv = write_inventory(tmp_path, one_site(local_env(site)))
    registry = Registry()
    registry.register(AdHoc)
    declared, asked = [str(tick), str(tmp_path / "declared.n")], [str(tick), str(tmp_path / "asked.n")]
    text = (
        "name: adhoc\nstages:\n  - env: production\n    steps:\n"
        f"      - {{id: adhoc, action: test.adhoc, with: {{declared: {json.dumps(declared)}, asked: {json.dumps(asked)}}}}}\n"
    )
    settle(text, inv, tmp_path / "state", registry=registry)
    for counter in ("declared.n", "asked.n"):
        (tmp_path / counter).unlink()
    AdHoc.seen.clear()
    result = run(text, inv, tmp_path / "state", registry=registry)
    assert result.sites[0].status is SiteStatus.OK, result.sites[0].error
    assert [s.status for s in result.sites[0].steps] == [StepStatus.CHANGED]
    # the check before the lock saw 1; under the lock the declared read changed, the check ran
    # again and asked again: 2 (a read kept from before the lock would say 1 once more)
    assert AdHoc.seen == ["1", "2"]
    assert (tmp_path / "declared.n").read_text() == "3\n"  # the first read, the lock's, the read after the change


class GateParams(Params):
    signal: str | None = None
    wait: str | None = None


class Gate(Action[GateParams]):
    """A check that signals an event or waits for one (two sites' steps put in a known order)."""

    name: ClassVar[str] = "test.gate"
    Params: ClassVar[type[GateParams]] = GateParams
    check_only: ClassVar[bool] = True
    events: ClassVar[dict[str, threading.Event]] = {}

    def check(self, ctx: Context) -> Check:
        if self.params.signal:
            Gate.events[self.params.signal].set()
        if self.params.wait:
            assert Gate.events[self.params.wait].wait(60), f"{self.params.wait} never came"
        return Check.ok("gate")

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        return []

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Nothing to undo."""


TWO_SITES = """\
name: two-sites
concurrency: 2
stages:
  - env: production
    steps:
      - {{id: b-read, action: test.gate, with: {{signal: b_read}}, when: "site.name == 'b'"}}
      - {{id: wait-b, action: test.gate, with: {{wait: b_read}}, when: "site.name == 'a'"}}
      - {{id: dir, action: file.directory, with: {{path: "{{{{ env.path }}}}/app"}}, when: "site.name == 'a'"}}
      - {{id: a-changed, action: test.gate, with: {{signal: a_changed}}, when: "site.name == 'a'"}}
      - {{id: wait-a, action: test.gate, with: {{wait: a_changed}}, when: "site.name == 'b'"}}
      - {{id: ro, action: command, with: {{argv: [{c}, "{{{{ site.name }}}}"], read_only: true}}}}
"""


def test_another_sites_change_on_the_same_host_keeps_this_sites_reads(tmp_path: Path) -> None:
    """Two sites on one host (here: this machine). Site b reads everything first; then site a
    changes its own directory; then b's read-only command is checked: from b's first read, not
    read again (b's reads are b's: a's change is not b's and was never ordered with b's steps).
    The stage has finished here once before (so each site reads before it locks: a stage that
    never did leaves a read-only step after a step that may change out of its first read)."""
    log, counter = tmp_path / "reads.log", tmp_path / "counter"
    counter.write_text(COUNTER.format(log=log))
    counter.chmod(0o755)
    envs = {}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        envs[name] = local_env(tmp_path / name)
    inv = write_inventory(tmp_path, sites_of(envs))
    registry = Registry()
    registry.register(Gate)
    for settled in (False, True):
        Gate.events.clear()
        Gate.events.update(b_read=threading.Event(), a_changed=threading.Event())
        if settled:  # the second run, on a as it was before the first
            (tmp_path / "a" / "app").rmdir()
            log.unlink()
        result = run(TWO_SITES.format(c=counter), inv, tmp_path / "state", registry=registry)

    assert result.ok, [s.error for s in result.sites]
    status = {(site.site, s.step): s.status for site in result.sites for s in site.steps}
    assert status[("a", "dir")] is StepStatus.CHANGED and (tmp_path / "a" / "app").is_dir()
    assert status[("b", "ro")] is StepStatus.UNCHANGED
    reads = log.read_text().split()
    # a: its first read, and once after its own change (read ahead); b: its first read only
    assert (reads.count("a"), reads.count("b")) == (2, 1)
