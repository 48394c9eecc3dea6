"""Plans in Command Center's V2 shapes (``plans[].plan``; ``plan.summary`` + operation windows)."""

from __future__ import annotations

from typing import Any

from ..catalog.models import Plan

SERVER_PLAN_TYPE, SERVER_PLAN_SUBTYPE = 2, 33554437


def plan_summary(p: Plan) -> dict[str, Any]:
    return {"plan": {"planName": p.name, "planId": p.id}}


def plan_detail(p: Plan) -> dict[str, Any]:
    return {
        "plan": {
            "summary": {"plan": {"planName": p.name, "planId": p.id}, "type": SERVER_PLAN_TYPE,
                        "subtype": SERVER_PLAN_SUBTYPE, "rpoInMinutes": p.rpo_minutes},
            "operationWindow": {"ruleId": 0},
            "fullOperationWindow": {"ruleId": 0},
            "storage": {"kind": p.storage_kind, "path": p.storage_path},
            "schedule": {"rpoMinutes": p.rpo_minutes},
            "retention": {"days": p.retention_days},
            "compression": {"algorithm": "zstd", "level": p.compression_level},
        }
    }
