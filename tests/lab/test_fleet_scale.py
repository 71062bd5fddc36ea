"""Fleet scale over real SSH (lab sshd), counted: what a run does per host or per site must not
grow with the fleet.

* known_hosts: one file shared by the whole fleet (as an agency's is) is parsed once per run,
  and each connection looks its host up by name: the host-name tests paramiko runs per
  connection are the same for a file of 20 entries and one of 2000 (before, every connection
  tested every entry: O(hosts^2) over a run). A hashed entry still verifies its host, and a
  host the file does not know is still refused.
* sessions: a first run costs every site the same exec sessions (read, lock+read, the three
  changes, unlock) and a no-op one, whether 3 or 12 sites share the hosts. The sites run one
  at a time here: a change on a host forgets what every site read on that host (the probe
  cache is per host, and a change may alter a host-wide fact), so a site running at the same
  moment as another on its host may read its facts once more after the other's change.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import paramiko
import pytest

from maintkit.results import SiteStatus
from tests.lab.sshd import LabHost, SshLab
from tests.lab.test_round_trips import FIVE, Recorder
from tests.runs import events, run, sites_of, write_inventory

FILLER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


class _Tests:
    """Counts paramiko's host-name tests (``HostKeys._hostname_matches``), from every thread."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self._lock = threading.Lock()
        real = paramiko.HostKeys._hostname_matches

        def counted(keys: Any, hostname: str, entry: Any) -> bool:
            with self._lock:
                self.count += 1
            return bool(real(keys, hostname, entry))

        monkeypatch.setattr(paramiko.HostKeys, "_hostname_matches", counted)


def _known_hosts(tmp_path: Path, lab: SshLab, hosts: list[LabHost], filler: int) -> Path:
    """The lab hosts' keys (the last one hashed) after ``filler`` entries of other hosts."""
    lines = [f"10.9.{i // 250}.{i % 250} {FILLER_KEY}" for i in range(filler)]
    *plain, hashed = hosts
    lines += [lab.known_hosts_line(h).strip() for h in plain]
    name, key = lab.known_hosts_line(hashed).split(" ", 1)
    lines.append(f"{paramiko.HostKeys.hash_host(name)} {key.strip()}")
    path = tmp_path / f"known_hosts-{filler}"
    path.write_text("\n".join(lines) + "\n")
    return path


def _tests_per_run(
    tmp_path: Path, lab: SshLab, ssh_hosts: list[tuple[LabHost, Path]], filler: int, monkeypatch: pytest.MonkeyPatch
) -> int:
    hosts = [h for h, _ in ssh_hosts]
    known = _known_hosts(tmp_path, lab, hosts, filler)
    envs = {f"shop-{h.name}": h.env(d / f"site-{filler}", known_hosts=str(known)) for h, d in ssh_hosts}
    inv = write_inventory(tmp_path, sites_of(envs), unique=True)
    with monkeypatch.context() as patch:
        tests = _Tests(patch)
        res = run(FIVE, inv, tmp_path / "state")
    assert res.ok and res.changed == 3 * len(hosts), res.to_dict()
    return tests.count


def test_host_key_lookups_per_connection_do_not_grow_with_the_known_hosts_file(
    tmp_path: Path, ssh_lab: SshLab, ssh_hosts: list[tuple[LabHost, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    small = _tests_per_run(tmp_path, ssh_lab, ssh_hosts, 20, monkeypatch)
    large = _tests_per_run(tmp_path, ssh_lab, ssh_hosts, 2000, monkeypatch)
    assert small == large  # the 1980 more entries cost no test at all
    assert small <= 5 * len(ssh_hosts)  # the hashed entry, and paramiko's check of the few keys handed over


def test_a_host_the_shared_file_does_not_know_is_still_refused(
    tmp_path: Path, ssh_lab: SshLab, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    (h1, d1), (h2, d2), _ = ssh_hosts
    known = tmp_path / "known_hosts"
    known.write_text("".join(f"10.9.0.{i} {FILLER_KEY}\n" for i in range(200)) + ssh_lab.known_hosts_line(h1))
    envs = {
        "known": h1.env(d1 / "site", known_hosts=str(known)),
        "unknown": h2.env(d2 / "site", known_hosts=str(known)),
    }
    res = run(FIVE, write_inventory(tmp_path, sites_of(envs)), tmp_path / "state")
    by_site = {s.site: s for s in res.sites}
    assert by_site["known"].status is SiteStatus.OK and by_site["known"].changed == 3
    assert by_site["unknown"].status is SiteStatus.FAILED
    assert f"[{h2.ip}]:{h2.port}" in (by_site["unknown"].error or "")
    assert "known_hosts" in (by_site["unknown"].error or "")
    assert not (d2 / "site").exists()


@pytest.mark.parametrize("per_host", [1, 4])
def test_every_site_costs_the_same_sessions_whatever_the_fleet_size(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]], per_host: int
) -> None:
    envs = {f"shop-{h.name}-{i}": h.env(d / f"site{i}") for h, d in ssh_hosts for i in range(per_host)}
    inv = write_inventory(tmp_path, sites_of(envs))
    rec = Recorder()
    first = run(FIVE, inv, tmp_path / "state", transport_factory=rec, concurrency=1)
    assert first.ok and first.changed == 3 * len(envs)
    # the lock with the first read, the three changes in one round trip, the release
    assert [rec.sessions(h) for h, _ in ssh_hosts] == [3 * per_host] * 3
    rec = Recorder()
    noop = run(FIVE, inv, tmp_path / "state", transport_factory=rec, concurrency=1)
    assert noop.ok and noop.changed == 0
    assert [rec.sessions(h) for h, _ in ssh_hosts] == [1 * per_host] * 3
    assert sorted(e["site"] for e in events(noop.run_dir) if e["event"] == "site.finished") == sorted(envs)
