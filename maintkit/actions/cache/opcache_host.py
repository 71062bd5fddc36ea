"""What runs on the host for the FastCGI OPcache reset: the PHP reset script, and the one shell
that writes it, sends its requests through ``cgi-fcgi`` and removes it, with the reading of
that shell's framed output.

The script decides for the shell: each answer ends with a line ``MAINTKIT-OPCACHE-NEXT WORD``
(after a reset request ``go RESTARTS PENDING``, ``again`` or ``stop``; after a status request
``done`` or ``wait``). The shell asks for the reset again while the word is ``again``, then for
the status (with the ``before`` restarts and pending in the query string) while it is ``wait``,
together at most ``ceil(settle / 0.1)`` times with ``sleep 0.1`` between two requests, and
always removes the file it created. Every request's stdout and stderr come back framed by a
random marker (:func:`~maintkit.transport.base.output_marker`), so the controller reads every
answer as if it had sent each request itself.
"""

from __future__ import annotations

import math
import posixpath
from dataclasses import dataclass
from typing import Literal

from maintkit._text import tail as text_tail
from maintkit.actions.cache.base import TargetFailed
from maintkit.results import CommandResult
from maintkit.transport.base import quote

MARKER = "MAINTKIT-OPCACHE "
#: the line that tells the shell what to do next (see the module's docstring)
NEXT = "MAINTKIT-OPCACHE-NEXT "
#: seconds between two requests while php-fpm has not performed the reset yet
POLL_INTERVAL = 0.1
#: seconds ``timeout`` waits after TERM before it kills a request that outlived ``timeout``
KILL_AFTER = 2
#: the name of the script's file in ``tmpdir`` (``mktemp`` replaces the Xs)
TEMPLATE = ".maint-opcache-XXXXXXXXXXXX"

#: The reset script: prints the pool's OPcache status (before the reset when asked to reset)
#: and, with the query string ``reset``, calls opcache_reset(); with ``restarts`` and
#: ``pending`` (the status before the reset) it says whether php-fpm performed the restart.
RESET_PHP = r"""<?php
$st = function_exists('opcache_get_status') ? @opcache_get_status(false) : false;
$s = is_array($st) ? $st['opcache_statistics'] : [];
$out = [
    'ini' => (bool) ini_get('opcache.enable'),
    'status' => is_array($st) ? [
        'enabled' => (bool) $st['opcache_enabled'],
        'pending' => (bool) $st['restart_pending'],
        'restarts' => (int) $s['manual_restarts'],
        'last_restart_time' => (int) $s['last_restart_time'],
        'cached_scripts' => (int) $s['num_cached_scripts'],
        'hits' => (int) $s['hits'],
    ] : null,
    'script_mode' => sprintf('%04o', fileperms(__FILE__) & 0777),
    'script_uid' => fileowner(__FILE__),
    'pool_uid' => function_exists('posix_geteuid') ? posix_geteuid() : null,
];
$now = $out['status'];
$query = $_SERVER['QUERY_STRING'] ?? '';
if ($query === 'reset') {
    $out['reset'] = function_exists('opcache_reset') ? (bool) @opcache_reset() : false;
    if (!$out['reset']) {
        // false also while a reset asked for by another request is pending: it empties the cache too
        $later = function_exists('opcache_get_status') ? @opcache_get_status(false) : false;
        $out['joined'] = is_array($later) && (bool) $later['restart_pending'];
    }
    // false with nothing pending while the status is readable: another request's restart is
    // being performed; ask again
    $out['next'] = !$out['ini'] || $now === null ? 'stop'
        : ($out['reset'] || $out['joined'] || $now['pending'] ? 'go' : 'again');
} else {
    parse_str($query, $q);
    $r = (string) ($q['restarts'] ?? '');
    $p = (string) ($q['pending'] ?? '');
    // performed: nothing pending now, and the reset was pending before or one more restart happened
    $out['next'] = is_array($now) && !$now['pending'] && preg_match('/^[0-9]+$/', $r) === 1
        && ($p === '1' || $now['restarts'] > (int) $r) ? 'done' : 'wait';
}
header('Content-Type: text/plain');
echo "MAINTKIT-OPCACHE " . json_encode($out) . "\n";
echo "MAINTKIT-OPCACHE-NEXT " . $out['next'] . ($out['next'] === 'go'
    ? ' ' . $now['restarts'] . ' ' . ($now['pending'] ? '1' : '0') : '') . "\n";
"""

