"""What a fleet run does per host must not grow with the size of the fleet: counted, never timed.

* known_hosts: a lookup finds a plain host name in a dict (only hashed ``|1|`` entries are
  tried one by one), and answers exactly what paramiko's own ``HostKeys.lookup`` answers;
* the lease heartbeat: taking the hundredth lock costs what the first did (the thread is not
  woken for a lease due after the others), and once the run holds no lock the thread ends and
  references no lease, nor its transport.
"""

from __future__ import annotations

import gc
import threading
import weakref
from pathlib import Path
from typing import Any

import paramiko
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maintkit.results import CommandResult
from maintkit.runner.lease import Heartbeat, Lease
from maintkit.transport.ssh_policy import KnownHostsIndex
from tests.gates import wait_until

KEYS = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB8Rr6YdZ5M2Q0XGk0sGy7Ck0kFJBz8o9YV5q0Hs3W7m",
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBAVpYpn6wuZM/icCY4T062cqNVYrS0R2U1o6lOrv4ZxL5L7hw3K6Zz0zb7j6hRJPAMYNZVo0wmgNpgvaMiii1GM=",
]


def _hostkeys(path: Path) -> paramiko.HostKeys:
    keys = paramiko.HostKeys()
    keys.load(str(path))
    return keys


def _index(path: Path, calls: list[str] | None = None) -> KnownHostsIndex:
    """The index of ``path`` as the SSH transport builds it, with its host-name tests counted."""
    keys = paramiko.HostKeys()

    def matches(name: str, entry: Any) -> bool:
        if calls is not None:
            calls.append(name)
        return bool(keys._hostname_matches(name, entry))

    return KnownHostsIndex.load(str(path), paramiko.hostkeys.HostKeyEntry.from_line, matches, paramiko.SSHException)


def _answer(found: Any) -> dict[str, str] | None:
    """A lookup's answer as {key type: base64} (None when the host is unknown)."""
    return None if found is None else {t: k.get_base64() for t, k in found.items()}


def _known_hosts(tmp_path: Path, plain: int, hashed: list[str]) -> Path:
    lines = [f"10.9.{i // 250}.{i % 250} {KEYS[i % 2]}" for i in range(plain)]
    lines += [f"{paramiko.HostKeys.hash_host(name)} {KEYS[2]}" for name in hashed]
    path = tmp_path / f"known_hosts-{plain}-{len(hashed)}"
    path.write_text("\n".join(lines) + "\n")
    return path


