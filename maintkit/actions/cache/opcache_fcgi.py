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

With ``cgi-fcgi`` on the host (Debian: libfcgi-bin) all of it is ONE shell, one round trip
(:mod:`maintkit.actions.cache.opcache_host`): it writes the script, sends the requests with an
empty environment (``env -i``: the login's variables are not sent to PHP), asks again as the
script says, removes the script and reports every answer back. When the host has no
``cgi-fcgi`` (or ``client: controller``), each request's records are built on the controller
(:mod:`maintkit.actions.cache.fastcgi`) and relayed to the socket by the host's PHP CLI, one
round trip each for the script's creation, every request and its removal. Both clients read
the answers and decide with the same code (:func:`settle_reset`). OPcache's shared memory
belongs to the php-fpm master: a reset through one pool empties the cache of every pool of that
master, and no worker restarts.
"""

from __future__ import annotations

import io
import json
import posixpath
import time
from collections.abc import Callable
from typing import Any

from maintkit._text import tail as text_tail
from maintkit.action import Context
from maintkit.actions.cache.base import CacheTarget, Cleared, Item, TargetFailed
from maintkit.actions.cache.fastcgi import PROTOCOL_STATUS, FastcgiError, decode_answer, encode_request, split_cgi
from maintkit.actions.cache.opcache_host import (
    MARKER,
    POLL_INTERVAL,
    RESET_PHP,
    Client,
    FcgiPlan,
    HostRun,
    cgi_params,
    create_lines,
    read_run,
    reset_shell,
    shell_limit,
    status_query,
)
from maintkit.actions.cache.params import CacheClearParams, OpcacheTarget
from maintkit.probes import Probe
from maintkit.probes.backup import Tools
from maintkit.probes.maintenance import ExistingPaths
from maintkit.results import CommandResult
from maintkit.transport.base import output_marker

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

#: One request with a query string (``reset`` or a status query); returns the script's answer.
Ask = Callable[[str], dict[str, Any]]
#: Called after an answer that asks for another request: False when there is no time (or no
#: answer) left, else True once the next request may go.
More = Callable[[], bool]
#: What a reset came to: the result, or the failure (the script is removed in both cases).
Outcome = dict[str, Any] | TargetFailed


def plan_for(block: OpcacheTarget, ctx: Context, client: Client) -> FcgiPlan:
    """The plan of ``block`` on this environment with the chosen client."""
    assert block.fastcgi is not None
    tmpdir = block.tmpdir or posixpath.join(ctx.path, ".maint")
    return FcgiPlan(block.fastcgi, client, tmpdir, block.user, block.sudo, block.php, block.timeout, block.settle)


def _not_written(plan: FcgiPlan, res: CommandResult) -> TargetFailed:
    what = f"owned by {plan.user} " if plan.user else ""
    return TargetFailed(
        f"cannot write the reset script {what}in {plan.tmpdir} (exit {res.exit_code}): "
        f"{text_tail(res.stderr, 300) or text_tail(res.stdout, 300)}"
    )


def _in_tmpdir(plan: FcgiPlan, path: str | None) -> bool:
    return bool(path) and str(path).startswith(plan.tmpdir.rstrip("/") + "/")


def create_script(ctx: Context, plan: FcgiPlan) -> str:
    """Write the reset script to a new private file (0600, owned by the pool's user); return its path."""
    script = create_lines(plan) + 'printf "%s\\n" "$f"\n'
    res = ctx.run_shell(script, sudo=plan.sudo, check=False, timeout=plan.timeout)
    path = res.stdout.strip().splitlines()[-1] if res.ok and res.stdout.strip() else ""
    if not res.ok or not _in_tmpdir(plan, path):
        raise _not_written(plan, res)
    return path


def remove_script(ctx: Context, plan: FcgiPlan, path: str) -> str:
    """Remove the script this target created; return the problem, empty when it is gone."""
    res = ctx.run(["rm", "-f", "--", path], sudo=plan.sudo, check=False, timeout=plan.timeout)
    return "" if res.ok else f"exit {res.exit_code}: {text_tail(res.stderr, 200)}"


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


def answer_of(plan: FcgiPlan, stdout: bytes, stderr: str, code: int) -> dict[str, Any]:
    """What the reset script printed in one request's answer (``stdout``: the CGI response,
    ``stderr`` and ``code`` the client's); a request the pool did not run fails here."""
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


def request(ctx: Context, plan: FcgiPlan, script: str, query: str) -> dict[str, Any]:
    """Run the reset script in the pool with ``query`` through the controller's client; return
    what it printed."""
    return answer_of(plan, *_via_controller(ctx, plan, cgi_params(script, query)))


def _accepted(plan: FcgiPlan, first: dict[str, Any]) -> dict[str, Any] | None:
    """The status read before the reset once the reset request was accepted or joined (the
    script says ``go``); None when it is to be asked again. Fails when OPcache is disabled in
    the pool or its status cannot be read."""
    before = first.get("status")
    if not first.get("ini"):
        raise TargetFailed(f"OPcache is disabled in the pool at {plan.address} (opcache.enable=0): nothing to reset")
    if not isinstance(before, dict):
        raise TargetFailed(f"opcache_get_status() refused in the pool at {plan.address} (opcache.restrict_api?)")
    return before if first.get("next") == "go" else None


def settle_reset(plan: FcgiPlan, ask: Ask, more: More) -> dict[str, Any]:
    """The reset, decided the same way for both clients: ask for it until it is accepted or
    joined (a false ``opcache_reset()`` while the status is readable, so no ``restrict_api``,
    is the cache between two states: another request's restart being performed), then for the
    status until php-fpm performed it; return the status before and after."""
    attempts = 0
    while True:
        attempts += 1
        first = ask("reset")
        before = _accepted(plan, first)
        if before is not None:
            break
        if not more():
            raise TargetFailed(
                f"opcache_reset() returned false in the pool at {plan.address} {attempts} time(s) in "
                f"{plan.settle:g} s (opcache.restrict_api?)"
            )
    query = status_query(before)
    polls = 0
    while True:
        polls += 1
        answer = ask(query)
        if answer.get("next") == "done":
            break
        if not more():
            raise TargetFailed(
                f"opcache_reset() was accepted at {plan.address} but php-fpm had not performed it after "
                f"{plan.settle:g} s (a long request kept the cache in use?)"
            )
    facts = {k: first.get(k) for k in ("script_mode", "script_uid", "pool_uid")}
    return {"before": before, "after": answer.get("status"), "status_requests": polls, **facts}


def _waiting(settle: float) -> More:
    """The controller's pace: another request every POLL_INTERVAL until ``settle`` seconds passed."""
    deadline = time.monotonic() + settle

    def more() -> bool:
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)
        return True

    return more


def reset(ctx: Context, plan: FcgiPlan, script: str) -> dict[str, Any]:
    """Reset through the controller's client and wait until php-fpm performed it; return the
    status before and after."""
    return settle_reset(plan, lambda query: request(ctx, plan, script, query), _waiting(plan.settle))


def replay(plan: FcgiPlan, run: HostRun) -> dict[str, Any]:
    """The reset the host's shell performed, read from its answers in the order it sent them
    (it asked again exactly while :func:`settle_reset` would, and stopped when it had no time left)."""
    queue = list(run.sent)

    def ask(query: str) -> dict[str, Any]:
        kind = "reset" if query == "reset" else "status"
        if not queue or queue[0].kind != kind:
            raise TargetFailed(f"the reset at {plan.address} stopped before its {kind} request (the shell ended)")
        sent = queue.pop(0)
        return answer_of(plan, sent.stdout, sent.stderr, sent.code)

    return settle_reset(plan, ask, lambda: bool(queue))


def _from_controller(ctx: Context, plan: FcgiPlan) -> tuple[str, Outcome, str]:
    """Write the script, reset through the relay, remove the script: one round trip each."""
    script = create_script(ctx, plan)
    ctx.record(opcache_script=script)
    try:
        outcome: Outcome = reset(ctx, plan, script)
    except TargetFailed as exc:
        outcome = exc
    return script, outcome, remove_script(ctx, plan, script)


def _on_host(ctx: Context, plan: FcgiPlan) -> tuple[str, Outcome, str]:
    """The whole reset in one round trip (:func:`~maintkit.actions.cache.opcache_host.reset_shell`)."""
    marker = output_marker()
    limit = shell_limit(plan)
    # the runner's reads after a change (``Context.refresh``) come back in the same round trip
    _, res = ctx.run_and_probe_result(reset_shell(plan, marker), [], timeout=limit, sudo=plan.sudo)
    run = read_run(res, marker)
    if run.script is None or not _in_tmpdir(plan, run.script):
        raise _not_written(plan, res)
    ctx.record(opcache_script=run.script)
    outcome: Outcome
    if res.timed_out:
        outcome = TargetFailed(f"the reset at {plan.address} did not end within {limit:g} s (timed out)")
    else:
        try:
            outcome = replay(plan, run)
        except TargetFailed as exc:
            outcome = exc
    # a shell that did not report the removal (cut off) leaves it to a removal of its own
    left = run.removed if run.removed is not None else remove_script(ctx, plan, run.script)
    return run.script, outcome, left


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
        return Tools(("cgi-fcgi", "timeout", self.block.php)), ExistingPaths((address,)) if address.startswith(
            "/"
        ) else None

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
        if (
            self.block.client in ("auto", "cgi-fcgi") and {"cgi-fcgi", "timeout"} <= tools
        ):  # timeout: each request's bound
            client = "cgi-fcgi"
        elif self.block.client in ("auto", "controller") and self.block.php in tools:
            client = "controller"
        if client is None:
            need = {
                "cgi-fcgi": "cgi-fcgi (with coreutils' timeout)",
                "controller": f"the PHP CLI `{self.block.php}`",
            }.get(self.block.client, f"cgi-fcgi or the PHP CLI `{self.block.php}`")
            raise TargetFailed(
                f"the host has no {need} to reach {address} (install libfcgi-bin for cgi-fcgi, or set method: reload)"
            )
        plan = plan_for(self.block, ctx, client)
        what = f"OPcache: will reset through FastCGI at {address} ({client})"
        return Item(self, f"opcache (fastcgi {address})", True, what, plan)

    def clear(self, ctx: Context, item: Item[FcgiPlan]) -> Cleared:
        """Write the script, reset, confirm, and remove the script (with cgi-fcgi: in one round trip)."""
        plan = item.plan
        script, outcome, left = (_on_host if plan.client == "cgi-fcgi" else _from_controller)(ctx, plan)
        ctx.record(opcache_script_removed=not left)
        if isinstance(outcome, TargetFailed):
            message = f"{outcome}; the reset script {script} was not removed: {left}" if left else str(outcome)
            raise TargetFailed(message) from None
        if left:
            raise TargetFailed(f"OPcache was reset, but the reset script {script} was not removed: {left}")
        summary = (
            f"reset through FastCGI at {plan.address} ({plan.client}): "
            f"{outcome['before']['cached_scripts']} cached scripts dropped, restart confirmed"
        )
        return summary, {"via": "fastcgi", "address": plan.address, "client": plan.client, "script": script, **outcome}


__all__ = [
    "MARKER",
    "RELAY_PHP",
    "RESET_PHP",
    "FcgiPlan",
    "OpcacheFastcgi",
    "answer_of",
    "cgi_params",
    "create_script",
    "plan_for",
    "remove_script",
    "replay",
    "request",
    "reset",
    "settle_reset",
]
