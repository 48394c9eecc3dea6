"""Cloud accounts in Command Center's client shapes (what cvpysdk reads, see the compat reference)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, RootModel

from ..catalog.models import CloudAccount
from .common import ActivityControl, Answer, NoneListed, TimeZoneInfo


def client_entity(a: CloudAccount) -> dict[str, Any]:
    return {"clientName": a.name, "clientId": a.id, "hostName": a.name, "displayName": a.name}


def client_properties(a: CloudAccount) -> dict[str, Any]:
    return {
        "client": {
            "clientEntity": client_entity(a),
            "osInfo": {"Type": "Unix", "SubType": "Linux",
                       "OsDisplayInfo": {"ProcessorType": "x64", "OSName": "Cloud account"}},
            "cvdPort": 0,
            "TimeZone": {"TimeZoneName": "(UTC) Coordinated Universal Time"},
            "versionInfo": {},
            "clientDescription": a.description,
        },
        "clientProps": {
            "activityControl": {"EnableDataRecovery": True, "EnableDataManagement": True,
                                "EnableOnlineContentIndex": False},
            "clientActivityControl": {"activityControlOptions": []},
            "EnableSnapBackups": False,
        },
    }


class ClientEntity(Answer):
    clientName: str
    clientId: int
    hostName: str
    displayName: str


class ListedClient(Answer):
    clientEntity: ClientEntity


class ClientSummary(Answer):
    client: ListedClient


class ClientList(Answer):
    """``GET /Client``."""

    clientProperties: list[ClientSummary]


class PseudoClientList(Answer):
    """``GET /Client?PseudoClientType=``: virtualization pseudo-clients, of which pgvault has none."""

    VSPseudoClientsList: NoneListed


class ClientListAnswer(RootModel[ClientList | PseudoClientList]):
    """``GET /Client``: the cloud accounts, or (with ``PseudoClientType``) no pseudo-clients."""


class OsDisplayInfo(Answer):
    ProcessorType: str
    OSName: str


class OsInfo(Answer):
    Type: str
    SubType: str
    OsDisplayInfo: OsDisplayInfo


class ClientInfo(Answer):
    clientEntity: ClientEntity
    osInfo: OsInfo
    cvdPort: int
    TimeZone: TimeZoneInfo
    versionInfo: Annotated[dict[str, Any], Field(max_length=0)]
    clientDescription: str


class ClientActivityControl(Answer):
    EnableDataRecovery: bool
    EnableDataManagement: bool
    EnableOnlineContentIndex: bool


class ClientProps(Answer):
    activityControl: ClientActivityControl
    clientActivityControl: ActivityControl
    EnableSnapBackups: bool


class ClientProperties(Answer):
    client: ClientInfo
    clientProps: ClientProps


class ClientDetail(Answer):
    """``GET /Client/{id}`` (a list of one)."""

    clientProperties: list[ClientProperties]


class CreatedClientEntity(ClientEntity):
    type_: Literal[3] = Field(alias="_type_")


class CreateClientResult(Answer):
    errorCode: Literal[0]
    entity: CreatedClientEntity


class CreateClientResponse(Answer):
    """``POST /Client``."""

    response: CreateClientResult


class VSAClientAndClientGroupList(Answer):
    """``GET /VSAClientAndClientGroupList``: virtualization access nodes, of which pgvault has none."""

    clients: NoneListed
    clientGroups: NoneListed
