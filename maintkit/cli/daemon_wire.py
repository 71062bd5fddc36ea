"""The start-up daemon's messages, and what a caller and the daemon must share (``maint daemon``,
docs/cli.md#maint-daemon). Standard library only.

A message is a 4-byte big-endian length, then that many bytes of JSON (at most
:data:`MAX_MESSAGE`). The descriptors a message carries (``SCM_RIGHTS``) ride on its header.
Where the socket is: :mod:`maintkit.cli.daemon_path` (its names are re-exported here).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from maintkit import __version__
from maintkit.cli.daemon_path import ENV_SWITCH, daemon_dir, package_dir, socket_path, switched_off

__all__ = [
    "ENV_SWITCH",
    "MAX_MESSAGE",
    "WireError",
    "build",
    "daemon_dir",
    "decode",
    "package_dir",
    "peer_uid",
    "receive",
    "send",
    "socket_path",
    "switched_off",
    "take",
]

#: the largest message either side accepts (a request carries the caller's environment)
MAX_MESSAGE = 4 << 20
_HEADER = struct.Struct("!I")


class WireError(Exception):
    """A message that is cut short, too large or not a JSON object."""


def build() -> dict[str, Any]:
    """What a daemon and its caller must share: the interpreter and its environment (``sys.prefix``),
    the package's folder and version, and how Python started (``sys.path``, ``sys.flags``, warning
    options, the file system's encoding): a command is handed over only when all are equal."""
    return {
        "python": os.path.realpath(sys.executable), "prefix": sys.prefix, "package": package_dir(),
        "version": __version__, "path": list(sys.path), "flags": list(sys.flags),
        "warnoptions": list(sys.warnoptions), "fsencoding": sys.getfilesystemencoding(),
    }  # fmt: skip


def peer_uid(sock: socket.socket) -> int:
    """The user id of the process at the other end of a Unix socket (``SO_PEERCRED``)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def send(sock: socket.socket, message: Mapping[str, Any], fds: Sequence[int] = ()) -> None:
    """Send one message, with ``fds`` passed along (``SCM_RIGHTS``)."""
    body = json.dumps(message, separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_MESSAGE:
        raise WireError(f"message of {len(body)} bytes (the limit is {MAX_MESSAGE})")
    header = _HEADER.pack(len(body))
    if fds:
        sent = socket.send_fds(sock, [header], list(fds))
        sock.sendall(header[sent:] + body)
    else:
        sock.sendall(header + body)


def receive(sock: socket.socket, maxfds: int = 0) -> tuple[dict[str, Any], list[int]]:
    """Receive one message and the descriptors that came with it (the caller closes them)."""
    fds: list[int] = []
    if maxfds:
        head, fds, _flags, _addr = socket.recv_fds(sock, _HEADER.size, maxfds)
    else:
        head = sock.recv(_HEADER.size)
    try:
        head += _exactly(sock, _HEADER.size - len(head)) if head else b""
        if len(head) != _HEADER.size:
            raise WireError("the other side closed the connection")
        return decode(_exactly(sock, _size(head))), fds
    except BaseException:
        _close(fds)
        raise


def take(buffer: bytearray) -> dict[str, Any] | None:
    """The first whole message in ``buffer`` (removed from it), or None while it is incomplete."""
    if len(buffer) < _HEADER.size:
        return None
    size = _size(bytes(buffer[: _HEADER.size]))
    if len(buffer) < _HEADER.size + size:
        return None
    body = bytes(buffer[_HEADER.size : _HEADER.size + size])
    del buffer[: _HEADER.size + size]
    return decode(body)


def decode(body: bytes) -> dict[str, Any]:
    """A message's body: a JSON object, or WireError (also for JSON nested too deep to parse)."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise WireError(f"a message is not JSON: {type(exc).__name__}") from None
    if not isinstance(message, dict):
        raise WireError("a message is not a JSON object")
    return message


def _size(head: bytes) -> int:
    (size,) = _HEADER.unpack(head)
    if size > MAX_MESSAGE:
        raise WireError(f"message of {size} bytes (the limit is {MAX_MESSAGE})")
    return int(size)


def _exactly(sock: socket.socket, size: int) -> bytes:
    """Read exactly ``size`` bytes (WireError when the connection ends first)."""
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 16))
        if not chunk:
            raise WireError("the other side closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _close(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
