"""``Context.run_and_probe_result(..., sudo=)``: a change that runs under ``sudo`` (cache.clear's
OPcache reset as the pool's user) brings the runner's reads back in its own round trip, the
probes under the environment's ``become`` as every probe read; a change that must run without
``sudo`` where ``become`` is on runs alone (the runner reads the probes afterwards)."""

from __future__ import annotations

from maintkit.probes import CommandProbe
from maintkit.testing import FakeTransport, make_context
from maintkit.transport.local import LocalTransport

PROBE = CommandProbe(("echo", "probed"))


def test_sudo_for_the_change_only_wraps_the_change() -> None:
    ctx = make_context(FakeTransport())
    ctx.refresh = [PROBE]
    ctx.run_and_probe_result("echo changed", [], sudo=True)
    (line,) = ctx.transport.commands
    change, _, reads = line.partition("\n) || exit $?\n")
    assert change == "( sudo -n -- sh -c 'echo changed'"
    assert "sudo" not in reads and "echo probed" in reads


def test_sudo_as_become_says_is_not_doubled() -> None:
    ctx = make_context(FakeTransport(become=True))
    ctx.refresh = [PROBE]
    ctx.run_and_probe_result("echo changed", [], sudo=True)
    (line,) = ctx.transport.commands
    assert line.startswith("sudo -n -- sh -c '( echo changed\n) || exit $?\n") and line.count("sudo") == 1
    assert "echo probed" in line


def test_no_sudo_under_become_runs_the_change_alone() -> None:
    transport = FakeTransport(become=True, responses={"echo changed": (3, "out\n", "err\n")})
    ctx = make_context(transport)
    ctx.refresh = [PROBE]
    head, res = ctx.run_and_probe_result("echo changed", [], sudo=False)
    assert transport.commands == ["echo changed"]
    assert (head, res.exit_code, res.stderr) == ("__preamble_failed__:3\nout\n", 3, "err\n")
    assert not ctx.primed and not ctx.probe_cache.has(ctx.host_key, PROBE.key)


def test_a_real_shell_answers_the_change_and_the_reads() -> None:
    ctx = make_context(LocalTransport())
    ctx.refresh = [PROBE]
    head, res = ctx.run_and_probe_result("echo changed; echo to-stderr >&2", [], sudo=True)
    assert (head, res.exit_code, res.stderr) == ("changed\n", 0, "to-stderr\n")
    assert ctx.primed == {PROBE.key}
    assert ctx.probe(PROBE).stdout == "probed\n"

    failed, res = ctx.run_and_probe_result("echo half; exit 90", [], sudo=True)
    assert (failed, res.exit_code) == ("__preamble_failed__:90\nhalf\n", 90)


def test_cache_clear_keeps_only_the_reads_after_its_last_change() -> None:
    """A target's reads after its change are stale once a later target changed the host: every
    command through the context forgets them, so the runner keeps only the last target's."""
    from typing import Any, ClassVar

    from maintkit.actions.cache.base import CacheTarget, Item
    from maintkit.actions.cache.clear import CacheClear
    from maintkit.results import Check

    class Reads(CacheTarget[str]):
        kind: ClassVar[Any] = "directory"

        @classmethod
        def configured(cls, params: Any, ctx: Any) -> list[CacheTarget[Any]]:
            return []

        def check(self, ctx: Any) -> Item[str]:
            return Item(self, "t", True, "x", "")

        def clear(self, ctx: Any, item: Item[str]) -> tuple[str, dict[str, Any]]:
            ctx.run_shell(f"clear {item.target}")  # its change, before what it read after it
            seen = sorted(ctx.primed)
            ctx.primed.add(item.target)
            return "cleared", {"primed_before": seen}

    first, second = Reads(), Reads()
    items = [Item(first, "first", True, "", ""), Item(second, "second", True, "", "")]
    ctx = make_context(FakeTransport())
    ctx.primed.add("before-apply")
    action = CacheClear(CacheClear.Params.model_validate({"targets": ["platform"]}))
    action.apply(ctx, Check.change("two", snapshot=items))
    assert [c["primed_before"] for c in ctx.data["cleared"]] == [[], []]
    assert ctx.primed == {"second"}
