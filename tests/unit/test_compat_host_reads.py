"""compat.check reads the host once after its smoke requests: every lint and every error log in
one framed shell. A part the shell never reached is a failure, never a silent pass."""

from __future__ import annotations

from typing import Any

from maintkit.actions.compat import CompatCheck
from maintkit.testing import make_context
from maintkit.transport.local import LocalTransport


def test_each_part_gets_its_own_output_even_when_it_exits() -> None:
    ctx = make_context(LocalTransport())
    out = CompatCheck._read_host(ctx, ["echo one; exit 0", "printf 'two\\nlines\\n'; exit 3", "true"])
    assert out == ["one\n", "two\nlines\n", ""]
    assert CompatCheck._read_host(ctx, []) == []


def test_parts_the_shell_never_reached_fail_the_check() -> None:
    ctx = make_context(LocalTransport())
    lint = {"type": "plugin", "name": "shop-cart", "to": "1.1.0"}
    out = CompatCheck._read_host(ctx, ["printf './a.php\\tPHP Parse error:  x\\n'", "kill -9 $$", "echo never"])
    assert out == ["./a.php\tPHP Parse error:  x\n", None, None]
    assert CompatCheck._lint_failures([(lint, ""), (lint, "")], out[:2]) == [
        "plugin shop-cart 1.1.0: a.php: PHP Parse error:  x",
        "plugin shop-cart 1.1.0: php -l did not finish (the shell ended before it)",
    ]
    assert CompatCheck._log_failures(ctx, [("/var/log/php.log", 0, "")], out[2:]) == [
        "/var/log/php.log could not be read (the shell ended before it)"
    ]


class _Timed(LocalTransport):
    """The local transport, noting the limit each shell was given."""

    def __init__(self) -> None:
        super().__init__()
        self.limits: list[float | None] = []

    def run_shell(self, script: str, **kwargs: Any) -> Any:
        self.limits.append(kwargs.get("timeout"))
        return super().run_shell(script, **kwargs)


def test_the_round_trip_may_take_command_timeout_per_part() -> None:
    t = _Timed()
    ctx = make_context(t)
    ctx.env.command_timeout = 7.0
    assert CompatCheck._read_host(ctx, ["echo a", "echo b", "echo c"]) == ["a\n", "b\n", "c\n"]
    assert t.limits == [21.0]  # three parts, each as long as one command may take
    ctx.env.command_timeout = 0.5
    assert CompatCheck._read_host(ctx, ["echo a"]) == ["a\n"]
    assert t.limits[-1] == 0.5
