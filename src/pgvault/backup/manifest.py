"""The manifest: the last object of a backup, and the one that makes it a restore point."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT = "pgvault-manifest/1"


@dataclass
class FileEntry:
    key: str
    bytes: int
    sha256: str
    format: str  # "custom+zstd" (pg_dump -Fc -Z0, zstd-compressed) or "sql"


@dataclass
class DatabaseEntry:
    name: str
    file: FileEntry


@dataclass
class Manifest:
    job_id: int
    instance: dict[str, Any]
    server_version: str
    server_version_num: int
    pg_dump_version: str
    started_at: dt.datetime
    ended_at: dt.datetime
    databases: list[DatabaseEntry] = field(default_factory=list)
    globals: FileEntry | None = None
    failed: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        doc = {"format": FORMAT, **asdict(self)}
        return json.dumps(doc, indent=2, default=_default, ensure_ascii=False).encode()

    @property
    def total_bytes(self) -> int:
        return sum(d.file.bytes for d in self.databases) + (self.globals.bytes if self.globals else 0)


def _default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")
