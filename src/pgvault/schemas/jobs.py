"""Jobs in Command Center's shape (``totalRecordsWithoutPaging`` + ``jobs[].jobSummary``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import ConfigDict, Field, StrictInt, StrictStr

from ..catalog.types import utcnow
from ..domain.jobs import ItemStatus, JobStatus, JobType
from .backupsets import SubclientRef
from .common import POSTGRESQL_APP_ID, Absent, Answer, PostgreSQLAppName, UserEntity, WireModel, epoch


class JobRow(NamedTuple):
    """What the API shows of a job, as ``services.jobs`` reads it (a plain tuple: reading a field of
    SQLAlchemy's Row costs ten times more)."""

    id: int
    job_type: str
    backup_level: str
    trigger: str
    started_by: str
    status: str
    percent_complete: int
    phase: str
    message: str
    warnings: list[str] | None
    attempts: int
    restore_point_id: int | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    updated_at: dt.datetime
    instance_id: int
    subclient_id: int
    client_name: str
    cloud_account_id: int
    instance_name: str
    backupset_name: str
    backupset_id: int
    subclient_name: str


class JobItemRow(NamedTuple):
    job_id: int
    kind: str
    name: str
    status: str
    bytes: int
    sha256: str | None
    location: str | None
    error: str | None
    target: str | None
    details: list[dict[str, Any]] | None
    phase: str | None  # while it runs
    elapsed_ms: int | None  # from its start to the last report of ``bytes`` (to its end, once it ended)


@dataclass(frozen=True, slots=True)
class JobView:
    """A job and its items (in id order)."""

    job: JobRow
    items: Sequence[JobItemRow]


def job_summary(view: JobView) -> dict[str, Any]:
    """A job as Command Center summarises it, from ``services.jobs.job_view``/``list_jobs``."""
    job = view.job
    return {
        "jobId": job.id,
        "jobType": job.job_type,
        "backupLevelName": job.backup_level,
        "trigger": job.trigger,
        "userName": {"userName": job.started_by, "userId": 0},
        "status": job.status,
        "percentComplete": job.percent_complete,
        "currentPhaseName": job.phase,
        "pendingReason": job.message if job.status in (JobStatus.FAILED, JobStatus.WAITING) else "",
        "jobStartTime": epoch(job.started_at or job.created_at),
        "jobEndTime": epoch(job.ended_at),
        "lastUpdateTime": epoch(job.updated_at),
        "message": job.message,
        "warnings": list(job.warnings or []),
        "isVisible": True,
        "appTypeName": "PostgreSQL",
        "localizedOperationName": job.job_type,
        "jobElapsedTime": _elapsed(job),
        "subclient": _subclient(job),
        "restorePointId": job.restore_point_id,
        "databases": [_item(i) for i in view.items if i.kind in ("database", "tables")],
        "globals": next((_item(i) for i in view.items if i.kind == "globals"), None),
        "files": [_item(i) for i in view.items if i.kind == "file"],
    }


def _subclient(job: JobRow) -> dict[str, Any]:
    return {
        "clientName": job.client_name, "clientId": job.cloud_account_id,
        "appName": "PostgreSQL", "applicationId": POSTGRESQL_APP_ID,
        "instanceName": job.instance_name, "instanceId": job.instance_id,
        "backupsetName": job.backupset_name, "backupsetId": job.backupset_id,
        "subclientName": job.subclient_name, "subclientId": job.subclient_id,
    }


def _item(i: JobItemRow) -> dict[str, Any]:
    out: dict[str, Any] = {"name": i.name, "status": i.status, "bytes": i.bytes, "sha256": i.sha256,
                           "location": i.location, "error": i.error}
    if i.target is not None:
        out["target"] = i.target
    if i.details:
        out["details"] = i.details
    if i.phase is not None and i.status == ItemStatus.RUNNING:  # (a job's end ends its items, phase and all)
        out["phase"] = i.phase
    if i.elapsed_ms is not None:
        out["elapsedSeconds"] = i.elapsed_ms / 1000
        out["bytesPerSecond"] = i.bytes * 1000 // i.elapsed_ms if i.elapsed_ms > 0 else 0
    return out


def job_response(view: JobView) -> dict[str, Any]:
    return {"totalRecordsWithoutPaging": 1, "jobs": [{"jobSummary": job_summary(view)}]}


def _elapsed(job: JobRow) -> int:
    """Seconds the job has run (to its end, or to now while it runs); 0 before it starts."""
    if job.started_at is None:
        return 0
    return max(0, int(((job.ended_at or utcnow()) - job.started_at).total_seconds()))


def job_details(view: JobView) -> dict[str, Any]:
    """``POST /JobDetails``: cvpysdk's ``Job`` reads ``progressInfo`` (state, reasonForJobDelay,
    numOfFilesTransferred), ``detailInfo`` and ``attemptsInfo``."""
    job, items = view.job, view.items
    done = [i for i in items if i.status == JobStatus.COMPLETED]
    failed = [i for i in items if i.status == JobStatus.FAILED]
    explains = job.status in (JobStatus.WAITING, JobStatus.FAILED, JobStatus.KILLED,
                              JobStatus.COMPLETED_WITH_ERRORS)
    start, end = epoch(job.started_at), epoch(job.ended_at)
    return {"job": {"jobDetail": {
        "generalInfo": {"jobId": job.id, "operationType": job.job_type, "backupLevelName": job.backup_level,
                        "jobStartedFrom": "pgvault", "subclient": _subclient(job)},
        "progressInfo": {
            "state": job.status, "percentComplete": job.percent_complete, "currentPhase": job.phase,
            "reasonForJobDelay": job.message if explains else "",
            "numOfFilesTransferred": len(done),
        },
        "detailInfo": {
            "startTime": start, "endTime": end, "lastUpdateTime": epoch(job.updated_at),
            "numOfObjects": len(items), "numOfFailures": len(failed),
            "sizeOfMediaOnDisk": sum(i.bytes for i in items),
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


# -- answers ---------------------------------------------------------------------------------------

class ItemDetail(Answer):
    """A note on one item, as the job stored it (the catalog's ``job_items.details``, free JSON): what a
    restore could not restore is ``object``, PostgreSQL's ``error`` and the ``command`` (redacted); other
    fields may come with it (open: a row written by another version of the engine keeps its own)."""

    model_config = ConfigDict(extra="allow")

    object: str | Absent = None
    error: str | Absent = None
    command: str | Absent = None


class JobItem(Answer):
    """One thing a job did: a database, the globals, a file (``databases[]``, ``globals``, ``files[]``)."""

    name: str
    status: ItemStatus
    bytes: int
    sha256: str | None
    location: str | None  # the stored file's URI
    error: str | None
    target: str | Absent = None  # a restore's target database
    details: list[ItemDetail] | Absent = None  # a restore's refused objects
    # Live progress: while it runs, ``bytes`` is what it has streamed so far (a backup: stored, after
    # compression; a restore: of the archive read), reported about once a second.
    phase: str | Absent = None  # what it is doing while it runs (a backup's "Dump", a restore's "Restore")
    elapsedSeconds: float | Absent = None  # from its start to the last report of ``bytes``; to its end once ended
    bytesPerSecond: int | Absent = None  # bytes / elapsedSeconds (0 before the first report)


class JobSummary(Answer):
    jobId: int
    jobType: JobType
    backupLevelName: str
    trigger: str
    userName: UserEntity
    status: JobStatus
    percentComplete: int
    currentPhaseName: str
    pendingReason: str
    jobStartTime: int
    jobEndTime: int  # 0: not yet
    lastUpdateTime: int
    message: str
    warnings: list[str]
    isVisible: bool
    appTypeName: PostgreSQLAppName
    localizedOperationName: JobType
    jobElapsedTime: int
    subclient: SubclientRef
    restorePointId: int | None
    databases: list[JobItem]
    globals: JobItem | None
    files: list[JobItem]


class JobSummaryEntry(Answer):
    jobSummary: JobSummary


class JobList(Answer):
    """``GET /Job/{id}`` (a list of one) and ``POST /Jobs``."""

    totalRecordsWithoutPaging: int
    jobs: list[JobSummaryEntry]


class JobGeneralInfo(Answer):
    jobId: int
    operationType: JobType
    backupLevelName: str
    jobStartedFrom: Literal["pgvault"]
    subclient: SubclientRef


class JobProgressInfo(Answer):
    state: JobStatus
    percentComplete: int
    currentPhase: str
    reasonForJobDelay: str
    numOfFilesTransferred: int


class JobDetailInfo(Answer):
    startTime: int
    endTime: int
    lastUpdateTime: int
    numOfObjects: int
    numOfFailures: int
    sizeOfMediaOnDisk: int
    warnings: list[str]


class JobAttempt(Answer):
    attemptNumber: int
    status: JobStatus
    startTime: int
    endTime: int


class JobDetail(Answer):
    generalInfo: JobGeneralInfo
    progressInfo: JobProgressInfo
    detailInfo: JobDetailInfo
    attemptsInfo: list[JobAttempt]


class JobDetailHolder(Answer):
    jobDetail: JobDetail


class JobDetailsResponse(Answer):
    """``POST /JobDetails``."""

    job: JobDetailHolder
