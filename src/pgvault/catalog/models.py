"""The catalog's tables. Wire shapes live in ``pgvault.schemas``; these are storage only."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    false,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from ..domain.access import Role
from ..domain.jobs import QUEUED, ItemStatus, JobStatus, JobType
from .types import StrEnumColumn, UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: UTCDateTime()}


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    role: Mapped[Role] = mapped_column(StrEnumColumn(Role, 32), default=Role.VIEWER)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    email: Mapped[str] = mapped_column(String(255), default="", server_default="")
    full_name: Mapped[str] = mapped_column(String(255), default="", server_default="")
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # None until the user (or an administrator) sets a password after the one it was created with at
    # bootstrap: the bootstrap file PGVAULT_HOME/admin-password goes when it is set
    password_changed_at: Mapped[dt.datetime | None]


class AuthToken(Base):
    """Login sessions. Only a hash of the token is kept: a stolen catalog holds no usable token."""

    __tablename__ = "auth_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]
    user: Mapped[User] = relationship()


class ApiKey(Base):
    """Long-lived tokens for scripts, made by a user for a role no stronger than theirs. Only a hash is
    kept, as for login tokens; a key acts as its creator with the weaker of its role and theirs."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(StrEnumColumn(Role, 32))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    user: Mapped[User] = relationship()


class CloudAccount(Base):
    """Command Center's "client": the cloud account that instances belong to."""

    __tablename__ = "cloud_accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    name_key: Mapped[str] = mapped_column(String(255), unique=True)  # lower-cased: names match without case
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Plan(Base):
    """When backups run (schedule), how long they stay (retention) and where they go (destinations)."""

    __tablename__ = "plans"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    name_key: Mapped[str] = mapped_column(String(255), unique=True)
    schedule_kind: Mapped[str] = mapped_column(String(16), default="rpo", server_default="rpo")  # rpo | cron
    rpo_minutes: Mapped[int] = mapped_column(Integer, default=1440)
    cron: Mapped[str | None] = mapped_column(String(255))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    window_start: Mapped[str | None] = mapped_column(String(5))  # "HH:MM" in the plan's time zone
    window_end: Mapped[str | None] = mapped_column(String(5))
    retention_days: Mapped[int] = mapped_column(Integer, default=30)
    keep_min: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    gfs_daily: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    gfs_weekly: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    gfs_monthly: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    compression_level: Mapped[int] = mapped_column(Integer, default=1)
    encrypt: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    drill_every: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # 0: no drills
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    destinations: Mapped[list[PlanDestination]] = relationship(
        back_populates="plan", order_by="PlanDestination.position", cascade="all, delete-orphan"
    )


class PlanDestination(Base):
    """One place a plan's backups go, with its own retention (None: the plan's)."""

    __tablename__ = "plan_destinations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # local | s3
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # {"path"} or {"endpoint","region","bucket",...}
    secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)  # S3 access keys, sealed
    retention_days: Mapped[int | None] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer, default=0)
    plan: Mapped[Plan] = relationship(back_populates="destinations")


