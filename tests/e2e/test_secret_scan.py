"""Secrets never leak, in any sink: run folders, stdout and stderr (plain, --json, GitHub
Actions), ``maint runs``, ``maint report`` (md and html), across successful, failing and
invalid (exit 2) runs, locally and over SSH.

Every scan looks for the whole secret and for every 8-character piece of it
(:mod:`tests.secret_scan`). The scenarios put the secret exactly across the places where
output is cut (the 200-character command label, the 500-character stderr tail, the
2000-character stdout of a read-only command): a cut made before redaction would leave a
piece behind.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.lab.sshd import SshLab
from tests.runs import local_env, maint_cli, one_site, write_inventory
from tests.secret_scan import assert_no_secret, find_leaks, new_secret

VAR = "SHOP_SEED"  # a name the environment rule does not know: only the template registry can mask it
LABEL_CUT, STDERR_CUT, STDOUT_CUT = 200, 500, 2000


def maint(tmp_path: Path, secret: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``maint ARGS`` in tmp_path (plain output) with the secret exported, plus ``extra`` variables."""
    return maint_cli(*args, cwd=tmp_path, extra_env={VAR: secret, **extra})


def local_inventory(tmp_path: Path) -> Path:
    """``inventory.yml``: site ``shop``, production in ``tmp_path/site`` on this machine."""
    return write_inventory(tmp_path, one_site(local_env(tmp_path / "site")))


LEAD = "a" * 100  # printed before the secret, so that the redacted text is still longer than the cut
TRAIL = "q" * 100  # an argument after the secret, for the same reason


