"""The audit trail: who did what, from where, with which outcome (``catalog.models.AuditEvent``).

Requests are recorded by ``api.audit.AuditTrail`` (one ASGI middleware, driven by the route table), which
hands each event to an ``AuditWriter``: a thread of its own that appends the events in batches, one short
write transaction per batch, so that a flood of refused logins is a few transactions, not one each, and no
request holds a thread of the shared threadpool for its record. A successful request's answer waits for
the commit of its record (at most ``WAIT_SECONDS``): once a client has its answer, its action is in the
trail.
Commands that act on the catalog without the API (``pgvault keys``) call ``record`` in their own
transaction.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import getpass
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, delete, func, insert, or_, select
from sqlalchemy.orm import Session

from ..catalog.db import Catalog
from ..catalog.models import AuditEvent
from ..catalog.types import utcnow

log = logging.getLogger("pgvault.audit")
WAIT_SECONDS = 5.0  # the longest an answer waits for its record's commit (a catalog that is stuck)
BATCH = 500
SUCCESS, FAILURE = "success", "failure"
_t = AuditEvent.__table__


def event(*, method: str, action: str, route: str, resource: str, status: int, user_id: int | None = None,
          user_name: str | None = None, address: str | None = None, resource_id: str | None = None,
          params: dict[str, Any] | None = None, details: dict[str, Any] | None = None,
          at: dt.datetime | None = None) -> dict[str, Any]:
    """One record's row (the outcome follows from the status: below 400 is a success)."""
    return {"at": at or utcnow(), "user_id": user_id, "user_name": user_name and user_name[:255],
            "address": address and address[:64], "method": method[:10], "action": action[:100],
            "route": route[:255], "resource": resource[:64],
            "resource_id": None if resource_id is None else str(resource_id)[:255], "params": params or {},
            "status": status, "outcome": SUCCESS if status < 400 else FAILURE, "details": details or {}}


def record(session: Session, row: dict[str, Any]) -> None:
    session.execute(insert(AuditEvent), [row])


def local_actor() -> str:
    """Who runs a command on this host (``pgvault keys``): the operating system's login name."""
    try:
        return "os:" + getpass.getuser()
    except (KeyError, OSError):
        return "os:?"


class AuditWriter:
    """Appends the events handed to ``submit`` on a thread of its own, in batches."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._queue: queue.SimpleQueue[tuple[dict[str, Any] | None, concurrent.futures.Future[bool]] | None] = \
            queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.failed = 0  # events that could not be written (each also logged)

    def submit(self, row: dict[str, Any] | None) -> concurrent.futures.Future[bool]:
        """Queue one event; the future is True once it is committed (False if it could not be written).
        ``None`` queues nothing: its future is done once everything queued before it is written."""
        fut: concurrent.futures.Future[bool] = concurrent.futures.Future()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="pgvault-audit", daemon=True)
                self._thread.start()
        self._queue.put((row, fut))
        return fut

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._write(batch)
            if stop:
                return

    def flush(self, timeout: float = WAIT_SECONDS) -> None:
        """Wait until what this process queued so far is written (a reader of the trail sees it)."""
        try:
            self.submit(None).result(timeout)
        except concurrent.futures.TimeoutError:
            log.warning("the audit trail is read with records still being written")

    def _write(self, batch: list[tuple[dict[str, Any] | None, concurrent.futures.Future[bool]]]) -> None:
        rows = [row for row, _ in batch if row is not None]
        try:
            if rows:
                with self.catalog.transaction(write=True) as s:
                    s.execute(insert(AuditEvent), rows)
            ok = True
        except Exception:
            self.failed += len(rows)
            first = "; ".join(f"{r['route']} {r['status']} by {r['user_name']}" for r in rows[:5])
            log.exception("could not write %d audit events: %s", len(rows), first)
            ok = False
        for _, fut in batch:
            fut.set_result(ok)

    def close(self, timeout: float = 10) -> None:
        """Write what is queued, then stop."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)


# -- reading ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Filters:
    user: str | None = None  # a user name, or a user id
    action: str | None = None  # the action (endpoint name) or the route template, exactly
    resource: str | None = None
    resource_id: str | None = None
    outcome: str | None = None  # success | failure
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def _where(stmt: Select[Any], f: Filters) -> Select[Any]:
    conds = []
    if f.user is not None:
        by_id = f.user.isdigit() and len(f.user) <= 12
        conds.append(or_(_t.c.user_name == f.user, _t.c.user_id == int(f.user)) if by_id
                     else _t.c.user_name == f.user)
    if f.action is not None:
        conds.append(or_(_t.c.action == f.action, _t.c.route == f.action))
    if f.resource is not None:
        conds.append(func.lower(_t.c.resource) == f.resource.lower())
    if f.resource_id is not None:
        conds.append(_t.c.resource_id == f.resource_id)
    if f.outcome is not None:
        conds.append(_t.c.outcome == f.outcome)
    if f.since is not None:
        conds.append(_t.c.at >= f.since)
    if f.until is not None:
        conds.append(_t.c.at < f.until)
    return stmt.where(and_(*conds)) if conds else stmt


def page(session: Session, f: Filters, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """The events matching ``f``, newest first, and how many match in all."""
    total = session.scalar(_where(select(func.count()).select_from(_t), f)) or 0
    rows = session.execute(_where(select(_t), f).order_by(_t.c.at.desc(), _t.c.id.desc())
                           .offset(offset).limit(limit)).mappings().all()
    return [wire(r) for r in rows], total


def after(session: Session, f: Filters, after_id: int, limit: int) -> list[dict[str, Any]]:
    """The next ``limit`` events matching ``f`` after id ``after_id``, oldest first (an export's batch)."""
    rows = session.execute(_where(select(_t), f).where(_t.c.id > after_id).order_by(_t.c.id)
                           .limit(limit)).mappings().all()
    return [wire(r) for r in rows]


def wire(r: Any) -> dict[str, Any]:
    """An event as the API answers it (``schemas.audit.AuditRecord``)."""
    at: dt.datetime = r["at"]
    return {"id": r["id"], "time": int(at.timestamp()), "timeIso": at.astimezone(dt.UTC).isoformat(),
            "user": {"userId": r["user_id"], "userName": r["user_name"]}, "address": r["address"],
            "method": r["method"], "action": r["action"], "route": r["route"], "resource": r["resource"],
            "resourceId": r["resource_id"], "parameters": r["params"] or {}, "status": r["status"],
            "outcome": r["outcome"], "details": r["details"] or {}}


def prune(session: Session, before: dt.datetime) -> int:
    """Delete the events older than ``before`` (Data Aging: ``PGVAULT_AUDIT_RETENTION_DAYS``)."""
    result = session.execute(delete(AuditEvent).where(AuditEvent.at < before))
    return int(getattr(result, "rowcount", 0) or 0)
