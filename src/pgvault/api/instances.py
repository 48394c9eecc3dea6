"""Protected instances: POST /instance (the seed's body, or cvpysdk's), GET /Instance, GET, PUT/POST
(move to another plan) and DELETE /Instance/{id}."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from ..catalog.models import Job, RestorePoint
from ..catalog.types import utcnow
from ..context import Context
from ..domain.access import Capability, requires
from ..domain.jobs import ACTIVE, JobStatus
from ..domain.schedule import next_backup_times
from ..errors import Conflict, PgvaultError
from ..pgtools.connection import ServerInfo, probe
from ..schemas.common import JobIdsResponse
from ..schemas.instance import (
    AnyCreateInstanceRequest,
    CreateInstanceAnswer,
    DeleteInstanceResponse,
    InstanceList,
    InstanceRow,
    SdkCreateInstanceRequest,
    TestConnectionResponse,
    UpdateInstanceRequest,
    UpdateInstanceResponse,
    instance_entity,
    instance_properties,
)
from ..services import aging, instances, plans
from . import BASE
from .deps import ContextDep, UserDep, json_response, run_read
from .errors import reply_errors_in_body
from .openapi import answers

router = APIRouter(prefix=BASE, tags=["instances"])
log = logging.getLogger("pgvault.api.instances")


@router.post("/Instance", summary="Create Instance: register a PostgreSQL instance and back up every database",
             responses=answers(CreateInstanceAnswer, "registered, its first backup queued; or, for a body in cvpysdk's "
                               "shape, refused (errorCode and response.errorString)", conflict=True))
@requires(Capability.MANAGE_INSTANCES)
def create_instance(
    request: Request, ctx: ContextDep, user: UserDep, body: Annotated[AnyCreateInstanceRequest, Body()],
) -> dict:
    if isinstance(body, SdkCreateInstanceRequest):  # cvpysdk's add_postgresql_instance: see docs/api.md
        reply_errors_in_body(request)
        with ctx.catalog.transaction(write=True) as s:
            body = instances.from_sdk_request(s, body, ctx.sealer)
    reg = instances.check_request(body, ctx.settings.connect_timeout_seconds, ctx.settings.target_policy)
    entity = instance_entity(name=reg.name)
    try:
        with ctx.catalog.transaction(write=False) as s:  # the cheap refusals first, before touching the network
            account = instances.find_cloud_account(s, reg.client_name)
            entity["clientId"] = account.id
            instances.find_plan(s, reg.plan_name)
            instances.ensure_name_free(s, account, reg.name)
        info = probe(reg.address)
        with ctx.catalog.transaction(write=True) as s:
            inst, job = instances.create(s, reg, info, ctx.sealer)
            job.started_by = user.username
            twins = instances.same_server(s, inst)
            result = instance_entity(inst.id, inst.cloud_account_id, inst.name, inst.subclients[0].id)
            job_id = job.id
    except PgvaultError as exc:
        exc.entity = entity
        raise
    ctx.pool.wake()
    warnings = _warnings(reg, info, twins, "is now backed up once per registration")
    warning_code, warning = (1 if warnings else 0), "; ".join(warnings)
    log.info("instance %s (%s) registered; backup job %s queued", result["instanceId"], reg.address, job_id)
    return {
        "processinginstructioninfo": {
            "attributes": [{"name": "exitval", "value": "0"}, {"name": "jobId", "value": str(job_id)}]
        },
        "response": {"warningCode": warning_code, "errorCode": 0, "warningMessage": warning, "entity": result},
    }


def _warnings(reg: instances.Registration, info: ServerInfo, twins: list[str], twin_consequence: str) -> list[str]:
    """What a registration (or a connection test) of ``reg`` should know: a declared version that is not
    the server's, and the same server registered already."""
    warnings = []
    declared = instances.declared_major(reg.declared_version)
    actual = instances.server_major(info)
    if declared != actual:
        warnings.append(f"declared version {reg.declared_version!r} (major {declared}) differs from the server's "
                        f"PostgreSQL {info.version} (major {actual}); the server's version is used")
    if twins:
        names = ", ".join(repr(n) for n in twins)
        warnings.append(f"{reg.address.host}:{reg.address.port} is already registered as {names}: that server "
                        + twin_consequence)
    return warnings


