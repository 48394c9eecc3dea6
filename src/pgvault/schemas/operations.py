"""The answers of the operations endpoints (api/metrics.py): the probes."""

from __future__ import annotations

from typing import Literal

from .common import Answer


class Health(Answer):
    status: Literal["ok"]


class Readiness(Answer):
    status: Literal["ready", "not ready"]
    failed: list[Literal["catalog", "catalog schema", "master key"]]  # the checks that failed, by name
