"""Secrets at rest: AES-256-GCM under a master key kept in ``PGVAULT_HOME`` (0600) or given by
``PGVAULT_MASTER_KEY``.

A sealed value carries the id of the key that sealed it, so that the key can be rotated later without
guessing which key opens which value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .files import write_private_file

_VERSION = b"\x01"
_NONCE = 12
_KEY_ID = 8


class MasterKeyError(Exception):
    pass


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
    except binascii.Error as exc:
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
