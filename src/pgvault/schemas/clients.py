"""Cloud accounts in Command Center's client shapes (what cvpysdk reads, see the compat reference)."""

from __future__ import annotations

from typing import Any

from ..catalog.models import CloudAccount


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
