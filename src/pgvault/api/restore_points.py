"""Restore points: listing (GET /RestorePoints), one with its files, verification, and Command
Center's POST /DoBrowse over an instance's backupset."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import StrictBool, StrictInt
from sqlalchemy import func, select

from ..catalog.models import Job, RestorePoint
from ..domain.access import Capability, requires
from ..errors import ArchiveIntegrityError, BadRequest, NotFound, PgvaultError
from ..restore.archive import load_manifest
from ..schemas.common import JobIdsResponse, WireModel
from ..schemas.restore_points import (
    DoBrowseResponse,
    RestorePointDetail,
    RestorePointList,
    browse_entries,
    files_of,
    restore_point_summary,
)
from ..services import destinations, restore
from ..services.restore import parse_time, started_by
from ..storage import StorageError
from . import BASE
from .deps import ContextDep, UserDep
from .openapi import answers

router = APIRouter(prefix=BASE, tags=["restore points"])


@router.get("/RestorePoints", summary="Restore points, newest first; by instance, database and time range",
             responses=answers(RestorePointList, "a page of restore points, with the total"))
@requires(Capability.VIEW)
def list_restore_points(
    ctx: ContextDep, _: UserDep,
    instance_id: Annotated[int | None, Query(alias="instanceId")] = None,
    database: str | None = None,
    from_time: Annotated[str | None, Query(alias="fromTime")] = None,
    to_time: Annotated[str | None, Query(alias="toTime")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    start, end = parse_time(from_time, "fromTime"), parse_time(to_time, "toTime")
    with ctx.catalog.transaction(write=False) as s:
        total, page = restore.list_points(s, instance_id=instance_id, database=database, start=start, end=end,
                                          offset=offset, limit=limit)
        return {"totalRecords": total, "restorePoints": [restore_point_summary(p, j) for p, j in page]}


@router.get("/RestorePoints/{point_id}", summary="One restore point, with its files and their sha256",
             responses=answers(RestorePointDetail, "the restore point with its files"))
@requires(Capability.VIEW)
def get_restore_point(ctx: ContextDep, _: UserDep, point_id: int) -> dict:
    with ctx.catalog.transaction(write=False) as s:
        point = s.get(RestorePoint, point_id)
        if point is None:
            raise NotFound(f"restore point {point_id} does not exist")
        job = s.get(Job, point.job_id)
        assert job is not None
        out = restore_point_summary(point, job)
        try:
            storage = destinations.open_point(point, ctx.sealer)
        except PgvaultError as exc:
            out["files"], out["manifestError"] = [], exc.message
            return out
    try:
        manifest = load_manifest(storage, point.prefix, point.manifest_sha256)
    except (ArchiveIntegrityError, StorageError) as exc:
        out["files"], out["manifestError"] = [], str(exc)
    else:
        out["files"] = files_of(manifest, storage.uri)
        out["pgDumpVersion"] = manifest.pg_dump_version
        out["warnings"] = manifest.warnings
    return out


class VerifyRequestBody(WireModel):
    drill: StrictBool = False
    targetInstanceId: StrictInt | None = None


@router.post("/RestorePoints/{point_id}/action/verify",
             summary="Re-check every file's sha256; with drill, restore into scratch databases and compare row counts",
             responses=answers(JobIdsResponse, "the verification job"))
@requires(Capability.VERIFY)
def verify_restore_point(ctx: ContextDep, user: UserDep, point_id: int,
                         body: Annotated[VerifyRequestBody | None, Body()] = None) -> dict:
    body = body or VerifyRequestBody()
    with ctx.catalog.transaction(write=True) as s:
        point = s.get(RestorePoint, point_id)
        if point is None:
            raise NotFound(f"restore point {point_id} does not exist")
        job = restore.queue_verification(s, point, drill=body.drill, target_instance_id=body.targetInstanceId)
        job.started_by = user.username
        job_id = job.id
    ctx.pool.wake()
    return {"jobIds": [str(job_id)]}


@router.post("/DoBrowse", summary="Browse the databases of an instance's newest restore point (or within timeRange)",
             responses=answers(DoBrowseResponse, "the databases of the restore point, as folders"))
@requires(Capability.BROWSE)
def do_browse(ctx: ContextDep, _: UserDep, body: Annotated[dict[str, Any], Body()]) -> dict:
    entity = body.get("entity") or {}
    if not isinstance(entity, dict):
        raise BadRequest("entity must be an object")
    time_range = body.get("timeRange") or {}
    end = parse_time(time_range.get("toTime") if isinstance(time_range, dict) else None, "timeRange.toTime")
    with ctx.catalog.transaction(write=False) as s:
        source = restore.instance_by_entity(s, entity, live_only=False)
        if source is None:
            raise BadRequest("entity must name the instance (instanceId, backupsetId or subclientId)")
        q = (select(RestorePoint, Job).join(Job, Job.id == RestorePoint.job_id)
             .where(RestorePoint.instance_id == source.id).order_by(Job.started_at.desc()))
        if end is not None:
            q = q.where(started_by(end))
        row = s.execute(q.limit(1)).first()
        count = s.scalar(select(func.count()).select_from(RestorePoint).where(RestorePoint.instance_id == source.id))
        if row is None:
            return {"browseResponses": [{"browseResult": {"dataResultSet": [], "totalItemsFound": 0}}]}
        point, job = row
        try:
            storage = destinations.open_point(point, ctx.sealer)
        except PgvaultError:
            storage = None
    manifest = None
    if storage is not None:
        try:
            manifest = load_manifest(storage, point.prefix, point.manifest_sha256)
        except (ArchiveIntegrityError, StorageError):
            manifest = None
    entries = browse_entries(point, job, manifest)
    return {"browseResponses": [{"respType": 0, "browseResult": {
        "dataResultSet": entries, "totalItemsFound": len(entries), "restorePointsOfInstance": count}}]}
