"""First start: the admin user, the ``default`` cloud account and the ``default`` plan."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..catalog.models import CloudAccount, Instance, Plan, PlanDestination, User
from ..catalog.types import utcnow
from ..domain.access import Role
from ..files import write_private_file
from .auth import create_user

log = logging.getLogger("pgvault.bootstrap")


PASSWORD_FILE = "admin-password"  # noqa: S105 - a file name


def bootstrap(session: Session, *, home: Path, backups_dir: Path, admin_password: str | None) -> None:
    if session.scalar(select(func.count()).select_from(User)) == 0:
        if admin_password:
            create_user(session, "admin", admin_password, Role.ADMINISTRATOR)
            log.info("created user 'admin' with the password from PGVAULT_ADMIN_PASSWORD")
        else:
            password = secrets.token_urlsafe(18)
            path = home / PASSWORD_FILE
            path.unlink(missing_ok=True)
            write_private_file(path, password + "\n")
            create_user(session, "admin", password, Role.ADMINISTRATOR)
            log.info("created user 'admin'; its generated password is in %s (mode 0600)", path)
    else:
        admin = session.scalar(select(User).where(User.username == "admin"))
        if admin is None or admin.password_changed_at is not None:
            forget_bootstrap_password(home)  # changed while this process was down (offline reset, a replica)
    if session.scalar(select(CloudAccount).where(CloudAccount.name_key == "default")) is None:
        session.add(CloudAccount(name="default", name_key="default", description="created at first start"))
    if session.scalar(select(Plan).where(Plan.name_key == "default")) is None:
        session.add(Plan(name="default", name_key="default", rpo_minutes=1440, retention_days=30, destinations=[
            PlanDestination(name="primary", kind="local", config={"path": str(backups_dir)}, position=0)]))
    session.flush()
    _reserve_instance_one(session)


def forget_bootstrap_password(home: Path) -> None:
    """The generated admin password is no longer the admin's: its file goes (after the change committed)."""
    path = home / PASSWORD_FILE
    if path.exists():
        path.unlink(missing_ok=True)
        log.info("removed %s: the admin password was changed", path)


RESERVED_INSTANCE = "DefaultInstanceName"


def _reserve_instance_one(session: Session) -> None:
    """Instance id 1 is Command Center's ``DefaultInstanceName``, and cvpysdk never reads the properties
    of an instance with id 1 (it fills them in itself), so the first real instance must not get it. On a
    catalog without instances, a deleted placeholder takes id 1 (the next id is then 2 on both dialects)."""
    if session.scalar(select(func.count()).select_from(Instance)) != 0:
        return
    account = session.scalar(select(CloudAccount).where(CloudAccount.name_key == "default"))
    plan = session.scalar(select(Plan).where(Plan.name_key == "default"))
    assert account is not None and plan is not None
    session.add(Instance(
        cloud_account=account, plan=plan, name=RESERVED_INSTANCE, name_key=RESERVED_INSTANCE.lower(), host="",
        port=0, maintenance_db="", username="", password_sealed=b"", declared_version="", server_version="",
        server_version_num=0, deleted_at=utcnow(),
    ))
    session.flush()
