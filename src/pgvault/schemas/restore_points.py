"""Restore points as pgvault lists them, and as Command Center's browse shows them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..backup.manifest import Manifest
from ..catalog.models import Job, RestorePoint
from ..domain.destinations import describe
from .common import epoch


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
