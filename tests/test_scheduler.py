"""The scheduler with a controlled clock: due times, catch-up after downtime, no overlap, cron in time
zones across DST changes, windows, plan moves; concurrency on both catalog dialects; and the wiring
inside a real ``pgvault serve``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from tests.support.flows import register
from tests.support.service import Service

from pgvault.catalog.db import Catalog
from pgvault.catalog.models import Backupset, CloudAccount, Instance, Job, JobStatus, Plan, Subclient
from pgvault.domain.schedule import Schedule, in_window, next_due, runs_at
from pgvault.errors import NotFound
from pgvault.scheduler import Scheduler, check_instance
from pgvault.services import plans

UTC = dt.UTC
BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
MIN = dt.timedelta(minutes=1)


def plan(**kw: Any) -> Schedule:
    values: dict[str, Any] = {"schedule_kind": "rpo", "rpo_minutes": 60, "cron": None, "timezone": "UTC",
                              "window_start": None, "window_end": None}
    values.update(kw)
    if values["cron"]:
        values["schedule_kind"] = "cron"
    return Schedule(**values)


def local(when: dt.datetime, zone: ZoneInfo) -> str:
    return when.astimezone(zone).strftime("%Y-%m-%d %H:%M%z")


# -- pure timing -------------------------------------------------------------------------------------------

def test_rpo_is_due_its_minutes_after_the_last_start_or_the_registration():
    p = plan(rpo_minutes=90)
    assert next_due(p, T0, T0 - dt.timedelta(days=9)) == T0 + 90 * MIN
    assert next_due(p, None, T0) == T0 + 90 * MIN  # never backed up: from the registration
    with pytest.raises(ValueError, match="aware"):
        next_due(p, dt.datetime(2026, 6, 1, 12), T0)


def test_rpo_counts_real_time_across_a_dst_change():
    p = plan(rpo_minutes=60, timezone="Europe/Berlin")
    start = dt.datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # 01:30 CET; the clock jumps at 01:00 UTC
    assert next_due(p, start, start) == start + 60 * MIN
    assert local(start + 60 * MIN, BERLIN) == "2026-03-29 03:30+0200"


def test_slots_that_fall_while_the_last_backup_ran_are_skipped_in_its_favour():
    p = plan(rpo_minutes=60)
    # ran 90 minutes: the slot at +60 fell while it ran; the next is +120, not straight after its end
    assert next_due(p, T0, T0, last_backup_end=T0 + 90 * MIN) == T0 + 120 * MIN
    assert next_due(p, T0, T0, last_backup_end=T0 + 120 * MIN) == T0 + 120 * MIN
    assert next_due(p, T0, T0, last_backup_end=T0 + 5 * MIN) == T0 + 60 * MIN
    c = plan(cron="0 2 * * *")
    start = dt.datetime(2026, 6, 1, 1, 50, tzinfo=UTC)
    assert next_due(c, start, start, last_backup_end=start + 20 * MIN) == dt.datetime(2026, 6, 2, 2, 0, tzinfo=UTC)
    assert next_due(c, start, start, last_backup_end=start + 5 * MIN) == dt.datetime(2026, 6, 1, 2, 0, tzinfo=UTC)


def daily_runs(p: Plan, zone: ZoneInfo, first: dt.datetime, last: dt.datetime) -> list[dt.datetime]:
    """Backups as the scheduler would start them: each a few seconds after it is due, lasting a minute."""
    runs: list[dt.datetime] = []
    start: dt.datetime | None = None
    while True:
        due = next_due(p, start, first, last_backup_end=start + MIN if start else None)
        if due > last:
            return runs
        runs.append(due)
        start = due + dt.timedelta(seconds=3)


@pytest.mark.parametrize(("zone", "expr", "day", "when"), [
    # spring forward: 02:30 does not exist; it runs once, an hour later on the wall clock (24 h after the day before)
    (BERLIN, "30 2 * * *", dt.date(2026, 3, 29), "2026-03-29 03:30+0200"),
    (NEW_YORK, "30 2 * * *", dt.date(2026, 3, 8), "2026-03-08 03:30-0400"),
    # fall back: 02:30 (Berlin), 01:30 (New York) happen twice; it runs once, at the first
    (BERLIN, "30 2 * * *", dt.date(2026, 10, 25), "2026-10-25 02:30+0200"),
    (NEW_YORK, "30 1 * * *", dt.date(2026, 11, 1), "2026-11-01 01:30-0400"),
])
def test_a_daily_cron_runs_once_on_dst_days(zone, expr, day, when):
    p = plan(cron=expr, timezone=str(zone))
    first = dt.datetime.combine(day - dt.timedelta(days=3), dt.time(12), tzinfo=zone)
    runs = daily_runs(p, zone, first, first + dt.timedelta(days=6))
    per_day = Counter(r.astimezone(zone).date() for r in runs)
    assert len(runs) == 6 and set(per_day.values()) == {1}, [local(r, zone) for r in runs]
    assert [local(r, zone) for r in runs if r.astimezone(zone).date() == day] == [when]
    others = {r.astimezone(zone).strftime("%H:%M") for r in runs if r.astimezone(zone).date() != day}
    assert others == {expr.split()[1].zfill(2) + ":" + expr.split()[0]}


@pytest.mark.parametrize(("zone", "day", "hours"), [
    (BERLIN, dt.date(2026, 3, 29), 23), (BERLIN, dt.date(2026, 10, 25), 25),
    (NEW_YORK, dt.date(2026, 3, 8), 23), (NEW_YORK, dt.date(2026, 11, 1), 25),
])
def test_an_hourly_cron_stays_hourly_across_dst_changes(zone, day, hours):
    p = plan(cron="0 * * * *", timezone=str(zone))
    first = dt.datetime.combine(day, dt.time(0), tzinfo=zone) - dt.timedelta(seconds=1)
    last = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=zone) - dt.timedelta(seconds=1)
    runs = daily_runs(p, zone, first, last)
    assert len(runs) == hours, [local(r, zone) for r in runs]
    assert {b - a for a, b in itertools.pairwise(runs)} == {dt.timedelta(hours=1)}


def test_cron_follows_the_plan_time_zone():
    start = dt.datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    assert next_due(plan(cron="0 2 * * *", timezone="Asia/Shanghai"), start, start) == \
        dt.datetime(2026, 1, 10, 18, 0, tzinfo=UTC)
    assert next_due(plan(cron="0 2 * * *", timezone="America/New_York"), start, start) == \
        dt.datetime(2026, 1, 11, 7, 0, tzinfo=UTC)


def test_a_cron_that_never_fires_is_an_error_not_a_hang():
    with pytest.raises(ValueError):
        next_due(plan(cron="0 0 30 2 *"), T0, T0)


def at(zone: ZoneInfo, day: int, hh: int, mm: int = 0) -> dt.datetime:
    return dt.datetime(2026, 6, day, hh, mm, tzinfo=zone)


def test_a_window_across_midnight_moves_due_times_to_its_start():
    p = plan(rpo_minutes=60, timezone="Europe/Berlin", window_start="22:00", window_end="04:00")
    for inside in (at(BERLIN, 1, 22), at(BERLIN, 1, 23, 59), at(BERLIN, 2, 0), at(BERLIN, 2, 3, 59)):
        assert in_window(p, inside), inside
    for outside in (at(BERLIN, 2, 4), at(BERLIN, 2, 12), at(BERLIN, 2, 21, 59)):
        assert not in_window(p, outside), outside
    assert next_due(p, at(BERLIN, 1, 11), at(BERLIN, 1, 11)) == at(BERLIN, 1, 22)  # 12:00 -> 22:00
    assert next_due(p, at(BERLIN, 1, 22, 30), T0) == at(BERLIN, 1, 23, 30)  # inside: unchanged
    assert next_due(p, at(BERLIN, 2, 2, 30), T0) == at(BERLIN, 2, 3, 30)  # after midnight, inside
    assert next_due(p, at(BERLIN, 2, 3, 30), T0) == at(BERLIN, 2, 22)  # 04:30 is outside: tonight


def test_a_window_within_a_day_and_a_cron_outside_it():
    p = plan(cron="0 * * * *", timezone="America/New_York", window_start="01:00", window_end="05:00")
    assert next_due(p, dt.datetime(2026, 6, 1, 4, 10, tzinfo=NEW_YORK), T0) == at(NEW_YORK, 2, 1)
    assert next_due(p, dt.datetime(2026, 6, 1, 1, 10, tzinfo=NEW_YORK), T0) == at(NEW_YORK, 1, 2)
    assert in_window(plan(window_start="03:00", window_end="03:00"), T0)  # start == end: all day


def test_an_overdue_backup_waits_for_the_window():
    p = plan(rpo_minutes=60, timezone="Europe/Berlin", window_start="22:00", window_end="04:00")
    due = next_due(p, at(BERLIN, 1, 23), T0)  # 00:00 on the 2nd, inside
    assert runs_at(p, due, at(BERLIN, 5, 12)) == at(BERLIN, 5, 22)  # downtime until noon: tonight
    assert runs_at(p, due, at(BERLIN, 5, 23)) == at(BERLIN, 5, 23)  # inside: now
    assert runs_at(p, due, at(BERLIN, 1, 23, 30)) == due  # not yet due


# -- the scheduler on a catalog, with a clock of its own ---------------------------------------------------

@pytest.fixture()
def sqlite_catalog(tmp_path) -> Iterator[Catalog]:
    cat = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    cat.migrate()
    yield cat
    cat.dispose()


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class Fleet:
    """A catalog, a scheduler on a controlled clock, and the worker's part played by hand."""

    def __init__(self, cat: Catalog, now: dt.datetime) -> None:
        self.cat = cat
        self.clock = Clock(now)
        self.wakes = 0
        self.scheduler = Scheduler(cat, 30, self._wake, clock=self.clock)

    def _wake(self) -> None:
        self.wakes += 1

    def plan(self, name: str, **kw: Any) -> int:
        with self.cat.transaction(write=True) as s:
            p = Plan(name=name, name_key=name.lower(), **dataclasses.asdict(plan(**kw)))
            s.add(p)
            s.flush()
            return p.id

    def instance(self, plan_id: int, name: str = "i1", created: dt.datetime = T0) -> int:
        with self.cat.transaction(write=True) as s:
            account = s.scalar(select(CloudAccount).where(CloudAccount.name_key == "acc"))
            if account is None:
                account = CloudAccount(name="acc", name_key="acc")
                s.add(account)
            inst = Instance(cloud_account=account, plan_id=plan_id, name=name, name_key=name, host="h", port=5432,
                            maintenance_db="postgres", username="u", password_sealed=b"x", declared_version="18",
                            server_version="18.1", server_version_num=180001, created_at=created)
            s.add(inst)
            s.add(Subclient(instance=inst, backupset=Backupset(instance=inst)))
            s.flush()
            return inst.id

    def tick(self, at: dt.datetime | None = None) -> list[int]:
        if at is not None:
            self.clock.now = at
        return self.scheduler.tick()

    def job(self, instance_id: int, *, kind: str = "Backup", status: str = JobStatus.COMPLETED,
            start: dt.datetime, end: dt.datetime | None = None) -> int:
        with self.cat.transaction(write=True) as s:
            sub = s.scalar(select(Subclient).where(Subclient.instance_id == instance_id))
            assert sub is not None
            job = Job(job_type=kind, status=status, instance_id=instance_id, subclient_id=sub.id, created_at=start,
                      started_at=None if status == JobStatus.WAITING else start, ended_at=end, updated_at=start)
            s.add(job)
            s.flush()
            return job.id

    def run(self, job_id: int, start: dt.datetime, end: dt.datetime | None,
            status: str = JobStatus.COMPLETED) -> None:
        with self.cat.transaction(write=True) as s:
            job = s.get(Job, job_id)
            assert job is not None
            job.status, job.started_at, job.ended_at = status, start, end

    def jobs(self, instance_id: int) -> list[Job]:
        with self.cat.transaction(write=True) as s:
            return list(s.scalars(select(Job).where(Job.instance_id == instance_id).order_by(Job.id)))


