"""What ``GET /metrics`` says, read from the catalog at scrape time (Prometheus' custom-collector pattern):
a scrape sees what every node wrote, not one process's counters, and a restarted pgvault loses nothing.

Names and units follow Prometheus' rules (``_seconds``, ``_bytes``, ``_total``); labels are bounded
(instance, cloud account, database, plan, destination, job type and status; never a job id). The reads are
a handful of aggregate statements whatever the fleet's size (docs/performance.md has a scrape's cost at
10,000 instances).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Connection, and_, func, select
from sqlalchemy.orm import Session

from ..catalog.db import Catalog
from ..catalog.models import CloudAccount, Instance, Job, JobItem, Plan, PlanDestination, RestorePoint, RestorePointCopy
from ..catalog.types import ElapsedSeconds, utcnow
from ..domain.jobs import TERMINAL, ItemStatus, JobType
from ..domain.schedule import UNSCHEDULABLE, Schedule, protection
from . import notifications

log = logging.getLogger("pgvault.metrics")


@dataclass
class ProcessState:
    """What only this process knows: its worker slots and its scheduler's last tick."""

    worker_slots: Callable[[], tuple[int, int]] = lambda: (0, 0)  # (busy, total)
    scheduler_lag: Callable[[], float | None] = lambda: None  # seconds the last tick's due backups waited


@dataclass(eq=False)  # (the registry keys collectors by identity)
class FleetCollector(Collector):
    catalog: Catalog
    process: ProcessState = field(default_factory=ProcessState)
    clock: Callable[[], dt.datetime] = utcnow

    def collect(self) -> Iterator[Any]:
        busy, total = self.process.worker_slots()
        slots = GaugeMetricFamily("pgvault_worker_slots", "Job slots of this process's worker pool", labels=["state"])
        slots.add_metric(["busy"], busy)
        slots.add_metric(["total"], total)
        yield slots
        lag = self.process.scheduler_lag()
        if lag is not None:
            yield GaugeMetricFamily("pgvault_scheduler_lag_seconds",
                                    "How late the scheduler's last tick queued the backups that were due", value=lag)
        up = GaugeMetricFamily("pgvault_catalog_up", "Whether the catalog answered this scrape (1) or not (0)")
        try:
            with self.catalog.transaction(write=False) as s:
                families = list(fleet_metrics(s, self.clock()))
        except Exception:
            log.exception("the catalog could not be read for /metrics")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families


_INSTANCE = ["instance", "cloud_account"]


def fleet_metrics(s: Session | Connection, now: dt.datetime) -> Iterator[Any]:
    """The catalog's metric families at ``now``."""
    last_good = (select(RestorePoint.instance_id, func.max(RestorePoint.id).label("point_id"))
                 .group_by(RestorePoint.instance_id).subquery())
    rows = s.execute(
        select(Instance.name, CloudAccount.name, Instance.created_at, Plan.schedule_kind,
               Plan.rpo_minutes, Plan.cron, Plan.timezone, Plan.window_start, Plan.window_end,
               Job.started_at, RestorePoint.total_bytes, RestorePoint.drill_status, RestorePoint.drill_at)
        .join(CloudAccount, CloudAccount.id == Instance.cloud_account_id).join(Plan, Plan.id == Instance.plan_id)
        .outerjoin(last_good, last_good.c.instance_id == Instance.id)
        .outerjoin(RestorePoint, RestorePoint.id == last_good.c.point_id)
        .outerjoin(Job, Job.id == RestorePoint.job_id)
        .where(Instance.deleted_at.is_(None), Instance.id != 1)).all()
    last_time = GaugeMetricFamily("pgvault_instance_last_backup_timestamp_seconds",
                                  "Start of the instance's newest backup that made a restore point", labels=_INSTANCE)
    last_size = GaugeMetricFamily("pgvault_instance_last_backup_size_bytes",
                                  "Stored size of that restore point", labels=_INSTANCE)
    rpo = GaugeMetricFamily("pgvault_instance_rpo_seconds",
                            "The recovery point objective its plan promises (cron plans: the gap between two "
                            "slots after the last good backup)", labels=_INSTANCE)
    breached = GaugeMetricFamily("pgvault_instance_rpo_breached",
                                 "1 when the instance has no restore point within its plan's RPO", labels=_INSTANCE)
    drill = GaugeMetricFamily("pgvault_instance_last_drill_passed",
                              "1 when the newest restore point's drill passed, 0 when it failed", labels=_INSTANCE)
    drill_time = GaugeMetricFamily("pgvault_instance_last_drill_timestamp_seconds",
                                   "When that drill ran", labels=_INSTANCE)
    live = 0
    for (name, account, created, kind, rpo_minutes, cron, zone, w_start, w_end, started, size,
         drill_status, drill_at) in rows:
        live += 1
        labels = [name, account]
        schedule = Schedule(kind, rpo_minutes, cron, zone, w_start, w_end)
        if started is not None:
            last_time.add_metric(labels, started.timestamp())
            last_size.add_metric(labels, size or 0)
        try:
            standing = protection(schedule, created, started, now)
        except UNSCHEDULABLE:
            continue
        rpo.add_metric(labels, standing.window.total_seconds())
        breached.add_metric(labels, 1 if standing.breached else 0)
        if drill_status is not None and drill_at is not None:
            drill.add_metric(labels, 1 if drill_status == "Passed" else 0)
            drill_time.add_metric(labels, drill_at.timestamp())
    yield GaugeMetricFamily("pgvault_instances", "Live registered instances", value=live)
    yield from (last_time, last_size, rpo, breached, drill, drill_time)
    yield _databases(s, last_good)
    yield from _jobs(s)
    yield _destinations(s)
    yield _notifications(s)


