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
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .backup.encryption import new_data_key
from .backup.engine import BackupRequest, BackupRun
from .catalog.db import Catalog
from .catalog.models import Instance, Job, RestorePoint
from .crypto import Sealer
from .domain.jobs import ItemStatus, JobStatus, JobType
from .errors import PgvaultError
from .pgtools.runner import CancelToken
from .restore.engine import RestoreItem, RestoreRequest, RestoreRun
from .restore.verify import VerifyRequest, VerifyRun
from .services import aging, destinations, instances, jobs, restore
from .settings import Settings
from .storage import Storage

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
            jobs.update_item(s, item_id, status=ItemStatus.RUNNING)

    def item_done(self, item_id: int, nbytes: int, sha256: str, location: str) -> None:
        with self.catalog.begin() as s:
            jobs.update_item(s, item_id, status=ItemStatus.COMPLETED, bytes=nbytes, sha256=sha256,
                             location=location)

    def item_failed(self, item_id: int, error: str, status: ItemStatus = ItemStatus.FAILED) -> None:
        with self.catalog.begin() as s:
            jobs.update_item(s, item_id, status=status, error=error)

    def item_update(self, item_id: int, **values: object) -> None:
        with self.catalog.begin() as s:
            jobs.update_item(s, item_id, **values)

    def warn(self, message: str) -> None:
        with self.catalog.begin() as s:
            jobs.add_warning(s, self.job_id, message)


