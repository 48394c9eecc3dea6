"""POST /instance, word for word from Command Center's "Create Instance" (Alibaba PaaS PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    Discriminator,
    Field,
    RootModel,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
    field_validator,
)

from ..errors import shown
from .common import (
    ENTITY_INSTANCE,
    POSTGRESQL_APP_ID,
    ActivityControl,
    Answer,
    Name,
    PlanEntity,
    PostgreSQLAppId,
    PostgreSQLAppName,
    Text,
    WireModel,
    decode_login_password,
    epoch,
    no_control,
)


def _exactly(expected: object) -> Callable[[Any], Any]:
    """A rule both request shapes (the seed's and cvpysdk's) apply to the same field."""

    def check(value: Any) -> Any:
        if value != expected:
            raise ValueError(f"must be {expected!r}, not {shown(value)}")
        return value

    return check


ApplicationId = Annotated[StrictInt, AfterValidator(_exactly(POSTGRESQL_APP_ID))]
CloudEngine = Annotated[StrictStr, AfterValidator(_exactly("POSTGRESQL"))]
DbEngine = Annotated[StrictStr, AfterValidator(_exactly("PostgreSQL"))]

MAX_HOST_PORT = 262  # a DNS name (253) or a bracketed IPv6 address, ':' and five digits
MAX_PASSWORD_B64 = 1368  # base64 of a 1,024-byte password


class InstanceRef(WireModel):
    instanceName: Annotated[Name, Field(max_length=255)] | None = None
    applicationId: ApplicationId = POSTGRESQL_APP_ID
    clientName: Annotated[Name, Field(max_length=255)] | None = None


class SAUserModel(WireModel):
    userName: Annotated[Name, Field(min_length=1, max_length=255)]
    password: Annotated[StrictStr, Field(max_length=MAX_PASSWORD_B64)]

    @field_validator("password")
    @classmethod
    def _base64(cls, v: str) -> str:
        decode_login_password(v)
        return v

    @property
    def plain_password(self) -> str:
        return decode_login_password(self.password)


class SslOpt(WireModel):
    sslEnabled: StrictBool = False
    sslCa: Annotated[Text, Field(max_length=4096)] | None = None  # PATH_MAX


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$")


def parse_host_port(value: str) -> tuple[str, int]:
    """``hostname:port``, with an IPv6 address in brackets (``[::1]:5432``)."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+(?:%\w+)?)\]:(\d{1,5})", value) or re.fullmatch(
        r"([^:\[\]\s]+):(\d{1,5})", value
    )
    if not m:
        raise ValueError(f"{shown(value)} is not in hostname:port format (an IPv6 address goes in brackets)")
    host, port = m.group(1), int(m.group(2))
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1-65535")
    if value.startswith("["):
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:  # its own message quotes the whole address
            raise ValueError(f"{shown(host)} is not an IPv6 address") from None
    elif not _HOSTNAME.match(host):
        raise ValueError(f"{shown(host)} is not a valid host name")
    return host, port


class PostgreSQLInstance(WireModel):
    MaintainenceDB: Annotated[Name, Field(min_length=1, max_length=255)] = "postgres"
    port: Annotated[Name, Field(max_length=MAX_HOST_PORT)]
    SAUser: SAUserModel
    cloudDBEngineType: CloudEngine
    sslOpt: SslOpt = SslOpt()

    @field_validator("port")
    @classmethod
    def _host_port(cls, v: str) -> str:
        parse_host_port(v)
        return v


class PlanRef(WireModel):
    planName: Annotated[Name, Field(min_length=1, max_length=255)]


class InstanceProperties(WireModel):
    instance: InstanceRef
    version: Annotated[Name, Field(min_length=1, max_length=64)]
    postGreSQLInstance: PostgreSQLInstance
    planEntity: PlanRef
    dbEngine: DbEngine


class CreateInstanceRequest(WireModel):
    instanceProperties: InstanceProperties


class InstanceChanges(WireModel):
    planEntity: PlanRef


class UpdateInstanceRequest(WireModel):
    """``PUT``/``POST /Instance/{id}``: what may change, which is the plan (other fields are ignored)."""

    instanceProperties: InstanceChanges


def instance_entity(instance_id: int = 0, client_id: int = 0, name: str = "", subclient_id: int = 0) -> dict[str, Any]:
    return {"subclientId": subclient_id, "clientId": client_id, "instanceName": name, "instanceId": instance_id,
            "_type_": ENTITY_INSTANCE}


