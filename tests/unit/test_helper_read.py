"""The helper's read-only run as a probe: its source fed from a here-document inside the batch's
shell (every byte of it), its key the PHP binary and the root (shared by every step's argv), and
only checks read it (a step's own change never reads it again for verify)."""

from __future__ import annotations

import hashlib
from importlib import resources

from maintkit.probes import CommandProbe, run_batch
from maintkit.probes.cms import HelperRead
from maintkit.transport.local import LocalTransport

SOURCE = resources.files("maintkit").joinpath("php/wp_helper.php").read_text(encoding="utf-8")


def test_the_source_reaches_the_program_whole_inside_a_batch() -> None:
    # a stand-in for php: prints the sha256 of what it read on stdin, and its arguments
    argv = (
        "sh",
        "-c",
        'printf "%s %s\\n" "$(sha256sum | cut -d " " -f 1)" "$*"; echo to-stderr >&2',
        "php",
        "--",
        "/srv/it's",
    )
    probe = HelperRead(argv, name="php:/srv/it's")
    other = CommandProbe(("echo", "other"))
    raw, _ = run_batch(LocalTransport(), [probe, other])
    digest = hashlib.sha256((SOURCE.rstrip("\n") + "\n").encode()).hexdigest()
    assert raw[probe.key].stdout == f"{digest} -- /srv/it's\nto-stderr\n"
    assert raw[other.key].stdout == "other\n"


def test_the_key_is_the_php_and_the_root_whatever_the_argv() -> None:
    with_cache = HelperRead(("sh", "-c", "x", "sh", "/srv/.maint/php-cache", "php", "--", "/srv"), name="php:/srv")
    plain = HelperRead(("php", "--", "/srv"), name="php:/srv")
    assert with_cache.key == plain.key == "wp.list:php:/srv"
    assert HelperRead(("php", "--", "/srv"), name="php8.3:/srv").key != plain.key
    assert HelperRead.reread is False and CommandProbe.reread is True
