"""What running a job of each type means for the catalog: ``prepare`` reads the job's rows inside the
worker's transaction and hands back a ``Run`` (the engine's request, ready to go, touching the catalog only
through a ``CatalogReporter``); its ``Outcome`` carries what the job's end changes (``record``: a new restore
point, a verification result, follow-up jobs), applied in the transaction that ends the job.

The worker (``worker.py``) only claims, leases, heartbeats and dispatches; everything it needs to know of
backups, restores, verifications and Data Aging is here.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..backup.encryption import new_data_key
from ..backup.engine import BackupRequest, BackupRun
from ..catalog.db import Catalog
from ..catalog.models import Instance, Job, RestorePoint
from ..crypto import Sealer
from ..domain.jobs import ItemStatus, JobStatus, JobType
from ..errors import PgvaultError
from ..pgtools.runner import CancelToken
from ..restore.engine import RestoreItem, RestoreRequest, RestoreRun
from ..restore.verify import VerifyRequest, VerifyRun
from ..retention import backup_prefix
from ..settings import Settings
from ..storage import Storage
from . import aging, destinations, instances, jobs, restore


class CatalogReporter:
    """An engine's progress, written to the catalog in short transactions of its own, under the run's lease:
    once the job is no longer this run's (reaped), nothing it reports lands (``services.jobs``)."""

    def __init__(self, catalog: Catalog, job_id: int, lease: str | None) -> None:
        self.catalog = catalog
        self.job_id = job_id
        self.lease = lease
        self._started: dict[int, float] = {}  # item id: when it started (this run's clock)

    def phase(self, name: str, percent: int | None = None) -> None:
        with self.catalog.transaction(write=True) as s:
            jobs.set_progress(s, self.job_id, name, percent, lease=self.lease)

    def items(self, names: list[tuple[str, str]]) -> list[int]:
        with self.catalog.transaction(write=True) as s:
            return jobs.add_items(s, self.job_id, names, lease=self.lease)

    def item_running(self, item_id: int, phase: str | None = None) -> None:
        self._started[item_id] = time.monotonic()
        self.item_update(item_id, status=ItemStatus.RUNNING, phase=phase, elapsed_ms=0)

    def item_done(self, item_id: int, nbytes: int, sha256: str, location: str) -> None:
        self.item_update(item_id, status=ItemStatus.COMPLETED, bytes=nbytes, sha256=sha256, location=location)

    def item_failed(self, item_id: int, error: str, status: ItemStatus = ItemStatus.FAILED) -> None:
        self.item_update(item_id, status=status, error=error)

    def progress(self, items: dict[int, int], phase: str, percent: int | None) -> None:
        """The bytes so far of the items in flight (with the milliseconds since each started) and the job's
        percent, in one transaction (about once a second per job: ``backup.progress.LiveProgress``)."""
        timed = {i: (n, self._elapsed_ms(i)) for i, n in items.items()}
        with self.catalog.transaction(write=True) as s:
            jobs.record_progress(s, self.job_id, timed, phase, percent, lease=self.lease)

    def item_update(self, item_id: int, **values: object) -> None:
        """An item that ends (any status but Running) loses its phase and keeps the seconds it ran."""
        if values.get("status", ItemStatus.RUNNING) != ItemStatus.RUNNING:
            values.setdefault("phase", None)
            if (elapsed := self._elapsed_ms(item_id)) is not None:
                values["elapsed_ms"] = elapsed
                self._started.pop(item_id, None)
        with self.catalog.transaction(write=True) as s:
            jobs.update_item(s, item_id, lease=self.lease, **values)

    def _elapsed_ms(self, item_id: int) -> int | None:
        started = self._started.get(item_id)
        return None if started is None else int((time.monotonic() - started) * 1000)

    def warn(self, message: str) -> None:
        with self.catalog.transaction(write=True) as s:
            jobs.add_warning(s, self.job_id, message, lease=self.lease)


@dataclass
class Outcome:
    status: JobStatus
    message: str
    record: Callable[[Session], None] | None = None  # runs in the transaction that ends the job
    queued_more: bool = False  # ``record`` queued further jobs (workers may want to look now)


@dataclass(frozen=True)
class RunContext:
    """What every run needs from the process: its settings, the catalog (for progress) and the keys."""

    settings: Settings
    catalog: Catalog
    sealer: Sealer


Run = Callable[[CancelToken, logging.Logger], Outcome]


def prepare(session: Session, job: Job, ctx: RunContext) -> Run:
    """The run of ``job`` (read in ``session``, the worker's transaction); it runs after that commits."""
    preparer = {JobType.BACKUP: _backup, JobType.RESTORE: _restore, JobType.VERIFY: _verify,
                JobType.DATA_AGING: _aging}[job.job_type]
    return preparer(session, job, ctx)


