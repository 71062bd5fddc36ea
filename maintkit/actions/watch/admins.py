"""``admins.audit``: administrators compared with an acknowledged baseline (read-only).

WordPress: users with one of ``roles`` or ``capabilities`` (and multisite super admins) read
through the PHP helper, with their 2FA status when a 2FA plugin is named. Magento: the
``admin_user`` table (username, email, is_active, role) read with the mariadb client and an
option file (:mod:`maintkit.actions.mariadb`), never ``~/.my.cnf`` unless nothing is given.

The baseline lives in the series ``admins-baseline``: the first run records it. A difference
(new administrator, changed e-mail, login, roles or capabilities, removed administrator)
fails the step ONCE; later runs keep listing it (medium, in the ``findings`` point and the
reason) without failing, and fail once more every ``realert_hours`` while nobody
acknowledges it. Acknowledging: set ``acknowledge`` to the fingerprint the failure printed
(step parameter or the ``admins_audit`` variable); it only matches that exact set of
administrators, so a value left behind never acknowledges a later change. The new baseline
point names the run and the actor, and the audit log gets an ``admins.acknowledged`` event.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from maintkit.action import Action, Context, Params
from maintkit.actions.mariadb import batch_field, client_argv
from maintkit.actions.watch.common import ADMINS_BASELINE, FINDINGS, findings_point, last_point, write_point
from maintkit.actions.watch.integrity import wp_planner
from maintkit.errors import CheckFailed
from maintkit.identity import current_actor
from maintkit.results import Change, Check

VARS_KEY = "admins_audit"
TFA_PLUGINS: dict[str, dict[str, Any]] = {
    "two-factor": {"meta_keys": ["_two_factor_enabled_providers"]},
    "wordfence": {"table": "wfls_2fa_secrets"},
    "wp-2fa": {"meta_keys": ["wp_2fa_enabled_methods"]},
}
DEFAULT_CAPS = [
    "manage_options",
    "promote_users",
    "create_users",
    "activate_plugins",
    "install_plugins",
    "edit_plugins",
]
COMPARED = ("login", "email", "roles", "caps", "super_admin", "active")
ADVICE_CHANGE = (
    "confirm with the shop owner; if expected, acknowledge it (admins_audit: {acknowledge: FINGERPRINT}); "
    "if not, lock the account, rotate passwords and look for how it happened"
)
ADVICE_2FA = "enable two-factor authentication for this administrator"


class TwoFactor(Params):
    """How to tell that an administrator has 2FA: user meta keys (any non-empty) or a table of user ids."""

    plugin: str = Field("custom", description="two-factor, wordfence, wp-2fa or custom")
    meta_keys: list[str] | None = Field(None, description="User meta keys; non-empty means 2FA is set up")
    table: str | None = Field(None, description="Table (without prefix) with a user_id column")

    def lookup(self) -> dict[str, Any]:
        """The helper's arguments: the plugin's defaults overlaid by what was given."""
        known = TFA_PLUGINS.get(self.plugin, {})
        return {
            "tfa_meta_keys": self.meta_keys if self.meta_keys is not None else known.get("meta_keys", []),
            "tfa_table": self.table if self.table is not None else known.get("table", ""),
        }


class MagentoDb(Params):
    """The Magento database (credentials from an option file on the host)."""

    name: str = Field(..., min_length=1, description="Database name")
    defaults_file: str | None = Field(None, description="MariaDB option file on the host (read instead of any other)")
    user: str | None = Field(None, description="User without password (socket auth); then no option file is read")
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    table_prefix: str = Field("", description="Magento's table prefix (app/etc/env.php)")
    client: str = Field("mariadb", description="mariadb or mysql")

    @field_validator("name", "table_prefix")
    @classmethod
    def _plain(cls, v: str) -> str:
        if v.startswith("-") or any(c in v for c in "`/\n\t\\"):
            raise ValueError("invalid name")
        return v


class AdminsParams(Params):
    """Parameters of ``admins.audit`` (also read from the ``admins_audit`` variable, step parameters winning)."""

    roles: list[str] = Field(default_factory=lambda: ["administrator"], description="WordPress roles audited")
    capabilities: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CAPS), description="Users holding any of these are audited too"
    )
    two_factor: TwoFactor | None = Field(None, description="2FA plugin (a name, or {plugin, meta_keys, table})")
    missing_2fa: Literal["medium", "high"] = Field("medium", description="Severity of an administrator without 2FA")
    magento: MagentoDb | None = Field(None, description="Magento database (default: vars db_name/db_defaults_file)")
    acknowledge: str | None = Field(None, description="Fingerprint of the administrators to accept as the baseline")
    realert_hours: float = Field(168.0, ge=0, description="Fail again after this long unacknowledged (0: never)")
    root: str | None = Field(None, description="WordPress root (default: cms_update.root, else the env path)")
    php: str | None = Field(None, description="PHP CLI on the host (default: cms_update.php, else php)")

    @field_validator("two_factor", mode="before")
    @classmethod
    def _named(cls, v: Any) -> Any:
        return {"plugin": v} if isinstance(v, str) else v


def effective(ctx: Context, params: AdminsParams) -> AdminsParams:
    """The ``admins_audit`` variable of the site/environment under the step's explicit parameters."""
    base = ctx.vars.get(VARS_KEY) or {}
    if not isinstance(base, dict):
        raise CheckFailed(f"variable {VARS_KEY} must be a mapping of admins.audit parameters")
    merged = {**base, **params.model_dump(exclude_unset=True)}
    platform = str(ctx.env.platform or ctx.site.platform)
    if "magento" not in merged and platform == "magento" and isinstance(ctx.vars.get("db_name"), str):
        merged["magento"] = {"name": ctx.vars["db_name"], "defaults_file": ctx.vars.get("db_defaults_file")}
    try:
        return AdminsParams.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise CheckFailed(f"invalid admins.audit settings ({VARS_KEY} variable and step): {problems}") from None


