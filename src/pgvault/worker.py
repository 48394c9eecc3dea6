"""The worker pool: threads that claim jobs from the catalog, run them and report.

In the embedded default it lives inside ``pgvault serve``; the claim (an atomic transition with a lease)
is what would let several processes share one PostgreSQL catalog. A heartbeat renews the leases of the
jobs this process runs, turns a kill request recorded in the catalog into a cancel, and reaps jobs whose
worker died.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass

from .backup.engine import BackupOutcome, BackupRequest, BackupRun
from .catalog.db import Catalog
from .catalog.models import Job, JobStatus, RestorePoint
from .crypto import Sealer
from .pgtools.runner import CancelToken
from .services import instances, jobs
from .settings import Settings
from .storage import open_storage

log = logging.getLogger("pgvault.worker")


class CatalogReporter:
    """The backup engine's progress, written to the catalog in short transactions of their own."""

    def __init__(self, catalog: Catalog, job_id: int) -> None:
        self.catalog = catalog
        self.job_id = job_id

    def phase(self, name: str, percent: int | None = None) -> None:
        with self.catalog.begin() as s:
            jobs.set_progress(s, self.job_id, name, percent)

    def items(self, names: list[tuple[str, str]]) -> list[int]:
        with self.catalog.begin() as s:
            return jobs.add_items(s, self.job_id, names)

    def item_running(self, item_id: int) -> None:
        with self.catalog.begin() as s:
            jobs.update_item(s, item_id, status=JobStatus.RUNNING.value)

    def item_done(self, item_id: int, nbytes: int, sha256: str, location: str) -> None:
        with self.catalog.begin() as s:
            jobs.update_item(s, item_id, status=JobStatus.COMPLETED.value, bytes=nbytes, sha256=sha256,
                             location=location)

    def item_failed(self, item_id: int, error: str, status: str = "Failed") -> None:
        with self.catalog.begin() as s:
            jobs.update_item(s, item_id, status=status, error=error)

    def warn(self, message: str) -> None:
        with self.catalog.begin() as s:
            jobs.add_warning(s, self.job_id, message)


@dataclass
class _Running:
    cancel: CancelToken
    shutdown: bool = False


