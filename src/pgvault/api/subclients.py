"""Subclients: the on-demand backup, ``POST /Subclient/{id}/action/backup`` (Command Center's shape)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ..catalog.models import Subclient
from ..errors import BadRequest, NotFound
from ..services import jobs
from .deps import ContextDep, UserDep

router = APIRouter(tags=["subclients"])

LEVELS = {"full": "Full", "incremental": "Full", "differential": "Full", "synthetic_full": "Full"}


@router.post("/Subclient/{subclient_id}/action/backup",
             summary="Back up now; every level is a full dump of every database (PaaS has no WAL access)")
def backup_now(
    ctx: ContextDep, _: UserDep, subclient_id: int,
    backup_level: Annotated[str, Query(alias="backupLevel")] = "full",
) -> dict:
    if backup_level.lower() not in LEVELS:
        raise BadRequest(f"backupLevel {backup_level!r} is not one of {', '.join(LEVELS)}")
    with ctx.catalog.begin() as s:
        sub = s.get(Subclient, subclient_id)
        if sub is None or sub.instance.deleted_at is not None:
            raise NotFound(f"subclient {subclient_id} does not exist")
        job = jobs.queue_backup(s, sub.instance, sub)
        job_id = job.id
    ctx.pool.wake()
    return {"jobIds": [str(job_id)]}
