"""A backup folder whose name forges the listing's marker line is not read as a backup."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from maintkit.probes import RawOutput
from maintkit.probes.backup import BackupListing

REAL = "20250301T020000Z-a1b2c3"
FORGED = "20250101T000000Z-abcdef"


def test_a_name_with_a_forged_marker_line_is_skipped(tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    (backups / REAL).mkdir(parents=True)
    (backups / REAL / "manifest.json").write_text(json.dumps({"id": REAL, "created": "2025-03-01T02:00:00+00:00"}))
    forged = backups / f"x\n@@maint-manifest {FORGED}"
    forged.mkdir()
    (forged / "manifest.json").write_text(json.dumps({"id": FORGED, "created": "2025-01-01T00:00:00+00:00"}))
    probe = BackupListing(str(backups))
    out = subprocess.run(["sh", "-c", probe.script()], capture_output=True, text=True, check=True)
    listing = probe.parse(RawOutput(out.stdout, 0))
    assert [m.id for m in listing.backups] == [REAL]
    assert listing.broken == ()
    assert FORGED not in out.stdout