class WorkerPool:
    def __init__(self, settings: Settings, catalog: Catalog, sealer: Sealer) -> None:
        self.settings = settings
        self.catalog = catalog
        self.sealer = sealer
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: dict[int, _Running] = {}
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        for n in range(self.settings.workers):
            t = threading.Thread(target=self._loop, name=f"pgvault-worker-{n}", daemon=True)
            t.start()
            self._threads.append(t)
        if self.settings.workers:
            hb = threading.Thread(target=self._heartbeat, name="pgvault-heartbeat", daemon=True)
            hb.start()
            self._threads.append(hb)

    def stop(self, timeout: float = 30) -> None:
        """Stop taking jobs; interrupt running ones and put them back in the queue for the next start."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            for running in self._running.values():
                running.shutdown = True
                running.cancel.cancel()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()

    def wake(self) -> None:
        self._wake.set()

    def kill(self, job_id: int) -> None:
        """Stop a job this process is running at once (the heartbeat would see the catalog flag soon)."""
        with self._lock:
            running = self._running.get(job_id)
        if running is not None:
            running.cancel.cancel()

    # -- loops ---------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with self.catalog.begin() as s:
                    job = jobs.claim_next(s, self.owner, self.settings.job_lease_seconds)
                    job_id = job.id if job else None
            except Exception:
                log.exception("could not claim a job")
                job_id = None
            if job_id is None:
                self._wake.wait(self.settings.job_poll_seconds)
                self._wake.clear()
                continue
            self._run(job_id)

    def _heartbeat(self) -> None:
        interval = max(0.5, min(2.0, self.settings.job_lease_seconds / 4))
        reap_every = dt.timedelta(seconds=self.settings.job_lease_seconds / 2)
        last_reap = dt.datetime.min.replace(tzinfo=dt.UTC)
        while not self._stop.wait(interval):
            with self._lock:
                running = dict(self._running)
            for job_id, state in running.items():
                try:
                    with self.catalog.begin() as s:
                        kill = jobs.renew_lease(s, job_id, self.owner, self.settings.job_lease_seconds)
                except LookupError:
                    kill = True
                except Exception:
                    log.exception("could not renew the lease of job %s", job_id)
                    continue
                if kill:
                    state.cancel.cancel()
            now = dt.datetime.now(dt.UTC)
            if now - last_reap >= reap_every:
                last_reap = now
                try:
                    with self.catalog.begin() as s:
                        reaped = jobs.reap_expired(s)
                    if reaped:
                        log.warning("jobs whose worker stopped responding: %s", reaped)
                        self.wake()
                except Exception:
                    log.exception("could not reap expired jobs")

    # -- one job -------------------------------------------------------------------------------
    def _run(self, job_id: int) -> None:
        state = _Running(CancelToken())
        with self._lock:
            self._running[job_id] = state
        job_log = logging.getLogger(f"pgvault.job.{job_id}")
        restore_point: RestorePoint | None = None
        try:
            outcome, restore_point = self._execute(job_id, state.cancel, job_log)
        except Exception as exc:  # a bug: the job must still end, and say so
            job_log.exception("job %s failed unexpectedly", job_id)
            outcome = BackupOutcome(JobStatus.FAILED.value, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._running.pop(job_id, None)
        if state.shutdown and outcome.status == JobStatus.KILLED:
            self._requeue(job_id)
            return
        with self.catalog.begin() as s:
            jobs.finish(s, job_id, self.owner, outcome.status, outcome.message, restore_point)
        job_log.info("job %s ended: %s (%s)", job_id, outcome.status, outcome.message)

    def _requeue(self, job_id: int) -> None:
        with self.catalog.begin() as s:
            job = s.get(Job, job_id)
            if job is not None and job.lease_owner == self.owner and not job.kill_requested:
                job.status, job.phase, job.lease_owner, job.lease_expires_at = "Waiting", "Queued", None, None
                job.attempts = max(0, job.attempts - 1)
                job.message = "interrupted by a shutdown; it runs again at the next start"
                for item in list(job.items):
                    s.delete(item)
            elif job is not None:
                jobs.finish(s, job_id, self.owner, JobStatus.KILLED.value, "killed", None)

    def _execute(self, job_id: int, cancel: CancelToken,
                 job_log: logging.Logger) -> tuple[BackupOutcome, RestorePoint | None]:
        with self.catalog.begin() as s:
            job = s.get(Job, job_id)
            assert job is not None
            inst = job.instance
            plan = inst.plan
            address = instances.address_of(inst, self.sealer, self.settings.connect_timeout_seconds)
            stamp = (job.started_at or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
            req = BackupRequest(
                job_id=job_id,
                instance={"id": inst.id, "name": inst.name, "client": inst.cloud_account.name,
                          "host": inst.host, "port": inst.port},
                address=address,
                storage=open_storage(plan.storage_kind, plan.storage_path),
                prefix=f"instance-{inst.id}/{stamp}-job-{job_id}",
                compression_level=plan.compression_level,
                parallelism=self.settings.dump_parallelism,
                pg_bin=self.settings.pg_bin,
            )
            storage_kind, storage_location = plan.storage_kind, plan.storage_path
            instance_id = inst.id
        with contextlib.suppress(Exception):
            req.storage.delete_prefix(req.prefix)  # a requeued job starts clean
        outcome = BackupRun(req, CatalogReporter(self.catalog, job_id), cancel, job_log).run()
        if outcome.manifest is None or outcome.manifest_sha256 is None:
            return outcome, None
        return outcome, RestorePoint(
                job_id=job_id, instance_id=instance_id, storage_kind=storage_kind,
                storage_location=storage_location, prefix=req.prefix, manifest_sha256=outcome.manifest_sha256,
                server_version=outcome.manifest.server_version, total_bytes=outcome.manifest.total_bytes,
                database_count=len(outcome.manifest.databases),
                databases=[d.name for d in outcome.manifest.databases],
        )
