"""The one settings root: every knob is a ``PGVAULT_*`` environment variable."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .domain.targets import TargetPolicy


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PGVAULT_", extra="ignore")

    home: Path = Path(".pgvault")
    host: str = "127.0.0.1"
    port: int = Field(8400, ge=1, le=65535)
    catalog_url: str | None = None
    master_key: SecretStr | None = None
    admin_password: SecretStr | None = None
    pg_bin: Path | None = None
    pg_servers: str = Field(
        "", description="folders (separated by ':') holding PostgreSQL server programs as <major>/bin, for restore "
                        "drills on the backed-up server's own major; /usr/lib/postgresql is searched after them")
    token_ttl_seconds: int = Field(12 * 3600, ge=60)
    token_cache_seconds: float = Field(
        5.0, ge=0, le=300,
        description="how long this process trusts a token it validated before asking the catalog again (0: always "
                    "ask); with several API replicas, a logout reaches the others within this time")
    workers: int = Field(2, ge=0, description="backup/restore jobs run at once by this process")
    dump_parallelism: int = Field(2, ge=1, description="databases of one instance dumped at once")
    connect_timeout_seconds: int = Field(10, ge=1)
    max_body_bytes: int = Field(
        1024 * 1024, ge=1, description="the largest request body accepted; a larger one is refused with 413, unread")
    lock_wait_seconds: int = Field(600, ge=1, description="how long pg_dump waits for a table lock")
    compressor: Literal["auto", "zstd", "builtin"] = Field(
        "auto", description="what compresses dumps and decompresses them for restores: the zstd program "
                            "(auto: when on PATH) or pgvault's own")
    job_lease_seconds: int = Field(60, ge=5)
    node_name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="this node's name, unique among the processes sharing a catalog; its leases start with it, "
                    "so that after a crash it takes back its jobs at once (default: generated at the first start "
                    "and kept in PGVAULT_HOME/node-id)")
    leftover_grace_seconds: int = Field(
        900, ge=0,
        description="Data Aging removes the folder a crashed backup left (no restore point refers to it) once "
                    "its job has been finished this long: no worker of it can still write there")
    job_poll_seconds: float = Field(2.0, gt=0)
    scheduler_seconds: float = Field(30.0, gt=0, description="how often the scheduler looks for due backups")
    aging_hours: float = Field(24, gt=0, description="how often Data Aging runs for instances without new backups")
    allowed_targets: str = Field(
        "", description="the servers and S3 endpoints pgvault may reach, comma-separated: networks (CIDR) and "
                        "host names (*.example.com for subdomains); empty: any")
    local_roots: str = Field(
        "", description="folders (separated by ':') under which a plan's local destination may be, besides "
                        "PGVAULT_HOME/backups")
    metrics_token: SecretStr | None = Field(
        None, description="a bearer token that may read /metrics (besides any API token), for Prometheus")
    public_url: str | None = Field(
        None, description="the service's address as its users reach it, for the job links in notifications "
                          "(default: http://HOST:PORT)")
    notify_attempts: int = Field(5, ge=1, description="attempts to send one notification before giving it up")
    notify_backoff_seconds: float = Field(
        30.0, gt=0, description="wait before the first retry of a notification; each next retry waits twice as long "
                                "(at most an hour)")
    notify_backlog: int = Field(
        1000, ge=1, description="notifications waiting per target; beyond it the oldest are dropped (and counted)")
    notify_poll_seconds: float = Field(5.0, gt=0, description="how often the notifier looks for notifications to send")
    rpo_grace_seconds: float = Field(
        300.0, ge=0, description="how long past its RPO an instance may be (a due backup still running) before "
                                 "rpo_breach is notified")
    login_lockout_failures: int = Field(
        10, ge=2, le=1000, description="failed logins from one client address that lock it out (docs/api.md, "
                                       "\"Login throttling\"); from half of them on, each failure makes it wait")
    login_lockout_seconds: float = Field(900.0, ge=1, le=86400, description="how long such a lockout lasts")
    audit_retention_days: float = Field(
        365.0, gt=0, description="how long the audit trail keeps a record; Data Aging removes older ones")
    log_level: str = "INFO"

    @field_validator("allowed_targets")
    @classmethod
    def _targets(cls, value: str) -> str:
        TargetPolicy.parse(value)  # a wrong entry stops the start, saying which
        return value

    @cached_property
    def target_policy(self) -> TargetPolicy:
        return TargetPolicy.parse(self.allowed_targets)

    @property
    def local_root_dirs(self) -> tuple[Path, ...]:
        extra = tuple(Path(p).expanduser() for p in self.local_roots.split(os.pathsep) if p)
        return (self.backups_dir, *extra)

    @cached_property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def effective_catalog_url(self) -> str:
        url = self.catalog_url or f"sqlite:///{self.home_dir / 'catalog.db'}"
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return url

    @property
    def effective_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def pg_server_dirs(self) -> list[Path]:
        return [Path(p).expanduser() for p in self.pg_servers.split(os.pathsep) if p]

    @property
    def runtime_dir(self) -> Path:
        """PGVAULT_HOME/run: jobs' passfiles, TLS bridge sockets and local copies (pgtools.runner)."""
        return self.home_dir / "run"

    @property
    def backups_dir(self) -> Path:
        return self.home_dir / "backups"
