"""Building blocks shared by the cms drivers: plan data, tree hashes, snapshots, database dumps.

Everything that touches the host goes through ``ctx.run`` / ``ctx.run_shell`` with quoted
arguments. Rollback helpers (:func:`restore_path`, :func:`restore_database`) use only file
copies and the MariaDB client, never PHP, so they work when the site is broken.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from maintkit._text import head, tail
from maintkit.action import Context
from maintkit.errors import ApplyFailed, MaintkitError, RollbackFailed
from maintkit.results import Change
from maintkit.transport.base import join, quote

ACTION = "cms.update"
JSON_MARKER = "@@MAINTKIT-JSON@@"
_SQL_IDENT = re.compile(r"^[A-Za-z0-9_$]{1,64}$")


# -- plan data ---------------------------------------------------------------------------------


@dataclass
class Installed:
    """One installed package (plugin, theme, WordPress core or composer package)."""

    name: str
    kind: str  # plugin | theme | core | composer
    version: str
    path: str = ""
    active: bool | None = None
    requires_php: str = ""
    requires_wp: str = ""
    update_uri: str = ""
    file: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``kind:name``, the key used in version locks."""
        return f"{self.kind}:{self.name}"


@dataclass
class Offer:
    """One version of a package a source offers."""

    version: str
    source: str  # label for humans and the lock: "repository:/dir", "url:https://...", "wordpress.org"
    location: str  # controller | host | url | composer
    ref: str  # path or URL
    requires_php: str = ""
    requires_wp: str = ""
    sha256: str | None = None
    tree: str | None = None
    header_version: str | None = None
    problem: str | None = None  # why the package cannot be used (wrong folder, not a zip...)
    data: bytes | None = field(default=None, repr=False)


@dataclass
class Update:
    """One planned package change ``from -> to``."""

    package: Installed
    to: str
    offer: Offer | None = None
    expected_tree: str | None = None
    expected_sha256: str | None = None
    operation: str = "update"  # update | install | remove | downgrade

    @property
    def name(self) -> str:
        """Package name."""
        return self.package.name

    @property
    def kind(self) -> str:
        """Package kind."""
        return self.package.kind

    def public(self) -> dict[str, Any]:
        """``{name, type, from, to}`` for check data, the audit log and reports."""
        out: dict[str, Any] = {
            "name": self.package.name,
            "type": self.package.kind,
            "from": self.package.version or None,
            "to": self.to or None,
        }
        if self.operation != "update":
            out["operation"] = self.operation
        if self.offer is not None:
            out["source"] = self.offer.source
            if self.offer.requires_php:
                out["requires_php"] = self.offer.requires_php
            if self.offer.requires_wp:
                out["requires_wp"] = self.offer.requires_wp
        if self.package.path:
            out["path"] = self.package.path
        return out

    def line(self) -> str:
        """``plugin shop-cart: 1.0.0 -> 1.1.0``."""
        return (
            f"{self.package.kind} {self.package.name}: {self.package.version or '(none)'} -> {self.to or '(removed)'}"
        )


@dataclass
class Skipped:
    """A package with a newer version that will not be installed, and why."""

    name: str
    kind: str
    version: str
    candidate: str | None
    reason: str
    blocking: bool = False  # the host cannot run the candidate (compat.check fails on these)

    def public(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "type": self.kind,
            "from": self.version,
            "candidate": self.candidate,
            "reason": self.reason,
            "blocking": self.blocking,
        }

    def line(self) -> str:
        """One line for humans."""
        cand = f" {self.candidate}" if self.candidate else ""
        return f"{self.kind} {self.name}{cand}: {self.reason}"


@dataclass
class UpdatePlan:
    """What one cms.update would do on one environment."""

    driver: str
    updates: list[Update] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    installed: list[Installed] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    promote: dict[str, Any] | None = None
    predicted: bool = False

    @property
    def blocking(self) -> list[Skipped]:
        """Skipped candidates the host cannot run."""
        return [s for s in self.skipped if s.blocking]

    def diff(self) -> str:
        """The exact ``from -> to`` list (and skipped candidates) as text."""
        lines = [u.line() for u in self.updates]
        lines += [f"skipped {s.line()}" for s in self.skipped]
        return "\n".join(lines) + ("\n" if lines else "")

    def data(self) -> dict[str, Any]:
        """Check/step data: ``updates`` (exact from -> to), ``skipped``, driver facts."""
        out: dict[str, Any] = {
            "driver": self.driver,
            "updates": [u.public() for u in self.updates],
            "skipped": [s.public() for s in self.skipped],
        }
        for key in ("php_version", "core_version", "db_version", "wp_cli", "composer_version"):
            if self.facts.get(key):
                out[key] = self.facts[key]
        if self.promote is not None:
            out["promote"] = self.promote
        return out


