"""Backupsets: ``GET /Backupset?clientId=&instanceId=``, ``GET /Backupset/{id}``. Each instance has one,
``DumpBasedBackupSet`` (PaaS PostgreSQL is dump based), with the instance's plan."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ..domain.access import Capability, requires
from ..schemas.backupsets import BackupsetList, backupset_properties
from ..schemas.common import POSTGRESQL_APP_ID
from ..services import backupsets
from . import BASE
from .deps import ContextDep, UserDep
from .openapi import answers

router = APIRouter(prefix=BASE, tags=["backupsets"])


@router.get("/Backupset", summary="List backupsets of live instances (filters: clientId, instanceId)",
             responses=answers(BackupsetList, "the backupsets"))
@requires(Capability.VIEW)
def list_backupsets(
    ctx: ContextDep, _: UserDep,
    client_id: Annotated[int | None, Query(alias="clientId")] = None,
    instance_id: Annotated[int | None, Query(alias="instanceId")] = None,
    application_id: Annotated[int | None, Query(alias="applicationId")] = None,
) -> dict:
    if application_id is not None and application_id != POSTGRESQL_APP_ID:
        return {"backupsetProperties": []}
    with ctx.catalog.transaction(write=False) as s:
        rows = backupsets.list_backupsets(s, client_id=client_id, instance_id=instance_id)
        return {"backupsetProperties": [backupset_properties(b) for b in rows]}


@router.get("/Backupset/{backupset_id}", summary="One backupset, with its plan",
             responses=answers(BackupsetList, "the backupset (a list of one)"))
@requires(Capability.VIEW)
def get_backupset(ctx: ContextDep, _: UserDep, backupset_id: int) -> dict:
    with ctx.catalog.transaction(write=False) as s:
        return {"backupsetProperties": [backupset_properties(backupsets.get_backupset(s, backupset_id))]}
