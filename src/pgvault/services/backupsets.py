"""Reading backupsets and subclients of live instances (Command Center's hierarchy under an instance)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..catalog.models import Backupset, Instance, Subclient
from ..errors import NotFound


def list_backupsets(session: Session, *, client_id: int | None = None,
                    instance_id: int | None = None) -> list[Backupset]:
    q = select(Backupset).join(Instance).where(Instance.deleted_at.is_(None)).order_by(Backupset.id)
    if client_id is not None:
        q = q.where(Instance.cloud_account_id == client_id)
    if instance_id is not None:
        q = q.where(Instance.id == instance_id)
    return list(session.scalars(q))


def get_backupset(session: Session, backupset_id: int) -> Backupset:
    bs = session.get(Backupset, backupset_id)
    if bs is None or bs.instance.deleted_at is not None:
        raise NotFound(f"backupset {backupset_id} does not exist")
    return bs


def list_subclients(session: Session, *, client_id: int | None = None, instance_id: int | None = None,
                    backupset_id: int | None = None, plan_id: int | None = None) -> list[Subclient]:
    q = select(Subclient).join(Instance).where(Instance.deleted_at.is_(None)).order_by(Subclient.id)
    if client_id is not None:
        q = q.where(Instance.cloud_account_id == client_id)
    if instance_id is not None:
        q = q.where(Instance.id == instance_id)
    if backupset_id is not None:
        q = q.where(Subclient.backupset_id == backupset_id)
    if plan_id is not None:
        q = q.where(Instance.plan_id == plan_id)
    return list(session.scalars(q))


def get_subclient(session: Session, subclient_id: int) -> Subclient:
    sub = session.get(Subclient, subclient_id)
    if sub is None or sub.instance.deleted_at is not None:
        raise NotFound(f"subclient {subclient_id} does not exist")
    return sub
