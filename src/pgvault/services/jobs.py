"""Jobs in the catalog: queueing, claiming, leases, progress and the reads the API makes. The lifecycle
itself (states, types, which transitions exist) is ``domain/jobs.py``; every change of a job's state here
goes through its functions. A worker takes a job only by an atomic claim that also gives it a lease; it
renews the lease while it works, and a job whose lease ran out (its worker died) is requeued once, then
failed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Connection,
    Integer,
    Label,
    Table,
    bindparam,
    case,
    func,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.orm import Session, aliased

from ..catalog.models import Backupset, CloudAccount, Instance, Job, JobItem, Subclient
from ..catalog.prepared import DriverReader, Prepared
from ..catalog.types import utcnow
from ..domain import jobs as lifecycle
from ..domain.jobs import ACTIVE, QUEUED, JobStatus, JobType
from ..errors import BadRequest, LeaseLost, NotFound
from ..schemas.jobs import JobItemRow, JobRow, JobView


def queue_backup(session: Session, instance: Instance, subclient: Subclient | None = None, *,
                 trigger: str = "manual") -> Job:
    subclient = subclient or instance.subclients[0]
    job = Job(job_type=JobType.BACKUP, backup_level="Full", status=JobStatus.WAITING, phase=QUEUED,
              instance_id=instance.id, subclient_id=subclient.id, trigger=trigger)
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: int) -> Job:
    """The job, to change it (reads for the API are ``job_view`` and ``list_jobs``)."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    return job


# -- reading jobs as rows (GET /Job/{id}, POST /JobDetails, POST /Jobs) ---------------------------------
#
# SQLAlchemy Core, no ORM objects: a job row joined with what its summary names (instance, cloud account,
# subclient, backupset), and its items in a second statement, as ``schemas.jobs.JobRow``s and ``JobItemRow``s.

_j, _ji, _i, _ca, _sc, _bs = (m.__table__ for m in (Job, JobItem, Instance, CloudAccount, Subclient, Backupset))
_JOB_COLUMNS = (
    _j.c.id, _j.c.job_type, _j.c.backup_level, _j.c.trigger, _j.c.started_by, _j.c.status, _j.c.percent_complete,
    _j.c.phase, _j.c.message, _j.c.warnings, _j.c.attempts, _j.c.restore_point_id, _j.c.created_at,
    _j.c.started_at, _j.c.ended_at, _j.c.updated_at, _j.c.instance_id, _j.c.subclient_id,
    _ca.c.name.label("client_name"), _i.c.cloud_account_id, _i.c.name.label("instance_name"),
    _bs.c.name.label("backupset_name"), _sc.c.backupset_id, _sc.c.name.label("subclient_name"),
)
_JOB_FROM = (_j.join(_i, _i.c.id == _j.c.instance_id).join(_ca, _ca.c.id == _i.c.cloud_account_id)
             .join(_sc, _sc.c.id == _j.c.subclient_id).join(_bs, _bs.c.id == _sc.c.backupset_id))
_ITEM_COLUMNS = (_ji.c.job_id, _ji.c.kind, _ji.c.name, _ji.c.status, _ji.c.bytes, _ji.c.sha256, _ji.c.location,
                 _ji.c.error, _ji.c.target, _ji.c.details, _ji.c.phase, _ji.c.elapsed_ms)
# Built once: building these statements costs more than running them. The two of GET /Job/{id} are
# prepared (catalog.prepared): run on the driver's cursor when the caller has one.
_ONE_JOB = Prepared(select(*_JOB_COLUMNS).select_from(_JOB_FROM).where(_j.c.id == bindparam("job_id", type_=Integer)),
                    JobRow)
_ITEMS_OF = Prepared(select(*_ITEM_COLUMNS).where(_ji.c.job_id == bindparam("job_id", type_=Integer))
                     .order_by(_ji.c.id), JobItemRow)
_ITEMS_OF_MANY = (select(*_ITEM_COLUMNS).where(_ji.c.job_id.in_(bindparam("job_ids", expanding=True)))
                  .order_by(_ji.c.id))


