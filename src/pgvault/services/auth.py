"""Users, passwords and login tokens.

Passwords are hashed with scrypt (a slow, memory-hard KDF from the standard library). Tokens are 256
random bits shown once as ``QSDK <hex>``; the catalog keeps only their sha256, which is enough for a
high-entropy secret and lets every request be checked with one indexed lookup.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..catalog.models import AuthToken, User
from ..catalog.types import utcnow
from ..errors import NotAuthenticated

_N, _R, _P = 2**15, 8, 1
TOKEN_PREFIX = "QSDK "  # noqa: S105 - a marker, not a secret


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=64 * 1024 * 1024, dklen=32)
    return "$".join(["scrypt", str(_N), str(_R), str(_P), base64.b64encode(salt).decode(),
                     base64.b64encode(digest).decode()])


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(
        password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
        maxmem=64 * 1024 * 1024, dklen=32,
    )
    return hmac.compare_digest(candidate, base64.b64decode(digest))


_DUMMY_HASH = hash_password(secrets.token_hex(8))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def login(session: Session, username: str, password: str, ttl_seconds: int) -> tuple[str, User]:
    user = session.scalar(select(User).where(User.username == username))
    # Same work whether or not the user exists: no user enumeration by timing.
    ok = verify_password(password, user.password_hash if user else _DUMMY_HASH)
    if user is None or not ok:
        raise NotAuthenticated("Access denied: invalid user name or password")
    token = TOKEN_PREFIX + secrets.token_hex(32)
    session.add(AuthToken(token_hash=_token_hash(token), user_id=user.id,
                          expires_at=utcnow() + dt.timedelta(seconds=ttl_seconds)))
    return token, user


def authenticate(session: Session, token: str | None) -> User:
    if not token:
        raise NotAuthenticated("Authtoken header is missing")
    row = session.scalar(select(AuthToken).where(AuthToken.token_hash == _token_hash(token.strip())))
    if row is None or row.revoked_at is not None:
        raise NotAuthenticated("Authtoken is invalid or was logged out")
    if row.expires_at <= utcnow():
        raise NotAuthenticated("Authtoken has expired; log in again")
    return row.user


def logout(session: Session, token: str | None) -> None:
    user = authenticate(session, token)
    row = session.scalar(select(AuthToken).where(AuthToken.token_hash == _token_hash(str(token).strip())))
    assert row is not None and row.user_id == user.id
    row.revoked_at = utcnow()


def create_user(session: Session, username: str, password: str) -> User:
    user = User(username=username, password_hash=hash_password(password))
    session.add(user)
    session.flush()
    return user