Client = Literal["cgi-fcgi", "controller"]

#: the FastCGI parameters that do not depend on the script or the query
CGI_FIXED = {
    "GATEWAY_INTERFACE": "CGI/1.1",
    "SERVER_SOFTWARE": "maintkit",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "SERVER_NAME": "localhost",
    "REMOTE_ADDR": "127.0.0.1",
    "REQUEST_METHOD": "GET",
}


@dataclass(frozen=True)
class FcgiPlan:
    """How the reset reaches the pool: its address, the client, where the script goes, as whom."""

    address: str
    client: Client
    tmpdir: str
    user: str | None
    sudo: bool | None
    php: str
    timeout: float
    settle: float


def cgi_params(script: str, query: str) -> dict[str, str]:
    """The FastCGI parameters of a GET of ``script`` (the same for both clients)."""
    name = "/" + posixpath.basename(script)
    return {
        **CGI_FIXED,
        "SCRIPT_FILENAME": script,
        "SCRIPT_NAME": name,
        "REQUEST_URI": f"{name}?{query}",
        "DOCUMENT_ROOT": posixpath.dirname(script),
        "QUERY_STRING": query,
    }


def status_query(before: dict[str, object]) -> str:
    """The query string of a status request after the reset: the status read before it."""
    restarts = before.get("restarts")
    if not isinstance(restarts, int) or isinstance(restarts, bool) or restarts < 0:
        raise TargetFailed(f"the pool's OPcache status has no count of restarts: {restarts!r}")
    return f"status&restarts={restarts}&pending={1 if before['pending'] else 0}"


def polls(settle: float) -> int:
    """How many times the shell sleeps POLL_INTERVAL at most: ``ceil(settle / 0.1)``."""
    return max(1, math.ceil(round(settle / POLL_INTERVAL, 6)))


def shell_limit(plan: FcgiPlan) -> float:
    """The bound of the whole shell: every request it may send within its own ``timeout``,
    the pauses between them, and a margin for writing and removing the script."""
    return (polls(plan.settle) + 2) * (plan.timeout + KILL_AFTER) + plan.settle + 30.0


def _ask_function(plan: FcgiPlan, marker: str) -> str:
    """``ask KIND QUERY``: one request in the pool, its stdout and stderr framed by ``marker``;
    leaves the script's NEXT words in ``v`` (empty when it printed none)."""
    template = posixpath.join(plan.tmpdir, TEMPLATE)
    fixed = " ".join(quote(f"{k}={v}") for k, v in CGI_FIXED.items())
    docroot = quote(f"DOCUMENT_ROOT={posixpath.dirname(template)}")
    limit = f"{max(plan.timeout, 0.001):.3f}"  # never 0, which would mean no limit
    client = f"timeout --foreground -k {KILL_AFTER} {quote(limit)} env -i -- {fixed}"
    return (
        "ask() {\n"
        f"  printf '%s %s\\n' {quote(marker)} \"$1\" >&2\n"
        f'  o=$({client} "SCRIPT_FILENAME=$f" "SCRIPT_NAME=$n" "REQUEST_URI=$n?$2" {docroot}'
        f' "QUERY_STRING=$2" cgi-fcgi -bind -connect {quote(plan.address)})\n'
        "  c=$?\n"
        f'  printf \'%s %s %s\\n%s\\n\' {quote(marker)} "$1" "$c" "$o"\n'
        "  v=\n"
        f"  case $o in *{quote(NEXT)}*) v=${{o##*{quote(NEXT)}}}; v=${{v%%[!a-z0-9 ]*}} ;; esac\n"
        "}\n"
    )


def create_lines(plan: FcgiPlan) -> str:
    """Shell lines that write the reset script to a new private file ``$f`` (umask 077,
    ``mktemp`` in ``tmpdir``, owned by ``user`` when set); they exit 90 (no file), 91 (not
    written) or 92 (not handed to ``user``), leaving nothing behind. A signal removes it."""
    template = posixpath.join(plan.tmpdir, TEMPLATE)
    chown = f'chown -- {quote(plan.user)} "$f" || {{ rm -f -- "$f"; exit 92; }}\n' if plan.user else ""
    return (
        "umask 077\n"
        f"f=$(mktemp --suffix=.php -- {quote(template)}) || exit 90\n"
        "trap 'rm -f -- \"$f\"; exit 143' HUP INT TERM\n"
        f'printf %s {quote(RESET_PHP)} > "$f" || {{ rm -f -- "$f"; exit 91; }}\n'
        f"{chown}"
    )


