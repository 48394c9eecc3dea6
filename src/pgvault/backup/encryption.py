"""Encrypted backup files: a random 256-bit data key per restore point, AES-256-GCM over fixed-size
chunks, so a dump of any size is encrypted and decrypted as a stream in bounded memory.

Stored file, format version 1::

    header  "PGVENC" | version (1 byte) | algorithm (1 byte, 1 = AES-256-GCM) | chunk size (4 bytes, big
            endian) | nonce prefix (8 random bytes, per file)                            = 20 bytes
    chunks  AES-256-GCM(plaintext of chunk size bytes) + 16-byte tag, ...; the last chunk holds 0 to
            chunk size bytes and is always present (an empty file is one empty final chunk)

Chunk ``i`` uses the nonce ``prefix | i`` (32-bit big-endian counter) and authenticates the whole header,
``i`` and a final-chunk flag as associated data (the STREAM construction of Hoang, Reyhanitabar, Rogaway
and Vizár). So a changed byte, two swapped chunks, a missing last chunk (truncation: the new last chunk
was sealed as not final) or a chunk appended after the last (extension) all fail to authenticate, and
decryption never yields a byte it has not authenticated. A reader only knows a chunk is the last when the
stream ends after it, so it holds back one chunk: memory is two chunks, whatever the file's size.

The data key is sealed by the master key (``crypto.Sealer``, context ``backup.data-key``) and kept in the
catalog (``RestorePoint.data_key_sealed``) and, the same sealed value, beside the backup in storage
(``datakey.json``), so that the storage and the master key alone can restore (docs/architecture.md).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..crypto import MasterKeyError, Sealer, key_id_hex
from ..errors import DecryptionError

MAGIC = b"PGVENC"
VERSION = 1
AES256GCM = 1
HEADER = struct.Struct(">6sBBI8s")
TAG = 16
CHUNK_SIZE = 1 << 20
MAX_CHUNK_SIZE = 16 << 20  # a reader refuses larger chunks: a forged header cannot make it buffer more
MAX_CHUNKS = 1 << 32  # the nonce's counter

FORMAT_SUFFIX = "aes256gcm"  # FileEntry.format gains "+aes256gcm"; the file name gains ".enc"
FILE_SUFFIX = ".enc"
DATA_KEY_CONTEXT = "backup.data-key"
DATA_KEY_OBJECT = "datakey.json"
DATA_KEY_FORMAT = "pgvault-datakey/1"




def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, final)


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack(">I", index)


class ChunkEncryptor:
    """Plaintext in, stored bytes out, as they come: ``update`` returns what can be written now (the
    header first), ``finish`` the final chunk. A full chunk is held back until more data shows it is not
    the last."""

    def __init__(self, key: bytes, chunk_size: int = CHUNK_SIZE) -> None:
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size must be 1..{MAX_CHUNK_SIZE}")
        self._aead = AESGCM(key)
        self._chunk = chunk_size
        self._prefix = os.urandom(8)
        self._header = HEADER.pack(MAGIC, VERSION, AES256GCM, chunk_size, self._prefix)
        self._pending = bytearray()
        self._index = 0
        self._started = False
        self._finished = False

    def update(self, data: bytes) -> bytes:
        if self._finished:
            raise ValueError("the encryptor is finished")
        out: list[bytes] = []
        if not self._started:
            self._started = True
            out.append(self._header)
        self._pending += data
        while len(self._pending) > self._chunk:
            out.append(self._seal(bytes(self._pending[: self._chunk]), final=False))
            del self._pending[: self._chunk]
        return b"".join(out)

    def finish(self) -> bytes:
        head = self.update(b"")
        self._finished = True
        tail = self._seal(bytes(self._pending), final=True)
        self._pending.clear()
        return head + tail

    def _seal(self, plaintext: bytes, *, final: bool) -> bytes:
        if self._index >= MAX_CHUNKS:
            raise ValueError("file too large for one encrypted stream")
        sealed = self._aead.encrypt(_nonce(self._prefix, self._index), plaintext,
                                    _aad(self._header, self._index, final))
        self._index += 1
        return sealed


class ChunkDecryptor:
    """Stored bytes in, authenticated plaintext out. ``finish`` checks that the stream ended exactly
    after a final chunk; until it returns, the plaintext is not known to be whole."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._buffer = bytearray()
        self._header: bytes | None = None
        self._prefix = b""
        self._sealed_chunk = 0
        self._index = 0
        self._finished = False

    def update(self, data: bytes) -> bytes:
        if self._finished:
            raise DecryptionError("data after the final chunk")
        self._buffer += data
        if self._header is None:
            if len(self._buffer) < HEADER.size:
                return b""
            self._read_header(bytes(self._buffer[: HEADER.size]))
            del self._buffer[: HEADER.size]
        out: list[bytes] = []
        # Strictly more than one sealed chunk buffered: the first is then known not to be the last.
        while len(self._buffer) > self._sealed_chunk:
            out.append(self._open(bytes(self._buffer[: self._sealed_chunk]), final=False))
            del self._buffer[: self._sealed_chunk]
        return b"".join(out)

    def finish(self) -> bytes:
        if self._header is None:
            raise DecryptionError("not an encrypted pgvault file (too short for its header)")
        if len(self._buffer) < TAG:
            raise DecryptionError(f"chunk {self._index} is cut short: the file was truncated")
        out = self._open(bytes(self._buffer), final=True)
        self._buffer.clear()
        self._finished = True
        return out

    def _read_header(self, header: bytes) -> None:
        magic, version, algorithm, chunk_size, prefix = HEADER.unpack(header)
        if magic != MAGIC:
            raise DecryptionError("not an encrypted pgvault file (bad magic)")
        if version != VERSION or algorithm != AES256GCM:
            raise DecryptionError(f"unsupported encrypted-file version {version}, algorithm {algorithm}")
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise DecryptionError(f"invalid chunk size {chunk_size}")
        self._header, self._prefix, self._sealed_chunk = header, prefix, chunk_size + TAG

    def _open(self, sealed: bytes, *, final: bool) -> bytes:
        assert self._header is not None
        if self._index >= MAX_CHUNKS:
            raise DecryptionError("too many chunks")
        try:
            plain = self._aead.decrypt(_nonce(self._prefix, self._index), sealed,
                                       _aad(self._header, self._index, final))
        except InvalidTag:
            where = "the final chunk" if final else f"chunk {self._index}"
            raise DecryptionError(
                f"{where} does not authenticate: the data key is wrong, or the file was altered, "
                "reordered, truncated or extended") from None
        self._index += 1
        return plain