# ----------------------------------------------------------------------------- reading
def wordpress_admins(ctx: Context, p: AdminsParams) -> dict[str, dict[str, Any]]:
    """The audited WordPress users by ``wordpress:<id>`` (read-only helper call)."""
    planner = wp_planner(ctx, p.root, p.php)
    args: dict[str, Any] = {"readonly": True, "roles": p.roles, "capabilities": p.capabilities}
    if p.two_factor is not None:
        args.update(p.two_factor.lookup())
    data = planner.call(ctx, "admins", args, uploaded=False)
    if not data.get("ok"):
        raise CheckFailed(f"cannot read the WordPress administrators at {planner.root(ctx)}: {data.get('error')}")
    out: dict[str, dict[str, Any]] = {}
    for u in data.get("admins", []):
        out[f"wordpress:{u['id']}"] = {
            "login": str(u.get("login", "")),
            "email": str(u.get("email", "")),
            "roles": sorted(str(r) for r in u.get("roles", [])),
            "caps": sorted(str(c) for c in u.get("caps", [])),
            "super_admin": bool(u.get("super_admin")),
            "registered": str(u.get("registered", "")),
            "two_factor": u.get("two_factor"),
        }
    return out


def magento_sql(prefix: str) -> str:
    """The query of Magento's admin users with their role (identifiers validated, nothing else interpolated)."""
    users, roles = f"`{prefix}admin_user`", f"`{prefix}authorization_role`"
    return (
        "SELECT u.user_id, u.username, u.email, u.is_active, COALESCE(p.role_name, '') "  # noqa: S608
        f"FROM {users} u LEFT JOIN {roles} r ON r.user_id = u.user_id AND r.user_type = '2' "
        f"LEFT JOIN {roles} p ON p.role_id = r.parent_id ORDER BY u.user_id;\n"
    )


def magento_admins(ctx: Context, db: MagentoDb) -> dict[str, dict[str, Any]]:
    """Magento's admin users by ``magento:<user_id>``."""
    argv = client_argv(db.client, db.defaults_file, explicit_user=bool(db.user))
    argv += [f"--{k}={v}" for k, v in (("host", db.host), ("port", db.port), ("user", db.user)) if v]
    argv += ["--batch", "--skip-column-names", "--", db.name]
    res = ctx.run(argv, stdin=magento_sql(db.table_prefix).encode(), check=False)
    if not res.ok:
        raise CheckFailed(f"cannot read Magento's admin users from {db.name}: {(res.stderr or res.stdout)[-400:]}")
    out: dict[str, dict[str, Any]] = {}
    for line in res.stdout.splitlines():
        cols = [batch_field(c) for c in line.split("\t")]
        if len(cols) < 5 or not cols[0].isdigit():
            continue
        role = [] if cols[4] in ("", "NULL") else [cols[4]]
        out[f"magento:{cols[0]}"] = {"login": cols[1], "email": cols[2], "roles": role, "active": cols[3] == "1"}
    return out


