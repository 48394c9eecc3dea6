"""Locating the servers the tests start."""

from __future__ import annotations

import glob
from pathlib import Path


def system_pg_bin() -> Path | None:
    """Debian's PostgreSQL server (SSL-capable), if installed: see scripts/test-deps.sh."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None