def decrypt_stream(key: bytes, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Authenticated plaintext of a stored file, as it streams; raises ``DecryptionError`` at the first
    chunk that does not authenticate, or at the end when the stream is not complete."""
    dec = ChunkDecryptor(key)
    for chunk in chunks:
        out = dec.update(chunk)
        if out:
            yield out
    out = dec.finish()
    if out:
        yield out


# -- data keys ---------------------------------------------------------------------------------------

def new_data_key(sealer: Sealer) -> tuple[bytes, bytes]:
    """A fresh data key for one restore point, and the same key sealed under the active master key."""
    key = secrets.token_bytes(32)
    return key, sealer.seal(key, DATA_KEY_CONTEXT)


def open_data_key(sealer: Sealer, sealed: bytes) -> bytes:
    """The data key of a restore point. Raises ``DecryptionError`` with the reason when the master key that
    sealed it is missing or the sealed value was altered."""
    try:
        key = sealer.open(sealed, DATA_KEY_CONTEXT)
    except MasterKeyError as exc:
        raise DecryptionError(f"the data key cannot be unwrapped: {exc}") from None
    except InvalidTag:
        raise DecryptionError("the data key cannot be unwrapped: its sealed value was altered") from None
    if len(key) != 32:
        raise DecryptionError("the data key has the wrong length")
    return key


def data_key_document(sealed: bytes) -> bytes:
    """``datakey.json``: the sealed data key as it lies beside a backup. Nothing secret: opening it needs
    the master key named by ``masterKeyId``."""
    return json.dumps({
        "format": DATA_KEY_FORMAT, "masterKeyId": key_id_hex(sealed), "context": DATA_KEY_CONTEXT,
        "algorithm": "AES-256-GCM, chunked (pgvault backup/encryption.py, version 1)",
        "sealed": base64.b64encode(sealed).decode(),
    }, indent=2).encode()


def parse_data_key_document(data: bytes) -> bytes:
    """The sealed data key from a ``datakey.json``."""
    try:
        doc = json.loads(data)
        if doc.get("format") != DATA_KEY_FORMAT:
            raise ValueError(f"format {doc.get('format')!r}")
        return base64.b64decode(doc["sealed"], validate=True)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DecryptionError(f"not a pgvault datakey.json: {exc}") from None


def decrypt_local_file(path: Path, sealer: Sealer, out: BinaryIO, data_key_file: Path | None = None) -> int:
    """Decrypt one stored file of a local backup folder to ``out`` without the catalog: its data key from
    the ``datakey.json`` of its backup (found above the file unless given), opened by the keyring. What
    comes out is what was encrypted (a ``.dump.zst`` stays zstd). Returns the bytes written; raises
    ``DecryptionError`` when the file does not authenticate, after writing what did."""
    if data_key_file is None:
        data_key_file = next((p / DATA_KEY_OBJECT for p in list(path.parents)[:3] if (p / DATA_KEY_OBJECT).exists()),
                             None)
        if data_key_file is None:
            raise DecryptionError(f"no {DATA_KEY_OBJECT} found above {path}; give its path")
    key = open_data_key(sealer, parse_data_key_document(data_key_file.read_bytes()))
    written = 0
    with open(path, "rb") as fh:
        for plain in decrypt_stream(key, iter(lambda: fh.read(CHUNK_SIZE), b"")):
            out.write(plain)
            written += len(plain)
    return written
