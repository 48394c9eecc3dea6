"""Retention (data aging): the rules on a synthetic history, and deletion against real backups,
including an interrupted deletion finished by the next run and strays found by the sweep."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest
from tests.support.data import recreate_database, stored_path
from tests.support.flows import backup_now, register

from pgvault.retention import (
    FolderJob,
    PointFacts,
    Rules,
    backup_prefix,
    expired,
    folder_job_id,
    keep_set,
    leftover,
    stale_upload,
    upload_folder,
)

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def history(days: int, per_day: int = 1, bad: set[int] = frozenset()) -> list[PointFacts]:
    """One point per day (at noon) going back ``days`` days; ids count up with time."""
    points = []
    n = 0
    for d in range(days, 0, -1):
        for k in range(per_day):
            n += 1
            points.append(PointFacts(id=n, time=NOW - dt.timedelta(days=d, hours=k), good=n not in bad))
    return points


def test_young_points_stay_and_old_ones_go_oldest_first():
    points = history(10)
    gone = expired(points, Rules(days=3, keep_min=1), NOW)
    assert gone == list(range(1, 8))  # days 10..4 ago, oldest first
    assert {8, 9, 10} == keep_set(points, Rules(days=3, keep_min=1), NOW)


def test_the_last_good_points_survive_however_old():
    points = history(10, bad={9, 10})  # the two newest backups were not good
    keep = keep_set(points, Rules(days=1, keep_min=3), NOW)
    assert {6, 7, 8} <= keep  # the three newest good ones
    assert 10 in keep  # within retention (1 day)
    assert 5 not in keep and 9 not in keep


def test_gfs_keeps_the_newest_point_of_each_period():
    points = history(120, per_day=2)
    rules = Rules(days=2, keep_min=1, daily=7, weekly=4, monthly=3)
    keep = keep_set(points, rules, NOW)
    by_id = {p.id: p for p in points}
    kept_days = {by_id[i].time.date() for i in keep}
    # daily: the newest point of each of the 7 most recent days
    for d in range(1, 8):
        day = (NOW - dt.timedelta(days=d)).date()
        newest = max((p for p in points if p.time.date() == day), key=lambda p: p.time)
        assert newest.id in keep
    # weekly / monthly: the newest point of each of the 4 most recent ISO weeks / 3 months
    weeks = {by_id[i].time.isocalendar()[:2] for i in keep}
    months = {(by_id[i].time.year, by_id[i].time.month) for i in keep}
    assert len(weeks) >= 4 and len(months) >= 3
    newest_of_month = {}
    for p in points:
        key = (p.time.year, p.time.month)
        if key not in newest_of_month or p.time > newest_of_month[key].time:
            newest_of_month[key] = p
    for key in sorted(newest_of_month)[-3:]:
        assert newest_of_month[key].id in keep
    # and nothing else: at most 2 (retention) * 2 + 7 + 4 + 3 points, far fewer than 240
    assert len(keep) <= 4 + 7 + 4 + 3
    assert len(kept_days) < 20


def test_gfs_counts_days_in_the_plans_time_zone():
    # 23:30 UTC on the 27th is already the 28th in Tokyo; 14:00 UTC is still the 27th there
    late = PointFacts(id=1, time=dt.datetime(2026, 11, 27, 23, 30, tzinfo=dt.UTC), good=True)
    early = PointFacts(id=2, time=dt.datetime(2026, 11, 27, 14, 0, tzinfo=dt.UTC), good=True)
    utc = keep_set([late, early], Rules(days=1, keep_min=0, daily=2), NOW + dt.timedelta(days=5))
    tokyo = keep_set([late, early], Rules(days=1, keep_min=0, daily=2, timezone="Asia/Tokyo"),
                     NOW + dt.timedelta(days=5))
    assert utc == {1}  # same UTC day: only the newest
    assert tokyo == {1, 2}  # different Tokyo days


def test_points_being_read_are_never_dropped():
    points = history(10)
    points[0] = PointFacts(id=1, time=points[0].time, good=True, in_use=True)
    assert 1 not in expired(points, Rules(days=1, keep_min=1), NOW)


def test_a_backup_runs_folder_is_removable_only_when_no_run_can_write_it():
    """Data Aging removes a folder a run of a backup left (a crash, a failure) only when the catalog proves it:
    this instance's finished backup job, ended at least the grace ago, started before the folder's run, and
    not its restore point's folder. A folder of a job it does not know (another catalog's, in a shared
    bucket) or one that cannot be that job's is never removed."""
    started = dt.datetime(2026, 11, 28, 10, 15, 0, 600000, tzinfo=dt.UTC)
    ended = started + dt.timedelta(minutes=30)
    kept = backup_prefix(3, 12, started + dt.timedelta(minutes=5))
    job = FolderJob(instance_id=3, is_backup=True, finished=True, started_at=started, ended_at=ended,
                    restore_point_prefix=kept)
    first = backup_prefix(3, 12, started)
    grace, later = dt.timedelta(minutes=15), ended + dt.timedelta(minutes=16)
    assert first == "instance-3/20261128T101500Z-job-12" and folder_job_id(first) == 12
    assert leftover(first, job, later, grace)
    assert not leftover(kept, job, later, grace)  # its restore point
    assert not leftover(first, job, ended + dt.timedelta(minutes=14), grace)  # a lost run may still be stopping
    for other in (FolderJob(3, True, False, started, None, None),  # still running or waiting
                  FolderJob(3, False, True, started, ended, None),  # not a backup
                  FolderJob(4, True, True, started, ended, None),  # another instance's
                  None):  # unknown
        assert not leftover(first, other, later, grace), other
    for folder in ("instance-3/20261128T101459Z-job-12", "instance-3/20261128T104501Z-job-12",  # outside its life
                   "instance-4/20261128T101500Z-job-12", "instance-3/20261128T101500Z-job-12/databases", "x"):
        assert not leftover(folder, job, later, grace), folder


