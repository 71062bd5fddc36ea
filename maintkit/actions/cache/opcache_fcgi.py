"""OPcache reset through FastCGI: ``opcache_reset()`` called inside the php-fpm pool, no reload.

Reloading php-fpm restarts every worker of the master, and requests in flight on any pool of
that master can be dropped (nginx answers 502). Like cachetool, this target asks the pool
itself instead: it writes a small PHP script to a private file on the host (``mktemp`` in
``tmpdir``, default ``<path>/.maint``; mode 0600, owned by the pool's ``user``), sends one
FastCGI request to the pool's socket that runs it (status before, then ``opcache_reset()``),
then asks for the status again until php-fpm has performed the reset (``restart_pending``
false and one more manual restart, within ``settle`` seconds), and removes the file it created.
A reset another request asked for a moment before and still pending is joined: the pool's
``opcache_reset()`` returns false then, and that pending reset empties the cache as well
(php-fpm masters shared by many sites, each resetting after its own update). While another
request's restart is being performed it returns false too, with nothing pending: the reset is
asked for again (every 0.1 s, within ``settle``).

The request goes through ``cgi-fcgi`` on the host (Debian: libfcgi-bin) with an empty
environment (``env -i``: the login's variables are not sent to PHP), or, when the host has no
``cgi-fcgi`` (or ``client: controller``), the request's records are built on the controller
(:mod:`maintkit.actions.cache.fastcgi`) and relayed to the socket by the host's PHP CLI.
OPcache's shared memory belongs to the php-fpm master: a reset through one pool empties the
cache of every pool of that master, and no worker restarts.
"""

from __future__ import annotations

import io
import json
import posixpath
import time
from dataclasses import dataclass
from typing import Any, Literal

from maintkit._text import tail as text_tail
from maintkit.action import Context
from maintkit.actions.cache.base import CacheTarget, Cleared, Item, TargetFailed
from maintkit.actions.cache.fastcgi import PROTOCOL_STATUS, FastcgiError, decode_answer, encode_request, split_cgi
from maintkit.actions.cache.params import CacheClearParams, OpcacheTarget
from maintkit.probes import Probe
from maintkit.probes.backup import Tools
from maintkit.probes.maintenance import ExistingPaths
from maintkit.transport.base import quote

MARKER = "MAINTKIT-OPCACHE "
#: seconds between two status requests while php-fpm has not performed the reset yet
POLL_INTERVAL = 0.1