def test_due_times_and_one_catch_up_after_downtime(catalog):
    f = Fleet(catalog, T0)
    iid = f.instance(f.plan("hourly", rpo_minutes=60))
    assert f.tick(T0 + 59 * MIN) == []  # registered at T0, never backed up: due at T0+60
    [job_id] = f.tick(T0 + 60 * MIN)
    assert f.wakes == 1
    [job] = f.jobs(iid)
    assert (job.trigger, job.status, job.created_at) == ("scheduled", "Waiting", T0 + 60 * MIN)
    assert f.tick(T0 + 61 * MIN) == []  # queued, not yet started: nothing more, and no warning
    f.run(job_id, T0 + 61 * MIN, T0 + 65 * MIN)
    assert f.tick(T0 + 120 * MIN) == []  # due 60 minutes after its start
    [second] = f.tick(T0 + 121 * MIN)
    f.run(second, T0 + 121 * MIN, T0 + 125 * MIN)

    down = T0 + dt.timedelta(days=3)  # three days of downtime: 70-odd slots missed, one backup
    [catch_up] = f.tick(down)
    assert f.tick(down + 30 * MIN) == []  # still waiting: nothing more
    f.run(catch_up, down + 31 * MIN, down + 40 * MIN)
    for minutes in range(41, 91, 7):  # the next slot is in the future again: no burst
        assert f.tick(down + minutes * MIN) == []
    assert f.tick(down + 91 * MIN) != []
    assert [j.trigger for j in f.jobs(iid)] == ["scheduled"] * 4
    assert all(not j.warnings for j in f.jobs(iid))


