"""Notifications in the catalog: targets (an apprise URL sealed like a password), the outbox and the RPO
breach state.

Events are written to the outbox (``notifications``: one row per event and target) in the transaction that
saw them: the one that ends a job (``job_ended``), a scheduler tick's RPO check (``check_rpo``). So none is
lost to a crash between the job's end and the send, and none is sent for a job whose end rolled back. The
notifier thread (``notifier.py``) sends them after the commit, with retries, and records each outcome on
the target (its status, and the counters ``GET /metrics`` reads). Writing events never fails the
transaction that carries them: they are written under a savepoint, and a failure is logged and dropped.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from ..catalog.models import (
    CloudAccount,
    Instance,
    Job,
    JobItem,
    Notification,
    NotificationTarget,
    Plan,
    RestorePoint,
    RpoBreach,
)
from ..catalog.types import utcnow
from ..crypto import Sealer
from ..domain.jobs import ItemStatus, JobStatus, JobType
from ..domain.notifications import SUBSCRIBABLE, Event, destination_hosts, redact, scheme_of
from ..domain.schedule import UNSCHEDULABLE, Last, Schedule, due_at
from ..domain.targets import TargetPolicy
from ..errors import BadRequest, Conflict, NotFound, clip, shown

log = logging.getLogger("pgvault.notifications")

URL_CONTEXT = "notification.url"  # an AEAD context label
ERROR_CHARS = 1000
_NOTIFIED_JOBS = (JobType.BACKUP, JobType.RESTORE, JobType.VERIFY)
_BAD = (JobStatus.FAILED, JobStatus.COMPLETED_WITH_ERRORS)


# -- targets -------------------------------------------------------------------------------------------

def check_url(url: str, policy: TargetPolicy) -> None:
    """A URL apprise can send to, or a 400 that names its scheme (never the URL: it may hold a password).
    With ``PGVAULT_ALLOWED_TARGETS`` set, the servers it names must be allowed, and a URL that names none
    (slack://, tgram://: the service's own servers) is refused: pgvault cannot tell where it would go."""
    import apprise

    if not isinstance(url, str) or "://" not in url or len(url) > 4096:
        raise BadRequest("url must be an apprise URL such as mailto://user:password@smtp.example.com, "
                         "json://host/path or slack://...")
    try:
        plugin = apprise.Apprise.instantiate(url)
    except Exception:  # (a plugin refusing what it parsed, in its own way)
        plugin = None
    if plugin is None:
        raise BadRequest(f"url: apprise cannot send to this URL (scheme {shown(scheme_of(url))}); see "
                         "https://github.com/caronc/apprise/wiki for the URL of each service")
    if not policy.open:
        hosts = destination_hosts(url)
        if hosts is None:
            raise BadRequest(f"url: with PGVAULT_ALLOWED_TARGETS set, only URLs that name their server "
                             f"(mailto://, json://, ...) are accepted, not {shown(scheme_of(url))}://")
        for host in hosts:
            if not policy.allows(host):
                raise BadRequest(f"url: {shown(host)} is not among the servers pgvault may reach "
                                 f"(PGVAULT_ALLOWED_TARGETS: {policy.describe()})")


def check_events(events: list[str]) -> list[str]:
    wanted = [str(e) for e in SUBSCRIBABLE]
    bad = [e for e in events if e not in wanted]
    if bad:
        raise BadRequest(f"events: {shown(bad)} not among {', '.join(wanted)}")
    if not events:
        raise BadRequest(f"events: name at least one of {', '.join(wanted)}")
    return sorted(set(events), key=wanted.index)


def resolve_plan(session: Session, plan_id: int | None, plan_name: str | None) -> Plan | None:
    if plan_id is not None:
        plan = session.get(Plan, plan_id)
        if plan is None:
            raise NotFound(f"plan {plan_id} does not exist")
        if plan_name is not None and plan.name_key != plan_name.lower():
            raise BadRequest(f"plan {plan_id} is not named {shown(plan_name)}")
        return plan
    if plan_name is not None:
        plan = session.scalar(select(Plan).where(Plan.name_key == plan_name.lower()))
        if plan is None:
            raise NotFound(f"plan {shown(plan_name)} does not exist")
        return plan
    return None


def create(session: Session, sealer: Sealer, *, name: str, url: str, events: list[str], plan: Plan | None,
           enabled: bool = True) -> NotificationTarget:
    if not name or len(name) > 255:
        raise BadRequest("name is required (at most 255 characters)")
    if session.scalar(select(NotificationTarget.id).where(NotificationTarget.name_key == name.lower())):
        raise Conflict(f"a notification target named {shown(name)} already exists")
    target = NotificationTarget(
        name=name, name_key=name.lower(), url_sealed=sealer.seal(url.encode(), URL_CONTEXT),
        url_redacted=redact(url), events=check_events(events), plan_id=plan.id if plan else None, enabled=enabled,
        sent=0, failures=0, consecutive_failures=0, abandoned=0, dropped=0,
    )
    session.add(target)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"a notification target named {shown(name)} already exists") from None
    return target


