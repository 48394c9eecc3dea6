"""Opening the storage behind a plan's destinations and a restore point's copies (their S3 keys are
sealed under the master key, like instance passwords)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..catalog.models import Job, Plan, PlanDestination, RestorePoint, RestorePointCopy
from ..crypto import Sealer
from ..errors import PgvaultError
from ..storage import FanOutStorage, Storage, open_location

SECRET_CONTEXT = "destination.secret"  # noqa: S105 - an AEAD context label


def seal_secret(sealer: Sealer, secret: dict[str, Any] | None) -> bytes | None:
    return sealer.seal(json.dumps(secret).encode(), SECRET_CONTEXT) if secret else None


def _open_secret(sealer: Sealer, sealed: bytes | None) -> dict[str, Any] | None:
    return json.loads(sealer.open(sealed, SECRET_CONTEXT)) if sealed else None


def open_destination(dest: PlanDestination, sealer: Sealer) -> Storage:
    return open_location(dest.kind, dest.config, _open_secret(sealer, dest.secret_sealed))


def open_plan(plan: Plan, sealer: Sealer) -> FanOutStorage:
    return FanOutStorage([open_destination(d, sealer) for d in plan.destinations])


def copies_for(plan: Plan) -> list[RestorePointCopy]:
    """The copies a backup written through ``open_plan`` leaves, one per destination. They are complete
    without their destination row (``link_copies`` drops the link when the plan changed meanwhile)."""
    return [RestorePointCopy(destination_id=d.id, kind=d.kind, config=dict(d.config), secret_sealed=d.secret_sealed,
                             retention_days=d.retention_days, state="present") for d in plan.destinations]


def link_copies(session: Session, copies: list[RestorePointCopy]) -> list[RestorePointCopy]:
    """Unlink copies whose destination was removed from its plan while the backup ran."""
    ids = {c.destination_id for c in copies if c.destination_id is not None}
    alive = set(session.scalars(select(PlanDestination.id).where(PlanDestination.id.in_(ids)))) if ids else set()
    for c in copies:
        if c.destination_id not in alive:
            c.destination_id = None
    return copies


def open_copy(copy: RestorePointCopy, sealer: Sealer) -> Storage:
    return open_location(copy.kind, copy.config, _open_secret(sealer, copy.secret_sealed))


def readable_copy(point: RestorePoint) -> RestorePointCopy:
    for copy in point.copies:
        if copy.state == "present":
            return copy
    raise PgvaultError(f"restore point {point.id} has no copy left in storage")


def open_point(point: RestorePoint, sealer: Sealer) -> Storage:
    return open_copy(readable_copy(point), sealer)


def forget_point(session: Session, point: RestorePoint) -> None:
    """Remove a restore point's row; jobs that read it (restores, verifications) keep their history."""
    session.execute(update(Job).where(Job.restore_point_id == point.id).values(restore_point_id=None))
    session.delete(point)
