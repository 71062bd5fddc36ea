"""``maintenance.enable`` / ``maintenance.disable``: put a shop into maintenance mode and out again.

Markers (a marker "is on" while its file exists):

- ``flag``: a generic flag file, by default ``<path>/.maint/maintenance.flag``; nginx answers
  ``503`` with ``Retry-After`` while it exists (see the snippet in docs/actions-site.md);
- ``wordpress``: ``<ABSPATH>/.maintenance`` containing ``<?php $upgrading = time(); ?>``;
- ``magento``: ``<root>/var/.maintenance.flag``;
- ``laravel``: ``php artisan down`` / ``php artisan up`` (state: ``storage/framework/down``).

The application is found under ``root`` when given, else under ``<path>/current`` when that
exists (release layouts), else under ``<path>``. ``platform: auto`` uses the environment's
platform and, for ``composer``/``generic`` sites, the files it finds (``bin/magento``,
``artisan``, ``wp-load.php``).

``maintenance.enable`` switches maintenance off again in ``rollback`` and in ``finalize``
(at the end of the stage, also after a failure or an interrupt), so a run never leaves a
shop in maintenance; ``keep: true`` keeps it on after a successful stage only.

Ownership: ``maintenance.enable`` records which run switched maintenance on in
``<path>/.maint/maintenance.json`` (run id, controller, pid and its start time, the markers,
and ``kept`` once ``keep: true`` left it on on purpose). A run that was killed cannot switch
maintenance off; the next run that finds such a record, from a run that is known to be gone
(see :func:`maintkit.locks.liveness`: it no longer holds the lock, its summary exists, or its
process on this controller is gone), takes the markers over (``maintenance.enable``: switched
off at the end of its stage) or switches them off (``maintenance.disable``), and says so in
the step reason and a ``maintenance.leftover`` audit event.
"""

from __future__ import annotations

import json
import posixpath
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from maintkit import locks
from maintkit._text import tail
from maintkit.action import Action, Context, Params
from maintkit.errors import ApplyFailed, CheckFailed, RollbackFailed
from maintkit.probes import Probe, RawOutput
from maintkit.results import Change, Check, StepStatus
from maintkit.transport.base import quote

AppKind = Literal["wordpress", "magento", "laravel", "generic"]
PlatformChoice = Literal["auto", "wordpress", "magento", "laravel", "generic"]
MarkerKind = Literal["flag", "wordpress", "magento", "laravel"]

WP_MAINTENANCE = b"<?php $upgrading = time(); ?>\n"
DEFAULT_FLAG = ".maint/maintenance.flag"
OWNER_FILE = ".maint/maintenance.json"

#: Files that identify an application under its root (WordPress: the first one found is ABSPATH).
APP_MARKERS: dict[str, tuple[str, ...]] = {
    "magento": ("bin/magento",),
    "laravel": ("artisan",),
    "wordpress": ("wp-load.php", "web/wp/wp-load.php", "wp/wp-load.php", "public/wp-load.php"),
}
_PLATFORM_OF_ENV: dict[str, AppKind] = {
    "wordpress": "wordpress",
    "bedrock": "wordpress",
    "magento": "magento",
    "laravel": "laravel",
}


@dataclass(frozen=True)
class ExistingPaths(Probe[frozenset[str]]):
    """Which of ``paths`` exist on the host (following symlinks)."""

    paths: tuple[str, ...]
    kind: ClassVar[str] = "exists"

    def script(self) -> str:
        # the index of each existing path is printed, never the name (any byte may be in a name)
        quoted = " ".join(quote(p) for p in self.paths)
        return f'i=0; for p in {quoted}; do if [ -e "$p" ]; then printf "%s\\n" "$i"; fi; i=$((i+1)); done; true'

    def parse(self, raw: RawOutput) -> frozenset[str]:
        found = {int(w) for w in raw.stdout.split() if w.isdigit()}
        return frozenset(p for i, p in enumerate(self.paths) if i in found)


@dataclass(frozen=True)
class App:
    """The application of a site environment: its kind and root (ABSPATH for WordPress)."""

    kind: AppKind
    root: str
    base: str


