"""Plans: GET /V2/Plan, GET /V2/Plan/{id} in Command Center's shapes; POST /V2/Plan with a small body.

The schedule and retention are stored now and enforced by a later release (the scheduler issue).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import Field, StrictInt, StrictStr, field_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..catalog.models import Plan
from ..errors import Conflict, NotFound
from ..schemas.common import WireModel
from ..schemas.plans import plan_detail, plan_summary
from .deps import ContextDep, UserDep

router = APIRouter(tags=["plans"])


class PlanStorage(WireModel):
    path: StrictStr

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not Path(v).is_absolute():
            raise ValueError("must be an absolute path")
        return v


class CreatePlanRequest(WireModel):
    planName: Annotated[StrictStr, Field(min_length=1, max_length=255, pattern=r"^\S(.*\S)?$")]
    storage: PlanStorage | None = None
    rpoMinutes: Annotated[StrictInt, Field(ge=1)] = 1440
    retentionDays: Annotated[StrictInt, Field(ge=1)] = 30
    compressionLevel: Annotated[StrictInt, Field(ge=1, le=19)] = 1


@router.get("/V2/Plan", summary="List plans")
def list_plans(ctx: ContextDep, _: UserDep) -> dict:
    with ctx.catalog.begin() as s:
        return {"plans": [plan_summary(p) for p in s.scalars(select(Plan).order_by(Plan.id))]}


@router.get("/V2/Plan/{plan_id}", summary="One plan")
def get_plan(ctx: ContextDep, _: UserDep, plan_id: int) -> dict:
    with ctx.catalog.begin() as s:
        plan = s.get(Plan, plan_id)
        if plan is None:
            raise NotFound(f"plan {plan_id} does not exist")
        return plan_detail(plan)


@router.post("/V2/Plan", summary="Create a plan (local storage): see docs/api.md")
def create_plan(ctx: ContextDep, _: UserDep, body: Annotated[CreatePlanRequest, Body()]) -> dict:
    path = body.storage.path if body.storage else str(ctx.settings.backups_dir)
    try:
        with ctx.catalog.begin() as s:
            if s.scalar(select(Plan.id).where(Plan.name_key == body.planName.lower())):
                raise Conflict(f"a plan named {body.planName!r} already exists")
            plan = Plan(name=body.planName, name_key=body.planName.lower(), storage_kind="local",
                        storage_path=path, rpo_minutes=body.rpoMinutes, retention_days=body.retentionDays,
                        compression_level=body.compressionLevel)
            s.add(plan)
            s.flush()
            return plan_detail(plan)
    except IntegrityError:
        raise Conflict(f"a plan named {body.planName!r} already exists") from None
