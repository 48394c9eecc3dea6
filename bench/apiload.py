"""The API under load on loopback: a bounded load generator (fixed request count, fixed concurrency).

The generator is a small asyncio HTTP/1.1 client with keep-alive connections and no parsing beyond the
status line and Content-Length: on a 2-core machine the client shares the CPU with the server, and a
heavier client (httpx) would become the ceiling it is meant to measure.

The 10,000 instances are written straight into the service's catalog (SQLAlchemy Core, one
transaction, rows as POST /Instance would store them, password sealed under the service's master key),
not registered through the API: registration probes a real PostgreSQL server, and 10,000 of those are
not the point. One finished backup job with a job item per database and globals serves GET /Job/{id}.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, insert, select

from pgvault.catalog.db import Catalog
from pgvault.catalog.models import Backupset, CloudAccount, Instance, Job, JobItem, Plan, Subclient
from pgvault.crypto import Sealer, load_or_create_master_key


def seed_catalog(home: Path, instances: int, job_items: int = 13, catalog_url: str | None = None) -> int:
    """Adds ``instances`` instances (each with its backupset and subclient) and one finished backup job
    to the service's catalog (its SQLite file in ``home``, or ``catalog_url``); returns the job's id."""
    catalog = Catalog(catalog_url or f"sqlite:///{home / 'catalog.db'}")
    sealed = Sealer(load_or_create_master_key(home, None)).seal(b"not-a-real-password", "instance.password")
    now = dt.datetime.now(dt.UTC)
    try:
        with catalog.transaction(write=True) as s:
            account = s.scalar(select(CloudAccount.id).where(CloudAccount.name_key == "default"))
            plan = s.scalar(select(Plan.id).where(Plan.name_key == "default"))
            first = (s.scalar(select(func.max(Instance.id))) or 0) + 1
            first_bs = (s.scalar(select(func.max(Backupset.id))) or 0) + 1
            first_sc = (s.scalar(select(func.max(Subclient.id))) or 0) + 1
            ids = range(first, first + instances)
            s.execute(insert(Instance), [
                {"id": i, "cloud_account_id": account, "plan_id": plan, "name": f"fleet-{i:05d}",
                 "name_key": f"fleet-{i:05d}", "host": f"pg-{i:05d}.fleet.internal", "port": 5432,
                 "maintenance_db": "postgres", "username": "backup_admin", "password_sealed": sealed,
                 "ssl_enabled": i % 2 == 0, "ssl_ca": None, "declared_version": "16",
                 "server_version": "16.4", "server_version_num": 160004, "created_at": now}
                for i in ids])
            s.execute(insert(Backupset), [
                {"id": first_bs + n, "instance_id": i, "name": "DumpBasedBackupSet", "is_default": True}
                for n, i in enumerate(ids)])
            s.execute(insert(Subclient), [
                {"id": first_sc + n, "instance_id": i, "backupset_id": first_bs + n, "name": "default",
                 "is_default": True} for n, i in enumerate(ids)])
            job = Job(job_type="Backup", backup_level="Full", status="Completed", phase="Completed",
                      percent_complete=100, instance_id=first, subclient_id=first_sc, started_at=now,
                      ended_at=now, updated_at=now, attempts=1, message=f"{job_items - 1} databases backed up")
            s.add(job)
            s.flush()
            s.execute(insert(JobItem), [
                {"job_id": job.id, "kind": "globals" if n == 0 else "database",
                 "name": "(globals)" if n == 0 else f"database_{n:02d}", "status": "Completed",
                 "bytes": 1_000_000 + n, "sha256": "ab" * 32,
                 "location": f"file:///srv/backups/instance-{first}/job-{job.id}/databases/{n:03d}.dump.zst"}
                for n in range(job_items)])
            return int(job.id)
    finally:
        catalog.dispose()


@dataclass
class LoadResult:
    requests: int
    errors: int
    wall: float
    latencies_ms: list[float]
    server_cpu_s: float = 0.0  # the server process's own CPU over the run, when the caller measured it

    @property
    def rps(self) -> float:
        return self.requests / self.wall

    def pct(self, q: float) -> float:
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(q * len(data)))]


async def _load(port: int, paths: list[str], concurrency: int, headers: dict[str, str],
                timeout: float) -> LoadResult:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    requests = [f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n".encode() for p in paths]
    todo = iter(range(len(requests)))
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + timeout

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in todo:
                if time.monotonic() > deadline:
                    errors += 1
                    continue
                t0 = time.perf_counter()
                writer.write(requests[i])
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                latencies.append((time.perf_counter() - t0) * 1000)
                if status != 200:
                    errors += 1
                if b"connection: close" in head.lower():
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return LoadResult(len(requests), errors, time.perf_counter() - t0, latencies)


def run_load(port: int, paths: list[str], concurrency: int = 32, headers: dict[str, str] | None = None,
             timeout: float = 300) -> LoadResult:
    """Sends exactly ``len(paths)`` GET requests over ``concurrency`` keep-alive connections; a request
    still waiting at ``timeout`` seconds is counted as an error rather than sent."""
    return asyncio.run(_load(port, paths, concurrency, headers or {}, timeout))


def paths_for(kind: str, base: str, count: int, job_id: int, instances: int, page: int, seed: int) -> list[str]:
    if kind == "trivial":
        return [base + "/"] * count
    if kind == "job":
        return [f"{base}/Job/{job_id}"] * count
    rng = random.Random(seed)  # noqa: S311 - which pages to ask for, not a secret
    pages = max(1, instances // page)
    return [f"{base}/Instance?offset={rng.randrange(pages) * page}&limit={page}" for _ in range(count)]


def summarize(results: list[LoadResult]) -> dict[str, float]:
    lat = [x for r in results for x in r.latencies_ms]
    lat.sort()
    return {
        "rps": statistics.median(r.rps for r in results),
        "p50_ms": lat[len(lat) // 2] if lat else float("nan"),
        "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan"),
        "server_cpu_ms_per_request": sum(r.server_cpu_s for r in results) * 1000 / sum(r.requests for r in results),
        "requests": sum(r.requests for r in results),
        "errors": sum(r.errors for r in results),
    }
