"""``GET /Schedules?...``: schedule tasks. pgvault keeps none: an instance's schedule is its plan's
(``GET /V2/Plan/{id}``, ``GET /V4/ServerPlan/{id}``)."""

from __future__ import annotations

from fastapi import APIRouter

from ..domain.access import Capability, requires
from ..schemas.plans import ScheduleList
from . import BASE
from .deps import UserDep
from .openapi import answers

router = APIRouter(prefix=BASE, tags=["schedules"])


@router.get("/Schedules", summary="Schedule tasks (pgvault has none: backups follow the plan)",
             responses=answers(ScheduleList, "none: backups follow the plan"))
@requires(Capability.VIEW)
def list_schedules(_: UserDep) -> dict:
    return {"taskDetail": []}