def get(session: Session, target_id: int) -> NotificationTarget:
    target = session.get(NotificationTarget, target_id)
    if target is None:
        raise NotFound(f"notification target {target_id} does not exist")
    return target


def list_all(session: Session) -> list[NotificationTarget]:
    return list(session.scalars(select(NotificationTarget).order_by(NotificationTarget.id)))


def rename(session: Session, target: NotificationTarget, name: str) -> None:
    if not name or len(name) > 255:
        raise BadRequest("name is required (at most 255 characters)")
    other = session.scalar(select(NotificationTarget.id).where(NotificationTarget.name_key == name.lower()))
    if other is not None and other != target.id:
        raise Conflict(f"a notification target named {shown(name)} already exists")
    target.name, target.name_key = name, name.lower()


def set_url(target: NotificationTarget, sealer: Sealer, url: str) -> None:
    target.url_sealed = sealer.seal(url.encode(), URL_CONTEXT)
    target.url_redacted = redact(url)
    target.consecutive_failures = 0


def url_of(target: NotificationTarget, sealer: Sealer) -> str:
    return sealer.open(target.url_sealed, URL_CONTEXT).decode()


def pending_counts(session: Session) -> dict[int, int]:
    rows = session.execute(select(Notification.target_id, func.count()).group_by(Notification.target_id))
    return {tid: n for tid, n in rows}


# -- events into the outbox ----------------------------------------------------------------------------

def _queue(session: Session, event: Event, payload: dict[str, Any], plan_id: int | None) -> int:
    targets = session.execute(
        select(NotificationTarget.id, NotificationTarget.events, NotificationTarget.plan_id)
        .where(NotificationTarget.enabled.is_(True))).all()
    n = 0
    now = utcnow()
    for tid, events, scope in targets:
        if str(event) in (events or []) and (scope is None or scope == plan_id):
            session.add(Notification(target_id=tid, event=str(event), payload=payload, created_at=now,
                                     attempts=0, next_attempt_at=now))
            n += 1
    return n


def _safely(session: Session, what: str, fn: Any, *args: Any) -> int:
    """Run ``fn`` under a savepoint: whatever goes wrong in it, the caller's transaction (a job's end) goes
    on without its notification."""
    try:
        with session.begin_nested():
            return int(fn(session, *args) or 0)
    except SQLAlchemyError:
        log.exception("could not record the notification of %s; it is not sent", what)
        return 0


def job_ended(session: Session, job_id: int) -> int:
    """In the transaction that ended job ``job_id``: queue ``job_failed`` (a backup, restore or verification
    that Failed or completed with errors) or ``drill_failed`` (a drill's verification that did). Returns the
    deliveries queued."""
    return _safely(session, f"job {job_id}", _job_ended, job_id)


