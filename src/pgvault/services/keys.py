"""Master key administration (``pgvault keys``): rotate the active key, re-wrap what older keys still
seal, list the keys and what each seals, retire a key nothing uses any more.

These run as a command beside a running service, on the catalog its settings name:

- the catalog is re-wrapped in one transaction (rows locked ``FOR UPDATE`` on PostgreSQL; SQLite's
  ``BEGIN IMMEDIATE`` serialises it with the service's writes), so every sealed value moves at once or
  none does;
- the new key file is in place, and the old key kept in ``keys/``, before that transaction starts, so a
  service on the same ``PGVAULT_HOME`` can open every value at every moment (its ``Keyring`` re-reads the
  key files when they change) and starts sealing under the new key without a restart;
- a value sealed under the old key by a job that was already running (a backup's data key is sealed when
  it starts) is counted by ``list``, makes ``retire`` refuse, and is moved by ``rewrap``;
- the copies of each data key beside the backups (``datakey.json``) are rewritten after the commit; one
  that cannot be written is reported, ``retire`` refuses while any copy is under the key being retired,
  and ``rewrap`` finishes the job. Backups themselves are never rewritten.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..backup.encryption import (
    DATA_KEY_CONTEXT,
    DATA_KEY_OBJECT,
    DecryptionError,
    data_key_document,
    parse_data_key_document,
)
from ..catalog.db import Catalog
from ..catalog.models import (
    Base,
    Credential,
    Instance,
    NotificationTarget,
    PlanDestination,
    RestorePoint,
    RestorePointCopy,
)
from ..crypto import KEYS_DIR, MASTER_FILE, Keyring, MasterKeyError, decode_master_key, key_id_hex, write_key_file
from ..errors import PgvaultError
from ..files import fsync_path
from ..settings import Settings
from ..storage import Storage, StorageError
from . import audit, credentials, destinations, instances, notifications


class KeyAdminError(PgvaultError):
    """A key command refused, with what to do instead."""


@dataclass(frozen=True)
class SealedColumn:
    label: str
    model: type[Base]
    attribute: str
    context: str


# Every column that holds a value sealed under the master key. A new one must be added here, or rotation
# would leave it under the old key (tests/test_encryption.py checks the models against this list).
SEALED = (
    SealedColumn("instance passwords", Instance, "password_sealed", instances.PASSWORD_CONTEXT),
    SealedColumn("credential passwords", Credential, "password_sealed", credentials.PASSWORD_CONTEXT),
    SealedColumn("destination secrets", PlanDestination, "secret_sealed", destinations.SECRET_CONTEXT),
    SealedColumn("copy secrets", RestorePointCopy, "secret_sealed", destinations.SECRET_CONTEXT),
    SealedColumn("restore point data keys", RestorePoint, "data_key_sealed", DATA_KEY_CONTEXT),
    SealedColumn("notification target URLs", NotificationTarget, "url_sealed", notifications.URL_CONTEXT),
)

ENV_ROTATION = """\
the active master key comes from PGVAULT_MASTER_KEY, which pgvault cannot replace. To rotate it:
  1. keep the current key as an old key (mode 0600, never on a command line):
       (umask 077; mkdir -p "$PGVAULT_HOME/keys"; printenv PGVAULT_MASTER_KEY > "$PGVAULT_HOME/keys/{key_id}.key")
     on every machine that runs pgvault with this catalog;
  2. set PGVAULT_MASTER_KEY to a new key (base64 of 32 random bytes: openssl rand -base64 32) wherever pgvault
     runs, and restart those processes (the environment is read at start);
  3. run `pgvault keys rewrap` with the new PGVAULT_MASTER_KEY: it re-wraps every sealed value under it;
  4. when `pgvault keys list` shows nothing left under {key_id}, `pgvault keys retire {key_id}`."""


@dataclass
class StorageSync:
    """What re-wrapping the ``datakey.json`` objects beside encrypted backups did."""

    rewritten: int = 0
    current: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class RewrapReport:
    active: str
    previous: str | None = None  # rotate: the key that was active before
    rewrapped: dict[str, int] = field(default_factory=dict)
    storage: StorageSync = field(default_factory=StorageSync)


@dataclass
class KeyRow:
    key_id: str
    state: str  # active | old | missing (values sealed under a key the keyring does not have)
    source: str
    seals: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.seals.values())


# -- commands ------------------------------------------------------------------------------------------

def rotate(settings: Settings) -> RewrapReport:
    """A new active master key; the old one moves to ``keys/<keyid>.key``; every sealed value is re-wrapped
    under the new key."""
    home = settings.home_dir
    if settings.master_key is not None:
        keyring = _keyring(settings)
        raise KeyAdminError(ENV_ROTATION.format(key_id=keyring.active_id))
    with _admin_lock(home), _catalog(settings) as catalog:
        keyring = _keyring(settings)
        _refuse_missing(catalog, keyring)
        previous = keyring.active_id
        info = next(k for k in keyring.known_keys() if k.active)
        kept = [p for p in info.files if p.parent.name == KEYS_DIR]
        if not kept:
            path = home / KEYS_DIR / f"{previous}.key"
            if path.exists():
                raise KeyAdminError(f"{path} exists and holds another key; move it away first")
            current = (home / MASTER_FILE).read_text()
            write_key_file(path, decode_master_key(current))
        write_key_file(home / MASTER_FILE, secrets.token_bytes(32))
        keyring.reload()
        report = _rewrap(catalog, keyring, "keys_rotate", previous=previous)
        report.previous = previous
        return report


def rewrap(settings: Settings) -> RewrapReport:
    """Re-wrap whatever is not under the active key yet (in the catalog and beside the backups): finishes
    an interrupted rotation, picks up values sealed by jobs that started before it, and is the rotation
    step when the environment provides the key. Idempotent."""
    with _admin_lock(settings.home_dir), _catalog(settings) as catalog:
        keyring = _keyring(settings)
        _refuse_missing(catalog, keyring)
        return _rewrap(catalog, keyring, "keys_rewrap")


def list_keys(settings: Settings) -> list[KeyRow]:
    """The keyring's keys, the active one first, with what each seals in the catalog; then any key that
    the catalog needs and the keyring lacks."""
    keyring = _keyring(settings)
    with _catalog(settings) as catalog, catalog.transaction(write=True) as s:
        counts = count_by_key(s)
    rows = [KeyRow(k.key_id, "active" if k.active else "old", k.source, dict(counts.pop(k.key_id, {})))
            for k in sorted(keyring.known_keys(), key=lambda k: not k.active)]
    rows += [KeyRow(kid, "missing", "-", dict(seals)) for kid, seals in sorted(counts.items())]
    return rows


def retire(settings: Settings, key_id: str) -> list[Path]:
    """Delete an old key's files, only when nothing in the catalog and no ``datakey.json`` beside a backup is
    sealed under it. Returns the files deleted."""
    home = settings.home_dir
    with _admin_lock(home), _catalog(settings) as catalog:
        keyring = _keyring(settings)
        matches = [k for k in keyring.known_keys() if k.key_id.startswith(key_id.lower())] if len(key_id) >= 6 else []
        if len(matches) != 1:
            known = ", ".join(k.key_id for k in keyring.known_keys())
            raise KeyAdminError(f"no single key {key_id!r} in the keyring (it has: {known}); give its id as "
                                "`pgvault keys list` shows it")
        info = matches[0]
        if info.active:
            raise KeyAdminError(f"{info.key_id} is the active master key; rotate first (`pgvault keys rotate`)")
        with catalog.transaction(write=True) as s:
            seals = count_by_key(s).get(info.key_id, Counter())
        if seals:
            what = ", ".join(f"{n} {label}" for label, n in seals.items())
            raise KeyAdminError(f"{info.key_id} still seals {what}; run `pgvault keys rewrap`, then retire it")
        blocking = _storage_users(catalog, keyring, info.key_id)
        if blocking:
            more = f" (and {len(blocking) - 10} more)" if len(blocking) > 10 else ""
            raise KeyAdminError(f"{info.key_id} may still be needed beside backups: " + "; ".join(blocking[:10])
                                + more + "; make the storage reachable and run `pgvault keys rewrap`, then retire it")
        for path in info.files:
            path.unlink()
            fsync_path(path.parent)
        with catalog.transaction(write=True) as s:
            audit.record(s, _key_event("keys_retire", info.key_id, {"deleted": [str(p) for p in info.files]}))
        return list(info.files)


def _key_event(action: str, key_id: str, details: dict[str, Any]) -> dict[str, Any]:
    """The audit record of a ``pgvault keys`` command (run on the service's host, by its OS user): a key
    id names a key, it is not one."""
    return audit.event(method="CLI", action=action, route=f"pgvault keys {action.removeprefix('keys_')}",
                       resource="MasterKey", resource_id=key_id, status=0, user_name=audit.local_actor(),
                       address="local", details=details)


# -- the catalog ---------------------------------------------------------------------------------------

def count_by_key(session: Session) -> dict[str, Counter[str]]:
    """Per master key id: how many values of each kind it seals. Reads only the headers of the values."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for col in SEALED:
        column = getattr(col.model, col.attribute)
        for value in session.scalars(select(column).where(column.is_not(None))):
            kid = key_id_hex(value) if value else None
            if kid is not None:
                out[kid][col.label] += 1
    return out


def rewrap_catalog(session: Session, keyring: Keyring) -> dict[str, int]:
    """Re-seal under the active key every value another key sealed, in the caller's transaction."""
    active = keyring.active_id
    done: dict[str, int] = {}
    for col in SEALED:
        column = getattr(col.model, col.attribute)
        rows = session.scalars(select(col.model).where(column.is_not(None)).with_for_update())
        n = 0
        for row in rows:
            value = getattr(row, col.attribute)
            if not value or key_id_hex(value) == active:
                continue
            where = f"{col.label}: {col.model.__tablename__} row {getattr(row, 'id', '?')}"
            try:
                setattr(row, col.attribute, keyring.reseal(value, col.context))
            except MasterKeyError as exc:
                raise KeyAdminError(f"{where}: {exc}; nothing was changed") from None
            except InvalidTag:
                raise KeyAdminError(f"{where} does not open (altered?); nothing was changed") from None
            n += 1
        done[col.label] = n
    session.flush()
    return done


def _rewrap(catalog: Catalog, keyring: Keyring, action: str, previous: str | None = None) -> RewrapReport:
    with catalog.transaction(write=True) as s:
        done = rewrap_catalog(s, keyring)
        details: dict[str, Any] = {"rewrapped": done, **({"previousKeyId": previous} if previous else {})}
        audit.record(s, _key_event(action, keyring.active_id, details))
    return RewrapReport(active=keyring.active_id, rewrapped=done, storage=sync_data_keys(catalog, keyring))


def _refuse_missing(catalog: Catalog, keyring: Keyring) -> None:
    """Refuse before changing anything when the catalog holds values under a key the keyring lacks: the
    one-transaction re-wrap could not open them."""
    with catalog.transaction(write=True) as s:
        counts = count_by_key(s)
    known = {k.key_id for k in keyring.known_keys()}
    missing = sorted(set(counts) - known)
    if missing:
        raise KeyAdminError(
            "the catalog holds values sealed under master keys this keyring lacks: " + ", ".join(missing)
            + f"; put them back in {keyring.home / KEYS_DIR}/<keyid>.key first; nothing was changed")


# -- beside the backups ----------------------------------------------------------------------------------

@dataclass
class _Copy:
    where: str
    key: str  # the datakey.json object
    sealed: bytes  # the catalog's sealed data key
    storage: Storage | None
    error: str | None = None  # why the storage cannot be opened


def _encrypted_copies(catalog: Catalog, keyring: Keyring) -> list[_Copy]:
    """Every present copy of every encrypted restore point, read in one short transaction: storage is
    reached outside it (a transaction holds SQLite's write lock)."""
    out: list[_Copy] = []
    with catalog.transaction(write=True) as s:
        points = s.scalars(select(RestorePoint).where(RestorePoint.data_key_sealed.is_not(None))
                           .order_by(RestorePoint.id))
        for point in points:
            assert point.data_key_sealed is not None
            for copy in point.copies:
                if copy.state != "present":
                    continue
                item = _Copy(f"restore point {point.id} copy {copy.id} ({point.prefix})",
                             f"{point.prefix}/{DATA_KEY_OBJECT}", point.data_key_sealed, None)
                try:
                    item.storage = destinations.open_copy(copy, keyring)
                except (StorageError, PgvaultError, MasterKeyError) as exc:
                    item.error = str(exc)
                out.append(item)
    return out


def _read_sealed(storage: Storage, key: str) -> bytes | None:
    try:
        return parse_data_key_document(b"".join(storage.read(key)))
    except (StorageError, DecryptionError):
        return None


def sync_data_keys(catalog: Catalog, keyring: Keyring) -> StorageSync:
    """Make each ``datakey.json`` hold the catalog's sealed data key (rewritten only when it differs)."""
    report = StorageSync()
    for copy in _encrypted_copies(catalog, keyring):
        if copy.storage is None:
            report.problems.append(f"{copy.where}: {copy.error}")
            continue
        if _read_sealed(copy.storage, copy.key) == copy.sealed:
            report.current += 1
            continue
        try:
            with copy.storage.writer(copy.key) as w:
                w.write(data_key_document(copy.sealed))
                w.commit()
        except StorageError as exc:
            report.problems.append(f"{copy.where}: {exc}")
            continue
        report.rewritten += 1
    return report


def _storage_users(catalog: Catalog, keyring: Keyring, key_id: str) -> list[str]:
    """Copies whose ``datakey.json`` is sealed under ``key_id``, or cannot be read to tell."""
    out = []
    for copy in _encrypted_copies(catalog, keyring):
        if copy.storage is None:
            out.append(f"{copy.where}: {copy.error}")
            continue
        found = _read_sealed(copy.storage, copy.key)
        if found is None:
            out.append(f"{copy.where}: {DATA_KEY_OBJECT} cannot be read")
        elif key_id_hex(found) == key_id:
            out.append(f"{copy.where}: {DATA_KEY_OBJECT} is sealed under it")
    return out


# -- plumbing --------------------------------------------------------------------------------------------

def _keyring(settings: Settings) -> Keyring:
    given = settings.master_key.get_secret_value() if settings.master_key else None
    try:
        return Keyring.open_home(settings.home_dir, given, create=False)
    except MasterKeyError as exc:
        raise KeyAdminError(str(exc)) from None


@contextlib.contextmanager
def _catalog(settings: Settings) -> Iterator[Catalog]:
    """The catalog the service uses, never a new one: a mistyped ``PGVAULT_HOME`` must not create an empty
    catalog and report that nothing is sealed."""
    url = settings.effective_catalog_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise KeyAdminError(f"no catalog at {url.removeprefix('sqlite:///')} (is PGVAULT_HOME right?)")
    catalog = Catalog(url)
    try:
        yield catalog
    finally:
        catalog.dispose()


@contextlib.contextmanager
def _admin_lock(home: Path) -> Iterator[None]:
    """One key command at a time per ``PGVAULT_HOME``."""
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(home / ".keys.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KeyAdminError("another `pgvault keys` command is running on this PGVAULT_HOME") from None
        yield
    finally:
        os.close(fd)