#: The reset script: prints the pool's OPcache status (before the reset when asked to reset)
#: and, with the query string ``reset``, calls opcache_reset().
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
if (($_SERVER['QUERY_STRING'] ?? '') === 'reset') {
    $out['reset'] = function_exists('opcache_reset') ? (bool) @opcache_reset() : false;
    if (!$out['reset']) {
        // false also while a reset asked for by another request is pending: it empties the cache too
        $now = function_exists('opcache_get_status') ? @opcache_get_status(false) : false;
        $out['joined'] = is_array($now) && (bool) $now['restart_pending'];
    }
}
header('Content-Type: text/plain');
echo "MAINTKIT-OPCACHE " . json_encode($out) . "\n";
"""

#: The relay for the controller's client (``php -n -r RELAY_PHP -- ADDRESS TIMEOUT``): stdin
#: to the pool's socket, the socket's answer to stdout.
RELAY_PHP = r"""
$a = $argv[1]; $t = (float) $argv[2];
$s = @stream_socket_client(($a[0] === '/' ? 'unix://' : 'tcp://') . $a, $en, $es, $t);
if (!$s) { fwrite(STDERR, "Could not connect to $a: $es\n"); exit(3); }
stream_set_timeout($s, (int) ceil($t));
$in = stream_get_contents(STDIN);
for ($o = 0; $o < strlen($in); $o += $w) {
    $w = fwrite($s, substr($in, $o));
    if (!$w) { fwrite(STDERR, "writing to $a failed\n"); exit(4); }
}
while (!feof($s)) {
    $d = fread($s, 65536);
    if ($d === false || stream_get_meta_data($s)['timed_out']) { fwrite(STDERR, "no answer from $a\n"); exit(5); }
    echo $d;
}
"""

Client = Literal["cgi-fcgi", "controller"]


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


def plan_for(block: OpcacheTarget, ctx: Context, client: Client) -> FcgiPlan:
    """The plan of ``block`` on this environment with the chosen client."""
    assert block.fastcgi is not None
    tmpdir = block.tmpdir or posixpath.join(ctx.path, ".maint")
    return FcgiPlan(block.fastcgi, client, tmpdir, block.user, block.sudo, block.php, block.timeout, block.settle)


def cgi_params(script: str, query: str) -> dict[str, str]:
    """The FastCGI parameters of a GET of ``script`` (the same for both clients)."""
    name = "/" + posixpath.basename(script)
    return {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "maintkit",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "localhost",
        "REMOTE_ADDR": "127.0.0.1",
        "REQUEST_METHOD": "GET",
        "SCRIPT_FILENAME": script,
        "SCRIPT_NAME": name,
        "REQUEST_URI": f"{name}?{query}",
        "DOCUMENT_ROOT": posixpath.dirname(script),
        "QUERY_STRING": query,
    }


def create_script(ctx: Context, plan: FcgiPlan) -> str:
    """Write the reset script to a new private file (0600, owned by the pool's user); return its path."""
    chown = f'chown -- {quote(plan.user)} "$f" || {{ rm -f -- "$f"; exit 92; }}\n' if plan.user else ""
    script = (
        "umask 077\n"
        f"f=$(mktemp --suffix=.php -- {quote(posixpath.join(plan.tmpdir, '.maint-opcache-XXXXXXXXXXXX'))}) || exit 90\n"
        f'printf %s {quote(RESET_PHP)} > "$f" || {{ rm -f -- "$f"; exit 91; }}\n'
        f"{chown}"
        'printf "%s\\n" "$f"\n'
    )
    res = ctx.run_shell(script, sudo=plan.sudo, check=False, timeout=plan.timeout)
    path = res.stdout.strip().splitlines()[-1] if res.ok and res.stdout.strip() else ""
    if not res.ok or not path.startswith(plan.tmpdir.rstrip("/") + "/"):
        what = f"owned by {plan.user} " if plan.user else ""
        raise TargetFailed(
            f"cannot write the reset script {what}in {plan.tmpdir} (exit {res.exit_code}): "
            f"{text_tail(res.stderr, 300) or text_tail(res.stdout, 300)}"
        )
    return path


def remove_script(ctx: Context, plan: FcgiPlan, path: str) -> str:
    """Remove the script this target created; return the problem, empty when it is gone."""
    res = ctx.run(["rm", "-f", "--", path], sudo=plan.sudo, check=False, timeout=plan.timeout)
    return "" if res.ok else f"exit {res.exit_code}: {text_tail(res.stderr, 200)}"


def _via_cgi_fcgi(ctx: Context, plan: FcgiPlan, params: dict[str, str]) -> tuple[bytes, str, int]:
    argv = ["env", "-i", "--", *(f"{k}={v}" for k, v in params.items()), "cgi-fcgi", "-bind", "-connect", plan.address]
    res = ctx.run(argv, sudo=plan.sudo, check=False, timeout=plan.timeout)
    return res.stdout.encode(), res.stderr, res.exit_code


def _via_controller(ctx: Context, plan: FcgiPlan, params: dict[str, str]) -> tuple[bytes, str, int]:
    sink = io.BytesIO()
    argv = [plan.php, "-n", "-r", RELAY_PHP, "--", plan.address, str(plan.timeout)]
    stdin = encode_request(params)
    res = ctx.run(argv, stdin=stdin, stdout_sink=sink, sudo=plan.sudo, check=False, timeout=plan.timeout)
    if not res.ok:
        return b"", res.stderr, res.exit_code
    try:
        answer = decode_answer(sink.getvalue())
    except FastcgiError as exc:
        return b"", f"{exc}", 1
    if answer.protocol_status != 0:
        status = PROTOCOL_STATUS.get(answer.protocol_status, str(answer.protocol_status))
        return answer.stdout, f"php-fpm refused the request: {status}", 1
    return answer.stdout, answer.stderr.decode("utf-8", "replace"), 0


def request(ctx: Context, plan: FcgiPlan, script: str, query: str) -> dict[str, Any]:
    """Run the reset script in the pool with ``query``; return what it printed."""
    send = _via_cgi_fcgi if plan.client == "cgi-fcgi" else _via_controller
    stdout, stderr, code = send(ctx, plan, cgi_params(script, query))
    headers, body = split_cgi(stdout)
    for line in body.decode("utf-8", "replace").splitlines():
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER) :])
            if isinstance(data, dict):
                return data
    status = headers.get("status", "")
    said = " ".join(f"{status} {body.decode('utf-8', 'replace')} {stderr}".split())
    hint = (
        " (can the pool read the script? set opcache.user to the pool's user,"
        " or opcache.tmpdir inside its open_basedir)"
        if "not found" in said.lower() or "denied" in said.lower()
        else ""
    )
    raise TargetFailed(
        f"php-fpm at {plan.address} did not run the reset script (exit {code}): {text_tail(said, 300)}{hint}"
    )


def _performed(before: dict[str, Any], after: Any) -> bool:
    """True once php-fpm has performed the restart asked for after ``before`` was read."""
    if not isinstance(after, dict) or after["pending"]:
        return False
    return bool(before["pending"] or after["restarts"] > before["restarts"])