def _bases(ctx: Context, root: str | None) -> list[str]:
    if root:
        return [root.rstrip("/") or "/"]
    path = ctx.path.rstrip("/")
    return [f"{path}/current", path]


def layout_probe(ctx: Context, root: str | None) -> ExistingPaths:
    """The probe :func:`detect_app` needs (so actions can prefetch it)."""
    paths: list[str] = []
    for base in _bases(ctx, root):
        paths.append(base)
        paths += [f"{base}/{m}" for markers in APP_MARKERS.values() for m in markers]
    return ExistingPaths(tuple(paths))


def detect_app(
    ctx: Context, platform: PlatformChoice = "auto", root: str | None = None, found: frozenset[str] | None = None
) -> App:
    """Find the application (read-only, from a cached probe, or from ``found``: existing paths
    answered by a probe that includes :func:`layout_probe`'s paths).

    Raises CheckFailed when the platform is known (or forced) but its files are not there.
    """
    if found is None:
        found = ctx.probe(layout_probe(ctx, root))
    bases = _bases(ctx, root)
    base = next((b for b in bases if b in found), None)
    if base is None:
        raise CheckFailed(f"site directory {bases[0]} does not exist")
    kind: AppKind
    if platform != "auto":
        kind = platform
    else:
        kind = _PLATFORM_OF_ENV.get(ctx.env.platform or "generic") or _sniff(base, found)
    if kind == "generic":
        return App("generic", base, base)
    for marker in APP_MARKERS[kind]:
        if f"{base}/{marker}" in found:
            root_dir = f"{base}/{marker}".rsplit("/", 1)[0] if kind == "wordpress" else base
            return App(kind, root_dir, base)
    wanted = " or ".join(APP_MARKERS[kind])
    raise CheckFailed(f"{kind} site expected but no {wanted} under {base} (set `root`)")


def _sniff(base: str, found: frozenset[str]) -> AppKind:
    for kind in ("magento", "laravel", "wordpress"):
        if any(f"{base}/{m}" in found for m in APP_MARKERS[kind]):
            return kind
    return "generic"


# ---------------------------------------------------------------------------- markers


@dataclass(frozen=True)
class Marker:
    """One way a site is in maintenance: present while ``path`` exists."""

    kind: MarkerKind
    path: str
    root: str = ""

    @property
    def label(self) -> str:
        """Short name for messages."""
        return {"flag": "flag file", "wordpress": "WordPress .maintenance", "magento": "Magento flag"}.get(
            self.kind, "Laravel down"
        )


