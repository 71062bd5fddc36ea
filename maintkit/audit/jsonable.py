"""JSON shaping: plain JSON data out of whatever a caller put into an event or a summary."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime
from enum import Enum
from pathlib import Path, PurePath
from typing import Any

from maintkit import _fs
from maintkit.audit.redact import MASK, is_secret_type

__all__ = ["clean_str", "jsonable", "write_json_atomic"]


def jsonable(obj: Any) -> Any:
    """Plain JSON data: str keys, lists, finite floats; SecretStr -> ``***``; unknown -> str()."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return clean_str(obj)
    if type(obj) is dict:  # the common case, before the slower checks below
        return _mapping(obj)
    if isinstance(obj, Enum):
        return jsonable(obj.value)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else str(obj)
    if is_secret_type(obj):
        return MASK
    if isinstance(obj, Mapping):
        return _mapping(obj)
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return sorted((jsonable(v) for v in obj), key=repr)
    return _jsonable_other(obj)


def _mapping(obj: Mapping[Any, Any]) -> dict[str, Any]:
    return {clean_str(k if isinstance(k, str) else str(jsonable(k))): jsonable(v) for k, v in obj.items()}


def _jsonable_other(obj: Any) -> Any:
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, bytes | bytearray):
        return clean_str(bytes(obj).decode("utf-8", "backslashreplace"))
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return jsonable(to_dict())
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return jsonable(dump(mode="json"))
    return clean_str(str(obj))


def clean_str(s: str) -> str:
    """A plain ``str`` that encodes as UTF-8 (lone surrogates become U+FFFD)."""
    s = str.__str__(s)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        s = s.encode("utf-8", "replace").decode("utf-8")
    return s


def write_json_atomic(path: Path, obj: Any, mode: int = 0o600, *, make_parents: bool = False) -> None:
    """Write ``obj``, made plain JSON data by :func:`jsonable`, atomically as indented, key-sorted JSON.

    The write itself is :func:`maintkit._fs.write_json_atomic`.
    """
    _fs.write_json_atomic(path, jsonable(obj), mode, make_parents=make_parents)
