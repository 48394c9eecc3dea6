"""First start: the admin user, the ``default`` cloud account and the ``default`` plan."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..catalog.models import CloudAccount, Plan, User
from ..files import write_private_file
from .auth import create_user

log = logging.getLogger("pgvault.bootstrap")


def bootstrap(session: Session, *, home: Path, backups_dir: Path, admin_password: str | None) -> None:
    if session.scalar(select(func.count()).select_from(User)) == 0:
        if admin_password:
            create_user(session, "admin", admin_password)
            log.info("created user 'admin' with the password from PGVAULT_ADMIN_PASSWORD")
        else:
            password = secrets.token_urlsafe(18)
            path = home / "admin-password"
            path.unlink(missing_ok=True)
            write_private_file(path, password + "\n")
            create_user(session, "admin", password)
            log.info("created user 'admin'; its generated password is in %s (mode 0600)", path)
    if session.scalar(select(CloudAccount).where(CloudAccount.name_key == "default")) is None:
        session.add(CloudAccount(name="default", name_key="default", description="created at first start"))
    if session.scalar(select(Plan).where(Plan.name_key == "default")) is None:
        session.add(Plan(name="default", name_key="default", storage_kind="local",
                         storage_path=str(backups_dir), rpo_minutes=1440, retention_days=30))
    session.flush()