def reset_shell(plan: FcgiPlan, marker: str) -> str:
    """The whole reset in one shell: create the script (:func:`create_lines`), ask for the
    reset and then the status as the script says, remove the script whatever happened, and
    report its removal. Exits 90/91/92 when the script could not be created (nothing is left
    then)."""
    m = quote(marker)
    budget = polls(plan.settle)
    return (
        f"{create_lines(plan)}"
        f"printf '%s script\\n%s\\n' {m} \"$f\"\n"
        'n="/${f##*/}"\n'
        f"{_ask_function(plan, marker)}"
        "k=0\n"
        "while :; do\n"
        "  ask reset reset; set -- $v\n"
        f'  [ "${{1-}}" = again ] && [ "$k" -lt {budget} ] || break\n'
        "  k=$((k + 1)); sleep 0.1\n"
        "done\n"
        # the status requests carry the status before the reset: a count, and 0 or 1
        "digits() { case $1 in ''|*[!0-9]*) return 1 ;; esac; }\n"
        'if [ "${1-}" = go ] && digits "${2-}" && { [ "${3-}" = 0 ] || [ "${3-}" = 1 ]; }; then\n'
        '  q="status&restarts=$2&pending=$3"\n'
        "  while :; do\n"
        '    ask status "$q"; set -- $v\n'
        f'    [ "${{1-}}" = wait ] && [ "$k" -lt {budget} ] || break\n'
        "    k=$((k + 1)); sleep 0.1\n"
        "  done\n"
        "fi\n"
        f"printf '%s removed\\n' {m} >&2\n"
        'rm -f -- "$f"\n'
        f"printf '%s removed %s\\n' {m} \"$?\"\n"
    )


@dataclass(frozen=True)
class Sent:
    """One request the shell sent: ``reset`` or ``status``, cgi-fcgi's exit code, what it printed."""

    kind: str
    code: int
    stdout: bytes
    stderr: str


@dataclass(frozen=True)
class HostRun:
    """What the shell reported: the script it created (None: none), its requests in order, and
    the removal (``""``: removed; a problem; None when the shell did not get that far)."""

    script: str | None
    sent: list[Sent]
    removed: str | None


def _sections(text: str, marker: str) -> list[tuple[list[str], str]]:
    """``text`` cut at the lines that start with ``marker``: each such line's words and the
    text up to the next one (the text before the first is dropped)."""
    out: list[tuple[list[str], list[str]]] = []
    for line in text.split("\n"):
        if line.startswith(marker + " "):
            out.append((line[len(marker) + 1 :].split(), []))
        elif out:
            out[-1][1].append(line)
    return [(words, "\n".join(lines[:-1] if lines and lines[-1] == "" else lines)) for words, lines in out]


def read_run(res: CommandResult, marker: str) -> HostRun:
    """The shell's framed output: the script's path, every request's answer, the removal."""
    errors = [body for words, body in _sections(res.stderr, marker) if words]
    script: str | None = None
    sent: list[Sent] = []
    removed: str | None = None
    for words, body in _sections(res.stdout, marker):
        if words == ["script"]:
            script = body
        elif len(words) == 2 and words[0] in ("reset", "status"):
            code = int(words[1]) if words[1].isdigit() else -1
            err = errors[len(sent)] if len(sent) < len(errors) else ""
            sent.append(Sent(words[0], code, body.encode(), err))
        elif len(words) == 2 and words[0] == "removed":
            err = errors[len(sent)] if len(sent) < len(errors) else ""
            removed = "" if words[1] == "0" else f"exit {words[1]}: {text_tail(err, 200)}"
    return HostRun(script, sent, removed)


__all__ = [
    "CGI_FIXED",
    "MARKER",
    "NEXT",
    "POLL_INTERVAL",
    "RESET_PHP",
    "Client",
    "FcgiPlan",
    "HostRun",
    "Sent",
    "cgi_params",
    "create_lines",
    "polls",
    "read_run",
    "reset_shell",
    "shell_limit",
    "status_query",
]