@dataclass
class _Running:
    cancel: CancelToken
    lease: str  # this claim's own lease token: a job reaped and claimed again is a different run
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
            lease = f"{self.owner}:{uuid.uuid4().hex[:8]}"
            try:
                with self.catalog.begin() as s:
                    job = jobs.claim_next(s, lease, self.settings.job_lease_seconds)
                    job_id = job.id if job else None
            except Exception:
                log.exception("could not claim a job")
                job_id = None
            if job_id is None:
                self._wake.wait(self.settings.job_poll_seconds)
                self._wake.clear()
                continue
            try:
                self._run(job_id, lease)
            except Exception:  # never lose a worker thread; the lease reaper ends a job left behind
                log.exception("worker error around job %s", job_id)

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
                        kill = jobs.renew_lease(s, job_id, state.lease, self.settings.job_lease_seconds)
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
    def _run(self, job_id: int, lease: str) -> None:
        state = _Running(CancelToken(), lease)
        with self._lock:
            self._running[job_id] = state
        job_log = logging.getLogger(f"pgvault.job.{job_id}")
        try:
            result = self._execute(job_id, state.cancel, job_log)
        except Exception as exc:  # a bug: the job must still end, and say so
            job_log.exception("job %s failed unexpectedly", job_id)
            result = _Result(JobStatus.FAILED, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._running.pop(job_id, None)
        if state.shutdown and result.status == JobStatus.KILLED:
            self._requeue(job_id, lease)
            return
        try:
            with self.catalog.begin() as s:
                if jobs.finish(s, job_id, lease, result.status, result.message) and result.record is not None:
                    result.record(s)
        except Exception as exc:  # the outcome could not be recorded: the job must still end, and say so
            job_log.exception("could not record the end of job %s", job_id)
            with self.catalog.begin() as s:
                jobs.finish(s, job_id, lease, JobStatus.FAILED,
                            f"{result.message}; but its result could not be recorded: {type(exc).__name__}: {exc}")
            return
        job_log.info("job %s ended: %s (%s)", job_id, result.status, result.message)
        if result.after is not None:
            result.after()

    def _requeue(self, job_id: int, lease: str) -> None:
        with self.catalog.begin() as s:
            job = s.get(Job, job_id)
            if job is None or job.lease_owner != lease:
                return
            if job.kill_requested:
                jobs.finish(s, job_id, lease, JobStatus.KILLED, "killed")
            else:
                jobs.requeue(s, job_id, lease, "interrupted by a shutdown; it runs again at the next start")

    def _execute(self, job_id: int, cancel: CancelToken, job_log: logging.Logger) -> _Result:
        with self.catalog.begin() as s:
            job = s.get(Job, job_id)
            assert job is not None
            kind = job.job_type
        runner = {JobType.BACKUP: self._backup, JobType.RESTORE: self._restore, JobType.VERIFY: self._verify,
                  JobType.DATA_AGING: self._aging}[kind]
        return runner(job_id, cancel, job_log)

    def _backup(self, job_id: int, cancel: CancelToken, job_log: logging.Logger) -> _Result:
        with self.catalog.begin() as s:
            job = s.get(Job, job_id)
            assert job is not None
            inst = job.instance
            plan = inst.plan
            stamp = (job.started_at or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
            data_key, data_key_sealed = new_data_key(self.sealer) if plan.encrypt else (None, None)
            req = BackupRequest(
                job_id=job_id,
                instance={"id": inst.id, "name": inst.name, "client": inst.cloud_account.name,
                          "host": inst.host, "port": inst.port},
                address=instances.address_of(inst, self.sealer, self.settings.connect_timeout_seconds),
                storage=destinations.open_plan(plan, self.sealer),
                prefix=f"instance-{inst.id}/{stamp}-job-{job_id}",
                compression_level=plan.compression_level,
                parallelism=self.settings.dump_parallelism,
                pg_bin=self.settings.pg_bin,
                lock_wait_timeout=self.settings.lock_wait_seconds,
                compressor=self.settings.compressor,
                data_key=data_key,
                data_key_sealed=data_key_sealed,
            )
            copies = destinations.copies_for(plan)
            instance_id, drill_every = inst.id, plan.drill_every
        with contextlib.suppress(Exception):
            req.storage.delete_prefix(req.prefix)  # a requeued job starts clean
        outcome = BackupRun(req, CatalogReporter(self.catalog, job_id), cancel, job_log).run()
        manifest, manifest_sha = outcome.manifest, outcome.manifest_sha256
        if manifest is None or manifest_sha is None:
            return _Result(outcome.status, outcome.message)

        def record(s: Session) -> None:
            point = RestorePoint(
                job_id=job_id, instance_id=instance_id, copies=destinations.link_copies(s, copies), prefix=req.prefix,
                manifest_sha256=manifest_sha,
                server_version=manifest.server_version, total_bytes=manifest.total_bytes,
                database_count=len(manifest.databases), databases=[d.name for d in manifest.databases],
                snapshot_times={d.name: d.snapshot_time for d in manifest.databases if d.snapshot_time},
                data_key_sealed=req.data_key_sealed,
            )
            s.add(point)
            s.flush()
            inst = s.get(Instance, instance_id)
            if inst is not None:
                aging.queue_aging(s, inst)  # the new point may let older ones go
            if drill_every > 0:
                count = s.scalar(select(func.count()).select_from(RestorePoint)
                                 .where(RestorePoint.instance_id == instance_id))
                if count and count % drill_every == 0:
                    restore.queue_verification(s, point, drill=True, target_instance_id=None)

        return _Result(outcome.status, outcome.message, record, self.wake)

    def _restore_point(self, s: Session, job: Job) -> tuple[RestorePoint, Storage]:
        point = s.get(RestorePoint, job.restore_point_id) if job.restore_point_id else None
        if point is None:
            raise PgvaultError("the restore point of this job no longer exists")
        return point, destinations.open_point(point, self.sealer)

    def _other_copies(self, point: RestorePoint) -> list[Storage]:
        first = destinations.readable_copy(point)
        return [destinations.open_copy(c, self.sealer) for c in point.copies
                if c.state == "present" and c.id != first.id]

    def _restore(self, job_id: int, cancel: CancelToken, job_log: logging.Logger) -> _Result:
        with self.catalog.begin() as s:
            job = s.get(Job, job_id)
            assert job is not None
            point, storage = self._restore_point(s, job)
            opts = job.options
            req = RestoreRequest(
                job_id=job_id, storage=storage, prefix=point.prefix, manifest_sha256=point.manifest_sha256,
                address=instances.address_of(job.instance, self.sealer, self.settings.connect_timeout_seconds),
                items=[RestoreItem(i["source"], i["target"],
                                   [tuple(t) for t in i["tables"]] if i["tables"] is not None else None)  # type: ignore[misc]
                       for i in opts["items"]],
                overwrite=bool(opts.get("overwrite")), restore_globals=bool(opts.get("restore_globals")),
                ownership=bool(opts.get("ownership")), parallelism=int(opts.get("parallelism", 2)),
                pg_bin=self.settings.pg_bin, data_key_sealed=point.data_key_sealed, sealer=self.sealer,
                alternates=self._other_copies(point), compressor=self.settings.compressor,
            )
        outcome = RestoreRun(req, CatalogReporter(self.catalog, job_id), cancel, job_log).run()
        return _Result(outcome.status, outcome.message)

    def _verify(self, job_id: int, cancel: CancelToken, job_log: logging.Logger) -> _Result:
        with self.catalog.begin() as s:
            job = s.get(Job, job_id)
            assert job is not None
            point, storage = self._restore_point(s, job)
            target_id = job.options.get("target_instance_id")
            address = None
            if target_id is not None:
                address = instances.address_of(job.instance, self.sealer, self.settings.connect_timeout_seconds)
            req = VerifyRequest(job_id=job_id, storage=storage, prefix=point.prefix,
                                manifest_sha256=point.manifest_sha256, drill=bool(job.options.get("drill")),
                                drill_address=address, scratch_dir=Path(tempfile.gettempdir()),
                                pg_bin=self.settings.pg_bin, pg_servers=self.settings.pg_server_dirs,
                                data_key_sealed=point.data_key_sealed,
                                sealer=self.sealer, compressor=self.settings.compressor)
            point_id = point.id
        outcome = VerifyRun(req, CatalogReporter(self.catalog, job_id), cancel, job_log).run()

        def record(s: Session) -> None:
            point = s.get(RestorePoint, point_id)
            if point is None or outcome.verify_status is None:
                return
            now = dt.datetime.now(dt.UTC)
            point.verified_at, point.verify_status = now, outcome.verify_status
            point.verify_message = outcome.message
            if outcome.drill_status is not None:
                point.drill_at, point.drill_status = now, outcome.drill_status
                point.drill_seconds, point.drill_message = outcome.drill_seconds, outcome.drill_message

        return _Result(outcome.status, outcome.message, record)


    def _aging(self, job_id: int, cancel: CancelToken, job_log: logging.Logger) -> _Result:
        with self.catalog.begin() as s:
            job = s.get(Job, job_id)
            assert job is not None
            instance_id = job.instance_id
        report = aging.Aging(self.catalog, self.sealer, instance_id, job_log).run()
        for stray in report.strays:
            with self.catalog.begin() as s:
                jobs.add_warning(s, job_id, f"stray backup folder (no catalog entry): {stray}")
        status = JobStatus.COMPLETED_WITH_ERRORS if report.errors else JobStatus.COMPLETED
        return _Result(status, report.message)


@dataclass
class _Result:
    status: JobStatus
    message: str
    record: Callable[[Session], None] | None = None  # runs in the transaction that ends the job
    after: Callable[[], None] | None = None  # runs after that commit
