"""Secrets at rest: AES-256-GCM under a master key kept in ``PGVAULT_HOME`` (0600) or given by
``PGVAULT_MASTER_KEY``, and the keyring of older master keys that rotation leaves behind.

A sealed value carries the id of the key that sealed it, so that the key can be rotated without guessing
which key opens which value (``pgvault keys``, ``services/keys.py``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import MasterKeyError
from .files import fsync_path, write_private_file

log = logging.getLogger("pgvault.keys")

_VERSION = b"\x01"
_NONCE = 12
_KEY_ID = 8




class Sealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise MasterKeyError("the master key must be 32 bytes (base64 of 32 random bytes)")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(b"pgvault-key-id" + key).digest()[:_KEY_ID]

    def seal(self, plaintext: bytes, context: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return _VERSION + self.key_id + nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def open(self, sealed: bytes, context: str) -> bytes:
        if sealed[:1] != _VERSION:
            raise MasterKeyError("unknown sealed-value format")
        key_id = sealed[1 : 1 + _KEY_ID]
        if key_id != self.key_id:
            raise MasterKeyError("this value was sealed under another master key")
        nonce = sealed[1 + _KEY_ID : 1 + _KEY_ID + _NONCE]
        return self._aead.decrypt(nonce, sealed[1 + _KEY_ID + _NONCE :], context.encode())


def decode_master_key(text: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except ValueError as exc:  # binascii.Error, or text that is not ASCII
        raise MasterKeyError("PGVAULT_MASTER_KEY is not valid base64") from exc


def load_or_create_master_key(home: Path, given: str | None) -> bytes:
    """The key from the environment wins; otherwise ``home/master.key``, created once with mode 0600."""
    if given:
        return decode_master_key(given)
    path = home / "master.key"
    if path.exists():
        return decode_master_key(path.read_text())
    key = secrets.token_bytes(32)
    write_private_file(path, base64.b64encode(key).decode() + "\n")
    return key


# -- the keyring: the active master key and older ones ----------------------------------------------

KEYS_DIR = "keys"
MASTER_FILE = "master.key"
ENV_SOURCE = "PGVAULT_MASTER_KEY"


def key_id_hex(sealed: bytes) -> str | None:
    """The id (hex) of the master key that sealed ``sealed``, read from its header without any key."""
    if len(sealed) < 1 + _KEY_ID or sealed[:1] != _VERSION:
        return None
    return sealed[1 : 1 + _KEY_ID].hex()


def write_key_file(path: Path, key: bytes) -> None:
    """Write (or replace) a key file atomically with mode 0600: a pgvault reading the keyring at the same
    moment sees the old file or the new one, never a half-written key."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.b64encode(key).decode() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_path(path.parent)


@dataclass(frozen=True)
class KeyInfo:
    key_id: str  # hex
    active: bool
    source: str  # ENV_SOURCE or the file's path
    files: tuple[Path, ...]  # the files holding this key (none for a key only in the environment)


@dataclass(frozen=True)
class _Keys:
    active: Sealer
    by_id: dict[bytes, Sealer]
    infos: tuple[KeyInfo, ...]
    signature: tuple[object, ...]


