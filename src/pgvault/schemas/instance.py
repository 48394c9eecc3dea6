"""POST /instance, word for word from Command Center's "Create Instance" (Alibaba PaaS PostgreSQL)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, Discriminator, Field, StrictBool, StrictInt, StrictStr, Tag, field_validator

from ..catalog.models import Instance
from .common import ENTITY_INSTANCE, POSTGRESQL_APP_ID, WireModel, epoch


def _exactly(expected: object) -> Callable[[Any], Any]:
    """A rule both request shapes (the seed's and cvpysdk's) apply to the same field."""

    def check(value: Any) -> Any:
        if value != expected:
            raise ValueError(f"must be {expected!r}, not {value!r}")
        return value

    return check


ApplicationId = Annotated[StrictInt, AfterValidator(_exactly(POSTGRESQL_APP_ID))]
CloudEngine = Annotated[StrictStr, AfterValidator(_exactly("POSTGRESQL"))]
DbEngine = Annotated[StrictStr, AfterValidator(_exactly("PostgreSQL"))]


class InstanceRef(WireModel):
    instanceName: Annotated[StrictStr, Field(max_length=255)] | None = None
    applicationId: ApplicationId = POSTGRESQL_APP_ID
    clientName: Annotated[StrictStr, Field(max_length=255)] | None = None


class SAUserModel(WireModel):
    userName: Annotated[StrictStr, Field(min_length=1, max_length=255)]
    password: StrictStr

    @field_validator("password")
    @classmethod
    def _base64(cls, v: str) -> str:
        try:
            base64.b64decode(v, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError("must be base64-encoded UTF-8") from None
        return v

    @property
    def plain_password(self) -> str:
        return base64.b64decode(self.password, validate=True).decode("utf-8")


class SslOpt(WireModel):
    sslEnabled: StrictBool = False
    sslCa: StrictStr | None = None


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$")


def parse_host_port(value: str) -> tuple[str, int]:
    """``hostname:port``, with an IPv6 address in brackets (``[::1]:5432``)."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+(?:%\w+)?)\]:(\d{1,5})", value) or re.fullmatch(
        r"([^:\[\]\s]+):(\d{1,5})", value
    )
    if not m:
        raise ValueError(f"{value!r} is not in hostname:port format (an IPv6 address goes in brackets)")
    host, port = m.group(1), int(m.group(2))
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1-65535")
    if value.startswith("["):
        ipaddress.IPv6Address(host.split("%")[0])
    elif not _HOSTNAME.match(host):
        raise ValueError(f"{host!r} is not a valid host name")
    return host, port


class PostgreSQLInstance(WireModel):
    MaintainenceDB: Annotated[StrictStr, Field(min_length=1, max_length=255)] = "postgres"
    port: StrictStr
    SAUser: SAUserModel
    cloudDBEngineType: CloudEngine
    sslOpt: SslOpt = SslOpt()

    @field_validator("port")
    @classmethod
    def _host_port(cls, v: str) -> str:
        parse_host_port(v)
        return v


class PlanRef(WireModel):
    planName: Annotated[StrictStr, Field(min_length=1, max_length=255)]


class InstanceProperties(WireModel):
    instance: InstanceRef
    version: Annotated[StrictStr, Field(min_length=1, max_length=64)]
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


def instance_properties(inst: Instance, next_backup: dt.datetime | None = None) -> dict[str, Any]:
    """An instance as Command Center lists it (``instanceProperties[]``); never the password.
    ``nextBackupTime`` (pgvault's) is when the scheduler will next queue its backup (0: unknown)."""
    backupset = inst.backupsets[0] if inst.backupsets else None
    return {
        "instance": {
            "clientName": inst.cloud_account.name, "clientId": inst.cloud_account_id,
            "instanceName": inst.name, "instanceId": inst.id,
            "appName": "PostgreSQL", "applicationId": POSTGRESQL_APP_ID, "_type_": ENTITY_INSTANCE,
        },
        "instanceActivityControl": {
            "activityControlOptions": [
                {"activityType": 1, "enableAfterADelay": False, "enableActivityType": True},
                {"activityType": 2, "enableAfterADelay": False, "enableActivityType": True},
            ]
        },
        "version": inst.declared_version,
        "serverVersion": inst.server_version,
        "planEntity": {"planName": inst.plan.name, "planId": inst.plan_id},
        "dbEngine": "PostgreSQL",
        "postGreSQLInstance": {
            "MaintainenceDB": inst.maintenance_db,
            "port": format_host_port(inst.host, inst.port),
            "SAUser": {"userName": inst.username},
            "cloudDBEngineType": "POSTGRESQL",
            "sslOpt": {"sslEnabled": inst.ssl_enabled, "sslCa": inst.ssl_ca or ""},
        },
        "defaultBackupsetId": backupset.id if backupset else 0,
        "defaultSubclientId": inst.subclients[0].id if inst.subclients else 0,
        "createdTime": int(inst.created_at.timestamp()),
        "nextBackupTime": epoch(next_backup),
    }


# cvpysdk's ``Instances.add_postgresql_instance`` sends an on-premises body: a credential and a storage
# policy instead of the seed's SAUser password and planEntity, no cloudDBEngineType, dbEngine or sslOpt.
# ``POST /Instance`` takes either shape; a body whose postGreSQLInstance names a credentialEntity is the
# SDK's (see services.instances.from_sdk_request for the mapping, docs/api.md for the rules).

SEED_SHAPE, SDK_SHAPE = "seed", "cvpysdk"


class CredentialRef(WireModel):
    credentialName: StrictStr = ""


class StoragePolicyRef(WireModel):
    storagePolicyName: StrictStr = ""


class SdkInstanceRef(WireModel):
    instanceName: Annotated[StrictStr, Field(min_length=1, max_length=255)]
    clientName: Annotated[StrictStr, Field(max_length=255)] | None = None
    appName: StrictStr = "PostgreSQL"
    applicationId: ApplicationId = POSTGRESQL_APP_ID

    @field_validator("appName")
    @classmethod
    def _postgresql(cls, v: str) -> str:
        if v.lower() != "postgresql":
            raise ValueError(f"must be PostgreSQL, not {v!r}")
        return v


class SdkPostgreSQLInstance(WireModel):
    MaintainenceDB: Annotated[StrictStr, Field(min_length=1, max_length=255)] = "postgres"
    port: StrictStr | StrictInt
    credentialEntity: CredentialRef
    logStoragePolicy: StoragePolicyRef = StoragePolicyRef()
    cloudDBEngineType: CloudEngine = "POSTGRESQL"
    sslOpt: SslOpt = SslOpt()

    @field_validator("port")
    @classmethod
    def _host_port(cls, v: str | int) -> str:
        if isinstance(v, int) or ":" not in v:
            raise ValueError(f"{v!r} is not in hostname:port format: a cloud instance is reached over the "
                             "network, so give its endpoint (an IPv6 address goes in brackets)")
        parse_host_port(v)
        return v


class SdkInstanceProperties(WireModel):
    instance: SdkInstanceRef
    version: Annotated[StrictStr, Field(min_length=1, max_length=64)]
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
