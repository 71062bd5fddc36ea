"""``compat.check``: will the host run the updated code? Read-only; fails naming package and reason.

Placed **before** ``cms.update`` it checks the candidates cms.update would install (same
computation, same ``cms_update`` settings): a candidate whose ``Requires PHP`` /
``Requires at least`` the host does not meet, or that composer cannot install on this
PHP, fails the step, so nothing is installed.

Placed **after** ``cms.update`` it checks what that step installed (its recorded data):

- requirements of the updated packages against the host's PHP and WordPress versions
  (composer: ``composer check-platform-reqs``), and ``required_extensions``;
- ``php -l`` over the PHP files of every updated package;
- optional ``smoke`` paths fetched from the environment's URL (status < 500 and no PHP
  fatal error text);
- new PHP fatal errors in ``error_logs`` since cms.update started (it records the log
  sizes before updating; otherwise lines stamped after the run started).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from maintkit._text import head, tail
from maintkit.action import Action, Context, Params
from maintkit.actions.cms import compute_plan, platform_of
from maintkit.actions.cms.policy import Version
from maintkit.actions.cms.trip import Part, command_timeout, run_trip
from maintkit.errors import CheckFailed
from maintkit.ids import id_time
from maintkit.results import Change, Check, StepResult, StepStatus
from maintkit.transport.base import quote

ACTION = "compat.check"
_FATAL_RE = re.compile(r"PHP (Fatal error|Parse error)|Uncaught (Error|Exception)|Allowed memory size")
_LOG_TS_RE = re.compile(r"^\[(\d{2}-[A-Za-z]{3}-\d{4} \d{2}:\d{2}:\d{2})(?: ([A-Za-z/_+-]+))?\]")
#: answers of a proxy or gateway, not of the application: a smoke request is tried again
_GATEWAY_STATUSES = frozenset({502, 503, 504})
_FATAL_PAGE_RE = re.compile(r"<b>Fatal error</b>|PHP Fatal error|There has been a critical error on this website")

#: Lints every file named on stdin (one per line) in ONE PHP process: ``opcache_compile_file``
#: compiles without running anything, as ``php -l`` does. Prints ``E<TAB>file<TAB>message`` for a
#: file that does not compile (the message ``php -l`` prints first: ``PHP Parse error:  ... in
#: ./f.php on line N``), ``U<TAB>file`` when it cannot tell (no OPcache, its API restricted, a
#: failure without a compile error), then the end marker. Warnings and deprecations are not
#: failures (``php -l`` exits 0 on them). Nothing is cached on disk and no preload script runs.
_LINT_PHP = r"""
error_reporting(E_ALL);
set_error_handler(function () { return true; });
$ok = function_exists('opcache_compile_file') && is_array(opcache_get_status(false));
$kinds = [E_PARSE => 'Parse error', E_COMPILE_ERROR => 'Fatal error', E_ERROR => 'Fatal error',
    E_CORE_ERROR => 'Fatal error'];
