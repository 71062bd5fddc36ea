"""Probe parsers against recorded host output: one JSON file per case.

``tests/unit/probes/<ProbeClass>/<case>.json`` holds the probe (``module:Class``), its
arguments, what the host printed (``stdout``, ``exit_code``) and the parsed value the probe
must return (dataclasses as objects, sets as sorted lists, tuples as lists, datetimes as ISO
text). Every probe of the package has at least one case, and probes live only in
``maintkit/probes/``.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import json
import pkgutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import maintkit.probes
from maintkit.probes import Probe, RawOutput

HERE = Path(__file__).parent
ROOT = HERE.parents[2] / "maintkit"
CASES = sorted(HERE.glob("*/*.json"))


def plain(value: Any) -> Any:
    """A parsed value as JSON-comparable data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def load_probe(spec: str) -> type[Probe[Any]]:
    module, _, name = spec.partition(":")
    cls = getattr(importlib.import_module(module), name)
    assert isinstance(cls, type) and issubclass(cls, Probe), spec
    return cls


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.stem}" for c in CASES])
def test_probe_parses_recorded_output(case: Path) -> None:
    data = json.loads(case.read_text(encoding="utf-8"))
    cls = load_probe(data["probe"])
    assert cls.__name__ == case.parent.name, "the case folder is named after the probe class"
    probe = cls(**data.get("args", {}))
    script = probe.script()
    assert isinstance(script, str) and script.strip()
    for fragment in data.get("script_contains", []):
        assert fragment in script
    parsed = probe.parse(RawOutput(data["stdout"], data.get("exit_code", 0)))
    assert plain(parsed) == data["expected"]


def _package_probes() -> dict[str, type[Probe[Any]]]:
    found: dict[str, type[Probe[Any]]] = {}
    for info in pkgutil.walk_packages(maintkit.probes.__path__, "maintkit.probes."):
        importlib.import_module(info.name)
    stack: list[type[Any]] = [Probe]
    while stack:
        for sub in stack.pop().__subclasses__():
            stack.append(sub)
            if sub.__module__.startswith("maintkit.probes"):
                found[sub.__name__] = sub
    return found


def test_every_probe_has_recorded_cases() -> None:
    missing = sorted(name for name in _package_probes() if not list((HERE / name).glob("*.json")))
    assert missing == []


def _probe_classes_outside_probes() -> list[str]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.is_relative_to(ROOT / "probes"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b) for b in node.bases]
                if any(b == "Probe" or b.startswith("Probe[") for b in bases):
                    out.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name}")
    return out


def test_probes_live_only_in_the_probes_package() -> None:
    assert _probe_classes_outside_probes() == []
