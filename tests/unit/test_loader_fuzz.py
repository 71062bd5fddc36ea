"""Deterministic fuzz of the loaders: hostile playbooks and inventories never crash, never hang
and never contact a host.

Mutations of the shipped playbooks (``maintkit/playbooks/*.yml``) and of an inventory, run
through the real CLI in-process (``validate``, ``plan`` and ``run``). The inventory points at a
TCP listener this test owns (so any connection attempt is seen) and at a local site directory
(so any change is seen). Every case that is invalid by construction must exit 2 naming
``file:line`` (or a byte offset), print at most 20 problem lines and no traceback, and contact
nothing. Mutations that may or may not stay valid (truncations, removed or retyped keys) are
decided by ``validate``; whenever it refuses one, ``plan`` and ``run`` must refuse it the same way.
"""

from __future__ import annotations

import random
import re
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from maintkit.cli.main import cli
from maintkit.playbook import BUILTIN_DIR

SEED = 20240611
PLAYBOOKS = sorted(BUILTIN_DIR.glob("*.yml"))
#: the CPU time one CLI invocation may take on hostile input (CPU time, not the wall clock:
#: other processes on a shared machine cannot stretch it)
MAX_CASE_SECONDS = 3.0

INVENTORY = """\
defaults: {{user: deploy, port: {port}, connect_timeout: 2, command_timeout: 5}}
sites:
  shop-a:
    platform: wordpress
    vars: {{maintenance: true, cache_targets: [opcache]}}
    environments:
      staging: {{connection: local, path: {local}, url: "http://127.0.0.1:9/"}}
      production: {{host: 127.0.0.1, path: /srv/shop-a, url: "http://127.0.0.1:9/"}}
groups:
  eu: [shop-a]
"""


@dataclass
class Case:
    """One fuzz input: which file is hostile, its bytes, and whether it is invalid by construction."""

    kind: str
    target: str  # "playbook" or "inventory"
    data: bytes
    invalid: bool  # True: must be refused; False: validate decides


@dataclass
class Lab:
    """Where a case runs: a listener standing in for the SSH host and a local site directory."""

    root: Path
    listener: socket.socket
    local: Path

    def inventory_text(self) -> str:
        """The valid inventory, pointing at this lab."""
        return INVENTORY.format(port=self.listener.getsockname()[1], local=self.local)

    def contacted(self) -> list[str]:
        """What was touched: a pending connection on the listener, the site directory, a run folder."""
        touched = []
        readable, _, _ = select.select([self.listener], [], [], 0)
        if readable:
            conn, _ = self.listener.accept()
            conn.close()
            touched.append("tcp connection to the ssh host")
        if sorted(p.name for p in self.local.iterdir()) != ["index.php"]:
            touched.append(f"local site changed: {sorted(p.name for p in self.local.iterdir())}")
        if (self.local / "index.php").read_text() != "<?php echo 'ok';\n":
            touched.append("local index.php changed")
        if (self.root / "state").exists():
            touched.append("a run folder was created")
        return touched


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("fuzz")
    local = root / "site-local"
    local.mkdir()
    (local / "index.php").write_text("<?php echo 'ok';\n")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield Lab(root, listener, local)
    finally:
        listener.close()