def test_an_unfinished_upload_is_stale_only_in_a_dead_runs_folder_and_after_the_grace():
    """An S3 multipart upload a killed run stranded may be aborted when its run folder is one no run can
    write (the proof ``leftover`` uses, a restore point's folder included: its run ended) and, whatever
    the folder, it was started at least the grace ago."""
    started = dt.datetime(2026, 11, 28, 10, 15, 0, tzinfo=dt.UTC)
    ended = started + dt.timedelta(minutes=30)
    run = backup_prefix(3, 12, started)
    job = FolderJob(instance_id=3, is_backup=True, finished=True, started_at=started, ended_at=ended,
                    restore_point_prefix=run)
    grace, later = dt.timedelta(minutes=15), ended + dt.timedelta(minutes=16)
    key, old = f"{run}/databases/db.dump.zst", started + dt.timedelta(minutes=1)
    assert upload_folder(key) == run
    assert stale_upload(key, old, job, later, grace)
    assert stale_upload(f"{run}/manifest.json", old, job, later, grace)
    assert not stale_upload(key, later - dt.timedelta(minutes=14), job, later, grace)  # started within the grace
    assert not stale_upload(key, old, job, ended + dt.timedelta(minutes=14), grace)  # a lost run may be stopping
    assert not stale_upload(key, old, FolderJob(3, True, False, started, None, None), later, grace)  # running
    assert not stale_upload(key, old, None, later, grace)  # a job this catalog does not know
    for other in ("instance-3/loose.zst", run, f"instance-4/{run.split('/')[1]}/x", "x/y/z"):
        assert not stale_upload(other, old, job, later, grace), other


# -- against real backups ----------------------------------------------------------------------------

def _age(service, job_ids: list[str], days: float) -> None:
    """Move backups into the past, as if they had run ``days`` ago (the history a long-running service
    would have)."""
    conn = sqlite3.connect(service.home / "catalog.db", timeout=30)
    try:
        for job_id in job_ids:
            when = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S.%f")
            conn.execute("update jobs set started_at = ? where id = ?", (when, int(job_id)))
        conn.commit()
    finally:
        conn.close()


@pytest.fixture()
def aged_instance(api, pg, tmp_path):
    recreate_database(pg, "ret_db")
    plan = api.post("/V2/Plan", json={"planName": f"short-{tmp_path.name}", "storage": {"path": str(tmp_path / "b")},
                                      "retention": {"days": 1, "keepMin": 1}})
    assert plan.status_code == 200, plan.text
    entity, first = register(api, pg, f"ret-{tmp_path.name}", plan=f"short-{tmp_path.name}")
    jobs = [first] + [backup_now(api, entity["subclientId"]) for _ in range(2)]
    for j in jobs:
        assert api.wait_job(j)["status"] == "Completed"
    yield entity, jobs
    api.delete(f"/Instance/{entity['instanceId']}", params={"deleteBackups": "true"})
    with pg.connect() as conn:
        conn.execute("drop database if exists ret_db")