def _ask_reset(ctx: Context, plan: FcgiPlan, script: str, deadline: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """The reset request's answer and the status it read first, once the reset is asked for or
    joined. A false ``opcache_reset()`` while the status is readable (so no ``restrict_api``)
    is the cache between two states (another request's restart being performed): asked again
    every POLL_INTERVAL until ``deadline``."""
    attempts = 0
    while True:
        attempts += 1
        first = request(ctx, plan, script, "reset")
        before = first.get("status")
        if not first.get("ini"):
            raise TargetFailed(
                f"OPcache is disabled in the pool at {plan.address} (opcache.enable=0): nothing to reset"
            )
        if not isinstance(before, dict):
            raise TargetFailed(f"opcache_get_status() refused in the pool at {plan.address} (opcache.restrict_api?)")
        if first.get("reset") or first.get("joined") or before["pending"]:
            return first, before
        if time.monotonic() >= deadline:
            raise TargetFailed(
                f"opcache_reset() returned false in the pool at {plan.address} {attempts} time(s) in "
                f"{plan.settle:g} s (opcache.restrict_api?)"
            )
        time.sleep(POLL_INTERVAL)


def reset(ctx: Context, plan: FcgiPlan, script: str) -> dict[str, Any]:
    """Reset and wait until php-fpm performed it; return the status before and after."""
    deadline = time.monotonic() + plan.settle
    first, before = _ask_reset(ctx, plan, script, deadline)
    polls = 0
    while True:
        polls += 1
        after = request(ctx, plan, script, "status").get("status")
        if _performed(before, after):
            break
        if time.monotonic() >= deadline:
            raise TargetFailed(
                f"opcache_reset() was accepted at {plan.address} but php-fpm had not performed it after "
                f"{plan.settle:g} s (a long request kept the cache in use?)"
            )
        time.sleep(POLL_INTERVAL)
    facts = {k: first.get(k) for k in ("script_mode", "script_uid", "pool_uid")}
    return {"before": before, "after": after, "status_requests": polls, **facts}


class OpcacheFastcgi(CacheTarget[FcgiPlan]):
    """OPcache of one php-fpm pool, reset from inside the pool through its FastCGI socket."""

    kind = "opcache"

    def __init__(self, block: OpcacheTarget) -> None:
        self.block = block

    @classmethod
    def configured(cls, params: CacheClearParams, ctx: Context) -> list[CacheTarget[Any]]:
        """The one pool of the environment."""
        return [cls(params.opcache)]

    def _probes(self) -> tuple[Tools, ExistingPaths | None]:
        address = self.block.fastcgi or ""
        return Tools(("cgi-fcgi", self.block.php)), ExistingPaths((address,)) if address.startswith("/") else None

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        """Which clients the host has, and whether the socket exists."""
        return [p for p in self._probes() if p is not None]

    def check(self, ctx: Context) -> Item[FcgiPlan]:
        """Choose the client and find the socket (always needed: the pool's cache is not inspected read-only)."""
        tools_probe, socket_probe = self._probes()
        address = self.block.fastcgi or ""
        if socket_probe is not None and address not in ctx.probe(socket_probe):
            raise TargetFailed(f"php-fpm socket {address} does not exist (is the pool running?)")
        tools = ctx.probe(tools_probe)
        client: Client | None = None
        if self.block.client in ("auto", "cgi-fcgi") and "cgi-fcgi" in tools:
            client = "cgi-fcgi"
        elif self.block.client in ("auto", "controller") and self.block.php in tools:
            client = "controller"
        if client is None:
            need = {"cgi-fcgi": "cgi-fcgi", "controller": f"the PHP CLI `{self.block.php}`"}.get(
                self.block.client, f"cgi-fcgi or the PHP CLI `{self.block.php}`"
            )
            raise TargetFailed(
                f"the host has no {need} to reach {address} (install libfcgi-bin for cgi-fcgi, or set method: reload)"
            )
        plan = plan_for(self.block, ctx, client)
        what = f"OPcache: will reset through FastCGI at {address} ({client})"
        return Item(self, f"opcache (fastcgi {address})", True, what, plan)

    def clear(self, ctx: Context, item: Item[FcgiPlan]) -> Cleared:
        """Write the script, reset, confirm, and remove the script."""
        plan = item.plan
        script = create_script(ctx, plan)
        ctx.record(opcache_script=script)
        try:
            result = reset(ctx, plan, script)
        except TargetFailed as exc:
            left = remove_script(ctx, plan, script)
            ctx.record(opcache_script_removed=not left)
            message = f"{exc}; the reset script {script} was not removed: {left}" if left else str(exc)
            raise TargetFailed(message) from None
        left = remove_script(ctx, plan, script)
        ctx.record(opcache_script_removed=not left)
        if left:
            raise TargetFailed(f"OPcache was reset, but the reset script {script} was not removed: {left}")
        summary = (
            f"reset through FastCGI at {plan.address} ({plan.client}): "
            f"{result['before']['cached_scripts']} cached scripts dropped, restart confirmed"
        )
        return summary, {"via": "fastcgi", "address": plan.address, "client": plan.client, "script": script, **result}


__all__ = [
    "MARKER",
    "RELAY_PHP",
    "RESET_PHP",
    "FcgiPlan",
    "OpcacheFastcgi",
    "cgi_params",
    "create_script",
    "plan_for",
    "remove_script",
    "request",
    "reset",
]