@router.post("/Instance/action/testConnection",
             summary="Test a connection: log in with the Create Instance body's server, login and SSL, and say what "
                     "was found (the PostgreSQL version, or PostgreSQL's reason); nothing is saved",
             responses=answers(TestConnectionResponse, "connected: the server's version, and warnings"))
@requires(Capability.MANAGE_INSTANCES)
def test_connection(ctx: ContextDep, _: UserDep, body: Annotated[AnyCreateInstanceRequest, Body()]) -> dict:
    """The checks of ``POST /Instance`` that concern the server (its body's rules, PGVAULT_ALLOWED_TARGETS,
    the CA file, the version's form), then the same probe; not the name, plan or cloud account, and
    nothing written. A refused login is ``ConnectionFailed`` (400, errorCode 4444) with PostgreSQL's reason.
    Either body ``POST /Instance`` takes (cvpysdk's names a credential, whose login is tested); refusals
    are the ordinary error envelope, whatever the shape."""
    if isinstance(body, SdkCreateInstanceRequest):
        with ctx.catalog.transaction(write=False) as s:
            body = instances.from_sdk_request(s, body, ctx.sealer)
    reg = instances.check_request(body, ctx.settings.connect_timeout_seconds, ctx.settings.target_policy)
    info = probe(reg.address)
    with ctx.catalog.transaction(write=False) as s:
        twins = instances.registered_as(s, reg.address.host, reg.address.port)
    warnings = _warnings(reg, info, twins, "would be backed up once per registration")
    return {"errorCode": 0, "serverVersion": info.version, "serverVersionNum": info.version_num,
            "warningCode": 1 if warnings else 0, "warningMessage": "; ".join(warnings)}


# A page up to this size is a short read (run_read: ~3-5 ms of CPU for 100 rows, on the event loop); a
# larger page or an unpaged list of a large fleet goes to the threadpool rather than hold the loop.
SHORT_PAGE = 200


@router.get("/Instance", summary="List instances (all, or of one cloud account with ?clientId=)",
             responses=answers(InstanceList, "the live instances, in id order"))
@requires(Capability.VIEW)
async def list_instances(
    ctx: ContextDep, _: UserDep,
    client_id: Annotated[int | None, Query(alias="clientId")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int | None, Query(ge=1, le=10000)] = None,
) -> Response:
    short = limit is not None and limit <= SHORT_PAGE
    rows = await run_read(ctx, _page_rows, ctx, client_id, offset, limit, short=short)
    return await _answer(rows, short)


def _page_rows(ctx: Context, client_id: int | None, offset: int, limit: int | None) -> list[InstanceRow]:
    with ctx.catalog.rows() as conn:
        return instances.live_rows(conn, client_id, offset=offset, limit=limit)


@router.get("/Instance/{instance_id}", summary="One instance",
             responses=answers(InstanceList, "the instance (a list of one)"))
@requires(Capability.VIEW)
async def get_instance(ctx: ContextDep, _: UserDep, instance_id: int) -> Response:
    return await _answer([await run_read(ctx, _one_row, ctx, instance_id)], True)


def _one_row(ctx: Context, instance_id: int) -> InstanceRow:
    with ctx.catalog.rows() as conn:
        return instances.live_row(conn, instance_id)


async def _answer(rows: list[InstanceRow], short: bool) -> Response:
    """The answer for these rows (no catalog involved), built on the event loop when that is cheap. A cron
    plan's next backup time costs ~0.4 ms per instance (croniter), so a page with cron plans, or a long
    list, is built in the threadpool."""
    if short and not any(r.plan_schedule_kind == "cron" for r in rows):
        return _properties_response(rows, utcnow())
    return await run_in_threadpool(_properties_response, rows, utcnow())


def _properties_response(rows: Sequence[InstanceRow], now: dt.datetime) -> Response:
    return json_response(properties_body(rows, now))


