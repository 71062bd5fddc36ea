"""Access log and PHP error log parsing of ``logs.scan``, and the framing of its scan output."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maintkit.actions.watch.logformat import (
    MAX_DISTINCT_PATHS,
    OTHER_PATHS,
    Entry,
    Tally,
    compile_format,
    parse_line,
    php_fatal,
    request_path,
)
from maintkit.actions.watch.logs import LogFile, LogsScanParams, Part, Scanned, outcome, parse_output, whole_lines

COMBINED = '203.0.113.9 - bob [10/Oct/2024:13:55:36 +0000] "GET /cart?coupon=X HTTP/1.1" 500 612 "-" "curl/8.0"'
TIMED = COMBINED + " 1.250 0.004"
APACHE_ESCAPED = '1.2.3.4 - - [10/Oct/2024:13:55:36 +0200] "GET /a\\"b HTTP/1.0" 404 - "-" "x \\"y\\""'


def test_combined_line() -> None:
    fmt = compile_format("combined")
    assert parse_line(fmt, COMBINED) == Entry(500, "/cart", None)
    assert not fmt.timed


def test_common_format_without_referer_and_agent() -> None:
    line = '10.0.0.1 - - [10/Oct/2024:13:55:36 +0000] "POST /checkout/ HTTP/1.1" 302 0'
    assert parse_line(compile_format("combined"), line) == Entry(302, "/checkout/", None)


def test_apache_escaped_quotes() -> None:
    assert parse_line(compile_format("combined"), APACHE_ESCAPED) == Entry(404, '/a\\"b', None)


def test_nginx_timed_line() -> None:
    fmt = compile_format("nginx_timed")
    assert fmt.timed
    assert parse_line(fmt, TIMED) == Entry(500, "/cart", 1250.0)
    assert parse_line(fmt, COMBINED) is None  # no request time: not this format


def test_custom_format_with_microseconds() -> None:
    fmt = compile_format(r"(?P<status>\d{3}) (?P<request_us>\d+) (?P<path>\S+)")
    assert fmt.name == "custom" and fmt.timed
    assert parse_line(fmt, "503 2500000 /api/x?token=abc") == Entry(503, "/api/x", 2500.0)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("(?P<status>", "neither combined, nginx_timed nor a valid regular expression"),
        (r"(?P<path>\S+)", "needs a named group 'status'"),
        (r"(?P<status>\d+)", "needs a named group 'path' or 'request'"),
    ],
)
def test_bad_custom_formats_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compile_format(spec)
    with pytest.raises(ValueError, match=message):
        LogsScanParams(access_log="a.log", format=spec)


@pytest.mark.parametrize(
    ("request_line", "path"),
    [("GET /a/b?c=d#e HTTP/1.1", "/a/b"), ("-", "-"), ("\\x16\\x03\\x01", "-"), ("GET ?x HTTP/1.1", "-")],
)
def test_request_path(request_line: str, path: str) -> None:
    assert request_path(request_line) == path


def test_tally_counts_rates_slow_and_top_failing() -> None:
    fmt = compile_format("nginx_timed")
    tally = Tally(slow_ms=1000)
    lines = [TIMED] * 3 + [TIMED.replace("/cart", "/x").replace(" 500 ", " 404 ")] * 3
    lines += [TIMED.replace(" 500 ", " 200 ").replace(" 1.250", " 0.100")] * 4 + ["garbage", ""]
    for line in lines:
        tally.add_line(fmt, line)
    assert (tally.requests, tally.status_5xx, tally.status_4xx, tally.slow, tally.unparsed) == (10, 3, 3, 6, 1)
    assert tally.rate(tally.status_5xx) == 0.3
    assert tally.top_failing() == [["/cart", 3], ["/x", 3]]


def test_distinct_failing_paths_are_bounded() -> None:
    tally = Tally()
    for i in range(MAX_DISTINCT_PATHS + 5):
        tally.add(Entry(404, f"/p{i}", None))
    assert len(tally.failing) == MAX_DISTINCT_PATHS + 1
    assert tally.failing[OTHER_PATHS] == 5


@pytest.mark.parametrize(
    ("line", "where"),
    [
        (
            "[10-Mar-2024 12:00:00 UTC] PHP Fatal error:  Uncaught Error: Call to undefined function foo() "
            "in /srv/shop/wp-content/plugins/pay/pay.php:12",
            "/srv/shop/wp-content/plugins/pay/pay.php:12",
        ),
        (
            "[10-Mar-2024 12:00:00 UTC] PHP Fatal error:  Cannot redeclare f() (previously declared in "
            "/a.php:2) in /b.php on line 5",
            "/b.php:5",
        ),
        (
            '[10-Mar-2024 12:00:00] WARNING: [pool www] child 12 said into stderr: "PHP Parse error:  syntax '
            'error, unexpected end of file in /srv/x.php on line 9"',
            "/srv/x.php:9",
        ),
        ("PHP Fatal error:  Allowed memory size exhausted", "unknown file"),
    ],
)
def test_php_fatal_lines(line: str, where: str) -> None:
    fatal = php_fatal(line)
    assert fatal is not None and fatal.where == where


def test_php_warnings_are_not_fatal() -> None:
    assert php_fatal("[10-Mar-2024 12:00:00 UTC] PHP Warning:  Undefined variable $x in /a.php on line 3") is None


# ----------------------------------------------------------------------------- hostile lines
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.text(max_size=400),
    st.sampled_from(["combined", "nginx_timed", r"(?P<status>\S+) (?P<request_ms>\S+) (?P<path>.*)"]),
)
def test_hostile_lines_never_crash_the_parsers(line: str, spec: str) -> None:
    fmt = compile_format(spec)
    tally = Tally(slow_ms=1)
    tally.add_line(fmt, line)
    assert tally.requests + tally.unparsed == (1 if line.strip() else 0)
    entry = parse_line(fmt, line)
    if entry is not None:
        assert len(entry.path) <= 300 and (entry.ms is None or entry.ms >= 0)
    php_fatal(line)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.text(alphabet=st.characters(blacklist_characters='"\n'), max_size=60),
    st.integers(min_value=0, max_value=999),
    st.text(alphabet=st.characters(blacklist_characters='"\\\n'), max_size=60),
    st.text(max_size=200),
)
def test_hostile_fields_of_a_well_formed_line(path: str, status: int, agent: str, tail: str) -> None:
    request = f"GET {path} HTTP/1.1".replace("\\", "\\\\")
    line = f'1.2.3.4 - - [t] "{request}" {status:03d} 5 "-" "{agent}"{tail}'
    entry = parse_line(compile_format("combined"), line)
    assert entry is not None and entry.status == status


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_scan_output_framing_survives_any_log_bytes(data: bytes) -> None:
    marker = "@@logs-0123456789abcdef"
    out = (
        f"{marker} stat 0 11 {len(data)} - -\n{marker} part 0 cur 0 {len(data)} 0\n".encode()
        + data
        + f"\n{marker} end\n".encode()
    )
    scanned = parse_output(out, marker)
    assert scanned[0].current == ("11", len(data)) and scanned[0].rotated is None
    assert [p.data for p in scanned[0].parts] == [data]


# ----------------------------------------------------------------------------- offsets
def test_whole_lines() -> None:
    assert whole_lines(b"a\nb\npartial", capped=False) == 4
    assert whole_lines(b"no newline", capped=False) == 0
    assert whole_lines(b"no newline", capped=True) == 10


LOG = LogFile("/srv/log", "access")


def test_outcome_keeps_a_partial_line_for_the_next_scan() -> None:
    got = outcome(
        LOG,
        {"inode": "7", "offset": 10, "size": 10},
        Scanned(("7", 19), None, [Part("cur", 10, 9, False, b"a\nb\npart")]),
    )
    assert got.lines == ["a", "b"] and got.state == {"inode": "7", "offset": 14, "size": 19}


def test_outcome_after_rotation_reads_the_rest_of_the_old_file_then_the_new() -> None:
    parts = [Part("rot", 10, 6, False, b"old1\nx"), Part("cur", 0, 4, False, b"new\n")]
    got = outcome(LOG, {"inode": "7", "offset": 10, "size": 10}, Scanned(("8", 4), ("7", 16), parts))
    assert got.lines == ["old1", "x", "new"]
    assert got.state == {"inode": "8", "offset": 4, "size": 4}
    assert got.notes == ["/srv/log: rotated (rest of the rotated file read first)"]


def test_outcome_capped_inside_the_rotated_file_stays_on_it() -> None:
    parts = [Part("rot", 10, 6, True, b"old1\nol"), Part("cur", 0, 0, True, b"")]
    got = outcome(LOG, {"inode": "7", "offset": 10, "size": 10}, Scanned(("8", 4), ("7", 99), parts))
    assert got.lines == ["old1"] and got.state == {"inode": "7", "offset": 15, "size": 4} and got.capped


def test_outcome_first_scan_at_the_end_and_missing_log() -> None:
    first = outcome(LOG, None, Scanned(("7", 500), None, []))
    assert first.lines == [] and first.state == {"inode": "7", "offset": 500, "size": 500}
    missing = outcome(LOG, {"inode": "7", "offset": 3, "size": 3}, Scanned(None, None, []))
    assert missing.state == {"inode": "7", "offset": 3, "size": 3} and missing.notes == ["/srv/log: not found"]