def backup_state(instance_id: ColumnElement[int]) -> tuple[Label[Any], Label[Any], Label[Any]]:
    """Columns for a statement that reads instances (``instance_id`` its id column): the start (or the
    queueing, if it never started) and the end of the instance's newest backup job, and whether a backup
    of it is waiting or running. What ``scheduler.next_backup_times`` needs, by the rules of
    ``scheduler._last_backups`` and ``_active_instances``, read with the instance's row: index lookups
    (ix_jobs_instance_type_id; the active backups once per statement, by ix_jobs_status_id)."""
    newest = (select(func.max(_j.c.id)).where(_j.c.instance_id == instance_id, _j.c.job_type == JobType.BACKUP)
              .correlate_except(_j).scalar_subquery())
    last = _j.alias("last_backup")
    start = select(func.coalesce(last.c.started_at, last.c.created_at)).where(last.c.id == newest)
    end = select(last.c.ended_at).where(last.c.id == newest)
    # (two comparisons, not IN: a list parameter would be rendered into the statement at every execution)
    active = instance_id.in_(select(_j.c.instance_id).where(
        _j.c.job_type == JobType.BACKUP, or_(*(_j.c.status == status for status in ACTIVE))))
    return (start.scalar_subquery().label("last_backup_start"), end.scalar_subquery().label("last_backup_end"),
            type_coerce(active, Boolean).label("backup_active"))


assert tuple(c.name for c in _ONE_JOB.stmt.selected_columns) == JobRow._fields
assert tuple(c.name for c in _ITEMS_OF.stmt.selected_columns) == JobItemRow._fields


def job_view(conn: DriverReader | Session | Connection, job_id: int) -> JobView:
    row = _ONE_JOB.first(conn, job_id=job_id)
    if row is None:
        raise NotFound(f"job {job_id} does not exist")
    return JobView(row, _ITEMS_OF.all(conn, job_id=job_id))


_RUNNER = select(_j.c.lease_owner, _j.c.kill_requested).where(_j.c.id == bindparam("job_id", type_=Integer))


def job_runner(conn: Session | Connection, job_id: int) -> tuple[str | None, bool]:
    """Who holds a job's lease (``<node>:<incarnation>:<claim>``, None when it is not running) and whether
    a kill was asked: what the console's job log says besides ``job_view``."""
    row = conn.execute(_RUNNER, {"job_id": job_id}).first()
    if row is None:
        raise NotFound(f"job {job_id} does not exist")
    return row[0], bool(row[1])


_busy = aliased(Job)  # built once: every worker thread polls with it
_WAITING_AND_FREE = select(Job).where(
    Job.status == JobStatus.WAITING,
    ~select(_busy.id).where(_busy.instance_id == Job.instance_id, _busy.status == JobStatus.RUNNING).exists())


def claim_next(session: Session, owner: str, lease_seconds: int) -> Job | None:
    """Take the oldest waiting job of an instance that has none running (two jobs of one instance never
    run at once: the later one waits).

    On PostgreSQL, ``FOR UPDATE SKIP LOCKED`` lets many workers claim at once, but under READ COMMITTED
    the "none running" check cannot see another worker's claim that is not committed yet; so the claim
    also locks the instance's row and checks again after the lock (a statement that starts after the
    other claim committed sees it). SQLite's ``BEGIN IMMEDIATE`` (see catalog.db) serialises claims anyway.
    """
    passed: list[int] = []
    for _ in range(50):
        q = _WAITING_AND_FREE
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
    lifecycle.claim(job, owner, utcnow(), lease_seconds)
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
    return _reap(session, jobs, now, lifecycle.LEASE_RAN_OUT)


def reclaim(session: Session, node_prefix: str, incarnation_prefix: str) -> list[int]:
    """Requeue (or fail, or end Killed, by the same rules as the reaper) the running jobs leased by an
    earlier incarnation of this node (lease owner starting with ``node_prefix`` but not with
    ``incarnation_prefix``), without waiting for their leases: the caller holds the node's lock, so no
    live process is that incarnation. Another node's jobs never match."""
    now = utcnow()
    jobs = session.scalars(
        select(Job).where(Job.status == JobStatus.RUNNING,
                          Job.lease_owner.startswith(node_prefix, autoescape=True),
                          ~Job.lease_owner.startswith(incarnation_prefix, autoescape=True))
        .with_for_update(skip_locked=True)
    ).all()
    return _reap(session, jobs, now, lifecycle.NODE_RESTARTED)


def _reap(session: Session, jobs: Sequence[Job], now: dt.datetime, cause: str) -> list[int]:
    from . import notifications  # (it reads jobs; this module is imported first)

    for job in jobs:
        if lifecycle.reap(job, job.items, now, cause):
            for item in list(job.items):
                session.delete(item)
    session.flush()
    for job in jobs:
        if job.status == JobStatus.FAILED:  # its last claim ran out: it ends here, not in a worker
            notifications.job_ended(session, job.id)
    return [j.id for j in jobs]


