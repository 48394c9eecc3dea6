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
from sqlalchemy.orm import Session, joinedload

from ..catalog.models import AuthToken, User
from ..catalog.types import utcnow
from ..errors import BadRequest, NotAuthenticated

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
        # Not Command Center's "Access denied" wording: cvpysdk turns a 401 saying "Access denied" with
        # errorCode 5 into a hint about SSL certificates and drops this message.
        raise NotAuthenticated("Login failed: invalid user name or password")
    token = TOKEN_PREFIX + secrets.token_hex(32)
    session.add(AuthToken(token_hash=_token_hash(token), user_id=user.id,
                          expires_at=utcnow() + dt.timedelta(seconds=ttl_seconds)))
    return token, user


def authenticate(session: Session, token: str | None) -> User:
    if not token:
        raise NotAuthenticated("Authtoken header is missing")
    row = session.scalar(select(AuthToken).options(joinedload(AuthToken.user))  # one query, not two
                         .where(AuthToken.token_hash == _token_hash(token.strip())))
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


def renew(session: Session, token: str | None, ttl_seconds: int) -> tuple[str, User]:
    """A fresh token for the session of ``token``, which stops working (``POST /RenewLoginToken``; cvpysdk
    calls it when a request gets a 401). A session renews while it is live and up to one token lifetime
    after it expired; one that was logged out, or expired longer ago, needs a new login.

    Refusals are a 400, not a 401: cvpysdk answers a 401 from the renewal itself by renewing again, three
    times, and then reports only "Reached the maximum attempts limit", without the reason."""
    if not token:
        raise BadRequest("sessionId (or the Authtoken header) is required")
    row = session.scalar(select(AuthToken).where(AuthToken.token_hash == _token_hash(token.strip())))
    now = utcnow()
    if row is None:
        raise BadRequest("this session cannot be renewed: the token is unknown; log in again")
    if row.revoked_at is not None:
        raise BadRequest("this session cannot be renewed: it was logged out or already renewed; log in again")
    if row.expires_at + dt.timedelta(seconds=ttl_seconds) <= now:
        raise BadRequest("this session cannot be renewed: it expired too long ago; log in again")
    row.revoked_at = now
    new_token = TOKEN_PREFIX + secrets.token_hex(32)
    session.add(AuthToken(token_hash=_token_hash(new_token), user_id=row.user_id,
                          expires_at=now + dt.timedelta(seconds=ttl_seconds)))
    return new_token, row.user