@dataclass
class PackageUndo:
    """Snapshots to put back for one change: ``(snapshot or None, dest)`` pairs (None = remove dest)."""

    entries: list[tuple[str | None, str]]
    remove_new: list[str] = field(default_factory=list)


# -- helper and JSON ---------------------------------------------------------------------------


def wp_helper_source() -> bytes:
    """The PHP helper shipped in the package (maintkit/php/wp_helper.php)."""
    return resources.files("maintkit").joinpath("php/wp_helper.php").read_bytes()


def parse_marked_json(stdout: str) -> dict[str, Any] | None:
    """The JSON object after the last ``@@MAINTKIT-JSON@@`` marker, or None."""
    idx = stdout.rfind(JSON_MARKER)
    if idx < 0:
        return None
    text = stdout[idx + len(JSON_MARKER) :].strip().split("\n", 1)[0]
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


# -- tree hashes -------------------------------------------------------------------------------

_TREE_SNIPPET = (
    # sha256sum --zero: names are never escaped (a newline or backslash in a name would
    # otherwise change the line); the hash alone is printed, one line per path, in order
    'if [ -d "$p" ]; then '
    'h=$(cd -- "$p" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum --zero -- '
    "| tr '\\0' '\\n' | sha256sum); "
    'elif [ -f "$p" ]; then '
    "h=$(cd -- \"${p%/*}/\" && sha256sum --zero -- \"./${p##*/}\" | tr '\\0' '\\n' | sha256sum); "
    "else h=missing; fi; "
    "printf '%s\\n' \"${h%% *}\""
)


def tree_hash_script(paths: list[str]) -> str:
    """Shell that prints one line per path, in order: its tree hash, or ``missing``.

    The hash is ``sha256`` over the ``sha256sum`` lines (``<hash>  ./<relative path>``) of
    every regular file, sorted bytewise: the same value :func:`zip_tree_hash` computes
    from a package zip, so a package can be compared before and after installing it.
    """
    if not paths:
        return "true"
    return f"for p in {' '.join(quote(p) for p in paths)}; do {_TREE_SNIPPET}; done"


def tree_hashes(ctx: Context, paths: list[str]) -> dict[str, str | None]:
    """Tree hash per path on the host (None when the path does not exist)."""
    if not paths:
        return {}
    res = ctx.run_shell(tree_hash_script(paths), check=False)
    out: dict[str, str | None] = {p: None for p in paths}
    for path, value in zip(paths, res.stdout.splitlines(), strict=False):
        out[path] = value if len(value) == 64 else None
    return out


def _tree_from_entries(entries: list[tuple[str, bytes]]) -> str:
    lines = sorted((f"./{rel}".encode(), data) for rel, data in entries)
    h = hashlib.sha256()
    for rel, data in lines:
        h.update(f"{hashlib.sha256(data).hexdigest()}  ".encode() + rel + b"\n")
    return h.hexdigest()


def zip_tree_hash(data: bytes, top: str) -> str:
    """The tree hash of the files under ``top/`` in a zip (see :func:`tree_hash_script`)."""
    import io
    import zipfile

    prefix = top.rstrip("/") + "/"
    entries: list[tuple[str, bytes]] = []
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            if info.is_dir() or not info.filename.startswith(prefix):
                continue
            mode = (info.external_attr >> 16) & 0o170000
            if mode == 0o120000:  # symlink entries are not regular files
                continue
            entries.append((info.filename[len(prefix) :], zf.read(info)))
    return _tree_from_entries(entries)


def sha256_hex(data: bytes) -> str:
    """sha256 of bytes, hex."""
    return hashlib.sha256(data).hexdigest()


# -- file system -------------------------------------------------------------------------------


def mkdir_private(ctx: Context, path: str) -> None:
    """``mkdir -p`` + ``chmod 700``."""
    ctx.run(["mkdir", "-p", "--", path])
    ctx.run(["chmod", "700", "--", path])


def snapshot_path(ctx: Context, src: str, dest: str) -> bool:
    """``cp -a src dest`` (dest's parent is created); False when ``src`` does not exist."""
    script = (
        f"if [ -e {quote(src)} ] || [ -L {quote(src)} ]; then "
        f"mkdir -p -- {quote(dest.rsplit('/', 1)[0] or '/')} && rm -rf -- {quote(dest)} && "
        f"cp -a -- {quote(src)} {quote(dest)} "
        "&& echo copied; else echo absent; fi"
    )
    res = ctx.run_shell(script, check=False)
    if res.exit_code != 0:
        raise ApplyFailed(f"snapshot of {src} failed: {tail(res.stderr or res.stdout)}", action=ACTION)
    return "copied" in res.stdout


