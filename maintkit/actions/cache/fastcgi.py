"""A small FastCGI client: the records of one request, and the reading of a pool's answer.

Used by ``cache.clear``'s OPcache target when the host has no ``cgi-fcgi``: the request is
built here on the controller, sent to the php-fpm pool's socket through a relay on the host
(the PHP CLI copies stdin to the socket and the socket to stdout), and the answer is read
here. Only what one ``RESPONDER`` request needs is implemented (FastCGI 1.0, no multiplexing,
no keep-alive): ``BEGIN_REQUEST``, ``PARAMS``, ``STDIN`` out; ``STDOUT``, ``STDERR`` and
``END_REQUEST`` in.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

VERSION = 1
BEGIN_REQUEST = 1
ABORT_REQUEST = 2
END_REQUEST = 3
PARAMS = 4
STDIN = 5
STDOUT = 6
STDERR = 7
RESPONDER = 1
#: the largest content one record carries
MAX_CONTENT = 65535
#: protocol statuses of END_REQUEST
PROTOCOL_STATUS = {0: "request complete", 1: "cannot multiplex", 2: "overloaded", 3: "unknown role"}

_HEADER = struct.Struct(">BBHHBx")


class FastcgiError(ValueError):
    """The bytes are not a complete, well-formed FastCGI answer."""


def record(rtype: int, content: bytes, request_id: int = 1) -> bytes:
    """One record: the 8-byte header, the content, and padding to a multiple of 8 bytes."""
    if len(content) > MAX_CONTENT:
        raise ValueError(f"record content of {len(content)} bytes (at most {MAX_CONTENT})")
    padding = -len(content) % 8
    return _HEADER.pack(VERSION, rtype, request_id, len(content), padding) + content + b"\0" * padding


def _length(n: int) -> bytes:
    """A name or value length: one byte below 128, else four bytes with the high bit set."""
    if n < 128:
        return bytes([n])
    if n > 0x7FFFFFFF:
        raise ValueError(f"parameter of {n} bytes is too long")
    return struct.pack(">I", n | 0x80000000)


def encode_params(params: Mapping[str, str]) -> bytes:
    """The name-value pairs of a PARAMS stream (names and values as UTF-8)."""
    out = bytearray()
    for name, value in params.items():
        key, val = name.encode(), value.encode()
        out += _length(len(key)) + _length(len(val)) + key + val
    return bytes(out)


def _stream(rtype: int, data: bytes, request_id: int) -> bytes:
    """A stream as records of at most MAX_CONTENT bytes, closed by an empty record."""
    chunks = [data[i : i + MAX_CONTENT] for i in range(0, len(data), MAX_CONTENT)]
    return b"".join(record(rtype, c, request_id) for c in [*chunks, b""])


def encode_request(params: Mapping[str, str], body: bytes = b"", request_id: int = 1) -> bytes:
    """Every record of one RESPONDER request (the connection closes after the answer)."""
    begin = record(BEGIN_REQUEST, struct.pack(">HB5x", RESPONDER, 0), request_id)
    return begin + _stream(PARAMS, encode_params(params), request_id) + _stream(STDIN, body, request_id)


@dataclass(frozen=True)
class Answer:
    """What the pool answered to one request."""

    stdout: bytes
    stderr: bytes
    app_status: int
    protocol_status: int


def iter_records(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """``(type, request id, content)`` of each record in ``data``; FastcgiError when one is cut or malformed."""
    pos = 0
    while pos < len(data):
        if len(data) - pos < _HEADER.size:
            raise FastcgiError(f"answer cut inside a record header at byte {pos}")
        version, rtype, request_id, length, padding = _HEADER.unpack_from(data, pos)
        if version != VERSION:
            raise FastcgiError(f"not a FastCGI answer (version byte {version} at byte {pos})")
        start = pos + _HEADER.size
        if start + length + padding > len(data):
            raise FastcgiError(f"answer cut inside a record at byte {pos}")
        yield rtype, request_id, data[start : start + length]
        pos = start + length + padding


def decode_answer(data: bytes, request_id: int = 1) -> Answer:
    """The STDOUT, STDERR and END_REQUEST of ``request_id`` in a pool's answer."""
    out, err = bytearray(), bytearray()
    for rtype, rid, content in iter_records(data):
        if rid != request_id:
            continue
        if rtype == STDOUT:
            out += content
        elif rtype == STDERR:
            err += content
        elif rtype == END_REQUEST:
            if len(content) < 5:
                raise FastcgiError("END_REQUEST record too short")
            app_status, protocol_status = struct.unpack_from(">IB", content)
            return Answer(bytes(out), bytes(err), app_status, protocol_status)
    if not data:
        raise FastcgiError("no answer (the pool closed the connection at once)")
    raise FastcgiError("answer without END_REQUEST (the pool stopped answering)")


def split_cgi(stdout: bytes) -> tuple[dict[str, str], bytes]:
    """A CGI response's headers (lower-case names) and body."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        head, found, body = stdout.partition(sep)
        if found:
            break
    else:
        return {}, stdout
    headers: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").splitlines():
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return headers, body


__all__ = [
    "MAX_CONTENT",
    "PROTOCOL_STATUS",
    "Answer",
    "FastcgiError",
    "decode_answer",
    "encode_params",
    "encode_request",
    "iter_records",
    "record",
    "split_cgi",
]
