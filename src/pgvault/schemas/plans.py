"""Plans in Command Center's V2 shapes (``plans[].plan``; ``plan.summary`` + operation windows)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter
from pydantic import Field, StrictBool, StrictInt, StrictStr, field_validator, model_validator

from ..catalog.models import Plan
from ..domain.destinations import describe
from ..errors import shown
from .common import Absent, Answer, GenericResponse, Name, NoneListed, PlanEntity, Text, WireModel

SERVER_PLAN_TYPE, SERVER_PLAN_SUBTYPE = 2, 33554437


def plan_summary(p: Plan) -> dict[str, Any]:
    return {"plan": {"planName": p.name, "planId": p.id}}


def plan_detail(p: Plan) -> dict[str, Any]:
    """Command Center's ``plan.summary`` and operation windows (cvpysdk requires them), then pgvault's
    own description of the schedule, retention and destinations (secrets never shown)."""
    window = {"start": p.window_start, "end": p.window_end} if p.window_start and p.window_end else None
    schedule: dict[str, Any] = (
        {"rpoMinutes": p.rpo_minutes} if p.schedule_kind == "rpo" else {"cron": p.cron}
    )
    return {
        "plan": {
            "summary": {"plan": {"planName": p.name, "planId": p.id}, "type": SERVER_PLAN_TYPE,
                        "subtype": SERVER_PLAN_SUBTYPE, "rpoInMinutes": p.rpo_minutes},
            "operationWindow": {"ruleId": 0},
            "fullOperationWindow": {"ruleId": 0},
            "schedule": {**schedule, "timeZone": p.timezone, "window": window},
            "retention": {"days": p.retention_days, "keepMin": p.keep_min,
                          "gfs": {"daily": p.gfs_daily, "weekly": p.gfs_weekly, "monthly": p.gfs_monthly}},
            "destinations": [
                {"destinationId": d.id, "name": d.name, **describe(d.kind, d.config),
                 "retentionDays": d.retention_days or p.retention_days, "hasCredentials": d.secret_sealed is not None}
                for d in p.destinations
            ],
            "storage": ({"kind": p.destinations[0].kind, **p.destinations[0].config} if p.destinations else None),
            "compression": {"algorithm": "zstd", "level": p.compression_level},
            "encryption": {"enabled": p.encrypt, "algorithm": "AES-256-GCM" if p.encrypt else None},
            "drillEvery": p.drill_every,
        }
    }


def server_plan_v4(p: Plan) -> dict[str, Any]:
    """``GET /V4/ServerPlan/{id}``: the same plan in the V4 names (cvpysdk reads it for server plans)."""
    return {
        "id": p.id, "name": p.name, "plan": {"id": p.id, "name": p.name},
        "rpo": {"backupFrequency": {"schedules": [{
            "backupType": "FULL",
            "schedulePattern": (
                {"scheduleFrequency": "MINUTES", "frequency": p.rpo_minutes} if p.schedule_kind == "rpo"
                else {"scheduleFrequency": "CRON", "cron": p.cron}
            ) | {"timeZone": p.timezone},
        }]}},
        "backupDestinations": [{
            "planBackupDestination": {"name": d.name},
            "storagePool": {"name": d.kind, **describe(d.kind, d.config)},
            "retentionPeriodDays": d.retention_days or p.retention_days,
        } for d in p.destinations],
        "compression": {"algorithm": "zstd", "level": p.compression_level},
    }


# -- answers ---------------------------------------------------------------------------------------

class DestinationLocation(Answer):
    """Where a destination (or a restore point's copy) is, as ``domain.destinations.describe`` shows it:
    ``local`` has ``path``; ``s3`` has ``endpoint`` (null: AWS), ``region``, ``bucket``, ``prefix`` and
    ``virtualHosted``. Never its keys."""

    kind: Literal["local", "s3"]
    path: str | Absent = None
    endpoint: str | None = None
    region: str | Absent = None
    bucket: str | Absent = None
    prefix: str | Absent = None
    virtualHosted: bool | Absent = None


class PlanSummaryEntry(Answer):
    plan: PlanEntity


class PlanList(Answer):
    """``GET /V2/Plan``."""

    plans: list[PlanSummaryEntry]


class PlanSummary(Answer):
    plan: PlanEntity
    type: Literal[2]
    subtype: Literal[33554437]
    rpoInMinutes: int


class OperationWindow(Answer):
    ruleId: int


class PlanWindow(Answer):
    start: str  # HH:MM in the plan's time zone
    end: str


class PlanSchedule(Answer):
    """Either ``rpoMinutes`` or ``cron``."""

    rpoMinutes: int | Absent = None
    cron: str | Absent = None
    timeZone: str
    window: PlanWindow | None


class PlanGfs(Answer):
    daily: int
    weekly: int
    monthly: int


class PlanRetention(Answer):
    days: int
    keepMin: int
    gfs: PlanGfs


class PlanDestination(DestinationLocation):
    destinationId: int
    name: str
    retentionDays: int
    hasCredentials: bool


class Compression(Answer):
    algorithm: Literal["zstd"]
    level: int


class PlanEncryption(Answer):
    enabled: bool
    algorithm: Literal["AES-256-GCM"] | None


class PlanDetail(Answer):
    summary: PlanSummary
    operationWindow: OperationWindow
    fullOperationWindow: OperationWindow
    schedule: PlanSchedule
    retention: PlanRetention
    destinations: list[PlanDestination]
    storage: DestinationLocation | None  # the first destination
    compression: Compression
    encryption: PlanEncryption
    drillEvery: int


class PlanResponse(Answer):
    """``GET /V2/Plan/{id}``, and what ``POST /V2/Plan`` and ``PUT /V2/Plan/{id}`` made of it."""

    plan: PlanDetail


DeletePlanResponse = GenericResponse


class IdName(Answer):
    id: int
    name: str


class SchedulePattern(Answer):
    """``MINUTES`` with ``frequency``, or ``CRON`` with ``cron``."""

    scheduleFrequency: Literal["MINUTES", "CRON"]
    frequency: int | Absent = None
    cron: str | Absent = None
    timeZone: str


class BackupSchedule(Answer):
    backupType: Literal["FULL"]
    schedulePattern: SchedulePattern


class BackupFrequency(Answer):
    schedules: list[BackupSchedule]


class PlanRpo(Answer):
    backupFrequency: BackupFrequency


class PlanBackupDestinationName(Answer):
    name: str


class StoragePool(DestinationLocation):
    name: str


class PlanBackupDestination(Answer):
    planBackupDestination: PlanBackupDestinationName
    storagePool: StoragePool
    retentionPeriodDays: int


class ServerPlanV4(Answer):
    """``GET /V4/ServerPlan/{id}``."""

    id: int
    name: str
    plan: IdName
    rpo: PlanRpo
    backupDestinations: list[PlanBackupDestination]
    compression: Compression


class ScheduleList(Answer):
    """``GET /Schedules``: pgvault keeps no schedule tasks (an instance's schedule is its plan's)."""

    taskDetail: NoneListed


# -- requests --------------------------------------------------------------------------------------

class WindowBody(WireModel):
    start: Annotated[StrictStr, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
    end: Annotated[StrictStr, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]


class ScheduleBody(WireModel):
    """Either an RPO ("every N minutes") or a cron expression in a time zone; optionally only inside a
    daily window ("HH:MM" to "HH:MM" in that zone; a window may cross midnight)."""

    rpoMinutes: Annotated[StrictInt, Field(ge=1, le=366 * 24 * 60)] | None = None
    cron: StrictStr | None = None
    timeZone: StrictStr = "UTC"
    window: WindowBody | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleBody:
        if (self.rpoMinutes is None) == (self.cron is None):
            raise ValueError("give exactly one of rpoMinutes and cron")
        try:
            ZoneInfo(self.timeZone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timeZone {shown(self.timeZone)} is not an IANA time zone") from None
        if self.cron is not None:
            if len(self.cron.split()) != 5 or not croniter.is_valid(self.cron):
                raise ValueError(f"cron {shown(self.cron)} is not a five-field cron expression (minute hour day month "
                                 "weekday)")
            try:
                croniter(self.cron, dt.datetime(2026, 1, 1), max_years_between_matches=8).get_next(dt.datetime)
            except CroniterBadDateError:
                raise ValueError(f"cron {shown(self.cron)} never fires") from None
        return self


class GfsBody(WireModel):
    daily: Annotated[StrictInt, Field(ge=0, le=3660)] = 0
    weekly: Annotated[StrictInt, Field(ge=0, le=520)] = 0
    monthly: Annotated[StrictInt, Field(ge=0, le=1200)] = 0


class RetentionBody(WireModel):
    days: Annotated[StrictInt, Field(ge=1, le=36500)] = 30
    keepMin: Annotated[StrictInt, Field(ge=1, le=1000)] = 3
    gfs: GfsBody = GfsBody()


class DestinationBody(WireModel):
    name: Annotated[Name, Field(min_length=1, max_length=255)] = "primary"
    kind: Literal["local", "s3"] = "local"
    path: Text | None = None
    endpoint: Name | None = None
    region: Name | None = None
    bucket: Name | None = None
    prefix: Name = ""
    virtualHosted: StrictBool = False
    accessKeyId: Name | None = None
    secretAccessKey: Text | None = None
    retentionDays: Annotated[StrictInt, Field(ge=1, le=36500)] | None = None

    @model_validator(mode="after")
    def _complete(self) -> DestinationBody:
        if self.kind == "local":
            if not self.path or not Path(self.path).is_absolute():
                raise ValueError("a local destination needs an absolute path")
        else:
            if not self.bucket or not self.region:
                raise ValueError("an s3 destination needs bucket and region")
            if (self.accessKeyId is None) != (self.secretAccessKey is None):
                raise ValueError("give both accessKeyId and secretAccessKey, or neither")
        return self

    def config(self) -> dict[str, Any]:
        if self.kind == "local":
            return {"path": self.path}
        return {"endpoint": self.endpoint, "region": self.region, "bucket": self.bucket, "prefix": self.prefix,
                "virtualHosted": self.virtualHosted}

    def secret(self) -> dict[str, Any] | None:
        if self.accessKeyId is None:
            return None
        return {"accessKeyId": self.accessKeyId, "secretAccessKey": self.secretAccessKey}


class LegacyStorage(WireModel):
    path: Text

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not Path(v).is_absolute():
            raise ValueError("must be an absolute path")
        return v


class PlanBody(WireModel):
    """Create (all optional but planName) or change (only what is given) a plan. The flat fields
    (``storage.path``, ``rpoMinutes``, ``retentionDays``, ``compressionLevel``) are shorthands."""

    planName: Annotated[Name, Field(min_length=1, max_length=255, pattern=r"^\S(.*\S)?$")] | None = None
    schedule: ScheduleBody | None = None
    retention: RetentionBody | None = None
    destinations: Annotated[list[DestinationBody], Field(min_length=1, max_length=8)] | None = None
    compressionLevel: Annotated[StrictInt, Field(ge=1, le=19)] | None = None
    encryption: Annotated[StrictBool, Field(description="encrypt new backups (AES-256-GCM)")] | None = None
    drillEvery: Annotated[StrictInt, Field(ge=0, le=1000)] | None = None
    storage: LegacyStorage | None = None
    rpoMinutes: Annotated[StrictInt, Field(ge=1)] | None = None
    retentionDays: Annotated[StrictInt, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _no_double(self) -> PlanBody:
        if self.storage is not None and self.destinations is not None:
            raise ValueError("give destinations or storage, not both")
        if self.rpoMinutes is not None and self.schedule is not None:
            raise ValueError("give schedule or rpoMinutes, not both")
        if self.retentionDays is not None and self.retention is not None:
            raise ValueError("give retention or retentionDays, not both")
        if self.destinations is not None:
            names = [d.name.lower() for d in self.destinations]
            if len(set(names)) != len(names):
                raise ValueError("destination names must differ")
        return self
