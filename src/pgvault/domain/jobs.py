"""The job lifecycle: its states, its types, and the only functions that move a job from one state to
another. No SQLAlchemy here: the catalog maps its columns to these enums, and ``services/jobs.py`` applies
these transitions to catalog rows inside its transactions.

::

                 claim                          end (Completed | Completed w/ one or more errors | Failed | Killed)
      Waiting ----------> Running ----------------------------------------------------------> (terminal)
        |  ^                 |
        |  +-----------------+  requeue: a shutdown interrupted it, or its worker is gone (reap: its lease ran
        |                       out, or its node restarted; at most MAX_ATTEMPTS claims, then Failed; Killed if
        |                       a kill was asked)
        +---------------------> Killed  (kill asked before it started)

A terminal state is final. When a job ends, its items that had not ended end with it (``end``), so a job
and its items never disagree (a Failed job with a database still Running); and a backup that ends Failed
or Killed keeps none of its files, so its items that had completed say so too (no Completed database
pointing at a file that was removed).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable
from typing import Protocol


class JobStatus(enum.StrEnum):
    """Command Center's job states; the string is what the API shows."""

    WAITING = "Waiting"
    RUNNING = "Running"
    COMPLETED = "Completed"
    COMPLETED_WITH_ERRORS = "Completed w/ one or more errors"
    FAILED = "Failed"
    KILLED = "Killed"

    @property
    def finished(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS, JobStatus.FAILED, JobStatus.KILLED})
ACTIVE = (JobStatus.WAITING, JobStatus.RUNNING)  # a job not finished yet


class ItemStatus(enum.StrEnum):
    """The state of one thing a job does (a database, the globals, a file): a job's states, and Skipped (a
    database the login may not connect to, globals a managed service denies)."""

    WAITING = "Waiting"
    RUNNING = "Running"
    COMPLETED = "Completed"
    COMPLETED_WITH_ERRORS = "Completed w/ one or more errors"
    FAILED = "Failed"
    KILLED = "Killed"
    SKIPPED = "Skipped"


class JobType(enum.StrEnum):
    BACKUP = "Backup"
    RESTORE = "Restore"
    VERIFY = "Verify"
    DATA_AGING = "DataAging"


READERS = (JobType.RESTORE, JobType.VERIFY)  # jobs that read a restore point (Data Aging spares their points)

# Phases a job passes through whatever its type (each engine names its own working phases: "Backup",
# "Restore", "Verify files", ...).
QUEUED, STARTING = "Queued", "Starting"
MAX_ATTEMPTS = 2  # claims of one job: a job whose worker stopped responding twice is failed


class InvalidTransition(Exception):
    """A move the lifecycle does not have (a bug in the caller)."""


class JobState(Protocol):
    """What the lifecycle reads and writes of a job (``catalog.models.Job`` has it)."""

    job_type: JobType
    status: JobStatus
    phase: str
    percent_complete: int
    message: str
    attempts: int
    kill_requested: bool
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    updated_at: dt.datetime
    lease_owner: str | None
    lease_expires_at: dt.datetime | None


class ItemState(Protocol):
    status: ItemStatus
    error: str | None
    location: str | None


def _require(job: JobState, *allowed: JobStatus) -> None:
    if job.status not in allowed:
        raise InvalidTransition(f"a {job.status} job cannot move on this way (needs {', '.join(allowed)})")


def claim(job: JobState, lease: str, now: dt.datetime, lease_seconds: int) -> None:
    """Waiting -> Running, held by ``lease`` until ``now + lease_seconds`` (renewed by its worker)."""
    _require(job, JobStatus.WAITING)
    job.status, job.phase = JobStatus.RUNNING, STARTING
    job.attempts += 1
    job.started_at = job.started_at or now
    job.updated_at = now
    job.lease_owner, job.lease_expires_at = lease, now + dt.timedelta(seconds=lease_seconds)


