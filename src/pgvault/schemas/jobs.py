"""Jobs in Command Center's shape (``totalRecordsWithoutPaging`` + ``jobs[].jobSummary``)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StrictInt, StrictStr

from ..catalog.models import Job, JobItem, JobStatus
from ..catalog.types import utcnow
from .common import POSTGRESQL_APP_ID, WireModel, epoch


def job_summary(job: Job) -> dict[str, Any]:
    inst = job.instance
    sub = job.subclient
    return {
        "jobId": job.id,
        "jobType": job.job_type,
        "backupLevelName": job.backup_level,
        "trigger": job.trigger,
        "userName": {"userName": job.started_by, "userId": 0},
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
        "appTypeName": "PostgreSQL",
        "localizedOperationName": job.job_type,
        "jobElapsedTime": _elapsed(job),
        "subclient": {
            "clientName": inst.cloud_account.name, "clientId": inst.cloud_account_id,
            "appName": "PostgreSQL", "applicationId": POSTGRESQL_APP_ID,
            "instanceName": inst.name, "instanceId": inst.id,
            "backupsetName": sub.backupset.name, "backupsetId": sub.backupset_id,
            "subclientName": sub.name, "subclientId": sub.id,
        },
        "restorePointId": job.restore_point_id,
        "databases": [_item(i) for i in job.items if i.kind in ("database", "tables")],
        "globals": next((_item(i) for i in job.items if i.kind == "globals"), None),
        "files": [_item(i) for i in job.items if i.kind == "file"],
    }


def _item(i: JobItem) -> dict[str, Any]:
    out: dict[str, Any] = {"name": i.name, "status": i.status, "bytes": i.bytes, "sha256": i.sha256,
                           "location": i.location, "error": i.error}
    if i.target is not None:
        out["target"] = i.target
    if i.details:
        out["details"] = i.details
    return out


def job_response(job: Job) -> dict[str, Any]:
    return {"totalRecordsWithoutPaging": 1, "jobs": [{"jobSummary": job_summary(job)}]}


def _elapsed(job: Job) -> int:
    """Seconds the job has run (to its end, or to now while it runs); 0 before it starts."""
    if job.started_at is None:
        return 0
    return max(0, int(((job.ended_at or utcnow()) - job.started_at).total_seconds()))


def job_details(job: Job) -> dict[str, Any]:
    """``POST /JobDetails``: cvpysdk's ``Job`` reads ``progressInfo`` (state, reasonForJobDelay,
    numOfFilesTransferred), ``detailInfo`` and ``attemptsInfo``."""
    done = [i for i in job.items if i.status == JobStatus.COMPLETED]
    failed = [i for i in job.items if i.status == JobStatus.FAILED]
    explains = job.status in (JobStatus.WAITING, JobStatus.FAILED, JobStatus.KILLED,
                              JobStatus.COMPLETED_WITH_ERRORS)
    start, end = epoch(job.started_at), epoch(job.ended_at)
    return {"job": {"jobDetail": {
        "generalInfo": {"jobId": job.id, "operationType": job.job_type, "backupLevelName": job.backup_level,
                        "jobStartedFrom": "pgvault", "subclient": job_summary(job)["subclient"]},
        "progressInfo": {
            "state": job.status, "percentComplete": job.percent_complete, "currentPhase": job.phase,
            "reasonForJobDelay": job.message if explains else "",
            "numOfFilesTransferred": len(done),
        },
        "detailInfo": {
            "startTime": start, "endTime": end, "lastUpdateTime": epoch(job.updated_at),
            "numOfObjects": len(job.items), "numOfFailures": len(failed),
            "sizeOfMediaOnDisk": sum(i.bytes for i in job.items),
            "warnings": list(job.warnings or []),
        },
        "attemptsInfo": [{
            "attemptNumber": job.attempts, "status": job.status, "startTime": start, "endTime": end,
        }] if job.attempts else [],
    }}}


class JobDetailsRequest(WireModel):
    jobId: StrictInt
    showAttempt: bool = False


class PagingConfig(WireModel):
    sortDirection: StrictInt = 1  # 1: newest first, 0: oldest first
    sortField: StrictStr = "jobId"
    offset: Annotated[StrictInt, Field(ge=0)] = 0
    limit: Annotated[StrictInt, Field(ge=1, le=10000)] = 20


class ClientRef(WireModel):
    clientId: StrictInt


class JobEntity(WireModel):
    subclientId: StrictInt | None = None
    instanceId: StrictInt | None = None
    clientId: StrictInt | None = None


class JobFilter(WireModel):
    completedJobLookupTime: Annotated[StrictInt, Field(ge=0)] = 0  # seconds; 0: no limit
    clientList: list[ClientRef] = []
    jobTypeList: list[StrictStr] = []
    entity: JobEntity | None = None


JOB_CATEGORIES = {0: "all", 1: "active", 2: "finished"}


class JobsRequest(WireModel):
    """``POST /Jobs`` (cvpysdk's ``JobController``): category 0 all, 1 active, 2 finished."""

    category: Annotated[StrictInt, Field(ge=0, le=2)] = 0
    pagingConfig: PagingConfig = PagingConfig()
    jobFilter: JobFilter = JobFilter()