def test_a_due_backup_is_skipped_while_one_runs_and_the_running_job_says_so(catalog):
    f = Fleet(catalog, T0)
    iid = f.instance(f.plan("hourly", rpo_minutes=60))
    running = f.job(iid, status=JobStatus.RUNNING, start=T0)
    assert f.tick(T0 + 61 * MIN) == []
    assert f.tick(T0 + 62 * MIN) == []  # the same slot: one warning, not one per tick
    assert f.tick(T0 + 121 * MIN) == []  # the next slot too
    [job] = f.jobs(iid)
    assert job.id == running and job.warnings == [
        "scheduled backup due at 2026-06-01T13:00:00+00:00 (UTC) skipped: this job was already running",
        "scheduled backup due at 2026-06-01T14:00:00+00:00 (UTC) skipped: this job was already running",
    ]
    f.run(running, T0, T0 + 130 * MIN)
    assert f.tick(T0 + 131 * MIN) == []  # the skipped slots do not run after it: the next is T0+180
    assert f.tick(T0 + 179 * MIN) == []
    assert len(f.tick(T0 + 180 * MIN)) == 1
    assert f.wakes == 1


def test_a_waiting_backup_also_takes_the_slot(catalog):
    f = Fleet(catalog, T0)
    iid = f.instance(f.plan("hourly", rpo_minutes=60))
    waiting = f.job(iid, status=JobStatus.WAITING, start=T0)
    assert f.tick(T0 + 75 * MIN) == []
    [job] = f.jobs(iid)
    assert job.id == waiting and job.warnings == [
        "scheduled backup due at 2026-06-01T13:00:00+00:00 (UTC) skipped: this job was already waiting"]


