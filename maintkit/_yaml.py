"""Safe YAML loading that remembers the line of every field, for precise error messages."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from maintkit.errors import Problem

LinePath = tuple[str | int, ...]


class SourceMap:
    """Maps field paths (``("sites", "shop-a", "environments")``) to 1-based lines of one file."""

    def __init__(self, file: str, lines: dict[LinePath, int]) -> None:
        self.file = file
        self.lines = lines

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of the longest known prefix of ``path``."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), None)

    def problem(self, path: Sequence[str | int], message: str) -> Problem:
        """A Problem at ``path`` with the line filled in."""
        return Problem(self.file, self.line_of(path), ".".join(str(p) for p in path), message)


def _walk(node: yaml.Node, path: LinePath, out: dict[LinePath, int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.start_mark.line)
            out[(*path, name)] = key.start_mark.line + 1
            _walk(value, (*path, name), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*path, i)] = item.start_mark.line + 1
            _walk(item, (*path, i), out)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (a common silent mistake)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {seen[key]})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str, file: str, error_cls: type[Exception]) -> tuple[Any, SourceMap]:
    """Parse ``text`` safely; return the data and its SourceMap.

    Raises ``error_cls`` (a ConfigError subclass) with file and line on a syntax error.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise error_cls(Problem(file, line, "", f"YAML syntax error: {exc.problem or exc}")) from None
    except yaml.YAMLError as exc:
        raise error_cls(Problem(file, None, "", f"YAML error: {exc}")) from None
    lines: dict[LinePath, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return data, SourceMap(file, lines)


def read_yaml_file(path: Path, error_cls: type[Exception]) -> tuple[Any, SourceMap]:
    """Read and parse a YAML file, turning I/O errors into ``error_cls``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error_cls(Problem(str(path), None, "", f"cannot read file: {exc.strerror or exc}")) from None
    return load_yaml(text, str(path), error_cls)


def pydantic_problems(exc: Any, source: SourceMap, prefix: Sequence[str | int] = ()) -> list[Problem]:
    """Turn a pydantic ValidationError into Problems with lines."""
    problems = []
    for err in exc.errors():
        loc = [*prefix, *[p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]]
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "field required"
        problems.append(source.problem(loc, msg))
    return problems
