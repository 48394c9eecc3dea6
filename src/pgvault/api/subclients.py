"""Subclients: the on-demand backup, ``POST /Subclient/{id}/action/backup`` (Command Center's shape);
``GET /Subclient?...`` and ``GET /Subclient/{id}`` (each instance has one, ``default``: every database)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ..catalog.models import Subclient
from ..domain.access import Capability, requires
from ..errors import BadRequest, NotFound, shown
from ..schemas.backupsets import SubclientList, subclient_properties
from ..schemas.common import POSTGRESQL_APP_ID, JobIdsResponse
from ..services import backupsets, jobs
from . import BASE
from .deps import ContextDep, UserDep
from .openapi import answers

router = APIRouter(prefix=BASE, tags=["subclients"])

LEVELS = {"full": "Full", "incremental": "Full", "differential": "Full", "synthetic_full": "Full"}


@router.post("/Subclient/{subclient_id}/action/backup",
             summary="Back up now; every level is a full dump of every database (PaaS has no WAL access)",
             responses=answers(JobIdsResponse, "the backup job"))
@requires(Capability.BACKUP)
def backup_now(
    ctx: ContextDep, user: UserDep, subclient_id: int,
    backup_level: Annotated[str, Query(alias="backupLevel")] = "full",
) -> dict:
    if backup_level.lower() not in LEVELS:
        raise BadRequest(f"backupLevel {shown(backup_level)} is not one of {', '.join(LEVELS)}")
    with ctx.catalog.transaction(write=True) as s:
        sub = s.get(Subclient, subclient_id)
        if sub is None or sub.instance.deleted_at is not None:
            raise NotFound(f"subclient {subclient_id} does not exist")
        job = jobs.queue_backup(s, sub.instance, sub)
        job.started_by = user.username
        job_id = job.id
    ctx.pool.wake()
    return {"jobIds": [str(job_id)]}


@router.get("/Subclient", summary="List subclients of live instances (filters: clientId, instanceId, backupsetId)",
             responses=answers(SubclientList, "the subclients"))
@requires(Capability.VIEW)
def list_subclients(
    ctx: ContextDep, _: UserDep,
    client_id: Annotated[int | None, Query(alias="clientId")] = None,
    instance_id: Annotated[int | None, Query(alias="instanceId")] = None,
    backupset_id: Annotated[int | None, Query(alias="backupsetId")] = None,
    application_id: Annotated[int | None, Query(alias="applicationId")] = None,
) -> dict:
    if application_id is not None and application_id != POSTGRESQL_APP_ID:
        return {"subClientProperties": []}
    with ctx.catalog.transaction(write=False) as s:
        rows = backupsets.list_subclients(s, client_id=client_id, instance_id=instance_id, backupset_id=backupset_id)
        return {"subClientProperties": [subclient_properties(sub) for sub in rows]}


@router.get("/Subclient/{subclient_id}", summary="One subclient",
             responses=answers(SubclientList, "the subclient (a list of one)"))
@requires(Capability.VIEW)
def get_subclient(ctx: ContextDep, _: UserDep, subclient_id: int) -> dict:
    with ctx.catalog.transaction(write=False) as s:
        return {"subClientProperties": [subclient_properties(backupsets.get_subclient(s, subclient_id))]}
