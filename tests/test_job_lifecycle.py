"""The job lifecycle (domain/jobs.py) on plain objects: which moves exist, and that a job and its items
always agree when it ends."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pytest

from pgvault.domain import jobs as lifecycle
from pgvault.domain.jobs import ItemStatus, JobStatus, JobType

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


@dataclass
class FakeJob:
    job_type: JobType = JobType.RESTORE
    status: JobStatus = JobStatus.WAITING
    phase: str = "Queued"
    percent_complete: int = 0
    message: str = ""
    attempts: int = 0
    kill_requested: bool = False
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    updated_at: dt.datetime = NOW
    lease_owner: str | None = None
    lease_expires_at: dt.datetime | None = None
    items: list[FakeItem] = field(default_factory=list)


@dataclass
class FakeItem:
    status: ItemStatus = ItemStatus.WAITING
    error: str | None = None
    location: str | None = None


def running(**kw) -> FakeJob:
    job = FakeJob(**kw)
    lifecycle.claim(job, "node:1", NOW, 60)
    return job


def test_claim_gives_a_lease_and_counts_an_attempt():
    job = running()
    assert (job.status, job.phase, job.attempts) == (JobStatus.RUNNING, "Starting", 1)
    assert job.lease_owner == "node:1" and job.lease_expires_at == NOW + dt.timedelta(seconds=60)
    with pytest.raises(lifecycle.InvalidTransition):
        lifecycle.claim(job, "node:2", NOW, 60)  # one claim at a time


@pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.KILLED])
def test_a_job_that_ends_ends_its_unfinished_items_with_it(status):
    job = running(items=[FakeItem(ItemStatus.COMPLETED), FakeItem(ItemStatus.RUNNING), FakeItem()])
    lifecycle.end(job, job.items, status, "disk full", NOW)
    assert job.status == status and job.lease_owner is None and job.ended_at == NOW
    assert [i.status for i in job.items] == [ItemStatus.COMPLETED, ItemStatus(status), ItemStatus(status)]
    assert job.items[1].error == ("killed" if status == JobStatus.KILLED else "disk full")


@pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.KILLED])
def test_a_backup_that_ends_without_a_restore_point_keeps_none_of_its_files(status):
    """A backup is a restore point or nothing (its files are removed): a database it had dumped does not
    stay Completed with the location of a file that is gone."""
    items = [FakeItem(ItemStatus.COMPLETED, location="file:///b/000-app.dump.zst"), FakeItem(ItemStatus.SKIPPED),
             FakeItem(ItemStatus.FAILED, "permission denied"), FakeItem(ItemStatus.RUNNING)]
    job = running(job_type=JobType.BACKUP, items=items)
    lifecycle.end(job, job.items, status, "the manifest could not be written: disk full", NOW)
    done = ItemStatus(status)
    assert [i.status for i in items] == [done, ItemStatus.SKIPPED, ItemStatus.FAILED, done]
    assert items[0].location is None and "not kept" in items[0].error and "disk full" in items[0].error
    assert items[2].error == "permission denied"

    kept = running(job_type=JobType.BACKUP, items=[FakeItem(ItemStatus.COMPLETED, location="file:///b/x")])
    lifecycle.end(kept, kept.items, JobStatus.COMPLETED_WITH_ERRORS, "failed databases: y", NOW)
    assert kept.items[0].status == ItemStatus.COMPLETED and kept.items[0].location == "file:///b/x"


def test_terminal_states_are_final():
    job = running()
    lifecycle.end(job, [], JobStatus.COMPLETED, "ok", NOW)
    assert job.percent_complete == 100 and job.phase == "Completed"
    for move in (lambda: lifecycle.end(job, [], JobStatus.FAILED, "x", NOW),
                 lambda: lifecycle.requeue(job, "x", NOW, count_attempt=True),
                 lambda: lifecycle.request_kill(job, NOW),
                 lambda: lifecycle.claim(job, "n", NOW, 60)):
        with pytest.raises(lifecycle.InvalidTransition):
            move()
    with pytest.raises(lifecycle.InvalidTransition):
        lifecycle.end(running(), [], JobStatus.RUNNING, "not an end", NOW)


def test_a_waiting_job_can_only_be_killed_or_claimed():
    job = FakeJob()
    with pytest.raises(lifecycle.InvalidTransition):
        lifecycle.end(job, [], JobStatus.COMPLETED, "never ran", NOW)
    lifecycle.request_kill(job, NOW)
    assert job.status == JobStatus.KILLED and job.kill_requested and job.message == "killed before it started"


def test_a_running_job_asked_to_stop_keeps_running_until_its_worker_stops_it():
    job = running()
    lifecycle.request_kill(job, NOW)
    assert job.status == JobStatus.RUNNING and job.kill_requested


def test_reaping_requeues_once_then_fails_and_honours_a_kill():
    job = running(job_type=JobType.BACKUP, items=[FakeItem(ItemStatus.RUNNING)])
    assert lifecycle.reap(job, job.items, NOW) is True
    assert job.status == JobStatus.WAITING and job.attempts == 1 and job.lease_owner is None
    assert job.message == "requeued: its worker stopped responding"
    lifecycle.claim(job, "node:2", NOW, 60)
    job.items = [FakeItem(ItemStatus.COMPLETED, location="s3://b/x"), FakeItem(ItemStatus.RUNNING)]
    assert lifecycle.reap(job, job.items, NOW, lifecycle.NODE_RESTARTED) is False
    assert job.status == JobStatus.FAILED and "2 times" in job.message and "node restarted" in job.message
    assert [i.status for i in job.items] == [ItemStatus.FAILED, ItemStatus.FAILED]  # the second crash's items
    assert job.items[0].location is None

    killed = running(kill_requested=True)
    assert lifecycle.reap(killed, [], NOW) is False and killed.status == JobStatus.KILLED
    with pytest.raises(lifecycle.InvalidTransition):
        lifecycle.reap(killed, [], NOW)  # only a running job has a worker to lose


def test_a_shutdown_requeue_does_not_count_as_an_attempt():
    job = running()
    lifecycle.requeue(job, "interrupted by a shutdown", NOW, count_attempt=False)
    assert job.status == JobStatus.WAITING and job.attempts == 0


@pytest.mark.parametrize(("parts", "expected"), [
    ([JobStatus.COMPLETED, JobStatus.COMPLETED], JobStatus.COMPLETED),
    ([JobStatus.FAILED, JobStatus.FAILED], JobStatus.FAILED),
    ([JobStatus.COMPLETED, JobStatus.FAILED], JobStatus.COMPLETED_WITH_ERRORS),
    ([JobStatus.COMPLETED, ItemStatus.SKIPPED], JobStatus.COMPLETED_WITH_ERRORS),
    ([JobStatus.COMPLETED_WITH_ERRORS], JobStatus.COMPLETED_WITH_ERRORS),
])
def test_overall_status_from_the_parts(parts, expected):
    assert lifecycle.overall(parts) == expected


def test_the_catalog_refuses_a_state_the_lifecycle_does_not_have(catalog):
    from sqlalchemy import text
    from sqlalchemy.exc import StatementError

    from pgvault.catalog.models import Job

    bad = pytest.raises(StatementError, match="'Almost done' is not a valid JobStatus")
    with bad, catalog.transaction(write=True) as s:
        s.add(Job(job_type="Backup", status="Almost done", instance_id=1, subclient_id=1))
        s.flush()
    with catalog.transaction(write=True) as s:
        assert s.execute(text("select count(*) from jobs")).scalar() == 0
