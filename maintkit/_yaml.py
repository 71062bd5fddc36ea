"""Safe YAML loading that remembers the line of every field, for precise error messages.

Every playbook and inventory goes through :func:`read_yaml_file` / :func:`load_yaml`, which
refuse hostile input quickly and with a ``file:line`` Problem instead of a traceback:

- files larger than :data:`MAX_FILE_BYTES`, NUL bytes and bytes that are not UTF-8 (the
  Problem names the byte offset and its line);
- nesting deeper than :data:`MAX_DEPTH`, more than :data:`MAX_ALIASES` aliases, and documents
  with more than :data:`MAX_NODES` values once aliases are expanded (the "billion laughs");
  these are checked on the parser's event stream, before anything is built, so deep or
  recursive input cannot exhaust the stack or the memory;
- mapping keys that are lists or mappings, duplicate keys, more than one document, strings
  that cannot be encoded as UTF-8 (an escaped lone surrogate such as ``"\\ud83d"``) or hold
  a NUL character, and values the YAML constructors cannot build (``2020-13-45``, an
  integer of 5,000 digits).

The limits are module constants; pass a :class:`Limits` to change them for one call.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from maintkit.errors import Problem

LinePath = tuple[str | int, ...]

#: Largest playbook or inventory file read, in bytes (1 MiB).
MAX_FILE_BYTES = 1 << 20
#: Deepest nesting of mappings and sequences.
MAX_DEPTH = 64
#: Most values (scalars, mappings, sequences) in one document, aliases counted as expanded.
MAX_NODES = 100_000
#: Most aliases (``*name``) in one document.
MAX_ALIASES = 1_000
#: Loaders stop collecting problems after this many.
MAX_PROBLEMS = 100


@dataclass(frozen=True)
class Limits:
    """Size limits of one YAML document (defaults: the module constants)."""

    max_bytes: int = MAX_FILE_BYTES
    max_depth: int = MAX_DEPTH
    max_nodes: int = MAX_NODES
    max_aliases: int = MAX_ALIASES


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
        return Problem(self.file, self.line_of(path), printable(".".join(str(p) for p in path)), message)


def printable(text: str, limit: int = 200) -> str:
    """``text`` with control characters escaped and cut to ``limit`` characters (for messages)."""
    if len(text) > limit:
        text = text[:limit] + "..."
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _line_at(data: bytes | str, offset: int) -> int:
    if isinstance(data, bytes):
        return data.count(b"\n", 0, offset) + 1
    return data.count("\n", 0, offset) + 1


def decode_text(data: bytes, file: str, error_cls: type[Exception], limits: Limits | None = None) -> str:
    """Decode file contents as strict UTF-8; refuse big files, NUL bytes and invalid bytes."""
    limits = limits or Limits()
    if len(data) > limits.max_bytes:
        raise error_cls(
            Problem(file, None, "", f"file is larger than the limit of {limits.max_bytes} bytes; refusing to read it")
        )
    nul = data.find(b"\x00")
    if nul >= 0:
        raise error_cls(Problem(file, _line_at(data, nul), "", f"NUL byte at byte offset {nul}; not a text file"))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 1].hex()
        msg = f"not valid UTF-8: byte 0x{bad} at byte offset {exc.start}; save the file as UTF-8"
        raise error_cls(Problem(file, _line_at(data, exc.start), "", msg)) from None


def _scan(loader: Any, file: str, limits: Limits) -> Problem | None:
    """Walk the event stream once, without building anything; a Problem if a limit is exceeded."""
    depth = docs = aliases = total = 0
    stack: list[list[Any]] = []  # open collections: [anchor, expanded size]
    sizes: dict[str, int] = {}
    while loader.check_event():
        ev = loader.get_event()
        line = ev.start_mark.line + 1
        size = 0
        if isinstance(ev, yaml.DocumentStartEvent):
            docs += 1
            if docs > 1:
                return Problem(file, line, "", "more than one YAML document (---); a file holds exactly one")
        elif isinstance(ev, yaml.ScalarEvent):
            size = 1
            if ev.anchor is not None:
                sizes[ev.anchor] = 1
        elif isinstance(ev, yaml.AliasEvent):
            aliases += 1
            if aliases > limits.max_aliases:
                return Problem(file, line, "", f"more than {limits.max_aliases} aliases (*name); refusing the file")
            if ev.anchor not in sizes and any(f[0] == ev.anchor for f in stack):
                return Problem(file, line, "", f"alias *{ev.anchor} refers to a collection that contains it")
            size = sizes.get(ev.anchor or "", 1)
        elif isinstance(ev, yaml.CollectionStartEvent):
            depth += 1
            if depth > limits.max_depth:
                return Problem(file, line, "", f"nested deeper than {limits.max_depth} levels; refusing the file")
            if ev.anchor is not None:
                sizes.pop(ev.anchor, None)  # a redefinition is "open" until it ends
            stack.append([ev.anchor, 1])
            total += 1
        elif isinstance(ev, yaml.CollectionEndEvent):
            depth -= 1
            anchor, count = stack.pop()
            if anchor is not None:
                sizes[anchor] = count
            if stack:
                stack[-1][1] += count
        if size:
            total += size
            if stack:
                stack[-1][1] += size
        if total > limits.max_nodes:
            return Problem(
                file, line, "", f"more than {limits.max_nodes} values (aliases counted expanded); refusing the file"
            )
    return None


def _walk(root: yaml.Node, out: dict[LinePath, int]) -> None:
    """Record the line of every path (iteratively; the scan bounded depth and size)."""
    todo: list[tuple[yaml.Node, LinePath]] = [(root, ())]
    while todo:
        node, path = todo.pop()
        out.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else str(key.start_mark.line)
                out[(*path, name)] = key.start_mark.line + 1
                todo.append((value, (*path, name)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                out[(*path, i)] = item.start_mark.line + 1
                todo.append((item, (*path, i)))


_MERGE_TAG = "tag:yaml.org,2002:merge"


# libyaml parses about 20 times faster; PyYAML without it still gives the same results
if TYPE_CHECKING:
    _SafeLoader = yaml.CSafeLoader
else:
    _SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeLoader):
    """Safe loader (libyaml) that refuses duplicate and non-scalar keys, strings that are not
    UTF-8 or hold NUL, and turns constructor crashes into marked errors."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """Build one value; a Python error becomes a ConstructorError at the node."""
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # a constructor bug on odd input (!!timestamp x) is an input problem
            msg = f"invalid {node.tag.rsplit(':', 1)[-1]} value: {printable(str(exc), 120)}"
            raise yaml.constructor.ConstructorError(None, None, msg, node.start_mark) from None

    def construct_scalar(self, node: yaml.ScalarNode) -> Any:  # type: ignore[override]
        """A scalar's text, refusing NUL characters and lone surrogates."""
        value = super().construct_scalar(node)
        if isinstance(value, str):
            if "\x00" in value:
                raise yaml.constructor.ConstructorError(None, None, "NUL character in a string", node.start_mark)
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                msg = f"string is not valid UTF-8 (lone surrogate {value[exc.start]!r})"
                raise yaml.constructor.ConstructorError(None, None, msg, node.start_mark) from None
        return value


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue
        if not isinstance(key_node, yaml.ScalarNode):
            kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
            raise yaml.constructor.ConstructorError(
                None, None, f"a mapping key must be a plain value, not a {kind}", key_node.start_mark
            )
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {printable(repr(key))} (first on line {seen[key]})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _syntax_problem(exc: yaml.YAMLError, text: str, file: str) -> Problem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        # libyaml puts "end of stream" on the line after the last one
        line = min(mark.line + 1, text.count("\n") + 1) if mark is not None else None
        what = exc.problem or exc.context or str(exc)
        if "maximum nesting depth" in what:  # libyaml >= 0.2.5 stops deep nesting itself
            return Problem(file, line, "", f"nested deeper than {MAX_DEPTH} levels; refusing the file")
        if what == "found invalid Unicode character escape code":  # libyaml's words for "\\ud83d"
            what = "invalid \\u escape: a lone surrogate (\\ud800-\\udfff) or a code point that is not a character"
        return Problem(file, line, "", f"YAML syntax error: {printable(what)}")
    if isinstance(exc, yaml.reader.ReaderError):
        offset = exc.position  # libyaml counts bytes of the UTF-8 text
        return Problem(
            file,
            _line_at(text.encode("utf-8"), offset),
            "",
            f"YAML syntax error: unacceptable character #x{exc.character:04x} at byte offset {offset}: {exc.reason}",
        )
    return Problem(file, None, "", f"YAML error: {printable(str(exc))}")


