"""Turning a restore request into a queued restore job, with every refusal made up front."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from ..catalog.models import Backupset, CloudAccount, Instance, Job, RestorePoint, Subclient
from ..catalog.types import JsonListContains
from ..domain.jobs import QUEUED, JobStatus, JobType
from ..errors import BadRequest, NotFound, PgvaultError, shown
from ..pgtools.connection import ServerAddress
from ..restore.engine import REPLACEABLE, RestoreItem, target_refusal
from ..schemas.restore import CreateTaskRequest, RestoreOptions
from .instances import is_placeholder

RESTORE_SUBTASK, RESTORE_OPERATION = 3, 1001


def parse_time(value: Any, field: str) -> dt.datetime | None:
    """Command Center sends times as "YYYY-MM-DD HH:MM:SS" (taken as UTC) or Unix seconds; empty is none."""
    if value in (None, "", 0, "0"):
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.isascii() and value.isdigit()):
        try:
            return dt.datetime.fromtimestamp(int(value), dt.UTC)
        except (ValueError, OverflowError, OSError):
            raise BadRequest(f"{field}: {shown(value)} is out of range") from None
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip().replace(" ", "T", 1))
        except ValueError:
            raise BadRequest(f"{field}: {shown(value)} is not a time (use 'YYYY-MM-DD HH:MM:SS' UTC or Unix seconds)") \
                from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    raise BadRequest(f"{field}: {shown(value)} is not a time")


def _to_second(when: dt.datetime) -> dt.datetime:
    try:
        return when.replace(microsecond=0) + dt.timedelta(seconds=1) - dt.timedelta(microseconds=1)
    except OverflowError:
        return dt.datetime.max.replace(tzinfo=dt.UTC)


def _snapshot_time(point: RestorePoint, database: str, started: dt.datetime | None) -> dt.datetime:
    text = (point.snapshot_times or {}).get(database)
    if text:
        return dt.datetime.fromisoformat(text)
    return started or point.created_at  # restore points from before snapshot times were recorded


def requested_databases(opts: RestoreOptions) -> list[str] | None:
    """The databases a restore names (None: all of them, for "/")."""
    names: list[str] = []
    for raw in opts.fileOption.sourceItem:
        m = _PATH.match(raw.strip())
        if raw.strip() in ("/", ""):
            return None
        if m and m.group(1) not in names:
            names.append(m.group(1))
    return names


def started_by(when: dt.datetime) -> ColumnElement[bool]:
    """Jobs that started at or before ``when``, to the second: Command Center shows whole seconds, so a
    backup that started at 10:00:00.7 is "at or before 10:00:00" for the user who copied that time."""
    try:
        bound = when.replace(microsecond=0) + dt.timedelta(seconds=1)
    except OverflowError:
        bound = dt.datetime.max.replace(tzinfo=dt.UTC)
    return Job.started_at < bound


def instance_by_entity(session: Session, entity: dict[str, Any], *, live_only: bool) -> Instance | None:
    for key in ("instanceId", "subclientId", "backupsetId"):
        value = entity.get(key)
        if value in (None, "", 0, "0"):
            continue
        try:
            ident = int(value)
        except (TypeError, ValueError):
            raise BadRequest(f"{key} {shown(value)} is not a number") from None
        inst: Instance | None
        if key == "instanceId":
            inst = session.get(Instance, ident)
        else:
            holder: Subclient | Backupset | None = (
                session.get(Subclient, ident) if key == "subclientId" else session.get(Backupset, ident)
            )
            inst = holder.instance if holder is not None else None
        if inst is None or is_placeholder(inst):
            raise NotFound(f"{key} {shown(ident)} does not exist")
        return inst
    name = entity.get("instanceName")
    if not name:
        return None
    q = select(Instance).where(Instance.name_key == str(name).lower())
    if live_only:
        q = q.where(Instance.deleted_at.is_(None))
    client = entity.get("clientName")
    if client:
        q = q.join(CloudAccount).where(CloudAccount.name_key == str(client).lower())
    found = [inst for inst in session.scalars(q).all() if not is_placeholder(inst)]
    if not found:
        raise NotFound(f"instance {shown(name)}{f' of {shown(client)}' if client else ''} does not exist")
    if len(found) > 1:
        raise BadRequest(f"instance name {shown(name)} is ambiguous; give clientName or instanceId")
    return found[0]


def choose_restore_point(session: Session, source: Instance, opts: RestoreOptions) -> RestorePoint:
    if opts.jobIds:
        if len(opts.jobIds) != 1:
            raise BadRequest("restore from one backup job at a time")
        try:
            job_id = int(opts.jobIds[0])
        except ValueError:
            raise BadRequest(f"jobIds: {shown(opts.jobIds[0])} is not a job id") from None
        point = session.scalar(select(RestorePoint).where(RestorePoint.job_id == job_id))
        if point is None or point.instance_id != source.id:
            raise NotFound(f"backup job {job_id} of instance {source.name!r} has no restore point")
        return point
    pg = opts.postgresRstOption
    when = (
        parse_time(pg.refTime.get("timevalue") or pg.refTime.get("timeValue"), "postgresRstOption.refTime")
        or parse_time(pg.pointOfTime.get("timevalue") or pg.pointOfTime.get("timeValue"), "pointOfTime")
        or parse_time(opts.browseOption.timeRange.toTimeValue, "browseOption.timeRange.toTimeValue")
        or parse_time(opts.browseOption.timeRange.toTime, "browseOption.timeRange.toTime")
    )
    q = (select(RestorePoint, Job.started_at).join(Job, Job.id == RestorePoint.job_id)
         .where(RestorePoint.instance_id == source.id).order_by(Job.started_at.desc(), RestorePoint.id.desc()))
    if when is None:
        row = session.execute(q.limit(1)).first()
        point = row[0] if row else None
    else:
        # The newest backup that started by then and whose requested databases' snapshots were all
        # taken by then: in a long backup, databases dumped later hold data from after the job's start.
        wanted = requested_databases(opts)
        point = None
        for candidate, started in session.execute(q.where(started_by(when)).limit(200)):
            names = candidate.databases if wanted is None else [d for d in wanted if d in candidate.databases]
            if all(_snapshot_time(candidate, n, started) <= _to_second(when) for n in names):
                point = candidate
                break
    if point is None:
        at = f" at or before {when.isoformat()}" if when else ""
        raise NotFound(f"instance {source.name!r} has no restore point{at}")
    return point


_PATH = re.compile(r"^/([^/]+)(?:/([^/]+)/([^/]+))?/?$")


def plan_items(opts: RestoreOptions, point: RestorePoint) -> list[dict[str, Any]]:
    """``/appdb`` -> a whole database; ``/appdb/schema/table`` -> a table (with tableLevelRestore)."""
    table_level = opts.postgresRstOption.tableLevelRestore
    renames = opts.postgresRstOption.renameDatabases
    available = list(point.databases)
    databases: dict[str, list[list[str]] | None] = {}
    for raw in opts.fileOption.sourceItem:
        path = raw.strip()
        if path in ("/", "") and not table_level:
            for name in available:
                databases.setdefault(name, None)
            continue
        m = _PATH.match(path)
        if not m:
            raise BadRequest(f"sourceItem {shown(raw)} is not /database or /database/schema/table")
        db, schema, table = m.groups()
        if db not in available:
            raise BadRequest(f"database {shown(db)} is not in the restore point of job {point.job_id} "
                             f"(it has: {', '.join(available) or 'none'})")
        if table_level != (table is not None):
            raise BadRequest(f"sourceItem {shown(raw)}: table-level restore names /database/schema/table items, "
                             "a database restore names /database items; set postgresRstOption.tableLevelRestore "
                             "accordingly")
        if table is None:
            databases[db] = None
        else:
            tables = databases.setdefault(db, [])
            assert tables is not None
            if [schema, table] not in tables:
                tables.append([schema, table])
    for source, target in renames.items():
        if source not in databases:
            raise BadRequest(f"renameDatabases names {shown(source)}, which is not being restored")
        if not target or len(target.encode()) > 63:
            raise BadRequest(f"renameDatabases: {shown(target)} is not a valid database name (1-63 bytes)")
    targets = [renames.get(db, db) for db, tables in databases.items() if tables is None]
    if len(set(targets)) != len(targets):
        raise BadRequest("two databases would be restored under the same name")
    return [{"source": db, "target": renames.get(db, db), "tables": tables} for db, tables in databases.items()]


@dataclass(frozen=True)
class RestorePlan:
    """What a restore request resolves to, every up-front refusal made: the job ``create_restore_job``
    queues, and what the console's summary describes before anything is queued."""

    source: Instance
    dest: Instance
    point: RestorePoint
    items: list[dict[str, Any]]
    opts: RestoreOptions
    backup: Job  # the backup job of the restore point