def _job_ended(session: Session, job_id: int) -> int:
    job = session.get(Job, job_id)
    if job is None or job.job_type not in _NOTIFIED_JOBS:
        return 0
    drill = job.job_type == JobType.VERIFY and bool((job.options or {}).get("drill"))
    point = session.get(RestorePoint, job.restore_point_id) if job.restore_point_id else None
    drill_failed = drill and (job.status in _BAD or (point is not None and point.drill_status == "Failed"))
    if job.status not in _BAD and not drill_failed:
        return 0
    if not session.scalar(select(func.count()).select_from(NotificationTarget)
                          .where(NotificationTarget.enabled.is_(True))):
        return 0
    inst = job.instance
    if job.job_type == JobType.VERIFY and point is not None and point.instance_id != inst.id:
        # a drill on another instance: the backup that failed it is the source's (the plan, the people)
        inst = session.get(Instance, point.instance_id) or inst
    failed = [{"name": i.name, "status": str(i.status), "error": clip(i.error or "", ERROR_CHARS)}
              for i in session.scalars(select(JobItem).where(
                  JobItem.job_id == job_id,
                  JobItem.status.in_((ItemStatus.FAILED, ItemStatus.COMPLETED_WITH_ERRORS))).order_by(JobItem.id))]
    message = job.message or ""
    if drill and point is not None and point.drill_message and point.drill_status == "Failed":
        message = f"{message}; drill: {point.drill_message}" if message else point.drill_message
    payload = {
        "job_id": job.id, "job_type": str(job.job_type), "status": str(job.status),
        "message": clip(message, ERROR_CHARS * 2), "instance": inst.name, "instance_id": inst.id,
        "cloud_account": inst.cloud_account.name, "plan": inst.plan.name, "databases": failed,
        "restored_on": job.instance.name if job.instance_id != inst.id else None,
        "ended_at": job.ended_at.isoformat() if job.ended_at else None,
    }
    return _queue(session, Event.DRILL_FAILED if drill_failed else Event.JOB_FAILED, payload, inst.plan_id)


# -- RPO breaches ----------------------------------------------------------------------------------------

def check_rpo(session: Session, now: dt.datetime, grace: dt.timedelta) -> tuple[list[int], list[int]]:
    """Compare every live instance with its plan's RPO at ``now`` (its newest restore point's backup start
    against the plan's due time, as ``pgvault_instance_rpo_breached`` does, plus ``grace`` so that the
    minutes a due backup takes to run are not a breach), record the change of state per instance, and queue
    ``rpo_breach`` when an instance goes past it and ``rpo_recovered`` when it comes back: once each.
    Returns (breached, recovered) instance ids."""
    last_good = (select(RestorePoint.instance_id, func.max(RestorePoint.id).label("point_id"))
                 .group_by(RestorePoint.instance_id).subquery())
    rows = session.execute(
        select(Instance.id, Instance.name, CloudAccount.name, Instance.created_at, Instance.plan_id, Plan,
               Job.started_at)
        .join(CloudAccount, CloudAccount.id == Instance.cloud_account_id).join(Plan, Plan.id == Instance.plan_id)
        .outerjoin(last_good, last_good.c.instance_id == Instance.id)
        .outerjoin(RestorePoint, RestorePoint.id == last_good.c.point_id)
        .outerjoin(Job, Job.id == RestorePoint.job_id)
        .where(Instance.deleted_at.is_(None), Instance.id != 1)).all()
    state = {b.instance_id: b for b in session.scalars(select(RpoBreach))}
    breached: list[int] = []
    recovered: list[int] = []
    live = set()
    for iid, name, account, created, plan_id, plan, started in rows:
        live.add(iid)
        try:
            due = due_at(Schedule.of(plan), created, Last(started, None) if started else None, False, None)
        except UNSCHEDULABLE:
            continue
        base = {"instance": name, "instance_id": iid, "cloud_account": account, "plan": plan.name,
                "rpo": _rpo_words(plan), "last_backup": started.isoformat() if started else None}
        known = state.get(iid)
        if now > due + grace and known is None:
            session.add(RpoBreach(instance_id=iid, since=due, noticed_at=now))
            last = session.execute(select(Job.id, Job.status, Job.message).where(
                Job.instance_id == iid, Job.job_type == JobType.BACKUP).order_by(Job.id.desc()).limit(1)).first()
            payload = {**base, "since": due.isoformat(), "noticed_at": now.isoformat()}
            if last is not None:
                payload |= {"last_job_id": last[0], "last_job_status": str(last[1]),
                            "last_job_message": clip(last[2] or "", ERROR_CHARS)}
            _safely(session, f"the RPO breach of instance {iid}", _queue_event, Event.RPO_BREACH, payload, plan_id)
            breached.append(iid)
        elif now <= due and known is not None:
            session.delete(known)
            payload = {**base, "since": known.since.isoformat(), "recovered_at": now.isoformat()}
            _safely(session, f"the RPO recovery of instance {iid}", _queue_event, Event.RPO_RECOVERED, payload,
                    plan_id)
            recovered.append(iid)
    for iid, known in state.items():  # deleted instances: their state goes, without a notification
        if iid not in live:
            session.delete(known)
    session.flush()
    return breached, recovered


def _queue_event(session: Session, event: Event, payload: dict[str, Any], plan_id: int | None) -> int:
    return _queue(session, event, payload, plan_id)


