"""When a plan's backups are due: pure, clock-injected timing on a frozen ``Schedule`` value (no catalog,
no ORM objects), so that tests can walk through years, downtimes and DST changes without sleeping, and
any caller (the scheduler, an API page of 10,000 instances) can compute next backup times from rows.

Decisions (docs/api.md says them to users):

- The due time follows the *start* of the instance's last backup job (or its registration): after downtime
  a missed backup runs once, and once it has started the next slot lies in the future again.
- Slots that fall while a backup of the instance is waiting or running are skipped in its favour; after it
  ends, the next slot is the first one not before its end. A backup that outlasts its RPO therefore does
  not start another one straight after itself.
- Cron expressions are read in the plan's time zone, on its wall clock. A local time that the clock
  skips (spring forward) is read with the offset in force before the change, i.e. moved later by the
  length of the gap (as java.time and PostgreSQL do): a daily 02:30 in Europe/Berlin runs once, at 03:30
  CEST, 24 hours after the day before's. A local time that occurs twice (fall back) runs once, at its
  first occurrence, unless the expression runs every hour (hour field ``*``): then the repeated hour is
  one more hour and runs too, so that hourly jobs stay hourly.
- A window ``start``-``end`` ("HH:MM", the plan's zone) is half open, may cross midnight, and
  ``start == end`` means all day. A due time outside it moves to the next window start; a backup that
  is overdue (after downtime) is queued only while the window is open.
- A failed or killed backup counts as the last backup: the next attempt is the next slot, not at once.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

# Larger than any change of a zone's UTC offset: wall times further apart than this are in the same order
# as the instants they stand for.
_DST_SPAN = dt.timedelta(hours=3)
_TICK = dt.timedelta(microseconds=1)
# A plan that cannot be followed (a cron that never fires, a zone gone from the tz database) is logged
# and left out; it must not stop the others.
UNSCHEDULABLE = (ValueError, ZoneInfoNotFoundError)




@dataclass(frozen=True)
class Schedule:
    """What the timing needs of a plan: RPO minutes or a cron expression, its time zone and daily window."""

    schedule_kind: str  # "rpo" | "cron"
    rpo_minutes: int
    cron: str | None = None
    timezone: str = "UTC"
    window_start: str | None = None
    window_end: str | None = None

    @classmethod
    def of(cls, plan: Any) -> Schedule:
        """The schedule of a plan (anything with a plan's schedule attributes)."""
        return cls(plan.schedule_kind, plan.rpo_minutes, plan.cron, plan.timezone, plan.window_start,
                   plan.window_end)


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


def in_window(plan: Schedule, when: dt.datetime) -> bool:
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


def window_start_after(plan: Schedule, when: dt.datetime) -> dt.datetime:
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


def _slot_after(plan: Schedule, after: dt.datetime) -> dt.datetime:
    if plan.schedule_kind == "cron" and plan.cron:
        return cron_after(plan.cron, ZoneInfo(plan.timezone), after)
    return after + dt.timedelta(minutes=plan.rpo_minutes)


def next_due(plan: Schedule, last_backup_start: dt.datetime | None, anchor: dt.datetime, *,
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


def latest_slot(plan: Schedule, due: dt.datetime, now: dt.datetime, limit: int = 10_000) -> dt.datetime:
    """The latest slot not after ``now``, from ``due`` on: the one a busy instance is skipping now."""
    for _ in range(limit):
        following = next_due(plan, due, due)
        if following > now:
            break
        due = following
    return due


def runs_at(plan: Schedule, due: dt.datetime, now: dt.datetime) -> dt.datetime:
    """When a backup due at ``due`` will be queued, seen at ``now``: an overdue one at once if the
    window is open, else when it next opens."""
    if due > now:
        return due
    return now if in_window(plan, now) else window_start_after(plan, now)


@dataclass(frozen=True)
class Last:
    start: dt.datetime
    end: dt.datetime | None


def due_at(plan: Schedule, created_at: dt.datetime, last: Last | None, busy: bool,
         end_if_busy: dt.datetime | None) -> dt.datetime:
    end = end_if_busy if busy else (last.end if last else None)
    return next_due(plan, last.start if last else None, created_at, last_backup_end=end)


class Scheduled(NamedTuple):
    """What ``next_backup_times`` needs of an instance: its plan's schedule, its registration, and its backups
    (``services.jobs.backup_state``: the newest backup job's start and end, and whether one is waiting or
    running)."""

    id: int
    plan: Schedule
    created_at: dt.datetime
    last_backup_start: dt.datetime | None
    last_backup_end: dt.datetime | None
    backup_active: bool


def next_backup_times(instances: Sequence[Scheduled], now: dt.datetime) -> dict[int, dt.datetime | None]:
    """When each instance's next scheduled backup will be queued, as far as can be told at ``now`` (a
    running job is taken to end now). None for a plan that cannot be followed."""
    out: dict[int, dt.datetime | None] = {}
    for inst in instances:
        last = Last(inst.last_backup_start, inst.last_backup_end) if inst.last_backup_start else None
        try:
            out[inst.id] = runs_at(inst.plan, due_at(inst.plan, inst.created_at, last, inst.backup_active, now), now)
        except UNSCHEDULABLE:
            out[inst.id] = None
    return out




@dataclass(frozen=True)
class Protection:
    """How an instance stands against its plan's RPO at a moment: ``window`` is the RPO the plan promises
    (cron plans: the gap between the two slots after the last good backup), ``due`` when the next good
    backup must exist, ``breached`` whether ``now`` is past it."""

    window: dt.timedelta
    due: dt.datetime
    breached: bool


def protection(plan: Schedule, created_at: dt.datetime, last_good_start: dt.datetime | None,
               now: dt.datetime) -> Protection:
    """The RPO standing of an instance registered at ``created_at`` whose newest restore point's backup
    started at ``last_good_start`` (None: it has none). Raises one of ``UNSCHEDULABLE`` for a plan that
    cannot be followed. /metrics and the console's fleet overview both ask this, so they never disagree."""
    reference = last_good_start or created_at
    first = next_due(plan, reference, reference)
    window = (first - reference) if plan.schedule_kind != "cron" else (next_due(plan, first, first) - first)
    due = due_at(plan, created_at, Last(last_good_start, None) if last_good_start else None, False, None)
    return Protection(window, due, now > due)
