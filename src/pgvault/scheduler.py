"""The scheduler: the thread that queues each instance's backup when its plan says it is due (the timing
itself is pure, in ``domain/schedule.py``).

The due time is derived from the catalog alone (the instance's last backup job and its plan), never from
state kept in this process, so that:

- moving an instance to another plan, or changing the plan, takes effect from the next backup;
- several ``pgvault serve`` processes sharing a PostgreSQL catalog agree: each checks and queues in one
  transaction holding the instance's row lock, and a job just queued by another process is itself the
  new "last backup", so the same slot is never queued twice.
- Slots that fall while a backup of the instance is waiting or running are skipped in its favour (the
  job gets a warning naming each skipped slot). Other jobs of the instance (restore, verification, data
  aging) do not skip a slot: the backup is queued and waits for them. The window governs queueing: a
  queued backup that waits for a free worker is not held back by it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .catalog.db import Catalog
from .catalog.models import Instance, Job, Plan
from .catalog.types import utcnow
from .domain.jobs import ACTIVE, JobStatus, JobType
from .domain.schedule import UNSCHEDULABLE, Last, Schedule, due_at, in_window, latest_slot
from .services import aging, jobs, notifications

log = logging.getLogger("pgvault.scheduler")


# -- the catalog ---------------------------------------------------------------------------------------

_j, _i = Job.__table__, Instance.__table__
_NEWEST_BACKUP = select(func.max(_j.c.id)).where(_j.c.job_type == JobType.BACKUP).group_by(_j.c.instance_id)
_LAST_COLUMNS = (_j.c.instance_id, _j.c.started_at, _j.c.created_at, _j.c.ended_at)
# Built once, with the ids as an expanding parameter: building the statements cost more than running them.
_LAST_OF = select(*_LAST_COLUMNS).where(_j.c.id.in_(
    _NEWEST_BACKUP.where(_j.c.instance_id.in_(bindparam("ids", expanding=True)))))
# (services.jobs.backup_state reads the same for the instances a statement reads, for next_backup_times)
_LAST_OF_ALL = select(*_LAST_COLUMNS).where(_j.c.id.in_(_NEWEST_BACKUP))
_ACTIVE = select(_j.c.instance_id).where(_j.c.job_type == JobType.BACKUP, _j.c.status.in_(ACTIVE)).distinct()


def _last_backups(session: Session | Connection, instance_ids: Iterable[int] | None) -> dict[int, Last]:
    """Each instance's newest backup job (of the given instances, or of all): its start (or its
    queueing, if it never started) and its end."""
    if instance_ids is None:
        rows = session.execute(_LAST_OF_ALL)
    else:
        rows = session.execute(_LAST_OF, {"ids": list(instance_ids)})
    return {iid: Last(started or created, ended) for iid, started, created, ended in rows}


def _active_instances(session: Session | Connection) -> set[int]:
    """The instances with a backup waiting or running."""
    return set(session.scalars(_ACTIVE))


def due_instances(session: Session, now: dt.datetime) -> list[int]:
    """Live instances whose scheduled backup is due at ``now`` (a cheap read; ``check_instance`` decides
    under the row lock)."""
    return list(due_times(session, now))


def due_times(session: Session, now: dt.datetime) -> dict[int, dt.datetime]:
    """``due_instances`` with the time each became due. Rows, not ORM objects: with 10,000 instances,
    loading them as objects cost more than the rest of a tick."""
    plans = {p.id: (p.name, Schedule.of(p)) for p in session.scalars(select(Plan))}
    live = session.execute(select(_i.c.id, _i.c.plan_id, _i.c.created_at).where(_i.c.deleted_at.is_(None))
                           .order_by(_i.c.id)).all()
    last, busy = _last_backups(session, None), _active_instances(session)
    due: dict[int, dt.datetime] = {}
    for iid, plan_id, created_at in live:
        name, schedule = plans[plan_id]
        try:
            when = due_at(schedule, created_at, last.get(iid), iid in busy, None)
        except UNSCHEDULABLE as exc:
            log.warning("instance %s: plan %r has no next backup time: %s", iid, name, exc)
            continue
        if when <= now and in_window(schedule, now):
            due[iid] = when
    return due


def check_instance(session: Session, instance_id: int, now: dt.datetime) -> Job | None:
    """Queue the instance's scheduled backup if it is due, in the caller's transaction, holding the
    instance's row lock (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serialises)
    so that two processes cannot both queue it. If a backup of the instance is already waiting or
    running, nothing is queued and that job says which scheduled backup it made skip. Other jobs (a
    restore, a verification, data aging) do not skip it: it is queued and waits for them, as every job
    of an instance waits for the one running (``jobs.claim_next``)."""
    inst = session.scalar(select(Instance).where(Instance.id == instance_id, Instance.deleted_at.is_(None))
                          .with_for_update(of=Instance))
    if inst is None:
        return None
    last = _last_backups(session, [inst.id]).get(inst.id)
    active = session.scalars(select(Job).where(Job.instance_id == inst.id, Job.job_type == JobType.BACKUP,
                                               Job.status.in_(ACTIVE)).order_by(Job.id)).all()
    schedule = Schedule.of(inst.plan)
    due = due_at(schedule, inst.created_at, last, bool(active), None)
    if due > now or not in_window(schedule, now):
        return None
    if active:
        blocker = next((j for j in active if j.status == JobStatus.RUNNING), active[0])
        state = "running" if blocker.status == JobStatus.RUNNING else "waiting"
        due = latest_slot(schedule, due, now)
        local = due.astimezone(ZoneInfo(inst.plan.timezone)).isoformat(timespec="seconds")
        message = f"scheduled backup due at {local} ({inst.plan.timezone}) skipped: this job was already {state}"
        if message not in (blocker.warnings or []):
            jobs.add_warning(session, blocker.id, message)
            log.info("instance %s: %s (job %s)", inst.id, message, blocker.id)
        return None
    job = jobs.queue_backup(session, inst, trigger="scheduled")
    job.created_at = job.updated_at = now  # queued on the scheduler's clock, which its due times follow
    log.info("instance %s: scheduled backup due at %s queued as job %s", inst.id, due.isoformat(), job.id)
    return job


# -- the thread ----------------------------------------------------------------------------------------

class Scheduler:
    """Every ``interval`` seconds, queue the backups that are due, and a Data Aging job for every instance
    with restore points not aged within ``aging_every`` (aging also follows every backup); then notice RPO
    breaches and recoveries (``rpo_grace`` past the due time), for notifications. Runs inside
    ``pgvault serve``, next to the worker pool, which it wakes after queueing."""

    def __init__(self, catalog: Catalog, interval: float, wake: Callable[[], None],
                 clock: Callable[[], dt.datetime] = utcnow, aging_every: dt.timedelta = dt.timedelta(hours=24),
                 rpo_grace: dt.timedelta = dt.timedelta(minutes=5), notify: Callable[[], None] = lambda: None,
                 audit_retention: dt.timedelta = dt.timedelta(days=365)) -> None:
        self.catalog = catalog
        self.audit_retention = audit_retention
        self._audit_pruned: dt.datetime | None = None
        self.rpo_grace = rpo_grace
        self.notify = notify
        self.aging_every = aging_every
        self.interval = interval
        self.wake = wake
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_lag_seconds: float | None = None  # how late the last tick's due backups were (metrics)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="pgvault-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():  # the first tick at once: a backup missed during downtime runs now
            try:
                self.tick()
            except Exception:
                log.exception("scheduler tick failed")
            self._stop.wait(self.interval)

    def tick(self) -> list[int]:
        """One pass over the instances; returns the ids of the jobs queued. Each instance is checked in
        a transaction of its own, so one instance's trouble does not hold up the others."""
        now = self.clock()
        with self.catalog.transaction(write=False) as s:
            due = due_times(s, now)
        self.last_lag_seconds = max(((now - when).total_seconds() for when in due.values()), default=0.0)
        queued = []
        for instance_id in due:
            if self._stop.is_set():
                break
            try:
                with self.catalog.transaction(write=True) as s:
                    job = check_instance(s, instance_id, self.clock())
                    if job is not None:
                        queued.append(job.id)
            except Exception:
                log.exception("could not check the schedule of instance %s", instance_id)
        try:
            with self.catalog.transaction(write=True) as s:
                queued += aging.queue_periodic(s, self.clock(), self.aging_every)
        except Exception:
            log.exception("could not queue data aging")
        self.prune_audit()
        if queued:
            self.wake()
        self.check_rpo()
        return queued

    def prune_audit(self) -> int:
        """Data Aging of the audit trail: records older than ``audit_retention`` go, at most once an hour."""
        now = self.clock()
        if self._audit_pruned is not None and now - self._audit_pruned < dt.timedelta(hours=1):
            return 0
        try:
            with self.catalog.transaction(write=True) as s:
                gone = aging.prune_audit(s, now - self.audit_retention)
        except Exception:
            log.exception("could not remove old audit records")
            return 0
        self._audit_pruned = now
        if gone:
            log.info("data aging: %d audit records older than %s removed", gone, self.audit_retention)
        return gone

    def check_rpo(self) -> tuple[list[int], list[int]]:
        """Notice the instances that went past their RPO and those back within it (each once: the state is
        the catalog's, ``rpo_breaches``), and queue their notifications."""
        try:
            with self.catalog.transaction(write=True) as s:
                breached, recovered = notifications.check_rpo(s, self.clock(), self.rpo_grace)
        except IntegrityError:  # another process sharing the catalog recorded the same breach first
            log.info("another process noticed the same RPO breach first; it notifies")
            return [], []
        except Exception:
            log.exception("could not check the instances' RPO")
            return [], []
        for iid in breached:
            log.warning("instance %s is past its RPO", iid)
        for iid in recovered:
            log.info("instance %s is back within its RPO", iid)
        if breached or recovered:
            self.notify()
        return breached, recovered
