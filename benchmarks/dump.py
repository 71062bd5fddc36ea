"""Benchmark: how long a database dump takes in maint, by the form of its shell, against the dump alone.

    python benchmarks/dump.py [--mb 100] [--rounds 3] [--json FILE]

Run as root, with nothing else running: it starts a lab MariaDB (tests/lab/mariadb.py), fills
one database with ``--mb`` megabytes of ``wp_posts``-like rows (text drawn from a vocabulary
with a Zipf-like spread, so it compresses about as a shop's posts do), then, ``--rounds``
times in alternation, runs each form of the dump into a fresh folder and times it:

- **cms.update**: the script cms.update sends before an update (``maintkit.actions.cms.db.
  _dump_script``): ``mariadb-dump | zstd`` in one pipe (the host has zstd);
- **cms.update without zstd**: the same script with its lookup of zstd made to find nothing,
  so the pipe goes through ``gzip -1`` (a host without zstd; everywhere before zstd);
- **cms.update before the pipe**: ``mariadb-dump --result-file=F``, then ``gzip -f F`` at
  gzip's default level (and a ``chmod``);
- **backup.create**: its dump's pipe (``maintkit.actions.backup.dump._script``'s, through
  ``maintkit.actions.backup.db.pipeline``): ``mariadb-dump | zstd``, one thread;
- **backup.create with gzip**: the same pipe through ``gzip`` at its default level
  (``compression: gzip``, a host without zstd, and every backup before zstd);
- **dump alone**: ``mariadb-dump`` into ``/dev/null``, the least any of them can take.

Every form's file must decompress to the same dump (the ``-- Dump completed`` line aside).
Prints the median wall time, the CPU of the shell and its programs (MariaDB's own is not
counted: it is the same for every form), the file's size, and each form's time over the
dump's alone. On production, cms.update's dump is time inside the maintenance window when one
is open before the update; backup.create's is CPU the shop's server spends beside its visitors.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import median, timed  # noqa: E402

from maintkit.actions.backup.codec import compress_argv  # noqa: E402
from maintkit.actions.backup.db import DatabaseSpec, DbClient, pipeline  # noqa: E402
from maintkit.actions.cms.db import _dump_script  # noqa: E402
from maintkit.transport.base import join  # noqa: E402

DUMP_OPTIONS = "--single-transaction --routines --triggers --hex-blob"
ROW_BYTES = 2000
#: cms.update's script as on a host without zstd: its lookup of zstd made to find nothing
NO_ZSTD = ("command -v zstd ", "command -v zstd-not-installed ")


def forms(cnf: str, database: str, out: Path) -> dict[str, str]:
    """Each form's shell, writing ``out/database.sql.zst`` or ``.gz`` (``dump alone`` nothing)."""
    base = f"mariadb-dump --defaults-file={cnf} {DUMP_OPTIONS}"
    dump, gz, zst, sql = f"{base} {database}", out / "database.sql.gz", out / "database.sql.zst", out / "database.sql"
    backup = join(DbClient(DatabaseSpec(name=database, defaults_file=cnf), frozenset({"mariadb-dump"})).dump_argv())
    return {
        "cms.update": _dump_script(database, cnf, str(zst)),
        "cms.update without zstd": _dump_script(database, cnf, str(zst)).replace(*NO_ZSTD),
        "cms.update before the pipe": f"umask 077\n{base} --result-file={sql} {database} && gzip -f -- {sql}"
        f" && chmod 600 -- {gz}",
        "backup.create": pipeline(backup, join(compress_argv("zstd", threads=False)), out=str(zst)),
        "backup.create with gzip": pipeline(backup, join(compress_argv("gzip")), out=str(gz)),
        "dump alone": f"{dump} > /dev/null",
    }


