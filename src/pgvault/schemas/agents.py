"""Agents (Command Center's iDAs): every cloud account has one, PostgreSQL (applicationId 125)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..catalog.models import CloudAccount
from .common import ENTITY_AGENT, POSTGRESQL_APP_ID, ActivityControl, Answer, PostgreSQLAppId, PostgreSQLAppName

ACTIVITY_BACKUP, ACTIVITY_RESTORE = 1, 2


def agent_properties(account: CloudAccount) -> dict[str, Any]:
    return {
        "idaEntity": {"clientName": account.name, "clientId": account.id, "appName": "PostgreSQL",
                      "applicationId": POSTGRESQL_APP_ID, "_type_": ENTITY_AGENT},
        "idaActivityControl": {"activityControlOptions": [
            {"activityType": ACTIVITY_BACKUP, "enableAfterADelay": False, "enableActivityType": True},
            {"activityType": ACTIVITY_RESTORE, "enableAfterADelay": False, "enableActivityType": True},
        ]},
    }


class IdaEntity(Answer):
    clientName: str
    clientId: int
    appName: PostgreSQLAppName
    applicationId: PostgreSQLAppId
    type_: Literal[4] = Field(alias="_type_")


class AgentProperties(Answer):
    idaEntity: IdaEntity
    idaActivityControl: ActivityControl


class AgentList(Answer):
    """``GET /Agent?clientId=``: the one agent of a cloud account."""

    agentProperties: list[AgentProperties]
