"""A run's real SSH transports, each wrapped to note every command before it is sent.

The SSH transport's own count of the sessions it opened (``round_trips``) must agree with
what was noted; :meth:`Recorder.kinds` tells the stage's read, the lock, the unlock and the
steps' own commands apart.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from maintkit import locks
from maintkit.inventory import Environment
from maintkit.probes.cms import HELPER_EOF
from maintkit.transport.base import Transport, join
from maintkit.transport.factory import transport_for
from tests.lab.sshd import LabHost


def elide_helper_source(script: str) -> str:
    """``script`` with the PHP helper's source (a here-document of the state read's probe)
    replaced by ``<helper source>``: what the tests look for is maint's own shell, never the
    words of the helper."""
    start = f"<<'{HELPER_EOF}'\n"
    out, rest = "", script
    while start in rest:
        head, _, after = rest.partition(start)
        _, sep, rest = after.partition(f"\n{HELPER_EOF}")
        assert sep, "an unterminated here-document"
        out += f"{head}{start}<helper source>\n{HELPER_EOF}"
    return out + rest


class Recording:
    """A real transport that notes every command (its kind and text) before sending it."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.host = inner.host
        self.sent: list[tuple[str, str]] = []

    def run(self, argv: Any, **kwargs: Any) -> Any:
        self.sent.append(("run", join(argv)))
        return self.inner.run(argv, **kwargs)

    def run_shell(self, script: str, **kwargs: Any) -> Any:
        self.sent.append(("shell", elide_helper_source(script)))
        return self.inner.run_shell(script, **kwargs)

    def put(self, data: bytes, path: str, **kwargs: Any) -> None:
        self.sent.append(("put", path))
        self.inner.put(data, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> bytes:
        self.sent.append(("get", path))
        return self.inner.get(path, **kwargs)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Recorder:
    """The transport factory of a run: real SSH transports, each wrapped in :class:`Recording`."""

    def __init__(self) -> None:
        self.by_host: dict[str, Recording] = {}

    def __call__(self, env: Environment) -> Transport:
        rec = Recording(transport_for(env, {}))
        self.by_host[env.host or ""] = rec
        return rec  # duck-typed like runner.trace.TracedTransport (Transport is a Protocol)

    def sessions(self, host: LabHost) -> int:
        """Commands sent to ``host``; the SSH transport's own count of sessions must agree."""
        rec = self.by_host[host.ip]
        assert rec.inner.round_trips == len(rec.sent), rec.sent  # type: ignore[attr-defined]
        return len(rec.sent)

    def kinds(self, host: LabHost, site: Path, run_id: str) -> list[str]:
        """What each command sent to ``host`` was: read, lock+read, unlock, or a step's own command."""
        out = []
        for kind, text in self.by_host[host.ip].sent:
            if kind == "shell" and locks.SEEN_MARK in text:
                out.append("read")
            elif kind == "shell" and locks.TAKEN_MARK in text:
                out.append("lock+read")
            elif kind == "shell" and text == locks.release_script(str(site), run_id):
                out.append("unlock")
            else:
                out.append("step")
        return out


#: what follows each part of a round trip of several (maintkit.actions.cms.trip): the lines that end
#: its stdout and stderr, then (but after the last part) the test that lets the next part run
PART_END = re.compile(
    r"\nrc=\$\?\nprintf '\\n%s %s %s\\n' (@@mk-[0-9a-f]{32}) (\d+) \"\$rc\"; [^\n]*\n"
    r"(?:\{ [^\n]*\n\} \|\| \{ [^\n]* exit \"\$rc\"; \}\n)?"
)


def trip_parts(script: str) -> list[str]:
    """The parts of a round trip of several, in order, each as sent (``( PART\\n)``, then
    `` </dev/null`` unless it reads the round trip's stdin; the first one with whatever came
    before it); ``[script]`` for a command that is not such a round trip."""
    parts, start = [], 0
    for i, end in enumerate(PART_END.finditer(script)):
        assert end.group(2) == str(i), script
        parts.append(script[start : end.start()])
        start = end.end()
    return parts or [script]
