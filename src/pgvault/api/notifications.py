"""Notification targets: ``GET/POST /NotificationTarget``, ``GET/PUT/DELETE /NotificationTarget/{id}``,
``POST /NotificationTarget/{id}/action/test`` (docs/api.md, "Notifications"). A target's URL is sealed at
rest and never returned: only its scheme and host."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from sqlalchemy.orm import Session

from ..catalog.models import NotificationTarget
from ..domain.access import Capability, requires
from ..errors import BadRequest
from ..schemas.notifications import (
    ALL_EVENTS,
    TargetBody,
    TargetDeleted,
    TargetList,
    TargetTestResult,
    TargetView,
    target_view,
)
from ..services import notifications
from . import BASE
from .deps import ContextDep, UserDep
from .openapi import answers

router = APIRouter(prefix=BASE, tags=["notifications"])


def _view(s: Session, target: NotificationTarget) -> dict:
    return target_view(target, notifications.pending_counts(s).get(target.id, 0))


@router.get("/NotificationTarget", summary="List notification targets (URLs redacted), with their status",
            responses=answers(TargetList, "the targets"))
@requires(Capability.VIEW)
def list_targets(ctx: ContextDep, _: UserDep) -> dict:
    with ctx.catalog.transaction(write=False) as s:
        pending = notifications.pending_counts(s)
        return {"notificationTargets": [target_view(t, pending.get(t.id, 0)) for t in notifications.list_all(s)]}


@router.post("/NotificationTarget", summary="Add a notification target: an apprise URL, its events, its scope",
             responses=answers(TargetView, "the new target", conflict=True))
@requires(Capability.MANAGE_NOTIFICATIONS)
def create_target(ctx: ContextDep, _: UserDep, body: Annotated[TargetBody, Body()]) -> dict:
    if not body.name or not body.url:
        raise BadRequest("name and url are required")
    notifications.check_url(body.url, ctx.settings.target_policy)
    if body.scope == "plan" and body.planId is None and body.planName is None:
        raise BadRequest('scope "plan" needs planId or planName')
    with ctx.catalog.transaction(write=True) as s:
        plan = None if body.scope == "global" else notifications.resolve_plan(s, body.planId, body.planName)
        target = notifications.create(s, ctx.sealer, name=body.name, url=body.url,
                                      events=list(body.events or ALL_EVENTS), plan=plan,
                                      enabled=True if body.enabled is None else body.enabled)
        return _view(s, target)


@router.get("/NotificationTarget/{target_id}", summary="One notification target and its status",
            responses=answers(TargetView, "the target"))
@requires(Capability.VIEW)
def get_target(ctx: ContextDep, _: UserDep, target_id: int) -> dict:
    with ctx.catalog.transaction(write=False) as s:
        return _view(s, notifications.get(s, target_id))


@router.put("/NotificationTarget/{target_id}", summary="Change a notification target (only the fields given)",
            responses=answers(TargetView, "the target as changed", conflict=True))
@requires(Capability.MANAGE_NOTIFICATIONS)
def update_target(ctx: ContextDep, _: UserDep, target_id: int, body: Annotated[TargetBody, Body()]) -> dict:
    if body.url is not None:
        notifications.check_url(body.url, ctx.settings.target_policy)
    with ctx.catalog.transaction(write=True) as s:
        target = notifications.get(s, target_id)
        if body.name is not None:
            notifications.rename(s, target, body.name)
        if body.url is not None:
            notifications.set_url(target, ctx.sealer, body.url)
        if body.events is not None:
            target.events = notifications.check_events(list(body.events))
        if body.scope == "global":
            target.plan_id = None
        elif body.planId is not None or body.planName is not None:
            plan = notifications.resolve_plan(s, body.planId, body.planName)
            target.plan_id = plan.id if plan else None
        elif body.scope == "plan" and target.plan_id is None:
            raise BadRequest('scope "plan" needs planId or planName')
        if body.enabled is not None:
            target.enabled = body.enabled
        s.flush()
        s.refresh(target)
        return _view(s, target)


@router.delete("/NotificationTarget/{target_id}", summary="Delete a notification target (and what it has not sent)",
               responses=answers(TargetDeleted, "deleted"))
@requires(Capability.MANAGE_NOTIFICATIONS)
def delete_target(ctx: ContextDep, _: UserDep, target_id: int) -> dict:
    with ctx.catalog.transaction(write=True) as s:
        s.delete(notifications.get(s, target_id))
    return {"errorCode": 0, "errorMessage": ""}


@router.post("/NotificationTarget/{target_id}/action/test",
             summary="Send a test notification now; says whether it went (and why not), as the target's status does",
             responses=answers(TargetTestResult, "whether it went"))
@requires(Capability.MANAGE_NOTIFICATIONS)
def test_target(ctx: ContextDep, _: UserDep, target_id: int) -> dict:
    error = ctx.notifier.test(target_id)
    with ctx.catalog.transaction(write=False) as s:
        return {"sent": error is None, "error": error, "target": _view(s, notifications.get(s, target_id))}
