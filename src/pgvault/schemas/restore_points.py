"""Restore points as pgvault lists them, and as Command Center's browse shows them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..backup.manifest import Manifest
from ..catalog.models import Job, RestorePoint
from ..domain.destinations import describe
from ..domain.jobs import JobStatus
from .common import Absent, Answer, epoch
from .plans import DestinationLocation


def restore_point_summary(point: RestorePoint, job: Job) -> dict[str, Any]:
    return {
        "restorePointId": point.id,
        "jobId": point.job_id,
        "instanceId": point.instance_id,
        "backupTime": epoch(job.started_at),
        "completedTime": epoch(point.created_at),
        "status": job.status,
        "serverVersion": point.server_version,
        "totalBytes": point.total_bytes,
        "databases": list(point.databases),
        "snapshotTimes": {n: epoch(dt.datetime.fromisoformat(t)) for n, t in (point.snapshot_times or {}).items()},
        "prefix": point.prefix,
        "copies": [{**describe(c.kind, c.config), "state": c.state, "destinationId": c.destination_id,
                    "retentionDays": c.retention_days} for c in point.copies],
        "encrypted": point.data_key_sealed is not None,
        "verification": {
            "status": point.verify_status, "time": epoch(point.verified_at), "message": point.verify_message,
        },
        "drill": {
            "status": point.drill_status, "time": epoch(point.drill_at), "seconds": point.drill_seconds,
            "message": point.drill_message,
        },
    }


def files_of(manifest: Manifest, uri: Any) -> list[dict[str, Any]]:
    out = [
        {"database": d.name, "key": d.file.key, "location": uri(d.file.key), "bytes": d.file.bytes,
         "sha256": d.file.sha256, "format": d.file.format}
        for d in manifest.databases
    ]
    if manifest.globals is not None:
        g = manifest.globals
        out.append({"database": None, "key": g.key, "location": uri(g.key), "bytes": g.bytes, "sha256": g.sha256,
                    "format": g.format})
    return out


def browse_entries(point: RestorePoint, job: Job, manifest: Manifest | None) -> list[dict[str, Any]]:
    """Command Center's ``dataResultSet``: one folder per database of the restore point."""
    sizes = {d.name: d.file.bytes for d in manifest.databases} if manifest else {}
    when = epoch(job.started_at)
    snapshots = {n: epoch(dt.datetime.fromisoformat(t)) for n, t in (point.snapshot_times or {}).items()}
    return [
        {"displayName": name, "name": name, "path": f"/{name}", "size": sizes.get(name, 0),
         "modificationTime": snapshots.get(name, when), "flags": {"directory": True},
         "advancedData": {"backupTime": when, "snapshotTime": snapshots.get(name, when), "jobId": point.job_id,
                          "restorePointId": point.id}}
        for name in point.databases
    ]


# -- answers ---------------------------------------------------------------------------------------

class RestorePointCopy(DestinationLocation):
    state: str  # present | deleting
    destinationId: int | None  # None: its plan destination is gone
    retentionDays: int | None


class Verification(Answer):
    status: str | None  # None: never verified
    time: int
    message: str | None


class Drill(Answer):
    status: str | None  # None: never drilled
    time: int
    seconds: float | None
    message: str | None


class RestorePointSummary(Answer):
    restorePointId: int
    jobId: int
    instanceId: int
    backupTime: int
    completedTime: int
    status: JobStatus  # of its backup job
    serverVersion: str
    totalBytes: int
    databases: list[str]
    snapshotTimes: dict[str, int]
    prefix: str
    copies: list[RestorePointCopy]
    encrypted: bool
    verification: Verification
    drill: Drill


class RestorePointList(Answer):
    """``GET /RestorePoints``."""

    totalRecords: int
    restorePoints: list[RestorePointSummary]


class RestorePointFile(Answer):
    database: str | None  # None: the globals file
    key: str
    location: str
    bytes: int
    sha256: str
    format: str


class RestorePointDetail(RestorePointSummary):
    """``GET /RestorePoints/{id}``: with its files from the manifest, or ``manifestError`` (no files) when
    the manifest cannot be read."""

    files: list[RestorePointFile]
    manifestError: str | Absent = None
    pgDumpVersion: str | Absent = None
    warnings: list[str] | Absent = None


class BrowseFlags(Answer):
    directory: bool


class BrowseAdvancedData(Answer):
    backupTime: int
    snapshotTime: int
    jobId: int
    restorePointId: int


class BrowseEntry(Answer):
    """One database of the restore point, as a folder."""

    displayName: str
    name: str
    path: str
    size: int
    modificationTime: int
    flags: BrowseFlags
    advancedData: BrowseAdvancedData


class BrowseResult(Answer):
    dataResultSet: list[BrowseEntry]
    totalItemsFound: int
    restorePointsOfInstance: int | Absent = None  # left out when the instance has no restore point


class BrowseResponse(Answer):
    respType: int | Absent = None
    browseResult: BrowseResult


class DoBrowseResponse(Answer):
    """``POST /DoBrowse``."""

    browseResponses: list[BrowseResponse]
