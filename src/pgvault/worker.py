"""The worker pool: threads that claim jobs from the catalog, dispatch them and end them.

It only claims (an atomic transition with a lease), heartbeats, dispatches and records the end; what a job
of each type does and changes is ``services/runs.py``. In the embedded default it lives inside ``pgvault
serve``; the claim is what lets several processes share one PostgreSQL catalog. A heartbeat renews the
leases of the jobs this process runs, turns a kill request recorded in the catalog into a cancel, stops a
job whose lease it could not renew in time (another node may reap it and run it again), and reaps jobs
whose worker died. At start, a pool whose node lock is held takes back at once the jobs an earlier
incarnation of its node was running (``node.py``).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .catalog.db import Catalog
from .catalog.models import Job
from .crypto import Sealer
from .domain.jobs import JobStatus
from .errors import PgvaultError
from .node import Node
from .pgtools.runner import CancelToken
from .services import jobs, notifications, runs
from .settings import Settings

log = logging.getLogger("pgvault.worker")


@dataclass
class _Running:
    cancel: CancelToken
    lease: str  # this claim's own lease token: a job reaped and claimed again is a different run
    shutdown: bool = False
    lost: bool = False  # its lease could not be renewed in time: it may already be someone else's
    renewed: float = field(default_factory=time.monotonic)  # the last renewal (or the claim)


class WorkerPool:
    def __init__(self, settings: Settings, catalog: Catalog, sealer: Sealer, node: Node) -> None:
        self.settings = settings
        self.catalog = catalog
        self.sealer = sealer
        self.node = node
        self.owner = node.incarnation
        self.reclaimed: list[int] = []
        self._context = runs.RunContext(settings, catalog, sealer)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: dict[int, _Running] = {}
        self._lock = threading.Lock()
        self.notify: Callable[[], None] = lambda: None  # wakes the notifier after a job end queued some

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        if self.node.sole and self.settings.workers:
            self._reclaim()
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

    def slots(self) -> tuple[int, int]:
        """(busy, total) job slots of this process (metrics)."""
        with self._lock:
            return len(self._running), self.settings.workers

    def wake(self) -> None:
        self._wake.set()

    def kill(self, job_id: int) -> None:
        """Stop a job this process is running at once (the heartbeat would see the catalog flag soon)."""
        with self._lock:
            running = self._running.get(job_id)
        if running is not None:
            running.cancel.cancel()

    def _reclaim(self) -> None:
        """The jobs an earlier incarnation of this node was running when it died: requeued (or ended) now,
        not after their leases. Its password files went with the sweep of the run folder (``node.py``)."""
        try:
            with self.catalog.transaction(write=True) as s:
                self.reclaimed = jobs.reclaim(s, self.node.prefix, self.owner + ":")
        except Exception:  # the lease reaper still gets them
            log.exception("could not take back the jobs of node %s's earlier incarnation", self.node.name)
            return
        if self.reclaimed:
            log.warning("took back the jobs node %s was running when it stopped: %s", self.node.name,
                        self.reclaimed)

    # -- loops ---------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            lease = self.node.lease()
            try:
                with self.catalog.transaction(write=True) as s:
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
                    with self.catalog.transaction(write=True) as s:
                        kill = jobs.renew_lease(s, job_id, state.lease, self.settings.job_lease_seconds)
                    state.renewed = time.monotonic()
                except LookupError:  # reaped: someone else may run it now
                    state.lost = kill = True
                except Exception:
                    log.exception("could not renew the lease of job %s", job_id)
                    # Stop before the lease runs out: past it, another node may reap the job and run it
                    # again, and two runs must never write at once (Data Aging counts on it).
                    kill = time.monotonic() - state.renewed > self.settings.job_lease_seconds - 2 * interval
                    if kill:
                        log.error("job %s stopped: its lease could not be renewed for %.0f s", job_id,
                                  time.monotonic() - state.renewed)
                        state.lost = True
                if kill:
                    state.cancel.cancel()
            now = dt.datetime.now(dt.UTC)
            if now - last_reap >= reap_every:
                last_reap = now
                try:
                    with self.catalog.transaction(write=True) as s:
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
            result = runs.Outcome(JobStatus.FAILED, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._running.pop(job_id, None)
        if state.lost:  # it is the reaper's now (the end could not be recorded under this lease anyway)
            job_log.warning("job %s lost its lease; its outcome (%s) is not recorded", job_id, result.status)
            return
        if state.shutdown and result.status == JobStatus.KILLED:
            self._requeue(job_id, lease)
            return
        queued = 0
        try:
            with self.catalog.transaction(write=True) as s:
                if jobs.finish(s, job_id, lease, result.status, result.message):
                    if result.record is not None:
                        result.record(s)
                    queued = notifications.job_ended(s, job_id)  # (under a savepoint: never fails the end)
        except Exception as exc:  # the outcome could not be recorded: the job must still end, and say so
            job_log.exception("could not record the end of job %s", job_id)
            with self.catalog.transaction(write=True) as s:
                if jobs.finish(s, job_id, lease, JobStatus.FAILED,
                               f"{result.message}; but its result could not be recorded: {type(exc).__name__}: {exc}"):
                    queued = notifications.job_ended(s, job_id)
            if queued:
                self.notify()
            return
        if queued:
            self.notify()
        job_log.info("job %s ended: %s (%s)", job_id, result.status, result.message)
        if result.queued_more:
            self.wake()

    def _requeue(self, job_id: int, lease: str) -> None:
        with self.catalog.transaction(write=True) as s:
            job = s.get(Job, job_id)
            if job is None or job.lease_owner != lease:
                return
            if job.kill_requested:
                jobs.finish(s, job_id, lease, JobStatus.KILLED, "killed")
            else:
                jobs.requeue(s, job_id, lease, "interrupted by a shutdown; it runs again at the next start")

    def _execute(self, job_id: int, cancel: CancelToken, job_log: logging.Logger) -> runs.Outcome:
        try:
            with self.catalog.transaction(write=True) as s:
                job = s.get(Job, job_id)
                assert job is not None
                run = runs.prepare(s, job, self._context)
        except PgvaultError as exc:  # what the job needs is gone or unreadable (its restore point, a key)
            return runs.Outcome(JobStatus.FAILED, exc.message)
        return run(cancel, job_log)