def format_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class InstanceRow(NamedTuple):
    """What the API shows of a live instance, as ``services.instances.live_rows`` reads it (a plain tuple:
    reading a field of SQLAlchemy's Row costs ten times more, and a page reads 2,000 of them)."""

    id: int
    name: str
    cloud_account_id: int
    client_name: str
    plan_id: int
    plan_name: str
    declared_version: str
    server_version: str
    maintenance_db: str
    host: str
    port: int
    username: str
    ssl_enabled: bool
    ssl_ca: str | None
    created_at: dt.datetime
    backupset_id: int | None  # the first (lowest id), None without one
    subclient_id: int | None
    # what the scheduler needs of the plan (services.instances.schedules)
    plan_schedule_kind: str
    plan_rpo_minutes: int
    plan_cron: str | None
    plan_timezone: str
    plan_window_start: str | None
    plan_window_end: str | None
    # and of the instance's backups (services.jobs.backup_state)
    last_backup_start: dt.datetime | None
    last_backup_end: dt.datetime | None
    backup_active: bool


def instance_properties(row: InstanceRow, next_backup: dt.datetime | None = None) -> dict[str, Any]:
    """An instance as Command Center lists it (``instanceProperties[]``); never the password.
    ``nextBackupTime`` (pgvault's) is when the scheduler will next queue its backup (0: unknown)."""
    return {
        "instance": {
            "clientName": row.client_name, "clientId": row.cloud_account_id,
            "instanceName": row.name, "instanceId": row.id,
            "appName": "PostgreSQL", "applicationId": POSTGRESQL_APP_ID, "_type_": ENTITY_INSTANCE,
        },
        "instanceActivityControl": {
            "activityControlOptions": [
                {"activityType": 1, "enableAfterADelay": False, "enableActivityType": True},
                {"activityType": 2, "enableAfterADelay": False, "enableActivityType": True},
            ]
        },
        "version": row.declared_version,
        "serverVersion": row.server_version,
        "planEntity": {"planName": row.plan_name, "planId": row.plan_id},
        "dbEngine": "PostgreSQL",
        "postGreSQLInstance": {
            "MaintainenceDB": row.maintenance_db,
            "port": format_host_port(row.host, row.port),
            "SAUser": {"userName": row.username},
            "cloudDBEngineType": "POSTGRESQL",
            "sslOpt": {"sslEnabled": row.ssl_enabled, "sslCa": row.ssl_ca or ""},
        },
        "defaultBackupsetId": row.backupset_id or 0,
        "defaultSubclientId": row.subclient_id or 0,
        "createdTime": int(row.created_at.timestamp()),
        "nextBackupTime": epoch(next_backup),
    }


# cvpysdk's ``Instances.add_postgresql_instance`` sends an on-premises body: a credential and a storage
# policy instead of the seed's SAUser password and planEntity, no cloudDBEngineType, dbEngine or sslOpt.
# ``POST /Instance`` takes either shape; a body whose postGreSQLInstance names a credentialEntity is the
# SDK's (see services.instances.from_sdk_request for the mapping, docs/api.md for the rules).

SEED_SHAPE, SDK_SHAPE = "seed", "cvpysdk"


class CredentialRef(WireModel):
    credentialName: Name = ""


class StoragePolicyRef(WireModel):
    storagePolicyName: Name = ""


class SdkInstanceRef(WireModel):
    instanceName: Annotated[Name, Field(min_length=1, max_length=255)]
    clientName: Annotated[Name, Field(max_length=255)] | None = None
    appName: StrictStr = "PostgreSQL"
    applicationId: ApplicationId = POSTGRESQL_APP_ID

    @field_validator("appName")
    @classmethod
    def _postgresql(cls, v: str) -> str:
        if v.lower() != "postgresql":
            raise ValueError(f"must be PostgreSQL, not {shown(v)}")
        return v


class SdkPostgreSQLInstance(WireModel):
    MaintainenceDB: Annotated[Name, Field(min_length=1, max_length=255)] = "postgres"
    port: StrictStr | StrictInt
    credentialEntity: CredentialRef
    logStoragePolicy: StoragePolicyRef = StoragePolicyRef()
    cloudDBEngineType: CloudEngine = "POSTGRESQL"
    sslOpt: SslOpt = SslOpt()

    @field_validator("port")
    @classmethod
    def _host_port(cls, v: str | int) -> str:
        if isinstance(v, str):
            no_control(v)
        if isinstance(v, int) or ":" not in v:
            raise ValueError(f"{shown(v)} is not in hostname:port format: a cloud instance is reached over the "
                             "network, so give its endpoint (an IPv6 address goes in brackets)")
        parse_host_port(v)
        return v


class SdkInstanceProperties(WireModel):
    instance: SdkInstanceRef
    version: Annotated[Name, Field(min_length=1, max_length=64)]
    postGreSQLInstance: SdkPostgreSQLInstance
    planEntity: PlanRef | None = None
    dbEngine: DbEngine = "PostgreSQL"


class SdkCreateInstanceRequest(WireModel):
    instanceProperties: SdkInstanceProperties


