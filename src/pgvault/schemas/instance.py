"""POST /instance, word for word from Command Center's "Create Instance" (Alibaba PaaS PostgreSQL)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import Annotated, Any

from pydantic import Field, StrictBool, StrictInt, StrictStr, field_validator

from ..catalog.models import Instance
from .common import ENTITY_INSTANCE, POSTGRESQL_APP_ID, WireModel


class InstanceRef(WireModel):
    instanceName: StrictStr | None = None
    applicationId: StrictInt = POSTGRESQL_APP_ID
    clientName: StrictStr | None = None

    @field_validator("applicationId")
    @classmethod
    def _postgresql_only(cls, v: int) -> int:
        if v != POSTGRESQL_APP_ID:
            raise ValueError(f"must be {POSTGRESQL_APP_ID} (PostgreSQL), not {v}")
        return v


class SAUserModel(WireModel):
    userName: Annotated[StrictStr, Field(min_length=1)]
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
    MaintainenceDB: Annotated[StrictStr, Field(min_length=1)] = "postgres"
    port: StrictStr
    SAUser: SAUserModel
    cloudDBEngineType: StrictStr
    sslOpt: SslOpt = SslOpt()

    @field_validator("port")
    @classmethod
    def _host_port(cls, v: str) -> str:
        parse_host_port(v)
        return v

    @field_validator("cloudDBEngineType")
    @classmethod
    def _engine(cls, v: str) -> str:
        if v != "POSTGRESQL":
            raise ValueError(f"must be POSTGRESQL, not {v!r}")
        return v


class PlanRef(WireModel):
    planName: Annotated[StrictStr, Field(min_length=1)]


class InstanceProperties(WireModel):
    instance: InstanceRef
    version: Annotated[StrictStr, Field(min_length=1)]
    postGreSQLInstance: PostgreSQLInstance
    planEntity: PlanRef
    dbEngine: StrictStr

    @field_validator("dbEngine")
    @classmethod
    def _db_engine(cls, v: str) -> str:
        if v != "PostgreSQL":
            raise ValueError(f"must be PostgreSQL, not {v!r}")
        return v


class CreateInstanceRequest(WireModel):
    instanceProperties: InstanceProperties


def instance_entity(instance_id: int = 0, client_id: int = 0, name: str = "", subclient_id: int = 0) -> dict[str, Any]:
    return {"subclientId": subclient_id, "clientId": client_id, "instanceName": name, "instanceId": instance_id,
            "_type_": ENTITY_INSTANCE}


def format_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def instance_properties(inst: Instance) -> dict[str, Any]:
    """An instance as Command Center lists it (``instanceProperties[]``); never the password."""
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
    }
