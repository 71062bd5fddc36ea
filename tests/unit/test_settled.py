"""A stage's fingerprint (what the index remembers of it) and the index's read of the last run's.

* The digest changes with anything the stage will do: a parameter, a step, the path, the
  host; it is the same for the same stage whatever else the site has.
* A known secret rendered into a parameter is masked before hashing: two different secrets
  give the same digest, and the index never holds a digest of one.
* A stage whose steps can never change anything has none (no guess is made for it).
* ``settled_stages`` reads the last record of the playbook on the environment, from the end
  of ``runs.jsonl``, past broken lines and other environments' and playbooks' records.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from maintkit._text import forget_secrets, register_secret
from maintkit.inventory import Inventory
from maintkit.playbook import playbook_from_text
from maintkit.runner import Runner
from maintkit.runner.plan import PlannedStage
from maintkit.runner.settled import fingerprint
from maintkit.state.index import record_runs, settled_stages


def _stage(tmp_path: Path, steps: str, path: str = "/srv/shop", host: str = "web1") -> PlannedStage:
    text = f"name: p\nstages:\n  - env: production\n    steps:\n{steps}"
    inv = Inventory.model_validate(
        {"sites": {"shop": {"environments": {"production": {"host": host, "path": path, "url": "https://x.test"}}}}}
    )
    runner = Runner(playbook_from_text(text), inv, state_dir=tmp_path / "state", check=True)
    [stage] = runner.plan()["shop"]
    return stage


FILE = '      - {action: file.content, with: {path: "{{ env.path }}/a", content: "X"}}\n'


@pytest.fixture
def secrets() -> Iterator[None]:
    yield
    forget_secrets()


def test_the_digest_follows_what_the_stage_does(tmp_path: Path) -> None:
    base = fingerprint(_stage(tmp_path, FILE))
    assert base is not None and len(base) == 32
    assert fingerprint(_stage(tmp_path, FILE)) == base
    others = [
        fingerprint(_stage(tmp_path, FILE.replace('"X"', '"Y"'))),
        fingerprint(_stage(tmp_path, FILE + '      - {action: command, with: {argv: ["true"], unless: ["true"]}}\n')),
        fingerprint(_stage(tmp_path, FILE, path="/srv/other")),
        fingerprint(_stage(tmp_path, FILE, host="web2")),
    ]
    assert base not in others and len(set(others)) == len(others)


def test_a_known_secret_is_masked_before_hashing(tmp_path: Path, secrets: None) -> None:
    first, second = "s3cr3t-number-one", "s3cr3t-number-two"
    plain = fingerprint(_stage(tmp_path, FILE.replace('"X"', f'"{first}"')))
    assert plain != fingerprint(_stage(tmp_path, FILE.replace('"X"', f'"{second}"')))  # not secrets yet
    register_secret(first)
    register_secret(second)
    masked = fingerprint(_stage(tmp_path, FILE.replace('"X"', f'"{first}"')))
    assert masked == fingerprint(_stage(tmp_path, FILE.replace('"X"', f'"{second}"'))) != plain
    assert masked == fingerprint(_stage(tmp_path, FILE.replace('"X"', '"***"')))  # exactly as if masked


def test_a_stage_that_can_change_nothing_has_no_digest(tmp_path: Path) -> None:
    read_only = "      - {action: command, with: {argv: [hostname], read_only: true}}\n"
    assert fingerprint(_stage(tmp_path, read_only)) is None


def test_the_index_gives_the_last_runs_settled_stages(tmp_path: Path) -> None:
    root = tmp_path / "store"
    assert settled_stages(root, "shop", "production", "p") == frozenset()
    record_runs(root, [("shop", "production", "ok")], "p", "r1", settled={("shop", "production"): ["aa", "bb"]})
    record_runs(root, [("shop", "staging", "ok")], "p", "r2", settled={("shop", "staging"): ["cc"]})
    record_runs(root, [("shop", "production", "ok")], "other", "r3", settled={("shop", "production"): ["dd"]})
    runs = root / "index" / "shop" / "runs.jsonl"
    with runs.open("a") as f:
        f.write("{broken\n")
    assert settled_stages(root, "shop", "production", "p") == {"aa", "bb"}
    assert settled_stages(root, "shop", "staging", "p") == {"cc"}
    assert settled_stages(root, "shop", "production", "other") == {"dd"}
    record_runs(root, [("shop", "production", "failed")], "p", "r4")  # settled nothing
    assert settled_stages(root, "shop", "production", "p") == frozenset()
    last: dict[str, Any] = json.loads(runs.read_text().splitlines()[-1])
    assert "settled" not in last and last["run_id"] == "r4"


@pytest.mark.parametrize("tail", [64 * 1024, 150, 1])
def test_a_long_history_is_read_from_its_end(tmp_path: Path, tail: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last record may be in the tail read first, or only in the whole file; a line the
    tail cuts in two is never taken for a record."""
    import maintkit.state.index as index

    monkeypatch.setattr(index, "_TAIL_BYTES", tail)
    root = tmp_path / "store"
    record_runs(root, [("shop", "production", "ok")], "p", "r0", settled={("shop", "production"): ["old"]})
    for i in range(400):  # other playbooks' runs after it: about 60 KB
        record_runs(
            root, [("shop", "production", "ok")], f"other-{i}", f"x{i}", settled={("shop", "production"): ["z"]}
        )
    assert settled_stages(root, "shop", "production", "p") == {"old"}
    record_runs(root, [("shop", "production", "ok")], "p", "r1", settled={("shop", "production"): ["new"]})
    assert settled_stages(root, "shop", "production", "p") == {"new"}
    assert settled_stages(root, "shop", "production", "never") == frozenset()