def restore_script(snapshot: str | None, dest: str) -> str:
    """Shell that puts ``snapshot`` back at ``dest`` (or removes ``dest`` when snapshot is None).

    The copy is made next to ``dest`` first and then swapped in with renames, so ``dest``
    is never half restored.
    """
    d = quote(dest)
    if snapshot is None:
        return f"rm -rf -- {d}"
    # short sibling names: ``dest`` + a suffix could exceed the 255-byte name limit
    parent, _, name = dest.rpartition("/")
    tag = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    tmp, old = quote(f"{parent}/.maint-restore-{tag}"), quote(f"{parent}/.maint-old-{tag}")
    s = quote(snapshot)
    return (
        f"[ -e {s} ] || [ -L {s} ] || {{ echo 'snapshot missing: '{s} >&2; exit 3; }}\n"
        f"rm -rf -- {tmp} {old} && cp -a -- {s} {tmp} || exit 4\n"
        f"if [ -e {d} ] || [ -L {d} ]; then mv -T -- {d} {old} || exit 5; fi\n"
        f"mv -T -- {tmp} {d} || {{ [ -e {old} ] && mv -T -- {old} {d}; exit 6; }}\n"
        f"rm -rf -- {old}\n"
    )


def restore_path(ctx: Context, snapshot: str | None, dest: str) -> None:
    """Run :func:`restore_script`; raise RollbackFailed when it fails."""
    res = ctx.run_shell(restore_script(snapshot, dest), check=False)
    if res.exit_code != 0:
        raise RollbackFailed(f"restoring {dest} from {snapshot} failed: {tail(res.stderr or res.stdout)}")


def file_sizes(ctx: Context, paths: list[str]) -> dict[str, int]:
    """Current size of each existing file (missing files are left out)."""
    if not paths:
        return {}
    script = (
        f"for p in {' '.join(quote(p) for p in paths)}; do "
        '[ -f "$p" ] && printf \'%s\\t%s\\n\' "$p" "$(stat -c %s -- "$p")"; done; true'
    )
    res = ctx.run_shell(script, check=False)
    out: dict[str, int] = {}
    for line in res.stdout.splitlines():
        path, _, size = line.rpartition("\t")
        if size.isdigit():
            out[path] = int(size)
    return out


def run_commands(
    ctx: Context, commands: list[list[str]], *, cwd: str, env: dict[str, str] | None = None, what: str = "command"
) -> list[dict[str, Any]]:
    """Run argv commands in order in ``cwd``; raise ApplyFailed naming the first that fails."""
    done: list[dict[str, Any]] = []
    for argv in commands:
        res = ctx.run(argv, cwd=cwd, env=env or None, check=False)
        done.append({"command": head(join(argv), 200), "exit": res.exit_code})
        if not res.ok:
            raise ApplyFailed(
                f"{what} {head(join(argv), 200)} exited {res.exit_code}: {tail(res.stderr or res.stdout)}",
                action=ACTION,
            )
    return done


def undo_changes(
    ctx: Context,
    changes: list[Change],
    *,
    undo_db: Callable[[DbUndo], dict[str, Any]],
    post_rollback: list[list[str]],
    cwd: str,
    after_restore: Callable[[PackageUndo], None] | None = None,
) -> dict[str, Any]:
    """The rollback both drivers share: put file snapshots back (newest change first), then
    the database, then the post_rollback commands. Every error is collected; any error ends in
    RollbackFailed naming them all. No PHP is involved, so it works when the site is broken."""
    errors: list[str] = []
    report: dict[str, Any] = {"restored": [], "database": None}
    for change in reversed(changes):
        if isinstance(change.undo, PackageUndo):
            try:
                for snapshot, dest in change.undo.entries:
                    restore_path(ctx, snapshot, dest)
                if after_restore is not None:
                    after_restore(change.undo)
                report["restored"].append(change.target)
            except MaintkitError as exc:
                errors.append(f"{change.target}: {exc}")
    for change in changes:
        if isinstance(change.undo, DbUndo):
            try:
                report["database"] = undo_db(change.undo)
            except MaintkitError as exc:
                errors.append(f"{change.target}: {exc}")
    if post_rollback and any(isinstance(c.undo, PackageUndo) for c in changes):
        try:
            run_commands(ctx, post_rollback, cwd=cwd, what="post_rollback")
        except MaintkitError as exc:
            errors.append(str(exc))
    if errors:
        raise RollbackFailed("; ".join(errors))
    return report


# -- database ----------------------------------------------------------------------------------


@dataclass
class DbUndo:
    """A dump taken before an update, with what is needed to restore it without PHP."""

    database: str
    dump: str  # gzip file on the host
    defaults_file: str | None  # MariaDB option file (0600) or None for ~/.my.cnf
    tables_before: list[str]
    schema_before: dict[str, str] = field(default_factory=dict)
    options_table: str | None = None  # WordPress: <prefix>options
    schema_options: list[str] = field(default_factory=list)