class _MaintenanceParams(Params):
    platform: PlatformChoice = Field(
        "auto", description="Application mechanism: auto (from the environment), wordpress, magento, laravel, generic"
    )
    root: str | None = Field(None, description="Application root (default: <path>/current if it exists, else <path>)")
    flag: bool | str = Field(
        True,
        description="Generic flag file for the nginx snippet: true (<path>/.maint/maintenance.flag), a path, or false",
    )
    php: str = Field("php", description="PHP CLI binary (Laravel's artisan)")
    sudo: bool | None = Field(None, description="Run commands through sudo (default: the environment's `become`)")

    @field_validator("root")
    @classmethod
    def _abs_root(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/"):
            raise ValueError("root must be an absolute path")
        return v

    @field_validator("flag")
    @classmethod
    def _abs_flag(cls, v: bool | str) -> bool | str:
        if isinstance(v, str) and (not v.startswith("/") or v.endswith("/")):
            raise ValueError("flag must be true, false or an absolute file path")
        return v


def flag_path(ctx: Context, flag: bool | str) -> str | None:
    """The generic flag file of an environment (None when disabled)."""
    if flag is False:
        return None
    if isinstance(flag, str):
        return flag
    return f"{ctx.path.rstrip('/')}/{DEFAULT_FLAG}"


def site_probe(ctx: Context, p: _MaintenanceParams) -> ExistingPaths:
    """One probe answering both where the application is and which markers exist.

    It lists every path a marker could have (for each candidate application root), so the
    runner can prefetch it without knowing the answer in advance.
    """
    paths = list(layout_probe(ctx, p.root).paths)
    for base in _bases(ctx, p.root):
        paths += [posixpath.dirname(f"{base}/{m}") + "/.maintenance" for m in APP_MARKERS["wordpress"]]
        paths += [f"{base}/var/.maintenance.flag", f"{base}/storage/framework/down"]
    flag = flag_path(ctx, p.flag)
    if flag:
        paths.append(flag)
    return ExistingPaths(tuple(dict.fromkeys(paths)))


def markers_for(ctx: Context, p: _MaintenanceParams, found: frozenset[str] | None = None) -> list[Marker]:
    """The markers these parameters manage on this environment."""
    out: list[Marker] = []
    app = detect_app(ctx, p.platform, p.root, found)
    if app.kind == "wordpress":
        out.append(Marker("wordpress", f"{app.root}/.maintenance"))
    elif app.kind == "magento":
        out.append(Marker("magento", f"{app.root}/var/.maintenance.flag"))
    elif app.kind == "laravel":
        out.append(Marker("laravel", f"{app.root}/storage/framework/down", app.root))
    flag = flag_path(ctx, p.flag)
    if flag:
        out.append(Marker("flag", flag))
    if not out:
        raise CheckFailed("nothing to switch: a generic site needs the flag file (flag: true or a path)")
    return out


def _state(ctx: Context, p: _MaintenanceParams, action: str) -> tuple[list[Marker], list[Marker]]:
    """The markers split into (on, off). Read-only: one cached probe."""
    found = ctx.probe(site_probe(ctx, p))
    try:
        markers = markers_for(ctx, p, found)
    except CheckFailed as exc:
        raise CheckFailed(exc.message, action=action) from None
    return [m for m in markers if m.path in found], [m for m in markers if m.path not in found]


def _flag_text(ctx: Context, retry_after: int) -> bytes:
    info = {**locks.owner_record(ctx.run_id, retry_after=retry_after), "since": int(time.time())}
    return (json.dumps(info) + "\n").encode()


# ---------------------------------------------------------------------------- ownership


def owner_path(env_path: str) -> str:
    """Where the run that switched maintenance on is recorded."""
    return f"{env_path.rstrip('/')}/{OWNER_FILE}"


@dataclass(frozen=True)
class Ownership:
    """The maintenance owner record (empty when none) and the run id holding the lock now."""

    owner: dict[str, Any]
    lock_run_id: str


@dataclass(frozen=True)
class OwnershipProbe(Probe[Ownership]):
    """Read the maintenance owner record and the lock holder of an environment in one go."""

    path: str
    kind: ClassVar[str] = "maintenance-owner"

    def script(self) -> str:
        lock = quote(locks.lock_dir(self.path) + "/holder.json")
        return (
            f"cat -- {quote(owner_path(self.path))} 2>/dev/null; printf '\\n@@lock\\n'; cat -- {lock} 2>/dev/null; true"
        )

    def parse(self, raw: RawOutput) -> Ownership:
        owner, _, holder = raw.stdout.partition("\n@@lock\n")
        return Ownership(locks.parse_holder(owner), str(locks.parse_holder(holder).get("run_id", "")))


@dataclass(frozen=True)
class Leftover:
    """Maintenance switched on by a run that is gone: its run id and why it is known gone."""

    run_id: str
    why: str
    record: dict[str, Any]


def find_leftover(ctx: Context, ownership: Ownership | None = None) -> Leftover | None:
    """The owner record of a gone run (not this run, not kept on purpose), if there is one."""
    own = ownership if ownership is not None else ctx.probe(OwnershipProbe(ctx.path))
    rec = own.owner
    if not rec or rec.get("run_id") == ctx.run_id or rec.get("kept"):
        return None
    state = locks.liveness(rec, ctx.options.state_dir, lock_run_id=own.lock_run_id)
    return Leftover(str(rec.get("run_id", "?")), state.why, rec) if state.dead else None


def _write_owner(ctx: Context, p: _MaintenanceParams, markers: list[Marker], kept: bool = False) -> None:
    record = locks.owner_record(
        ctx.run_id, step=ctx.step_id, kept=kept, markers=[[m.kind, m.path, m.root] for m in markers]
    )
    target = owner_path(ctx.path)
    tmp = f"{target}.{ctx.run_id}.tmp"
    script = (
        f"mkdir -p -- {quote(posixpath.dirname(target))} && "
        f"printf '%s\\n' {quote(json.dumps(record))} > {quote(tmp)} && mv -f -- {quote(tmp)} {quote(target)}"
    )
    res = ctx.run_shell(script, sudo=p.sudo, check=False)
    if not res.ok:
        raise ApplyFailed(f"cannot record the maintenance owner in {target}: {tail(res.stderr or res.stdout, 300)}")


def _drop_owner(ctx: Context, p: _MaintenanceParams, run_id: str | None) -> None:
    """Remove the owner record (only while ``run_id`` owns it, when given)."""
    target = quote(owner_path(ctx.path))
    guard = f"grep -qF -- {quote(run_id)} {target} 2>/dev/null && " if run_id else ""
    ctx.run_shell(f"{guard}rm -f -- {target}; true", sudo=p.sudo, check=False)


def recorded_markers(record: dict[str, Any]) -> list[Marker]:
    """The markers an owner record lists."""
    out: list[Marker] = []
    for item in record.get("markers") or []:
        if isinstance(item, list) and len(item) == 3 and item[0] in ("flag", "wordpress", "magento", "laravel"):
            out.append(Marker(item[0], str(item[1]), str(item[2])))
    return out


def switch_off_leftover(ctx: Context, leftover: Leftover) -> list[str]:
    """Switch off the markers a gone run left on and drop its record; the paths switched off."""
    p = _MaintenanceParams.model_validate({})
    done: list[str] = []
    for marker in recorded_markers(leftover.record):
        switch_off(ctx, marker, p)
        done.append(marker.path)
    _drop_owner(ctx, p, leftover.run_id)
    return done


def switch_on(
    ctx: Context, marker: Marker, p: _MaintenanceParams, retry_after: int, content: bytes | None = None
) -> None:
    """Switch one marker on (write the file, or ``artisan down``)."""
    if marker.kind == "laravel":
        res = ctx.run([p.php, "artisan", "down", f"--retry={retry_after}"], cwd=marker.root, sudo=p.sudo, check=False)
        if not res.ok:
            raise ApplyFailed(f"php artisan down failed (exit {res.exit_code}): {tail(res.stderr or res.stdout, 300)}")
        return
    if content is None:
        content = {"wordpress": WP_MAINTENANCE, "magento": b""}.get(marker.kind) or _flag_text(ctx, retry_after)
    if marker.kind == "flag":
        parent = marker.path.rsplit("/", 1)[0] or "/"
        ctx.run(["mkdir", "-p", "--", parent], sudo=p.sudo)
    ctx.put(content, marker.path, mode=0o644)


def switch_off(ctx: Context, marker: Marker, p: _MaintenanceParams) -> bytes | None:
    """Switch one marker off; return the file's previous content (for re-enabling). Idempotent.

    Laravel uses ``artisan up`` and falls back to removing the state file when the
    application cannot boot (a rollback must work on a broken release).
    """
    if marker.kind == "laravel":
        if not ctx.run(["test", "-e", marker.path], sudo=p.sudo, check=False).ok:
            return None  # already up
        res = ctx.run([p.php, "artisan", "up"], cwd=marker.root, sudo=p.sudo, check=False)
        if res.ok:
            return None
    old = ctx.run(["cat", "--", marker.path], sudo=p.sudo, check=False)
    rm = [marker.path]
    if marker.kind == "laravel":
        rm.append(f"{marker.root}/storage/framework/maintenance.php")
    res = ctx.run(["rm", "-f", "--", *rm], sudo=p.sudo, check=False)
    if not res.ok:
        raise ApplyFailed(f"cannot remove {marker.path}: {tail(res.stderr, 300)}")
    return old.stdout.encode() if old.ok else None


# ---------------------------------------------------------------------------- enable


class MaintenanceEnableParams(_MaintenanceParams):
    """Parameters of ``maintenance.enable``."""

    keep: bool = Field(False, description="Keep maintenance on after a successful stage (never after a failure)")
    retry_after: int = Field(300, ge=1, description="Seconds clients should wait (Laravel --retry; flag file info)")


@dataclass(frozen=True)
class _EnablePlan:
    """What ``maintenance.enable`` will do: switch ``off`` markers on, take ``taken`` over."""

    off: list[Marker]
    taken: list[Marker]
    leftover: Leftover | None = None


class MaintenanceEnable(Action[MaintenanceEnableParams]):
    """Switch maintenance mode on; it is switched off again at the end of the stage (rollback/finalize).

    Maintenance left on by a run that is gone is taken over: switched off at the end of the stage.
    """

    name = "maintenance.enable"
    Params = MaintenanceEnableParams
    summary = "Switch maintenance mode on (WordPress, Magento, Laravel, nginx flag); off again at stage end."
    rollback_kind = "undo"

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        return [site_probe(ctx, self.params), OwnershipProbe(ctx.path)]

    def check(self, ctx: Context) -> Check:
        on, off = _state(ctx, self.params, self.name)
        left = find_leftover(ctx) if on else None
        if left is not None:
            reason = (
                f"maintenance is on, left by run {left.run_id} ({left.why}): "
                f"{'would take it over' if ctx.check_mode else 'taking it over'}, "
                "it is switched off at the end of the stage"
            )
            if off:
                reason += "; would switch on: " + ", ".join(m.label for m in off)
            diff = "".join(f"+{m.path}\n" for m in off)
            return Check.change(reason, diff=diff or None, snapshot=_EnablePlan(off, on, left))
        if not off:
            return Check.ok("maintenance is on: " + ", ".join(m.label for m in on))
        diff = "".join(f"+{m.path}\n" for m in off)
        return Check.change(
            "would switch on: " + ", ".join(m.label for m in off), diff=diff, snapshot=_EnablePlan(off, [])
        )

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        p = self.params
        plan: _EnablePlan = check.snapshot
        _write_owner(ctx, p, [*plan.taken, *plan.off])  # before anything is on: a killed run is always owned
        changes: list[Change] = []
        if plan.leftover is not None:
            left = plan.leftover
            ctx.event(
                "maintenance.leftover",
                step=self.step_id,
                previous_run=left.run_id,
                why=left.why,
                markers=[m.path for m in plan.taken],
                outcome="taken-over",
            )
            for marker in plan.taken:
                before = f"on (run {left.run_id})"
                changes.append(
                    Change(marker.path, f"{marker.label} taken over", before=before, after="on", undo=marker)
                )
        for marker in plan.off:
            try:
                switch_on(ctx, marker, p, p.retry_after)
            except Exception:
                self._off(ctx, changes)  # our own partial work, and what we took over
                raise
            changes.append(Change(marker.path, f"{marker.label} on", before="off", after="on", undo=marker))
        ctx.record(
            maintenance="on",
            markers=[c.target for c in changes],
            taken_over_from=plan.leftover.run_id if plan.leftover else None,
        )
        return changes

    def _off(self, ctx: Context, changes: list[Change]) -> list[str]:
        errors: list[str] = []
        for change in reversed(changes):
            try:
                switch_off(ctx, change.undo, self.params)
            except ApplyFailed as exc:
                errors.append(exc.message)
        if not errors:
            _drop_owner(ctx, self.params, ctx.run_id)
        return errors

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Switch off exactly what this step switched on (and what it took over)."""
        errors = self._off(ctx, changes)
        if errors:
            raise RollbackFailed("; ".join(errors))

    def finalize(self, ctx: Context, changes: list[Change], ok: bool) -> None:
        """At the end of the stage: maintenance off, unless ``keep`` and the stage succeeded."""
        if ok and self.params.keep:
            _write_owner(ctx, self.params, [c.undo for c in changes], kept=True)
            return
        errors = self._off(ctx, changes)
        ctx.event("maintenance.finalized", step=self.step_id, maintenance="off", ok=ok, errors=errors or None)
        if errors:
            raise ApplyFailed("could not switch maintenance off: " + "; ".join(errors), action=self.name)


# ---------------------------------------------------------------------------- disable


class MaintenanceDisableParams(_MaintenanceParams):
    """Parameters of ``maintenance.disable``."""

    retry_after: int = Field(300, ge=1, description="Used when rollback switches maintenance on again")


@dataclass(frozen=True)
class _DisablePlan:
    """What ``maintenance.disable`` will switch off, and whose maintenance it was."""

    on: list[Marker]
    owner: dict[str, Any]
    leftover: Leftover | None = None


class MaintenanceDisable(Action[MaintenanceDisableParams]):
    """Switch maintenance mode off (every marker found). Rollback switches it on again."""

    name = "maintenance.disable"
    Params = MaintenanceDisableParams
    summary = "Switch maintenance mode off (reversible: rollback switches it on again)."
    rollback_kind = "undo"

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        return [site_probe(ctx, self.params), OwnershipProbe(ctx.path)]

    def check(self, ctx: Context) -> Check:
        on, _ = _state(ctx, self.params, self.name)
        if on:
            own = ctx.probe(OwnershipProbe(ctx.path))
            left = find_leftover(ctx, own)
            diff = "".join(f"-{m.path}\n" for m in on)
            reason = "would switch off: " + ", ".join(m.label for m in on)
            if left is not None:
                reason += f" (left on by run {left.run_id}, which is gone: {left.why})"
            return Check.change(reason, diff=diff, snapshot=_DisablePlan(on, own.owner, left))
        enabling = self._pending_enable(ctx)
        if enabling is not None:
            return Check.change(
                f"would switch off the maintenance mode that step {enabling} switches on", snapshot=_DisablePlan([], {})
            )
        return Check.ok("maintenance is off")

    @staticmethod
    def _pending_enable(ctx: Context) -> str | None:
        """Plan mode: an earlier maintenance.enable step of this environment that would switch it on."""
        for res in reversed(ctx.prior):
            if (
                res.env == ctx.env.name
                and res.action == MaintenanceEnable.name
                and res.status is StepStatus.WOULD_CHANGE
            ):
                return res.step
        return None

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        plan: _DisablePlan = check.snapshot
        if plan.leftover is not None:
            ctx.event(
                "maintenance.leftover",
                step=self.step_id,
                previous_run=plan.leftover.run_id,
                why=plan.leftover.why,
                markers=[m.path for m in plan.on],
                outcome="switched-off",
            )
        changes: list[Change] = []
        for marker in plan.on:
            old = switch_off(ctx, marker, self.params)
            changes.append(
                Change(marker.path, f"{marker.label} off", before="on", after="off", undo=(marker, old, plan.owner))
            )
        if plan.owner:
            _drop_owner(ctx, self.params, None)  # maintenance is off: nobody owns it any more
        ctx.record(
            maintenance="off",
            markers=[c.target for c in changes],
            left_by=plan.leftover.run_id if plan.leftover else None,
        )
        return changes

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Switch maintenance on again, as it was (with its owner record)."""
        owner: dict[str, Any] = {}
        for change in reversed(changes):
            marker, old, owner = change.undo
            switch_on(
                ctx, marker, self.params, self.params.retry_after, content=old if marker.kind != "laravel" else None
            )
        if owner:
            target = owner_path(ctx.path)
            ctx.put((json.dumps(owner) + "\n").encode(), target, mode=0o644)


__all__ = [
    "App",
    "ExistingPaths",
    "MaintenanceDisable",
    "MaintenanceEnable",
    "Marker",
    "detect_app",
    "flag_path",
    "layout_probe",
    "maintenance_snippet",
    "site_probe",
]


def maintenance_snippet(flag: str, retry_after: int = 300) -> str:
    """The nginx snippet answering 503 with Retry-After while ``flag`` exists (also in docs/actions-site.md)."""
    if not flag.startswith("/") or any(c in flag for c in " \t\n;{}\"'$\\"):
        raise ValueError(f"flag path must be an absolute path without spaces or nginx syntax: {flag!r}")
    return (
        "# Maintenance mode: answer 503 while the flag file exists.\n"
        f"if (-f {flag}) {{\n"
        "    return 503;\n"
        "}\n"
        "error_page 503 @maintenance;\n"
        "location @maintenance {\n"
        f"    add_header Retry-After {int(retry_after)} always;\n"
        "    default_type text/plain;\n"
        '    return 503 "Down for maintenance, back soon.\\n";\n'
        "}\n"
    )
