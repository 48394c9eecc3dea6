"""Users, their roles and passwords, API keys and sessions: what happens (sessions take a Session, never
commit). Passwords are hashed by the caller before the transaction (``auth.hash_password``, scrypt ~50 ms)
so that no transaction holds a connection (or SQLite's write lock) through the KDF.

The rules kept here: the password policy (``check_policy``); at least one enabled Administrator always
remains (nobody disables, demotes or deletes the last one, nor themselves); an API key's role is no
stronger than its creator's; disabling a user or resetting their password ends their sessions (their
API keys stop working while they are disabled: a key acts as its creator).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..catalog.models import ApiKey, AuthToken, User
from ..catalog.types import utcnow
from ..domain.access import Capability, Role, allows
from ..errors import BadRequest, Conflict, NotFound, shown
from .auth import KEY_PREFIX, AuthUser, _token_hash

PASSWORD_MIN = 12
PASSWORD_MAX = 1024  # bounds what scrypt is given to chew on
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def check_username(username: str) -> str:
    if not _USERNAME.fullmatch(username):
        raise BadRequest(f"user name {shown(username)} is not valid: 1-64 letters, digits, '.', '_', '@' or '-', "
                         "starting with a letter or digit")
    return username


def check_policy(username: str, password: str) -> None:
    """The password policy: at least PASSWORD_MIN characters (at most PASSWORD_MAX), not containing the
    user name, and not one character repeated. Length is what makes a password hard to guess; rules about
    character classes mostly make people write them down (NIST SP 800-63B)."""
    if len(password) < PASSWORD_MIN:
        raise BadRequest(f"the password is too short: at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise BadRequest(f"the password is too long: at most {PASSWORD_MAX} characters")
    if username.lower() in password.lower():
        raise BadRequest("the password must not contain the user name")
    if len(set(password)) == 1:
        raise BadRequest("the password must not be one character repeated")
    if "\x00" in password:
        raise BadRequest("the password must not contain NUL")


def user_by_id(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


def user_by_name(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"no user named {shown(username)}")
    return user


def list_users(session: Session) -> Sequence[User]:
    return session.scalars(select(User).order_by(User.id)).all()


def add_user(session: Session, username: str, password_hash: str, role: Role, *, email: str = "",
             full_name: str = "") -> User:
    check_username(username)
    if session.scalar(select(User.id).where(func.lower(User.username) == username.lower())) is not None:
        raise Conflict(f"a user named {shown(username)} already exists")
    now = utcnow()
    user = User(username=username, password_hash=password_hash, role=role, email=email, full_name=full_name,
                enabled=True, created_at=now, updated_at=now, password_changed_at=now)
    session.add(user)
    session.flush()
    return user


def _other_enabled_admins(session: Session, user: User) -> int:
    return session.scalar(select(func.count()).select_from(User).where(
        User.role == Role.ADMINISTRATOR, User.enabled.is_(True), User.id != user.id)) or 0


def _keep_an_admin(session: Session, actor: AuthUser | None, user: User, what: str) -> None:
    if actor is not None and actor.id == user.id:
        raise BadRequest(f"you cannot {what} yourself")
    if user.role == Role.ADMINISTRATOR and user.enabled and _other_enabled_admins(session, user) == 0:
        raise Conflict(f"{user.username} is the last enabled Administrator: make another one first")


def revoke_sessions(session: Session, user_id: int, *, keep_hash: str | None = None) -> int:
    """End every live session (login token) of the user, but ``keep_hash``'s; the number ended."""
    now = utcnow()
    query = update(AuthToken).where(AuthToken.user_id == user_id, AuthToken.revoked_at.is_(None),
                                    AuthToken.expires_at > now)
    if keep_hash is not None:
        query = query.where(AuthToken.token_hash != keep_hash)
    return session.execute(query.values(revoked_at=now)).rowcount or 0  # type: ignore[attr-defined]