NAMES = st.sampled_from(["web1", "web2", "[web1]:2222", "10.0.0.1", "[10.0.0.1]:22", "db", "other"])
LINE = st.one_of(
    st.tuples(st.lists(NAMES, min_size=1, max_size=3, unique=True), st.booleans(), st.sampled_from(range(len(KEYS)))),
    st.sampled_from(["# a comment", "", "web2 ssh-unknown AAAA", "lonely-name"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINE, min_size=0, max_size=12))
def test_the_index_answers_what_paramiko_answers(tmp_path: Path, lines: list[Any]) -> None:
    text = []
    for line in lines:
        if isinstance(line, str):  # comments, blank and broken lines are skipped by both
            text.append(line)
            continue
        names, hashed, key = line
        shown = [paramiko.HostKeys.hash_host(n) for n in names[:1]] if hashed else names  # a hashed line names one host
        text.append(f"{','.join(shown)} {KEYS[key]}")
    text += text[: len(text) // 2]  # duplicates, which paramiko drops while reading
    path = tmp_path / "known_hosts"
    path.write_text("\n".join(text) + "\n")
    keys = _hostkeys(path)
    index = _index(path)
    for name in ["web1", "web2", "[web1]:2222", "10.0.0.1", "[10.0.0.1]:22", "db", "other", "absent"]:
        assert _answer(index.lookup(name)) == _answer(keys.lookup(name)), (name, text)


@pytest.mark.parametrize("plain", [10, 2000])
def test_a_lookup_tries_only_the_hashed_entries_whatever_the_size_of_the_file(tmp_path: Path, plain: int) -> None:
    calls: list[str] = []
    index = _index(_known_hosts(tmp_path, plain, hashed=["[127.0.0.12]:2201", "web9"]), calls)
    assert calls == []  # reading the file tests no name (paramiko's own reading tests each line against all before it)
    assert _answer(index.lookup("10.9.0.7")) == {"ssh-ed25519": KEYS[1].split()[1]}
    assert _answer(index.lookup("[127.0.0.12]:2201")) == {"ecdsa-sha2-nistp256": KEYS[2].split()[1]}
    assert index.lookup("10.8.0.1") is None
    assert calls == ["10.9.0.7"] * 2 + ["[127.0.0.12]:2201"] * 2 + ["10.8.0.1"] * 2  # the two hashed lines, each time
    assert index.tested == 6


# ---------------------------------------------------------------------------- the lease heartbeat
class _Renewals:
    """A transport that answers every renewal with success and counts them, per lease path."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.lock = threading.Lock()

    def run_shell(self, script: str, **kwargs: Any) -> CommandResult:
        with self.lock:
            self.paths.append(script)
        return CommandResult(host="h", command="sh", exit_code=0)


def _lease(i: int, transport: Any, seconds: int = 600) -> Lease:
    return Lease(f"s{i}", "production", f"h{i}", f"/srv/s{i}", f"gen{i:04d}", seconds, transport,
                 lambda *a, **k: None, lambda: None)  # fmt: skip


def _thread(beat: Heartbeat) -> threading.Thread | None:
    return beat._thread


@pytest.mark.parametrize("count", [3, 300])
def test_taking_more_locks_never_wakes_the_heartbeat(count: int) -> None:
    beat = Heartbeat()
    transport = _Renewals()
    for i in range(count):
        beat.hold(_lease(i, transport))
    wait_until(lambda: beat.looks >= 1, "the heartbeat looked at its leases once")
    assert beat.looks == 1  # every later lease is due after the first: none woke the thread
    assert len(beat.held()) == count and transport.paths == []
    thread = _thread(beat)
    for i in range(count):
        beat.drop(f"s{i}", "production")
    assert thread is not None
    thread.join(timeout=10)
    assert not thread.is_alive() and _thread(beat) is None


def test_after_the_last_lock_the_heartbeat_ends_and_keeps_no_lease_nor_transport() -> None:
    beat = Heartbeat()
    transport = _Renewals()
    lease = _lease(0, transport)
    gone_lease, gone_transport = weakref.ref(lease), weakref.ref(transport)
    beat.hold(lease)
    beat.hold(_lease(1, transport))
    wait_until(lambda: beat.looks >= 1, "the heartbeat looked at its leases")
    thread = _thread(beat)
    assert thread is not None
    assert beat.drop("s0", "production") == 0
    assert beat.drop("s1", "production") == 0
    thread.join(timeout=10)  # with a lease due in 200 s, only the drop of the last one can end it now
    assert not thread.is_alive()
    del lease, transport
    gc.collect()
    assert gone_lease() is None and gone_transport() is None


def test_a_lease_due_first_wakes_the_heartbeat_and_is_renewed_alone() -> None:
    beat = Heartbeat()
    transport = _Renewals()
    for i in range(50):
        beat.hold(_lease(i, transport))
    short = _lease(99, transport, seconds=1)  # renewed every third of a second
    beat.hold(short)
    wait_until(lambda: short.renewals >= 2, "the short lease was renewed twice")
    renewed = set(transport.paths)
    assert len(renewed) == 1 and "/srv/s99" in renewed.pop()  # the 600 s leases are not due
    assert beat.drop("s99", "production") >= 2
    for i in range(50):
        beat.drop(f"s{i}", "production")
    assert beat.held() == []
