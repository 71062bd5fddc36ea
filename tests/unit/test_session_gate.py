"""The session bound both SSH transports share, and the timed-out result of a command that waited."""

from __future__ import annotations

import threading

import pytest

from maintkit.errors import CommandFailed
from maintkit.results import CommandResult
from maintkit.transport.base import checked
from maintkit.transport.ssh_policy import SessionGate


def test_a_gate_lets_limit_sessions_in_and_counts_the_most() -> None:
    gate = SessionGate(3)
    assert [gate.enter(0) for _ in range(4)] == [True, True, True, False]  # the 4th finds none
    assert gate.most == 3
    gate.leave()
    assert gate.enter(0) is True
    for _ in range(3):
        gate.leave()
    assert gate.most == 3
    with pytest.raises(ValueError):
        gate.leave()
        gate.leave()  # more than were taken


def test_a_waiting_session_enters_when_one_leaves() -> None:
    gate = SessionGate(1)
    assert gate.enter(0)
    entered = threading.Event()

    def wait() -> None:
        if gate.enter(30):
            entered.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert not entered.is_set()
    gate.leave()
    waiter.join(30)
    assert entered.is_set() and gate.most == 1


def _result(code: int, timed_out: bool) -> CommandResult:
    return CommandResult(host="h", command="sleep 9", exit_code=code, stdout="", stderr="", timed_out=timed_out)


def test_checked_raises_only_under_check() -> None:
    waited = _result(124, True)
    assert checked(waited, 2, check=False) is waited
    with pytest.raises(CommandFailed, match=r"^h: command timed out after 2 s \(waiting for a session\): sleep 9$"):
        checked(waited, 2, check=True, waiting=True)
    with pytest.raises(CommandFailed, match=r"^h: command timed out after 1.5 s: sleep 9$"):
        checked(waited, 1.5, check=True)
    failed = _result(3, False)
    with pytest.raises(CommandFailed) as exc:
        checked(failed, 2, check=True)
    assert exc.value.result is failed
    assert checked(_result(0, False), 2, check=True).exit_code == 0
