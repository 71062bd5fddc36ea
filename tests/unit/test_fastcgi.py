"""The FastCGI records of cache.clear's OPcache client, and the OPcache parameters.

The records are checked byte for byte against the FastCGI 1.0 specification, and decoded by
an independent reader written here from the specification; the lab test
(tests/lab/test_opcache_fastcgi.py) sends them to a real php-fpm.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from maintkit.actions.cache.fastcgi import (
    FastcgiError,
    decode_answer,
    encode_params,
    encode_request,
    record,
    split_cgi,
)
from maintkit.actions.cache.opcache_fcgi import cgi_params
from maintkit.actions.cache.params import CacheClearParams, OpcacheTarget


def _records(data: bytes) -> list[tuple[int, int, int, bytes, bytes]]:
    """(version, type, request id, content, padding) of each record, read per the specification."""
    out = []
    pos = 0
    while pos < len(data):
        version, rtype, rid, length, padding, reserved = struct.unpack(">BBHHBB", data[pos : pos + 8])
        assert reserved == 0
        content = data[pos + 8 : pos + 8 + length]
        pad = data[pos + 8 + length : pos + 8 + length + padding]
        out.append((version, rtype, rid, content, pad))
        pos += 8 + length + padding
    assert pos == len(data)
    return out


def _pairs(stream: bytes) -> dict[str, str]:
    """Name-value pairs of a PARAMS stream, read per the specification (section 3.4)."""

    def length(pos: int) -> tuple[int, int]:
        if stream[pos] >> 7 == 0:
            return stream[pos], pos + 1
        return struct.unpack(">I", stream[pos : pos + 4])[0] & 0x7FFFFFFF, pos + 4

    out, pos = {}, 0
    while pos < len(stream):
        nlen, pos = length(pos)
        vlen, pos = length(pos)
        out[stream[pos : pos + nlen].decode()] = stream[pos + nlen : pos + nlen + vlen].decode()
        pos += nlen + vlen
    return out


def test_one_request_is_begin_params_and_stdin_records() -> None:
    data = encode_request({"SCRIPT_FILENAME": "/x.php", "QUERY_STRING": "reset"}, request_id=1)
    recs = _records(data)
    assert [(r[1], len(r[3])) for r in recs] == [(1, 8), (4, 42), (4, 0), (5, 0)]
    assert all(r[0] == 1 and r[2] == 1 for r in recs)
    assert recs[0][3] == b"\x00\x01\x00\x00\x00\x00\x00\x00"  # RESPONDER, no KEEP_CONN
    assert recs[1][3] == b"\x0f\x06SCRIPT_FILENAME/x.php\x0c\x05QUERY_STRINGreset"
    assert recs[1][4] == b"\0" * 6  # 42 + 6 = 48: padded to a multiple of 8
    assert len(data) % 8 == 0


def test_long_names_and_values_use_four_byte_lengths() -> None:
    value = "v" * 200
    encoded = encode_params({"N": value})
    assert encoded[:5] == b"\x01\x80\x00\x00\xc8"
    assert _pairs(encoded) == {"N": value}


def test_params_longer_than_one_record_are_split() -> None:
    params = {"BIG": "x" * 70000, "SCRIPT_FILENAME": "/y.php"}
    recs = _records(encode_request(params))
    lengths = [(r[1], len(r[3])) for r in recs]
    assert lengths[1] == (4, 65535)
    assert lengths[3] == (4, 0) and lengths[4] == (5, 0)
    assert _pairs(b"".join(r[3] for r in recs if r[1] == 4)) == params


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.dictionaries(
        st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=140),
        st.text(st.characters(blacklist_categories=["Cs"]), max_size=300),
        max_size=8,
    )
)
def test_any_params_read_back_exactly(params: dict[str, str]) -> None:
    recs = _records(encode_request(params, request_id=7))
    assert {r[2] for r in recs} == {7}
    assert _pairs(b"".join(r[3] for r in recs if r[1] == 4)) == params


def _end(app: int = 0, proto: int = 0, rid: int = 1) -> bytes:
    return record(3, struct.pack(">IB3x", app, proto), rid)


def test_answer_collects_stdout_and_stderr_of_its_request() -> None:
    data = (
        record(6, b"Status: 404 Not Found\r\n", 1)
        + record(6, b"x" * 9, 2)  # another request's record is ignored
        + record(7, b"Primary script unknown", 1)
        + record(6, b"\r\nFile not found.\n", 1)
        + record(6, b"", 1)
        + _end(app=0, proto=0)
    )
    answer = decode_answer(data)
    assert answer.stdout == b"Status: 404 Not Found\r\n\r\nFile not found.\n"
    assert answer.stderr == b"Primary script unknown"
    assert (answer.app_status, answer.protocol_status) == (0, 0)
    assert split_cgi(answer.stdout) == ({"status": "404 Not Found"}, b"File not found.\n")


def test_protocol_status_is_read() -> None:
    assert decode_answer(_end(app=255, proto=2)).protocol_status == 2
    assert decode_answer(_end(app=255, proto=2)).app_status == 255


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no answer (the pool closed the connection at once)"),
        (record(6, b"partial", 1), "answer without END_REQUEST (the pool stopped answering)"),
        (record(6, b"partial", 1)[:10], "answer cut inside a record at byte 0"),
        (record(6, b"ok", 1) + b"\x01\x03", "answer cut inside a record header at byte 16"),
        (b"HTTP/1.1 200 OK\r\n\r\n", "not a FastCGI answer (version byte 72 at byte 0)"),
    ],
)
def test_broken_answers_are_named(data: bytes, message: str) -> None:
    with pytest.raises(FastcgiError) as err:
        decode_answer(data)
    assert str(err.value) == message


def test_cgi_params_of_the_reset_script() -> None:
    params = cgi_params("/srv/shop/.maint/.maint-opcache-AbC123.php", "reset")
    assert params["SCRIPT_FILENAME"] == "/srv/shop/.maint/.maint-opcache-AbC123.php"
    assert params["SCRIPT_NAME"] == "/.maint-opcache-AbC123.php"
    assert params["DOCUMENT_ROOT"] == "/srv/shop/.maint"
    assert params["QUERY_STRING"] == "reset"
    assert params["REQUEST_METHOD"] == "GET"


def test_method_defaults_to_fastcgi_when_a_socket_is_given() -> None:
    assert OpcacheTarget(fastcgi="/run/php/php8.2-fpm-shop.sock").resolved_method == "fastcgi"
    assert OpcacheTarget(fastcgi="127.0.0.1:9000").resolved_method == "fastcgi"
    assert OpcacheTarget(service="php8.2-fpm").resolved_method == "reload"
    assert OpcacheTarget(fastcgi="/run/php/x.sock", method="reload").resolved_method == "reload"


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            {"method": "fastcgi"},
            "method `fastcgi` needs `fastcgi:` (the pool's socket, e.g. /run/php/php8.2-fpm.sock)",
        ),
        ({"fastcgi": "php.sock"}, "FastCGI address must be an absolute socket path or HOST:PORT: 'php.sock'"),
        ({"fastcgi": "-x:9000; rm"}, "FastCGI address must be an absolute socket path or HOST:PORT: '-x:9000; rm'"),
        ({"fastcgi": "127.0.0.1:70000"}, "FastCGI address must be an absolute socket path or HOST:PORT"),
        ({"fastcgi": "/run/php/x.sock", "tmpdir": "tmp"}, "tmpdir must be an absolute path without `..`: 'tmp'"),
    ],
)
def test_invalid_opcache_blocks_are_refused(block: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        CacheClearParams.model_validate({"targets": ["opcache"], "opcache": block})
    assert message in str(err.value)