def request_shape(body: Any) -> str:
    """Which shape a ``POST /Instance`` body has: the SDK's names a credentialEntity."""
    if isinstance(body, SdkCreateInstanceRequest):
        return SDK_SHAPE
    if isinstance(body, dict):
        props = body.get("instanceProperties")
        pg = props.get("postGreSQLInstance") if isinstance(props, dict) else None
        if isinstance(pg, dict) and "credentialEntity" in pg:
            return SDK_SHAPE
    return SEED_SHAPE


AnyCreateInstanceRequest = Annotated[
    Annotated[CreateInstanceRequest, Tag(SEED_SHAPE)] | Annotated[SdkCreateInstanceRequest, Tag(SDK_SHAPE)],
    Discriminator(request_shape),
]


# -- answers ---------------------------------------------------------------------------------------

class InstanceResultEntity(Answer):
    """The instance an answer (or a refusal) of ``/Instance`` names: ``instance_entity``; zeros and an
    empty name for what is not known (yet)."""

    subclientId: int
    clientId: int
    instanceName: str
    instanceId: int
    type_: Literal[5] = Field(alias="_type_")


class InstanceEntity(Answer):
    clientName: str
    clientId: int
    instanceName: str
    instanceId: int
    appName: PostgreSQLAppName
    applicationId: PostgreSQLAppId
    type_: Literal[5] = Field(alias="_type_")


class SAUserInfo(Answer):
    userName: str  # never the password


class SslOptInfo(Answer):
    sslEnabled: bool
    sslCa: str  # "" without one


class PostgreSQLInstanceInfo(Answer):
    MaintainenceDB: str
    port: str  # hostname:port, an IPv6 address in brackets
    SAUser: SAUserInfo
    cloudDBEngineType: Literal["POSTGRESQL"]
    sslOpt: SslOptInfo


class InstanceInfo(Answer):
    """One entry of ``instanceProperties`` (``instance_properties``)."""

    instance: InstanceEntity
    instanceActivityControl: ActivityControl
    version: str  # as declared
    serverVersion: str  # as read from the server
    planEntity: PlanEntity
    dbEngine: Literal["PostgreSQL"]
    postGreSQLInstance: PostgreSQLInstanceInfo
    defaultBackupsetId: int  # 0: none
    defaultSubclientId: int  # 0: none
    createdTime: int
    nextBackupTime: int  # pgvault's: when the scheduler queues the next backup; 0: never or unknown


class InstanceList(Answer):
    """``GET /Instance``, ``GET /Instance/{id}`` (a list of one)."""

    instanceProperties: list[InstanceInfo]


class ProcessingAttribute(Answer):
    name: str  # "exitval", "jobId"
    value: str


class ProcessingInstructionInfo(Answer):
    attributes: list[ProcessingAttribute]


class CreateInstanceResult(Answer):
    warningCode: Literal[0, 1]
    errorCode: Literal[0]
    warningMessage: str
    entity: InstanceResultEntity


class CreateInstanceResponse(Answer):
    """``POST /Instance``: registered, and its first backup queued (the ``jobId`` attribute)."""

    processinginstructioninfo: ProcessingInstructionInfo
    response: CreateInstanceResult


class InstanceRefusalResult(Answer):
    errorCode: int
    errorString: str
    entity: InstanceResultEntity


class InstanceRefusal(Answer):
    """``POST /Instance`` in cvpysdk's shape, refused the way Command Center refuses it: HTTP 200, the
    error at the top (as every refusal) and under ``response`` (what the SDK reads)."""

    errorCode: int
    errorMessage: str
    entity: InstanceResultEntity
    response: InstanceRefusalResult


class CreateInstanceAnswer(RootModel[CreateInstanceResponse | InstanceRefusal]):
    """``POST /Instance``'s HTTP 200: the instance registered, or (a body in cvpysdk's shape) refused."""


class TestConnectionResponse(Answer):
    """``POST /Instance/action/testConnection``: the server answered the login (nothing was saved)."""

    errorCode: Literal[0]
    serverVersion: str  # as the server reports it ("18.1")
    serverVersionNum: int  # server_version_num (180001)
    warningCode: Literal[0, 1]
    warningMessage: str  # a declared version that is not the server's; the server registered already


class UpdateInstanceResult(Answer):
    errorCode: Literal[0]
    errorString: str


class UpdateInstanceResponse(Answer):
    """``PUT``/``POST /Instance/{id}``."""

    response: list[UpdateInstanceResult]


class DeleteInstanceResult(Answer):
    errorCode: Literal[0]
    errorString: str
    entity: InstanceResultEntity
    restorePointsToDelete: int


class DeleteInstanceResponse(Answer):
    """``DELETE /Instance/{id}``: with ``deleteBackups``, the Data Aging job that removes them."""

    response: DeleteInstanceResult
    jobIds: list[str]
