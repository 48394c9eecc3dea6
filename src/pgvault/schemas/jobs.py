"""Jobs in Command Center's shape (``totalRecordsWithoutPaging`` + ``jobs[].jobSummary``)."""

from __future__ import annotations

from typing import Any

from ..catalog.models import Job
from .common import POSTGRESQL_APP_ID, epoch


def job_summary(job: Job) -> dict[str, Any]:
    inst = job.instance
    sub = job.subclient
    return {
        "jobId": job.id,
        "jobType": job.job_type,
        "backupLevelName": job.backup_level,
        "status": job.status,
        "percentComplete": job.percent_complete,
        "currentPhaseName": job.phase,
        "pendingReason": job.message if job.status in ("Failed", "Waiting") else "",
        "jobStartTime": epoch(job.started_at or job.created_at),
        "jobEndTime": epoch(job.ended_at),
        "lastUpdateTime": epoch(job.updated_at),
        "message": job.message,
        "warnings": list(job.warnings or []),
        "isVisible": True,
        "subclient": {
            "clientName": inst.cloud_account.name, "clientId": inst.cloud_account_id,
            "appName": "PostgreSQL", "applicationId": POSTGRESQL_APP_ID,
            "instanceName": inst.name, "instanceId": inst.id,
            "backupsetName": sub.backupset.name, "backupsetId": sub.backupset_id,
            "subclientName": sub.name, "subclientId": sub.id,
        },
        "databases": [
            {"name": i.name, "status": i.status, "bytes": i.bytes, "sha256": i.sha256,
             "location": i.location, "error": i.error}
            for i in job.items if i.kind == "database"
        ],
        "globals": next(
            ({"status": i.status, "bytes": i.bytes, "sha256": i.sha256, "location": i.location, "error": i.error}
             for i in job.items if i.kind == "globals"),
            None,
        ),
    }


def job_response(job: Job) -> dict[str, Any]:
    return {"totalRecordsWithoutPaging": 1, "jobs": [{"jobSummary": job_summary(job)}]}
