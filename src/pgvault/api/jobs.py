"""Jobs: GET /Job/{id} in Command Center's shape, POST /Job/{id}/action/kill; POST /Jobs (lists) and
POST /JobDetails, as cvpysdk's ``JobController`` and ``Job`` call them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Response

from ..context import Context
from ..domain.access import Capability, requires
from ..schemas.common import GenericResponse
from ..schemas.jobs import (
    JOB_CATEGORIES,
    JobDetailsRequest,
    JobDetailsResponse,
    JobList,
    JobsRequest,
    job_details,
    job_response,
    job_summary,
)
from ..services import jobs
from . import BASE
from .deps import ContextDep, UserDep, json_response, run_read
from .openapi import answers

router = APIRouter(prefix=BASE, tags=["jobs"])


@router.get("/Job/{job_id}", summary="One job, with what it did per database",
             responses=answers(JobList, "the job (a list of one)"))
@requires(Capability.VIEW)
async def get_job(ctx: ContextDep, _: UserDep, job_id: int) -> Response:
    return await run_read(ctx, one_job, ctx, job_id)


def one_job(ctx: Context, job_id: int) -> Response:
    with ctx.catalog.rows() as conn:
        view = jobs.job_view(conn, job_id)
    return json_response(job_response(view))


@router.post("/Job/{job_id}/action/kill", summary="Kill a waiting or running job",
             responses=answers(GenericResponse, "killed (or asked to stop)"))
@requires(Capability.KILL_JOBS)
def kill_job(ctx: ContextDep, _: UserDep, job_id: int) -> dict:
    with ctx.catalog.transaction(write=True) as s:
        jobs.request_kill(s, job_id)
    ctx.pool.kill(job_id)
    return {"errorCode": 0, "errorMessage": ""}


@router.post("/Jobs", summary="List jobs: category 0 all, 1 active, 2 finished; filters and paging",
             responses=answers(JobList, "a page of jobs, with the total"))
@requires(Capability.VIEW)
def list_jobs(ctx: ContextDep, _: UserDep, body: Annotated[JobsRequest, Body()]) -> dict:
    f, page = body.jobFilter, body.pagingConfig
    entity = f.entity
    client_ids = [c.clientId for c in f.clientList] + ([entity.clientId] if entity and entity.clientId else [])
    with ctx.catalog.transaction(write=False) as s:
        rows, total = jobs.list_jobs(
            s, category=JOB_CATEGORIES[body.category], finished_within_seconds=f.completedJobLookupTime,
            client_ids=client_ids, job_types=f.jobTypeList,
            subclient_id=entity.subclientId if entity else None, instance_id=entity.instanceId if entity else None,
            offset=page.offset, limit=page.limit, newest_first=page.sortDirection != 0,
        )
        return {"totalRecordsWithoutPaging": total, "jobs": [{"jobSummary": job_summary(j)} for j in rows]}


@router.post("/JobDetails", summary="One job's progress, counts and attempts",
             responses=answers(JobDetailsResponse, "the job's progress, counts and attempts"))
@requires(Capability.VIEW)
def get_job_details(ctx: ContextDep, _: UserDep, body: Annotated[JobDetailsRequest, Body()]) -> dict:
    with ctx.catalog.rows() as conn:
        return job_details(jobs.job_view(conn, body.jobId))
