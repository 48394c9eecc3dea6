"""Jobs as a state machine: Waiting -> Running -> Completed | Completed w/ one or more errors | Failed |
Killed. A worker takes a job only by an atomic transition that also gives it a lease; it renews the lease
while it works, and a job whose lease ran out (its worker died) is requeued once, then failed.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session, aliased, joinedload, selectinload

from ..catalog.models import Instance, Job, JobItem, JobStatus, Subclient
from ..catalog.types import utcnow
from ..errors import BadRequest, NotFound

MAX_ATTEMPTS = 2


def queue_backup(session: Session, instance: Instance, subclient: Subclient | None = None, *,
                 trigger: str = "manual") -> Job:
    subclient = subclient or instance.subclients[0]
    job = Job(job_type="Backup", backup_level="Full", status=JobStatus.WAITING, phase="Queued",
              instance_id=instance.id, subclient_id=subclient.id, trigger=trigger)
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: int) -> Job:
    # What job_summary reads, in two queries rather than six lazy loads.
    job = session.get(Job, job_id, options=[
        joinedload(Job.instance).joinedload(Instance.cloud_account),
        joinedload(Job.subclient).joinedload(Subclient.backupset),
        selectinload(Job.items),
    ])
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    return job


def claim_next(session: Session, owner: str, lease_seconds: int) -> Job | None:
    """Take the oldest waiting job of an instance that has none running (two jobs of one instance never
    run at once: the later one waits).

    On PostgreSQL, ``FOR UPDATE SKIP LOCKED`` lets many workers claim at once, but under READ COMMITTED
    the "none running" check cannot see another worker's claim that is not committed yet; so the claim
    also locks the instance's row and checks again after the lock (a statement that starts after the
    other claim committed sees it). SQLite's ``BEGIN IMMEDIATE`` (see catalog.db) serialises claims anyway.
    """
    busy = aliased(Job)
    instance_busy = (
        select(busy.id).where(busy.instance_id == Job.instance_id, busy.status == JobStatus.RUNNING).exists()
    )
    passed: list[int] = []
    for _ in range(50):
        q = select(Job).where(Job.status == JobStatus.WAITING, ~instance_busy)
        if passed:
            q = q.where(Job.id.not_in(passed))
        job = session.scalar(q.order_by(Job.id).limit(1).with_for_update(skip_locked=True, of=Job))
        if job is None:
            return None
        session.execute(select(Instance.id).where(Instance.id == job.instance_id).with_for_update())
        running = session.scalar(select(Job.id).where(Job.instance_id == job.instance_id,
                                                      Job.status == JobStatus.RUNNING, Job.id != job.id)
                                 .execution_options(populate_existing=True))
        if running is None:
            break
        passed.append(job.id)
    else:
        return None
    now = utcnow()
    job.status = JobStatus.RUNNING
    job.phase = "Starting"
    job.attempts += 1
    job.started_at = job.started_at or now
    job.updated_at = now
    job.lease_owner = owner
    job.lease_expires_at = now + dt.timedelta(seconds=lease_seconds)
    session.flush()
    return job


def renew_lease(session: Session, job_id: int, owner: str, lease_seconds: int) -> bool:
    """Returns whether the job was asked to stop. Raises if the lease was lost."""
    now = utcnow()
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.status == JobStatus.RUNNING)
        .values(lease_expires_at=now + dt.timedelta(seconds=lease_seconds))
        .returning(Job.kill_requested)
    ).first()
    if result is None:
        raise LookupError(f"job {job_id} is no longer leased by {owner}")
    return bool(result[0])


def reap_expired(session: Session) -> list[int]:
    """Requeue (or, after MAX_ATTEMPTS, fail) running jobs whose worker stopped renewing its lease."""
    now = utcnow()
    jobs = session.scalars(
        select(Job).where(Job.status == JobStatus.RUNNING, Job.lease_expires_at < now)
        .with_for_update(skip_locked=True)
    ).all()
    for job in jobs:
        job.lease_owner = None
        job.lease_expires_at = None
        job.updated_at = now
        if job.kill_requested:
            job.status, job.phase, job.ended_at = JobStatus.KILLED, "Killed", now
            job.message = "killed; its worker stopped before it could clean up"
        elif job.attempts >= MAX_ATTEMPTS:
            job.status, job.phase, job.ended_at = JobStatus.FAILED, "Failed", now
            job.message = f"its worker stopped responding {job.attempts} times"
        else:
            job.status, job.phase = JobStatus.WAITING, "Queued"
            job.message = "requeued: its worker stopped responding"
            for item in list(job.items):
                session.delete(item)
    session.flush()
    return [j.id for j in jobs]


def request_kill(session: Session, job_id: int) -> Job:
    job = get_job(session, job_id)
    status = JobStatus(job.status)
    if status.finished:
        raise BadRequest(f"job {job_id} has already finished ({job.status})")
    now = utcnow()
    if status == JobStatus.WAITING:
        job.status, job.phase, job.ended_at = JobStatus.KILLED, "Killed", now
        job.message = "killed before it started"
    job.kill_requested = True
    job.updated_at = now
    session.flush()
    return job


def finish(session: Session, job_id: int, owner: str, status: str, message: str) -> bool:
    """End a job this owner holds; False if it no longer does (its lease ran out and it was reaped)."""
    job = session.get(Job, job_id)
    if job is None or job.lease_owner != owner:
        return False
    now = utcnow()
    job.status = status
    job.phase = status if status in (JobStatus.KILLED, JobStatus.FAILED) else "Completed"
    job.percent_complete = 100 if status in (JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS) \
        else job.percent_complete
    job.message = message
    job.ended_at = now
    job.updated_at = now
    job.lease_owner = None
    job.lease_expires_at = None
    for item in job.items:
        if item.status in (JobStatus.WAITING, JobStatus.RUNNING):
            item.status = JobStatus.KILLED if status == JobStatus.KILLED else JobStatus.FAILED
            item.error = item.error or ("killed" if status == JobStatus.KILLED else message)
    session.flush()
    return True


def add_items(session: Session, job_id: int, names: list[tuple[str, str]]) -> list[int]:
    items = [JobItem(job_id=job_id, kind=kind, name=name) for kind, name in names]
    session.add_all(items)
    session.flush()
    return [i.id for i in items]


def update_item(session: Session, item_id: int, **values: object) -> None:
    session.execute(update(JobItem).where(JobItem.id == item_id).values(**values))


def set_progress(session: Session, job_id: int, phase: str, percent: int | None) -> None:
    values: dict[str, object] = {"phase": phase, "updated_at": utcnow()}
    if percent is not None:
        values["percent_complete"] = percent
    session.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING).values(**values))


def add_warning(session: Session, job_id: int, message: str) -> None:
    job = session.get(Job, job_id)
    if job is not None:
        job.warnings = [*job.warnings, message]


def list_jobs(session: Session, *, category: str = "all", finished_within_seconds: int = 0,
              client_ids: list[int] | None = None, job_types: list[str] | None = None,
              subclient_id: int | None = None, instance_id: int | None = None,
              offset: int = 0, limit: int = 20, newest_first: bool = True) -> tuple[list[Job], int]:
    """Jobs for ``POST /Jobs``: ``active`` (waiting, running), ``finished`` (ended within the look-up
    time, 0 for no limit) or ``all`` (both). Returns one page and the total without paging."""
    active: ColumnElement[bool] = Job.status.in_([JobStatus.WAITING, JobStatus.RUNNING])
    finished: ColumnElement[bool] = ~active
    if finished_within_seconds > 0:
        since = utcnow() - dt.timedelta(seconds=finished_within_seconds)
        finished = finished & (func.coalesce(Job.ended_at, Job.updated_at) >= since)
    where = {"active": active, "finished": finished, "all": active | finished}[category]
    q = select(Job).where(where)
    if client_ids:
        q = q.join(Instance, Instance.id == Job.instance_id).where(Instance.cloud_account_id.in_(client_ids))
    if job_types:
        q = q.where(func.lower(Job.job_type).in_([t.lower() for t in job_types]))
    if subclient_id is not None:
        q = q.where(Job.subclient_id == subclient_id)
    if instance_id is not None:
        q = q.where(Job.instance_id == instance_id)
    total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    order = Job.id.desc() if newest_first else Job.id.asc()
    return list(session.scalars(q.order_by(order).offset(offset).limit(limit))), total
