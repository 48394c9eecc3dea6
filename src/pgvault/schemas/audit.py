"""The audit trail on the wire (pgvault's own resource): ``GET /AuditTrail`` and its JSON lines export."""

from __future__ import annotations

from typing import Any, Literal

from .common import Answer


class AuditUser(Answer):
    """Who: the user of the request's token (for a login, the name tried; ``userId`` null when it failed),
    or ``os:<login>`` for a command run on the service's host; both null without a valid token."""

    userId: int | None
    userName: str | None


class AuditRecord(Answer):
    id: int
    time: int  # epoch seconds
    timeIso: str
    user: AuditUser
    address: str | None  # the client's address (through a trusted proxy: the one it forwarded)
    method: str
    action: str  # the operation (the route's endpoint name: create_instance, login, kill_job ...)
    route: str  # the route template, without the API's base: POST /Instance/{instance_id}
    resource: str  # Instance, Plan, Job, Login ...
    resourceId: str | None  # the path's id, else the one the answer named (a new instance's), else null
    parameters: dict[str, Any]  # path and query parameters (never a body)
    status: int  # the HTTP status answered (0: not over HTTP)
    outcome: Literal["success", "failure"]
    details: dict[str, Any]  # jobIds an action queued, and the like


class AuditTrailList(Answer):
    auditTrail: list[AuditRecord]
    totalRecordsWithoutPaging: int