class Keyring(Sealer):
    """The master keys of one pgvault: the active one seals, every known one opens what it sealed.

    The active key is ``PGVAULT_MASTER_KEY`` or ``PGVAULT_HOME/master.key``; older keys live in
    ``PGVAULT_HOME/keys/*.key`` (``<keyid>.key`` by convention; a file is known by its content, not its
    name). When the environment provides the active key, a ``master.key`` file holding another key is an
    older key too, so moving from the file to the environment needs no copying.

    A running service picks up a rotation done by ``pgvault keys rotate`` without a restart: ``seal`` and
    ``open`` re-read the key files when ``master.key`` or the ``keys`` folder changed (two ``stat`` calls,
    cheap beside what a seal protects), so the keyring in memory is always the one on disk: a retired
    key is gone from the service too, and a key put back is found again.
    """

    def __init__(self, home: Path, given: str | None) -> None:
        self.home = home
        self._given = given
        self._lock = threading.Lock()
        self._keys = self._load()
        self.key_id = self._keys.active.key_id

    @classmethod
    def open_home(cls, home: Path, given: str | None, *, create: bool) -> Keyring:
        """The keyring of ``home``; with ``create``, a first ``master.key`` is made when there is none (the
        service's first start). Without it (the ``keys`` commands) a missing key is an error: running them
        with the wrong ``PGVAULT_HOME`` must not invent a key."""
        if not given and not (home / MASTER_FILE).exists():
            if not create:
                raise MasterKeyError(f"no master key: {home / MASTER_FILE} does not exist and {ENV_SOURCE} is "
                                     "not set (is PGVAULT_HOME right?)")
            load_or_create_master_key(home, None)
        return cls(home, given)

    # -- Sealer --------------------------------------------------------------------------------
    def seal(self, plaintext: bytes, context: str) -> bytes:
        return self._current().active.seal(plaintext, context)

    def open(self, sealed: bytes, context: str) -> bytes:
        return self._sealer_for(sealed).open(sealed, context)

    # -- keyring -------------------------------------------------------------------------------
    @property
    def active_id(self) -> str:
        return self._keys.active.key_id.hex()

    def known_keys(self) -> tuple[KeyInfo, ...]:
        return self._keys.infos

    def reseal(self, sealed: bytes, context: str) -> bytes:
        """The same secret sealed under the active key (a new nonce even when it already was)."""
        return self.seal(self.open(sealed, context), context)

    def reload(self) -> _Keys:
        with self._lock:
            self._keys = self._load()
            self.key_id = self._keys.active.key_id
            return self._keys

    def _current(self) -> _Keys:
        keys = self._keys
        return keys if keys.signature == self._signature() else self.reload()

    def _sealer_for(self, sealed: bytes) -> Sealer:
        if sealed[:1] != _VERSION or len(sealed) < 1 + _KEY_ID:
            raise MasterKeyError("unknown sealed-value format")
        key_id = sealed[1 : 1 + _KEY_ID]
        sealer = self._current().by_id.get(key_id)
        if sealer is None:
            raise MasterKeyError(
                f"this value was sealed under master key {key_id.hex()}, which is not in the keyring "
                f"(expected in {self.home / KEYS_DIR / (key_id.hex() + '.key')})")
        return sealer

    def _signature(self) -> tuple[object, ...]:
        """What changes when a key file is written, replaced, added or removed (names too: a folder's
        mtime can miss two changes within one clock tick)."""
        out: list[object] = []
        for path in (self.home / MASTER_FILE, self.home / KEYS_DIR):
            try:
                st = path.stat()
                out.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append(None)
        with contextlib.suppress(OSError):
            out.append(tuple(sorted(os.listdir(self.home / KEYS_DIR))))
        return tuple(out)

    def _load(self) -> _Keys:
        signature = self._signature()
        found: dict[bytes, tuple[Sealer, list[Path]]] = {}

        def add(key: bytes, path: Path | None) -> Sealer:
            sealer = Sealer(key)
            entry = found.setdefault(sealer.key_id, (sealer, []))
            if path is not None:
                entry[1].append(path)
            return entry[0]

        master = self.home / MASTER_FILE
        if self._given:
            active = add(decode_master_key(self._given), None)
            source = ENV_SOURCE
            if master.exists():
                _add_file(add, master)
        else:
            active = add(decode_master_key(master.read_text()), master)
            source = str(master)
        folder = self.home / KEYS_DIR
        if folder.is_dir():
            for path in sorted(folder.glob("*.key")):
                _add_file(add, path)
        infos = tuple(
            KeyInfo(key_id=kid.hex(), active=sealer is active,
                    source=source if sealer is active else str(paths[0]), files=tuple(paths))
            for kid, (sealer, paths) in found.items()
        )
        return _Keys(active=active, by_id={kid: s for kid, (s, _) in found.items()}, infos=infos,
                     signature=signature)


def _add_file(add: Callable[[bytes, Path | None], Sealer], path: Path) -> None:
    """An older key file; one that cannot be read is reported and skipped, so that a stray file never
    stops the values under every other key from opening."""
    try:
        add(decode_master_key(path.read_text()), path)
    except (OSError, MasterKeyError) as exc:
        log.warning("ignoring key file %s: %s", path, exc)
