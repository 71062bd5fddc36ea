"""How a failed command is described in step errors (``CommandResult.why``): its exit status, or
that it timed out and after how long; the actions that name a failed command use it, so a
command cut at its timeout never reads as an ordinary exit status."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from maintkit.actions.service import Operation, ServiceSpec, run_operation
from maintkit.errors import ApplyFailed
from maintkit.results import CommandResult
from maintkit.testing import TIMEOUT, FakeTransport, make_context
from maintkit.transport.local import LocalTransport


def test_why_names_the_exit_status_or_the_timeout() -> None:
    assert CommandResult("h", "reindex", 1, duration_ms=3.0).why == "exit 1"
    assert CommandResult("h", "reindex", 124, duration_ms=2004.0, timed_out=True).why == "timed out after 2.0 s"
    assert CommandResult("h", "reindex", -1, timed_out=True).why == "timed out"


def test_a_service_operation_cut_at_its_timeout_says_so_on_a_real_shell(tmp_path: Path) -> None:
    """The operation says it started, then blocks on a FIFO nobody writes (no sleep): only its
    timeout ends it, and the error names the timeout with the time the command really took."""
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    ctx = make_context(LocalTransport(), path="/")
    spec = ServiceSpec(name="shop-worker", command=("cat", str(gate)), timeout=2.0)
    blocked = f"echo starting >&2; exec cat {gate}"
    with pytest.raises(ApplyFailed) as info:
        run_operation(ctx, spec, Operation(label="restart shop-worker", argv=("sh", "-c", blocked)))
    found = re.fullmatch(r"restart shop-worker failed \(timed out after (\d+\.\d) s\): starting", info.value.message)
    assert found is not None, info.value.message
    assert float(found.group(1)) >= 2.0  # it took at least its timeout, however loaded the machine


def test_an_ordinary_failure_keeps_its_exit_status() -> None:
    ctx = make_context(LocalTransport(), path="/")
    with pytest.raises(ApplyFailed) as info:
        run_operation(ctx, ServiceSpec(name="x"), Operation(label="reload x", argv=("sh", "-c", "echo no >&2; exit 3")))
    assert info.value.message == "reload x failed (exit 3): no"


def test_a_fake_timeout_lasts_its_limit() -> None:
    fake = FakeTransport({"reindex": TIMEOUT})
    res = fake.run(["reindex"], timeout=7, check=False)
    assert (res.timed_out, res.exit_code, res.why) == (True, 124, "timed out after 7.0 s")