def plan_restore(session: Session, body: CreateTaskRequest) -> RestorePlan:
    """Resolve a CreateTask body (source, destination, restore point, items) without writing anything."""
    sub = body.taskInfo.subTasks[0]
    if (sub.subTask.subTaskType, sub.subTask.operationType) != (RESTORE_SUBTASK, RESTORE_OPERATION):
        raise BadRequest(f"only restore tasks are supported (subTaskType {RESTORE_SUBTASK}, operationType "
                         f"{RESTORE_OPERATION}); got {sub.subTask.subTaskType}/{sub.subTask.operationType}")
    opts = sub.options.restoreOptions
    if opts is None:
        raise BadRequest("taskInfo.subTasks[0].options.restoreOptions is required")
    entity: dict[str, Any] = {}
    for assoc in body.taskInfo.associations[:1]:
        entity.update(assoc)
    if not entity:
        entity = dict(opts.browseOption.backupset)
    source = instance_by_entity(session, entity, live_only=False)
    if source is None:
        raise BadRequest("name the source in taskInfo.associations (instanceId, or clientName and instanceName)")
    dest_entity = opts.destination.destinationInstance.model_dump(exclude_none=True)
    if "clientName" not in dest_entity and opts.destination.destClient.get("clientName"):
        dest_entity["clientName"] = opts.destination.destClient["clientName"]
    dest = instance_by_entity(session, dest_entity, live_only=True) or source
    if dest.deleted_at is not None:
        raise BadRequest(f"instance {dest.name!r} was deleted; restore to another instance "
                         "(destination.destinationInstance)")
    point = choose_restore_point(session, source, opts)
    backup = session.get(Job, point.job_id)
    assert backup is not None
    return RestorePlan(source, dest, point, plan_items(opts, point), opts, backup)