def load_yaml(text: str, file: str, error_cls: type[Exception], limits: Limits | None = None) -> tuple[Any, SourceMap]:
    """Parse ``text`` safely; return the data and its SourceMap.

    Raises ``error_cls`` (a ConfigError subclass) with file and line on a syntax error or
    when a limit is exceeded (see the module docstring).
    """
    limits = limits or Limits()
    if len(text) > limits.max_bytes:
        raise error_cls(Problem(file, None, "", f"text is larger than the limit of {limits.max_bytes} bytes"))
    if "\x00" in text:
        off = text.index("\x00")
        raise error_cls(Problem(file, _line_at(text, off), "", f"NUL character at character offset {off}"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        line = _line_at(text, exc.start)
        raise error_cls(Problem(file, line, "", f"not valid UTF-8 at character offset {exc.start}")) from None
    node, data = _parse(text, file, error_cls, limits)
    lines: dict[LinePath, int] = {}
    if node is not None:
        _walk(node, lines)
    return data, SourceMap(file, lines)


def _parse(text: str, file: str, error_cls: type[Exception], limits: Limits) -> tuple[Any, Any]:
    """Scan the events under the limits, then compose and construct."""
    try:
        scanner = _UniqueKeyLoader(text)
        try:
            problem = _scan(scanner, file, limits)
        finally:
            scanner.dispose()
        if problem is not None:
            raise error_cls(problem)
        loader = _UniqueKeyLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise error_cls(_syntax_problem(exc, text, file)) from None
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        raise error_cls(Problem(file, None, "", f"YAML error: {printable(str(exc) or type(exc).__name__)}")) from None
    return node, data


def read_bytes(path: Path, error_cls: type[Exception], limits: Limits | None = None) -> bytes:
    """Read a regular file, at most ``max_bytes`` + 1 bytes (never blocks on a FIFO)."""
    limits = limits or Limits()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise error_cls(Problem(str(path), None, "", f"cannot read file: {exc.strerror or exc}")) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error_cls(Problem(str(path), None, "", "cannot read file: not a regular file"))
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limits.max_bytes + 1)
    except OSError as exc:
        raise error_cls(Problem(str(path), None, "", f"cannot read file: {exc.strerror or exc}")) from None
    finally:
        os.close(fd)


def read_yaml_text(path: Path, error_cls: type[Exception], limits: Limits | None = None) -> tuple[Any, SourceMap, str]:
    """Read, decode and parse a YAML file under the limits; return data, SourceMap and the text."""
    text = decode_text(read_bytes(path, error_cls, limits), str(path), error_cls, limits)
    data, source = load_yaml(text, str(path), error_cls, limits)
    return data, source, text


def read_yaml_file(path: Path, error_cls: type[Exception], limits: Limits | None = None) -> tuple[Any, SourceMap]:
    """Read and parse a YAML file, turning I/O, encoding and limit problems into ``error_cls``."""
    data, source, _ = read_yaml_text(path, error_cls, limits)
    return data, source


def pydantic_problems(exc: Any, source: SourceMap, prefix: Sequence[str | int] = ()) -> list[Problem]:
    """Turn a pydantic ValidationError into Problems with lines (at most :data:`MAX_PROBLEMS`)."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = [*prefix, *[p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]]
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "field required"
        problems.append(source.problem(loc, printable(msg, 300)))
        if len(problems) >= MAX_PROBLEMS:
            break
    return problems