def _backup(session: Session, job: Job, ctx: RunContext) -> Run:
    inst, plan, job_id, lease = job.instance, job.instance.plan, job.id, job.lease_owner
    data_key, data_key_sealed = new_data_key(ctx.sealer) if plan.encrypt else (None, None)
    settings = ctx.settings
    req = BackupRequest(
        job_id=job_id,
        instance={"id": inst.id, "name": inst.name, "client": inst.cloud_account.name,
                  "host": inst.host, "port": inst.port},
        address=instances.address_of(inst, ctx.sealer, settings.connect_timeout_seconds, settings.target_policy),
        storage=destinations.open_plan(plan, ctx.sealer),
        prefix=backup_prefix(inst.id, job_id, dt.datetime.now(dt.UTC)),  # this run's own folder
        compression_level=plan.compression_level,
        parallelism=settings.dump_parallelism,
        pg_bin=settings.pg_bin,
        lock_wait_timeout=settings.lock_wait_seconds,
        compressor=settings.compressor,
        runtime_dir=settings.runtime_dir,
        data_key=data_key,
        data_key_sealed=data_key_sealed,
    )
    copies = destinations.copies_for(plan)
    instance_id, drill_every = inst.id, plan.drill_every

    def run(cancel: CancelToken, log: logging.Logger) -> Outcome:
        outcome = BackupRun(req, CatalogReporter(ctx.catalog, job_id, lease), cancel, log).run()
        manifest, manifest_sha = outcome.manifest, outcome.manifest_sha256
        if manifest is None or manifest_sha is None:
            return Outcome(outcome.status, outcome.message)

        def record(s: Session) -> None:
            point = RestorePoint(
                job_id=job_id, instance_id=instance_id, copies=destinations.link_copies(s, copies),
                prefix=req.prefix, manifest_sha256=manifest_sha,
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

        return Outcome(outcome.status, outcome.message, record, queued_more=True)

    return run


def _restore_point(session: Session, job: Job, sealer: Sealer) -> tuple[RestorePoint, Storage]:
    point = session.get(RestorePoint, job.restore_point_id) if job.restore_point_id else None
    if point is None:
        raise PgvaultError("the restore point of this job no longer exists")
    return point, destinations.open_point(point, sealer)


def _other_copies(point: RestorePoint, sealer: Sealer) -> list[Storage]:
    first = destinations.readable_copy(point)
    return [destinations.open_copy(c, sealer) for c in point.copies if c.state == "present" and c.id != first.id]


def _restore(session: Session, job: Job, ctx: RunContext) -> Run:
    point, storage = _restore_point(session, job, ctx.sealer)
    opts, settings, job_id, lease = job.options, ctx.settings, job.id, job.lease_owner
    req = RestoreRequest(
        job_id=job_id, attempt=job.attempts, storage=storage, prefix=point.prefix,
        manifest_sha256=point.manifest_sha256,
        address=instances.address_of(job.instance, ctx.sealer, settings.connect_timeout_seconds,
                                       settings.target_policy),
        items=[RestoreItem(i["source"], i["target"],
                           [tuple(t) for t in i["tables"]] if i["tables"] is not None else None)  # type: ignore[misc]
               for i in opts["items"]],
        overwrite=bool(opts.get("overwrite")), restore_globals=bool(opts.get("restore_globals")),
        ownership=bool(opts.get("ownership")), parallelism=int(opts.get("parallelism", 2)),
        pg_bin=settings.pg_bin, data_key_sealed=point.data_key_sealed, sealer=ctx.sealer,
        alternates=_other_copies(point, ctx.sealer), compressor=settings.compressor,
        runtime_dir=settings.runtime_dir,
    )

    def run(cancel: CancelToken, log: logging.Logger) -> Outcome:
        outcome = RestoreRun(req, CatalogReporter(ctx.catalog, job_id, lease), cancel, log).run()
        return Outcome(outcome.status, outcome.message)

    return run


def _verify(session: Session, job: Job, ctx: RunContext) -> Run:
    point, storage = _restore_point(session, job, ctx.sealer)
    settings, job_id, point_id, lease = ctx.settings, job.id, point.id, job.lease_owner
    address = None
    if job.options.get("target_instance_id") is not None:
        address = instances.address_of(job.instance, ctx.sealer, settings.connect_timeout_seconds,
                                       settings.target_policy)
    req = VerifyRequest(job_id=job_id, storage=storage, prefix=point.prefix,
                        manifest_sha256=point.manifest_sha256, drill=bool(job.options.get("drill")),
                        drill_address=address, scratch_dir=Path(tempfile.gettempdir()),
                        pg_bin=settings.pg_bin, pg_servers=settings.pg_server_dirs,
                        data_key_sealed=point.data_key_sealed, sealer=ctx.sealer, compressor=settings.compressor,
                        runtime_dir=settings.runtime_dir)

    def run(cancel: CancelToken, log: logging.Logger) -> Outcome:
        outcome = VerifyRun(req, CatalogReporter(ctx.catalog, job_id, lease), cancel, log).run()

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

        return Outcome(outcome.status, outcome.message, record)

    return run


def _aging(session: Session, job: Job, ctx: RunContext) -> Run:
    job_id, instance_id, lease = job.id, job.instance_id, job.lease_owner
    grace = ctx.settings.leftover_grace_seconds

    def run(cancel: CancelToken, log: logging.Logger) -> Outcome:
        report = aging.Aging(ctx.catalog, ctx.sealer, instance_id, log, grace_seconds=grace).run()
        reporter = CatalogReporter(ctx.catalog, job_id, lease)
        for left_by, location in report.leftovers:
            reporter.warn(f"removed the folder an unfinished run of backup job {left_by} left: {location}")
        for left_by, location in report.uploads:
            reporter.warn(f"aborted the unfinished upload a run of backup job {left_by} left: {location}")
        for notice in report.notices:
            reporter.warn(notice)
        for stray in report.strays:
            reporter.warn(f"stray backup folder (no catalog entry): {stray}")
        status = JobStatus.COMPLETED_WITH_ERRORS if report.errors else JobStatus.COMPLETED
        return Outcome(status, report.message)

    return run
