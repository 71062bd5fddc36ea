"""``backup.verify``: prove a backup restores (checksums, scratch restore, row counts, archive listing)."""

from __future__ import annotations

import secrets
from typing import Any

from pydantic import Field

from maintkit._text import tail
from maintkit.action import Action, Context
from maintkit.errors import ApplyFailed, CheckFailed, MaintkitError
from maintkit.probes import Probe
from maintkit.probes.backup import BackupListing, Manifest
from maintkit.results import Change, Check

from .codec import item_compression, missing_decoders
from .common import backup_dir, file_facts, format_age, manifest_bytes, select, utcnow_iso
from .create import tools_probe
from .db import ConnectionOverride, DbClient, connect, spec_from_item
from .files import count_script

SCRATCH_PREFIX = "maint_verify_"


def compare_tables(
    expected: dict[str, Any], kinds: dict[str, str], counts: dict[str, int], tolerance: float
) -> list[str]:
    """Problems between a manifest's table list and what a database holds (empty list: they agree)."""
    problems: list[str] = []
    missing = sorted(set(expected) - set(kinds))
    extra = sorted(set(kinds) - set(expected))
    if missing:
        problems.append(f"missing tables: {', '.join(missing[:20])}")
    if extra:
        problems.append(f"unexpected tables: {', '.join(extra[:20])}")
    for name, facts in sorted(expected.items()):
        if name not in kinds or facts.get("type") == "view" or name not in counts:
            continue
        got = counts[name]
        if "rows" in facts:
            low = high = int(facts["rows"])
        elif "rows_min" in facts:
            low, high = int(facts["rows_min"]), int(facts["rows_max"])
        else:
            continue
        slack = int(high * tolerance)
        if not low - slack <= got <= high + slack:
            want = str(low) if low == high else f"{low}..{high}"
            problems.append(f"table {name}: {got} rows, expected {want}")
    return problems


def db_state(
    ctx: Context, client: DbClient, db: str, expected: dict[str, Any]
) -> tuple[dict[str, str], dict[str, int]]:
    """(name -> type, name -> exact rows of the tables the manifest counted) of database ``db``."""
    tables = client.tables(ctx, db)
    kinds = {name: kind for name, (kind, _) in tables.items()}
    to_count = [
        n
        for n, facts in expected.items()
        if n in kinds and kinds[n] == "table" and ("rows" in facts or "rows_min" in facts)
    ]
    return kinds, client.count_rows(ctx, db, to_count)


class BackupVerifyParams(ConnectionOverride):
    """Parameters of ``backup.verify``."""

    backup: str = Field("latest", description="latest (newest regular backup) or a backup id")
    backup_dir: str | None = Field(None, description="Default: vars.backup_dir, else <path>/.maint/backups")
    row_tolerance: float = Field(0.0, ge=0, le=1, description="Allowed relative difference of row counts")
    timeout: float | None = Field(None, gt=0, description="Seconds a restore may take (default: the env's)")


