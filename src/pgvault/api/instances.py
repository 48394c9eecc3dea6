"""Protected instances: POST /instance (the seed), GET /Instance, GET and DELETE /Instance/{id}."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Body, Query
from sqlalchemy import select

from ..catalog.models import RestorePoint
from ..errors import PgvaultError
from ..pgtools.connection import probe
from ..schemas.instance import CreateInstanceRequest, instance_entity, instance_properties
from ..services import instances
from ..storage import open_storage
from .deps import ContextDep, UserDep

router = APIRouter(tags=["instances"])
log = logging.getLogger("pgvault.api.instances")


@router.post("/Instance", summary="Create Instance: register a PostgreSQL instance and back up every database")
def create_instance(ctx: ContextDep, _: UserDep, body: Annotated[CreateInstanceRequest, Body()]) -> dict:
    reg = instances.check_request(body, ctx.settings.connect_timeout_seconds)
    entity = instance_entity(name=reg.name)
    try:
        with ctx.catalog.begin() as s:  # the cheap refusals first, before touching the network
            account = instances.find_cloud_account(s, reg.client_name)
            entity["clientId"] = account.id
            instances.find_plan(s, reg.plan_name)
            instances.ensure_name_free(s, account, reg.name)
        info = probe(reg.address)
        with ctx.catalog.begin() as s:
            inst, job = instances.create(s, reg, info, ctx.sealer)
            result = instance_entity(inst.id, inst.cloud_account_id, inst.name, inst.subclients[0].id)
            job_id = job.id
    except PgvaultError as exc:
        exc.entity = entity
        raise
    ctx.pool.wake()
    warning_code, warning = 0, ""
    declared = instances.declared_major(reg.declared_version)
    actual = instances.server_major(info)
    if declared != actual:
        warning_code = 1
        warning = (f"declared version {reg.declared_version!r} (major {declared}) differs from the server's "
                   f"PostgreSQL {info.version} (major {actual}); the server's version is used")
    log.info("instance %s (%s) registered; backup job %s queued", result["instanceId"], reg.address, job_id)
    return {
        "processinginstructioninfo": {
            "attributes": [{"name": "exitval", "value": "0"}, {"name": "jobId", "value": str(job_id)}]
        },
        "response": {"warningCode": warning_code, "errorCode": 0, "warningMessage": warning, "entity": result},
    }


@router.get("/Instance", summary="List instances (all, or of one cloud account with ?clientId=)")
def list_instances(
    ctx: ContextDep, _: UserDep,
    client_id: Annotated[int | None, Query(alias="clientId")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int | None, Query(ge=1, le=10000)] = None,
) -> dict:
    with ctx.catalog.begin() as s:
        rows = instances.list_live(s, client_id, offset=offset, limit=limit)
        return {"instanceProperties": [instance_properties(i) for i in rows]}


@router.get("/Instance/{instance_id}", summary="One instance")
def get_instance(ctx: ContextDep, _: UserDep, instance_id: int) -> dict:
    with ctx.catalog.begin() as s:
        return {"instanceProperties": [instance_properties(instances.get(s, instance_id))]}


@router.delete("/Instance/{instance_id}", summary="Delete an instance; its backups stay unless deleteBackups=true")
def delete_instance(
    ctx: ContextDep, _: UserDep, instance_id: int,
    delete_backups: Annotated[bool, Query(alias="deleteBackups")] = False,
) -> dict:
    with ctx.catalog.begin() as s:
        inst = instances.delete(s, instance_id)
        entity = instance_entity(inst.id, inst.cloud_account_id, inst.name)
        doomed = []
        if delete_backups:
            points = s.scalars(select(RestorePoint).where(RestorePoint.instance_id == inst.id)).all()
            doomed = [(p.storage_kind, p.storage_location, p.prefix) for p in points]
            for p in points:
                s.delete(p)
    for job_id in _running_jobs(ctx, instance_id):
        ctx.pool.kill(job_id)
    removed = 0
    for kind, location, prefix in doomed:  # after the commit: a crash here leaves files, never dangling rows
        removed += open_storage(kind, location).delete_prefix(prefix)
    return {"response": {"errorCode": 0, "errorString": "", "entity": entity,
                         "deletedRestorePoints": len(doomed), "deletedFiles": removed}}


def _running_jobs(ctx: ContextDep, instance_id: int) -> list[int]:
    from ..catalog.models import Job

    with ctx.catalog.begin() as s:
        return list(s.scalars(select(Job.id).where(Job.instance_id == instance_id, Job.kill_requested.is_(True),
                                                   Job.status == "Running")))
