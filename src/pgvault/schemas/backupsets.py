"""Backupsets and subclients in Command Center's shapes (``backupsetProperties[]``,
``subClientProperties[]``), with the entity fields cvpysdk filters on."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..catalog.models import Backupset, Instance, Subclient
from .common import (
    ENTITY_BACKUPSET,
    ENTITY_SUBCLIENT,
    POSTGRESQL_APP_ID,
    Answer,
    PlanEntity,
    PostgreSQLAppId,
    PostgreSQLAppName,
)


def _instance_part(inst: Instance) -> dict[str, Any]:
    return {"clientName": inst.cloud_account.name, "clientId": inst.cloud_account_id, "appName": "PostgreSQL",
            "applicationId": POSTGRESQL_APP_ID, "instanceName": inst.name, "instanceId": inst.id}


def backupset_entity(bs: Backupset) -> dict[str, Any]:
    return {**_instance_part(bs.instance), "backupsetName": bs.name, "backupsetId": bs.id,
            "_type_": ENTITY_BACKUPSET}


def subclient_entity(sub: Subclient) -> dict[str, Any]:
    return {**_instance_part(sub.instance), "backupsetName": sub.backupset.name, "backupsetId": sub.backupset_id,
            "subclientName": sub.name, "subclientId": sub.id, "_type_": ENTITY_SUBCLIENT}


def _plan(inst: Instance) -> dict[str, Any]:
    return {"planName": inst.plan.name, "planId": inst.plan_id}


def backupset_properties(bs: Backupset) -> dict[str, Any]:
    return {
        "backupSetEntity": backupset_entity(bs),
        "commonBackupSet": {"isDefaultBackupSet": bs.is_default, "onDemandBackupset": False},
        "planEntity": _plan(bs.instance),
    }


def subclient_properties(sub: Subclient) -> dict[str, Any]:
    return {
        "subClientEntity": subclient_entity(sub),
        # The default subclient covers every database of the instance, found anew at each backup.
        "commonProperties": {"isDefaultSubclient": sub.is_default, "description": "every database"},
        "planEntity": _plan(sub.instance),
    }


class InstancePart(Answer):
    clientName: str
    clientId: int
    appName: PostgreSQLAppName
    applicationId: PostgreSQLAppId
    instanceName: str
    instanceId: int


class BackupsetEntity(InstancePart):
    backupsetName: str
    backupsetId: int
    type_: Literal[6] = Field(alias="_type_")


class SubclientRef(InstancePart):
    """A subclient as a job names it (``jobSummary.subclient``, ``generalInfo.subclient``)."""

    backupsetName: str
    backupsetId: int
    subclientName: str
    subclientId: int


class SubclientEntity(SubclientRef):
    type_: Literal[7] = Field(alias="_type_")


class CommonBackupSet(Answer):
    isDefaultBackupSet: bool
    onDemandBackupset: bool


class BackupsetProperties(Answer):
    backupSetEntity: BackupsetEntity
    commonBackupSet: CommonBackupSet
    planEntity: PlanEntity


class BackupsetList(Answer):
    """``GET /Backupset``, ``GET /Backupset/{id}`` (a list of one)."""

    backupsetProperties: list[BackupsetProperties]


class SubclientCommonProperties(Answer):
    isDefaultSubclient: bool
    description: str


class SubclientProperties(Answer):
    subClientEntity: SubclientEntity
    commonProperties: SubclientCommonProperties
    planEntity: PlanEntity


class SubclientList(Answer):
    """``GET /Subclient``, ``GET /Subclient/{id}`` (a list of one)."""

    subClientProperties: list[SubclientProperties]


class AssociatedEntities(Answer):
    """``GET /V2/Plan/{id}/AssociatedEntities``."""

    totalEntities: int
    entities: list[SubclientEntity]