while (($f = fgets(STDIN)) !== false) {
    $f = rtrim($f, "\n");
    if ($f === '') { continue; }
    if (!$ok) { echo "U\t$f\n"; continue; }
    error_clear_last();
    try {
        if (opcache_compile_file($f)) { continue; }
        $e = error_get_last();
        if ($e === null || !isset($kinds[$e['type']])) { echo "U\t$f\n"; continue; }
        [$kind, $msg, $line] = [$kinds[$e['type']], $e['message'], $e['line']];
    } catch (ParseError $x) {
        [$kind, $msg, $line] = ['Parse error', $x->getMessage(), $x->getLine()];
    } catch (Throwable $x) {
        [$kind, $msg, $line] = ['Fatal error', $x->getMessage(), $x->getLine()];
    }
    $real = realpath($f);
    if ($real !== false) { $msg = str_replace($real, $f, $msg); }
    echo "E\t$f\tPHP $kind:  $msg in $f on line $line\n";
}
echo "MAINTKIT-LINT-DONE\n";
"""
#: OPcache settings of the lint process: compile only (no optimizer, no JIT), nothing written
#: to disk, no preload script run.
_LINT_INI = (
    "display_errors=0",
    "log_errors=0",
    "opcache.enable=1",
    "opcache.enable_cli=1",
    "opcache.file_cache=",
    "opcache.preload=",
    "opcache.optimization_level=0",
    "opcache.jit=disable",
    "opcache.jit_buffer_size=0",
)


def lint_script(php: str, path: str, max_files: int) -> str:
    """Shell script linting up to ``max_files`` PHP files under ``path``; prints ``./file<TAB>error``
    for each file that does not compile.

    One PHP process lints every file (:data:`_LINT_PHP`); a file it cannot decide, or every file
    when that process does not finish, is linted by its own ``php -l`` as before."""
    bin_ = quote(php)
    ini = " ".join(f"-d {quote(setting)}" for setting in _LINT_INI)
    return (
        f"cd {quote(path)} 2>/dev/null || exit 0\n"
        f"files=$(find . -type f -name '*.php' | head -n {int(max_files)})\n"
        '[ -n "$files" ] || exit 0\n'
        "t=$(printf '\\t')\n"
        f"out=$(printf '%s\\n' \"$files\" | {bin_} {ini} -r {quote(_LINT_PHP)} 2>/dev/null)\n"
        'if [ "$(printf \'%s\\n\' "$out" | tail -n 1)" != MAINTKIT-LINT-DONE ]; then\n'
        "  out=$(printf '%s\\n' \"$files\" | while IFS= read -r f; do printf 'U\\t%s\\n' \"$f\"; done)\n"
        "fi\n"
        'printf \'%s\\n\' "$out" | while IFS= read -r line; do case "$line" in\n'
        '  "E$t"*) printf \'%s\\n\' "${line#E$t}" ;;\n'
        f'  "U$t"*) f="${{line#U$t}}"; o=$({bin_} -d display_errors=1 -l "$f" 2>&1) || '
        "printf '%s\\t%s\\n' \"$f\" \"$(printf '%s' \"$o\" | grep -m1 -i error | tr -d '\\n')\" ;;\n"
        "esac; done\n"
    )


class CompatCheckParams(Params):
    """Parameters of ``compat.check``."""

    update_step: str | None = Field(None, description="Id of the cms.update step to inspect (default: latest)")
    candidates: dict[str, Any] | None = Field(
        None, description="cms.update settings for checking candidates before an update (merged over cms_update vars)"
    )
    php: str = Field("php", description="PHP CLI binary on the host")
    required_extensions: list[str] = Field(default_factory=list, description="PHP extensions the shop needs")
    lint: bool = Field(True, description="php -l the PHP files of updated packages")
    max_lint_files: int = Field(5000, ge=1, description="Lint at most this many files per package")
    error_logs: list[str] | None = Field(None, description="PHP error logs (default: the error_logs variable)")
    smoke: list[str] = Field(default_factory=list, description="Paths fetched from the env URL before reading logs")
    smoke_timeout: float = Field(15.0, gt=0, description="Seconds per smoke request")
    smoke_retries: int = Field(
        2, ge=0, le=10, description="Extra attempts of a smoke path answered 502/503/504 or not at all"
    )
    smoke_backoff_s: float = Field(1.0, ge=0, description="Wait before retry n: smoke_backoff_s * 2**(n-1)")
    verify_tls: bool = Field(True, description="Verify TLS certificates of smoke requests")


class CompatCheck(Action[CompatCheckParams]):
    """Check PHP/WordPress requirements, syntax, error logs and smoke pages of (candidate) updates."""

    check_only = True
    name = "compat.check"
    Params = CompatCheckParams
    summary = "Refuse updates the host cannot run; after an update: requirements, php -l, new fatal errors, smoke."
    rollback_kind = "noop"
    rollback_reason = "a check changes nothing"

    def check(self, ctx: Context) -> Check:
        update = self._update_step(ctx)
        if update is None:
            return self._check_candidates(ctx)
        if ctx.check_mode and update.status in (StepStatus.WOULD_CHANGE, StepStatus.UNKNOWN):
            return Check.unknown(f"unknown: depends on step {update.step}", depends_on=update.step)
        if update.status is StepStatus.FAILED:
            raise CheckFailed(f"step {update.step} failed; nothing to check")
        return self._check_updated(ctx, update)

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        return []

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Nothing to undo: the check changes nothing."""

    # ------------------------------------------------------------ which mode
    def _update_step(self, ctx: Context) -> StepResult | None:
        for res in reversed(ctx.prior):
            if res.env != ctx.env.name:
                continue
            if self.params.update_step is not None:
                if res.step == self.params.update_step:
                    return res
            elif res.action == "cms.update":
                return res
        if self.params.update_step is not None:
            raise CheckFailed(f"no earlier step {self.params.update_step!r} in this stage")
        return None

    # ------------------------------------------------------------ before the update
    def _check_candidates(self, ctx: Context) -> Check:
        _driver, plan = compute_plan(ctx, self.params.candidates)
        if plan is None or plan.predicted:
            return Check.unknown(
                f"unknown: the candidates are what the {ctx.stage_promote} stage validates",
                depends_on=ctx.stage_promote,
            )
        failures = [s.line() for s in plan.blocking]
        failures += self._extension_failures(ctx, plan.state)
        data = {"mode": "candidates", "candidates": [u.public() for u in plan.updates], "failures": failures}
        if failures:
            raise CheckFailed("incompatible: " + "; ".join(failures), details=data)
        names = ", ".join(f"{u.name} {u.to}" for u in plan.updates) or "no candidates"
        return Check.ok(f"candidates fit the host ({names})", **data)

    def _extension_failures(self, ctx: Context, state: Any) -> list[str]:
        want = [e.lower() for e in self.params.required_extensions]
        if not want:
            return []
        loaded = [str(e).lower() for e in getattr(state, "extensions", [])] if state is not None else []
        if not loaded:
            res = ctx.run([self.params.php, "-m"], check=False)
            loaded = [line.strip().lower() for line in res.stdout.splitlines() if line.strip() and "[" not in line]
        return [f"PHP extension {ext} is not loaded" for ext in want if ext not in loaded]

    # ------------------------------------------------------------ after the update
    def _check_updated(self, ctx: Context, update: StepResult) -> Check:
        updates = [u for u in update.data.get("updates", []) if isinstance(u, dict)]
        failures: list[str] = []
        php_version = self._php_version(ctx, update)
        failures += self._requirement_failures(ctx, updates, update, php_version)
        failures += self._extension_failures(ctx, None)
        smoke = self._smoke_failures(ctx)  # first: the error logs are read after its requests
        lints = self._lints(updates) if self.params.lint else []
        logs = self._logs(ctx, update)
        outputs = self._read_host(ctx, [script for _, script in lints] + [script for _, _, script in logs])
        failures += self._lint_failures(lints, outputs[: len(lints)])
        failures += smoke
        failures += self._log_failures(ctx, logs, outputs[len(lints) :])
        data = {
            "mode": "updated",
            "checked": [f"{u.get('name')} {u.get('to')}" for u in updates],
            "php_version": php_version,
            "failures": failures,
        }
        if failures:
            raise CheckFailed("; ".join(failures), details=data)
        what = ", ".join(data["checked"]) or "no updated packages"
        return Check.ok(f"compatible ({what})", **data)

    def _php_version(self, ctx: Context, update: StepResult) -> str:
        """The host's PHP version: what the update step read with the same PHP binary, else asked."""
        known = update.data.get("php_version")
        if known and update.data.get("php") == self.params.php:
            return str(known)
        res = ctx.run([self.params.php, "-r", "echo PHP_VERSION;"], check=False)
        return res.stdout.strip() if res.ok else ""

    def _requirement_failures(
        self, ctx: Context, updates: list[dict[str, Any]], update: StepResult, php_version: str
    ) -> list[str]:
        failures = []
        core = str(update.data.get("core_version") or "")
        for u in updates:
            if u.get("type") == "core" and u.get("to"):
                core = str(u["to"])
        for u in updates:
            label = f"{u.get('type')} {u.get('name')} {u.get('to')}"
            req_php = str(u.get("requires_php") or "")
            req_wp = str(u.get("requires_wp") or "")
            if req_php and _newer(req_php, php_version):
                failures.append(f"{label}: requires PHP {req_php}, the host runs PHP {php_version}")
            if req_wp and core and u.get("type") != "core" and _newer(req_wp, core):
                failures.append(f"{label}: requires WordPress {req_wp}, the site runs {core}")
        if platform_of(ctx) != "wordpress" and updates:
            failures += self._composer_platform(ctx)
        return failures

    def _composer_platform(self, ctx: Context) -> list[str]:
        from maintkit.actions.cms import ComposerDriver
        from maintkit.actions.cms.params import effective_params

        params = effective_params(ctx, self.params.candidates)
        cwd = ComposerDriver(params, platform_of(ctx)).project(ctx)
        res = ctx.run(
            [*params.composer, "check-platform-reqs", "--format=json", "--no-ansi"],
            cwd=cwd,
            env={"COMPOSER_NO_INTERACTION": "1", **params.composer_env},
            check=False,
        )
        try:
            rows = json.loads(res.stdout or "[]")
        except json.JSONDecodeError:
            return [] if res.ok else [f"composer check-platform-reqs failed: {tail(res.stderr or res.stdout, 300)}"]
        failures = []
        for row in rows if isinstance(rows, list) else []:
            if row.get("status") not in ("success", None):
                req = row.get("failed_requirement") or {}
                who = req.get("source") or "the project"
                failures.append(
                    f"{who}: requires {row.get('name')} {req.get('constraint', '')} "
                    f"(the host has {row.get('version') or 'none'})".replace("  ", " ")
                )
        return failures

    def _lints(self, updates: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
        """The lint script of every updated package (core is WordPress's own code: not linted)."""
        out = []
        for u in updates:
            path = u.get("path")
            if path and u.get("to") and u.get("type") != "core":
                out.append((u, lint_script(self.params.php, str(path), self.params.max_lint_files)))
        return out

    @staticmethod
    def _read_host(ctx: Context, scripts: list[str]) -> list[str | None]:
        """Every script's stdout, all in one round trip (None: the shell ended before it); the
        round trip may take as long as its scripts could one by one."""
        if not scripts:
            return []
        parts = [Part(s, then="true") for s in scripts]  # every part runs, whatever the one before answered
        trip = run_trip(ctx, parts, timeout=command_timeout(ctx) * len(parts))
        return [trip[i].stdout if i < trip.ended else None for i in range(len(scripts))]

    @staticmethod
    def _lint_failures(lints: list[tuple[dict[str, Any], str]], outputs: list[str | None]) -> list[str]:
        failures = []
        for (u, _), out in zip(lints, outputs, strict=True):
            what = f"{u.get('type')} {u.get('name')} {u.get('to')}"
            if out is None:
                failures.append(f"{what}: php -l did not finish (the shell ended before it)")
                continue
            for line in out.splitlines():
                file, _, message = line.partition("\t")
                if file:
                    failures.append(f"{what}: {file[2:]}: {head(message.strip(), 200)}")
        return failures

    def _smoke_failures(self, ctx: Context) -> list[str]:
        if not self.params.smoke:
            return []
        base = (ctx.env.url or "").rstrip("/")
        if not base:
            return ["smoke paths configured but the environment has no url"]
        import requests

        failures = []
        for path in self.params.smoke:
            failure = self._smoke_one(ctx, base + "/" + path.lstrip("/"), path, requests)
            if failure:
                failures.append(failure)
        return failures

    def _smoke_one(self, ctx: Context, url: str, path: str, requests: Any) -> str | None:
        """Fetch one smoke path; a gateway status (502/503/504: PHP-FPM restarting, say) or no
        answer is tried again (``smoke_retries``, backing off), what the application answers is not."""
        from maintkit import _http
        from maintkit.actions.http.client import back_off

        failure: str | None = None
        for attempt in range(1, self.params.smoke_retries + 2):
            if attempt > 1:
                back_off(self.params.smoke_backoff_s, attempt - 1)
            try:
                resp = _http.get(url, timeout=self.params.smoke_timeout, verify=self.params.verify_tls)
            except requests.RequestException as exc:
                failure = f"smoke {path}: {type(exc).__name__}"
                continue
            ctx.event("http.request", url=url, status=resp.status_code, attempt=attempt, step=self.step_id)
            if resp.status_code in _GATEWAY_STATUSES:
                failure = f"smoke {path}: HTTP {resp.status_code}"
                continue
            if resp.status_code >= 500 or _FATAL_PAGE_RE.search(resp.text[:200_000]):
                return f"smoke {path}: HTTP {resp.status_code}"
            return None
        return failure

    def _logs(self, ctx: Context, update: StepResult) -> list[tuple[str, int | None, str]]:
        """Each error log with the size cms.update recorded before it changed anything (None: not
        recorded) and the script reading what was written to it since."""
        logs = self.params.error_logs
        if logs is None:
            raw = ctx.vars.get("error_logs")
            logs = [str(x) for x in raw] if isinstance(raw, list) else []
        offsets = update.data.get("error_log_offsets") or {}
        out = []
        for log in logs:
            offset = offsets.get(log)
            if offset is not None:
                script = (
                    f"[ -f {quote(log)} ] || exit 0\n"
                    f'size=$(stat -c %s -- {quote(log)}); if [ "$size" -lt {int(offset)} ]; then cat -- {quote(log)}; '
                    f"else tail -c +{int(offset) + 1} -- {quote(log)}; fi"
                )
            else:
                script = f"[ -f {quote(log)} ] && tail -n 5000 -- {quote(log)}; true"
            out.append((log, None if offset is None else int(offset), script))
        return out

    @staticmethod
    def _log_failures(ctx: Context, logs: list[tuple[str, int | None, str]], outputs: list[str | None]) -> list[str]:
        since = id_time(ctx.run_id)
        failures = []
        for (log, offset, _), out in zip(logs, outputs, strict=True):
            if out is None:
                failures.append(f"{log} could not be read (the shell ended before it)")
                continue
            for line in out.splitlines():
                if not _FATAL_RE.search(line):
                    continue
                if offset is None and not _after(line, since):
                    continue
                failures.append(f"{_blame(line)}: new PHP error in {log}: {_short(line)}")
        return failures[:20]


def _newer(required: str, actual: str) -> bool:
    r, a = Version.try_parse(required), Version.try_parse(actual)
    return r is not None and a is not None and r > a


def _after(line: str, since: datetime | None) -> bool:
    if since is None:
        return True
    match = _LOG_TS_RE.match(line)
    if not match:
        return False
    try:
        stamp = datetime.strptime(match.group(1), "%d-%b-%Y %H:%M:%S")
    except ValueError:
        return False
    tz = match.group(2) or "UTC"
    if tz.upper() != "UTC":
        return True  # unknown zone: better a false alarm than a missed fatal error
    return stamp.replace(tzinfo=UTC) >= since


def _blame(line: str) -> str:
    m = re.search(r"/wp-content/(plugins|themes)/([^/\s]+)/", line)
    if m:
        return f"{m.group(1)[:-1]} {m.group(2)}"
    m = re.search(r"/vendor/([^/\s]+/[^/\s]+)/", line)
    if m:
        return f"composer {m.group(1)}"
    return "unknown package"


def _short(line: str) -> str:
    text = re.sub(r"^\[[^\]]*\]\s*", "", line).strip()
    return head(text, 300)


__all__ = ["CompatCheck", "CompatCheckParams", "lint_script"]