def label_prefix(secret: str) -> str:
    """The command line of step ``label`` up to the secret (the secret then straddles character 200)."""
    head = "sh -c true sh "
    return head + "p" * (LABEL_CUT - len(secret) // 2 - len(head) - 1) + " "


def playbook(tmp_path: Path, secret: str, *, fail: bool) -> Path:
    """Steps whose labels, output and changes carry the secret exactly across every cut.

    ``label``: the command line (a change's target) has the secret across character 200.
    ``echo``: prints the secret on stdout and stderr. ``out``: a read-only command whose
    stdout has the secret across the 2000-character tail. ``boom`` (when ``fail``): exits 3
    with the secret across the 500-character stderr tail.
    """
    half = len(secret) // 2
    pad = label_prefix(secret).split(" ")[-2]
    lines = [
        "name: secret-scan",
        "on_failure: rollback",
        "stages:",
        "  - env: production",
        "    steps:",
        "      - id: conf",
        "        action: file.content",
        '        with: {path: "{{ env.path }}/conf.txt", content: "seed={{ secrets.SHOP_SEED }}\\n", mode: "0600"}',
        "      - id: label",
        "        action: command",
        f"        with: {{argv: [sh, -c, 'true', sh, {pad}, '{{{{ secrets.SHOP_SEED }}}}', {TRAIL}], undo: ['true']}}",
        "      - id: echo",
        "        action: command",
        "        with: {argv: [sh, -c, 'echo \"$1\"; echo \"$1\" >&2', sh, '{{ secrets.SHOP_SEED }}'], undo: ['true']}",
        "      - id: out",
        "        action: command",
        f'        with: {{argv: [sh, -c, \'printf "{LEAD}%s%0{STDOUT_CUT - half}d" "$1" 0\', sh,'
        " '{{ secrets.SHOP_SEED }}'], read_only: true}",
    ]
    if fail:
        lines += [
            "      - id: boom",
            "        action: command",
            f'        with: {{argv: [sh, -c, \'printf "{LEAD}%s%0{STDERR_CUT - half}d" "$1" 0 >&2; exit 3\','
            " sh, '{{ secrets.SHOP_SEED }}']}",
        ]
    pb = tmp_path / "secret-scan.yml"
    pb.write_text("\n".join(lines) + "\n")
    return pb


def invalid_playbook(tmp_path: Path) -> Path:
    pb = tmp_path / "invalid.yml"
    pb.write_text(
        "name: invalid\nstages:\n  - env: production\n    steps:\n"
        '      - {action: file.directory, with: {path: "{{ env.path }}/d", mode: "{{ secrets.SHOP_SEED }}"}}\n'
    )
    return pb


def read_outputs(tmp_path: Path, secret: str, state: Path) -> list[tuple[str, str]]:
    """Everything ``maint runs`` and ``maint report`` show for the runs in ``state``."""
    rids = [
        r["run_id"] for r in json.loads(maint(tmp_path, secret, "runs", "--json", "--state-dir", str(state)).stdout)
    ]
    assert rids, "no run to scan"
    outputs: list[tuple[str, str]] = []
    commands = [["runs"], ["runs", "--json"], ["report"], ["report", "--format", "html"]]
    commands += [["runs", rid, *extra] for rid in rids for extra in ([], ["--json"])]
    for args in commands:
        proc = maint(tmp_path, secret, *args, "--state-dir", str(state))
        assert proc.returncode == 0, (args, proc.stderr)
        outputs += [(f"maint {' '.join(args)} stdout", proc.stdout), (f"maint {' '.join(args)} stderr", proc.stderr)]
    html = tmp_path / "report.html"
    proc = maint(tmp_path, secret, "report", "-o", str(html), "--state-dir", str(state))
    assert proc.returncode == 0, proc.stderr
    report_md = dict(outputs)["maint report stdout"]
    assert "shop" in report_md and "shop" in html.read_text()  # the reports do cover the runs
    return outputs


def steps_of(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["step"]: s for site in result["sites"] for s in site["steps"]}


def check_result(result: dict[str, Any], secret: str, *, fail: bool) -> None:
    """The run did what the playbook says; where the secret was, ``***`` stands (redacted
    first, then cut: the mask survives the cut whole, the rest is the padding)."""
    steps = steps_of(result)
    half = len(secret) // 2
    lead = "…" + LEAD[: half - 4]  # a tail of n characters: the mark, some lead, the mask, the padding
    assert steps["out"]["data"]["stdout"] == lead + "***" + "0" * (STDOUT_CUT - half)
    if fail:
        assert result["status"] == "failed"
        assert steps["boom"]["status"] == "failed"
        assert steps["boom"]["error"] == "apply: command exited 3: " + lead + "***" + "0" * (STDERR_CUT - half)
        assert {steps[s]["status"] for s in ("conf", "label", "echo")} == {"rolled-back"}
        return
    assert result["status"] == "ok"
    prefix = label_prefix(secret)
    target = steps["label"]["changes"][0]["target"]
    assert target == prefix + "*** " + TRAIL[: LABEL_CUT - 1 - len(prefix) - 4] + "…"
    assert steps["echo"]["changes"][0]["target"] == 'sh -c echo "$1"; echo "$1" >&2 sh ***'


def scan_run(
    tmp_path: Path, secret: str, inv: Path, *, fail: bool, mode: str, check_site: bool = True
) -> tuple[subprocess.CompletedProcess[str], list[tuple[str, str]]]:
    """Run the playbook in ``mode`` (plain, json or github) and scan everything it left."""
    state = tmp_path / "state"
    extra: dict[str, str] = {}
    if mode == "github":
        extra = {
            "GITHUB_ACTIONS": "true",
            "GITHUB_STEP_SUMMARY": str(tmp_path / "gh-summary.md"),
            "GITHUB_OUTPUT": str(tmp_path / "gh-output.txt"),
        }
    args = ["run", str(playbook(tmp_path, secret, fail=fail)), "-i", str(inv), "--state-dir", str(state), "--diff"]
    proc = maint(tmp_path, secret, *args, *(["--json"] if mode == "json" else []), **extra)
    assert proc.returncode == (1 if fail else 0), proc.stdout + proc.stderr
    texts = [("stdout", proc.stdout), ("stderr", proc.stderr)]
    sources: list[Path | tuple[str, str]] = [state, *texts, *read_outputs(tmp_path, secret, state)]
    if mode == "github":
        sources += [tmp_path / "gh-summary.md", tmp_path / "gh-output.txt"]
        assert "| shop |" in (tmp_path / "gh-summary.md").read_text()
    assert_no_secret(sources, secret)
    if check_site:
        # the secret really was used: the command printed it (to a stream maint keeps) ...
        conf = tmp_path / "site" / "conf.txt"
        assert conf.exists() != fail
        if not fail:
            assert conf.read_text() == f"seed={secret}\n"
    return proc, texts


@pytest.mark.parametrize("mode", ["plain", "json", "github"])
@pytest.mark.parametrize("fail", [False, True], ids=["ok", "failing"])
def test_run_leaks_nothing_anywhere(tmp_path: Path, fail: bool, mode: str) -> None:
    secret = new_secret()
    inv = local_inventory(tmp_path)
    proc, _ = scan_run(tmp_path, secret, inv, fail=fail, mode=mode)
    summary = next((tmp_path / "state" / "runs").glob("*/summary.json"))
    check_result(json.loads(summary.read_text()), secret, fail=fail)
    if mode == "json":
        result = json.loads(proc.stdout.splitlines()[-1])
        assert result["event"] == "result"
        check_result(result, secret, fail=fail)
    elif fail:
        assert "shop: rolled-back at production step boom (command)" in proc.stdout


@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
@pytest.mark.parametrize("command", ["run", "plan", "validate"])
def test_invalid_rendered_secret_is_not_printed(tmp_path: Path, command: str, as_json: bool) -> None:
    secret = new_secret()
    inv = local_inventory(tmp_path)
    pb = invalid_playbook(tmp_path)
    state = tmp_path / "state"
    if command == "validate":
        args = ["validate", str(pb), "-i", str(inv)]
    else:
        args = [command, str(pb), "-i", str(inv), "--state-dir", str(state), *(["--json"] if as_json else [])]
    proc = maint(tmp_path, secret, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "with.mode: site shop: Value error, invalid mode '***'" in proc.stderr
    assert "1 problem found; nothing was run." in proc.stderr
    assert not state.exists()  # nothing ran, no run folder
    assert_no_secret([("stdout", proc.stdout), ("stderr", proc.stderr), tmp_path], secret) > 0


def test_scanner_finds_a_piece_across_a_cut() -> None:
    secret = new_secret()
    cut = ("x" * 30 + secret)[-(len(secret) // 2 + 5) :]
    assert find_leaks([("cut", cut)], secret) == [f"cut: {cut[:8]!r}"]
    assert find_leaks([("clean", "x" * 30 + secret[:7])], secret) == []
    with pytest.raises(AssertionError, match="secret leaked"):
        assert_no_secret([("whole", f"a {secret} b")], secret)


def test_over_ssh_nothing_leaks(tmp_path: Path, ssh_lab: SshLab) -> None:
    secret = new_secret()
    inv = ssh_lab.write_inventory(tmp_path / "inventory.yml", {"shop": 0})
    scan_run(tmp_path, secret, inv, fail=True, mode="plain", check_site=False)
    summary = json.loads(next((tmp_path / "state" / "runs").glob("*/summary.json")).read_text())
    check_result(summary, secret, fail=True)


@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
def test_plan_leaks_nothing(tmp_path: Path, as_json: bool) -> None:
    secret = new_secret()
    inv = local_inventory(tmp_path)
    state = tmp_path / "state"
    pb = playbook(tmp_path, secret, fail=False)
    args = ["plan", str(pb), "-i", str(inv), "--state-dir", str(state), "--diff", *(["--json"] if as_json else [])]
    proc = maint(tmp_path, secret, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outputs = read_outputs(tmp_path, secret, state)
    assert_no_secret([state, ("stdout", proc.stdout), ("stderr", proc.stderr), *outputs], secret)
    assert not (tmp_path / "site").exists()  # plan changed nothing
    summary = json.loads(next(state.glob("runs/*/summary.json")).read_text())
    steps = steps_of(summary)
    assert {k: s["status"] for k, s in steps.items()} == {
        "conf": "would-change",
        "label": "would-change",
        "echo": "would-change",
        "out": "unchanged",
    }
    assert "+seed=***" in steps["conf"]["diff"]
    half = len(secret) // 2
    assert steps["out"]["data"]["stdout"] == "…" + LEAD[: half - 4] + "***" + "0" * (STDOUT_CUT - half)
