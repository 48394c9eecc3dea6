"""POST /CreateTask: restores (subtask type 3, operation 1001), in Command Center's task shape."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from ..domain.access import Capability, requires
from ..schemas.restore import CreateTaskRequest, CreateTaskResponse
from ..services import restore
from . import BASE
from .deps import ContextDep, UserDep
from .openapi import answers

router = APIRouter(prefix=BASE, tags=["restore"])


@router.post("/CreateTask", summary="Restore databases or tables of a restore point, in place or elsewhere",
             responses=answers(CreateTaskResponse, "the restore job"))
@requires(Capability.RESTORE)
def create_task(ctx: ContextDep, user: UserDep, body: Annotated[CreateTaskRequest, Body()]) -> dict:
    with ctx.catalog.transaction(write=True) as s:
        job = restore.create_restore_job(s, body)
        job.started_by = user.username
        job_id = job.id
    ctx.pool.wake()
    return {"jobIds": [str(job_id)], "taskId": 0}