def create_restore_job(session: Session, body: CreateTaskRequest) -> Job:
    plan = plan_restore(session, body)
    pg = plan.opts.postgresRstOption
    job = Job(job_type=JobType.RESTORE, backup_level="", status=JobStatus.WAITING, phase=QUEUED,
              instance_id=plan.dest.id, subclient_id=plan.source.subclients[0].id, restore_point_id=plan.point.id,
              options={"items": plan.items, "overwrite": plan.opts.commonOptions.unconditionalOverwrite,
                       "restore_globals": pg.restoreGlobals, "ownership": pg.restoreOwnership,
                       "parallelism": pg.parallelism, "source_instance_id": plan.source.id})
    session.add(job)
    session.flush()
    return job


@dataclass(frozen=True)
class Preflight:
    """The target as it is now, for a restore about to be queued: its databases, and why it could not
    take the restore (the job's own check, restore.engine.target_refusal), or why it could not be asked."""

    existing: frozenset[str]
    refusal: str | None
    unreachable: str | None


def preflight(address: ServerAddress, items: list[dict[str, Any]], overwrite: bool) -> Preflight:
    """Ask the target what the restore job will ask it before it changes anything (no catalog access:
    call it outside a transaction)."""
    try:
        with address.connect() as conn:
            existing = {r[0] for r in conn.execute("select datname from pg_database")}
            replaceable = {r[0] for r in conn.execute(REPLACEABLE)}
    except PgvaultError as exc:
        return Preflight(frozenset(), None, exc.message)
    except psycopg.Error as exc:
        return Preflight(frozenset(), None, str(exc).strip() or type(exc).__name__)
    restore_items = [RestoreItem(i["source"], i["target"],
                                 [(t[0], t[1]) for t in i["tables"]] if i["tables"] is not None else None)
                     for i in items]
    refusal = target_refusal(restore_items, existing=existing, replaceable=replaceable, overwrite=overwrite,
                             maintenance_db=address.dbname, user=address.user)
    return Preflight(frozenset(existing), refusal, None)


