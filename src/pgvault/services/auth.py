"""Users, passwords and login tokens.

Passwords are hashed with scrypt (a slow, memory-hard KDF from the standard library). Tokens are 256
random bits shown once as ``QSDK <hex>``; the catalog keeps only their sha256, which is enough for a
high-entropy secret and lets every request be checked with one indexed lookup.

A process keeps the tokens it validated for a few seconds (``TokenCache``, ``PGVAULT_TOKEN_CACHE_SECONDS``)
so that a burst of requests is not a catalog transaction each; docs/api.md says what that means for a
logout seen by another API replica.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import Connection, String, bindparam, select
from sqlalchemy.orm import Session

from ..catalog.models import ApiKey, AuthToken, User
from ..catalog.prepared import DriverReader, Prepared
from ..catalog.types import utcnow
from ..domain.access import Role, weaker
from ..errors import BadRequest, NotAuthenticated

_N, _R, _P = 2**15, 8, 1
TOKEN_PREFIX = "QSDK "  # noqa: S105 - a marker, not a secret
KEY_PREFIX = "QSDK pgvault-key-"  # an API key: usable wherever a token is (the Authtoken header)


# scrypt at these parameters holds 128 * r * n = 32 MiB for ~50 ms of CPU. Unbounded, N logins at once
# (the API's threadpool runs 40) would take N x 32 MiB, the process's largest allocation by far
# (docs/performance.md, "Memory"). One at a time keeps the process's peak at start-up plus one KDF
# (~145 MB) and still checks ~20 passwords a second, which a login API whose tokens last hours never
# needs; the others wait their turn.
KDF_AT_ONCE = 1
_kdf_slots = threading.BoundedSemaphore(KDF_AT_ONCE)


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    with _kdf_slots:
        return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password.encode(), salt, _N, _R, _P)
    return "$".join(["scrypt", str(_N), str(_R), str(_P), base64.b64encode(salt).decode(),
                     base64.b64encode(digest).decode()])


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = _scrypt(password.encode(), base64.b64decode(salt), int(n), int(r), int(p))
    return hmac.compare_digest(candidate, base64.b64decode(digest))


@functools.cache
def _dummy_hash() -> str:
    """What an unknown user's login is checked against (so it costs the same scrypt as a known one's),
    made at the first such login rather than at import (0.3 s for every ``import pgvault.app``)."""
    return hash_password(secrets.token_hex(8))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PasswordRow(NamedTuple):
    id: int
    username: str
    password_hash: str
    role: Role
    enabled: bool


def password_row(session: Session, username: str) -> PasswordRow | None:
    """The user's stored password hash (None for an unknown user), for ``check_password``."""
    row = session.execute(select(User.id, User.username, User.password_hash, User.role, User.enabled)
                          .where(User.username == username)).first()
    return None if row is None else PasswordRow(*row)


def check_password(row: PasswordRow | None, password: str) -> AuthUser:
    """The user whose password this is, else NotAuthenticated. The slow part (scrypt, ~50 ms, and a wait
    for a turn at it, KDF_AT_ONCE): run it outside any transaction, which would hold a pooled connection
    (and on SQLite a snapshot, or with BEGIN IMMEDIATE the write lock) for all that time."""
    # Same work whether or not the user exists: no user enumeration by timing.
    ok = verify_password(password, row.password_hash if row else _dummy_hash())
    if row is None or not ok:
        # Not Command Center's "Access denied" wording: cvpysdk turns a 401 saying "Access denied" with
        # errorCode 5 into a hint about SSL certificates and drops this message.
        raise NotAuthenticated("Login failed: invalid user name or password")
    if not row.enabled:
        # after the password proved right only: a wrong guess learns nothing about the account
        raise NotAuthenticated(f"Login failed: user {row.username} is disabled")
    return AuthUser(row.id, row.username, Role(row.role))


def issue_token(session: Session, user: AuthUser, ttl_seconds: int) -> str:
    """A new token for ``user`` (who just proved their password), shown once."""
    token = TOKEN_PREFIX + secrets.token_hex(32)
    session.add(AuthToken(token_hash=_token_hash(token), user_id=user.id,
                          expires_at=utcnow() + dt.timedelta(seconds=ttl_seconds)))
    return token


@dataclass(frozen=True, slots=True)
class AuthUser:
    """Who a request comes from: what the routes need of the user, and safe to share between requests."""

    id: int
    username: str
    role: Role = Role.VIEWER  # (the least, where a caller builds one without saying)
    key_id: int | None = None  # the API key the request came with (None: a login token)


