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
has gone. A sweep lists the backup folders the destinations hold: one that a crashed or failed run of a
backup of this catalog left (``leftover``) is removed; any other that no restore point knows is reported
(a stray).
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


_BACKUP_FOLDER = re.compile(r"^instance-(\d+)/(\d{8}T\d{6}Z)-job-(\d+)$")
STAMP = "%Y%m%dT%H%M%SZ"


def backup_prefix(instance_id: int, job_id: int, run_started: dt.datetime) -> str:
    """The folder of one run of a backup job, ``instance-<id>/<UTC start of the run>-job-<id>``. Every run
    (a job reaped and claimed again runs again) has its own, so a worker that lost its job and is still
    stopping never writes or removes the files of the run that replaced it."""
    return f"instance-{instance_id}/{run_started.astimezone(dt.UTC).strftime(STAMP)}-job-{job_id}"


@dataclass(frozen=True)
class FolderJob:
    """What the catalog says of the job a backup folder's name gives."""

    instance_id: int
    is_backup: bool
    finished: bool
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    restore_point_prefix: str | None  # the folder its restore point is in, if it has one


def leftover(folder: str, job: FolderJob | None, now: dt.datetime, grace: dt.timedelta) -> bool:
    """Whether a backup folder is what a run of ``job`` left without a restore point, and no run of it can
    write there any more, so it may go: ``written_out`` holds, and its restore point, if any, is another
    folder (an earlier run's)."""
    return written_out(folder, job, now, grace) and job is not None and folder != job.restore_point_prefix


def written_out(folder: str, job: FolderJob | None, now: dt.datetime, grace: dt.timedelta) -> bool:
    """Whether no run can write into a backup folder any more: the folder's name gives this instance, the
    job and a start within the job's life (so it is this catalog's job, not another's in a shared bucket);
    the job is a backup that finished at least ``grace`` ago (a worker stops a job whose lease it could not
    renew, so none of its runs writes past its end). Whatever is still unfinished in such a folder (an S3
    multipart upload of a killed run) is dead, even in a restore point's folder."""
    m = _BACKUP_FOLDER.match(folder)
    if m is None or job is None or not job.is_backup or not job.finished:
        return False
    if job.started_at is None or job.ended_at is None or int(m.group(1)) != job.instance_id:
        return False
    started = dt.datetime.strptime(m.group(2), STAMP).replace(tzinfo=dt.UTC)
    if not job.started_at.replace(microsecond=0) <= started <= job.ended_at:
        return False
    return job.ended_at + grace <= now


def stale_upload(key: str, initiated: dt.datetime, job: FolderJob | None, now: dt.datetime,
                 grace: dt.timedelta) -> bool:
    """Whether an unfinished upload (``key`` under the backup prefix, ``instance-<id>/<run>/...``) may be
    aborted: its run folder is ``written_out`` and, whatever the folder says, the upload was started at
    least ``grace`` ago (a clock between node and store that disagree, or a job id reused by another
    catalog, never costs a live upload more than the grace)."""
    return key.count("/") >= 2 and written_out(upload_folder(key), job, now, grace) and initiated + grace <= now


def upload_folder(key: str) -> str:
    """The run folder an upload's key is in (``instance-<id>/<run>``)."""
    return "/".join(key.split("/")[:2])


def folder_job_id(folder: str) -> int | None:
    m = _BACKUP_FOLDER.match(folder)
    return int(m.group(3)) if m else None
