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
    # What was done to the program's output, in order: "custom+zstd" (pg_dump -Fc -Z0, zstd-compressed),
    # "sql" (pg_dumpall); "+aes256gcm" when then encrypted (backup/encryption.py).
    format: str


@dataclass
class DatabaseEntry:
    name: str
    file: FileEntry
    encoding: str = "UTF8"
    collate: str = ""
    ctype: str = ""
    snapshot_time: str | None = None  # ISO 8601, UTC: the moment the data is from


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
    # Encrypted backups: the scheme and the object beside the manifest holding the sealed data key.
    encryption: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        doc = json.loads(data)
        if doc.get("format") != FORMAT:
            raise ValueError(f"not a pgvault manifest ({doc.get('format')!r})")
        doc.pop("format")
        for key in ("started_at", "ended_at"):
            doc[key] = dt.datetime.fromisoformat(doc[key])
        for d in doc["databases"]:
            d.pop("row_counts", None)  # counted at backup time until drills counted the archive's rows
        doc["databases"] = [
            DatabaseEntry(**{**d, "file": FileEntry(**d["file"])}) for d in doc["databases"]
        ]
        if doc.get("globals"):
            doc["globals"] = FileEntry(**doc["globals"])
        return cls(**doc)

    def database(self, name: str) -> DatabaseEntry | None:
        return next((d for d in self.databases if d.name == name), None)

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