def _folders(api, job_id) -> list:
    job = api.job(job_id)
    return [stored_path(d["location"]).parents[1] for d in job["databases"] if d["location"]][:1]


def test_aging_deletes_expired_copies_and_keeps_the_last_good(api, service, aged_instance):
    entity, jobs = aged_instance
    folders = {j: _folders(api, j)[0] for j in jobs}
    _age(service, jobs, days=5)
    r = api.post(f"/Instance/{entity['instanceId']}/action/dataAging")
    assert r.status_code == 200, r.text
    done = api.wait_job(r.json()["jobIds"][0])
    assert done["status"] == "Completed", done
    assert "2 restore point copies deleted" in done["message"]
    assert not folders[jobs[0]].exists() and not folders[jobs[1]].exists()
    assert folders[jobs[2]].exists()  # keepMin=1: the newest good one stays although expired
    points = api.get("/RestorePoints", params={"instanceId": entity["instanceId"]}).json()["restorePoints"]
    assert [p["jobId"] for p in points] == [int(jobs[2])]


def test_an_interrupted_deletion_is_finished_and_strays_are_reported(api, service, aged_instance):
    entity, jobs = aged_instance
    folders = {j: _folders(api, j)[0] for j in jobs}
    # A crash after the mark and after some objects went: the row says "deleting", files are half gone.
    conn = sqlite3.connect(service.home / "catalog.db", timeout=30)
    try:
        conn.execute("update restore_point_copies set state = 'deleting' where restore_point_id = "
                     "(select id from restore_points where job_id = ?)", (int(jobs[0]),))
        conn.commit()
    finally:
        conn.close()
    (folders[jobs[0]] / "manifest.json").unlink()
    # A stray: a backup folder that no catalog row knows (say, restored from an old disk image).
    stray = folders[jobs[1]].parent / "20200101T000000Z-job-999999"
    stray.mkdir()
    (stray / "manifest.json").write_text("{}")

    done = api.wait_job(api.post(f"/Instance/{entity['instanceId']}/action/dataAging").json()["jobIds"][0])
    assert done["status"] == "Completed", done
    assert not folders[jobs[0]].exists()
    assert folders[jobs[1]].exists() and folders[jobs[2]].exists()  # not expired: untouched
    points = api.get("/RestorePoints", params={"instanceId": entity["instanceId"]}).json()["restorePoints"]
    assert sorted(p["jobId"] for p in points) == sorted(int(j) for j in jobs[1:])
    assert any("20200101T000000Z-job-999999" in w for w in done["warnings"]), done
    assert stray.exists()  # reported, not deleted


def test_instances_without_new_backups_are_aged_periodically(tmp_path):
    """Aging follows every backup; the scheduler also queues it for instances whose backups stopped."""
    from pgvault.catalog.db import Catalog
    from pgvault.catalog.models import Backupset, CloudAccount, Instance, Job, Plan, RestorePoint, Subclient
    from pgvault.services import aging

    cat = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    cat.migrate()
    with cat.transaction(write=True) as s:
        inst = Instance(cloud_account=CloudAccount(name="a", name_key="a"), plan=Plan(name="p", name_key="p"),
                        name="i", name_key="i", host="h", port=1, maintenance_db="postgres", username="u",
                        password_sealed=b"x", declared_version="18", server_version="18", server_version_num=180000)
        bs = Backupset(instance=inst)
        sub = Subclient(instance=inst, backupset=bs)
        s.add(sub)
        s.flush()
        job = Job(job_type="Backup", status="Completed", instance_id=inst.id, subclient_id=sub.id)
        s.add(job)
        s.flush()
        s.add(RestorePoint(job_id=job.id, instance_id=inst.id, prefix="p", manifest_sha256="x", server_version="18",
                           total_bytes=1, database_count=1))
    every = dt.timedelta(hours=24)
    with cat.transaction(write=True) as s:
        first = aging.queue_periodic(s, NOW, every)
    assert len(first) == 1
    with cat.transaction(write=True) as s:
        assert aging.queue_periodic(s, NOW, every) == []  # one is waiting already
        s.get(Job, first[0]).status = "Completed"
    with cat.transaction(write=True) as s:
        assert aging.queue_periodic(s, dt.datetime.now(dt.UTC), every) == []  # aged within the day
    with cat.transaction(write=True) as s:
        assert len(aging.queue_periodic(s, dt.datetime.now(dt.UTC) + dt.timedelta(days=2), every)) == 1
    cat.dispose()
