"""Is the fleet protected? Each live instance's standing against its plan's RPO, for the console's fleet
overview: one statement for the whole fleet (the newest restore point and the newest backup job of each
instance by index lookups), the RPO arithmetic of ``domain.schedule.protection`` (the same as /metrics),
then filters, the worst first, and one page.

The standings, worst first:
- ``late``: the newest restore point is older than the plan's RPO allows (or a plan that cannot be followed);
- ``never``: no restore point yet (its first backup may be waiting, running or failed);
- ``failed``: within the RPO, but the newest backup job did not complete cleanly;
- ``ok``: within the RPO and the newest backup completed (or is running).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from ..catalog.models import CloudAccount, Instance, Job, Plan, RestorePoint
from ..domain.jobs import JobStatus, JobType
from ..domain.schedule import UNSCHEDULABLE, Schedule, Scheduled, next_backup_times, protection
from .jobs import backup_state


class Standing(enum.StrEnum):
    LATE = "late"
    NEVER = "never"
    FAILED = "failed"
    OK = "ok"

    @property
    def words(self) -> str:
        return _WORDS[self]

    @property
    def rank(self) -> int:
        return _RANK[self]


_WORDS = {Standing.LATE: "RPO missed", Standing.NEVER: "never backed up", Standing.FAILED: "last backup failed",
          Standing.OK: "within RPO"}
_RANK = {s: i for i, s in enumerate(Standing)}
_CLEAN = (JobStatus.COMPLETED, JobStatus.WAITING, JobStatus.RUNNING)


@dataclass(frozen=True)
class InstanceStanding:
    id: int
    name: str
    cloud_account: str
    plan: str
    host: str
    port: int
    server_version: str
    standing: Standing
    last_good: dt.datetime | None  # start of the backup of the newest restore point
    rpo: dt.timedelta | None  # None: the plan cannot be followed
    due: dt.datetime | None
    databases: int  # in the newest restore point
    last_job_id: int | None  # the newest backup job
    last_job_status: str | None
    drill_status: str | None  # of the newest restore point
    drill_at: dt.datetime | None
    next_backup: dt.datetime | None = None  # filled in for the rows of the page shown


@dataclass(frozen=True)
class FleetPage:
    counts: Counter[Standing]  # over the whole fleet
    instances: int
    databases: int
    matching: int  # rows that pass the filters
    rows: list[InstanceStanding]  # the page asked for
    accounts: list[str]  # what the filters can choose from
    plans: list[str]


_i, _j, _rp, _ca, _p = (m.__table__ for m in (Instance, Job, RestorePoint, CloudAccount, Plan))


def _statement() -> Any:
    newest_point = (select(func.max(_rp.c.id)).where(_rp.c.instance_id == _i.c.id)
                    .correlate_except(_rp).scalar_subquery())
    newest_backup = (select(func.max(_j.c.id)).where(_j.c.instance_id == _i.c.id, _j.c.job_type == JobType.BACKUP)
                     .correlate_except(_j).scalar_subquery())
    point, point_job, last_job = _rp.alias("point"), _j.alias("point_job"), _j.alias("last_job")
    start, end, active = backup_state(_i.c.id)
    return (
        select(_i.c.id, _i.c.name, _ca.c.name.label("account"), _p.c.name.label("plan"), _i.c.host, _i.c.port,
               _i.c.server_version, _i.c.created_at,
               _p.c.schedule_kind, _p.c.rpo_minutes, _p.c.cron, _p.c.timezone, _p.c.window_start, _p.c.window_end,
               point_job.c.started_at.label("last_good"), point.c.database_count, point.c.drill_status,
               point.c.drill_at, last_job.c.id.label("last_job_id"), last_job.c.status.label("last_job_status"),
               start, end, active)
        .select_from(_i.join(_ca, _ca.c.id == _i.c.cloud_account_id).join(_p, _p.c.id == _i.c.plan_id)
                     .outerjoin(point, point.c.id == newest_point)
                     .outerjoin(point_job, point_job.c.id == point.c.job_id)
                     .outerjoin(last_job, last_job.c.id == newest_backup))
        .where(_i.c.deleted_at.is_(None), _i.c.id != 1))  # (1: the placeholder instance of cvpysdk's client)


_STATEMENT = _statement()


def overview(conn: Session | Connection, now: dt.datetime, *, name: str = "", account: str = "", plan: str = "",
             standing: str = "", offset: int = 0, limit: int = 50) -> FleetPage:
    """The fleet's counts and one page of its instances, the worst first, filtered by a part of the name
    (any case), a cloud account, a plan and a standing."""
    counts: Counter[Standing] = Counter()
    databases = 0
    matching: list[tuple[InstanceStanding, Scheduled]] = []
    needle = name.strip().lower()
    for r in conn.execute(_STATEMENT):
        schedule = Schedule(r.schedule_kind, r.rpo_minutes, r.cron, r.timezone, r.window_start, r.window_end)
        rpo = due = None
        try:
            standing_now = protection(schedule, r.created_at, r.last_good, now)
            rpo, due = standing_now.window, standing_now.due
            late = standing_now.breached
        except UNSCHEDULABLE:
            late = True
        if r.last_good is None:
            state = Standing.NEVER
        elif late:
            state = Standing.LATE
        elif r.last_job_status is not None and JobStatus(r.last_job_status) not in _CLEAN:
            state = Standing.FAILED
        else:
            state = Standing.OK
        counts[state] += 1
        databases += r.database_count or 0
        if needle and needle not in r.name.lower():
            continue
        if (account and r.account != account) or (plan and r.plan != plan) or (standing and state != standing):
            continue
        row = InstanceStanding(r.id, r.name, r.account, r.plan, r.host, r.port, r.server_version, state, r.last_good,
                               rpo, due, r.database_count or 0, r.last_job_id,
                               str(JobStatus(r.last_job_status)) if r.last_job_status else None,
                               r.drill_status, r.drill_at)
        matching.append((row, Scheduled(r.id, schedule, r.created_at, r.last_backup_start, r.last_backup_end,
                                        bool(r.backup_active))))
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    matching.sort(key=lambda m: (m[0].standing.rank, m[0].last_good or far if m[0].standing is not Standing.NEVER
                                 else far, m[0].name))
    page = matching[offset:offset + limit]
    nexts = next_backup_times([s for _, s in page], now)  # (croniter: only for the rows shown)
    rows = [dataclasses.replace(row, next_backup=nexts.get(row.id)) for row, _ in page]
    accounts = list(conn.execute(select(_ca.c.name).order_by(_ca.c.name)).scalars())
    plans = list(conn.execute(select(_p.c.name).order_by(_p.c.name)).scalars())
    return FleetPage(counts, sum(counts.values()), databases, len(matching), rows, accounts, plans)
