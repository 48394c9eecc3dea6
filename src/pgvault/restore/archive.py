"""Reading a stored backup back: the manifest (checked against the catalog's sha256), file checksums,
and a database archive decompressed as a stream for pg_restore."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import zstandard

from ..backup.manifest import FileEntry, Manifest
from ..storage import Storage, StorageError


class IntegrityError(Exception):
    """A stored file is not what the backup wrote."""


def load_manifest(storage: Storage, prefix: str, expected_sha256: str) -> Manifest:
    data = b"".join(storage.read(f"{prefix}/manifest.json"))
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise IntegrityError(f"manifest.json: sha256 mismatch (catalog {expected_sha256[:12]}…, stored {actual[:12]}…)")
    return Manifest.from_json(data)


def check_file(storage: Storage, entry: FileEntry, progress: Callable[[int], None] | None = None) -> None:
    """Re-read a stored file whole and compare its size and sha256 with the manifest's."""
    sha = hashlib.sha256()
    size = 0
    try:
        for chunk in storage.read(entry.key):
            sha.update(chunk)
            size += len(chunk)
            if progress is not None:
                progress(len(chunk))
    except StorageError as exc:
        raise IntegrityError(f"{entry.key}: {exc}") from exc
    if size != entry.bytes or sha.hexdigest() != entry.sha256:
        raise IntegrityError(
            f"{entry.key}: sha256 mismatch (manifest {entry.sha256[:12]}… {entry.bytes} bytes, "
            f"stored {sha.hexdigest()[:12]}… {size} bytes)"
        )


def archive_stream(storage: Storage, entry: FileEntry, progress: Callable[[int], None] | None = None
                   ) -> Iterator[bytes]:
    """The pg_dump archive of a stored database, decompressed on the fly, for pg_restore's stdin."""
    if entry.format != "custom+zstd":
        raise IntegrityError(f"{entry.key}: unknown format {entry.format!r}")
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    for chunk in storage.read(entry.key):
        if progress is not None:
            progress(len(chunk))
        out = decompressor.decompress(chunk)
        if out:
            yield out
