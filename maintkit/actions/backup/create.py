"""``backup.create``: dump databases and archive files into a new backup with a manifest."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from maintkit._text import tail as text_tail
from maintkit.action import Action, Context, Params
from maintkit.errors import ApplyFailed, CheckFailed, MaintkitError, VerifyFailed
from maintkit.probes import Probe
from maintkit.probes.backup import BackupListing, FileFacts, Manifest, Tools, item_summary
from maintkit.results import Change, Check
from maintkit.state import index
from maintkit.transport.base import join, quote

from .codec import choose_compression
from .common import (
    backup_dir,
    file_facts,
    format_age,
    manifest_bytes,
    new_backup_id,
    parse_duration,
    timeout_kwargs,
    utcnow_iso,
)
from .db import DatabaseSpec, connect, missing_tools
from .dump import ShellRunner, dump_in_one, dump_stepwise
from .files import archive_name, count_script, create_script, files_item, normalize_paths
from .prepare import FolderPrep

ALL_TOOLS = ("mariadb-dump", "mysqldump", "mariadb", "mysql", "gzip", "pg_dump", "pg_restore", "psql", "zstd", "tar")


@dataclass
class BackupJob:
    """What one backup contains: databases and/or file paths (relative to ``base``)."""

    databases: list[DatabaseSpec] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    base: str = ""
    excludes: list[str] = field(default_factory=list)
    compression: str = "auto"
    #: "low": the dumps and the archive at low priority (``db.LOW_PRIORITY_SETUP``); "normal"
    priority: str = "normal"

    def describe(self) -> str:
        """``db shop, files wp-content`` for messages."""
        parts = [f"db {d.name}" for d in self.databases]
        if self.paths:
            parts.append("files " + ", ".join(self.paths))
        return ", ".join(parts)

    def covered_by(self, manifest: Manifest) -> bool:
        """True when ``manifest`` holds at least everything this job would back up."""
        names = {str(i.get("name")) for i in manifest.db_items()}
        if any(d.name not in names for d in self.databases):
            return False
        if self.paths:  # files of this very folder: a backup of the site's old path does not count
            items = [i for i in manifest.file_items() if not self.base or i.get("base") == self.base]
            have = {p for i in items for p in i.get("paths", [])}
            return "." in have or all(p in have for p in self.paths)
        return True


def tools_probe() -> Tools:
    """The probe telling which backup tools the host has."""
    return Tools(ALL_TOOLS)


def missing_for(job: BackupJob, tools: frozenset[str]) -> list[str]:
    """Tools the job needs that the host lacks."""
    out: list[str] = []
    for db in job.databases:
        out += [t for t in missing_tools(db.engine, tools) if t not in out]
    if job.paths:
        if "tar" not in tools:
            out.append("tar")
        if "gzip" not in tools and "gzip" not in out:
            out.append("gzip")
    compressed = job.paths or any(db.engine != "postgresql" for db in job.databases)
    if compressed and job.compression == "zstd" and "zstd" not in tools:
        out.append("zstd")
    return out


# ---------------------------------------------------------------------------------------------
# writing a backup


def archive_files(
    ctx: Context,
    job: BackupJob,
    tools: frozenset[str],
    workdir: str,
    timeout: float | None,
    run_shell: ShellRunner | None = None,
) -> dict[str, Any]:
    """Archive the job's paths into ``workdir``; return the manifest item (without size/sha256).

    ``run_shell`` runs the archive (default :meth:`Context.run_shell`)."""
    compression = choose_compression(job.compression, tools)
    name = archive_name(compression)
    out = f"{workdir}/{name}"
    res = (run_shell or ctx.run_shell)(
        create_script(job.base, job.paths, job.excludes, compression, out, low_priority=job.priority == "low"),
        check=False,
        **timeout_kwargs(timeout),
    )
    if not res.ok:
        raise ApplyFailed(f"archiving files failed ({res.why}): {text_tail(res.stderr or res.stdout, 800)}")
    counted = ctx.run_shell(count_script(out, compression), check=False, **timeout_kwargs(timeout))
    if not counted.ok or not counted.stdout.strip().isdigit():
        raise ApplyFailed(f"cannot read back the new archive {out}: {text_tail(counted.stderr, 400)}")
    return files_item(name, compression, job.base, job.paths, job.excludes, int(counted.stdout.strip()))


#: the probes to read in the round trip of the rename that completes a backup, given its manifest
ReadAfter = Callable[[Manifest], Sequence[Probe[Any]]]


def write_backup(
    ctx: Context,
    job: BackupJob,
    directory: str,
    tools: frozenset[str],
    *,
    kind: str = "backup",
    note: str | None = None,
    timeout: float | None = None,
    read_after: ReadAfter | None = None,
) -> Manifest:
    """Write a complete backup (``<dir>/<id>.partial`` renamed to ``<dir>/<id>`` at the end).

    The folders are made (:class:`~.prepare.FolderPrep`) in the round trip of the first
    command that writes into them: the first database's credentials file or dump, else the
    files archive. ``read_after``: the probes (given the new backup's manifest) read in the
    same round trip as the final rename, kept for verify
    (:meth:`~maintkit.action.Context.run_and_probe`; only when nothing changes after it).
    On any failure the partial directory is removed (once it is this backup's own) and
    ApplyFailed raised; a failure to make the folders raises that command's own CommandFailed.
    """
    created = datetime.now(UTC)
    bid = new_backup_id(created)
    final, part = f"{directory}/{bid}", f"{directory}/{bid}.partial"
    prep = FolderPrep(ctx, directory, part)
    try:
        items = _write_items(ctx, job, tools, prep, timeout)
        data = {
            "format": 1,
            "id": bid,
            "site": ctx.site.name,
            "env": ctx.env.name,
            "host": ctx.env.display_host,
            "kind": kind,
            "note": note,
            "run_id": ctx.run_id,
            "created": created.isoformat(timespec="seconds"),
            "finished": utcnow_iso(),
            "size": sum(int(i["size"]) for i in items),
            "items": items,
            "verified_at": None,
        }
        manifest = Manifest(bid, data, final)
        _finish(ctx, part, final, manifest_bytes(data), read_after(manifest) if read_after else ())
    except MaintkitError as exc:
        if prep.done:  # never a folder this backup did not make (a clash of the .partial name)
            ctx.run(["rm", "-rf", "--", part], check=False)
        if isinstance(exc, ApplyFailed) or exc is prep.failure:
            raise
        raise ApplyFailed(f"backup {bid} failed: {exc}") from None
    return manifest


def _write_items(
    ctx: Context, job: BackupJob, tools: frozenset[str], prep: FolderPrep, timeout: float | None
) -> list[dict[str, Any]]:
    """Every item of the job written into ``prep.part``, with its size and sha256; the folders
    made in front of the first command that writes (or on their own when nothing does)."""
    part = prep.part
    items: list[dict[str, Any]] = []
    compression = choose_compression(job.compression, tools)
    low = job.priority == "low"
    for spec in job.databases:
        opened = connect(
            ctx, spec, prep.directory, tools, run_shell=prep.run_shell, compression=compression, low_priority=low
        )
        with opened as client:
            # MariaDB/MySQL: one round trip, the dump's size and sha256 included
            dump = dump_in_one if client.mysql else dump_stepwise
            items.append(dump(ctx, client, part, timeout, prep.run_shell))
    if job.paths:
        items.append(archive_files(ctx, job, tools, part, timeout, prep.run_shell))
    prep.ensure()  # nothing was written: the folders alone, before the manifest
    unread = [i for i in items if "size" not in i]
    facts = file_facts(ctx, [f"{part}/{i['file']}" for i in unread], timeout)
    for item in unread:
        item["size"], item["sha256"] = facts[f"{part}/{item['file']}"]
    return items


def _finish(ctx: Context, part: str, final: str, manifest: bytes, read_after: Sequence[Probe[Any]]) -> None:
    """The manifest, then the rename that makes the backup whole, in one round trip (the folder
    is private and still .partial: the manifest needs no atomic write of its own); with
    ``read_after``, those probes are read in the same round trip after the rename."""
    finish = f"umask 077 && cat > {quote(part + '/manifest.json')} && {join(['mv', '-T', '--', part, final])}"
    if read_after:
        ctx.run_and_probe(finish, read_after, stdin=manifest)
    else:
        ctx.run_shell(finish, stdin=manifest)


def item_facts(manifest: Manifest) -> FileFacts:
    """The probe of the size and sha256 of a backup's items (the files its manifest names)."""
    return FileFacts(tuple(manifest.path(str(i["file"])) for i in manifest.items))


def record_of(manifest: Manifest, directory: str) -> dict[str, Any]:
    """What ctx.record(backup=...) keeps for reports."""
    return {
        "id": manifest.id,
        "dir": directory,
        "size": manifest.size,
        "created": manifest.data.get("created"),
        "kind": manifest.kind,
        "items": [item_summary(i) for i in manifest.items],
    }


# ---------------------------------------------------------------------------------------------
# backups earlier runs took (the store's index), wherever they ran


def indexed_backups(ctx: Context, limit: timedelta, now: datetime) -> list[dict[str, Any]]:
    """Backups of this site environment that the index records as younger than ``limit``, newest first."""
    try:
        entries = index.backups(ctx.options.history, ctx.site.name, ctx.env.name)
    except ValueError:  # a name the index cannot hold: nothing was recorded
        return []
    fresh = []
    for entry in entries:
        created = _aware(entry.get("created"))
        if entry.get("id") and entry.get("dir") and created is not None and now - created < limit:
            fresh.append(entry)
    fresh.sort(key=lambda e: str(e.get("created")), reverse=True)
    return fresh


def _aware(value: Any) -> datetime | None:
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def fresh_on_host(
    ctx: Context, job: BackupJob, entries: list[dict[str, Any]], limit: timedelta, now: datetime
) -> tuple[Manifest | None, str, list[str]]:
    """The first indexed backup still on the host (its manifest read there) that covers ``job``, and its folder.

    Also the ids the index records but the host no longer has: those do not count.
    """
    gone: list[str] = []
    for entry in entries:
        manifest = ctx.probe(BackupListing(str(entry["dir"]))).get(str(entry["id"]))
        if manifest is None:
            gone.append(str(entry["id"]))
        elif job.covered_by(manifest) and now - manifest.created < limit:
            return manifest, str(entry["dir"]), gone
    return None, "", gone


# ---------------------------------------------------------------------------------------------
# the action


class BackupCreateParams(Params):
    """Parameters of ``backup.create``."""

    database: bool | str | DatabaseSpec | None = Field(
        None, description="true: the site's database (vars.db_name); a name; or {name, engine, host, user, password...}"
    )
    databases: list[DatabaseSpec] = Field(default_factory=list, description="Several databases")
    password: SecretStr | None = Field(None, description="Password for database: true / a name (use {{ secrets.X }})")
    files: bool | list[str] = Field(False, description="true: the whole environment path; or paths inside it")
    excludes: list[str] = Field(default_factory=list, description="tar --exclude patterns (e.g. wp-content/cache)")
    backup_dir: str | None = Field(None, description="Default: vars.backup_dir, else <path>/.maint/backups")
    max_age: str | None = Field(None, description="A backup younger than this (e.g. 20h) means nothing to do")
    compression: Literal["auto", "zstd", "gzip"] = Field(
        "auto", description="Files and MariaDB/MySQL dumps: zstd when the host has it, else gzip"
    )
    priority: Literal["low", "normal"] = Field(
        "low",
        description="low: the dumps and the archive run under nice -n 10 and, where the host has ionice, "
        "the lowest best-effort I/O class, so a live shop keeps the CPU and the disk first; normal: as any command",
    )
    note: str | None = Field(None, description="Free text kept in the manifest")
    timeout: float | None = Field(None, gt=0, description="Seconds a dump or archive may take (default: the env's)")

    @field_validator("max_age")
    @classmethod
    def _duration(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v

    @model_validator(mode="after")
    def _something(self) -> BackupCreateParams:
        if not (self.database or self.databases or self.files):
            raise ValueError("nothing to back up: set database, databases and/or files")
        return self


def resolve_job(ctx: Context, p: BackupCreateParams) -> BackupJob:
    """Turn the parameters into a :class:`BackupJob` for this environment."""
    dbs = list(p.databases)
    if isinstance(p.database, DatabaseSpec):
        dbs.insert(0, p.database)
    elif p.database:
        dbs.insert(0, _site_database(ctx, p))
    paths: list[str] = []
    if p.files:
        try:
            paths = normalize_paths(ctx.path, ["."] if p.files is True else list(p.files))
        except ValueError as exc:
            raise CheckFailed(f"files: {exc}") from None
    excludes = list(p.excludes)
    return BackupJob(dbs, paths, ctx.path.rstrip("/") or "/", excludes, p.compression, p.priority)


def _site_database(ctx: Context, p: BackupCreateParams) -> DatabaseSpec:
    v = ctx.vars
    name = p.database if isinstance(p.database, str) else v.get("db_name")
    if not name:
        raise CheckFailed("database: true needs vars.db_name (or give database: NAME or {name: ...})")
    fields: dict[str, Any] = {"name": str(name), "password": p.password}
    for key in ("engine", "host", "port", "user", "defaults_file"):
        if v.get(f"db_{key}") is not None:
            fields[key] = v[f"db_{key}"]
    try:
        return DatabaseSpec(**fields)
    except ValueError as exc:
        raise CheckFailed(f"database from vars: {exc}") from None


class BackupCreate(Action[BackupCreateParams]):
    """Back up databases (mariadb-dump/mysqldump | zstd/gzip, pg_dump -Fc) and files (tar + zstd/gzip).

    Each backup gets an id and a manifest (items with sizes, sha256, tables and row counts).
    With ``max_age`` a fresh enough backup means nothing to do. Rollback does nothing and
    succeeds: a backup is harmless.
    """

    name = "backup.create"
    Params = BackupCreateParams
    summary = "Back up databases and files with a manifest (sha256, tables, row counts); max_age makes it idempotent."
    rollback_kind = "noop"
    rollback_reason = "a backup is harmless; backup.prune removes old ones"

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        try:
            directory = backup_dir(ctx, self.params.backup_dir)
        except CheckFailed:
            return []
        out: list[Probe[Any]] = [BackupListing(directory), tools_probe()]
        if self.params.max_age:  # the listings of other folders the index knows fresh backups in
            entries = indexed_backups(ctx, parse_duration(self.params.max_age), datetime.now(UTC))
            out += [BackupListing(d) for d in dict.fromkeys(str(e["dir"]) for e in entries) if d != directory]
        return out

    def expects_change(self, ctx: Context) -> str | None:
        """A new backup is due unless the state index records one younger than ``max_age``."""
        if not self.params.max_age:
            return "a new backup every run (no max_age)"
        if indexed_backups(ctx, parse_duration(self.params.max_age), datetime.now(UTC)):
            return None
        return f"the state index records no backup younger than {self.params.max_age}"

    def check(self, ctx: Context) -> Check:
        p = self.params
        directory = backup_dir(ctx, p.backup_dir)
        job = resolve_job(ctx, p)
        if directory.startswith(job.base.rstrip("/") + "/") and not directory.startswith(f"{job.base}/.maint"):
            job.excludes.append(directory[len(job.base) + 1 :])
        tools = ctx.probe(tools_probe())
        missing = missing_for(job, tools)
        if missing:
            raise CheckFailed(f"{ctx.env.display_host} lacks {', '.join(missing)}")
        listing = ctx.probe(BackupListing(directory))
        if p.max_age:
            limit = parse_duration(p.max_age)
            now = datetime.now(UTC)
            for m in listing.regular():
                if job.covered_by(m) and now - m.created < limit:
                    ctx.record(backup=record_of(m, directory))
                    return Check.ok(
                        f"backup {m.id} from {format_age(now - m.created)} ago is fresh (max_age {p.max_age})"
                    )
            found, where, gone = fresh_on_host(ctx, job, indexed_backups(ctx, limit, now), limit, now)
            if found is not None:
                ctx.record(backup=record_of(found, where))
                return Check.ok(
                    f"backup {found.id} in {where} (recorded in the state index) from "
                    f"{format_age(now - found.created)} ago is fresh (max_age {p.max_age})"
                )
            why = f"no backup of {job.describe()} younger than {p.max_age}"
            if gone:
                why += f" (recorded but gone from {ctx.env.display_host}: {', '.join(gone)})"
        else:
            why = "no max_age (a new backup every run)"
        # the tools go with the check: apply starts with the probe cache dropped
        return Check.change(f"{why}: back up {job.describe()} into {directory}", snapshot=(job, directory, tools))

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        job, directory, tools = check.snapshot
        manifest = write_backup(
            ctx,
            job,
            directory,
            tools,
            note=self.params.note,
            timeout=self.params.timeout,
            read_after=lambda m: [BackupListing(directory), item_facts(m)],  # verify's reads, with the rename
        )
        record = record_of(manifest, directory)
        ctx.record(backup=record)
        ctx.write_index(index.record_backup, {**record, "run_id": ctx.run_id, "host": ctx.env.display_host})
        return [
            Change(
                target=f"{directory}/{manifest.id}",
                summary=f"backup {manifest.id} created ({manifest.describe()}, {manifest.size} bytes)",
                after={"id": manifest.id, "size": manifest.size},
                undo=manifest.id,
            )
        ]

    def verify(self, ctx: Context) -> None:
        record = ctx.data.get("backup") or {}
        bid, directory = record.get("id"), record.get("dir")
        listing = ctx.probe(BackupListing(str(directory)))  # read after the change (the runner's read)
        manifest = listing.get(str(bid))
        if manifest is None:
            raise VerifyFailed(f"backup {bid} has no manifest in {directory}")
        facts = ctx.probe(item_facts(manifest))  # read with the rename (afresh after any later change)
        for item in manifest.items:
            size, digest = facts.get(manifest.path(str(item["file"])), (-1, ""))
            if size != item.get("size") or digest != item.get("sha256"):
                raise VerifyFailed(f"backup {bid}: {item['file']} does not match its manifest")

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Nothing to undo: a backup is harmless (prune removes old ones)."""
