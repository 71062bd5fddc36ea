"""Running certbot on the host: its failures (with the tail of its log) and the web server reload."""

from __future__ import annotations

from typing import Any

from maintkit._text import tail as text_tail
from maintkit.action import Context
from maintkit.actions.ssl.params import DEFAULT_LOGS_DIR, CertbotParams
from maintkit.errors import ApplyFailed

_NOISE = ("Saving debug log", "Ask for help", "Hint:", "Certbot failed to authenticate", "Processing ")


def certbot_failure(ctx: Context, p: CertbotParams, what: str, res: Any) -> ApplyFailed:
    """An ApplyFailed carrying certbot's output and the tail of its log."""
    log = f"{(p.logs_dir or DEFAULT_LOGS_DIR).rstrip('/')}/letsencrypt.log"
    tail = ctx.run(["tail", "-n", "40", "--", log], check=False, timeout=30)
    output = summarize_certbot((res.stdout + "\n" + res.stderr).strip())
    note = " (timed out)" if res.timed_out else ""
    return ApplyFailed(
        f"certbot {what} failed with exit {res.exit_code}{note}:\n{output}",
        details={"certbot_output": output, "certbot_log_tail": text_tail(tail.stdout, 6000), "certbot_log": log},
    )


def summarize_certbot(text: str, limit: int = 10) -> str:
    """The informative lines of certbot's output (no separators, hints or log-file notices)."""
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and set(line.strip()) - set("- ") and not line.strip().startswith(_NOISE)
    ]
    keep = [line for line in lines if any(k in line for k in ("Detail:", "Type:", "rror", "ailed", "Domain:"))]
    return "\n".join((keep or lines)[-limit:])


def reload_server(ctx: Context, argv: list[str] | None) -> None:
    """Run the web server's reload command (nothing when ``argv`` is empty); ApplyFailed when it fails."""
    if not argv:
        return
    res = ctx.run(argv, check=False, timeout=120)
    if not res.ok:
        raise ApplyFailed(
            f"reloading the web server ({' '.join(argv)}) failed with exit {res.exit_code}: "
            f"{text_tail(res.stderr or res.stdout, 500)}",
        )


__all__ = ["certbot_failure", "reload_server", "summarize_certbot"]
