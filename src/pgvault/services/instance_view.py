"""What the console's instance pages read: one instance's connection facts, its databases with their
backup sizes over its newest restore points, its restore points with their copies and checks, its recent
jobs, and what deleting it would do to its backups. Reads only: the actions are the API's operations.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..catalog.models import CloudAccount, Instance, Job, JobItem, Plan, PlanDestination, RestorePoint, RestorePointCopy
from ..domain.destinations import describe
from ..domain.jobs import ACTIVE, READERS, JobType
from ..domain.schedule import next_backup_times
from ..errors import NotFound
from ..schemas.instance import InstanceRow
from . import instances

POINTS = 20  # restore points shown (newest first); the databases' trends come from these
TREND = 6  # sizes per database in its trend
JOBS = 10  # recent jobs shown


@dataclass(frozen=True)
class Choices:
    """What the register form and the move-to-plan form choose from."""

    accounts: list[str]
    plans: list[str]


def choices(session: Session) -> Choices:
    return Choices(list(session.scalars(select(CloudAccount.name).order_by(CloudAccount.name))),
                   list(session.scalars(select(Plan.name).order_by(Plan.name))))


@dataclass(frozen=True)
class DatabaseLine:
    name: str
    last_good: dt.datetime | None  # when the data of its newest restore point is from (its snapshot)
    size: int | None  # its dump's bytes in that restore point
    trend: list[int]  # its dump's bytes in the newest restore points holding it, oldest first
    last_status: str | None  # its item in the newest backup job (Completed, Failed, Skipped, ...)
    last_error: str | None


@dataclass(frozen=True)
class CopyLine:
    name: str  # the plan destination's name ("" once that destination is gone)
    kind: str  # local | s3
    where: str  # a path, or s3://bucket/prefix (endpoint); never a key
    state: str  # present | deleting


@dataclass(frozen=True)
class PointLine:
    id: int
    job_id: int
    backup_time: dt.datetime | None  # its backup job's start
    completed: dt.datetime
    total_bytes: int
    databases: int
    encrypted: bool
    copies: list[CopyLine]
    verify_status: str | None
    verified_at: dt.datetime | None
    verify_message: str | None
    drill_status: str | None
    drill_at: dt.datetime | None
    drill_seconds: float | None
    drill_message: str | None


@dataclass(frozen=True)
class JobLine:
    id: int
    job_type: str
    status: str
    phase: str
    percent: int
    created_at: dt.datetime
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    started_by: str
    message: str


@dataclass(frozen=True)
class InstancePage:
    row: InstanceRow  # never the password: InstanceRow has none
    next_backup: dt.datetime | None
    twins: list[str]  # other live instances of the same host:port
    databases: list[DatabaseLine]
    points: list[PointLine]  # newest first, up to POINTS
    points_total: int
    jobs: list[JobLine]  # newest first, up to JOBS
    jobs_total: int
    plans: list[str] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        """Whether one of the jobs shown is waiting or running (the page then refreshes itself)."""
        return any(j.status in ACTIVE for j in self.jobs)

    @property
    def newest_point(self) -> PointLine | None:
        return self.points[0] if self.points else None


def where(kind: str, config: dict[str, Any]) -> str:
    """A destination or copy in one line, as ``describe`` allows it to be shown (never its keys)."""
    shown = describe(kind, config)
    if kind == "s3":
        place = f"s3://{shown.get('bucket', '')}/{shown.get('prefix') or ''}".rstrip("/")
        return f"{place} ({shown['endpoint']})" if shown.get("endpoint") else place
    return str(shown.get("path", ""))


def instance_page(session: Session, instance_id: int, now: dt.datetime) -> InstancePage:
    row = instances.live_row(session, instance_id)  # NotFound for a deleted or unknown instance
    due = next_backup_times(instances.schedules([row]), now)[row.id]
    total = session.scalar(select(func.count()).select_from(RestorePoint)
                           .where(RestorePoint.instance_id == row.id)) or 0
    rows = session.execute(
        select(RestorePoint, Job.started_at).join(Job, Job.id == RestorePoint.job_id)
        .where(RestorePoint.instance_id == row.id)
        .order_by(Job.started_at.desc(), RestorePoint.id.desc()).limit(POINTS)).all()
    names = dict(session.execute(
        select(PlanDestination.id, PlanDestination.name).join(
            RestorePointCopy, RestorePointCopy.destination_id == PlanDestination.id)
        .where(RestorePointCopy.restore_point_id.in_([p.id for p, _ in rows]))).tuples().all())
    points = [PointLine(
        p.id, p.job_id, started, p.created_at, p.total_bytes, p.database_count, p.data_key_sealed is not None,
        [CopyLine(names.get(c.destination_id, "") if c.destination_id else "", c.kind, where(c.kind, c.config),
                  c.state) for c in p.copies],
        p.verify_status, p.verified_at, p.verify_message, p.drill_status, p.drill_at, p.drill_seconds,
        p.drill_message) for p, started in rows]
    databases = _databases(session, row.id, [(p, started) for p, started in rows])
    job_total = session.scalar(select(func.count()).select_from(Job).where(Job.instance_id == row.id)) or 0
    jobs = [JobLine(j.id, str(j.job_type), str(j.status), j.phase, j.percent_complete, j.created_at, j.started_at,
                    j.ended_at, j.started_by, j.message)
            for j in session.scalars(select(Job).where(Job.instance_id == row.id).order_by(Job.id.desc())
                                     .limit(JOBS))]
    twins = instances.registered_as(session, row.host, row.port, row.id)
    return InstancePage(row, due, twins, databases, points, total, jobs, job_total,
                        choices(session).plans)


def _databases(session: Session, instance_id: int, points: list[tuple[RestorePoint, dt.datetime | None]]
               ) -> list[DatabaseLine]:
    """Each database of the newest backup job or of the restore points shown: its newest restore point's
    snapshot time and dump size, its sizes over the restore points shown (oldest first), and how it fared
    in the newest backup job."""
    sizes: dict[str, list[int]] = {}  # newest first
    newest: dict[str, dt.datetime] = {}
    dumped: dict[tuple[int, str], int] = {}
    if points:
        dumped = {(job_id, name): size for job_id, name, size in session.execute(
            select(JobItem.job_id, JobItem.name, JobItem.bytes).where(
                JobItem.job_id.in_([p.job_id for p, _ in points]), JobItem.kind == "database")).tuples()}
    for point, started in points:  # newest first
        for name in point.databases:
            size = dumped.get((point.job_id, name))
            if size is None:
                continue
            sizes.setdefault(name, []).append(size)
            if name not in newest:
                snap = (point.snapshot_times or {}).get(name)
                newest[name] = dt.datetime.fromisoformat(snap) if snap else (started or point.created_at)
    last_job = session.scalar(select(func.max(Job.id)).where(Job.instance_id == instance_id,
                                                             Job.job_type == JobType.BACKUP))
    outcome: dict[str, tuple[str, str | None]] = {}
    if last_job is not None:
        for name, item_status, error in session.execute(select(JobItem.name, JobItem.status, JobItem.error).where(
                JobItem.job_id == last_job, JobItem.kind == "database")):
            outcome[name] = (str(item_status), error)
    out = []
    for name in sorted(set(sizes) | set(outcome)):
        series = sizes.get(name, [])[:TREND][::-1]
        status, error = outcome.get(name, (None, None))
        out.append(DatabaseLine(name, newest.get(name), series[-1] if series else None, series, status, error))
    return out


def point_of(session: Session, instance_id: int, point_id: int) -> RestorePoint:
    """A restore point of this instance (the console drills only what the instance's page showed)."""
    point = session.get(RestorePoint, point_id)
    if point is None or point.instance_id != instance_id:
        raise NotFound(f"restore point {point_id} is not one of instance {instance_id}'s")
    return point


@dataclass(frozen=True)
class DeleteImpact:
    """What ``DELETE /Instance/{id}`` does to an instance's backups, with and without ``deleteBackups``."""

    id: int
    name: str
    host: str
    port: int
    plan: str
    retention_days: int
    keep_min: int
    points: int  # restore points
    copies: int  # their copies (present)
    bytes: int  # their total size (of one copy each)
    newest: dt.datetime | None
    active_jobs: int  # waiting or running jobs of the instance: killed by the delete
    readers: list[int]  # restores and verifications reading its backups: deleteBackups waits for them (409)


def delete_impact(session: Session, instance_id: int) -> DeleteImpact:
    inst = instances.get(session, instance_id)
    points = list(session.scalars(select(RestorePoint).where(RestorePoint.instance_id == inst.id)))
    ids = [p.id for p in points]
    copies = sum(1 for p in points for c in p.copies if c.state == "present")
    active = session.scalar(select(func.count()).select_from(Job).where(
        Job.instance_id == inst.id, Job.status.in_(ACTIVE))) or 0
    readers = list(session.scalars(select(Job.id).where(
        Job.restore_point_id.in_(ids), Job.job_type.in_(READERS), Job.status.in_(ACTIVE)).order_by(Job.id)))
    return DeleteImpact(inst.id, inst.name, inst.host, inst.port, inst.plan.name, inst.plan.retention_days,
                        inst.plan.keep_min, len(points), copies, sum(p.total_bytes for p in points),
                        max((p.created_at for p in points), default=None), active, readers)


@dataclass(frozen=True)
class Deleted:
    id: int
    name: str
    deleted_at: dt.datetime | None
    points: int  # restore points still in the catalog (being removed, with deleteBackups)
    deleting: int  # of their copies, those marked for deletion


def deleted(session: Session, instance_id: int) -> Deleted:
    """A deleted instance and what is left of its backups (NotFound for a live or unknown one)."""
    inst = session.get(Instance, instance_id)
    if inst is None or inst.deleted_at is None or instances.is_placeholder(inst):
        raise NotFound(f"instance {instance_id} is not a deleted instance")
    points = list(session.scalars(select(RestorePoint).where(RestorePoint.instance_id == inst.id)))
    return Deleted(inst.id, inst.name, inst.deleted_at, len(points),
                   sum(1 for p in points for c in p.copies if c.state == "deleting"))
