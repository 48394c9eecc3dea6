"""Reading a stored backup back: the manifest (checked against the catalog's sha256), file checksums,
and a stored file decrypted (encrypted plans) and decompressed as a stream for pg_restore or psql.

A file's ``format`` names what the backup did to the program's output, in order ("custom+zstd+aes256gcm":
pg_dump's custom archive, zstd, AES-256-GCM); reading undoes it in reverse. Only authenticated plaintext
ever leaves ``decoded_stream``: a wrong data key fails at the first chunk, before a byte reaches a program.
A database's archive is decompressed by a child process rather than here (``archive_input``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypedDict

import zstandard

from ..backup.compressor import compressor_env, decompressor_argv
from ..backup.encryption import FORMAT_SUFFIX, DecryptionError, decrypt_stream, open_data_key
from ..backup.manifest import FileEntry, Manifest
from ..crypto import Sealer
from ..errors import ArchiveIntegrityError, ToolError
from ..pgtools.runner import CancelToken, Filter
from ..storage import LocalStorage, Storage, StorageError


def load_manifest(storage: Storage, prefix: str, expected_sha256: str) -> Manifest:
    data = b"".join(storage.read(f"{prefix}/manifest.json"))
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise ArchiveIntegrityError(f"manifest.json: sha256 mismatch (catalog {expected_sha256[:12]}…, "
                                    f"stored {actual[:12]}…)")
    return Manifest.from_json(data)


def data_key(sealer: Sealer | None, sealed: bytes | None) -> bytes | None:
    """A restore point's data key (None when it is not encrypted), or an ``ArchiveIntegrityError`` saying why it
    cannot be had (its master key is missing from the keyring, or the sealed value was altered)."""
    if sealed is None:
        return None
    if sealer is None:
        raise ArchiveIntegrityError("the restore point is encrypted and no master key was given")
    try:
        return open_data_key(sealer, sealed)
    except DecryptionError as exc:
        raise ArchiveIntegrityError(str(exc)) from None


def is_encrypted(entry: FileEntry) -> bool:
    return entry.format.split("+")[-1] == FORMAT_SUFFIX


def check_file(storage: Storage, entry: FileEntry, progress: Callable[[int], None] | None = None,
               data_key: bytes | None = None) -> None:
    """Re-read a stored file whole and compare its size and sha256 with the manifest's. Given the data key,
    an encrypted file is also authenticated chunk by chunk in the same pass (that the key opens it, and
    that it is complete), without decompressing it."""
    sha = hashlib.sha256()
    size = 0

    def stored() -> Iterator[bytes]:
        nonlocal size
        for chunk in storage.read(entry.key):
            sha.update(chunk)
            size += len(chunk)
            if progress is not None:
                progress(len(chunk))
            yield chunk

    try:
        if data_key is not None and is_encrypted(entry):
            for _ in decrypt_stream(data_key, stored()):
                pass
        else:
            for _ in stored():
                pass
    except StorageError as exc:
        raise ArchiveIntegrityError(f"{entry.key}: {exc}") from exc
    except DecryptionError as exc:
        raise ArchiveIntegrityError(f"{entry.key}: {exc}") from None
    if size != entry.bytes or sha.hexdigest() != entry.sha256:
        raise ArchiveIntegrityError(
            f"{entry.key}: sha256 mismatch (manifest {entry.sha256[:12]}… {entry.bytes} bytes, "
            f"stored {sha.hexdigest()[:12]}… {size} bytes)"
        )


def decoded_stream(storage: Storage, entry: FileEntry, progress: Callable[[int], None] | None = None,
                   data_key: bytes | None = None) -> Iterator[bytes]:
    """A stored file as the program wrote it (pg_dump's archive, pg_dumpall's SQL), decrypted and
    decompressed on the fly. Raises ``ArchiveIntegrityError`` for an unknown format, an encrypted file without
    its key, or a chunk that does not authenticate."""
    base, *layers = entry.format.split("+")
    if base not in ("custom", "sql") or any(layer not in ("zstd", FORMAT_SUFFIX) for layer in layers):
        raise ArchiveIntegrityError(f"{entry.key}: unknown format {entry.format!r}")
    if FORMAT_SUFFIX in layers and data_key is None:
        raise ArchiveIntegrityError(f"{entry.key}: the file is encrypted and the restore point has no data key")

    def read() -> Iterator[bytes]:
        for chunk in storage.read(entry.key):
            if progress is not None:
                progress(len(chunk))
            yield chunk

    stream: Iterator[bytes] = read()
    for layer in reversed(layers):
        stream = _decrypted(stream, data_key, entry.key) if layer == FORMAT_SUFFIX else _decompressed(stream)
    return stream




class ProgramInput(TypedDict):
    """What ``run_program`` needs to feed a stored file to a program: ``run_program(..., **input)``."""

    stdin_source: Iterator[bytes]
    stdin_through: Filter | None


def decompressor(choice: str = "auto") -> Filter:
    """The decompressor restores run (``PGVAULT_COMPRESSOR`` chooses, as for backups): chosen once per
    job, so that a missing ``zstd`` fails the job up front with what to do."""
    return decompressor_argv(choice), compressor_env()


@contextlib.contextmanager
def readable_twice(storage: Storage, entry: FileEntry, cancel: CancelToken | None = None,
                   runtime_dir: Path | None = None) -> Iterator[Storage]:
    """Where to read ``entry`` from when it will be read twice (a drill restores an archive and then
    counts its rows): ``storage`` itself when its reads are local; else one downloaded copy in pgvault's
    private runtime folder (``PGVAULT_HOME/run``, 0700; swept at start should a crash leave it), removed
    on the way out. The copy holds the stored bytes, 4-80x smaller than the archive, and its reads are
    checked as every read is (the decompressor's checksums, and decryption's). A read of ``storage`` that
    fails raises StorageError; a copy that cannot be written locally (a full disk) raises ToolError: a
    fact about this host, not about the backup."""
    if not storage.remote:
        yield storage
        return
    try:
        tmp = tempfile.mkdtemp(prefix="pgvault-copy-", dir=runtime_dir)
    except OSError as exc:
        raise ToolError(f"no room for a local copy of {entry.key}: {exc.strerror}") from exc
    try:
        path = Path(tmp) / entry.key
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            out = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
        except OSError as exc:
            raise ToolError(f"no room for a local copy of {entry.key}: {exc.strerror}") from exc
        with out:  # a scratch copy: no fsync, it is gone when the reads are done
            for chunk in storage.read(entry.key):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise ToolError(f"no room for a local copy of {entry.key} in {tmp}: {exc.strerror}") from exc
        yield LocalStorage(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def archive_input(storage: Storage, entry: FileEntry, progress: Callable[[int], None] | None = None,
                  data_key: bytes | None = None, through: Filter | None = None) -> ProgramInput:
    """The pg_dump archive of a stored database, for pg_restore's stdin: this process reads the stored
    file and decrypts it (checking every chunk), and a decompressor child (``zstd -d``, see
    backup/compressor.py) between it and pg_restore expands it, so that the archive, 4-80x the stored
    bytes, never passes through this process. The decompressor verifies the frames' checksums and fails
    the run on a damaged or cut-short stream."""
    base, *layers = entry.format.split("+")
    if base != "custom" or not layers or layers[0] != "zstd":
        raise ArchiveIntegrityError(f"{entry.key}: unknown format {entry.format!r}")
    stored = dataclasses.replace(entry, format="+".join([base, *layers[1:]]))  # all but the zstd layer
    return {"stdin_source": decoded_stream(storage, stored, progress, data_key),
            "stdin_through": through or decompressor()}


def _decompressed(stream: Iterator[bytes]) -> Iterator[bytes]:
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    for chunk in stream:
        out = decompressor.decompress(chunk)
        if out:
            yield out


def _decrypted(stream: Iterator[bytes], key: bytes | None, name: str) -> Iterator[bytes]:
    assert key is not None
    try:
        yield from decrypt_stream(key, stream)
    except DecryptionError as exc:
        raise ArchiveIntegrityError(f"{name}: {exc}") from None
