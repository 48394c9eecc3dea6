"""The Data Aging job of one instance: drop restore point copies past their destination's retention
(rules in ``pgvault.retention``), crash-safely; remove the folders that crashed or failed runs of its
backups left (``retention.leftover``) and abort the S3 multipart uploads they left unfinished
(``retention.stale_upload``); report other stray backup folders."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..catalog.db import Catalog
from ..catalog.models import Instance, Job, RestorePoint, RestorePointCopy
from ..crypto import Sealer
from ..domain.jobs import ACTIVE, QUEUED, READERS, JobStatus, JobType
from ..retention import FolderJob, PointFacts, Rules, expired, folder_job_id, leftover, stale_upload, upload_folder
from ..storage import Storage, StorageDenied, StorageError, Upload
from . import audit
from .destinations import forget_point, open_copy, open_destination


@dataclass
class AgingReport:
    deleted_copies: int = 0
    deleted_points: int = 0
    strays: list[str] = field(default_factory=list)
    leftovers: list[tuple[int, str]] = field(default_factory=list)  # (job id, location) removed
    uploads: list[tuple[int, str]] = field(default_factory=list)  # (job id, object) whose unfinished upload was aborted
    notices: list[str] = field(default_factory=list)  # warnings that are no failure (keys without a right)
    errors: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        parts = [f"{self.deleted_copies} restore point copies deleted ({self.deleted_points} restore points gone)"]
        if self.leftovers:
            parts.append(f"{len(self.leftovers)} folders left by unfinished backup runs removed")
        if self.uploads:
            parts.append(f"{len(self.uploads)} unfinished uploads of ended backup runs aborted")
        if self.strays:
            parts.append(f"{len(self.strays)} stray backup folders without a catalog entry: {', '.join(self.strays)}")
        if self.errors:
            parts.append("errors: " + "; ".join(self.errors))
        return "; ".join(parts)


def queue_aging(session: Session, inst: Instance) -> tuple[Job, bool]:
    """The instance's waiting aging job, queued if it has none (one waiting is enough), and whether it is
    new."""
    waiting = session.scalar(select(Job).where(Job.instance_id == inst.id, Job.job_type == JobType.DATA_AGING,
                                               Job.status == JobStatus.WAITING))
    if waiting is not None:
        return waiting, False
    job = Job(job_type=JobType.DATA_AGING, backup_level="", status=JobStatus.WAITING, phase=QUEUED,
              instance_id=inst.id, subclient_id=inst.subclients[0].id, trigger="auto")
    session.add(job)
    session.flush()
    return job, True


def prune_audit(session: Session, before: dt.datetime) -> int:
    """The audit trail's share of Data Aging: records older than ``before`` go
    (``PGVAULT_AUDIT_RETENTION_DAYS``; the scheduler calls it at most once an hour)."""
    return audit.prune(session, before)


def queue_periodic(session: Session, now: dt.datetime, every: dt.timedelta) -> list[int]:
    """Aging jobs for instances that have restore points and have not been aged within ``every``: an
    instance whose backups stopped (or that was deleted, keeping its backups) still ages them."""
    with_points = set(session.scalars(select(RestorePoint.instance_id).distinct()))
    if not with_points:
        return []
    recent = set(session.scalars(select(Job.instance_id).where(
        Job.job_type == JobType.DATA_AGING, Job.instance_id.in_(with_points),
        (Job.status.in_(ACTIVE)) | (Job.created_at >= now - every))))
    queued = []
    for instance_id in sorted(with_points - recent):
        inst = session.get(Instance, instance_id)
        if inst is not None and inst.subclients:
            job, new = queue_aging(session, inst)
            if new:
                queued.append(job.id)
    return queued


_UPLOAD_RIGHTS = ("unfinished uploads are left to the bucket's lifecycle rule; to have Data Aging abort them, "
                  "allow s3:ListBucketMultipartUploads and s3:AbortMultipartUpload")


def _key(copy: RestorePointCopy) -> str:
    return f"{copy.kind}:{json.dumps(copy.config, sort_keys=True)}"


class Aging:
    def __init__(self, catalog: Catalog, sealer: Sealer, instance_id: int, log: logging.Logger,
                 now: dt.datetime | None = None, grace_seconds: float = 900) -> None:
        self.catalog = catalog
        self.sealer = sealer
        self.instance_id = instance_id
        self.log = log
        self.grace_seconds = grace_seconds  # PGVAULT_LEFTOVER_GRACE_SECONDS
        self.now = now or dt.datetime.now(dt.UTC)
        self.report = AgingReport()

    def run(self) -> AgingReport:
        self._finish_interrupted()
        self._expire()
        self._sweep()
        return self.report

    # -- deletion, in three committed steps -------------------------------------------------------
    def _drop(self, copy_id: int, *, finishing: bool = False) -> None:
        with self.catalog.transaction(write=True) as s:
            copy = s.get(RestorePointCopy, copy_id)
            if copy is None:
                return
            if not finishing and s.scalar(select(Job.id).where(  # re-checked under the write lock
                    Job.restore_point_id == copy.restore_point_id, Job.job_type.in_(READERS),
                    Job.status.in_([JobStatus.WAITING, JobStatus.RUNNING]))) is not None:
                self.log.info("kept restore point %s: a restore or verification reads it", copy.restore_point_id)
                return
            copy.state = "deleting"
            storage, prefix = open_copy(copy, self.sealer), copy.restore_point.prefix
        try:
            storage.delete_prefix(prefix)
        except (StorageError, OSError) as exc:  # the mark stays; the next run tries again
            self.report.errors.append(f"{prefix}: {exc}")
            return
        with self.catalog.transaction(write=True) as s:
            copy = s.get(RestorePointCopy, copy_id)
            if copy is None:
                return
            point = copy.restore_point
            s.delete(copy)
            s.flush()
            self.report.deleted_copies += 1
            if not s.scalar(select(RestorePointCopy.id).where(RestorePointCopy.restore_point_id == point.id)):
                forget_point(s, point)
                self.report.deleted_points += 1
        self.log.info("deleted %s", prefix)

    def _finish_interrupted(self) -> None:
        with self.catalog.transaction(write=True) as s:
            ids = s.scalars(select(RestorePointCopy.id).join(RestorePoint)
                            .where(RestorePoint.instance_id == self.instance_id,
                                   RestorePointCopy.state == "deleting")).all()
        for copy_id in ids:
            self.log.info("finishing an interrupted deletion (copy %s)", copy_id)
            self._drop(copy_id, finishing=True)

    def _expire(self) -> None:
        with self.catalog.transaction(write=True) as s:
            inst = s.get(Instance, self.instance_id)
            assert inst is not None
            plan = inst.plan
            rows = s.execute(
                select(RestorePoint, Job).join(Job, Job.id == RestorePoint.job_id)
                .where(RestorePoint.instance_id == inst.id)
            ).all()
            readers = set(s.scalars(select(Job.restore_point_id).where(
                Job.job_type.in_(READERS), Job.status.in_([JobStatus.WAITING, JobStatus.RUNNING]),
                Job.restore_point_id.is_not(None))))
            groups: dict[str, list[tuple[int, PointFacts]]] = defaultdict(list)
            for point, job in rows:
                for copy in point.copies:
                    if copy.state != "present":
                        continue
                    groups[_key(copy)].append((copy.id, PointFacts(
                        id=point.id, time=job.started_at or point.created_at,
                        good=job.status == JobStatus.COMPLETED and point.verify_status != "Failed",
                        in_use=point.id in readers, days=copy.retention_days,
                    )))
            rules = Rules(days=plan.retention_days, keep_min=plan.keep_min, daily=plan.gfs_daily,
                          weekly=plan.gfs_weekly, monthly=plan.gfs_monthly, timezone=plan.timezone)
        for members in groups.values():
            by_point = {facts.id: copy_id for copy_id, facts in members}
            for point_id in expired([f for _, f in members], rules, self.now):
                self._drop(by_point[point_id])

    # -- leftovers and strays ----------------------------------------------------------------------
    def _sweep(self) -> None:
        """List the backup folders of this instance in its destinations and in its copies' locations; remove
        those that runs of its backups left without a restore point, once no run can write there
        (``retention.leftover``); report the others that no restore point knows and no live job writes."""
        with self.catalog.transaction(write=False) as s:
            inst = s.get(Instance, self.instance_id)
            assert inst is not None
            places: dict[str, Storage] = {}
            for dest in inst.plan.destinations:
                key = f"{dest.kind}:{json.dumps(dest.config, sort_keys=True)}"
                places.setdefault(key, open_destination(dest, self.sealer))
            for copy in s.scalars(select(RestorePointCopy).join(RestorePoint)
                                  .where(RestorePoint.instance_id == inst.id)):
                if _key(copy) not in places:
                    places[_key(copy)] = open_copy(copy, self.sealer)
        listed: list[tuple[Storage, str]] = []
        unfinished: list[tuple[Storage, Upload]] = []
        for storage in places.values():
            try:
                listed += [(storage, f) for f in storage.folders(f"instance-{self.instance_id}")]
                unfinished += [(storage, u) for u in storage.incomplete_uploads(f"instance-{self.instance_id}")]
            except StorageDenied as exc:  # keys that may write but not list uploads: the lifecycle rule's job
                self.report.notices.append(f"{exc} ({_UPLOAD_RIGHTS})")
            except StorageError as exc:
                self.report.errors.append(str(exc))
        # The catalog is read after the listing: a job that ends meanwhile is seen with its restore point.
        ids = {i for _, f in listed if (i := folder_job_id(f)) is not None}
        ids |= {i for _, u in unfinished if (i := folder_job_id(upload_folder(u.key))) is not None}
        with self.catalog.transaction(write=False) as s:
            known = set(s.scalars(select(RestorePoint.prefix).where(RestorePoint.instance_id == self.instance_id)))
            rows = s.execute(select(Job.id, Job.instance_id, Job.job_type, Job.status, Job.started_at, Job.ended_at,
                                    RestorePoint.prefix)
                             .outerjoin(RestorePoint, RestorePoint.job_id == Job.id)
                             .where(Job.id.in_(ids))).all() if ids else []
        facts = {r[0]: FolderJob(instance_id=r[1], is_backup=r[2] == JobType.BACKUP, finished=JobStatus(r[3]).finished,
                                 started_at=r[4], ended_at=r[5], restore_point_prefix=r[6]) for r in rows}
        grace = dt.timedelta(seconds=self.grace_seconds)
        for storage, folder in listed:
            job_id = folder_job_id(folder)
            job = facts.get(job_id) if job_id is not None else None
            if folder in known or (job is not None and not job.finished and job.instance_id == self.instance_id):
                continue  # a restore point's, or a live job's
            if leftover(folder, job, self.now, grace):
                try:
                    storage.delete_prefix(folder)
                except (StorageError, OSError) as exc:  # the next run tries again
                    self.report.errors.append(f"{storage.uri(folder)}: {exc}")
                    continue
                assert job_id is not None
                self.report.leftovers.append((job_id, storage.uri(folder)))
                self.log.info("removed %s, left by a run of backup job %s", storage.uri(folder), job_id)
            elif job is None or job.ended_at is None or job.ended_at + grace <= self.now:
                self.report.strays.append(storage.uri(folder))
        for storage, upload in unfinished:
            job_id = folder_job_id(upload_folder(upload.key))
            job = facts.get(job_id) if job_id is not None else None
            if job is None or job.instance_id != self.instance_id:
                continue  # not a run of this instance's backups that this catalog knows: never touched
            if not stale_upload(upload.key, upload.initiated, job, self.now, grace):
                continue  # a live run's, or one that may still be stopping
            try:
                storage.abort_upload(upload)
            except StorageDenied as exc:
                self.report.notices.append(f"{exc} ({_UPLOAD_RIGHTS})")
                continue
            except StorageError as exc:  # the next run tries again
                self.report.errors.append(str(exc))
                continue
            assert job_id is not None
            self.report.uploads.append((job_id, storage.uri(upload.key)))
            self.log.info("aborted the unfinished upload of %s, left by a run of backup job %s",
                          storage.uri(upload.key), job_id)
