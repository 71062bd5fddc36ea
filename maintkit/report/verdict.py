"""The plain-language verdict a shop owner reads first, derived from what the report found.

Each verdict is built from clauses, each clause from the data (never a sentence written per
case): what a rollback protected, which updates were held back and why, what was applied,
whether the shop was checked and answered, how available it was, and whether anything needs
the owner. Also the words for why a check failed (``the cart answered HTTP 500``) from a failed
``http.check``'s recorded requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from maintkit._text import head
from maintkit.report.model import Report, Rollback, SiteReport, Update, Verdict
from maintkit.report.reading import StepState, as_int, as_text

__all__ = ["failure_cause", "page_name", "report_verdict", "site_verdict"]

_NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}
_PAGES = (
    ("checkout", "the checkout page"),
    ("cart", "the cart"),
    ("basket", "the cart"),
    ("product", "a product page"),
    ("account", "the account page"),
    ("admin", "the admin"),
)
_RANK = {"ok": 0, "warn": 1, "bad": 2}


def _count(n: int, one: str, many: str | None = None) -> str:
    """``one update``, ``two updates``, ``12 updates``."""
    return f"{_NUMBERS.get(n, str(n))} {one if n == 1 else (many or one + 's')}"


def page_name(url: str, label: str = "") -> str:
    """What a person calls the page behind ``url`` (or a flow step ``label``): the cart, the home page..."""
    path = urlsplit(url).path if "://" in url else url.split("?", 1)[0]
    for text in (label.lower(), path.lower()):
        for key, name in _PAGES:
            if key in text:
                return name
    return "the home page" if path in ("", "/") else f"the page {path}"


def _http_cause(failures: list[Any]) -> tuple[str, str]:
    """The first failed request in words (``the cart answered HTTP 500``), and the page it names."""
    first = next((f for f in failures if isinstance(f, Mapping)), None)
    if first is None:
        return "", ""
    page = page_name(as_text(first.get("url")), as_text(first.get("flow_step")))
    status = as_int(first.get("status"))
    reason = as_text(first.get("reason")).split(";")[0].strip()
    if status is None:
        return f"{page} did not answer" + (f" ({head(reason, 80)})" if reason else ""), page
    if reason and not reason.startswith("status "):
        return f"{page} answered HTTP {status} but {head(reason, 80)}", page
    return f"{page} answered HTTP {status}", page


def failure_cause(st: StepState) -> tuple[str, str]:
    """Why the failed step ``st`` failed, in words a shop owner reads, and the page a smoke check named."""
    failures = st.data.get("failures")
    if st.action == "http.check" and isinstance(failures, list):
        cause, page = _http_cause(failures)
        if cause:
            return cause, page
    label = st.step if st.step == st.action else f"{st.step} ({st.action})"
    text = (st.error or st.reason or "failed").strip().splitlines()
    return f"the {label} step failed: {head(text[0] if text else 'failed', 120)}", ""


def _held_back(site: SiteReport) -> list[Update]:
    """Updates rolled back and not applied again later in the period (same package and environment)."""
    done = {(u.package, u.env) for u in site.updates if not u.rolled_back and not u.initial}
    return [u for u in site.updates if u.rolled_back and not u.initial and (u.package, u.env) not in done]


def _rollback_clause(rb: Rollback) -> tuple[str, str]:
    """One rollback: what was undone, why, and what it means for production."""
    what = "update rolled back" if rb.updates else "changes rolled back"
    cause = f": {rb.cause}" if rb.cause else ""
    if not rb.ok:
        return f"rollback on {rb.env} incomplete{cause}; the site needs checking by hand", "bad"
    if rb.env != "production" and not rb.production_changed:
        return f"{what} on {rb.env}{cause}; production untouched", "warn"
    return f"{what} on {rb.env}{cause}; the previous version is back online", "warn"


def _update_clauses(site: SiteReport) -> list[str]:
    """What happened to the updates of the period."""
    applied = [u for u in site.updates if not u.rolled_back and not u.initial]
    initial = [u for u in site.updates if u.initial and not u.rolled_back]
    held = _held_back(site)
    out: list[str] = []
    if held:
        pages = {rb.broke for rb in site.rollbacks if rb.updates and rb.broke}
        pronoun = "it" if len(held) == 1 else "they"
        why = f" because {pronoun} broke {pages.pop()}" if len(pages) == 1 else " (see Rollbacks)"
        out.append(f"{_count(len(held), 'update')} held back{why}")
    if applied:
        out.append(f"{_count(len(applied), 'other update')} applied" if held else "all updates applied")
    if initial:
        out.append("first release put online (initial deploy, not an update)")
    if not (held or applied or initial):
        out.append("no updates were needed")
    return out


def _watch_clauses(site: SiteReport) -> tuple[list[str], str]:
    """Whether the shop was checked and how available it was."""
    out: list[str] = []
    level = "ok"
    if site.checked is True:
        out.append("shop checked")
    elif site.checked is False:
        out.append("the last shop check failed")
        level = "bad"
    for h in site.health:
        if h.uptime_pct is not None:
            out.append(f"{h.env} up {h.uptime_pct:.2f}% of the measured time")
    return out, level


def site_verdict(site: SiteReport) -> Verdict:
    """The verdict of one site over the period (set ``site.attention`` first)."""
    level = "ok"
    clauses: list[str] = []
    for rb in site.rollbacks:
        text, lvl = _rollback_clause(rb)
        clauses.append(text)
        level = max(level, lvl, key=_RANK.__getitem__)
    clauses += _update_clauses(site)
    watch, lvl = _watch_clauses(site)
    clauses += watch
    level = max(level, lvl, key=_RANK.__getitem__)
    urgent = sum(1 for a in site.attention if a.level == "urgent")
    if not site.attention:
        clauses.append("nothing needs you")
    else:
        n = len(site.attention)
        clauses.append(f"{_count(n, 'thing')} {'needs' if n == 1 else 'need'} your attention (below)")
        level = max(level, "bad" if urgent else "warn", key=_RANK.__getitem__)
    text = "; ".join(clauses)
    return Verdict(level, text[:1].upper() + text[1:] + ".")


def report_verdict(report: Report) -> Verdict:
    """The verdict of the whole period: the one site's, or how many sites are fine and which are not."""
    sites = report.sites
    if not sites:
        return Verdict("ok", "No runs and no health checks were recorded in this period.")
    if len(sites) == 1:
        return sites[0].verdict
    fine = [s.name for s in sites if s.verdict.level == "ok"]
    look = [s.name for s in sites if s.verdict.level == "warn"]
    you = [s.name for s in sites if s.verdict.level == "bad"]
    if not (look or you):
        return Verdict("ok", f"All {len(sites)} sites fine: nothing needs you.")
    parts = [f"{len(sites)} sites: {len(fine)} fine"]
    if look:
        parts.append(f"{', '.join(look)}: an update held back or rolled back, or something to plan")
    if you:
        parts.append(f"{', '.join(you)}: {'needs' if len(you) == 1 else 'need'} you now")
    return Verdict("bad" if you else "warn", "; ".join(parts) + ".")
