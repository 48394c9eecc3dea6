"""What a Prometheus scrape of /metrics costs at fleet size: a SQLite catalog of N instances, each with a
finished backup, its restore point (one local copy) and K databases, read by the collector pgvault serves
(services/metrics.py) and rendered by prometheus_client, as GET /metrics does.

    .venv/bin/python bench/metrics.py --instances 10000 --databases 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import insert, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pgvault.catalog.db import Catalog  # noqa: E402
from pgvault.catalog.models import (  # noqa: E402
    Backupset,
    CloudAccount,
    Instance,
    Job,
    JobItem,
    Plan,
    PlanDestination,
    RestorePoint,
    RestorePointCopy,
    Subclient,
)
from pgvault.services.bootstrap import bootstrap  # noqa: E402
from pgvault.services.metrics import FleetCollector  # noqa: E402


def build(home: Path, instances: int, databases: int) -> Catalog:
    catalog = Catalog(f"sqlite:///{home / 'catalog.db'}")
    catalog.migrate()
    now = dt.datetime.now(dt.UTC)
    with catalog.transaction(write=True) as s:
        bootstrap(s, home=home, backups_dir=home / "backups", admin_password="bench-Pa55word")  # noqa: S106
    with catalog.transaction(write=True) as s:
        account = s.scalar(select(CloudAccount.id).where(CloudAccount.name_key == "default"))
        plan = s.scalar(select(Plan.id).where(Plan.name_key == "default"))
        dest = s.scalar(select(PlanDestination.id).where(PlanDestination.plan_id == plan))
        ids = range(2, 2 + instances)
        s.execute(insert(Instance), [
            {"id": i, "cloud_account_id": account, "plan_id": plan, "name": f"fleet-{i:05d}",
             "name_key": f"fleet-{i:05d}", "host": "127.0.0.1", "port": 5432, "maintenance_db": "postgres",
             "username": "u", "password_sealed": b"x",
             "ssl_enabled": False, "ssl_ca": None, "declared_version": "16", "server_version": "16.4",
             "server_version_num": 160004, "created_at": now - dt.timedelta(days=2)} for i in ids])
        s.execute(insert(Backupset), [{"id": i, "instance_id": i, "name": "DumpBasedBackupSet", "is_default": True}
                                      for i in ids])
        s.execute(insert(Subclient), [{"id": i, "instance_id": i, "backupset_id": i, "name": "default",
                                       "is_default": True} for i in ids])
        s.execute(insert(Job), [{"id": i, "job_type": "Backup", "backup_level": "Full", "status": "Completed",
                                 "phase": "Completed", "percent_complete": 100, "instance_id": i, "subclient_id": i,
                                 "started_at": now - dt.timedelta(minutes=30), "ended_at": now, "updated_at": now,
                                 "attempts": 1, "message": "", "warnings": [], "options": {}} for i in ids])
        s.execute(insert(JobItem), [{"job_id": i, "kind": "database", "name": f"db_{n}", "status": "Completed",
                                     "bytes": 1_000_000 + n} for i in ids for n in range(databases)])
        s.execute(insert(RestorePoint), [
            {"id": i, "job_id": i, "instance_id": i, "prefix": f"instance-{i}/x", "manifest_sha256": "0" * 64,
             "server_version": "16.4", "total_bytes": 5_000_000, "database_count": databases,
             "databases": [f"db_{n}" for n in range(databases)], "snapshot_times": {}, "created_at": now} for i in ids])
        s.execute(insert(RestorePointCopy), [
            {"restore_point_id": i, "destination_id": dest, "kind": "local", "config": {"path": "/srv"},
             "state": "present"} for i in ids])
    return catalog


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--instances", type=int, default=10_000)
    p.add_argument("--databases", type=int, default=5)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="pgvault-bench-metrics-") as tmp:
        home = Path(tmp)
        started = time.perf_counter()
        catalog = build(home, args.instances, args.databases)
        print(f"catalog of {args.instances} instances x {args.databases} databases built in "
              f"{time.perf_counter() - started:.1f} s")
        registry = CollectorRegistry(auto_describe=False)
        registry.register(FleetCollector(catalog))
        walls, cpus, size = [], [], 0
        for _ in range(args.repeat):
            w, c = time.perf_counter(), time.process_time()
            size = len(generate_latest(registry))
            walls.append(time.perf_counter() - w)
            cpus.append(time.process_time() - c)
        catalog.dispose()
    print(f"scrape: median {statistics.median(walls) * 1000:.0f} ms wall, {statistics.median(cpus) * 1000:.0f} ms CPU, "
          f"{size / 1e6:.1f} MB of text ({args.repeat} scrapes)")


if __name__ == "__main__":
    main()
