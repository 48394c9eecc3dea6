"""The scheduler: when each instance's next backup is due, and the thread that queues it.

The timing is pure and clock-injected (``next_due``, ``in_window``, ``runs_at``) so that tests can walk
through years, downtimes and DST changes without sleeping. The due time is derived from the catalog
alone (the instance's last backup job and its plan), never from state kept in this process, so that:

- after downtime a missed backup runs once: the next due time follows the *last start*, so one job is
  queued, and once it has started the next slot lies in the future again (no burst of missed slots);
- moving an instance to another plan, or changing the plan, takes effect from the next backup;
- several ``pgvault serve`` processes sharing a PostgreSQL catalog agree: each checks and queues in one
  transaction holding the instance's row lock, and a job just queued by another process is itself the
  new "last backup", so the same slot is never queued twice.

Decisions (docs/api.md says them to users):

- Slots that fall while a backup of the instance is waiting or running are skipped in its favour (the
  job gets a warning naming each skipped slot); after it ends, the next slot is the first one not before
  its end. A backup that outlasts its RPO therefore does not start another one straight after itself.
  Other jobs of the instance (restore, verification, data aging) do not skip a slot: the backup is
  queued and waits for them.
- Cron expressions are read in the plan's time zone, on its wall clock. A local time that the clock
  skips (spring forward) is read with the offset in force before the change, i.e. moved later by the
  length of the gap (as java.time and PostgreSQL do): a daily 02:30 in Europe/Berlin runs once, at 03:30
  CEST, 24 hours after the day before's. A local time that occurs twice (fall back) runs once, at its
  first occurrence, unless the expression runs every hour (hour field ``*``): then the repeated hour is
  one more hour and runs too, so that hourly jobs stay hourly.
- A window ``start``-``end`` ("HH:MM", the plan's zone) is half open, may cross midnight, and
  ``start == end`` means all day. A due time outside it moves to the next window start; a backup that
  is overdue (after downtime) is queued only while the window is open. The window governs queueing: a
  queued backup that waits for a free worker is not held back by it.
- A failed or killed backup counts as the last backup: the next attempt is the next slot, not at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from sqlalchemy import Connection, bindparam, func, select
from sqlalchemy.orm import Session

from .catalog.db import Catalog
from .catalog.models import Instance, Job, Plan
from .catalog.types import utcnow
from .domain.jobs import ACTIVE, JobStatus, JobType
from .services import aging, jobs

log = logging.getLogger("pgvault.scheduler")

# Larger than any change of a zone's UTC offset: wall times further apart than this are in the same order
# as the instants they stand for.
_DST_SPAN = dt.timedelta(hours=3)
_TICK = dt.timedelta(microseconds=1)
# A plan that cannot be followed (a cron that never fires, a zone gone from the tz database) is logged
# and left out; it must not stop the others.
_UNSCHEDULABLE = (ValueError, ZoneInfoNotFoundError)


# -- pure timing ---------------------------------------------------------------------------------------

def _aware(name: str, value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, not {value!r}")
    return value.astimezone(dt.UTC)


def _wall_to_instants(wall: dt.datetime, zone: ZoneInfo, both_folds: bool) -> list[dt.datetime]:
    """The instants at which the plan's clock reads ``wall`` (naive). A skipped wall time gets the offset
    from before the change (Python's fold=0), which moves it later by the gap's length."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(dt.UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(dt.UTC)
    if first == second or not both_folds:
        return [first]
    if second.astimezone(zone).replace(tzinfo=None) != wall:  # a gap, not a repeat: one instant
        return [first]
    return [first, second]


def _offset_changes_near(when: dt.datetime, zone: ZoneInfo) -> bool:
    offsets = {(when + d).astimezone(zone).utcoffset() for d in (-_DST_SPAN, dt.timedelta(0), _DST_SPAN)}
    return len(offsets) > 1


def cron_after(expr: str, zone: ZoneInfo, after: dt.datetime) -> dt.datetime:
    """The first instant strictly after ``after`` at which ``expr`` fires on the zone's wall clock.
    Raises ValueError (croniter's CroniterBadDateError) for an expression that never fires."""
    every_hour = croniter(expr).expanded[1] == ["*"]
    near = _offset_changes_near(after, zone)
    start = after.astimezone(zone).replace(tzinfo=None) - (_DST_SPAN if near else dt.timedelta(0))
    it = croniter(expr, start)
    best: dt.datetime | None = None
    best_wall = start
    while True:
        wall = it.get_next(dt.datetime)
        if best is not None and wall > best_wall + (_DST_SPAN if _offset_changes_near(best, zone) else _TICK):
            return best
        for instant in _wall_to_instants(wall, zone, every_hour):
            if instant > after and (best is None or instant < best):
                best, best_wall = instant, wall


def _hhmm(value: str) -> dt.time:
    hours, minutes = value.split(":")
    return dt.time(int(hours), int(minutes))


def in_window(plan: Plan, when: dt.datetime) -> bool:
    """Whether ``when`` lies in the plan's daily window (always, without one)."""
    if not plan.window_start or not plan.window_end:
        return True
    start, end = _hhmm(plan.window_start), _hhmm(plan.window_end)
    local = _aware("when", when).astimezone(ZoneInfo(plan.timezone)).time()
    if start == end:
        return True
    if start < end:
        return start <= local < end
    return local >= start or local < end


def window_start_after(plan: Plan, when: dt.datetime) -> dt.datetime:
    """The next instant after ``when`` at which the plan's window opens."""
    assert plan.window_start is not None
    zone = ZoneInfo(plan.timezone)
    start = _hhmm(plan.window_start)
    day = _aware("when", when).astimezone(zone).date()
    while True:
        opens = _wall_to_instants(dt.datetime.combine(day, start), zone, both_folds=False)[0]
        if opens > when:
            return opens
        day += dt.timedelta(days=1)


def _slot_after(plan: Plan, after: dt.datetime) -> dt.datetime:
    if plan.schedule_kind == "cron" and plan.cron:
        return cron_after(plan.cron, ZoneInfo(plan.timezone), after)
    return after + dt.timedelta(minutes=plan.rpo_minutes)


def next_due(plan: Plan, last_backup_start: dt.datetime | None, anchor: dt.datetime, *,
             last_backup_end: dt.datetime | None = None) -> dt.datetime:
    """When the instance's next scheduled backup is due (aware UTC), following its plan from the start
    of its last backup job (or from ``anchor``, its registration, when it has none).

    RPO plans: ``rpo_minutes`` after that start; cron plans: the first cron time after it, in the plan's
    time zone. Slots before ``last_backup_end`` were skipped in favour of that job, so the first slot not
    before it is taken. A slot outside the plan's window moves to the next window start. The result may
    lie in the past (downtime): it is due then, once; see ``runs_at`` for when it will actually run."""
    reference = _aware("last_backup_start", last_backup_start) if last_backup_start else _aware("anchor", anchor)
    slot = _slot_after(plan, reference)
    if last_backup_end is not None and slot < (end := _aware("last_backup_end", last_backup_end)):
        if plan.schedule_kind == "cron" and plan.cron:
            slot = _slot_after(plan, end - _TICK)
        else:
            step = dt.timedelta(minutes=plan.rpo_minutes)
            slot = reference + step * math.ceil((end - reference) / step)
    if not in_window(plan, slot):
        slot = window_start_after(plan, slot)
    return slot


def _latest_slot(plan: Plan, due: dt.datetime, now: dt.datetime, limit: int = 10_000) -> dt.datetime:
    """The latest slot not after ``now``, from ``due`` on: the one a busy instance is skipping now."""
    for _ in range(limit):
        following = next_due(plan, due, due)
        if following > now:
            break
        due = following
    return due


def runs_at(plan: Plan, due: dt.datetime, now: dt.datetime) -> dt.datetime:
    """When a backup due at ``due`` will be queued, seen at ``now``: an overdue one at once if the
    window is open, else when it next opens."""
    if due > now:
        return due
    return now if in_window(plan, now) else window_start_after(plan, now)


# -- the catalog ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Last:
    start: dt.datetime
    end: dt.datetime | None


_j, _i = Job.__table__, Instance.__table__
_NEWEST_BACKUP = select(func.max(_j.c.id)).where(_j.c.job_type == JobType.BACKUP).group_by(_j.c.instance_id)
_LAST_COLUMNS = (_j.c.instance_id, _j.c.started_at, _j.c.created_at, _j.c.ended_at)
# Built once, with the ids as an expanding parameter: building the statements cost more than running them.
_LAST_OF = select(*_LAST_COLUMNS).where(_j.c.id.in_(
    _NEWEST_BACKUP.where(_j.c.instance_id.in_(bindparam("ids", expanding=True)))))
# (services.jobs.backup_state reads the same for the instances a statement reads, for next_backup_times)
_LAST_OF_ALL = select(*_LAST_COLUMNS).where(_j.c.id.in_(_NEWEST_BACKUP))
_ACTIVE = select(_j.c.instance_id).where(_j.c.job_type == JobType.BACKUP, _j.c.status.in_(ACTIVE)).distinct()


def _last_backups(session: Session | Connection, instance_ids: Iterable[int] | None) -> dict[int, _Last]:
    """Each instance's newest backup job (of the given instances, or of all): its start (or its
    queueing, if it never started) and its end."""
    if instance_ids is None:
        rows = session.execute(_LAST_OF_ALL)
    else:
        rows = session.execute(_LAST_OF, {"ids": list(instance_ids)})
    return {iid: _Last(started or created, ended) for iid, started, created, ended in rows}


def _active_instances(session: Session | Connection) -> set[int]:
    """The instances with a backup waiting or running."""
    return set(session.scalars(_ACTIVE))


def _due(plan: Plan, created_at: dt.datetime, last: _Last | None, busy: bool,
         end_if_busy: dt.datetime | None) -> dt.datetime:
    end = end_if_busy if busy else (last.end if last else None)
    return next_due(plan, last.start if last else None, created_at, last_backup_end=end)


class Scheduled(NamedTuple):
    """What ``next_backup_times`` needs of an instance: its plan, its registration, and its backups
    (``services.jobs.backup_state``: the newest backup job's start and end, and whether one is waiting or
    running)."""

    id: int
    plan: Plan
    created_at: dt.datetime
    last_backup_start: dt.datetime | None
    last_backup_end: dt.datetime | None
    backup_active: bool


def next_backup_times(instances: Sequence[Scheduled], now: dt.datetime) -> dict[int, dt.datetime | None]:
    """When each instance's next scheduled backup will be queued, as far as can be told at ``now`` (a
    running job is taken to end now). None for a plan that cannot be followed."""
    out: dict[int, dt.datetime | None] = {}
    for inst in instances:
        last = _Last(inst.last_backup_start, inst.last_backup_end) if inst.last_backup_start else None
        try:
            out[inst.id] = runs_at(inst.plan, _due(inst.plan, inst.created_at, last, inst.backup_active, now), now)
        except _UNSCHEDULABLE:
            out[inst.id] = None
    return out


def due_instances(session: Session, now: dt.datetime) -> list[int]:
    """Live instances whose scheduled backup is due at ``now`` (a cheap read; ``check_instance`` decides
    under the row lock). Rows, not ORM objects: with 10,000 instances, loading them as objects cost
    more than the rest of a tick."""
    plans = {p.id: p for p in session.scalars(select(Plan))}
    live = session.execute(select(_i.c.id, _i.c.plan_id, _i.c.created_at).where(_i.c.deleted_at.is_(None))
                           .order_by(_i.c.id)).all()
    last, busy = _last_backups(session, None), _active_instances(session)
    due = []
    for iid, plan_id, created_at in live:
        plan = plans[plan_id]
        try:
            when = _due(plan, created_at, last.get(iid), iid in busy, None)
        except _UNSCHEDULABLE as exc:
            log.warning("instance %s: plan %r has no next backup time: %s", iid, plan.name, exc)
            continue
        if when <= now and in_window(plan, now):
            due.append(iid)
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
    due = _due(inst.plan, inst.created_at, last, bool(active), None)
    if due > now or not in_window(inst.plan, now):
        return None
    if active:
        blocker = next((j for j in active if j.status == JobStatus.RUNNING), active[0])
        state = "running" if blocker.status == JobStatus.RUNNING else "waiting"
        due = _latest_slot(inst.plan, due, now)
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
    with restore points not aged within ``aging_every`` (aging also follows every backup). Runs inside
    ``pgvault serve``, next to the worker pool, which it wakes after queueing."""

    def __init__(self, catalog: Catalog, interval: float, wake: Callable[[], None],
                 clock: Callable[[], dt.datetime] = utcnow, aging_every: dt.timedelta = dt.timedelta(hours=24)) -> None:
        self.catalog = catalog
        self.aging_every = aging_every
        self.interval = interval
        self.wake = wake
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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
        with self.catalog.read() as s:
            due = due_instances(s, self.clock())
        queued = []
        for instance_id in due:
            if self._stop.is_set():
                break
            try:
                with self.catalog.begin() as s:
                    job = check_instance(s, instance_id, self.clock())
                    if job is not None:
                        queued.append(job.id)
            except Exception:
                log.exception("could not check the schedule of instance %s", instance_id)
        try:
            with self.catalog.begin() as s:
                queued += aging.queue_periodic(s, self.clock(), self.aging_every)
        except Exception:
            log.exception("could not queue data aging")
        if queued:
            self.wake()
        return queued
