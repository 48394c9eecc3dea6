"""Creating, changing and deleting plans. A plan in use cannot be deleted; a change takes effect from
each instance's next backup (a job reads its plan when it starts)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from ..catalog.models import CloudAccount, Instance, Plan, PlanDestination
from ..crypto import Sealer
from ..domain.targets import TargetPolicy, within
from ..errors import BadRequest, Conflict, NotFound, shown
from ..schemas.plans import DestinationBody, PlanBody
from ..storage import StorageError
from ..storage.s3 import endpoint_url
from .destinations import open_destination, seal_secret


def get(session: Session, plan_id: int) -> Plan:
    plan = session.get(Plan, plan_id)
    if plan is None:
        raise NotFound(f"plan {plan_id} does not exist")
    return plan


def listed(session: Session) -> list[Plan]:
    """Every plan with its destinations, by name."""
    return list(session.scalars(select(Plan).options(selectinload(Plan.destinations)).order_by(Plan.name_key)))


def _name_free(session: Session, name: str, except_id: int | None = None) -> None:
    clash = session.scalar(select(Plan.id).where(Plan.name_key == name.lower()))
    if clash is not None and clash != except_id:
        raise Conflict(f"a plan named {shown(name)} already exists")


def prepare_destinations(body: PlanBody, sealer: Sealer, bounds: DestinationBounds,
                         default_path: Path | None = None) -> list[PlanDestination] | None:
    """The destinations the body asks for (or the default folder for a new plan without any), each
    checked against ``bounds`` (before anything is touched), then probed by writing and deleting a small
    object. Called before the catalog transaction: a probe may wait on the network, and no catalog lock
    should wait with it."""
    wanted = body.destinations
    if body.storage is not None:
        wanted = [DestinationBody(name="primary", kind="local", path=body.storage.path)]
    if wanted is None and default_path is not None:
        wanted = [DestinationBody(name="primary", kind="local", path=str(default_path))]
    if wanted is None:
        return None
    new = [PlanDestination(name=d.name, kind=d.kind, config=d.config(), retention_days=d.retentionDays,
                           secret_sealed=seal_secret(sealer, d.secret()), position=n)
           for n, d in enumerate(wanted)]
    for dest in new:
        bounds.check(dest)
    for dest in new:
        check_reachable(dest, sealer)
    return new


@dataclass(frozen=True)
class DestinationBounds:
    """Where destinations may be: local folders under ``roots`` (``PGVAULT_HOME/backups`` and
    ``PGVAULT_LOCAL_ROOTS``), S3 endpoints the ``policy`` allows (``PGVAULT_ALLOWED_TARGETS``)."""

    roots: tuple[Path, ...]
    policy: TargetPolicy

    def check(self, dest: PlanDestination) -> None:
        if dest.kind == "local":
            path = Path(dest.config["path"])
            if not within(path, self.roots):
                allowed = ", ".join(str(r) for r in self.roots)
                raise BadRequest(f"destination {dest.name!r}: {shown(str(path))} is not under the folders local "
                                 f"destinations may use ({allowed}; PGVAULT_LOCAL_ROOTS adds more)")
            return
        cfg = dest.config
        try:
            url = endpoint_url(cfg.get("endpoint"), cfg["region"], cfg["bucket"], bool(cfg.get("virtualHosted")))
        except StorageError as exc:
            raise BadRequest(f"destination {dest.name!r}: {exc}") from None
        host = urlsplit(url).hostname or ""
        if not self.policy.allows(host):
            raise BadRequest(f"destination {dest.name!r}: the endpoint {shown(host)} is not among the targets "
                             f"pgvault may reach (PGVAULT_ALLOWED_TARGETS: {self.policy.describe()})")


def create(session: Session, body: PlanBody, destinations: list[PlanDestination]) -> Plan:
    if not body.planName:
        raise BadRequest("planName is required")
    _name_free(session, body.planName)
    plan = Plan(name=body.planName, name_key=body.planName.lower(), rpo_minutes=1440, retention_days=30,
                compression_level=1)
    apply(session, plan, body, destinations)
    session.add(plan)
    session.flush()
    return plan


def apply(session: Session, plan: Plan, body: PlanBody, destinations: list[PlanDestination] | None) -> None:
    """Set what the body gives (destinations come prepared); leave the rest as it is."""
    if body.planName is not None and body.planName != plan.name:
        _name_free(session, body.planName, plan.id)
        plan.name, plan.name_key = body.planName, body.planName.lower()
    if body.schedule is not None:
        sch = body.schedule
        plan.schedule_kind = "rpo" if sch.rpoMinutes is not None else "cron"
        plan.rpo_minutes = sch.rpoMinutes or plan.rpo_minutes
        plan.cron = sch.cron
        plan.timezone = sch.timeZone
        plan.window_start = sch.window.start if sch.window else None
        plan.window_end = sch.window.end if sch.window else None
    if body.rpoMinutes is not None:
        plan.schedule_kind, plan.rpo_minutes, plan.cron = "rpo", body.rpoMinutes, None
    if body.retention is not None:
        r = body.retention
        plan.retention_days, plan.keep_min = r.days, r.keepMin
        plan.gfs_daily, plan.gfs_weekly, plan.gfs_monthly = r.gfs.daily, r.gfs.weekly, r.gfs.monthly
    if body.retentionDays is not None:
        plan.retention_days = body.retentionDays
    if body.compressionLevel is not None:
        plan.compression_level = body.compressionLevel
    if body.encryption is not None:
        plan.encrypt = body.encryption
    if body.drillEvery is not None:
        plan.drill_every = body.drillEvery
    if destinations is not None:
        plan.destinations = destinations  # old destination rows go; copies keep what they need to be read


def check_reachable(dest: PlanDestination, sealer: Sealer) -> None:
    """Refuse a destination pgvault cannot write to now, rather than fail every backup later."""
    try:
        storage = open_destination(dest, sealer)
        if dest.kind == "local":
            path = Path(dest.config["path"])
            path.mkdir(parents=True, exist_ok=True)
            if not os.access(path, os.W_OK):
                raise StorageError(f"{path} is not writable")
        probe = f".pgvault-probe-{uuid.uuid4().hex}"
        with storage.writer(f"{probe}/probe") as w:
            w.write(b"probe")
            w.commit()
        storage.delete_prefix(probe)
    except (StorageError, OSError) as exc:
        raise BadRequest(f"destination {dest.name!r} cannot be written: {exc}") from None


@dataclass(frozen=True)
class PlanUser:
    """A live instance on a plan, as a page names it (an instance's name is unique within its account)."""

    id: int
    name: str
    cloud_account: str


def usage(session: Session) -> dict[int, int]:
    """How many live instances each plan has (plans without any are absent)."""
    rows = session.execute(select(Instance.plan_id, func.count()).where(Instance.deleted_at.is_(None))
                           .group_by(Instance.plan_id))
    return {plan_id: count for plan_id, count in rows}


def users(session: Session, plan_id: int, limit: int | None = None) -> tuple[list[PlanUser], int]:
    """The live instances on a plan, by name (the first ``limit``), and how many there are in all."""
    live = (Instance.plan_id == plan_id, Instance.deleted_at.is_(None))
    total = session.scalar(select(func.count()).select_from(Instance).where(*live)) or 0
    rows = session.execute(select(Instance.id, Instance.name, CloudAccount.name).join(CloudAccount)
                           .where(*live).order_by(Instance.name_key, CloudAccount.name, Instance.id).limit(limit))
    return [PlanUser(*r) for r in rows], total


NAMED_USERS = 20  # a refusal names this many of the instances on a plan, then says how many more


def delete(session: Session, plan_id: int) -> None:
    plan = get(session, plan_id)
    if plan.name_key == "default":  # (whoever uses it: it is where new instances go by default)
        raise Conflict("the default plan cannot be deleted")
    named, total = users(session, plan.id, NAMED_USERS)
    if total:
        names = ", ".join(f"{shown(u.name)} (cloud account {shown(u.cloud_account)}, id {u.id})" for u in named)
        more = f" and {total - len(named)} more" if total > len(named) else ""
        them = "them" if total != 1 else "it"
        raise Conflict(f"plan {plan.name!r} is used by {total} instance{'s' if total != 1 else ''}: {names}{more}; "
                       f"move {them} to another plan or delete {them} first")
    deleted_users = session.scalars(select(Instance).where(Instance.plan_id == plan.id)).all()
    if deleted_users:
        raise Conflict(f"plan {plan.name!r} is still referenced by {len(deleted_users)} deleted instances "
                       "whose backups it ages; delete their backups first")
    session.delete(plan)
    session.flush()


def move_instance(session: Session, inst: Instance, plan_name: str) -> None:
    plan = session.scalar(select(Plan).where(Plan.name_key == plan_name.lower()))
    if plan is None:
        raise NotFound(f"plan {shown(plan_name)} does not exist")
    inst.plan = plan
    session.flush()
