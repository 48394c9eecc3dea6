"""The storage contract every backend honours (one contract test suite runs against each).

Objects are written through an ``ObjectWriter`` and appear under their key only on ``commit``: an
aborted or crashed write never leaves a readable half object under the final key.
"""

from __future__ import annotations

import abc
import builtins
import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import StorageError

__all__ = ["ObjectWriter", "Storage", "StorageDenied", "StorageError", "Upload", "check_key"]


_KEY = re.compile(r"^[A-Za-z0-9._%+=~-]+(/[A-Za-z0-9._%+=~-]+)*$")


def check_key(key: str) -> str:
    if not _KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise StorageError(f"invalid object key {key!r}")
    return key


class StorageDenied(StorageError):
    """The store refused a request the destination's keys have no right to make."""


@dataclass(frozen=True)
class Upload:
    """A write that was started and neither committed nor aborted, kept (and billed) by the store although
    it is no object: an S3 multipart upload whose process died."""

    key: str  # relative to the storage's location, like every other key
    upload_id: str
    initiated: dt.datetime  # aware, UTC


class ObjectWriter(abc.ABC):
    @abc.abstractmethod
    def write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def commit(self) -> None:
        """Make the object durable and visible under its key."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Drop whatever was written; idempotent."""

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self.abort()  # a no-op after commit: leaving the block uncommitted drops the object


class Storage(abc.ABC):
    # Whether a read crosses the network: reading an object twice then downloads it twice, and a reader
    # that needs two passes takes a local copy first (restore.archive.readable_twice).
    remote = False

    @abc.abstractmethod
    def writer(self, key: str) -> ObjectWriter: ...

    @abc.abstractmethod
    def read(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]: ...

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix/``; returns how many."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Delete one object; deleting one that is not there is not an error."""

    @abc.abstractmethod
    def folders(self, prefix: str) -> list[str]:
        """The keys of the folders directly under ``prefix/`` (``prefix/name``), sorted, including one that
        holds only an unfinished write (a crashed backup's first file): what a sweep for leftovers lists.
        (An S3 multipart upload never completed is no object, so it makes no folder: see ``storage/s3.py``.)"""

    @abc.abstractmethod
    def list(self, prefix: str) -> list[str]: ...

    @abc.abstractmethod
    def uri(self, key: str) -> str: ...

    def incomplete_uploads(self, prefix: str) -> builtins.list[Upload]:
        """The unfinished writes under ``prefix/`` that the store keeps apart from its objects (S3's
        multipart uploads). Where an unfinished write is a file of its own (a local ``.partial``), it is
        in ``folders`` and ``list`` instead, and this is empty."""
        check_key(prefix)
        return []

    def abort_upload(self, upload: Upload) -> None:
        """Drop an unfinished write ``incomplete_uploads`` listed; one already gone is not an error."""
        raise StorageError(f"{self.uri(upload.key)}: this storage keeps no unfinished writes apart")