# ----------------------------------------------------------------------------------- mutations
def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path of a parsed document, except inside free-form ``vars`` and ``with``."""
    out: list[tuple[Any, ...]] = []
    if isinstance(data, dict):
        for k, v in data.items():
            out.append((*prefix, k))
            if k not in ("vars", "with"):
                out.extend(_paths(v, (*prefix, k)))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _parent(data: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        data = data[key]
    return data


def _dump(data: Any) -> bytes:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode()


def _insert(rng: random.Random, text: bytes, blob: bytes) -> bytes:
    at = rng.randrange(len(text))
    return text[:at] + blob + text[at:]


def _bomb(levels: int) -> str:
    lines = ["bomb0: &b0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"bomb{i}: &b{i} [" + ", ".join([f"*b{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


BAD_WHEN = [
    "steps.x.changed and and",
    "steps.nope.changed",
    "steps['nope'].changed",
    "will_change('nope')",
    "will_change()",
    "stages.nowhere.update.changed",
    "vars.maintenance and (",
    "steps.{first}.chnaged",
    "unknown_name",
    "{{ vars.a }} and {{ vars.b }}",
    "vars.x ==",
    "(" * 40 + "vars.x" + ")" * 40,
]


def _playbook_cases(rng: random.Random, path: Path) -> list[Case]:
    text = path.read_bytes()
    data = yaml.safe_load(text)
    cases: list[Case] = []
    for _ in range(10):
        cases.append(Case("truncation", "playbook", text[: rng.randrange(1, len(text))], invalid=False))
    for key in ("name", "stages"):
        cases.append(Case(f"removed {key}", "playbook", _dump({k: v for k, v in data.items() if k != key}), True))
    for field in ("action", "env"):
        d = yaml.safe_load(text)
        si = rng.randrange(len(d["stages"]))
        target = d["stages"][si] if field == "env" else rng.choice(d["stages"][si]["steps"])
        del target[field]
        cases.append(Case(f"removed {field}", "playbook", _dump(d), True))
    paths = _paths(data)
    for _ in range(5):
        d = yaml.safe_load(text)
        p = rng.choice(paths)
        del _parent(d, p)[p[-1]]
        cases.append(Case("removed key", "playbook", _dump(d), invalid=False))
    for _ in range(5):
        d = yaml.safe_load(text)
        p = rng.choice(paths)
        _parent(d, p)[p[-1]] = rng.choice([[1, 2], {"a": {"b": 1}}, 3.5, None, True, "x" * 50])
        cases.append(Case("wrong type", "playbook", _dump(d), invalid=False))
    for key, value in (("name", ["a"]), ("stages", "x"), ("concurrency", "many"), ("on_failure", {"a": 1})):
        d = yaml.safe_load(text)
        d[key] = value
        cases.append(Case(f"wrong type {key}", "playbook", _dump(d), True))
    for blob in (b"\xff", b"\xc3\x28", b"\xed\xa0\xbd", b"\xe2\x82", b"\x80abc"):
        cases.append(Case("non-utf8", "playbook", _insert(rng, text, blob), True))
    cases.append(Case("nul", "playbook", _insert(rng, text, b"\x00"), True))
    cases.append(Case("nul", "playbook", text.replace(b"\n", b"\n\x00", 1), True))
    n = rng.choice([65, 200, 1000, 5000])
    cases.append(
        Case(
            "deep nesting",
            "playbook",
            text.replace(b"stages:", b"vars: " + b"[" * n + b"]" * n + b"\nstages:", 1),
            True,
        )
    )
    deep_map = b"vars: " + b"{a: " * 70 + b"1" + b"}" * 70 + b"\n"
    cases.append(Case("deep nesting", "playbook", deep_map + text, True))
    cases.append(Case("alias bomb", "playbook", _bomb(rng.choice([6, 9, 12])).encode() + text, True))
    cases.append(Case("recursive alias", "playbook", b"vars: &r {a: [*r]}\n" + text, True))
    cases.append(Case("unhashable key", "playbook", b"? [a, b]\n: 1\n" + text, True))
    cases.append(Case("unhashable key", "playbook", text.replace(b"stages:", b"{[x]: 1}: 2\nstages:", 1), True))
    cases.append(Case("lone surrogate", "playbook", text.replace(b"name: ", b'name: "\\ud83d"\nx: ', 1), True))
    cases.append(Case("lone surrogate", "playbook", text + b'vars: {"\\udc00": 1}\n', True))
    cases.append(Case("two documents", "playbook", text + b"---\nname: again\n", True))
    for scalar in (
        b"2020-13-45",
        b"9" * 5000,
        b"!!float abc",
        b"!unknown x",
        b"!!timestamp x",
        b"!!bool maybe",
        b"!!int abc",
    ):
        cases.append(
            Case("bad scalar", "playbook", text.replace(b"stages:", b"vars: {v: " + scalar + b"}\nstages:", 1), True)
        )
    cases.extend(_when_cases(rng, text, data))
    return cases


def _when_cases(rng: random.Random, text: bytes, data: Any) -> list[Case]:
    cases = []
    for expr in rng.sample(BAD_WHEN, 4):
        d = yaml.safe_load(text)
        stage = rng.choice(d["stages"])
        step = rng.choice(stage["steps"])
        step["when"] = expr.format(first=stage["steps"][0].get("id", stage["steps"][0]["action"]))
        if "{first}" in expr and step is stage["steps"][0]:
            step["when"] = "steps.itself.changed"
        cases.append(Case("bad when", "playbook", _dump(d), True))
    return cases


def _inventory_cases(rng: random.Random, lab: Lab) -> list[Case]:
    text = lab.inventory_text().encode()
    data = yaml.safe_load(text)
    cases: list[Case] = []
    for _ in range(12):
        cut = text[: rng.randrange(1, len(text))]
        cases.append(Case("truncation", "inventory", cut, invalid=False))
    cases.append(Case("removed sites", "inventory", _dump({k: v for k, v in data.items() if k != "sites"}), True))
    paths = _paths(data)
    for _ in range(8):
        d = yaml.safe_load(text)
        p = rng.choice(paths)
        del _parent(d, p)[p[-1]]
        cases.append(Case("removed key", "inventory", _dump(d), invalid=False))
    for _ in range(8):
        d = yaml.safe_load(text)
        p = rng.choice(paths)
        _parent(d, p)[p[-1]] = rng.choice([[1, 2], {"a": 1}, 3.5, None, "x"])
        cases.append(Case("wrong type", "inventory", _dump(d), invalid=False))
    for value in ("many", 0, 70000, [22]):
        d = yaml.safe_load(text)
        d["defaults"]["port"] = value
        cases.append(Case("wrong type port", "inventory", _dump(d), True))
    for blob in (b"\xff", b"\xed\xa0\x80", b"\xc0\xaf"):
        cases.append(Case("non-utf8", "inventory", _insert(rng, text, blob), True))
    cases.append(Case("nul", "inventory", _insert(rng, text, b"\x00"), True))
    cases.append(
        Case(
            "deep nesting",
            "inventory",
            text.replace(b"groups:", b"x: " + b"[" * 3000 + b"]" * 3000 + b"\ngroups:"),
            True,
        )
    )
    cases.append(Case("alias bomb", "inventory", _bomb(9).encode() + text, True))
    cases.append(Case("unhashable key", "inventory", text.replace(b"  eu:", b"  ? {a: 1}\n  : [shop-a]\n  eu:"), True))
    cases.append(Case("lone surrogate", "inventory", text.replace(b"  eu:", b'  "\\ud800": [shop-a]\n  eu:'), True))
    cases.append(Case("two documents", "inventory", text + b"---\n" + text, True))
    cases.append(Case("unknown member", "inventory", text.replace(b"eu: [shop-a]", b"eu: [shop-a, nope]"), True))
    return cases


def _big_cases(lab: Lab) -> list[Case]:
    stages = b"name: big\nstages:\n" + b"  - {env: production, steps: [{action: command}]}\n" * 100_000
    inv = lab.inventory_text().encode()
    return [
        Case("big file", "playbook", stages, True),  # 5 MB, 100,000 stages
        Case("big file", "playbook", PLAYBOOKS[0].read_bytes() + b"#" * (1 << 20), True),
        Case("many values", "playbook", b"name: many\nvars: [" + b"1," * 200_000 + b"1]\nstages: []\n", True),
        Case(
            "many problems",
            "playbook",
            b"name: p\nstages:\n" + b"  - {env: production, steps: [{action: nope}]}\n" * 500,
            True,
        ),
        Case("big file", "inventory", inv + b"#" * (1 << 20), True),
    ]


def all_cases(lab: Lab) -> list[Case]:
    rng = random.Random(SEED)
    cases = [c for p in PLAYBOOKS for c in _playbook_cases(rng, p)]
    return cases + _inventory_cases(rng, lab) + _big_cases(lab)


# ----------------------------------------------------------------------------------- checks
ERROR_LINE = re.compile(r"^error: ", re.M)


def _invoke(args: list[str]) -> tuple[int, str, float]:
    started = time.process_time()
    result = CliRunner().invoke(cli, args, catch_exceptions=True)
    elapsed = time.process_time() - started
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args}: {type(result.exception).__name__}: {result.exception}\n{result.output}")
    return result.exit_code, result.output, elapsed


def _assert_refused(where: str, files: list[Path], code: int, out: str, elapsed: float) -> None:
    assert code == 2, f"{where}: exit {code}\n{out[:2000]}"
    assert "Traceback" not in out, f"{where}\n{out[:2000]}"
    errors = ERROR_LINE.findall(out)
    assert 1 <= len(errors) <= 20, f"{where}: {len(errors)} problem lines\n{out[:2000]}"
    names = "|".join(re.escape(str(f)) for f in files)
    located = re.compile(rf"^error: ({names})(:\d+: |: .*(byte offset|larger than the limit))", re.M)
    assert located.search(out), f"{where}: no {files}:line in\n{out[:2000]}"
    assert elapsed < MAX_CASE_SECONDS, f"{where}: took {elapsed:.1f} s"


def _check_case(lab: Lab, case: Case, n: int, good_playbook: Path, good_inventory: Path) -> bool:
    """Run one case through validate, plan and run; True when it was refused."""
    hostile = lab.root / f"case{n}.yml"
    hostile.write_bytes(case.data)
    pb, inv = (hostile, good_inventory) if case.target == "playbook" else (good_playbook, hostile)
    where = f"case {n} ({case.kind}, {case.target})"
    # a mutation that is invalid by construction is reported in the hostile file; one that only
    # happens to be invalid may surface in the other file (an inventory without `production`)
    named = [hostile] if case.invalid else [pb, inv]
    code, out, elapsed = _invoke(["validate", str(pb), "-i", str(inv)])
    assert "Traceback" not in out, f"{where}\n{out}"
    assert not lab.contacted(), f"{where}: validate contacted {lab.contacted()}"
    if code == 0:
        assert not case.invalid, f"{where}: validate accepted it\n{out}"
        assert f"ok: {pb}" in out and f"ok: {inv}" in out, f"{where}\n{out}"
        return False
    _assert_refused(f"{where} validate", named, code, out, elapsed)
    state = lab.root / "state"
    for command in (["plan"], ["run", "--yes"]):
        code, out, elapsed = _invoke([*command, str(pb), "-i", str(inv), "--state-dir", str(state)])
        _assert_refused(f"{where} {command[0]}", named, code, out, elapsed)
        assert out.rstrip().endswith("nothing was run."), f"{where}\n{out[-500:]}"
        assert lab.contacted() == [], f"{where} {command[0]}: {lab.contacted()}"
    return True


def test_hostile_playbooks_and_inventories_are_refused_without_contacting_anything(lab: Lab) -> None:
    good_inventory = lab.root / "inventory.yml"
    good_inventory.write_text(lab.inventory_text())
    good_playbook = BUILTIN_DIR / "clear-cache.yml"
    code, out, _ = _invoke(["validate", str(good_playbook), "-i", str(good_inventory)])
    assert code == 0, out  # the baseline is valid: every refusal below comes from the mutation
    cases = all_cases(lab)
    assert len(cases) >= 250
    started = time.process_time()
    refused: dict[str, int] = {}
    for n, case in enumerate(cases):
        if _check_case(lab, case, n, good_playbook, good_inventory):
            refused[case.kind] = refused.get(case.kind, 0) + 1
    assert time.process_time() - started < 90
    # the undecided mutations mostly break the file too (a truncation may still be valid)
    assert refused["truncation"] >= 40 and refused["wrong type"] >= 20 and refused["removed key"] >= 15, refused