def end(job: JobState, items: Iterable[ItemState], status: JobStatus, message: str, now: dt.datetime) -> None:
    """Running (or, for a kill, Waiting) -> a terminal state; items that had not ended end with it."""
    status = JobStatus(status)
    if not status.finished:
        raise InvalidTransition(f"{status} is not an end state")
    _require(job, JobStatus.RUNNING, *((JobStatus.WAITING,) if status == JobStatus.KILLED else ()))
    job.status = status
    job.phase = status.value if status in (JobStatus.KILLED, JobStatus.FAILED) else JobStatus.COMPLETED.value
    if status in (JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS):
        job.percent_complete = 100
    job.message = message
    job.ended_at = job.updated_at = now
    job.lease_owner = job.lease_expires_at = None
    ended = ItemStatus.KILLED if status == JobStatus.KILLED else ItemStatus.FAILED
    discarded = job.job_type == JobType.BACKUP and status in (JobStatus.FAILED, JobStatus.KILLED)
    for item in items:
        if item.status in (ItemStatus.WAITING, ItemStatus.RUNNING):
            item.status = ended
            item.error = item.error or ("killed" if status == JobStatus.KILLED else message)
        elif discarded and item.status in (ItemStatus.COMPLETED, ItemStatus.COMPLETED_WITH_ERRORS):
            # A backup is a restore point or nothing: its files go with it (at once, or by Data Aging).
            item.status = ended
            item.error = f"not kept: the backup ended {status.value}: {message}"
            item.location = None


def requeue(job: JobState, message: str, now: dt.datetime, *, count_attempt: bool) -> None:
    """Running -> Waiting, to run again from the start (the caller drops its items). A shutdown that
    interrupted it does not count as an attempt; a worker that stopped responding does."""
    _require(job, JobStatus.RUNNING)
    job.status, job.phase = JobStatus.WAITING, QUEUED
    if not count_attempt:
        job.attempts = max(0, job.attempts - 1)
    job.message = message
    job.updated_at = now
    job.lease_owner = job.lease_expires_at = None


LEASE_RAN_OUT = "its worker stopped responding"
NODE_RESTARTED = "its node restarted while it ran (the process was stopped without a shutdown)"


def reap(job: JobState, items: Iterable[ItemState], now: dt.datetime, cause: str = LEASE_RAN_OUT) -> bool:
    """A Running job whose worker is gone (``cause``: its lease ran out, or its node came back without it):
    Killed if a kill was asked, Failed after ``MAX_ATTEMPTS`` claims, else back to Waiting. Returns whether
    it was requeued (its items are dropped)."""
    _require(job, JobStatus.RUNNING)
    if job.kill_requested:
        end(job, items, JobStatus.KILLED, f"killed; {cause}, before it could clean up", now)
        return False
    if job.attempts >= MAX_ATTEMPTS:
        end(job, items, JobStatus.FAILED,
            f"its worker was lost {job.attempts} times, the last time because {cause}; not tried again", now)
        return False
    requeue(job, f"requeued: {cause}", now, count_attempt=True)
    return True


def request_kill(job: JobState, now: dt.datetime) -> None:
    """Ask a job to stop: a Waiting job ends Killed at once; a Running one is stopped by its worker."""
    if JobStatus(job.status).finished:
        raise InvalidTransition(f"the job has already finished ({job.status})")
    if job.status == JobStatus.WAITING:
        end(job, (), JobStatus.KILLED, "killed before it started", now)
    job.kill_requested = True
    job.updated_at = now


def overall(statuses: Iterable[ItemStatus | JobStatus]) -> JobStatus:
    """A job's status from its parts': Completed when all completed, Failed when all failed, else
    Completed w/ one or more errors."""
    seen = [JobStatus(s) if s != ItemStatus.SKIPPED else JobStatus.COMPLETED_WITH_ERRORS for s in statuses]
    if all(s == JobStatus.COMPLETED for s in seen):
        return JobStatus.COMPLETED
    if seen and all(s == JobStatus.FAILED for s in seen):
        return JobStatus.FAILED
    return JobStatus.COMPLETED_WITH_ERRORS
