"""One backup, several destinations: every byte goes to each of them as it streams (no second pass
over a finished dump, no staging). A destination that fails fails the object, and the object is aborted
everywhere, so no destination is left with a copy the others lack."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .base import ObjectWriter, Storage, StorageError


class _FanOutWriter(ObjectWriter):
    def __init__(self, writers: list[ObjectWriter], members: list[Storage], key: str) -> None:
        self._writers = writers
        self._members = members
        self._key = key

    def write(self, data: bytes) -> None:
        for w in self._writers:
            w.write(data)

    def commit(self) -> None:
        done = 0
        try:
            for w in self._writers:
                w.commit()
                done += 1
        except StorageError:
            self.abort()
            for member in self._members[:done]:  # the ones already committed: take the object back
                with contextlib.suppress(Exception):
                    member.delete(self._key)
            raise

    def abort(self) -> None:
        for w in self._writers:
            with contextlib.suppress(Exception):
                w.abort()


class FanOutStorage(Storage):
    """Writes go to every member; reads, listings and URIs come from the first."""

    def __init__(self, members: list[Storage]) -> None:
        if not members:
            raise StorageError("a plan needs at least one destination")
        self.members = members
        self.remote = members[0].remote  # reads come from the first

    def writer(self, key: str) -> ObjectWriter:
        writers: list[ObjectWriter] = []
        try:
            for m in self.members:
                writers.append(m.writer(key))
        except StorageError:
            for w in writers:
                w.abort()
            raise
        return _FanOutWriter(writers, self.members, key)

    def read(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        return self.members[0].read(key, chunk_size)

    def exists(self, key: str) -> bool:
        return self.members[0].exists(key)

    def folders(self, prefix: str) -> list[str]:
        return self.members[0].folders(prefix)

    def list(self, prefix: str) -> list[str]:
        return self.members[0].list(prefix)

    def delete(self, key: str) -> None:
        for m in self.members:
            m.delete(key)

    def delete_prefix(self, prefix: str) -> int:
        counts = []
        errors = []
        for m in self.members:
            try:
                counts.append(m.delete_prefix(prefix))
            except StorageError as exc:
                errors.append(str(exc))
        if errors:
            raise StorageError("; ".join(errors))
        return max(counts, default=0)

    def uri(self, key: str) -> str:
        return self.members[0].uri(key)
