"""The notification outbox and the RPO breach state on both catalog dialects, in process, with an injected
clock and a sender that records (tests/test_notifications.py sends for real): which targets an event
reaches, that writing it never fails a job's end, retries with backoff, giving up, the bounded backlog,
one claim per delivery, and one notification per breach and per recovery."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from sqlalchemy import func, select, text
from tests.test_catalog import make_instance

from pgvault.catalog.db import Catalog
from pgvault.catalog.models import Instance, Job, JobItem, Notification, NotificationTarget, Plan, RestorePoint
from pgvault.catalog.types import utcnow
from pgvault.crypto import Sealer
from pgvault.domain.jobs import ItemStatus, JobStatus
from pgvault.domain.notifications import destination_hosts, redact, scrub
from pgvault.domain.targets import TargetPolicy
from pgvault.errors import BadRequest
from pgvault.notifier import Notifier
from pgvault.services import jobs, notifications
from pgvault.settings import Settings

SEALER = Sealer(os.urandom(32))


def target(cat: Catalog, name: str, *, events: list[str] | None = None, plan: str | None = None,
           enabled: bool = True) -> int:
    with cat.transaction(write=True) as s:
        p = s.scalar(select(Plan).where(Plan.name_key == plan)) if plan else None
        t = notifications.create(s, SEALER, name=name, url=f"json://u:Secret-{name}@127.0.0.1:9/{name}",
                                 events=events or ["job_failed", "rpo_breach", "rpo_recovered", "drill_failed"],
                                 plan=p, enabled=enabled)
        return t.id


def failed_job(cat: Catalog, instance_id: int, *, status: JobStatus = JobStatus.FAILED) -> int:
    with cat.transaction(write=True) as s:
        inst = s.get(Instance, instance_id)
        assert inst is not None
        job = jobs.queue_backup(s, inst)
        job_id = job.id
    with cat.transaction(write=True) as s:
        claimed = jobs.claim_next(s, "node:1.a:1", 60)
        assert claimed is not None and claimed.id == job_id
        s.add(JobItem(job_id=job_id, kind="database", name="sales", status=ItemStatus.RUNNING))
    with cat.transaction(write=True) as s:
        jobs.update_item(s, s.scalars(select(JobItem.id).where(JobItem.job_id == job_id)).one(),
                         status=ItemStatus.FAILED, error='FATAL:  database "sales" does not exist')
        assert jobs.finish(s, job_id, "node:1.a:1", status, "1 of 1 databases failed")
        notifications.job_ended(s, job_id)
    return job_id


def deliveries(cat: Catalog) -> list[tuple[int, str]]:
    with cat.transaction(write=False) as s:
        return [(n.target_id, n.event) for n in s.scalars(select(Notification).order_by(Notification.id))]


def test_an_event_reaches_the_targets_that_want_it(catalog):
    iid = make_instance(catalog)
    with catalog.transaction(write=True) as s:
        s.add(Plan(name="other", name_key="other"))
    everyone = target(catalog, "everyone")
    mine = target(catalog, "mine", plan="p", events=["job_failed"])
    target(catalog, "other-plan", plan="other")
    target(catalog, "rpo-only", events=["rpo_breach"])
    target(catalog, "off", enabled=False)
    job_id = failed_job(catalog, iid)
    assert deliveries(catalog) == [(everyone, "job_failed"), (mine, "job_failed")]
    with catalog.transaction(write=False) as s:
        payload = s.scalars(select(Notification.payload)).first()
    assert payload["job_id"] == job_id and payload["instance"] == "i1" and payload["plan"] == "p"
    assert payload["databases"] == [{"name": "sales", "status": "Failed",
                                     "error": 'FATAL:  database "sales" does not exist'}]


def test_writing_an_event_never_fails_the_end_of_a_job(catalog, monkeypatch):
    iid = make_instance(catalog)
    target(catalog, "everyone")

    def broken(session, *args):
        session.execute(text("select * from no_such_table"))

    monkeypatch.setattr(notifications, "_queue", broken)
    job_id = failed_job(catalog, iid)
    with catalog.transaction(write=False) as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status == JobStatus.FAILED
    assert deliveries(catalog) == []


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> dt.datetime:
        return self.now


def test_failures_are_retried_with_backoff_then_given_up_and_counted(catalog):
    iid = make_instance(catalog)
    down = target(catalog, "down", events=["job_failed"])
    failed_job(catalog, iid)
    clock, sent = Clock(), []

    def sender(url: str, title: str, body: str) -> str | None:
        sent.append((url, title, body))
        return f"A Connection error occurred sending JSON notification to 127.0.0.1 ({url})"

    settings = Settings(notify_attempts=2, notify_backoff_seconds=60, public_url="https://pgvault.example/")
    notifier = Notifier(settings, catalog, SEALER, clock=clock, sender=sender)
    notifier.run_once()
    assert len(sent) == 1 and sent[0][0] == "json://u:Secret-down@127.0.0.1:9/down"
    assert "https://pgvault.example/commandcenter/api/Job/" in sent[0][2] and "sales" in sent[0][2]
    notifier.run_once()
    assert len(sent) == 1  # not due before its backoff
    clock.now += dt.timedelta(seconds=61)
    notifier.run_once()
    assert len(sent) == 2
    with catalog.transaction(write=False) as s:
        t = s.get(NotificationTarget, down)
        assert t is not None
        assert (t.failures, t.consecutive_failures, t.abandoned, t.sent) == (2, 2, 1, 0)
        assert "Secret-down" not in (t.last_error or "") and "Connection error" in (t.last_error or "")
        assert notifications.outcome_counts(s) == [("down", 0, 2, 1, 0)]
    assert deliveries(catalog) == []


def test_the_backlog_drops_the_oldest_and_a_delivery_is_claimed_once(catalog):
    iid = make_instance(catalog)
    hook = target(catalog, "hook", events=["job_failed"])
    for _ in range(5):
        failed_job(catalog, iid)
    with catalog.transaction(write=False) as s:
        ids = list(s.scalars(select(Notification.id).order_by(Notification.id)))
        due = notifications.due_deliveries(s, utcnow() + dt.timedelta(seconds=1), 10)
    with catalog.transaction(write=True) as s:
        assert notifications.prune(s, 3) == {hook: 2}
    with catalog.transaction(write=False) as s:
        assert list(s.scalars(select(Notification.id).order_by(Notification.id))) == ids[2:]
        t = s.get(NotificationTarget, hook)
        assert t is not None and t.dropped == 2
    delivery_id, seen = due[2]
    later = utcnow() + dt.timedelta(minutes=2)
    with catalog.transaction(write=True) as s:
        assert notifications.claim(s, delivery_id, seen, later) is not None
    with catalog.transaction(write=True) as s:
        assert notifications.claim(s, delivery_id, seen, later) is None  # someone else's now
    sent = []
    notifier = Notifier(Settings(), catalog, SEALER, sender=lambda url, title, body: sent.append(title))
    notifier.run_once()
    assert len(sent) == 2  # the two not claimed; the claimed one waits for its claim to run out
    with catalog.transaction(write=False) as s:
        t = s.get(NotificationTarget, hook)
        assert t is not None and t.sent == 2 and t.last_success_at is not None


def test_a_breach_and_its_recovery_are_noticed_once_each(catalog):
    make_instance(catalog, "reserved")  # (instance 1 is the one the service reserves for cvpysdk: never checked)
    iid = make_instance(catalog)
    target(catalog, "rpo", events=["rpo_breach", "rpo_recovered"])
    with catalog.transaction(write=True) as s:
        plan = s.scalar(select(Plan).where(Plan.name_key == "p"))
        assert plan is not None
        plan.rpo_minutes = 60
        created = s.get(Instance, iid).created_at  # type: ignore[union-attr]
    grace = dt.timedelta(minutes=5)
    with catalog.transaction(write=True) as s:
        assert notifications.check_rpo(s, created + dt.timedelta(minutes=1), grace) == ([], [])
    with catalog.transaction(write=True) as s:
        assert notifications.check_rpo(s, created + dt.timedelta(hours=2), grace) == ([iid], [])
    with catalog.transaction(write=True) as s:
        assert notifications.check_rpo(s, created + dt.timedelta(hours=3), grace) == ([], [])
    with catalog.transaction(write=True) as s:  # a backup made a restore point
        inst = s.get(Instance, iid)
        assert inst is not None
        job = jobs.queue_backup(s, inst)
        job.started_at = created + dt.timedelta(hours=3)
        job.status, job.ended_at = JobStatus.COMPLETED, created + dt.timedelta(hours=3, minutes=1)
        s.add(RestorePoint(job_id=job.id, instance_id=iid, prefix="x", manifest_sha256="0" * 64,
                           server_version="18", total_bytes=1, database_count=1))
    with catalog.transaction(write=True) as s:
        assert notifications.check_rpo(s, created + dt.timedelta(hours=3, minutes=2), grace) == ([], [iid])
    with catalog.transaction(write=True) as s:
        assert notifications.check_rpo(s, created + dt.timedelta(hours=3, minutes=3), grace) == ([], [])
    assert [e for _, e in deliveries(catalog)] == ["rpo_breach", "rpo_recovered"]
    with catalog.transaction(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Notification)) == 2


def test_urls_are_shown_as_scheme_and_host_and_scrubbed_from_errors():
    assert redact("mailto://user:pw@smtp.example.com:2525?to=a@b") == "mailto://smtp.example.com:2525"
    assert redact("json://u:p@[::1]:8080/hook/tok") == "json://[::1]:8080"
    assert redact("slack://TokenA/TokenB/TokenC/#ops") == "slack://…"
    assert redact("tgram://123456:ABCdef/987") == "tgram://…"
    url = "json://user:Pass-word@hooks.example.com/path/Secret-Token?x=Query-Value"
    assert scrub(f"failed for {url}: Pass-word Secret-Token Query-Value", url).count("***") == 4
    assert destination_hosts("mailtos://u:p@example.com?smtp=smtp.example.net") == ["example.com", "smtp.example.net"]
    assert destination_hosts("slack://a/b/c") is None


def test_the_allowed_targets_fence_notification_urls():
    policy = TargetPolicy.parse("127.0.0.0/8")
    notifications.check_url("json://127.0.0.1:9/x", policy)
    with pytest.raises(BadRequest, match="not among the servers"):
        notifications.check_url("json://hooks.example.com/x", policy)
    with pytest.raises(BadRequest, match="name their server"):
        notifications.check_url("discord://1234/abcd", policy)
    with pytest.raises(BadRequest, match="apprise cannot send"):
        notifications.check_url("nosuch://x", TargetPolicy.parse(""))