class Instance(Base):
    """A protected PostgreSQL server, reached over the network with a database login."""

    __tablename__ = "instances"
    __table_args__ = (
        # Unique among live instances only: a deleted instance's name can be registered again.
        Index(
            "uq_instances_account_name_live", "cloud_account_id", "name_key", unique=True,
            sqlite_where=text("deleted_at IS NULL"), postgresql_where=text("deleted_at IS NULL"),
        ),
        # GET /Instance's pages of live instances, of all or of one account (migration 0008)
        Index("ix_instances_live_id", "id", sqlite_where=text("deleted_at IS NULL"),
              postgresql_where=text("deleted_at IS NULL")),
        Index("ix_instances_live_account_id", "cloud_account_id", "id", sqlite_where=text("deleted_at IS NULL"),
              postgresql_where=text("deleted_at IS NULL")),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cloud_account_id: Mapped[int] = mapped_column(ForeignKey("cloud_accounts.id"))
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id"))
    name: Mapped[str] = mapped_column(String(255))
    name_key: Mapped[str] = mapped_column(String(255))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    maintenance_db: Mapped[str] = mapped_column(String(255))
    username: Mapped[str] = mapped_column(String(255))
    password_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    ssl_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    ssl_ca: Mapped[str | None] = mapped_column(Text)
    declared_version: Mapped[str] = mapped_column(String(64))
    server_version: Mapped[str] = mapped_column(String(64))
    server_version_num: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[dt.datetime | None]
    cloud_account: Mapped[CloudAccount] = relationship()
    plan: Mapped[Plan] = relationship()
    subclients: Mapped[list[Subclient]] = relationship(back_populates="instance", order_by="Subclient.id")
    backupsets: Mapped[list[Backupset]] = relationship(back_populates="instance", order_by="Backupset.id")


class Backupset(Base):
    """Command Center's backupset: PaaS PostgreSQL instances have one, dump based."""

    __tablename__ = "backupsets"
    __table_args__ = (Index("ix_backupsets_instance_id", "instance_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"))
    name: Mapped[str] = mapped_column(String(255), default="DumpBasedBackupSet")
    is_default: Mapped[bool] = mapped_column(Boolean, default=True)
    instance: Mapped[Instance] = relationship(back_populates="backupsets")


class Subclient(Base):
    """The unit that backs up: the ``default`` subclient covers every database of the instance."""

    __tablename__ = "subclients"
    __table_args__ = (Index("ix_subclients_instance_id", "instance_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"))
    backupset_id: Mapped[int] = mapped_column(ForeignKey("backupsets.id"))
    name: Mapped[str] = mapped_column(String(255), default="default")
    is_default: Mapped[bool] = mapped_column(Boolean, default=True)
    instance: Mapped[Instance] = relationship(back_populates="subclients")
    backupset: Mapped[Backupset] = relationship()


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_id", "status", "id"),
        Index("ix_jobs_instance_type_id", "instance_id", "job_type", "id"),  # the scheduler's "newest backup"
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_type: Mapped[JobType] = mapped_column(StrEnumColumn(JobType, 32))
    backup_level: Mapped[str] = mapped_column(String(32), default="Full")
    status: Mapped[JobStatus] = mapped_column(StrEnumColumn(JobStatus, 40), default=JobStatus.WAITING)
    phase: Mapped[str] = mapped_column(String(64), default=QUEUED)
    percent_complete: Mapped[int] = mapped_column(Integer, default=0)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"))
    subclient_id: Mapped[int] = mapped_column(ForeignKey("subclients.id"))
    trigger: Mapped[str] = mapped_column(String(16), default="manual", server_default="manual")
    started_by: Mapped[str] = mapped_column(String(255), default="system", server_default="system")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    ended_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[dt.datetime | None]
    kill_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    message: Mapped[str] = mapped_column(Text, default="")
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    restore_point_id: Mapped[int | None] = mapped_column(ForeignKey("restore_points.id", use_alter=True))
    instance: Mapped[Instance] = relationship()
    subclient: Mapped[Subclient] = relationship()
    items: Mapped[list[JobItem]] = relationship(
        back_populates="job", order_by="JobItem.id", cascade="all, delete-orphan"
    )


class JobItem(Base):
    """One thing a job did: a database dumped, or the instance's globals."""

    __tablename__ = "job_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # database | globals
    name: Mapped[str] = mapped_column(Text)
    status: Mapped[ItemStatus] = mapped_column(StrEnumColumn(ItemStatus, 40), default=ItemStatus.WAITING)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))
    location: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    target: Mapped[str | None] = mapped_column(Text)  # restores: the database or table written
    details: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, server_default="[]")
    # Live progress (migration 0010): what a running item is doing, and the milliseconds from its start to
    # the last report of ``bytes`` (about once a second while a dump or a restore streams), then to its end.
    phase: Mapped[str | None] = mapped_column(String(40))
    elapsed_ms: Mapped[int | None] = mapped_column(Integer)
    job: Mapped[Job] = relationship(back_populates="items")


class RestorePoint(Base):
    """A backup whose manifest is durable. Nothing else counts for browse, restore or retention."""

    __tablename__ = "restore_points"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), unique=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    prefix: Mapped[str] = mapped_column(Text)  # every object of the backup is under it, in every copy
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    server_version: Mapped[str] = mapped_column(String(64))
    total_bytes: Mapped[int] = mapped_column(BigInteger)
    database_count: Mapped[int] = mapped_column(Integer)
    databases: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    # Per database, when its snapshot was taken (ISO 8601 UTC): what "restore as of T" compares with, since
    # databases dumped later in a long backup hold data from after the job's start.
    snapshot_times: Mapped[dict[str, str]] = mapped_column(JSON, default=dict, server_default="{}")
    verified_at: Mapped[dt.datetime | None]
    verify_status: Mapped[str | None] = mapped_column(String(40))
    verify_message: Mapped[str | None] = mapped_column(Text)
    drill_at: Mapped[dt.datetime | None]
    drill_status: Mapped[str | None] = mapped_column(String(40))
    drill_seconds: Mapped[float | None] = mapped_column(Float)
    drill_message: Mapped[str | None] = mapped_column(Text)
    data_key_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)  # encrypted backups: the wrapped key
    copies: Mapped[list[RestorePointCopy]] = relationship(
        back_populates="restore_point", order_by="RestorePointCopy.id", cascade="all, delete-orphan"
    )