def queue_verification(session: Session, point: RestorePoint, *, drill: bool,
                       target_instance_id: int | None) -> Job:
    if target_instance_id is not None:
        target = session.get(Instance, target_instance_id)
        if target is None or target.deleted_at is not None:
            raise NotFound(f"instance {target_instance_id} does not exist")
    source = session.get(Instance, point.instance_id)
    assert source is not None
    job = Job(job_type=JobType.VERIFY, backup_level="", status=JobStatus.WAITING, phase=QUEUED,
              instance_id=target_instance_id or source.id, subclient_id=source.subclients[0].id,
              restore_point_id=point.id, options={"drill": drill, "target_instance_id": target_instance_id})
    session.add(job)
    session.flush()
    return job


def list_points(session: Session, *, instance_id: int | None, database: str | None, start: dt.datetime | None,
                end: dt.datetime | None, offset: int, limit: int) -> tuple[int, list[tuple[RestorePoint, Job]]]:
    """Restore points newest first, filtered and paged in SQL: the total without paging, and one page."""
    where: list[ColumnElement[bool]] = []
    if instance_id is not None:
        where.append(RestorePoint.instance_id == instance_id)
    if database is not None:
        where.append(JsonListContains(RestorePoint.__table__.c.databases, database))
    if start is not None:
        where.append(Job.started_at >= start)
    if end is not None:
        where.append(started_by(end))
    q = select(RestorePoint, Job).join(Job, Job.id == RestorePoint.job_id).where(*where)
    total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    page = session.execute(q.order_by(Job.started_at.desc(), RestorePoint.id.desc()).offset(offset).limit(limit))
    return total, [(p, j) for p, j in page]


@dataclass(frozen=True)
class Choice:
    """An instance as the console's restore form offers it (as a source or as a destination)."""

    id: int
    name: str
    cloud_account: str
    host: str
    port: int
    deleted: bool
    restore_points: int


def instance_choices(session: Session, *, name: str = "", live_only: bool = False, limit: int = 50) -> list[Choice]:
    """Instances by name (a part of it, any case): live ones, and deleted ones that still have restore
    points (which restore by id) unless ``live_only``."""
    points = (select(func.count()).select_from(RestorePoint).where(RestorePoint.instance_id == Instance.id)
              .correlate(Instance).scalar_subquery())
    q = (select(Instance.id, Instance.name, CloudAccount.name, Instance.host, Instance.port, Instance.deleted_at,
                points).join(CloudAccount, CloudAccount.id == Instance.cloud_account_id)
         .where(select(Subclient.id).where(Subclient.instance_id == Instance.id).exists()))
    live = Instance.deleted_at.is_(None)
    q = q.where(live if live_only else live | (points > 0))
    needle = name.strip().lower()
    if needle:
        escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        q = q.where(Instance.name_key.like(f"%{escaped}%", escape="\\"))
    rows = session.execute(q.order_by(Instance.name_key, Instance.id).limit(limit))
    return [Choice(r[0], r[1], r[2], r[3], r[4], r[5] is not None, int(r[6] or 0)) for r in rows]