def request_kill(session: Session, job_id: int) -> Job:
    job = get_job(session, job_id)
    try:
        lifecycle.request_kill(job, utcnow())
    except lifecycle.InvalidTransition:
        raise BadRequest(f"job {job_id} has already finished ({job.status})") from None
    session.flush()
    return job


def finish(session: Session, job_id: int, owner: str, status: JobStatus, message: str) -> bool:
    """End a job this owner holds; False if it no longer does (its lease ran out and it was reaped)."""
    job = session.get(Job, job_id)
    if job is None or job.lease_owner != owner:
        return False
    lifecycle.end(job, job.items, status, message, utcnow())
    session.flush()
    return True


def requeue(session: Session, job_id: int, owner: str, message: str) -> bool:
    """Put a job this owner holds back in the queue to run again from the start, not counted as an attempt
    (a shutdown interrupted it); False if it no longer holds it."""
    job = session.get(Job, job_id)
    if job is None or job.lease_owner != owner:
        return False
    lifecycle.requeue(job, message, utcnow(), count_attempt=False)
    for item in list(job.items):
        session.delete(item)
    session.flush()
    return True


# A run's writes (its items, its progress, its warnings) carry its lease when they come from its worker: they
# land only while the job is Running under that lease, so a worker that lost its job (reaped, then claimed
# again or ended) can no longer change it, and a job's end and its items' states stay as ``end`` left them.
def _held(lease: Any) -> ColumnElement[bool]:
    return select(_j.c.id).where(_j.c.id == _ji.c.job_id, _j.c.lease_owner == lease).exists()


def add_items(session: Session, job_id: int, names: list[tuple[str, str]], *, lease: str | None = None) -> list[int]:
    if lease is not None and session.scalar(select(Job.id).where(Job.id == job_id, Job.lease_owner == lease)) is None:
        raise LeaseLost(f"job {job_id} is no longer leased by {lease}")
    items = [JobItem(job_id=job_id, kind=kind, name=name) for kind, name in names]
    session.add_all(items)
    session.flush()
    return [i.id for i in items]


# Progress is written a few times per database of a running job: Core statements built once (the SET
# clause follows the parameters given), not ORM bulk updates, which cost more to build than to run.
_UPDATE_ITEM = update(cast(Table, _ji)).where(_ji.c.id == bindparam("item_id", type_=Integer))
_UPDATE_HELD_ITEM = _UPDATE_ITEM.where(_held(bindparam("lease")))
_SET_PROGRESS = update(cast(Table, _j)).where(_j.c.id == bindparam("job_id", type_=Integer),
                                              _j.c.status == JobStatus.RUNNING.value)
_SET_HELD_PROGRESS = _SET_PROGRESS.where(_j.c.lease_owner == bindparam("lease"))


_ITEM_FIELDS = frozenset(_ji.c.keys()) - {"id", "job_id"}


def update_item(session: Session, item_id: int, *, lease: str | None = None, **values: object) -> None:
    unknown = values.keys() - _ITEM_FIELDS
    if unknown:  # Core would leave a misspelt column out of the SET clause without a word
        raise ValueError(f"job items have no {', '.join(sorted(unknown))}")
    if lease is None:
        session.execute(_UPDATE_ITEM, {"item_id": item_id, **values})
    else:
        session.execute(_UPDATE_HELD_ITEM, {"item_id": item_id, "lease": lease, **values})


def set_progress(session: Session, job_id: int, phase: str, percent: int | None, *, lease: str | None = None) -> None:
    values: dict[str, object] = {"job_id": job_id, "phase": phase, "updated_at": utcnow()}
    if percent is not None:
        values["percent_complete"] = percent
    if lease is None:
        session.execute(_SET_PROGRESS, values)
    else:
        session.execute(_SET_HELD_PROGRESS, {**values, "lease": lease})


# A running job's live progress (``record_progress``, about once a second): the bytes of its items in flight,
# only while each is still Running (a report that lands after the item's end changes nothing), and the job's
# percent, which only rises (a report computed before a database ended may land after the end's own).
_ITEM_PROGRESS = (update(cast(Table, _ji))
                  .where(_ji.c.id == bindparam("item_id", type_=Integer),
                         _ji.c.status == lifecycle.ItemStatus.RUNNING.value)
                  .values(bytes=bindparam("nbytes"), elapsed_ms=bindparam("elapsed_ms")))