def _databases(s: Session | Connection, last_good: Any) -> GaugeMetricFamily:
    size = GaugeMetricFamily("pgvault_database_last_backup_size_bytes",
                             "Each database's stored dump in its instance's newest restore point",
                             labels=["instance", "database"])
    rows = s.execute(
        select(Instance.name, JobItem.name, JobItem.bytes)
        .join(RestorePoint, RestorePoint.instance_id == Instance.id)
        .join(last_good, last_good.c.point_id == RestorePoint.id)
        .join(JobItem, and_(JobItem.job_id == RestorePoint.job_id, JobItem.kind == "database",
                            JobItem.status == ItemStatus.COMPLETED))
        .where(Instance.deleted_at.is_(None)))
    for instance, database, nbytes in rows:
        size.add_metric([instance, database], nbytes or 0)
    return size


_jobs_t = Job.__table__


def _jobs(s: Session | Connection) -> Iterator[Any]:
    ended = CounterMetricFamily("pgvault_jobs", "Jobs that ended, by type and final status",
                                labels=["type", "status"])
    seconds = CounterMetricFamily("pgvault_job_duration_seconds", "Total run time of the jobs that ended",
                                  labels=["type", "status"])
    active = GaugeMetricFamily("pgvault_jobs_active", "Jobs waiting or running", labels=["type", "status"])
    rows = s.execute(select(Job.job_type, Job.status, func.count(),
                            func.coalesce(func.sum(ElapsedSeconds(_jobs_t.c.started_at, _jobs_t.c.ended_at)), 0))
                     .group_by(Job.job_type, Job.status))
    for job_type, status, count, total in rows:
        labels = [str(JobType(job_type)), str(status)]
        if status in TERMINAL:
            ended.add_metric(labels, count)
            seconds.add_metric(labels, float(total or 0))
        else:
            active.add_metric(labels, count)
    yield from (ended, seconds, active)


def _destinations(s: Session | Connection) -> GaugeMetricFamily:
    stored = GaugeMetricFamily("pgvault_destination_stored_bytes",
                               "Bytes of the restore points each plan destination holds",
                               labels=["plan", "destination", "kind"])
    rows = s.execute(
        select(Plan.name, PlanDestination.name, PlanDestination.kind, func.sum(RestorePoint.total_bytes))
        .join(PlanDestination, PlanDestination.plan_id == Plan.id)
        .join(RestorePointCopy, and_(RestorePointCopy.destination_id == PlanDestination.id,
                                     RestorePointCopy.state == "present"))
        .join(RestorePoint, RestorePoint.id == RestorePointCopy.restore_point_id)
        .group_by(Plan.name, PlanDestination.name, PlanDestination.kind))
    for plan, dest, kind, total in rows:
        stored.add_metric([plan, dest, kind], float(total or 0))
    return stored


def _notifications(s: Session | Connection) -> CounterMetricFamily:
    """Counted on each target as the notifier records outcomes (services/notifications.py): ``sent``,
    ``failed`` (an attempt that failed; it is retried), ``abandoned`` (given up after every attempt),
    ``dropped`` (the oldest beyond the backlog)."""
    total = CounterMetricFamily("pgvault_notifications", "Notification deliveries by target and outcome",
                                labels=["target", "outcome"])
    for name, sent, failed, abandoned, dropped in notifications.outcome_counts(s):
        for outcome, n in (("sent", sent), ("failed", failed), ("abandoned", abandoned), ("dropped", dropped)):
            total.add_metric([name, outcome], n)
    return total
