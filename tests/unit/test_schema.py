"""``maint schema``: the JSON Schemas accept what the loaders accept and reject what they reject.

Every shipped playbook and every file ``maint init`` scaffolds validates (with the schema
files ``maint init`` wrote, as an editor reads them); templated values are accepted where the
loader accepts them (inside ``with:``), and real mistakes fail at the expected path, in the
schema and in the loader alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from maintkit.errors import PlaybookError
from maintkit.playbook import BUILTIN_DIR, playbook_from_text
from maintkit.schema import TEMPLATE_DEF, playbook_schema, templated
from tests.runs import maint_in_process
from tests.schema_helpers import describe, json_view, schema_errors

SHIPPED = sorted([*BUILTIN_DIR.glob("*.yml"), *(BUILTIN_DIR.parent / "demo").glob("*.yml")])


def playbook(steps: str, head: str = "") -> str:
    """A playbook text with one production stage made of ``steps`` (YAML list items, indented 6)."""
    return f"name: t\n{head}stages:\n  - env: production\n    steps:\n{steps}"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_playbook_validates(path: Path) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert schema_errors("playbook", data) == [], describe("playbook", data)
    playbook_from_text(path.read_text(encoding="utf-8"), str(path))  # and the loader agrees


def test_the_shipped_list_is_complete() -> None:
    names = {p.name for p in SHIPPED}
    assert {"backup.yml", "deploy.yml", "monthly-update.yml", "demo.yml", "setup.yml"} <= names


def test_everything_maint_init_scaffolds_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = maint_in_process("init")
    assert res.exit_code == 0, res.output
    schemas = {
        kind: jsonschema.Draft202012Validator(json.loads((tmp_path / f".maint/schema/{kind}.json").read_text()))
        for kind in ("playbook", "inventory")
    }
    books = sorted((tmp_path / "playbooks").glob("*.yml"))
    assert [p.name for p in books] == sorted(p.name for p in BUILTIN_DIR.glob("*.yml"))
    for path in [*books, tmp_path / "inventory.yml"]:
        kind = "inventory" if path.name == "inventory.yml" else "playbook"
        errors = [
            f"{list(e.absolute_path)}: {e.message}"
            for e in schemas[kind].iter_errors(json_view(yaml.safe_load(path.read_text(encoding="utf-8"))))
        ]
        assert errors == [], path.name


#: (what, playbook text): the loader accepts these, so the schema must
ACCEPTED = [
    ("targets as one name", playbook("      - action: maintenance.disable\n", "targets: all\n")),
    ("targets as a list", playbook("      - action: maintenance.disable\n", "targets: [shop-a, eu-clients]\n")),
    ("a templated integer", playbook('      - {action: backup.prune, with: {keep_last: "{{ vars.keep }}"}}\n')),
    ("a templated list", playbook('      - {action: http.check, with: {paths: "{{ vars.check_paths }}"}}\n')),
    ("a template inside a list", playbook('      - {action: http.check, with: {paths: [/, "{{ vars.p }}"]}}\n')),
    ("a templated nested model", playbook('      - {action: backup.copy, with: {destination: "{{ vars.off }}"}}\n')),
    (
        "a template in a nested model's field",
        playbook(
            "      - action: backup.copy\n        with:\n"
            '          destination: {host: b.example, path: /srv/off, port: "{{ vars.port }}"}\n'
        ),
    ),
    ("a statement template", playbook('      - {action: cms.update, with: {core: "{% if x %}patch{% endif %}"}}\n')),
    ("a template in an enum", playbook('      - {action: cms.update, with: {core: "{{ vars.level }}"}}\n')),
    ("repository as a path", playbook("      - {action: cms.update, with: {repository: /srv/zips}}\n")),
    ("an octal mode number", playbook("      - {action: file.directory, with: {path: /srv/x, mode: 0755}}\n")),
    (
        "notify with a bare on:",
        playbook("      - action: maintenance.disable\n", 'notify:\n  - {url: "x://y", on: [failure]}\n'),
    ),
]


@pytest.mark.parametrize(("what", "text"), ACCEPTED, ids=[a for a, _ in ACCEPTED])
def test_what_the_loader_accepts_the_schema_accepts(what: str, text: str) -> None:
    playbook_from_text(text)
    data = yaml.safe_load(text)
    assert schema_errors("playbook", data) == [], describe("playbook", data)


#: (what, playbook text, the one schema error: path, keyword, the loader's problem field)
REJECTED = [
    (
        "an unknown key",
        playbook("      - action: maintenance.disable\n", "colour: red\n"),
        ((), "additionalProperties"),
        "colour",
    ),
    (
        "an unknown action",
        playbook("      - action: cms.updat\n"),
        (("stages", 0, "steps", 0, "action"), "enum"),
        "stages.0.steps.0.action",
    ),
    (
        "a literal of the wrong type",
        playbook("      - {action: backup.prune, with: {keep_last: five}}\n"),
        (("stages", 0, "steps", 0, "with", "keep_last"), "anyOf"),
        "stages.0.steps.0.with.keep_last",
    ),
    (
        "a value outside an enum",
        playbook("      - {action: cms.update, with: {core: latest}}\n"),
        (("stages", 0, "steps", 0, "with", "core"), "anyOf"),
        "stages.0.steps.0.with.core",
    ),
    (
        "an unknown parameter",
        playbook("      - {action: backup.prune, with: {kep_last: 5}}\n"),
        (("stages", 0, "steps", 0, "with"), "additionalProperties"),
        "stages.0.steps.0.with.kep_last",
    ),
    (
        "a missing required parameter",
        playbook("      - {action: deploy.release, with: {ref: main}}\n"),
        (("stages", 0, "steps", 0, "with"), "required"),
        "stages.0.steps.0.with.repo",
    ),
    (
        "a missing required field of a nested model",
        playbook("      - {action: http.check, with: {flow: [{name: cart}]}}\n"),
        (("stages", 0, "steps", 0, "with", "flow"), "anyOf"),
        "stages.0.steps.0.with.flow.0.path",
    ),
    (
        "a template outside with:",
        playbook("      - action: maintenance.disable\n", 'concurrency: "{{ vars.n }}"\n'),
        (("concurrency",), "type"),
        "concurrency",
    ),
    (
        "targets of the wrong type",
        playbook("      - action: maintenance.disable\n", "targets: 5\n"),
        (("targets",), "anyOf"),
        "targets",
    ),
    (
        "no steps",
        "name: t\nstages:\n  - env: production\n    steps: []\n",
        (("stages", 0, "steps"), "minItems"),
        "stages.0.steps",
    ),
    ("no stages", "name: t\n", ((), "required"), "stages"),
    (
        "a step's unknown on_failure",
        playbook("      - {action: maintenance.disable, on_failure: retry}\n"),
        (("stages", 0, "steps", 0, "on_failure"), "anyOf"),
        "stages.0.steps.0.on_failure",
    ),
    (
        "with: as a template",
        playbook('      - {action: maintenance.disable, with: "{{ vars.w }}"}\n'),
        (("stages", 0, "steps", 0, "with"), "type"),
        "stages.0.steps.0.with",
    ),
]


@pytest.mark.parametrize(("what", "text", "error", "field"), REJECTED, ids=[r[0] for r in REJECTED])
def test_real_mistakes_fail_in_the_schema_and_the_loader(
    what: str, text: str, error: tuple[tuple[str | int, ...], str], field: str
) -> None:
    # without repeats: a step's ``with`` is checked as a mapping twice (the step, the action's parameters)
    assert list(dict.fromkeys(schema_errors("playbook", yaml.safe_load(text)))) == [error]
    with pytest.raises(PlaybookError) as info:
        playbook_from_text(text)
    assert [p.field for p in info.value.problems] == [field]


def test_templated_keeps_annotations_outside_and_leaves_the_root_alone() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 1, "description": "count", "default": 3}},
        "additionalProperties": False,
    }
    assert templated(schema) == {
        "type": "object",
        "properties": {
            "n": {
                "description": "count",
                "default": 3,
                "anyOf": [{"type": "integer", "minimum": 1}, {"$ref": f"#/$defs/{TEMPLATE_DEF}"}],
            }
        },
        "additionalProperties": False,
    }


def test_playbook_schema_names_the_draft_and_every_action() -> None:
    schema = playbook_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "cms.update" in schema["$defs"]["Step"]["properties"]["action"]["enum"]
    assert schema["$defs"]["Params_cms_update.Repository"]["required"] == ["path"]


def test_maint_schema_without_a_kind_says_which_to_pick() -> None:
    res = maint_in_process("schema")
    assert res.exit_code == 2
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert lines[:3] == [
        "Name the kind of file: maint schema KIND [-o FILE]",
        "  playbook   playbooks: playbooks/*.yml",
        "  inventory  the inventory: inventory.yml",
    ]
    assert "  # yaml-language-server: $schema=../.maint/schema/playbook.json    first line of playbooks/*.yml" in lines


@pytest.mark.parametrize(("kind", "title"), [("playbook", "maintkit playbook"), ("inventory", "maintkit inventory")])
def test_maint_schema_kind_prints_and_writes(kind: str, title: str, tmp_path: Path) -> None:
    res = maint_in_process("schema", kind)
    assert res.exit_code == 0
    printed = json.loads(res.stdout)
    assert printed["title"] == title
    out = tmp_path / f"{kind}.json"
    res = maint_in_process("schema", kind, "-o", str(out))
    assert (res.exit_code, res.stdout) == (0, f"wrote {out}\n")
    assert json.loads(out.read_text(encoding="utf-8")) == printed