class BackupVerify(Action[BackupVerifyParams]):
    """Verify a backup for real: checksums match the manifest, each database dump restores into a scratch
    database (``maint_verify_<random>``, always dropped) with the same tables and row counts, and each
    file archive lists completely with the same number of entries. Then marks the manifest ``verified_at``.

    The database user needs the right to create and drop the scratch databases, e.g.
    ``GRANT ALL ON `maint\\_verify\\_%`.* TO 'shop'@'localhost'``.
    """

    name = "backup.verify"
    Params = BackupVerifyParams
    summary = "Verify a backup: checksums, restore into a scratch database, compare tables and row counts."
    rollback_kind = "noop"
    rollback_reason = "the verification really happened; its mark stays"
    depends_on_previous = True

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        try:
            return [BackupListing(backup_dir(ctx, self.params.backup_dir)), tools_probe()]
        except CheckFailed:
            return []

    def check(self, ctx: Context) -> Check:
        directory = backup_dir(ctx, self.params.backup_dir)
        manifest = select(ctx.probe(BackupListing(directory)), self.params.backup)
        age = format_age(_now() - manifest.created)
        if manifest.verified:
            ctx.record(verified={"id": manifest.id, "verified_at": manifest.data.get("verified_at")})
            return Check.ok(f"backup {manifest.id} ({age} old) was verified at {manifest.data.get('verified_at')}")
        missing = missing_decoders(manifest.items, ctx.probe(tools_probe()))
        if missing:
            raise CheckFailed(f"{ctx.env.display_host} lacks {', '.join(missing)}, which backup {manifest.id} needs")
        return Check.change(
            f"backup {manifest.id} ({age} old, {manifest.describe()}) is not verified", snapshot=manifest
        )

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        manifest: Manifest = check.snapshot
        problems = self._checksums(ctx, manifest)
        results: dict[str, Any] = {"checksums": "ok" if not problems else "mismatch"}
        if not problems:
            for item in manifest.db_items():
                problems += self._database(ctx, manifest, item, results)
            for item in manifest.file_items():
                problems += self._archive(ctx, manifest, item, results)
        if problems:
            raise ApplyFailed(
                f"backup {manifest.id} failed verification: " + "; ".join(problems),
                details={"verified": {"id": manifest.id, "ok": False, "problems": problems}},
            )
        data = {**manifest.data, "verified_at": utcnow_iso(), "verification": results}
        ctx.put(manifest_bytes(data), manifest.path("manifest.json"), mode=0o600)
        ctx.record(verified={"id": manifest.id, "ok": True, **results})
        return [Change(manifest.path("manifest.json"), f"backup {manifest.id} verified", after=results)]

    def _checksums(self, ctx: Context, manifest: Manifest) -> list[str]:
        paths = {manifest.path(str(i["file"])): i for i in manifest.items}
        facts = file_facts(ctx, list(paths), self.params.timeout) if paths else {}
        problems = []
        for path, item in paths.items():
            size, digest = facts.get(path, (-1, ""))
            if digest != item.get("sha256") or size != item.get("size"):
                problems.append(f"{item['file']}: sha256/size differ from the manifest")
        return problems

    def _database(self, ctx: Context, manifest: Manifest, item: dict[str, Any], results: dict[str, Any]) -> list[str]:
        spec = spec_from_item(item, self.params)
        scratch = f"{SCRATCH_PREFIX}{secrets.token_hex(4)}"
        tools = ctx.probe(tools_probe())
        with connect(ctx, spec, backup_dir(ctx, self.params.backup_dir), tools) as client:
            try:
                client.create_database(ctx, scratch)
            except MaintkitError as exc:
                return [
                    f"cannot create the scratch database {scratch} ({exc}); grant the backup user CREATE/DROP on "
                    f"{SCRATCH_PREFIX}% databases"
                ]
            try:
                return self._restore_and_compare(ctx, client, manifest, item, scratch, results)
            finally:
                dropped = client.drop_database(ctx, scratch)
                if not dropped.ok:
                    ctx.event("backup.scratch_not_dropped", database=scratch, error=tail(dropped.stderr, 300))

    def _restore_and_compare(
        self,
        ctx: Context,
        client: DbClient,
        manifest: Manifest,
        item: dict[str, Any],
        scratch: str,
        results: dict[str, Any],
    ) -> list[str]:
        path = manifest.path(str(item["file"]))
        script = client.restore_script(
            path, scratch, strip_definers=True, clean=False, compression=item_compression(item)
        )
        kwargs: dict[str, Any] = {"timeout": self.params.timeout} if self.params.timeout else {}
        res = ctx.run_shell(script, env=client.env or None, check=False, **kwargs)
        if not res.ok:
            return [f"db {item['name']}: the dump does not restore: {tail(res.stderr or res.stdout, 500)}"]
        expected = dict(item.get("tables") or {})
        kinds, counts = db_state(ctx, client, scratch, expected)
        problems = [
            f"db {item['name']}: {p}" for p in compare_tables(expected, kinds, counts, self.params.row_tolerance)
        ]
        results[f"db {item['name']}"] = {"tables": len(kinds), "rows": sum(counts.values()), "ok": not problems}
        return problems

    def _archive(self, ctx: Context, manifest: Manifest, item: dict[str, Any], results: dict[str, Any]) -> list[str]:
        path = manifest.path(str(item["file"]))
        kwargs: dict[str, Any] = {"timeout": self.params.timeout} if self.params.timeout else {}
        res = ctx.run_shell(count_script(path, item_compression(item)), check=False, **kwargs)
        if not res.ok or not res.stdout.strip().isdigit():
            return [f"{item['file']}: cannot be listed: {tail(res.stderr or res.stdout, 300)}"]
        entries = int(res.stdout.strip())
        results[str(item["file"])] = {"entries": entries}
        if entries != item.get("entries"):
            return [f"{item['file']}: {entries} entries, the manifest says {item.get('entries')}"]
        return []

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Nothing to undo: the verification really happened; the mark stays true."""


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