class RestorePointCopy(Base):
    """One destination's copy of a restore point. It carries what it needs to be read (the storage kind,
    its configuration and sealed credentials as they were when written), so it stays readable after its
    plan changes. ``deleting`` marks a copy whose objects retention is removing (crash-safe: the mark is
    committed first, the row goes last)."""

    __tablename__ = "restore_point_copies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    restore_point_id: Mapped[int] = mapped_column(ForeignKey("restore_points.id", ondelete="CASCADE"), index=True)
    destination_id: Mapped[int | None] = mapped_column(ForeignKey("plan_destinations.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    retention_days: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="present")  # present | deleting
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    restore_point: Mapped[RestorePoint] = relationship(back_populates="copies")


class Credential(Base):
    """A named database login (Command Center's credential manager). The password is sealed under the
    master key, never stored or returned in clear."""

    __tablename__ = "credentials"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    name_key: Mapped[str] = mapped_column(String(255), unique=True)  # names match without case
    account_type: Mapped[str] = mapped_column(String(64), default="DATABASE_ACCOUNT")
    database_type: Mapped[str] = mapped_column(String(64), default="POSTGRESQL")
    username: Mapped[str] = mapped_column(String(255))
    password_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class NotificationTarget(Base):
    """Where notifications go: one apprise URL (sealed: it carries passwords and tokens), the events it
    wants, all instances or one plan's, and how its deliveries went (never its URL in clear)."""

    __tablename__ = "notification_targets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    name_key: Mapped[str] = mapped_column(String(255), unique=True)
    url_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    url_redacted: Mapped[str] = mapped_column(String(255))  # scheme and host only
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # attempts that failed
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    abandoned: Mapped[int] = mapped_column(Integer, default=0)  # deliveries given up after every retry
    dropped: Mapped[int] = mapped_column(Integer, default=0)  # oldest deliveries dropped beyond the backlog
    last_success_at: Mapped[dt.datetime | None]
    last_error_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    plan: Mapped[Plan | None] = relationship()


class Notification(Base):
    """The outbox: one delivery of one event to one target, written in the transaction that saw the event
    (a job's end, an RPO check), sent by the notifier thread after the commit, deleted once sent."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_due", "next_attempt_at", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("notification_targets.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class RpoBreach(Base):
    """An instance past its plan's RPO, from the check that saw it until the one that sees it recover: what
    makes each breach notify once, and its recovery once."""

    __tablename__ = "rpo_breaches"
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True)
    since: Mapped[dt.datetime]  # when the RPO ran out (the due time)
    noticed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """The audit trail: one row per action that changes something or reveals a secret's use (who, from
    where, which route and resource, the outcome), written by ``api.audit.AuditTrail`` for every request of
    such a route and by the commands that act on the catalog directly (``pgvault keys``). Append-only (a
    trigger refuses updates); rows go only when they pass ``PGVAULT_AUDIT_RETENTION_DAYS`` (Data Aging).
    No foreign keys: a record outlives the user it names. Never a secret: no bodies, no headers."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_at", "at", "id"), Index("ix_audit_events_user_name", "user_name", "at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    user_id: Mapped[int | None] = mapped_column(Integer)
    user_name: Mapped[str | None] = mapped_column(String(255))
    address: Mapped[str | None] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(10))
    action: Mapped[str] = mapped_column(String(100))  # the operation: the route's endpoint name (create_instance)
    route: Mapped[str] = mapped_column(String(255))  # its template, without the API's base
    resource: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(255))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # path and query parameters
    status: Mapped[int] = mapped_column(Integer)  # the HTTP status answered (0: not over HTTP)
    outcome: Mapped[str] = mapped_column(String(16))  # success | failure
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
