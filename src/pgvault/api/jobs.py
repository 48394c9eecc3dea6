"""Jobs: GET /Job/{id} in Command Center's shape, POST /Job/{id}/action/kill."""

from __future__ import annotations

from fastapi import APIRouter

from ..schemas.jobs import job_response
from ..services import jobs
from .deps import ContextDep, UserDep

router = APIRouter(tags=["jobs"])


@router.get("/Job/{job_id}", summary="One job, with what it did per database")
def get_job(ctx: ContextDep, _: UserDep, job_id: int) -> dict:
    with ctx.catalog.begin() as s:
        return job_response(jobs.get_job(s, job_id))


@router.post("/Job/{job_id}/action/kill", summary="Kill a waiting or running job")
def kill_job(ctx: ContextDep, _: UserDep, job_id: int) -> dict:
    with ctx.catalog.begin() as s:
        jobs.request_kill(s, job_id)
    ctx.pool.kill(job_id)
    return {"errorCode": 0, "errorMessage": ""}
