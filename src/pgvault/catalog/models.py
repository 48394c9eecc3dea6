"""The catalog's tables. Wire shapes live in ``pgvault.schemas``; these are storage only."""

from __future__ import annotations

import datetime as dt
import enum
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
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .types import UTCDateTime, utcnow

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


class AuthToken(Base):
    """Login sessions. Only a hash of the token is kept: a stolen catalog holds no usable token."""

    __tablename__ = "auth_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
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
    __tablename__ = "plans"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    name_key: Mapped[str] = mapped_column(String(255), unique=True)
    storage_kind: Mapped[str] = mapped_column(String(32), default="local")
    storage_path: Mapped[str] = mapped_column(Text)
    rpo_minutes: Mapped[int] = mapped_column(Integer, default=1440)
    retention_days: Mapped[int] = mapped_column(Integer, default=30)
    compression_level: Mapped[int] = mapped_column(Integer, default=1)
    drill_every: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # 0: no drills
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Instance(Base):
    """A protected PostgreSQL server, reached over the network with a database login."""

    __tablename__ = "instances"
    __table_args__ = (
        # Unique among live instances only: a deleted instance's name can be registered again.
        Index(
            "uq_instances_account_name_live", "cloud_account_id", "name_key", unique=True,
            sqlite_where=text("deleted_at IS NULL"), postgresql_where=text("deleted_at IS NULL"),
        ),
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
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"))
    name: Mapped[str] = mapped_column(String(255), default="DumpBasedBackupSet")
    is_default: Mapped[bool] = mapped_column(Boolean, default=True)
    instance: Mapped[Instance] = relationship(back_populates="backupsets")


class Subclient(Base):
    """The unit that backs up: the ``default`` subclient covers every database of the instance."""

    __tablename__ = "subclients"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"))
    backupset_id: Mapped[int] = mapped_column(ForeignKey("backupsets.id"))
    name: Mapped[str] = mapped_column(String(255), default="default")
    is_default: Mapped[bool] = mapped_column(Boolean, default=True)
    instance: Mapped[Instance] = relationship(back_populates="subclients")
    backupset: Mapped[Backupset] = relationship()


class JobStatus(enum.StrEnum):
    """Command Center's job states; the string is what the API shows."""

    WAITING = "Waiting"
    RUNNING = "Running"
    COMPLETED = "Completed"
    COMPLETED_WITH_ERRORS = "Completed w/ one or more errors"
    FAILED = "Failed"
    KILLED = "Killed"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS, JobStatus.FAILED, JobStatus.KILLED})


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_id", "status", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_type: Mapped[str] = mapped_column(String(32))  # Backup
    backup_level: Mapped[str] = mapped_column(String(32), default="Full")
    status: Mapped[str] = mapped_column(String(40), default=JobStatus.WAITING.value)
    phase: Mapped[str] = mapped_column(String(64), default="Queued")
    percent_complete: Mapped[int] = mapped_column(Integer, default=0)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"))
    subclient_id: Mapped[int] = mapped_column(ForeignKey("subclients.id"))
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
    status: Mapped[str] = mapped_column(String(40), default=JobStatus.WAITING.value)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))
    location: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    target: Mapped[str | None] = mapped_column(Text)  # restores: the database or table written
    details: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, server_default="[]")
    job: Mapped[Job] = relationship(back_populates="items")


class RestorePoint(Base):
    """A backup whose manifest is durable. Nothing else counts for browse, restore or retention."""

    __tablename__ = "restore_points"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), unique=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    storage_kind: Mapped[str] = mapped_column(String(32))
    storage_location: Mapped[str] = mapped_column(Text)  # where it lives, even if the plan moves on
    prefix: Mapped[str] = mapped_column(Text)  # every object of the backup is under it
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    server_version: Mapped[str] = mapped_column(String(64))
    total_bytes: Mapped[int] = mapped_column(BigInteger)
    database_count: Mapped[int] = mapped_column(Integer)
    databases: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    verified_at: Mapped[dt.datetime | None]
    verify_status: Mapped[str | None] = mapped_column(String(40))
    verify_message: Mapped[str | None] = mapped_column(Text)
    drill_at: Mapped[dt.datetime | None]
    drill_status: Mapped[str | None] = mapped_column(String(40))
    drill_seconds: Mapped[float | None] = mapped_column(Float)
    drill_message: Mapped[str | None] = mapped_column(Text)