def test_other_jobs_of_the_instance_do_not_skip_a_backup(catalog):
    f = Fleet(catalog, T0)
    iid = f.instance(f.plan("hourly", rpo_minutes=60))
    f.job(iid, start=T0, end=T0 + 5 * MIN)
    verify = f.job(iid, kind="Verify", status=JobStatus.RUNNING, start=T0 + 50 * MIN)
    [queued] = f.tick(T0 + 60 * MIN)  # queued; it waits for the verification (jobs.claim_next)
    jobs = {j.id: j for j in f.jobs(iid)}
    assert jobs[queued].status == "Waiting" and jobs[verify].warnings == []


def test_a_failed_backup_is_retried_at_the_next_slot_not_at_once(catalog):
    f = Fleet(catalog, T0)
    iid = f.instance(f.plan("hourly", rpo_minutes=60))
    f.job(iid, status=JobStatus.FAILED, start=T0, end=T0 + MIN)
    assert f.tick(T0 + 2 * MIN) == []
    assert len(f.tick(T0 + 60 * MIN)) == 1


def test_deleted_instances_are_not_scheduled(catalog):
    f = Fleet(catalog, T0)
    iid = f.instance(f.plan("hourly", rpo_minutes=60))
    with catalog.transaction(write=True) as s:
        inst = s.get(Instance, iid)
        assert inst is not None
        inst.deleted_at = T0 + MIN
    assert f.tick(T0 + dt.timedelta(days=2)) == []


def test_a_plan_that_cannot_be_followed_does_not_stop_the_others(catalog):
    f = Fleet(catalog, T0)
    never = f.instance(f.plan("feb-30", cron="0 0 30 2 *"), "never")
    hourly = f.instance(f.plan("hourly", rpo_minutes=60), "hourly")
    assert len(f.tick(T0 + 60 * MIN)) == 1
    assert (len(f.jobs(never)), len(f.jobs(hourly))) == (0, 1)