def rows_sql(n: int, rng: random.Random) -> str:
    """One INSERT of ``n`` post rows of about :data:`ROW_BYTES` each."""
    vocabulary = [f"w{i}x{rng.randrange(10**6)}" for i in range(2000)]
    weights = [1 / (i + 1) for i in range(len(vocabulary))]
    values = []
    for _ in range(n):
        words = rng.choices(vocabulary, weights, k=ROW_BYTES // 8)
        values.append(f"('a post title', '{' '.join(words)}', 'publish')")
    return "INSERT INTO wp_posts (post_title, post_content, post_status) VALUES " + ",".join(values) + ";\n"


def fill(cnf: str, database: str, mb: int) -> None:
    """A ``wp_posts`` table of about ``mb`` megabytes, in batches of 200 rows through one client."""
    rng = random.Random(7)
    statements = [
        "CREATE TABLE wp_posts (ID bigint AUTO_INCREMENT PRIMARY KEY, post_title text, "
        "post_content longtext, post_status varchar(20)) ENGINE=InnoDB;\n"
    ]
    rows = mb * 1024 * 1024 // ROW_BYTES
    statements += [rows_sql(min(200, rows - i), rng) for i in range(0, rows, 200)]
    client = ["mariadb", f"--defaults-file={cnf}", database]
    subprocess.run(client, input="".join(statements).encode(), check=True, timeout=1800)


def dump_text(path: Path) -> bytes:
    """The decompressed dump (zstd or gzip, by its name) without its last line (``-- Dump
    completed on <time>``)."""
    if path.suffix == ".zst":
        data = subprocess.run(["zstd", "-q", "-dc", "--", str(path)], capture_output=True, check=True).stdout
    else:
        data = gzip.decompress(path.read_bytes())
    return b"\n".join(line for line in data.split(b"\n") if not line.startswith(b"-- Dump completed"))


def measure(cnf: str, database: str, work: Path, rounds: int) -> dict[str, list[dict[str, float]]]:
    """``rounds`` alternating runs of every form (after one unmeasured warm-up run of each)."""
    out = work / "out"
    scripts = forms(cnf, database, out)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in scripts}
    reference: bytes | None = None
    for r in range(rounds + 1):
        for name, script in scripts.items():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            wall, cpu = timed(["sh", "-c", script])
            written = list(out.iterdir())
            if len(written) > 1:
                raise SystemExit(f"{name}: wrote {sorted(p.name for p in written)}, one file expected")
            size = written[0].stat().st_size if written else 0
            if size:
                text = dump_text(written[0])
                if reference is not None and text != reference:
                    raise SystemExit(f"{name}: the dump differs from the other forms'")
                reference = text
            if r:
                results[name].append({"wall": wall, "cpu": cpu, "bytes": size})
    return results


def table(results: dict[str, list[dict[str, float]]]) -> list[str]:
    """The printed table: medians, and each form's wall time over the dump's alone."""
    alone = median(x["wall"] for x in results["dump alone"])
    lines = ["form | wall (s) | CPU of the shell and programs (s) | file (MB) | wall / dump alone",
             "---|---|---|---|---"]  # fmt: skip
    for name, xs in results.items():
        wall, cpu, size = (median(x[k] for x in xs) for k in ("wall", "cpu", "bytes"))
        shown = f"{size / 1e6:.1f}" if size else "-"
        lines.append(f"{name} | {wall:.2f} | {cpu:.2f} | {shown} | {wall / alone:.2f}x")
    return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=100, help="size of the table's rows in MB (default 100)")
    ap.add_argument("--rounds", type=int, default=3, help="counted runs of every form (default 3)")
    ap.add_argument("--json", metavar="FILE", help="write every run's figures here")
    args = ap.parse_args(argv)
    if args.mb < 1 or args.rounds < 1:
        ap.error("--mb and --rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Start MariaDB, fill the database, time every form, print the table."""
    from tests.lab.mariadb import MariaDB

    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="maint-dump-bench-"))
    work.chmod(0o755)  # the server runs as mysql
    server = MariaDB(work / "mariadb")
    try:
        server.start()
        user, password = server.create_database("shop")
        cnf = work / "client.cnf"
        cnf.write_text(f'[client]\nhost={server.host}\nport={server.port}\nuser={user}\npassword="{password}"\n')
        os.chmod(cnf, 0o600)
        fill(str(cnf), "shop", args.mb)
        results = measure(str(cnf), "shop", work, args.rounds)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(table(results)))
    if args.json:
        doc: dict[str, Any] = {"mb": args.mb, "rounds": args.rounds, "results": results}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
