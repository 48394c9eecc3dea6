"""Data aging: which restore point copies a destination may drop, and dropping them crash-safely.

The rules, per destination (each copy has its destination's retention in days):
- a copy younger than the retention stays;
- the newest ``keep_min`` good restore points stay, however old (a backup that stopped working never
  ages the last good copies away);
- GFS: the newest good point of each of the ``daily`` most recent days that have one stays, likewise for
  ISO weeks and months (days, weeks and months in the plan's time zone);
- a point that a waiting or running restore or verification reads stays;
- the rest goes, oldest first.
"Good" means the backup completed without errors and no verification found it damaged.

Deleting is crash-safe: a copy is first marked ``deleting`` (committed), then its objects go, then its
row; a run that finds ``deleting`` copies finishes them first, and a restore point goes when its last copy
has gone. A sweep lists what the destinations hold and reports prefixes no copy row points at (strays).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class PointFacts:
    id: int
    time: dt.datetime  # when the backup started (aware)
    good: bool
    in_use: bool = False
    days: int | None = None  # this copy's own retention (it keeps the rule it was written under)


@dataclass(frozen=True)
class Rules:
    days: int
    keep_min: int = 1
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    timezone: str = "UTC"


def _newest_per_period(points: list[PointFacts], periods: int, key: object) -> set[int]:
    if periods <= 0:
        return set()
    kept: dict[object, PointFacts] = {}
    for p in sorted(points, key=lambda p: p.time, reverse=True):
        k = key(p)  # type: ignore[operator]
        if k not in kept:
            if len(kept) == periods:
                break
            kept[k] = p
    return {p.id for p in kept.values()}


def keep_set(points: Iterable[PointFacts], rules: Rules, now: dt.datetime) -> set[int]:
    points = list(points)
    tz = ZoneInfo(rules.timezone)
    keep = {p.id for p in points if p.time >= now - dt.timedelta(days=p.days or rules.days) or p.in_use}
    good = sorted((p for p in points if p.good), key=lambda p: p.time, reverse=True)
    keep |= {p.id for p in good[: rules.keep_min]}
    keep |= _newest_per_period(good, rules.daily, lambda p: p.time.astimezone(tz).date())
    keep |= _newest_per_period(good, rules.weekly, lambda p: p.time.astimezone(tz).isocalendar()[:2])
    keep |= _newest_per_period(good, rules.monthly, lambda p: (p.time.astimezone(tz).year, p.time.astimezone(tz).month))
    return keep


def expired(points: Iterable[PointFacts], rules: Rules, now: dt.datetime) -> list[int]:
    """The ids to drop, oldest first."""
    points = list(points)
    keep = keep_set(points, rules, now)
    return [p.id for p in sorted(points, key=lambda p: p.time) if p.id not in keep]


_BACKUP_PREFIX = re.compile(r"^(instance-\d+/\d{8}T\d{6}Z-job-(\d+))/")
STAMP = "%Y%m%dT%H%M%SZ"


def backup_prefix(instance_id: int, job_id: int, run_started: dt.datetime) -> str:
    """The folder of one run of a backup job, ``instance-<id>/<UTC start of the run>-job-<id>``. Every run
    (a job reaped and claimed again runs again) has its own, so a worker that lost its job and is still
    stopping never writes or removes the files of the run that replaced it."""
    return f"instance-{instance_id}/{run_started.astimezone(dt.UTC).strftime(STAMP)}-job-{job_id}"


def backup_prefixes(keys: Iterable[str]) -> dict[str, int]:
    """The backup folders among stored keys, with the job that wrote each."""
    out: dict[str, int] = {}
    for key in keys:
        m = _BACKUP_PREFIX.match(key)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out