def test_moving_an_instance_to_another_plan_changes_its_next_due(catalog):
    f = Fleet(catalog, T0)
    f.plan("hourly", rpo_minutes=60)
    iid = f.instance(f.plan("daily", rpo_minutes=1440))
    f.job(iid, start=T0, end=T0 + 5 * MIN)
    assert f.tick(T0 + 90 * MIN) == []  # daily: not due
    with catalog.transaction(write=True) as s:
        inst = s.get(Instance, iid)
        assert inst is not None
        with pytest.raises(NotFound):
            plans.move_instance(s, inst, "no-such-plan")
        plans.move_instance(s, inst, "HOURLY")
    assert len(f.tick(T0 + 91 * MIN)) == 1  # hourly from the last backup's start: overdue, once


def test_a_cron_plan_in_berlin_runs_once_a_day_through_both_dst_changes(sqlite_catalog):
    f = Fleet(sqlite_catalog, T0)
    iid = f.instance(f.plan("nightly", cron="30 2 * * *", timezone="Europe/Berlin"),
                     created=dt.datetime(2026, 3, 27, 12, tzinfo=UTC))
    for begin in (dt.datetime(2026, 3, 27, 12, tzinfo=UTC), dt.datetime(2026, 10, 23, 12, tzinfo=UTC)):
        now = begin
        while now < begin + dt.timedelta(days=4):  # every 30 minutes
            for job_id in f.tick(now):
                f.run(job_id, now + MIN, now + 4 * MIN)  # a worker starts it a minute later
            now += 30 * MIN
    started = [local(j.started_at, BERLIN) for j in f.jobs(iid) if j.started_at]
    assert started == [
        "2026-03-28 02:31+0100", "2026-03-29 03:31+0200", "2026-03-30 02:31+0200", "2026-03-31 02:31+0200",
        # the first tick after 4 days of downtime (1 Apr - 23 Oct) catches up once
        "2026-10-23 14:01+0200",
        "2026-10-24 02:31+0200", "2026-10-25 02:31+0200", "2026-10-26 02:31+0100", "2026-10-27 02:31+0100",
    ]


def test_an_overdue_backup_waits_for_the_plan_window(sqlite_catalog):
    f = Fleet(sqlite_catalog, T0)
    iid = f.instance(f.plan("nights", rpo_minutes=60, timezone="Europe/Berlin", window_start="22:00",
                            window_end="04:00"))
    f.job(iid, start=at(BERLIN, 1, 23), end=at(BERLIN, 1, 23, 10))
    assert f.tick(at(BERLIN, 3, 12)) == []  # down until noon two days later: the window is shut
    assert f.tick(at(BERLIN, 3, 21, 59)) == []
    assert len(f.tick(at(BERLIN, 3, 22))) == 1


def test_two_processes_never_queue_the_same_slot(catalog):
    """One process holds the instance's lock while it checks and queues; another, checking the same
    instance at the same moment, waits for it and then finds the slot taken."""
    f = Fleet(catalog, T0)
    iid = f.instance(f.plan("hourly", rpo_minutes=60))
    other = Catalog(catalog.url)  # a second process's engine
    now = T0 + 61 * MIN
    result: list[Any] = []
    try:
        with catalog.transaction(write=True) as s:
            mine = check_instance(s, iid, now)
            assert mine is not None

            def theirs() -> None:
                with other.transaction(write=True) as s2:
                    job = check_instance(s2, iid, now)
                    result.append(job.id if job else None)

            t = threading.Thread(target=theirs)
            t.start()
            t.join(1.0)
            assert t.is_alive(), "the second check did not wait for the first one's transaction"
        t.join(30)
        assert result == [None]
    finally:
        other.dispose()
    [job] = f.jobs(iid)
    assert job.warnings == []


