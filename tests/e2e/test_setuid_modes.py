"""A chown clears setuid and setgid: file.content sets the mode after the owner, and so does its rollback."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from maintkit.results import SiteStatus, StepStatus
from tests.lab.sshd import ensure_login_user
from tests.runs import local_env, one_site, run, write_inventory

PLAYBOOK = """\
name: setuid
stages:
  - env: production
    steps:
      - id: tool
        action: file.content
        with: {{path: "{{{{ env.path }}}}/bin/tool", content: "#!/bin/sh\\necho {version}\\n", mode: "{mode}", owner: deploy, group: deploy}}
      - {{id: boom, action: command, with: {{argv: ["false"]}}, when: "{fail}"}}
"""


@pytest.mark.parametrize("mode", [0o4755, 0o2750, 0o6711])
def test_file_content_keeps_setuid_and_setgid_through_apply_and_rollback(tmp_path: Path, mode: int) -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root (chown to another user)")
    ensure_login_user("deploy")
    deploy = pwd.getpwnam("deploy")
    site = tmp_path / "site"
    (site / "bin").mkdir(parents=True)
    tool = site / "bin" / "tool"
    tool.write_text("#!/bin/sh\necho old\n")
    os.chmod(tool, 0o4750)  # owned by root: the update changes owner and group, then the mode
    inv = write_inventory(tmp_path, one_site(local_env(site)))
    text = PLAYBOOK.format(version="new", mode=f"{mode:04o}", fail="false")

    first = run(text, inv, tmp_path / "state")
    assert first.sites[0].status is SiteStatus.OK, first.sites[0].error
    st = tool.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, deploy.pw_uid, deploy.pw_gid)
    assert tool.read_text() == "#!/bin/sh\necho new\n"
    again = run(text, inv, tmp_path / "state")
    assert [s.status for s in again.sites[0].steps] == [StepStatus.UNCHANGED, StepStatus.SKIPPED]

    # an update to a root-owned 4750 file that fails later rolls back: owner, mode and content as before
    tool.write_text("#!/bin/sh\necho old\n")
    os.chown(tool, 0, 0)
    os.chmod(tool, 0o4750)
    failed = run(PLAYBOOK.format(version="newer", mode=f"{mode:04o}", fail="true"), inv, tmp_path / "state")
    assert failed.sites[0].status is SiteStatus.ROLLED_BACK
    st = tool.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o4750, 0, 0)
    assert tool.read_text() == "#!/bin/sh\necho old\n"
