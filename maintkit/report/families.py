"""What each action family contributes to a site's report, read from its steps' recorded data.

- updates applied (``cms.update`` step data ``updates``: package, from, to) and deployed
  releases (``deploy.release`` changes),
- backups taken, verified and copied off-site (``backup.*`` step data),
- certificates (``ssl.*`` step data ``cert``; renewals from ``renewed``),
- smoke check response times (``http.check`` step data ``requests``: url, status, latency_ms).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from statistics import median
from typing import Any

from maintkit.report.chart import LatencyPoint, latency_svg, percentile
from maintkit.report.model import Backup, Certificate, Latency, Renewal, Update
from maintkit.report.reading import StepState, as_float, as_int, as_text, first_of, parse_ts

__all__ = [
    "collect_backups",
    "collect_certs",
    "collect_latency",
    "deploys_of",
    "held_text",
    "issuer_name",
    "updates_of",
]


def _dn_parts(dn: str) -> dict[str, str]:
    """The attributes of an RFC 4514 distinguished name (``CN=R3,O=Let's Encrypt,C=US``), first of each kind."""
    parts: dict[str, str] = {}
    current, escaped = "", False
    pieces: list[str] = []
    for ch in dn:
        if escaped:
            current, escaped = current + ch, False
        elif ch == "\\":
            escaped = True
        elif ch in ",+":
            pieces.append(current)
            current = ""
        else:
            current += ch
    pieces.append(current)
    for piece in pieces:
        key, sep, value = piece.partition("=")
        if sep and key.strip() and value.strip():
            parts.setdefault(key.strip().upper(), value.strip())
    return parts


def issuer_name(dn: str) -> str:
    """A certificate issuer as a person names it: the organisation (``O=``), else the common name (``CN=``).

    ``CN=R3,O=Let's Encrypt,C=US`` -> ``Let's Encrypt (R3)``; ``CN=maint demo CA`` -> ``maint demo CA``.
    Text that is not a distinguished name is returned as it is.
    """
    parts = _dn_parts(dn)
    org, cn = parts.get("O", ""), parts.get("CN", "")
    if org and cn and cn != org:
        return f"{org} ({cn})"
    return org or cn or parts.get("OU", "") or dn


def updates_of(st: StepState) -> list[Update]:
    """The packages a ``cms.update`` step updated (list or mapping forms of ``updates``)."""
    raw = st.data.get("updates") or st.data.get("updated") or []
    if isinstance(raw, Mapping):  # {"akismet": {"from": "1", "to": "2"}} or {"akismet": ["1", "2"]}
        items = []
        for pkg, v in raw.items():
            if isinstance(v, Mapping):
                items.append({"package": pkg, **v})
            elif isinstance(v, list | tuple) and len(v) == 2:
                items.append({"package": pkg, "from": v[0], "to": v[1]})
        raw = items
    out = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, Mapping):
            continue
        package = as_text(first_of(item, "package", "name", "slug", "plugin"))
        if not package:
            continue
        out.append(
            Update(
                env=st.env,
                package=package,
                from_version=as_text(first_of(item, "from", "from_version", "before", "old")) or "?",
                to_version=as_text(first_of(item, "to", "to_version", "after", "new", "version")) or "?",
                when=st.when,
                run_id=st.run_id,
                kind=as_text(first_of(item, "kind", "type")),
                rolled_back=st.rolled_back or st.status == "rolled-back",
                untried=bool(st.data.get("untried")),
            )
        )
    return out


def held_text(held: Mapping[str, Any]) -> str:
    """One version held back by isolation (``cms.update`` step data ``held``): ``shop-cart 1.2.0 (why)``."""
    why = as_text(held.get("reason"))
    return f"{as_text(held.get('name'))} {as_text(held.get('version'))}" + (f" ({why})" if why else "")


def _short(commit: Any) -> str:
    text = as_text(commit)
    return text[:7] if len(text) >= 12 and all(c in "0123456789abcdef" for c in text) else text


