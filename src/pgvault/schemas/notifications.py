"""Notification targets on the wire (pgvault's own resource: Command Center has no such API). The URL goes
in; only its redacted form (scheme and host) ever comes out."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr

from ..catalog.models import NotificationTarget
from ..domain.notifications import SUBSCRIBABLE
from .common import Answer, Name, Text, WireModel

EventName = Literal["job_failed", "rpo_breach", "rpo_recovered", "drill_failed"]


class TargetBody(WireModel):
    """Create (name and url required; events default to all) or change (only what is given) a target.
    ``planId`` or ``planName`` scopes it to one plan's instances; ``scope: "global"`` makes it global again."""

    name: Annotated[Name, Field(min_length=1, max_length=255, pattern=r"^\S(.*\S)?$")] | None = None
    url: Annotated[Text, Field(min_length=4, max_length=4096,
                               description="an apprise URL: mailto://, json://, slack://, ...")] | None = None
    events: Annotated[list[EventName], Field(min_length=1, max_length=4)] | None = None
    planId: Annotated[StrictInt, Field(ge=1, le=2**31 - 1)] | None = None
    planName: Annotated[StrictStr, Field(min_length=1, max_length=255)] | None = None
    scope: Literal["global", "plan"] | None = None
    enabled: StrictBool | None = None


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def target_view(t: NotificationTarget, pending: int) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "url": t.url_redacted,
        "events": list(t.events or []),
        "scope": "plan" if t.plan_id is not None else "global",
        "plan": {"planId": t.plan_id, "planName": t.plan.name} if t.plan_id is not None and t.plan else None,
        "enabled": t.enabled,
        "status": {
            "lastSuccess": _iso(t.last_success_at),
            "lastError": t.last_error,
            "lastErrorTime": _iso(t.last_error_at),
            "failures": t.failures,
            "consecutiveFailures": t.consecutive_failures,
            "sent": t.sent,
            "abandoned": t.abandoned,
            "dropped": t.dropped,
            "pending": pending,
        },
    }


ALL_EVENTS = [str(e) for e in SUBSCRIBABLE]


# -- the answers (documentation of the OpenAPI document: api/openapi.answers) ----------------------------

class TargetPlan(Answer):
    planId: int
    planName: str


class TargetStatus(Answer):
    lastSuccess: str | None
    lastError: str | None
    lastErrorTime: str | None
    failures: int
    consecutiveFailures: int
    sent: int
    abandoned: int
    dropped: int
    pending: int


class TargetView(Answer):
    id: int
    name: str
    url: str  # redacted: scheme://host[:port] at most
    events: list[str]
    scope: Literal["global", "plan"]
    plan: TargetPlan | None
    enabled: bool
    status: TargetStatus


class TargetList(Answer):
    notificationTargets: list[TargetView]


class TargetDeleted(Answer):
    errorCode: int
    errorMessage: str


class TargetTestResult(Answer):
    sent: bool
    error: str | None
    target: TargetView