def gather(ctx: Context, p: AdminsParams) -> dict[str, dict[str, Any]]:
    """Every audited administrator of this environment."""
    platform = str(ctx.env.platform or ctx.site.platform)
    if platform == "magento" and p.magento is None:
        raise CheckFailed("admins.audit on Magento needs the database: set magento: {name, defaults_file}")
    admins: dict[str, dict[str, Any]] = {}
    if platform == "wordpress":
        admins.update(wordpress_admins(ctx, p))
    if p.magento is not None:
        admins.update(magento_admins(ctx, p.magento))
    return admins


# ----------------------------------------------------------------------------- comparing
def fingerprint(admins: dict[str, dict[str, Any]]) -> str:
    """A short digest of the compared facts of a set of administrators (what ``acknowledge`` names)."""
    facts = {k: {f: v.get(f) for f in COMPARED if f in v} for k, v in sorted(admins.items())}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def _who(key: str, rec: dict[str, Any]) -> str:
    return f"{rec.get('login', '?')} <{rec.get('email', '')}> ({key.split(':', 1)[0]})"


def differences(base: dict[str, dict[str, Any]], now: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    """New, changed and removed administrators: ``{signature, title}`` each, in key order."""
    out: list[dict[str, str]] = []
    for key in sorted(set(base) | set(now)):
        old, new = base.get(key), now.get(key)
        if old is None and new is not None:
            title = f"new administrator {_who(key, new)}, roles {', '.join(new.get('roles', [])) or '-'}"
        elif new is None and old is not None:
            title = f"administrator removed: {_who(key, old)}"
        elif old is not None and new is not None:
            changed = [f for f in COMPARED if f in new and old.get(f) != new.get(f)]
            if not changed:
                continue
            what = "; ".join(f"{f} {_show(old.get(f))} -> {_show(new.get(f))}" for f in changed)
            title = f"administrator {_who(key, new)} changed: {what}"
        else:
            continue
        digest = hashlib.sha256(json.dumps([key, old, new], sort_keys=True, default=str).encode()).hexdigest()
        out.append({"signature": digest[:24], "title": title})
    return out


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _due(alerted: dict[str, str], signature: str, realert_hours: float) -> bool:
    """Whether a difference must fail the step now: never alerted, or alerted long enough ago."""
    when = alerted.get(signature)
    if when is None:
        return True
    if realert_hours <= 0:
        return False
    try:
        last = datetime.fromisoformat(when)
    except ValueError:
        return True
    return datetime.now(UTC) - last >= timedelta(hours=realert_hours)


def _two_factor_items(now: dict[str, dict[str, Any]], p: AdminsParams) -> list[dict[str, Any]]:
    if p.two_factor is None:
        return []
    return [
        {
            "severity": p.missing_2fa,
            "title": f"administrator {_who(key, rec)} has no two-factor authentication ({p.two_factor.plugin})",
            "advice": ADVICE_2FA,
        }
        for key, rec in sorted(now.items())
        if rec.get("two_factor") is False
    ]


# ----------------------------------------------------------------------------- the action
def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _baseline_point(kind: str, admins: dict[str, Any], alerted: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "admins": admins, "fingerprint": fingerprint(admins), "alerted": alerted, **extra}


class AdminsAudit(Action[AdminsParams]):
    """Compare the administrators with the acknowledged baseline; fail once per unacknowledged change."""

    name = "admins.audit"
    Params = AdminsParams
    summary = "WordPress administrators and Magento admin users against an acknowledged baseline (read-only)."
    rollback_kind = "noop"
    rollback_reason = "a check changes nothing (the baseline lives in the state store)"

    def check(self, ctx: Context) -> Check:
        p = effective(ctx, self.params)
        platform = str(ctx.env.platform or ctx.site.platform)
        if platform not in ("wordpress", "magento") and p.magento is None:
            return Check.ok(f"skipped: admins.audit covers WordPress and Magento (platform {platform})")
        now = gather(ctx, p)
        fp = fingerprint(now)
        tfa = _two_factor_items(now, p)
        ctx.record(administrators=len(now), fingerprint=fp)
        base = last_point(ctx, ADMINS_BASELINE)
        if base is None or not isinstance(base.get("admins"), dict):
            return self._first(ctx, p, now, tfa)
        diffs = differences(base["admins"], now)
        notes: list[str] = []
        if p.acknowledge and diffs and p.acknowledge == fp:
            self._acknowledge(ctx, now, diffs)
            notes.append(f"acknowledged {len(diffs)} change(s): the {len(now)} current administrators are the baseline")
            base, diffs = _baseline_point("acknowledged", now, {}), []
        elif p.acknowledge and p.acknowledge != fp:
            notes.append(f"acknowledge {p.acknowledge} ignored: the current administrators have fingerprint {fp}")
        return self._judge(ctx, p, base, now, diffs, tfa, notes)

    def _first(self, ctx: Context, p: AdminsParams, now: dict[str, Any], tfa: list[dict[str, Any]]) -> Check:
        write_point(ctx, ADMINS_BASELINE, _baseline_point("recorded", now, {}, by=current_actor()))
        self._findings(ctx, tfa)
        verb = "would record the baseline" if ctx.check_mode else "baseline recorded"
        reason = f"{verb} ({len(now)} administrators)"
        return self._ok_or_fail(tfa, reason)

    def _acknowledge(self, ctx: Context, now: dict[str, Any], diffs: list[dict[str, str]]) -> None:
        by = current_actor()
        titles = [d["title"] for d in diffs]
        write_point(ctx, ADMINS_BASELINE, _baseline_point("acknowledged", now, {}, by=by, changes=titles))
        ctx.event("admins.acknowledged", step=ctx.step_id, fingerprint=fingerprint(now), by=by, changes=titles)
        ctx.record(acknowledged={"fingerprint": fingerprint(now), "by": by, "changes": titles})

    def _judge(
        self,
        ctx: Context,
        p: AdminsParams,
        base: dict[str, Any],
        now: dict[str, Any],
        diffs: list[dict[str, str]],
        tfa: list[dict[str, Any]],
        notes: list[str],
    ) -> Check:
        fp = fingerprint(now)
        alerted = {str(k): str(v) for k, v in (base.get("alerted") or {}).items()}
        due = {d["signature"] for d in diffs if _due(alerted, d["signature"], p.realert_hours)}
        advice = ADVICE_CHANGE.replace("FINGERPRINT", fp)
        items = [
            {"severity": "high", "title": d["title"], "advice": advice}
            if d["signature"] in due
            else {"severity": "medium", "title": f"{d['title']} (unacknowledged, alerted {alerted[d['signature']]})",
                  "advice": advice}
            for d in diffs
        ]  # fmt: skip
        self._findings(ctx, items + tfa)
        kept = {d["signature"]: alerted[d["signature"]] for d in diffs if d["signature"] not in due}
        stamped = {**kept, **{s: _now() for s in due}}
        if stamped != alerted:
            write_point(ctx, ADMINS_BASELINE, _baseline_point("alerted", base["admins"], stamped))
        titles = "; ".join(d["title"] for d in diffs)
        if due:
            raise CheckFailed(
                f"{len(diffs)} administrator change(s) since the baseline: {titles}. If expected, acknowledge "
                f"them with admins_audit: {{acknowledge: {fp}}}" + "".join(f"; {n}" for n in notes),
                details={"changes": [d["title"] for d in diffs], "fingerprint": fp},
            )
        if diffs:
            notes.insert(0, f"{len(diffs)} unacknowledged administrator change(s), already alerted: {titles} "
                            f"(acknowledge: {fp})")  # fmt: skip
        matched = not diffs and not any(n.startswith("acknowledged") for n in notes)
        reason = "; ".join([f"{len(now)} administrators match the baseline"] * matched + notes)
        return self._ok_or_fail(tfa, reason)

    def _findings(self, ctx: Context, items: list[dict[str, Any]]) -> None:
        point = findings_point("admins", items)
        ctx.record(findings=point["items"], findings_count=point["count"])
        write_point(ctx, FINDINGS, point)

    @staticmethod
    def _ok_or_fail(tfa: list[dict[str, Any]], reason: str) -> Check:
        if tfa:
            text = "; ".join(i["title"] for i in tfa)
            if any(i["severity"] == "high" for i in tfa):
                raise CheckFailed(f"{reason}; {text}", details={"two_factor": [i["title"] for i in tfa]})
            reason += f"; warning: {text}"
        return Check.ok(reason)

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Nothing to undo: admins.audit never changes anything on the host."""


__all__ = ["AdminsAudit", "AdminsParams", "MagentoDb", "TwoFactor", "differences", "fingerprint"]