def deploys_of(st: StepState) -> list[Update]:
    """A deployed release, as an update of the site's code: previous release -> ref (commit)."""
    out = []
    for change in st.changes:
        after = change.get("after") if isinstance(change, Mapping) else None
        if not isinstance(after, Mapping) or not after.get("commit"):
            continue
        before = change.get("before") if isinstance(change.get("before"), Mapping) else {}
        ref = as_text(st.data.get("ref"))
        commit = _short(after.get("commit"))
        prev = _short(before.get("commit") or before.get("release")) if before else ""
        out.append(
            Update(
                env=st.env,
                package="code (release)",
                from_version=prev or "none",
                to_version=f"{ref} ({commit})" if ref and ref != commit else commit,
                when=st.when,
                run_id=st.run_id,
                kind="initial deploy" if not prev else "deploy",
                rolled_back=st.rolled_back or st.status == "rolled-back",
                initial=not prev,
            )
        )
    return out


def _backup_items(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    raw = data.get("backup") or data.get("backups") or data.get("verified") or data.get("copied") or data.get("copy")
    if isinstance(raw, Mapping):
        return [raw]
    if isinstance(raw, list):
        return [b for b in raw if isinstance(b, Mapping)]
    return [data] if first_of(data, "backup_id", "id", "archive") else []


def _backup_id(item: Mapping[str, Any]) -> str:
    return as_text(first_of(item, "id", "backup_id", "name", "archive", "path"))


def _parts(item: Mapping[str, Any]) -> list[str]:
    items = item.get("items")
    if isinstance(items, list) and items:
        kinds = [as_text(i.get("type") or i.get("kind")) for i in items if isinstance(i, Mapping)]
        return list(dict.fromkeys(k for k in kinds if k))
    parts = item.get("parts")
    if isinstance(parts, list):
        return [as_text(p.get("kind") or p.get("name")) if isinstance(p, Mapping) else as_text(p) for p in parts]
    if isinstance(parts, Mapping):
        return [str(k) for k in parts]
    found = []
    if item.get("files") not in (None, False, 0, []):
        found.append("files")
    if item.get("database") not in (None, False, 0, []):
        found.append("database")
    return found


def _size(item: Mapping[str, Any]) -> int | None:
    size = as_int(first_of(item, "size_bytes", "bytes", "size", "total_bytes"))
    listed = item.get("items") or item.get("parts")
    if size is None and isinstance(listed, list):
        sizes = [as_int(first_of(p, "size_bytes", "bytes", "size")) for p in listed if isinstance(p, Mapping)]
        known = [s for s in sizes if s is not None]
        size = sum(known) if known else None
    return size


def collect_backups(steps: list[StepState]) -> list[Backup]:
    """The backups the ``backup.*`` steps took, verified and copied, merged by backup id, in order."""
    backups: dict[str, Backup] = {}
    order: list[str] = []
    for st in steps:
        family = st.action.split(".", 1)[-1] if st.action.startswith("backup.") else ""
        if not family or st.status in ("skipped", "unknown", "would-change", "not-run"):
            continue
        if st.status == "failed" and family != "verify":
            continue
        for item in _backup_items(st.data):
            bid = _backup_id(item) or f"{st.run_id}:{st.step}"
            b = backups.get(bid)
            if b is None and family in ("create", "verify", "copy"):
                b = Backup(
                    env=st.env,
                    id=bid,
                    when=parse_ts(first_of(item, "created", "created_at", "ts", "when", "time")) or st.when,
                    size_bytes=_size(item),
                    parts=_parts(item),
                    verified=None,
                    offsite=None,
                    run_id=st.run_id,
                )
                backups[bid] = b
                order.append(bid)
            if b is None:
                continue
            b.size_bytes = b.size_bytes if b.size_bytes is not None else _size(item)
            b.parts = b.parts or _parts(item)
            verified = item.get("verified")
            if verified is None and item.get("verified_at"):
                verified = True
            if family == "verify":
                ok = item.get("ok")
                b.verified = st.status in ("changed", "unchanged") and ok is not False
            elif isinstance(verified, bool):
                b.verified = verified if b.verified is None else (b.verified or verified)
            offsite = first_of(item, "offsite", "remote", "destination", "copied_to", "copy")
            if family == "copy" and offsite is None:
                offsite = first_of(st.data, "destination", "remote", "target") or "yes"
            if offsite:
                b.offsite = _offsite_text(offsite)
    return [backups[i] for i in order]


def _offsite_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return as_text(first_of(value, "url", "path", "host", "destination")) or "yes"
    return "yes"


def _cert_name(cert: Mapping[str, Any]) -> str:
    name = as_text(cert.get("server_name") or cert.get("host"))
    port = cert.get("port")
    if name and port and int(port) != 443:
        return f"{name}:{port}"
    return name or as_text(cert.get("subject")) or "certificate"


def collect_certs(steps: list[StepState], ref: datetime) -> tuple[list[Certificate], list[Renewal]]:
    """The latest facts per certificate seen by ``ssl.*`` steps (days left at ``ref``), and the renewals."""
    latest: dict[str, Certificate] = {}
    renewals: list[Renewal] = []
    for st in steps:
        if not st.action.startswith("ssl."):
            continue
        cert = st.data.get("cert")
        if isinstance(cert, Mapping):
            name = _cert_name(cert)
            not_after = parse_ts(cert.get("not_after"))
            latest[name] = Certificate(
                name=name,
                not_after=not_after,
                issuer=issuer_name(as_text(cert.get("issuer"))),
                serial=as_text(cert.get("serial")),
                checked=st.when,
                days_left=(not_after - ref).total_seconds() / 86400 if not_after else as_float(cert.get("days_left")),
                ok=st.status != "failed" and bool(cert.get("chain_ok", True)) and bool(cert.get("covers_name", True)),
            )
        renewed = st.data.get("renewed")
        if isinstance(renewed, Mapping) and st.status in ("changed",):
            lineage = st.data.get("lineage")
            if isinstance(cert, Mapping):
                name = _cert_name(cert)
            elif isinstance(lineage, Mapping) and lineage.get("names"):
                name = as_text(lineage["names"][0])
            else:
                name = st.step
            frm, to = renewed.get("from") or {}, renewed.get("to") or {}
            renewals.append(
                Renewal(
                    name=name,
                    when=st.when,
                    from_not_after=as_text(frm.get("not_after") if isinstance(frm, Mapping) else frm),
                    to_not_after=as_text(to.get("not_after") if isinstance(to, Mapping) else to),
                )
            )
    return sorted(latest.values(), key=lambda c: c.name), renewals


def collect_latency(steps: list[StepState], title: str) -> Latency | None:
    """Smoke check response times of the ``http.check`` steps, with a chart; None without samples."""
    points: list[LatencyPoint] = []
    all_ms: list[float] = []
    slowest = ("", -1.0)
    errors = 0
    for st in steps:
        if st.action != "http.check":
            continue
        reqs = st.data.get("requests")
        if not isinstance(reqs, list):
            continue
        run_ms = []
        for r in reqs:
            if not isinstance(r, Mapping):
                continue
            ms = as_float(first_of(r, "latency_ms", "ms", "elapsed_ms"))
            status = as_int(r.get("status"))
            if status is None or status >= 400 or r.get("ok") is False:
                errors += 1
            if ms is None or status is None:  # a refused or timed-out request has no response time
                continue
            run_ms.append(ms)
            if ms > slowest[1]:
                slowest = (as_text(r.get("url")), ms)
        if run_ms and st.when is not None:
            points.append(LatencyPoint(st.when, median(run_ms), percentile(run_ms, 95)))
        all_ms.extend(run_ms)
    if not all_ms:
        return Latency(0, None, None, "", None, errors, [], "") if errors else None
    return Latency(
        samples=len(all_ms),
        median_ms=median(all_ms),
        p95_ms=percentile(all_ms, 95),
        slowest_url=slowest[0],
        slowest_ms=slowest[1],
        errors=errors,
        points=points,
        chart_svg=latency_svg(points, title=title),
    )
