"""Each hostile input from the fuzzing report is refused at load time with its exact message.

Every case goes through the real CLI (``maint validate``, and ``plan``/``run`` where the report
said the input used to reach a host): exit 2, ``file:line`` (or a byte offset), no traceback,
quickly, and nothing contacted. The inventory points at a TCP listener owned by the test, so
a connection attempt would be seen.
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from maintkit._yaml import MAX_NODES, Limits, load_yaml
from maintkit.errors import InventoryError, PlaybookError
from maintkit.inventory import load_inventory
from maintkit.playbook import BUILTIN_DIR, load_playbook, playbook_from_text
from tests.runs import maint_in_process

PB = """\
name: t
stages:
  - env: staging
    steps:
      - {id: a, action: command, with: {argv: [echo, a]}}
      - {id: b, action: command, with: {argv: [echo, b]}}
      - {id: c, action: command, with: {argv: [echo, c]}}
  - env: production
    steps:
      - {id: a, action: command, with: {argv: [echo, a]}}
      - {id: b, action: command, with: {argv: [echo, b]}}
"""


def when_playbook(stage: int, step: str, expr: str) -> str:
    """PB with ``when: expr`` on ``step`` of stage ``stage`` (0 or 1)."""
    lines = PB.splitlines(keepends=True)
    first = 4 if stage == 0 else 9
    for n in range(first, len(lines)):
        if lines[n].startswith(f"      - {{id: {step},"):
            lines[n] = lines[n].replace(f"{{id: {step},", f"{{id: {step}, when: {expr!r},", 1)
            return "".join(lines)
    raise AssertionError(step)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield sock
    finally:
        sock.close()


@pytest.fixture
def inventory(tmp_path: Path, listener: socket.socket) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    p = tmp_path / "inventory.yml"
    p.write_text(
        "sites:\n  shop-a:\n    environments:\n"
        f"      staging: {{connection: local, path: {site}}}\n"
        f"      production: {{host: 127.0.0.1, port: {listener.getsockname()[1]}, path: /srv/a, connect_timeout: 2}}\n"
    )
    return p


def maint(*args: str) -> tuple[int, str, float]:
    """``maint ARGS`` in this process (no traceback allowed): exit code, output, CPU seconds taken."""
    res = maint_in_process(*args)
    return res.exit_code, res.output, res.cpu_seconds


def refused(tmp_path: Path, data: bytes | str, inventory: Path, listener: socket.socket) -> str:
    """Write ``data`` as a playbook; validate, plan and run must all refuse it; the validate output."""
    path = tmp_path / "pb.yml"
    path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    outputs = []
    for args in (["validate", str(path), "-i", str(inventory)], ["plan", str(path), "-i", str(inventory)]):
        code, out, elapsed = maint(*args, *([] if args[0] == "validate" else ["--state-dir", str(tmp_path / "s")]))
        assert code == 2, out
        assert "Traceback" not in out
        assert elapsed < 2.0, f"{args[0]} took {elapsed:.2f} s"
        outputs.append(out)
    code, out, _ = maint("run", str(path), "-i", str(inventory), "--state-dir", str(tmp_path / "s"))
    assert code == 2 and out.endswith("nothing was run.\n"), out
    assert select.select([listener], [], [], 0)[0] == [], "the ssh host was contacted"
    assert not (tmp_path / "s").exists() and sorted(os.listdir(tmp_path / "site")) == []
    return outputs[0]


def one_error(out: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, out
    return lines[0].removeprefix("error: ")


# ------------------------------------------------------------------ bytes and encoding
def test_a_byte_that_is_not_utf8_names_its_offset_and_line(
    tmp_path: Path, inventory: Path, listener: socket.socket
) -> None:
    data = PB.encode().replace(b"[echo, c]}}\n  - env: production", b"[echo, \xff]}}\n  - env: production")
    offset = data.index(b"\xff")
    out = refused(tmp_path, data, inventory, listener)
    assert one_error(out) == (
        f"{tmp_path}/pb.yml:7: not valid UTF-8: byte 0xff at byte offset {offset}; save the file as UTF-8"
    )


def test_a_nul_byte_names_its_offset_and_line(tmp_path: Path, inventory: Path, listener: socket.socket) -> None:
    data = PB.encode().replace(b"name: t\n", b"name: t\n\x00", 1)
    out = refused(tmp_path, data, inventory, listener)
    assert one_error(out) == f"{tmp_path}/pb.yml:2: NUL byte at byte offset 8; not a text file"


def test_an_escaped_nul_in_a_string_is_refused_with_its_line(
    tmp_path: Path, inventory: Path, listener: socket.socket
) -> None:
    out = refused(tmp_path, PB.replace("[echo, c]", '[echo, "c\\0"]'), inventory, listener)
    assert one_error(out) == f"{tmp_path}/pb.yml:7: YAML syntax error: NUL character in a string"


def test_an_escaped_lone_surrogate_is_refused_with_its_line(
    tmp_path: Path, inventory: Path, listener: socket.socket
) -> None:
    # this one used to pass validate and then reach the host
    out = refused(tmp_path, PB.replace("[echo, c]", '[echo, "\\ud83d"]'), inventory, listener)
    assert one_error(out) == (
        f"{tmp_path}/pb.yml:7: YAML syntax error: invalid \\u escape: a lone surrogate (\\ud800-\\udfff) "
        "or a code point that is not a character"
    )


def test_a_lone_surrogate_in_text_given_as_a_string_is_refused() -> None:
    with pytest.raises(PlaybookError) as exc:
        playbook_from_text(PB.replace("[echo, c]", "[echo, '\ud83d']"), file="<text>")
    offset = PB.index("c]}}") + 1  # after the opening quote
    assert str(exc.value) == f"<text>:7: not valid UTF-8 at character offset {offset}"


# ------------------------------------------------------------------ structure
def test_an_unhashable_key_is_refused_with_its_line(tmp_path: Path, inventory: Path, listener: socket.socket) -> None:
    out = refused(tmp_path, PB.replace("name: t\n", "name: t\n? [a]\n: 1\n"), inventory, listener)
    assert one_error(out) == f"{tmp_path}/pb.yml:2: YAML syntax error: a mapping key must be a plain value, not a list"


def test_a_mapping_as_key_is_refused_with_its_line(tmp_path: Path, inventory: Path, listener: socket.socket) -> None:
    out = refused(tmp_path, PB.replace("{id: c,", "{{x: 1}: 2, id: c,"), inventory, listener)
    assert (
        one_error(out) == f"{tmp_path}/pb.yml:7: YAML syntax error: a mapping key must be a plain value, not a mapping"
    )


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_deep_nesting_is_refused_without_recursion(
    tmp_path: Path, inventory: Path, listener: socket.socket, depth: int
) -> None:
    text = PB.replace("name: t\n", "name: t\nvars: {x: " + "[" * depth + "]" * depth + "}\n")
    out = refused(tmp_path, text, inventory, listener)
    assert one_error(out) == f"{tmp_path}/pb.yml:2: nested deeper than 64 levels; refusing the file"


def test_nesting_at_the_limit_is_accepted() -> None:
    # the document's mapping is level 1, vars' {x: ...} level 2: 62 brackets make 64 levels
    text = PB.replace("name: t\n", "name: t\nvars: {x: " + "[" * 62 + "]" * 62 + "}\n")
    value, depth = playbook_from_text(text).playbook.vars["x"], 0
    while value:
        value, depth = value[0], depth + 1
    assert depth == 61  # the innermost list is empty
    with pytest.raises(PlaybookError) as exc:
        playbook_from_text(text.replace("[" * 62, "[" * 63).replace("]" * 62, "]" * 63), file="x.yml")
    assert str(exc.value) == "x.yml:2: nested deeper than 64 levels; refusing the file"


def test_the_billion_laughs_is_refused_in_well_under_a_second(
    tmp_path: Path, inventory: Path, listener: socket.socket
) -> None:
    bomb = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 10)
    )
    started = time.process_time()
    out = refused(tmp_path, bomb + PB, inventory, listener)
    assert time.process_time() - started < 3.0  # validate + plan + run together
    assert one_error(out) == (
        f"{tmp_path}/pb.yml:6: more than {MAX_NODES} values (aliases counted expanded); refusing the file"
    )


def test_a_recursive_alias_is_refused(tmp_path: Path, inventory: Path, listener: socket.socket) -> None:
    out = refused(tmp_path, "vars: &r {a: [*r]}\n" + PB, inventory, listener)
    assert one_error(out) == f"{tmp_path}/pb.yml:1: alias *r refers to a collection that contains it"


def test_too_many_aliases_are_refused() -> None:
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * 1001) + "]\n"
    with pytest.raises(PlaybookError) as exc:
        load_yaml(text, "x.yml", PlaybookError)
    assert str(exc.value) == "x.yml:2: more than 1000 aliases (*name); refusing the file"


def test_aliases_and_merge_keys_within_the_limits_still_work() -> None:
    text = "base: &b {user: deploy, port: 22}\none: {<<: *b, port: 2222}\ntwo: *b\n"
    data, _ = load_yaml(text, "x.yml", PlaybookError)
    assert data == {
        "base": {"user": "deploy", "port": 22},
        "one": {"user": "deploy", "port": 2222},
        "two": data["base"],
    }
    with pytest.raises(PlaybookError, match=r"x.yml:2: YAML syntax error: duplicate key 'port' \(first on line 2\)"):
        load_yaml("base: &b {port: 22}\none: {<<: *b, port: 1, port: 2}\n", "x.yml", PlaybookError)


def test_two_documents_are_refused(tmp_path: Path, inventory: Path, listener: socket.socket) -> None:
    out = refused(tmp_path, PB + "---\nname: u\n", inventory, listener)
    assert one_error(out) == f"{tmp_path}/pb.yml:12: more than one YAML document (---); a file holds exactly one"


@pytest.mark.parametrize(
    ("scalar", "message"),
    [
        ("2020-13-45", "invalid timestamp value: month must be in 1..12"),
        ("!!timestamp soon", "invalid timestamp value: 'NoneType' object has no attribute 'groupdict'"),
        ("!!float abc", "invalid float value: could not convert string to float: 'abc'"),
        ("9" * 5000, "invalid int value: Exceeds the limit (4300 digits) for integer string conversion"),
    ],
)
def test_values_yaml_cannot_build_are_refused_with_their_line(scalar: str, message: str) -> None:
    with pytest.raises(PlaybookError) as exc:
        playbook_from_text(PB.replace("name: t\n", f"name: t\nvars: {{v: {scalar}}}\n"), file="x.yml")
    assert str(exc.value).startswith(f"x.yml:2: YAML syntax error: {message}")


# ------------------------------------------------------------------ size
def test_a_5mb_playbook_of_900000_stages_is_refused_at_once(
    tmp_path: Path, inventory: Path, listener: socket.socket
) -> None:
    data = b"name: big\nstages:\n" + b"  - {env: a, steps: [{action: x}]}\n" * 150_000
    assert len(data) > 5_000_000
    out = refused(tmp_path, data, inventory, listener)
    assert out.splitlines()[-2:] == [
        f"error: {tmp_path}/pb.yml: file is larger than the limit of 1048576 bytes; refusing to read it",
        "1 problem found; nothing was run.",
    ]


def test_a_file_under_the_size_limit_with_too_many_values_is_refused_by_count(
    tmp_path: Path, inventory: Path, listener: socket.socket
) -> None:
    data = b"name: big\nstages:\n" + b"  - {env: a, steps: [{action: x}]}\n" * 29_000
    assert len(data) < 1 << 20
    out = refused(tmp_path, data, inventory, listener)
    assert (
        one_error(out)
        == f"{tmp_path}/pb.yml:12502: more than {MAX_NODES} values (aliases counted expanded); refusing the file"
    )


def test_limits_are_configurable_per_call() -> None:
    with pytest.raises(PlaybookError) as exc:
        load_yaml("a: [[1]]\n", "x.yml", PlaybookError, Limits(max_depth=2))
    assert str(exc.value) == "x.yml:1: nested deeper than 2 levels; refusing the file"
    with pytest.raises(PlaybookError) as exc:
        load_yaml("a: 1\nb: 2\n", "x.yml", PlaybookError, Limits(max_nodes=4))
    assert str(exc.value) == "x.yml:2: more than 4 values (aliases counted expanded); refusing the file"
    with pytest.raises(PlaybookError) as exc:
        load_yaml("a: 1\n", "x.yml", PlaybookError, Limits(max_bytes=4))
    assert str(exc.value) == "x.yml: text is larger than the limit of 4 bytes"


# ------------------------------------------------------------------ problems are capped
def test_at_most_20_problems_are_printed_then_a_count(tmp_path: Path, inventory: Path, listener: socket.socket) -> None:
    text = "name: t\nstages:\n" + "".join(f"  - {{env: e{i}, steps: [{{action: nope{i}}}]}}\n" for i in range(30))
    out = refused(tmp_path, text, inventory, listener)
    lines = [line for line in out.splitlines() if not line.startswith("ok: ")]
    assert lines[:20] == [
        f"error: {tmp_path}/pb.yml:{3 + i}: stages.{i}.steps.0.action: unknown action 'nope{i}'; see `maint actions`"
        for i in range(20)
    ]
    assert lines[20:] == ["... and 10 more problems", "30 problems found; nothing was run."]


def test_the_loaders_stop_collecting_after_100_problems(
    tmp_path: Path, inventory: Path, listener: socket.socket
) -> None:
    text = "name: t\nstages:\n" + "".join(f"  - {{env: e{i}, steps: [{{action: nope{i}}}]}}\n" for i in range(5000))
    out = refused(tmp_path, text, inventory, listener)
    assert [line for line in out.splitlines() if not line.startswith("ok: ")][20:] == [
        "... and 80 more problems",
        "100 or more problems found (checking stops after 100); nothing was run.",
    ]


# ------------------------------------------------------------------ when:
@pytest.mark.parametrize(
    ("stage", "step", "expr", "line", "message"),
    [
        (0, "b", "steps.x.changed and and", 6, "expression syntax error: 'and' is a keyword, not a value"),
        (0, "b", "steps.a.changed and (", 6, "expression syntax error: unexpected 'end of template'"),
        (0, "b", "steps.nope.changed", 6, "steps['nope']: no earlier step 'nope' in stage 'staging'"),
        (
            0,
            "b",
            "steps['c'].changed",
            6,
            "steps['c'] is not an earlier step of stage 'staging' (use will_change('c'))",
        ),
        (0, "b", "steps.b.changed", 6, "steps['b'] is this step itself; a condition reads earlier steps"),
        (0, "b", "will_change('a')", 6, "will_change('a'): no later step 'a' in stage 'staging'"),
        (0, "b", "will_change(vars.x)", 6, "will_change takes one step id in quotes, e.g. will_change('update')"),
        (0, "b", "steps.a.chnaged", 6, "a step has no 'chnaged' (a condition can read changed, status)"),
        (0, "b", "stages.staging.c.changed", 6, "stages['staging']['c']: no earlier step 'c' in stage 'staging'"),
        (1, "b", "stages.production2.a.changed", 11, "stages['production2']: no earlier stage 'production2'"),
        (0, "a", "stages.production.a.changed", 5, "stages['production']: no earlier stage 'production'"),
        (1, "a", "stages.staging.z.changed", 10, "stages['staging']['z']: no earlier step 'z' in stage 'staging'"),
        (
            0,
            "b",
            "vars.x and sitee.name",
            6,
            "unknown name 'sitee' (a condition can use env, playbook, run, secrets, site, stages, steps, vars, will_change)",
        ),
        (0, "b", "(" * 40 + "1" + ")" * 40, 6, "expression nested deeper than 32 brackets"),
    ],
)
def test_a_when_that_cannot_work_is_refused_at_its_line(
    tmp_path: Path, inventory: Path, listener: socket.socket, stage: int, step: str, expr: str, line: int, message: str
) -> None:
    out = refused(tmp_path, when_playbook(stage, step, expr), inventory, listener)
    stage_step = f"stages.{stage}.steps.{'abc'.index(step)}.when"
    assert one_error(out) == f"{tmp_path}/pb.yml:{line}: {stage_step}: {message}"


@pytest.mark.parametrize(
    ("stage", "step", "expr"),
    [
        (0, "b", "steps.a.changed"),
        (0, "c", "steps['a'].status == 'changed' and not steps.b.changed"),
        (0, "a", "will_change('c') and vars.x is defined"),
        (0, "b", "steps.c is defined and steps.c.changed"),
        (0, "b", "nothing_known is defined or site.name == 'shop-a'"),
        (1, "a", "stages.staging.c.changed and stages['staging']['a'].status != 'failed'"),
        (1, "b", "stages.production.a.changed or steps.a.changed"),
        (0, "b", "{{ steps.a.changed }}"),
        (0, "b", "run.check or env.name == 'staging' or playbook.name == 't' or range(2) | list"),
    ],
)
def test_a_when_that_works_at_run_time_is_accepted(stage: int, step: str, expr: str) -> None:
    pb = playbook_from_text(when_playbook(stage, step, expr)).playbook
    assert pb.stages[stage].steps["abc".index(step)].when == expr


def test_the_shipped_playbooks_still_validate() -> None:
    for path in sorted(BUILTIN_DIR.glob("*.yml")):
        assert load_playbook(path).name == path.stem


# ------------------------------------------------------------------ inventories
def test_inventories_go_through_the_same_limits(tmp_path: Path) -> None:
    p = tmp_path / "inventory.yml"
    cases = [
        (b"sites: {a: \xc3\x28}\n", f"{p}:1: not valid UTF-8: byte 0xc3 at byte offset 11; save the file as UTF-8"),
        (b"sites:\n  ? [a]\n  : 1\n", f"{p}:2: YAML syntax error: a mapping key must be a plain value, not a list"),
        (b"x: " + b"[" * 500 + b"]" * 500 + b"\n", f"{p}:1: nested deeper than 64 levels; refusing the file"),
        (b"sites: {}\n---\nsites: {}\n", f"{p}:2: more than one YAML document (---); a file holds exactly one"),
        (b"#" * (1 << 20) + b"\n", f"{p}: file is larger than the limit of 1048576 bytes; refusing to read it"),
    ]
    for data, expected in cases:
        p.write_bytes(data)
        with pytest.raises(InventoryError) as exc:
            load_inventory(p)
        assert str(exc.value) == expected


def test_an_inventory_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "inventory.yml"
    os.mkfifo(fifo)
    with pytest.raises(InventoryError) as exc:
        load_inventory(fifo)
    assert str(exc.value) == f"{fifo}: cannot read file: not a regular file"
    code, out, _ = maint("inventory", "-i", "/dev/zero")
    assert (code, out) == (
        2,
        "error: /dev/zero: cannot read file: not a regular file\n1 problem found; nothing was run.\n",
    )


def test_a_long_chain_of_nested_groups_loads_without_recursion(tmp_path: Path) -> None:
    n = 3000
    groups = "".join(f"  g{i}: [g{i + 1}]\n" for i in range(n)) + f"  g{n}: [shop]\n"
    p = tmp_path / "inventory.yml"
    p.write_text("sites:\n  shop:\n    environments:\n      production: {path: /srv/shop}\ngroups:\n" + groups)
    started = time.process_time()
    inv = load_inventory(p)
    assert time.process_time() - started < 2.0
    assert inv.groups["g0"] == ["shop"] and inv.groups[f"g{n}"] == ["shop"]
    assert [s.name for s in inv.resolve_targets(["g0"])] == ["shop"]


def test_groups_on_a_cycle_still_resolve(tmp_path: Path) -> None:
    p = tmp_path / "inventory.yml"
    sites = "".join(f"  s{i}:\n    environments:\n      production: {{path: /srv/s{i}}}\n" for i in range(4))
    p.write_text(f"sites:\n{sites}groups:\n  a: [b, s1]\n  b: [a, s2]\n  c: [a, s3]\n  d: [s0]\n")
    inv = load_inventory(p)
    assert {g: sorted(members) for g, members in inv.groups.items()} == {
        "a": ["s1", "s2"],
        "b": ["s1", "s2"],
        "c": ["s1", "s2", "s3"],
        "d": ["s0"],
    }
    assert all(len(set(members)) == len(members) for members in inv.groups.values())


def test_groups_that_expand_to_too_much_are_refused(tmp_path: Path) -> None:
    # 150 groups, each holding the groups after it and 200 sites: about 2.2 million copies
    p = tmp_path / "inventory.yml"
    sites = "".join(f"  s{i}:\n    environments:\n      production: {{path: /s}}\n" for i in range(200))
    all_sites = ", ".join(f"s{i}" for i in range(200))
    groups = "".join(
        f"  g{i}: [{', '.join(f'g{j}' for j in range(i + 1, 150))}{', ' if i < 149 else ''}{all_sites}]\n"
        for i in range(150)
    )
    p.write_text(f"sites:\n{sites}groups:\n{groups}")
    started = time.process_time()
    with pytest.raises(InventoryError, match=r"groups nest too much: expanding them takes more than 1000000 steps"):
        load_inventory(p)
    assert time.process_time() - started < 2.0


# ------------------------------------------------------------------ templates
def test_too_many_templated_values_are_refused_at_once() -> None:
    items = ", ".join(f"'{{{{ env.path }}}}/{i}'" for i in range(5000))
    text = PB.replace("[echo, c]", f"[{items}]")
    started = time.process_time()
    with pytest.raises(PlaybookError) as exc:
        playbook_from_text(text, file="x.yml")
    assert time.process_time() - started < 1.0
    assert str(exc.value) == (
        "x.yml:7: stages.0.steps.2: more than 1000 templated values and conditions in one playbook; refusing it"
    )


def test_a_template_that_fails_only_when_compiled_is_refused_at_load(
    tmp_path: Path, inventory: Path, listener: socket.socket
) -> None:
    chained = "{{ 1" + "|string" * 3000 + " }}"
    out = refused(tmp_path, PB.replace("[echo, c]", f"[echo, '{chained}']"), inventory, listener)
    assert one_error(out) == f"{tmp_path}/pb.yml:7: stages.0.steps.2.with.argv.1: template nested too deeply"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ 1 / 0 }}", "division by zero"),
        ("{{ 10.0 ** 1000 }}", "(34, 'Numerical result out of range')"),
        ("{{ 'abc' | truncate(-1) }}", "expected length >= 3, got -1"),
        ("{{ range(10 ** 9) | list }}", "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000)."),
    ],
)
def test_a_template_that_fails_when_rendered_is_a_problem_not_a_traceback(
    tmp_path: Path, inventory: Path, listener: socket.socket, template: str, message: str
) -> None:
    out = refused(tmp_path, PB.replace("[echo, c]", f'[echo, "{template}"]'), inventory, listener)
    assert one_error(out) == (
        f"{tmp_path}/pb.yml:7: stages.0.steps.2.with: site shop-a: template {template!r}: {message}"
    )
