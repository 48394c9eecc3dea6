"""Locating the servers the tests start."""

from __future__ import annotations

import glob
from pathlib import Path


def system_pg_bin() -> Path | None:
    """Debian's PostgreSQL server (SSL-capable), if installed: see scripts/test-deps.sh."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


REPO = Path(__file__).resolve().parents[2]
MATRIX_MAJORS = [10, 11, 12, 13, 14, 15, 16, 17, 18]


def matrix_dirs() -> list[Path]:
    """Where the matrix's server programs are: PGVAULT_PG_SERVERS when set, else what scripts/pg-servers.sh
    installs (.cache/pg-servers/<major>/bin)."""
    import os

    configured = os.environ.get("PGVAULT_PG_SERVERS")
    if configured:
        return [Path(p) for p in configured.split(os.pathsep) if p]
    return [REPO / ".cache" / "pg-servers"]


def major_bin(major: int) -> Path | None:
    """A folder with initdb, pg_ctl and postgres of PostgreSQL ``major``, or None."""
    for folder in [*matrix_dirs(), Path("/usr/lib/postgresql")]:
        candidate = folder / str(major) / "bin"
        if all((candidate / p).is_file() for p in ("initdb", "pg_ctl", "postgres")):
            return candidate
    return None


class MajorServers:
    """One server per PostgreSQL major, started the first time a test asks for it and stopped at the end
    of the session. A major whose programs are missing skips the asking test, saying so."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._servers: dict[tuple[int, str], object] = {}

    def get(self, major: int, *, flavour: str = "plain", **options: object):
        import pytest

        from pgvault.pgtools.localserver import LocalServer

        key = (major, flavour)
        if key not in self._servers:
            bin_dir = major_bin(major)
            if bin_dir is None:
                pytest.skip(f"PostgreSQL {major} server programs not found (run scripts/pg-servers.sh, "
                            f"or set PGVAULT_PG_SERVERS)")
            server = LocalServer(self.base / f"pg{major}-{flavour}", bin_dir=bin_dir, **options)  # type: ignore[arg-type]
            self._servers[key] = server.start()
        return self._servers[key]

    def stop(self) -> None:
        for server in self._servers.values():
            server.stop()  # type: ignore[attr-defined]