def test_concurrent_schedulers_queue_each_due_backup_once(catalog):
    f = Fleet(catalog, T0)
    pid = f.plan("hourly", rpo_minutes=60)
    ids = [f.instance(pid, f"i{n}") for n in range(8)]
    engines = [Catalog(catalog.url) for _ in range(3)]
    try:
        schedulers = [Scheduler(e, 30, lambda: None, clock=lambda: T0 + 61 * MIN) for e in engines]
        gate = threading.Barrier(len(schedulers))
        queued: list[int] = []

        def run(s: Scheduler) -> None:
            gate.wait()
            queued.extend(s.tick())

        threads = [threading.Thread(target=run, args=(s,)) for s in schedulers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        for e in engines:
            e.dispose()
    assert len(queued) == len(ids)
    assert sorted(len(f.jobs(i)) for i in ids) == [1] * len(ids)


# -- through the API and a real pgvault serve -----------------------------------------------------------

def test_move_an_instance_to_another_plan_through_the_api(api, pg):
    r = api.post("/V2/Plan", json={"planName": "sched-move-hourly", "rpoMinutes": 60})
    assert r.status_code == 200, r.text
    entity, job_id = register(api, pg, "sched-move")
    api.wait_job(job_id)
    iid = entity["instanceId"]
    before = api.get(f"/Instance/{iid}").json()["instanceProperties"][0]
    assert before["planEntity"]["planName"] == "default"
    start = api.job(job_id)["jobStartTime"]
    assert before["nextBackupTime"] - start == 24 * 3600  # the default plan: daily

    bad = [({"instanceProperties": {"planEntity": {"planName": "no-such-plan"}}}, 404),
           ({"instanceProperties": {}}, 400), ({"instanceProperties": {"planEntity": {"planName": ""}}}, 400),
           ([1, 2], 400)]
    for body, status in bad:
        r = api.put(f"/Instance/{iid}", json=body)
        assert r.status_code == status, (body, r.text)
    assert api.put("/Instance/999999", json={"instanceProperties": {"planEntity": {"planName": "default"}}}) \
        .status_code == 404

    r = api.post(f"/Instance/{iid}", json={"instanceProperties": {"planEntity": {"planName": "SCHED-MOVE-HOURLY"}}})
    assert r.status_code == 200, r.text
    assert r.json() == {"response": [{"errorCode": 0, "errorString": ""}]}
    after = api.get(f"/Instance/{iid}").json()["instanceProperties"][0]
    assert after["planEntity"]["planName"] == "sched-move-hourly"
    assert after["nextBackupTime"] - start == 3600
    listed = {i["instance"]["instanceId"]: i for i in api.get("/Instance").json()["instanceProperties"]}
    assert listed[iid]["nextBackupTime"] == after["nextBackupTime"]
    r = api.put(f"/Instance/{iid}", json={"instanceProperties": {"planEntity": {"planName": "default"}}})
    assert r.status_code == 200, r.text


def test_pgvault_serve_runs_the_scheduler(tmp_path, pg):
    """The wiring: ``PGVAULT_SCHEDULER_SECONDS`` and the thread in ``pgvault serve``. The serve's clock is
    the real one, so the test makes the last backup three hours old (as after downtime) in the catalog,
    and the running scheduler must queue one backup within a few ticks, which a worker runs."""
    svc = Service(tmp_path / "home", PGVAULT_SCHEDULER_SECONDS="1").start()
    try:
        api = svc.login()
        assert api.post("/V2/Plan", json={"planName": "hourly", "rpoMinutes": 60}).status_code == 200
        entity, first = register(api, pg, "sched-e2e", plan="hourly")
        assert api.wait_job(first)["status"] == "Completed"
        iid = entity["instanceId"]
        time.sleep(1.5)  # a tick or two: the backup just taken is the last one, nothing is due
        assert [j[0] for j in catalog_jobs(svc, iid)] == [int(first)]

        conn = sqlite3.connect(svc.home / "catalog.db", timeout=30)
        with conn:
            old = dt.datetime.now(UTC).replace(tzinfo=None) - dt.timedelta(hours=3)
            conn.execute("update jobs set created_at = ?, started_at = ?, ended_at = ? where id = ?",
                         (str(old), str(old), str(old + dt.timedelta(minutes=1)), int(first)))
        conn.close()
        deadline = time.monotonic() + 20
        while len(catalog_jobs(svc, iid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        jobs = catalog_jobs(svc, iid)
        assert len(jobs) == 2 and jobs[1][1] == "scheduled", jobs
        assert api.wait_job(jobs[1][0])["status"] == "Completed"
        time.sleep(1.5)  # more ticks: the backup just run is the last one again, no burst
        assert len(catalog_jobs(svc, iid)) == 2
        props = api.get(f"/Instance/{iid}").json()["instanceProperties"][0]
        assert props["nextBackupTime"] - api.job(jobs[1][0])["jobStartTime"] == 3600
        api.close()
    finally:
        svc.stop()
    assert "scheduler tick failed" not in svc.log_text()


def catalog_jobs(svc: Service, instance_id: int) -> list[tuple[int, str, str]]:
    conn = sqlite3.connect(f"file:{svc.home / 'catalog.db'}?mode=ro", uri=True, timeout=30)
    try:
        return [tuple(r) for r in conn.execute(
            "select id, \"trigger\", status from jobs where instance_id = ? and job_type = 'Backup' order by id",
            (instance_id,))]
    finally:
        conn.close()
