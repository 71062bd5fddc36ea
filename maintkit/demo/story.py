"""What the demo watches while it tells its story: a shopper on production's cart, the release
each environment runs, and checksums of the files each received.

Nothing here prints: the CLI tells the story from these facts.
"""

from __future__ import annotations

import hashlib
import http.cookiejar
import json
import os
import stat
import threading
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CartPoller", "Deployed", "Polls", "deployed", "tree_checksum"]

MARKER = ".maint-release.json"


@dataclass
class Polls:
    """What a shopper saw: one HTTP status per request (0: no answer)."""

    statuses: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Requests made."""
        return len(self.statuses)

    @property
    def ok(self) -> int:
        """Requests answered 200."""
        return sum(1 for s in self.statuses if s == 200)

    def describe(self) -> str:
        """``41 of 41 cart requests`` (plus what the others got, if any failed)."""
        text = f"{self.ok} of {self.total} cart requests"
        bad = Counter(s for s in self.statuses if s != 200)
        if bad:
            text += " (others: " + ", ".join(f"{n} x {s or 'no answer'}" for s, n in sorted(bad.items())) + ")"
        return text


class CartPoller:
    """A shopper on ``url``: requests it again and again (keeping its session cookie) in a
    thread, from :meth:`start` until :meth:`stop`, which joins the thread and returns the tally."""

    def __init__(self, url: str, interval: float = 0.04, timeout: float = 5.0) -> None:
        self.url, self.interval, self.timeout = url, interval, timeout
        self.polls = Polls()
        self._stop = threading.Event()
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), urllib.request.ProxyHandler({})
        )
        self._thread = threading.Thread(target=self._loop, name="maint-demo-shopper", daemon=True)

    def start(self) -> CartPoller:
        """Start polling (the first request goes out at once)."""
        self._thread.start()
        return self

    def stop(self) -> Polls:
        """Stop: one last request (what the shopper sees once the update is over), then the tally."""
        self._stop.set()
        self._thread.join()
        return self.polls

    def _loop(self) -> None:
        while True:
            self.polls.statuses.append(self._get())
            # the pause between requests paces the shopper; stop() ends it at once
            if self._stop.wait(self.interval):
                self.polls.statuses.append(self._get())
                return

    def _get(self) -> int:
        try:
            with self._opener.open(self.url, timeout=self.timeout) as resp:
                resp.read()
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0


@dataclass(frozen=True)
class Deployed:
    """The release an environment runs: its directory name, commit, ref and files' checksum."""

    env: str
    release: str
    commit: str
    ref: str
    checksum: str
    files: int


def deployed(env: str, path: Path) -> Deployed | None:
    """What ``path/current`` holds (None when nothing is deployed)."""
    try:
        release_dir = (path / "current").resolve(strict=True)
        marker = json.loads((release_dir / MARKER).read_text())
    except (OSError, ValueError):
        return None
    checksum, files = tree_checksum(release_dir, path / "shared")
    return Deployed(env, release_dir.name, str(marker.get("commit", "")), str(marker.get("ref", "")), checksum, files)


def tree_checksum(release_dir: Path, shared: Path) -> tuple[str, int]:
    """SHA-256 over a release's tree, and how many entries it covers.

    Every file counts with its path, mode and content, every symlink with its target; a link
    into the environment's own ``shared`` directory counts by its place there (each
    environment has its own ``shared``). The completion marker (release name, build time) is
    left out: it names the release, not its content."""
    digest = hashlib.sha256()
    count = 0
    for dirpath, dirnames, filenames in os.walk(release_dir):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]):
            full = Path(dirpath) / name
            rel = full.relative_to(release_dir).as_posix()
            if rel == MARKER:
                continue
            digest.update(_entry(full, rel, shared))
            count += 1
    return digest.hexdigest(), count


def _entry(full: Path, rel: str, shared: Path) -> bytes:
    st = full.lstat()
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(full)
        if Path(target).is_relative_to(shared):
            target = "<shared>/" + Path(target).relative_to(shared).as_posix()
        return f"L {rel}\0{target}\n".encode()
    content = hashlib.sha256(full.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else "-"
    return f"F {rel}\0{stat.S_IMODE(st.st_mode):o} {content}\n".encode()
