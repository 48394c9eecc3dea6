"""Plans: GET /V2/Plan, GET/DELETE /V2/Plan/{id} in Command Center's shapes; POST and PUT with
pgvault's small documented body (docs/api.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..catalog.models import Plan
from ..domain.access import Capability, requires
from ..errors import BadRequest, Conflict, NotFound, shown
from ..schemas.backupsets import AssociatedEntities, subclient_entity
from ..schemas.plans import (
    DeletePlanResponse,
    PlanBody,
    PlanList,
    PlanResponse,
    ServerPlanV4,
    plan_detail,
    plan_summary,
    server_plan_v4,
)
from ..services import backupsets, plans
from . import BASE
from .deps import ContextDep, UserDep
from .openapi import answers

router = APIRouter(prefix=BASE, tags=["plans"])


@router.get("/V2/Plan", summary="List plans",
             responses=answers(PlanList, "the plans"))
@requires(Capability.VIEW)
def list_plans(ctx: ContextDep, _: UserDep) -> dict:
    with ctx.catalog.transaction(write=False) as s:
        return {"plans": [plan_summary(p) for p in s.scalars(select(Plan).order_by(Plan.id))]}


@router.get("/V2/Plan/{plan_id}", summary="One plan",
             responses=answers(PlanResponse, "the plan"))
@requires(Capability.VIEW)
def get_plan(ctx: ContextDep, _: UserDep, plan_id: int) -> dict:
    with ctx.catalog.transaction(write=False) as s:
        return plan_detail(plans.get(s, plan_id))


@router.post("/V2/Plan", summary="Create a plan: schedule, retention, destinations (see docs/api.md)",
             responses=answers(PlanResponse, "the plan created", conflict=True))
@requires(Capability.EDIT_PLANS)
def create_plan(ctx: ContextDep, _: UserDep, body: Annotated[PlanBody, Body()]) -> dict:
    if not body.planName:
        raise BadRequest("planName is required")
    destinations = plans.prepare_destinations(body, ctx.sealer, _bounds(ctx), ctx.settings.backups_dir)
    assert destinations is not None
    try:
        with ctx.catalog.transaction(write=True) as s:
            return plan_detail(plans.create(s, body, destinations))
    except IntegrityError:
        raise Conflict(f"a plan named {shown(body.planName)} already exists") from None


@router.put("/V2/Plan/{plan_id}", summary="Change a plan (only the fields given); effective from each next backup",
            responses=answers(PlanResponse, "the plan as changed", conflict=True))
@requires(Capability.EDIT_PLANS)
def update_plan(ctx: ContextDep, _: UserDep, plan_id: int, body: Annotated[PlanBody, Body()]) -> dict:
    destinations = plans.prepare_destinations(body, ctx.sealer, _bounds(ctx))
    try:
        with ctx.catalog.transaction(write=True) as s:
            plan = plans.get(s, plan_id)
            plans.apply(s, plan, body, destinations)
            s.flush()
            return plan_detail(plan)
    except IntegrityError:
        raise Conflict(f"a plan named {shown(body.planName)} already exists") from None


@router.delete("/V2/Plan/{plan_id}", summary="Delete a plan no instance uses (409 names the instances)",
               responses=answers(DeletePlanResponse, "deleted", conflict=True))
@requires(Capability.DELETE_PLANS)
def delete_plan(ctx: ContextDep, _: UserDep, plan_id: int) -> dict:
    with ctx.catalog.transaction(write=True) as s:
        plans.delete(s, plan_id)
    return {"errorCode": 0, "errorMessage": ""}


def _plan(s: Session, plan_id: int) -> Plan:
    plan = s.get(Plan, plan_id)
    if plan is None:
        raise NotFound(f"plan {plan_id} does not exist")
    return plan


@router.get("/V2/Plan/{plan_id}/AssociatedEntities", summary="The subclients (of live instances) on a plan",
             responses=answers(AssociatedEntities, "the subclients on the plan"))
@requires(Capability.VIEW)
def plan_entities(ctx: ContextDep, _: UserDep, plan_id: int) -> dict:
    with ctx.catalog.transaction(write=False) as s:
        _plan(s, plan_id)
        subs = backupsets.list_subclients(s, plan_id=plan_id)
        return {"totalEntities": len(subs), "entities": [subclient_entity(sub) for sub in subs]}


@router.get("/V4/ServerPlan/{plan_id}", summary="One plan, V4 shape",
             responses=answers(ServerPlanV4, "the plan, V4 shape"))
@requires(Capability.VIEW)
def get_server_plan(ctx: ContextDep, _: UserDep, plan_id: int) -> dict:
    with ctx.catalog.transaction(write=False) as s:
        return server_plan_v4(_plan(s, plan_id))


def _bounds(ctx: ContextDep) -> plans.DestinationBounds:
    return plans.DestinationBounds(ctx.settings.local_root_dirs, ctx.settings.target_policy)
