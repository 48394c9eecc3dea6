"""The catalog on both dialects: SQLite (the embedded default) and PostgreSQL (scale-out)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.exc import IntegrityError, StatementError

from pgvault.catalog.db import Catalog
from pgvault.catalog.models import Backupset, CloudAccount, Instance, Job, Plan, Subclient, User
from pgvault.catalog.types import utcnow
from pgvault.services import jobs


def make_instance(cat: Catalog, name: str = "i1") -> int:
    with cat.begin() as s:
        account = s.scalar(select(CloudAccount).where(CloudAccount.name_key == "acc"))
        if account is None:
            account = CloudAccount(name="acc", name_key="acc")
            s.add(account)
        plan = s.scalar(select(Plan).where(Plan.name_key == "p"))
        if plan is None:
            plan = Plan(name="p", name_key="p")
            s.add(plan)
        inst = Instance(cloud_account=account, plan=plan, name=name, name_key=name.lower(), host="h", port=5432,
                        maintenance_db="postgres", username="u", password_sealed=b"x", declared_version="18",
                        server_version="18.1", server_version_num=180001)
        s.add(inst)
        bs = Backupset(instance=inst)
        s.add(Subclient(instance=inst, backupset=bs))
        s.flush()
        return inst.id


def queue(cat: Catalog, instance_id: int) -> int:
    with cat.begin() as s:
        return jobs.queue_backup(s, s.get(Instance, instance_id)).id


def test_migrations_are_idempotent_and_complete(catalog):
    catalog.migrate()
    names = set(inspect(catalog.engine).get_table_names())
    assert {"users", "auth_tokens", "cloud_accounts", "plans", "instances", "backupsets", "subclients", "jobs",
            "job_items", "restore_points", "credentials", "alembic_version"} <= names


def test_naive_datetimes_are_refused_and_aware_ones_round_trip(catalog):
    with pytest.raises(StatementError, match="naive datetime"), catalog.begin() as s:
        s.add(User(username="n", password_hash="x", created_at=dt.datetime(2026, 1, 1)))
        s.flush()
    when = dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with catalog.begin() as s:
        s.add(User(username="a", password_hash="x", created_at=when))
    with catalog.begin() as s:
        got = s.scalar(select(User.created_at).where(User.username == "a"))
    assert got == when and got.tzinfo is not None and got.utcoffset() == dt.timedelta(0)


def test_instance_names_are_unique_among_live_instances_only(catalog):
    first = make_instance(catalog, "dup")
    with pytest.raises(IntegrityError), catalog.begin() as s:
        s.add(Instance(cloud_account_id=1, plan_id=1, name="DUP", name_key="dup", host="h", port=1,
                       maintenance_db="postgres", username="u", password_sealed=b"x", declared_version="18",
                       server_version="18", server_version_num=180000))
        s.flush()
    with catalog.begin() as s:
        s.get(Instance, first).deleted_at = utcnow()
    make_instance(catalog, "dup")  # the name is free again


def test_a_job_is_claimed_by_exactly_one_worker(catalog):
    iid = make_instance(catalog)
    job_id = queue(catalog, iid)
    barrier = threading.Barrier(4)
    claimed: list[int | None] = []

    def claim(owner: str) -> None:
        barrier.wait()
        with catalog.begin() as s:
            job = jobs.claim_next(s, owner, 60)
            claimed.append(job.id if job else None)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed, key=str) == sorted([job_id, None, None, None], key=str)


def test_an_instance_never_runs_two_backups_at_once(catalog):
    a, b = make_instance(catalog, "a"), make_instance(catalog, "b")
    a1, a2, b1 = queue(catalog, a), queue(catalog, a), queue(catalog, b)
    with catalog.begin() as s:
        assert jobs.claim_next(s, "w", 60).id == a1
    with catalog.begin() as s:
        assert jobs.claim_next(s, "w", 60).id == b1  # a2 waits for a1
    with catalog.begin() as s:
        assert jobs.claim_next(s, "w", 60) is None
    with catalog.begin() as s:
        jobs.finish(s, a1, "w", "Completed", "ok")
    with catalog.begin() as s:
        assert jobs.claim_next(s, "w", 60).id == a2


def test_expired_leases_are_requeued_then_failed(catalog):
    iid = make_instance(catalog)
    job_id = queue(catalog, iid)
    for attempt in (1, 2):
        with catalog.begin() as s:
            job = jobs.claim_next(s, f"dead-{attempt}", 60)
            assert job is not None and job.id == job_id and job.attempts == attempt
            jobs.add_items(s, job_id, [("database", "x")])
            job.lease_expires_at = utcnow() - dt.timedelta(seconds=1)
        with catalog.begin() as s:
            assert jobs.reap_expired(s) == [job_id]
        with catalog.begin() as s:
            job = s.get(Job, job_id)
            expected = "Waiting" if attempt == 1 else "Failed"
            assert job.status == expected, job.message
            assert job.lease_owner is None
            if expected == "Waiting":
                assert job.items == []  # a retry starts clean


def test_renew_lease_reports_kill_and_lost_leases(catalog):
    iid = make_instance(catalog)
    job_id = queue(catalog, iid)
    with catalog.begin() as s:
        jobs.claim_next(s, "me", 60)
    with catalog.begin() as s:
        assert jobs.renew_lease(s, job_id, "me", 60) is False
        jobs.request_kill(s, job_id)
    with catalog.begin() as s:
        assert jobs.renew_lease(s, job_id, "me", 60) is True
    with pytest.raises(LookupError), catalog.begin() as s:
        jobs.renew_lease(s, job_id, "someone-else", 60)


def test_killing_a_waiting_job_ends_it_at_once(catalog):
    job_id = queue(catalog, make_instance(catalog))
    with catalog.begin() as s:
        jobs.request_kill(s, job_id)
    with catalog.begin() as s:
        job = s.get(Job, job_id)
        assert job.status == "Killed" and job.ended_at is not None
        assert jobs.claim_next(s, "w", 60) is None
        assert s.scalar(select(func.count()).select_from(Job).where(Job.status == "Waiting")) == 0


def test_credentials_are_sealed_and_unique_without_case(catalog, tmp_path):
    import os

    from pgvault.crypto import Sealer
    from pgvault.errors import Conflict
    from pgvault.services import credentials

    sealer = Sealer(os.urandom(32))
    with catalog.begin() as s:
        credentials.create(s, sealer, name="Ops", username="backup", password="pw-Ops:1")
    with pytest.raises(Conflict), catalog.begin() as s:
        credentials.create(s, sealer, name="OPS", username="other", password="x")
    with catalog.begin() as s:
        cred = credentials.find(s, "ops")
        assert cred.username == "backup" and b"pw-Ops:1" not in cred.password_sealed
        assert credentials.password_of(cred, sealer) == "pw-Ops:1"
        credentials.delete(s, "Ops")
    with catalog.begin() as s:
        assert credentials.list_all(s) == []


def test_instance_id_1_is_reserved_for_command_centers_default_instance(catalog, tmp_path):
    """cvpysdk never reads the properties of instance 1, so the first start reserves it."""
    from pgvault.services.bootstrap import bootstrap

    for _ in range(2):  # a second start changes nothing
        with catalog.begin() as s:
            bootstrap(s, home=tmp_path, backups_dir=tmp_path / "backups", admin_password="pw")
    with catalog.begin() as s:
        reserved = s.scalars(select(Instance)).all()
        assert [(i.id, i.deleted_at is not None) for i in reserved] == [(1, True)]
        account = s.scalar(select(CloudAccount).where(CloudAccount.name_key == "default"))
        plan = s.scalar(select(Plan).where(Plan.name_key == "default"))
        inst = Instance(cloud_account=account, plan=plan, name="first", name_key="first", host="h", port=5432,
                        maintenance_db="postgres", username="u", password_sealed=b"x", declared_version="18",
                        server_version="18.1", server_version_num=180001)
        s.add(inst)
        s.flush()
        assert inst.id == 2


def test_a_claim_in_flight_keeps_the_instances_next_job_waiting(catalog):
    """Worker A has claimed an instance's first job but not committed; worker B must not take the same
    instance's second job meanwhile (on PostgreSQL, A's claim is invisible to B until A commits)."""
    iid = make_instance(catalog)
    first, second = queue(catalog, iid), queue(catalog, iid)
    got: list[int | None] = []

    def worker_b() -> None:
        with catalog.begin() as s:
            job = jobs.claim_next(s, "b", 60)
            got.append(job.id if job else None)

    with catalog.begin() as s:
        assert jobs.claim_next(s, "a", 60).id == first
        b = threading.Thread(target=worker_b)
        b.start()
        b.join(0.5)  # B runs while A's claim is still uncommitted
    b.join(30)
    assert got == [None]
    with catalog.begin() as s:
        assert s.get(Job, second).status == "Waiting"