_HELD_ITEM_PROGRESS = _ITEM_PROGRESS.where(_held(bindparam("lease")))
_JOB_PROGRESS = _SET_PROGRESS.values(
    phase=bindparam("phase"), updated_at=bindparam("at"),
    percent_complete=case((_j.c.percent_complete < bindparam("percent", type_=Integer), bindparam("percent")),
                          else_=_j.c.percent_complete))
_HELD_JOB_PROGRESS = _JOB_PROGRESS.where(_j.c.lease_owner == bindparam("lease"))


def record_progress(session: Session, job_id: int, items: dict[int, tuple[int, int | None]], phase: str,
                    percent: int | None, *, lease: str | None = None) -> None:
    """The bytes streamed so far of a running job's items in flight (``items``: id to bytes and the
    milliseconds since the item started), and the job's phase and percent (None: as it was)."""
    now = utcnow()
    held = {} if lease is None else {"lease": lease}
    if items:
        session.execute(_ITEM_PROGRESS if lease is None else _HELD_ITEM_PROGRESS,
                        [{"item_id": i, "nbytes": n, "elapsed_ms": t, **held} for i, (n, t) in items.items()])
    if percent is None:
        set_progress(session, job_id, phase, None, lease=lease)
    else:
        session.execute(_JOB_PROGRESS if lease is None else _HELD_JOB_PROGRESS,
                        {"job_id": job_id, "phase": phase, "at": now, "percent": percent, **held})


def add_warning(session: Session, job_id: int, message: str, *, lease: str | None = None) -> None:
    job = session.get(Job, job_id)
    if job is not None and (lease is None or job.lease_owner == lease):
        job.warnings = [*job.warnings, message]


def list_jobs(conn: Session | Connection, *, category: str = "all", finished_within_seconds: int = 0,
              client_ids: list[int] | None = None, job_types: list[str] | None = None,
              subclient_id: int | None = None, instance_id: int | None = None,
              statuses: list[str] | None = None, instance_name: str = "",
              queued_from: dt.datetime | None = None, queued_to: dt.datetime | None = None,
              offset: int = 0, limit: int = 20, newest_first: bool = True) -> tuple[list[JobView], int]:
    """Jobs for ``POST /Jobs``: ``active`` (waiting, running), ``finished`` (ended within the look-up
    time, 0 for no limit) or ``all`` (both). Returns one page and the total without paging. The console's
    job list also filters by status (``statuses``, exact), a part of the instance's name (in any case), and the time
    the job was queued (``queued_from`` inclusive, ``queued_to`` exclusive, UTC)."""
    active: ColumnElement[bool] = _j.c.status.in_(ACTIVE)
    finished: ColumnElement[bool] = ~active
    if finished_within_seconds > 0:
        since = utcnow() - dt.timedelta(seconds=finished_within_seconds)
        finished = finished & (func.coalesce(_j.c.ended_at, _j.c.updated_at) >= since)
    where = [{"active": active, "finished": finished, "all": active | finished}[category]]
    if client_ids:
        where.append(_i.c.cloud_account_id.in_(client_ids))
    if job_types:
        where.append(func.lower(_j.c.job_type).in_([t.lower() for t in job_types]))
    if subclient_id is not None:
        where.append(_j.c.subclient_id == subclient_id)
    if instance_id is not None:
        where.append(_j.c.instance_id == instance_id)
    if statuses:
        where.append(_j.c.status.in_(statuses))
    if instance_name:
        where.append(_i.c.name_key.contains(instance_name.lower(), autoescape=True))  # (any case, LIKE literal)
    if queued_from is not None:
        where.append(_j.c.created_at >= queued_from)
    if queued_to is not None:
        where.append(_j.c.created_at < queued_to)
    q = select(*_JOB_COLUMNS).select_from(_JOB_FROM).where(*where)
    total = conn.execute(select(func.count()).select_from(q.subquery())).scalar() or 0
    order = _j.c.id.desc() if newest_first else _j.c.id.asc()
    rows = list(map(JobRow._make, conn.execute(q.order_by(order).offset(offset).limit(limit))))
    items: dict[int, list[JobItemRow]] = {r.id: [] for r in rows}
    if rows:
        for item in map(JobItemRow._make, conn.execute(_ITEMS_OF_MANY, {"job_ids": list(items)})):
            items[item.job_id].append(item)
    return [JobView(r, items[r.id]) for r in rows], total
