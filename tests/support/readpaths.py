"""A small catalog with every case the read endpoints' shapes depend on (tests/test_read_paths.py).

Fixed ids and times, so that what GET /Instance, GET /Job, POST /Jobs and POST /JobDetails build from it
can be compared with answers recorded before their read paths moved from ORM objects to SQL rows
(tests/data/read_paths.json).
"""

from __future__ import annotations

import datetime as dt

from pgvault.catalog.db import Catalog
from pgvault.catalog.models import (
    Backupset,
    CloudAccount,
    Instance,
    Job,
    JobItem,
    Plan,
    RestorePoint,
    Subclient,
)

UTC = dt.UTC
NOW = dt.datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)
T0 = dt.datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
MIN = dt.timedelta(minutes=1)


def seed(cat: Catalog) -> dict[str, list[int]]:
    """Two cloud accounts, four plans (RPO; cron in Berlin with a window; a zone that does not exist;
    RPO with a window), 14 instances of which 4 are deleted (between live ones), one with two
    backupsets and subclients, one with none; backup jobs finished, running, waiting and failed, a
    restore, and items of every kind. Returns the ids by kind."""
    with cat.transaction(write=True) as s:
        a = CloudAccount(id=101, name="Account-A", name_key="account-a", created_at=T0)
        b = CloudAccount(id=102, name="account b", name_key="account b", created_at=T0)
        rpo = Plan(id=201, name="Hourly", name_key="hourly", schedule_kind="rpo", rpo_minutes=60, timezone="UTC",
                   created_at=T0)
        cron = Plan(id=202, name="Nightly Berlin", name_key="nightly berlin", schedule_kind="cron",
                    cron="30 2 * * *", timezone="Europe/Berlin", window_start="01:00", window_end="05:00",
                    created_at=T0)
        broken = Plan(id=203, name="Broken", name_key="broken", schedule_kind="cron", cron="0 3 * * *",
                      timezone="Nowhere/Atlantis", created_at=T0)
        windowed = Plan(id=204, name="Windowed", name_key="windowed", schedule_kind="rpo", rpo_minutes=30,
                        timezone="America/New_York", window_start="22:00", window_end="06:00", created_at=T0)
        s.add_all([a, b, rpo, cron, broken, windowed])
        s.flush()
        plans = [rpo, cron, broken, windowed]
        ids: dict[str, list[int]] = {"instances": [], "deleted": [], "jobs": []}
        bs_id, sc_id = 500, 700
        for n in range(14):
            iid = 300 + n
            account = a if n % 3 else b
            deleted = n in (2, 5, 6, 11)
            inst = Instance(
                id=iid, cloud_account_id=account.id, plan_id=plans[n % 4].id, name=f"Inst-{n:02d}",
                name_key=f"inst-{n:02d}", host="db.example.com" if n % 2 else "2001:db8::7", port=5432 + n,
                maintenance_db="postgres" if n % 5 else "maint é", username=f"user{n}", password_sealed=b"x",
                ssl_enabled=n % 2 == 0, ssl_ca="/etc/ca.pem" if n % 4 == 0 else None, declared_version="16",
                server_version=f"16.{n}", server_version_num=160000 + n, created_at=T0 + n * MIN,
                deleted_at=T0 + 2 * n * MIN if deleted else None)
            s.add(inst)
            s.flush()
            (ids["deleted"] if deleted else ids["instances"]).append(iid)
            if n == 7:  # registered without a backupset or subclient (never happens through the API)
                continue
            for k in range(2 if n == 3 else 1):
                bs_id += 1
                sc_id += 1
                s.add(Backupset(id=bs_id, instance_id=iid, name="DumpBasedBackupSet" if k == 0 else "second",
                                is_default=k == 0))
                s.flush()
                s.add(Subclient(id=sc_id, instance_id=iid, backupset_id=bs_id, name="default" if k == 0 else "extra",
                                is_default=k == 0))
            s.flush()

        def job(jid: int, iid: int, sub: int, **kw: object) -> Job:
            values: dict[str, object] = {"job_type": "Backup", "backup_level": "Full", "status": "Completed",
                                         "phase": "Completed", "percent_complete": 100, "created_at": T0,
                                         "updated_at": T0, "attempts": 1, "message": ""}
            values.update(kw)
            j = Job(id=jid, instance_id=iid, subclient_id=sub, **values)
            s.add(j)
            s.flush()
            ids["jobs"].append(jid)
            return j

        # instance 300 (subclient 701): an old completed backup, then a newer one with every item kind
        job(900, 300, 701, started_at=T0 + 10 * MIN, ended_at=T0 + 20 * MIN, trigger="scheduled")
        j = job(901, 300, 701, started_at=NOW - 90 * MIN, ended_at=NOW - 80 * MIN, started_by="admin",
                status="Completed w/ one or more errors", message="1 database failed",
                warnings=["a warning", "another: ü"], updated_at=NOW - 80 * MIN)
        s.add_all([
            JobItem(id=1001, job_id=j.id, kind="globals", name="(globals)", status="Completed", bytes=12,
                    sha256="ab" * 32, location="file:///b/globals.sql.zst"),
            JobItem(id=1002, job_id=j.id, kind="database", name="app", status="Completed", bytes=1_000_000_000_000,
                    sha256="cd" * 32, location="file:///b/001-app.dump.zst",
                    details=[{"object": "TABLE t", "error": "x"}]),
            JobItem(id=1003, job_id=j.id, kind="database", name="broken \"db\"", status="Failed", bytes=0,
                    error="permission denied for database", location=None),
            JobItem(id=1004, job_id=j.id, kind="file", name="manifest.json", status="Completed", bytes=99,
                    sha256="ef" * 32, location="file:///b/manifest.json"),
        ])
        # instance 301 (subclient 702): a running backup (busy) started before an RPO slot
        job(902, 301, 702, started_at=NOW - 5 * MIN, status="Running", phase="Dumping", percent_complete=40,
            attempts=1, updated_at=NOW - MIN)
        # instance 303 (two subclients, 704 and 705): a waiting backup on the second subclient, a failed one
        job(903, 303, 704, started_at=T0, ended_at=T0 + MIN, status="Failed", message="could not connect",
            phase="Failed")
        job(904, 303, 705, status="Waiting", phase="Queued", attempts=0, message="waiting for a worker",
            started_at=None, percent_complete=0)
        # instance 304: a restore from a restore point of job 905, and a data aging job waiting
        j905 = job(905, 304, 706, started_at=NOW - 2 * dt.timedelta(days=1), ended_at=NOW - dt.timedelta(days=1))
        s.add(RestorePoint(id=950, job_id=j905.id, instance_id=304, created_at=NOW - dt.timedelta(days=1),
                           prefix="instance-304/x", manifest_sha256="0" * 64, server_version="16.4",
                           total_bytes=10, database_count=1))
        s.flush()
        r = job(906, 304, 706, job_type="Restore", restore_point_id=950, started_at=NOW - 30 * MIN,
                ended_at=NOW - 29 * MIN)
        s.add(JobItem(id=1005, job_id=r.id, kind="tables", name="app", target="app_copy", status="Completed",
                      bytes=5, details=[{"table": "public.t", "rows": 3}]))
        job(907, 304, 706, job_type="DataAging", status="Waiting", phase="Queued", attempts=0, started_at=None)
        # instance 308 (cron plan): killed backup
        job(908, 308, 709, started_at=NOW - dt.timedelta(hours=30), ended_at=NOW - dt.timedelta(hours=29),
            status="Killed", phase="Killed", message="killed by admin")
    return ids
