"""Credentials: named database logins that instances are registered with (Command Center's credential
manager, which cvpysdk's ``add_postgresql_instance`` goes through).

The password is sealed with AES-256-GCM under the master key, with its own context label, so a sealed
credential cannot be passed off as an instance password or the other way round.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..catalog.models import Credential
from ..crypto import Sealer
from ..errors import BadRequest, Conflict, NotFound, shown

PASSWORD_CONTEXT = "credential.password"  # noqa: S105 - an AEAD context label
ACCOUNT_TYPE = "DATABASE_ACCOUNT"
DATABASE_TYPE = "POSTGRESQL"


def create(session: Session, sealer: Sealer, *, name: str, username: str, password: str,
           description: str = "", account_type: str = ACCOUNT_TYPE, database_type: str = DATABASE_TYPE,
           created_by: int | None = None) -> Credential:
    if account_type.upper() != ACCOUNT_TYPE or database_type.upper() != DATABASE_TYPE:
        raise BadRequest(f"pgvault keeps PostgreSQL database logins only (accountType {ACCOUNT_TYPE}, "
                         f"databaseCredentialType {DATABASE_TYPE}), not {shown(account_type)}/{shown(database_type)}")
    if session.scalar(select(Credential.id).where(Credential.name_key == name.lower())) is not None:
        raise Conflict(f"a credential named {shown(name)} already exists")
    cred = Credential(
        name=name, name_key=name.lower(), account_type=ACCOUNT_TYPE, database_type=DATABASE_TYPE,
        username=username, password_sealed=sealer.seal(password.encode(), PASSWORD_CONTEXT),
        description=description, created_by=created_by,
    )
    session.add(cred)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"a credential named {shown(name)} already exists") from None
    return cred


def list_all(session: Session) -> list[Credential]:
    return list(session.scalars(select(Credential).order_by(Credential.id)))


def get(session: Session, credential_id: int) -> Credential:
    cred = session.get(Credential, credential_id)
    if cred is None:
        raise NotFound(f"credential {credential_id} does not exist")
    return cred


def find(session: Session, name: str) -> Credential:
    cred = session.scalar(select(Credential).where(Credential.name_key == name.lower()))
    if cred is None:
        raise NotFound(f"credential {shown(name)} does not exist")
    return cred


def delete(session: Session, name: str) -> None:
    """Instances keep their own sealed copy of the login they were registered with, so deleting a
    credential never breaks a backup."""
    session.delete(find(session, name))
    session.flush()


def password_of(cred: Credential, sealer: Sealer) -> str:
    return sealer.open(cred.password_sealed, PASSWORD_CONTEXT).decode()