class TokenCache:
    """Tokens this process validated lately, by their sha256: a hit saves the request its catalog
    transaction. An entry lives ``ttl_seconds`` at most, and never past the token's own expiry (checked
    at every hit). A logout or renewal in this process forgets the token at once and keeps it from being
    cached again for ``ttl_seconds`` (a check that read the catalog before the logout committed cannot
    put it back); another process (an API replica) keeps accepting a token it cached until its entry
    runs out, so a logout takes up to ``ttl_seconds`` to reach every replica. ``ttl_seconds`` 0 turns the
    cache off. At most ``max_entries`` tokens are kept (the oldest entries go first)."""

    def __init__(self, ttl_seconds: float, max_entries: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[AuthUser, float, dt.datetime]] = {}  # digest -> (user, until, expires)
        self._forgotten: dict[str, float] = {}  # digest -> until when it may not be cached again

    def get(self, token: str) -> AuthUser | None:
        if self.ttl <= 0:
            return None
        digest = _token_hash(token.strip())
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            user, until, expires = entry
            if until <= self._clock() or expires <= utcnow():
                del self._entries[digest]
                return None
            return user

    def put(self, digest: str, user: AuthUser, expires_at: dt.datetime) -> None:
        if self.ttl <= 0:
            return
        now = self._clock()
        with self._lock:
            if self._forgotten.get(digest, 0.0) > now:
                return
            self._entries.pop(digest, None)
            self._entries[digest] = (user, now + self.ttl, expires_at)
            while len(self._entries) > self.max_entries:
                del self._entries[next(iter(self._entries))]

    def forget(self, token: str | None) -> None:
        """The token was logged out or renewed (in this process): refuse it from the catalog from now on."""
        if not token:
            return
        digest = _token_hash(token.strip())
        now = self._clock()
        with self._lock:
            self._entries.pop(digest, None)
            if len(self._forgotten) >= self.max_entries:
                self._forgotten = {d: t for d, t in self._forgotten.items() if t > now}
            self._forgotten[digest] = now + self.ttl

    def forget_user(self, user_id: int) -> None:
        """The user's role changed, or they were disabled or deleted (in this process): check their tokens
        and keys against the catalog again from now on."""
        with self._lock:
            for digest in [d for d, (u, _, _) in self._entries.items() if u.id == user_id]:
                del self._entries[digest]

    def forget_key(self, key_id: int) -> None:
        with self._lock:
            for digest in [d for d, (u, _, _) in self._entries.items() if u.key_id == key_id]:
                del self._entries[digest]

    def __len__(self) -> int:
        return len(self._entries)


class _TokenRow(NamedTuple):
    revoked_at: dt.datetime | None
    expires_at: dt.datetime
    id: int
    username: str
    role: str
    enabled: bool


class _KeyRow(NamedTuple):
    revoked_at: dt.datetime | None
    key_id: int
    key_role: str
    id: int
    username: str
    role: str
    enabled: bool


_tokens, _users, _keys = AuthToken.__table__, User.__table__, ApiKey.__table__
_TOKEN_CHECK = Prepared(
    select(_tokens.c.revoked_at, _tokens.c.expires_at, _users.c.id, _users.c.username, _users.c.role,
           _users.c.enabled)
    .join(_users, _users.c.id == _tokens.c.user_id).where(_tokens.c.token_hash == bindparam("digest", type_=String)),
    _TokenRow)
_KEY_CHECK = Prepared(
    select(_keys.c.revoked_at, _keys.c.id, _keys.c.role, _users.c.id, _users.c.username, _users.c.role,
           _users.c.enabled)
    .join(_users, _users.c.id == _keys.c.user_id).where(_keys.c.key_hash == bindparam("digest", type_=String)),
    _KeyRow)
# An API key lives until it is revoked; for the token cache, "expires" is this far ahead.
_KEY_CACHE_HORIZON = dt.timedelta(days=365 * 100)


def authenticate(conn: DriverReader | Session | Connection, token: str | None,
                 cache: TokenCache | None = None) -> AuthUser:
    """The user of a live token (one indexed lookup, SQL rows, no ORM objects); with ``cache``, a valid
    token is remembered there."""
    if not token:
        raise NotAuthenticated("Authtoken header is missing")
    token = token.strip()
    digest = _token_hash(token)
    if token.startswith(KEY_PREFIX):
        key = _KEY_CHECK.first(conn, digest=digest)
        if key is None or key.revoked_at is not None:
            raise NotAuthenticated("Authtoken is an API key that is unknown or was revoked")
        if not key.enabled:
            raise NotAuthenticated(f"the API key's user {key.username} is disabled")
        user = AuthUser(key.id, key.username, weaker(Role(key.key_role), Role(key.role)), key.key_id)
        if cache is not None:
            cache.put(digest, user, utcnow() + _KEY_CACHE_HORIZON)
        return user
    row = _TOKEN_CHECK.first(conn, digest=digest)
    if row is None or row.revoked_at is not None:
        raise NotAuthenticated("Authtoken is invalid or was logged out")
    if row.expires_at <= utcnow():
        raise NotAuthenticated("Authtoken has expired; log in again")
    if not row.enabled:
        raise NotAuthenticated(f"user {row.username} is disabled")
    user = AuthUser(row.id, row.username, Role(row.role))
    if cache is not None:
        cache.put(digest, user, row.expires_at)
    return user


def logout(session: Session, token: str | None) -> None:
    user = authenticate(session, token)
    if user.key_id is not None:
        raise BadRequest("an API key does not log out: revoke it (DELETE /ApiKey/{id}, pgvault apikeys revoke)")
    row = session.scalar(select(AuthToken).where(AuthToken.token_hash == _token_hash(str(token).strip())))
    assert row is not None and row.user_id == user.id
    row.revoked_at = utcnow()


def create_user(session: Session, username: str, password: str, role: Role = Role.VIEWER, *,
                password_hash: str | None = None) -> User:
    """``password_hash``: the password already hashed (outside the transaction, as a route does)."""
    user = User(username=username, password_hash=password_hash or hash_password(password), role=role)
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
    if not row.user.enabled:
        raise BadRequest(f"this session cannot be renewed: user {row.user.username} is disabled")
    if row.expires_at + dt.timedelta(seconds=ttl_seconds) <= now:
        raise BadRequest("this session cannot be renewed: it expired too long ago; log in again")
    row.revoked_at = now
    new_token = TOKEN_PREFIX + secrets.token_hex(32)
    session.add(AuthToken(token_hash=_token_hash(new_token), user_id=row.user_id,
                          expires_at=now + dt.timedelta(seconds=ttl_seconds)))
    return new_token, row.user