def set_enabled(session: Session, actor: AuthUser | None, user_id: int, enabled: bool) -> User:
    user = user_by_id(session, user_id)
    if not enabled and user.enabled:
        _keep_an_admin(session, actor, user, "disable")
        revoke_sessions(session, user.id)
    user.enabled = enabled
    user.updated_at = utcnow()
    return user


def update_user(session: Session, actor: AuthUser | None, user_id: int, *, role: Role | None = None,
                email: str | None = None, full_name: str | None = None) -> User:
    user = user_by_id(session, user_id)
    if role is not None and role != user.role:
        if user.role == Role.ADMINISTRATOR:
            _keep_an_admin(session, actor, user, "demote")
        user.role = role
        # keys stronger than the new role act with the new role anyway (auth.authenticate: the weaker)
    if email is not None:
        user.email = email
    if full_name is not None:
        user.full_name = full_name
    user.updated_at = utcnow()
    return user


def delete_user(session: Session, actor: AuthUser | None, user_id: int) -> User:
    user = user_by_id(session, user_id)
    _keep_an_admin(session, actor, user, "delete")
    session.delete(user)  # its sessions and API keys go with it (ON DELETE CASCADE); jobs keep its name
    session.flush()
    return user


def set_password(session: Session, user: User, password_hash: str, *, keep_hash: str | None = None) -> None:
    """A new password: every other session of the user ends (``keep_hash``: the one that asked)."""
    user.password_hash = password_hash
    user.password_changed_at = user.updated_at = utcnow()
    revoke_sessions(session, user.id, keep_hash=keep_hash)


def _may_touch(actor: AuthUser, owner_id: int) -> bool:
    """Whether ``actor`` may see and end what belongs to user ``owner_id`` (their own, or anyone's for an
    administrator); to the others it does not exist (404, not 403: no probing of ids)."""
    return owner_id == actor.id or allows(actor.role, Capability.MANAGE_USERS)


# -- API keys ------------------------------------------------------------------------------------------

def create_key(session: Session, creator: AuthUser, name: str, role: Role) -> tuple[ApiKey, str]:
    """A new API key for ``creator``, shown once: its role no stronger than the creator's."""
    if not name.strip() or len(name) > 255 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise BadRequest("name: 1-255 characters, no control characters")
    if role.rank > creator.role.rank:
        raise BadRequest(f"an API key's role cannot be stronger than yours ({creator.role.value}): "
                         f"{role.value} asked")
    if creator.key_id is not None:
        raise BadRequest("an API key cannot make API keys: log in as a user")
    secret = KEY_PREFIX + secrets.token_hex(32)
    key = ApiKey(key_hash=_token_hash(secret), name=name, user_id=creator.id, role=role, created_at=utcnow())
    session.add(key)
    session.flush()
    return key, secret


def list_keys(session: Session, user_id: int | None = None) -> Sequence[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.id)
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    return session.scalars(query).all()


def revoke_key(session: Session, actor: AuthUser, key_id: int) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None or not _may_touch(actor, key.user_id):
        raise NotFound(f"no API key with id {key_id}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    return key


def touch_key(session: Session, key_id: int) -> None:
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))


# -- sessions (login tokens) ---------------------------------------------------------------------------

def list_sessions(session: Session, user_id: int) -> Sequence[AuthToken]:
    """The user's live sessions, newest first."""
    return session.scalars(select(AuthToken).where(
        AuthToken.user_id == user_id, AuthToken.revoked_at.is_(None), AuthToken.expires_at > utcnow())
        .order_by(AuthToken.id.desc())).all()


def revoke_session(session: Session, actor: AuthUser, session_id: int) -> AuthToken:
    row = session.get(AuthToken, session_id)
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow() or not _may_touch(actor, row.user_id):
        raise NotFound(f"no live session with id {session_id}")
    row.revoked_at = utcnow()
    return row