def properties_body(rows: Sequence[InstanceRow], now: dt.datetime) -> dict[str, Any]:
    """``GET /Instance``'s answer for these rows, with each one's next backup time as seen at ``now``."""
    due = next_backup_times(instances.schedules(rows), now)
    return {"instanceProperties": [instance_properties(r, due[r.id]) for r in rows]}


@router.put("/Instance/{instance_id}", summary="Move an instance to another plan (from its next backup)",
             responses=answers(UpdateInstanceResponse, "moved to the plan"))
@router.post("/Instance/{instance_id}", summary="Move an instance to another plan (Command Center updates with POST)",
             responses=answers(UpdateInstanceResponse, "moved to the plan"))
@requires(Capability.MANAGE_INSTANCES)
def update_instance(
    ctx: ContextDep, _: UserDep, instance_id: int, body: Annotated[UpdateInstanceRequest, Body()],
) -> dict:
    """A running backup keeps the plan it started with; the scheduler reads the new plan at its next
    tick, so the next due time follows the new schedule from the last backup's start."""
    with ctx.catalog.transaction(write=True) as s:
        inst = instances.get(s, instance_id)
        plans.move_instance(s, inst, body.instanceProperties.planEntity.planName)
    return {"response": [{"errorCode": 0, "errorString": ""}]}


@router.delete("/Instance/{instance_id}", summary="Delete an instance; its backups stay unless deleteBackups=true",
               responses=answers(DeleteInstanceResponse, "deleted", conflict=True))
@requires(Capability.MANAGE_INSTANCES)
def delete_instance(
    ctx: ContextDep, user: UserDep, instance_id: int,
    delete_backups: Annotated[bool, Query(alias="deleteBackups")] = False,
) -> dict:
    """With deleteBackups, every copy of the instance's restore points is marked for deletion in the same
    transaction, and a Data Aging job removes the objects and then the rows (crash-safe, like retention)."""
    job_ids: list[str] = []
    with ctx.catalog.transaction(write=True) as s:
        points = []
        if delete_backups:
            points = list(s.scalars(select(RestorePoint).where(RestorePoint.instance_id == instance_id)))
            reading = s.scalar(select(Job.id).where(
                Job.restore_point_id.in_([p.id for p in points]), Job.job_type.in_(aging.READERS),
                Job.status.in_(ACTIVE)))
            if reading is not None:
                raise Conflict(f"job {reading} is reading this instance's backups; wait for it or kill it first")
        inst = instances.delete(s, instance_id)
        entity = instance_entity(inst.id, inst.cloud_account_id, inst.name)
        for point in points:
            for copy in point.copies:
                copy.state = "deleting"
        if points:
            job, _ = aging.queue_aging(s, inst)
            job.started_by = user.username
            job_ids.append(str(job.id))
    for job_id in _running_jobs(ctx, instance_id):
        ctx.pool.kill(job_id)
    ctx.pool.wake()
    return {"response": {"errorCode": 0, "errorString": "", "entity": entity,
                         "restorePointsToDelete": len(points)}, "jobIds": job_ids}


@router.post("/Instance/{instance_id}/action/dataAging",
             summary="Run Data Aging now: drop copies past their retention, report stray folders",
             responses=answers(JobIdsResponse, "the Data Aging job"))
@requires(Capability.BACKUP)
def data_aging(ctx: ContextDep, user: UserDep, instance_id: int) -> dict:
    with ctx.catalog.transaction(write=True) as s:
        inst = instances.get_any(s, instance_id)  # a deleted instance's backups still age
        job, _ = aging.queue_aging(s, inst)
        job.started_by = user.username
        job_id = job.id
    ctx.pool.wake()
    return {"jobIds": [str(job_id)]}


def _running_jobs(ctx: ContextDep, instance_id: int) -> list[int]:
    with ctx.catalog.transaction(write=False) as s:
        return list(s.scalars(select(Job.id).where(Job.instance_id == instance_id, Job.kill_requested.is_(True),
                                                   Job.status == JobStatus.RUNNING)))
