"""Bad playbooks and inventories give one clear message per problem with file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from maintkit.errors import InventoryError, PlaybookError
from maintkit.inventory import load_inventory
from maintkit.playbook import load_playbook, playbook_from_text

INV = """\
defaults: {user: deploy}
sites:
  shop-a:
    platform: wordpress
    vars: {x: 1}
    environments:
      staging: {host: s.example, path: /srv/a-staging, url: https://s.example}
      production: {host: p.example, path: /srv/a, url: https://a.example}
  shop-b:
    environments:
      production: {host: p.example, path: /srv/b, port: 2222, become: true}
groups:
  eu: [shop-a]
  all-eu: [eu, shop-b]
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_inventory_loads_and_inherits_defaults(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, "inventory.yml", INV))
    a = inv.sites["shop-a"].environments["staging"]
    assert (a.user, a.port, a.platform, a.name, a.host_key_policy) == ("deploy", 22, "wordpress", "staging", "strict")
    b = inv.sites["shop-b"].environments["production"]
    assert (b.port, b.become, b.platform) == (2222, True, "generic")
    assert inv.groups["all-eu"] == ["shop-a", "shop-b"]
    assert [s.name for s in inv.resolve_targets(["eu"])] == ["shop-a"]
    assert [s.name for s in inv.resolve_targets("all")] == ["shop-a", "shop-b"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            INV.replace("path: /srv/b,", "path: /srv/b, colour: red,"),
            ":11: sites.shop-b.environments.production.colour: unknown field",
        ),
        (INV.replace("port: 2222", "port: many"), ":11: sites.shop-b.environments.production.port:"),
        (INV.replace("[eu, shop-b]", "[eu, shop-z]"), ":14: groups.all-eu.1: unknown site 'shop-z'"),
        (
            INV.replace("path: /srv/a,", "path: srv/a,"),
            ":8: sites.shop-a.environments.production: Value error, path must be absolute",
        ),
        (INV.replace("  shop-b:\n", "  shop-a:\n"), ":9: YAML syntax error: duplicate key 'shop-a' (first on line 3)"),
        ("sites: [oops", ":1: YAML syntax error"),
    ],
)
def test_inventory_errors_name_file_line_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, "inventory.yml", text)
    with pytest.raises(InventoryError) as exc:
        load_inventory(path)
    assert f"{path}{expected}" in str(exc.value)


PB = """\
name: t
stages:
  - env: staging
    steps:
      - {action: file.directory, with: {path: /tmp/x, mode: "0755"}}
      - {id: cfg, action: file.content, with: {path: "{{ env.path }}/a.txt", content: hi}}
"""


def test_playbook_loads_with_ids() -> None:
    pb = playbook_from_text(PB).playbook
    assert [s.id for s in pb.stages[0].steps] == ["file.directory", "cfg"]
    assert pb.targets == ["all"] and pb.on_failure == "rollback"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            PB.replace("file.directory", "file.directry"),
            ":5: stages.0.steps.0.action: unknown action 'file.directry' (did you mean 'file.directory'?)",
        ),
        (PB.replace('mode: "0755"', 'mode: "0999"'), ":5: stages.0.steps.0.with.mode:"),
        (PB.replace("content: hi", "content: hi, colour: red"), ":6: stages.0.steps.1.with.colour: unknown parameter"),
        (PB.replace("content: hi", "mode: '0644'"), ":6: stages.0.steps.1.with.content: parameter required"),
        (PB.replace("name: t", "name: t\nconcurency: 3"), ":2: concurency: unknown field"),
        (PB.replace("{{ env.path }}", "{{ env.path "), ":6: stages.0.steps.1.with.path: template syntax error"),
        (
            PB + "  - env: staging\n    steps: [{action: command, with: {argv: [true]}}]\n",
            ":7: stages.1.env: environment 'staging' has two stages",
        ),
        (
            PB.replace("- env: staging", "- env: production\n    promote: staging"),
            ":4: stages.0.promote: promote names 'staging'",
        ),
    ],
)
def test_playbook_errors_name_file_line_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, "pb.yml", text)
    with pytest.raises(PlaybookError) as exc:
        load_playbook(path)
    assert f"{path}{expected}" in str(exc.value), str(exc.value)


def test_every_problem_is_reported_once(tmp_path: Path) -> None:
    text = PB.replace("file.directory", "nope.one").replace("file.content", "nope.two")
    with pytest.raises(PlaybookError) as exc:
        load_playbook(write(tmp_path, "pb.yml", text))
    assert len(exc.value.problems) == 2


def test_github_action_key_and_known_hosts_fill_in_what_the_inventory_leaves_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from maintkit.runner import default_transport_factory

    monkeypatch.setenv("MAINT_SSH_KEY_FILE", str(tmp_path / "ci_key"))
    monkeypatch.setenv("MAINT_KNOWN_HOSTS", str(tmp_path / "ci_known"))
    inv = load_inventory(write(tmp_path, "inventory.yml", INV))
    plain = default_transport_factory(inv.sites["shop-a"].environments["staging"])
    assert plain.key_filename == str(tmp_path / "ci_key")  # type: ignore[attr-defined]
    assert plain.known_hosts == [str(tmp_path / "ci_known")]  # type: ignore[attr-defined]
    inv.sites["shop-b"].environments["production"].key_file = "/keys/own"
    own = default_transport_factory(inv.sites["shop-b"].environments["production"])
    assert own.key_filename == "/keys/own"  # type: ignore[attr-defined]
