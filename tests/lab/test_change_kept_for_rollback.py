"""A step's change is kept for the rollback from the moment its apply returns (real SSH, lab sshd).

After a step's apply, the runner reads again what the change may have altered (the step's own
verify reads and the later steps' probes) in one round trip. When that read fails (the run was
interrupted just as the change ended, so the read is the command the interrupt stops; or the
connection is lost), the step fails, and its change must still be rolled back. It was not: the
change was recorded only after that read, so the rollback never knew of it and the site kept
it (seen as a CI failure of ``test_sigterm_mid_run_undoes_and_releases_the_lock``, about once in
40 runs: the gated command ended before the interrupt reached it, and the read after it was
stopped). Here the read after the change fails on purpose, every time: a wrapper around the real
transport makes the first command after the step's own command raise.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from maintkit.errors import ConnectionLost
from maintkit.inventory import Environment
from maintkit.results import SiteStatus, StepStatus
from maintkit.transport.base import CommandCancelled, Transport, join
from maintkit.transport.factory import transport_for
from tests.lab.recording import Recording
from tests.lab.sshd import LabHost, chown_login_user
from tests.runs import events, one_site, run, write_inventory

PLAYBOOK = """\
name: kept
stages:
  - env: production
    steps:
      - {action: file.content, with: {path: "SITE/keep.txt", content: "new\\n"}}
      - {action: command, with: {argv: [touch, "SITE/done"], creates: "SITE/done", undo: [rm, -f, "SITE/done"]}}
      - {action: file.content, with: {path: "SITE/never.txt", content: "x"}}
"""


class FailAfter(Recording):
    """A real transport whose first command after the one naming ``marker`` raises ``error``."""

    def __init__(self, inner: Transport, marker: str, error: Exception) -> None:
        super().__init__(inner)
        self.marker, self.error = marker, error
        self.armed = False
        self.failed: list[str] = []  # the command that raised (its text)

    def _pass(self, text: str) -> None:
        if self.armed and not self.failed:
            self.failed.append(text)
            raise self.error
        if self.marker in text:
            self.armed = True

    def run(self, argv: Any, **kwargs: Any) -> Any:
        self._pass(join(argv))
        return super().run(argv, **kwargs)

    def run_shell(self, script: str, **kwargs: Any) -> Any:
        self._pass(script)
        return super().run_shell(script, **kwargs)


def _run(host: LabHost, site: Path, tmp_path: Path, error: Exception) -> tuple[Any, FailAfter]:
    made: list[FailAfter] = []

    def factory(env: Environment) -> Transport:
        made.append(FailAfter(transport_for(env, {}), f"touch {site}/done", error))
        return made[-1]

    inv = write_inventory(tmp_path, one_site(host.env(site)))
    result = run(PLAYBOOK.replace("SITE", str(site)), inv, tmp_path / "state", transport_factory=factory)
    return result, made[0]


#: what the read after the change raises: the interrupt's stop, or a lost connection
ERRORS: dict[str, Callable[[str], Exception]] = {
    "interrupted": lambda host: CommandCancelled(host, "the run was interrupted (SIGTERM)"),
    "connection-lost": lambda host: ConnectionLost(host, "connection to it lost"),
}


@pytest.mark.parametrize("kind", sorted(ERRORS))
def test_a_failed_read_after_a_change_still_rolls_the_change_back(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]], kind: str
) -> None:
    host, scratch = ssh_hosts[0]
    site = scratch / "site"
    site.mkdir()
    (site / "keep.txt").write_text("old\n")
    for p in (site, site / "keep.txt"):
        chown_login_user(p)
    result, wrapper = _run(host, site, tmp_path, ERRORS[kind](host.ip))

    assert wrapper.failed and f"{site}/done" in wrapper.failed[0]  # the read after the change
    assert sorted(p.name for p in site.iterdir() if p.name != ".maint") == ["keep.txt"]
    assert (site / "keep.txt").read_text() == "old\n"
    [shop] = result.sites
    assert shop.status is SiteStatus.ROLLED_BACK
    steps = {s.step: s.status for s in shop.steps}
    assert steps == {"file.content": StepStatus.ROLLED_BACK, "command": StepStatus.FAILED}
    log = [(e["event"], e.get("step")) for e in events(result.run_dir) if e.get("step")]
    assert log[log.index(("step.applied", "command")) :] == [
        ("step.applied", "command"),
        ("step.failed", "command"),
        ("step.rolled_back", "command"),
        ("step.rolled_back", "file.content"),
        ("step.not_run", "file.content#2"),
    ]