def _rpo_words(plan: Plan) -> str:
    if plan.schedule_kind == "cron":
        return f"cron {plan.cron} ({plan.timezone})"
    minutes = plan.rpo_minutes
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 and minutes % 60 else (
        f"{minutes // 60} h" if minutes >= 60 else f"{minutes} min")


# -- the outbox, for the notifier ----------------------------------------------------------------------

def due_deliveries(session: Session, now: dt.datetime, limit: int) -> list[tuple[int, dt.datetime]]:
    """(id, next_attempt_at) of deliveries due at ``now``, oldest first."""
    return [(i, t) for i, t in session.execute(
        select(Notification.id, Notification.next_attempt_at).where(Notification.next_attempt_at <= now)
        .order_by(Notification.id).limit(limit))]


def claim(session: Session, delivery_id: int, seen: dt.datetime, until: dt.datetime) -> Notification | None:
    """Take a delivery for one attempt (compare-and-set on its due time, so that two notifiers sharing a
    catalog never both send it); until ``until`` no one else will. None if another took it."""
    done = session.execute(update(Notification).where(Notification.id == delivery_id,
                                                      Notification.next_attempt_at == seen)
                           .values(next_attempt_at=until, attempts=Notification.attempts + 1)
                           .execution_options(synchronize_session=False))
    if done.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.get(Notification, delivery_id)


def record_sent(session: Session, delivery_id: int, target_id: int, now: dt.datetime) -> None:
    session.execute(delete(Notification).where(Notification.id == delivery_id))
    session.execute(update(NotificationTarget).where(NotificationTarget.id == target_id).values(
        sent=NotificationTarget.sent + 1, consecutive_failures=0, last_success_at=now))


def record_failed(session: Session, delivery_id: int, target_id: int, error: str, now: dt.datetime, *,
                  retry_at: dt.datetime | None) -> None:
    """One failed attempt: retried at ``retry_at``, or given up (None)."""
    values: dict[str, Any] = {"failures": NotificationTarget.failures + 1,
                              "consecutive_failures": NotificationTarget.consecutive_failures + 1,
                              "last_error": clip(error, ERROR_CHARS), "last_error_at": now}
    if retry_at is None:
        session.execute(delete(Notification).where(Notification.id == delivery_id))
        values["abandoned"] = NotificationTarget.abandoned + 1
    else:
        session.execute(update(Notification).where(Notification.id == delivery_id)
                        .values(next_attempt_at=retry_at).execution_options(synchronize_session=False))
    session.execute(update(NotificationTarget).where(NotificationTarget.id == target_id).values(**values))


def record_test(session: Session, target_id: int, error: str | None, now: dt.datetime) -> None:
    if error is None:
        session.execute(update(NotificationTarget).where(NotificationTarget.id == target_id).values(
            consecutive_failures=0, last_success_at=now))
    else:
        session.execute(update(NotificationTarget).where(NotificationTarget.id == target_id).values(
            failures=NotificationTarget.failures + 1,
            consecutive_failures=NotificationTarget.consecutive_failures + 1,
            last_error=clip(error, ERROR_CHARS), last_error_at=now))


def prune(session: Session, backlog: int) -> dict[int, int]:
    """Keep at most ``backlog`` deliveries waiting per target: the oldest beyond it are dropped and counted
    on the target (a receiver down for days must not grow the catalog without end)."""
    over = session.execute(select(Notification.target_id, func.count()).group_by(Notification.target_id)
                           .having(func.count() > backlog)).all()
    dropped: dict[int, int] = {}
    for target_id, count in over:
        excess = count - backlog
        ids = list(session.scalars(select(Notification.id).where(Notification.target_id == target_id)
                                   .order_by(Notification.id).limit(excess)))
        session.execute(delete(Notification).where(Notification.id.in_(ids)))
        session.execute(update(NotificationTarget).where(NotificationTarget.id == target_id)
                        .values(dropped=NotificationTarget.dropped + len(ids)))
        dropped[target_id] = len(ids)
    return dropped


def outcome_counts(session: Any) -> list[tuple[str, int, int, int, int]]:
    """(target name, sent, failed attempts, abandoned, dropped) of every target, for ``GET /metrics``."""
    rows = session.execute(select(NotificationTarget.name, NotificationTarget.sent, NotificationTarget.failures,
                                  NotificationTarget.abandoned, NotificationTarget.dropped)
                           .order_by(NotificationTarget.id))
    return [tuple(r) for r in rows]

