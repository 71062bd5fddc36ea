"""``backup.copy``: an offsite copy over SSH, streamed through the controller, checksummed at the destination."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from typing import IO, Any, Literal

from pydantic import Field, field_validator

from maintkit.action import Action, Context, Params
from maintkit.errors import ApplyFailed, CheckFailed, MaintkitError, VerifyFailed
from maintkit.probes import Probe
from maintkit.probes.backup import ID_RE, BackupListing, Listing, Manifest
from maintkit.results import Change, Check
from maintkit.transport.base import Transport, quote

from .common import backup_dir, list_on, select, sha_lines

_CHUNK = 1024 * 1024


class Destination(Params):
    """Where offsite copies go: another host reached over SSH (or this machine)."""

    host: str = Field(..., description="Destination host")
    path: str = Field(..., description="Absolute directory on the destination; backups land in <path>/<id>/")
    port: int = Field(22, ge=1, le=65535)
    user: str | None = Field(None, description="SSH login user")
    key_file: str | None = Field(None, description="SSH private key on the controller")
    known_hosts: str | None = Field(None, description="known_hosts file on the controller")
    host_key_policy: Literal["strict", "accept-new"] = "strict"
    connection: Literal["ssh", "local"] = Field("ssh", description="ssh, or local for a directory on the controller")
    become: bool = False
    proxy_command: str | None = None
    connect_timeout: float = Field(10, gt=0)

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("path must be absolute")
        return v.rstrip("/") or "/"

    def label(self) -> str:
        """``user@host:port:/path`` for messages and the audit log."""
        if self.connection == "local":
            return f"local:{self.path}"
        who = f"{self.user}@" if self.user else ""
        return f"{who}{self.host}:{self.port}:{self.path}"


def open_destination(dest: Destination, command_timeout: float) -> Transport:
    """Open a transport to the destination (created here: actions do not use the runner's pool)."""
    if dest.connection == "local":
        from maintkit.transport.local import LocalTransport

        return LocalTransport(name="local", become=dest.become)
    from maintkit.transport.ssh import SSHTransport

    return SSHTransport(
        dest.host,
        port=dest.port,
        user=dest.user,
        key_filename=os.path.expanduser(dest.key_file) if dest.key_file else None,
        known_hosts=[os.path.expanduser(dest.known_hosts)] if dest.known_hosts else [],
        host_key_policy=dest.host_key_policy,
        connect_timeout=dest.connect_timeout,
        command_timeout=command_timeout,
        become=dest.become,
        proxy_command=dest.proxy_command,
    )


class BackupCopyParams(Params):
    """Parameters of ``backup.copy``."""

    destination: Destination | None = Field(None, description="Where to copy (null: the step fails with a hint)")
    backup: str = Field("latest", description="latest (newest regular backup) or a backup id")
    backup_dir: str | None = Field(
        None, description="Source directory (default: vars.backup_dir or <path>/.maint/backups)"
    )
    keep_last: int | None = Field(None, ge=1, description="Retention at the destination: keep the newest N copies")
    timeout: float | None = Field(None, gt=0, description="Seconds one file transfer may take (default: the env's)")


def _sha256_file(fh: IO[bytes]) -> str:
    fh.seek(0)
    h = hashlib.sha256()
    while chunk := fh.read(_CHUNK):
        h.update(chunk)
    fh.seek(0)
    return h.hexdigest()


def _complete(dest_listing: Listing, manifest: Manifest) -> bool:
    there = dest_listing.get(manifest.id)
    if there is None:
        return False
    want = {str(i.get("file")): i.get("sha256") for i in manifest.items}
    have = {str(i.get("file")): i.get("sha256") for i in there.items}
    return want == have


def _to_prune(dest_listing: Listing, keep_last: int | None, keep_id: str) -> list[Manifest]:
    if keep_last is None:
        return []
    regular = dest_listing.regular()
    return [m for m in regular[keep_last:] if m.id != keep_id]


class BackupCopy(Action[BackupCopyParams]):
    """Copy a backup to another host over SSH; the controller streams each file (the two hosts need not
    reach each other), then the destination's sha256sum must match the manifest. ``keep_last``
    applies retention there too. Rollback does nothing and succeeds: an extra copy is harmless.
    """

    name = "backup.copy"
    Params = BackupCopyParams
    summary = "Copy a backup offsite over SSH (streamed via the controller, sha256 verified there, retention)."
    rollback_kind = "noop"
    rollback_reason = "an offsite copy is harmless"
    depends_on_previous = True

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        try:
            return [BackupListing(backup_dir(ctx, self.params.backup_dir))]
        except CheckFailed:
            return []

    def _dest(self) -> Destination:
        if self.params.destination is None:
            raise CheckFailed("no destination: set destination {host, path, user...} (e.g. from vars.offsite)")
        return self.params.destination

    def _timeout(self, ctx: Context) -> float:
        return self.params.timeout or ctx.env.command_timeout or 600.0

    def check(self, ctx: Context) -> Check:
        dest = self._dest()
        manifest = select(ctx.probe(BackupListing(backup_dir(ctx, self.params.backup_dir))), self.params.backup)
        there = self._dest_listing(ctx, dest)
        prune = _to_prune(there, self.params.keep_last, manifest.id)
        copied = _complete(there, manifest)
        ctx.record(copied={"id": manifest.id, "destination": dest.label(), "present": copied})
        if copied and not prune:
            return Check.ok(f"backup {manifest.id} is already at {dest.label()}")
        parts = [] if copied else [f"backup {manifest.id} ({manifest.size} bytes) is not at {dest.label()} yet"]
        if prune:
            parts.append(f"{len(prune)} old copies there beyond keep_last: {', '.join(m.id for m in prune)}")
        return Check.change("; ".join(parts), snapshot=(manifest, copied))

    def _dest_listing(self, ctx: Context, dest: Destination) -> Listing:
        transport = self._open(dest, ctx)
        try:
            return list_on(transport, dest.path, timeout=60)
        except MaintkitError as exc:
            raise CheckFailed(f"cannot list {dest.label()}: {exc}") from None
        finally:
            transport.close()

    def _open(self, dest: Destination, ctx: Context) -> Transport:
        try:
            return open_destination(dest, self._timeout(ctx))
        except MaintkitError as exc:
            raise CheckFailed(f"cannot reach {dest.label()}: {exc}") from None

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        dest = self._dest()
        manifest, copied = check.snapshot
        changes: list[Change] = []
        transport = self._open(dest, ctx)
        try:
            if not copied:
                self._copy(ctx, transport, dest, manifest)
                changes.append(
                    Change(
                        f"{dest.label()}/{manifest.id}",
                        f"copied backup {manifest.id} ({manifest.size} bytes)",
                        after={"id": manifest.id, "destination": dest.label()},
                    )
                )
            there = list_on(transport, dest.path, timeout=60)
            for old in _to_prune(there, self.params.keep_last, manifest.id):
                if not ID_RE.match(old.id):
                    continue
                transport.run(["rm", "-rf", "--", f"{dest.path}/{old.id}"], timeout=120)
                changes.append(Change(f"{dest.label()}/{old.id}", "old offsite copy deleted", before=old.summary()))
        except MaintkitError as exc:
            if isinstance(exc, ApplyFailed):
                raise
            raise ApplyFailed(f"copy to {dest.label()} failed: {exc}") from None
        finally:
            transport.close()
        ctx.record(copied={"id": manifest.id, "destination": dest.label(), "size": manifest.size, "present": True})
        return changes

    def _copy(self, ctx: Context, transport: Transport, dest: Destination, manifest: Manifest) -> None:
        final, part = f"{dest.path}/{manifest.id}", f"{dest.path}/{manifest.id}.partial"
        transport.run(["mkdir", "-p", "--", dest.path], timeout=60)
        transport.run(["rm", "-rf", "--", part], timeout=120)
        transport.run(["mkdir", "-m", "700", "--", part], timeout=60)
        try:
            for item in manifest.items:
                self._send(
                    ctx, transport, manifest.path(str(item["file"])), f"{part}/{item['file']}", str(item["sha256"])
                )
            transport.put(ctx.get(manifest.path("manifest.json")), f"{part}/manifest.json", mode=0o600, timeout=60)
            transport.run(["mv", "-T", "--", part, final], timeout=60)
        except BaseException:
            with contextlib.suppress(MaintkitError):
                transport.run(["rm", "-rf", "--", part], check=False, timeout=120)
            raise

    def _send(self, ctx: Context, transport: Transport, src: str, dst: str, sha256: str) -> None:
        timeout = self._timeout(ctx)
        with tempfile.TemporaryFile(prefix="maint-copy-") as tmp:
            ctx.stream(["cat", "--", src], tmp, timeout=timeout)
            tmp.flush()
            if _sha256_file(tmp) != sha256:
                raise ApplyFailed(f"{src} does not match its manifest (sha256) on the source")
            transport.run_shell(f"umask 077; cat > {quote(dst)}", stdin=tmp, timeout=timeout)
        got = sha_lines(transport.run(["sha256sum", "--", dst], timeout=timeout).stdout).get(dst)
        if got != sha256:
            raise ApplyFailed(f"checksum mismatch at the destination for {dst}: {got} != {sha256}")

    def verify(self, ctx: Context) -> None:
        dest = self._dest()
        record = ctx.data.get("copied") or {}
        transport = self._open(dest, ctx)
        try:
            there = list_on(transport, dest.path, timeout=60)
            found = there.get(str(record.get("id")))
            if found is None:
                raise VerifyFailed(f"backup {record.get('id')} is not at {dest.label()}")
            paths = [f"{found.directory}/{i['file']}" for i in found.items]
            sums = (
                sha_lines(transport.run(["sha256sum", "--", *paths], timeout=self._timeout(ctx)).stdout)
                if paths
                else {}
            )
        finally:
            transport.close()
        for item in found.items:
            if sums.get(f"{found.directory}/{item['file']}") != item.get("sha256"):
                raise VerifyFailed(f"{dest.label()}/{found.id}/{item['file']}: checksum mismatch")

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Nothing to undo: an offsite copy is harmless."""