def _client_argv(binary: str, defaults_file: str | None) -> list[str]:
    """``binary`` with the option file as its FIRST option: ``--defaults-file`` reads only that
    file, so the login user's ``~/.my.cnf`` cannot override its credentials. Without a file the
    client's default option files (``~/.my.cnf`` included) are read: the documented default."""
    argv = [binary]
    if defaults_file:
        argv.append(f"--defaults-file={defaults_file}")
    return argv


def db_query(ctx: Context, database: str, defaults_file: str | None, sql: str) -> list[list[str]]:
    """Run one SQL statement with the mariadb client; rows of tab-separated columns."""
    argv = [*_client_argv("mariadb", defaults_file), "--batch", "--skip-column-names", "-e", sql, database]
    res = ctx.run(argv, check=False)
    if not res.ok:
        raise RollbackFailed(f"mariadb query on {database} failed: {tail(res.stderr)}")
    return [line.split("\t") for line in res.stdout.splitlines() if line]


def list_tables(ctx: Context, database: str, defaults_file: str | None) -> list[str]:
    """Table names of ``database``."""
    return [row[0] for row in db_query(ctx, database, defaults_file, "SHOW TABLES")]


def read_options(ctx: Context, undo: DbUndo) -> dict[str, str]:
    """Current values of the schema options (WordPress) recorded in ``undo``."""
    if not undo.options_table or not undo.schema_options:
        return {}
    if not _SQL_IDENT.match(undo.options_table):
        raise RollbackFailed(f"unsafe table name {undo.options_table!r}")
    names = [n for n in undo.schema_options if re.fullmatch(r"[A-Za-z0-9_.:-]{1,191}", n)]
    in_list = ", ".join("'" + n + "'" for n in names)
    # Identifiers and values are validated above (no quoting characters possible).
    sql = f"SELECT option_name, option_value FROM `{undo.options_table}` WHERE option_name IN ({in_list})"  # noqa: S608
    return {row[0]: (row[1] if len(row) > 1 else "") for row in db_query(ctx, undo.database, undo.defaults_file, sql)}


def dump_database(ctx: Context, database: str, defaults_file: str | None, dest_gz: str) -> None:
    """``mariadb-dump`` into ``dest_gz`` (mode 0600); credentials from the option file, never argv."""
    sql = dest_gz[:-3] if dest_gz.endswith(".gz") else dest_gz + ".sql"
    argv = [
        *_client_argv("mariadb-dump", defaults_file),
        "--single-transaction",
        "--routines",
        "--triggers",
        "--hex-blob",
        f"--result-file={sql}",
        database,
    ]
    script = (
        f"umask 077\n{join(argv)} || {{ rc=$?; rm -f -- {quote(sql)}; exit $rc; }}\n"
        f"gzip -f -- {quote(sql)} && chmod 600 -- {quote(dest_gz)}"
    )
    res = ctx.run_shell(script, check=False)
    if not res.ok:
        raise ApplyFailed(f"database dump of {database} failed: {tail(res.stderr or res.stdout)}", action=ACTION)


def restore_database(ctx: Context, undo: DbUndo) -> list[str]:
    """Load the dump back and drop tables the update created; returns the dropped tables."""
    sql = undo.dump[:-3] + ".restore.sql" if undo.dump.endswith(".gz") else undo.dump + ".restore.sql"
    client = join([*_client_argv("mariadb", undo.defaults_file), undo.database])
    script = (
        f"umask 077\ngzip -dc -- {quote(undo.dump)} > {quote(sql)} || exit 3\n"
        f"{client} < {quote(sql)}; rc=$?\nrm -f -- {quote(sql)}\nexit $rc\n"
    )
    res = ctx.run_shell(script, check=False)
    if not res.ok:
        raise RollbackFailed(f"restoring database {undo.database} failed: {tail(res.stderr or res.stdout)}")
    extra = [t for t in list_tables(ctx, undo.database, undo.defaults_file) if t not in set(undo.tables_before)]
    dropped = []
    for table in extra:
        if _SQL_IDENT.match(table):
            db_query(ctx, undo.database, undo.defaults_file, f"DROP TABLE `{table}`")
            dropped.append(table)
    return dropped


__all__ = [
    "DbUndo",
    "Installed",
    "Offer",
    "PackageUndo",
    "Skipped",
    "Update",
    "UpdatePlan",
    "db_query",
    "dump_database",
    "file_sizes",
    "list_tables",
    "mkdir_private",
    "parse_marked_json",
    "read_options",
    "restore_database",
    "restore_path",
    "restore_script",
    "run_commands",
    "sha256_hex",
    "snapshot_path",
    "tail",
    "tree_hash_script",
    "tree_hashes",
    "wp_helper_source",
    "zip_tree_hash",
]
