"""A local folder. Writes go to a hidden temporary file beside the target, fsynced, then renamed."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from ..files import fsync_path
from .base import ObjectWriter, Storage, StorageError, check_key


class _LocalWriter(ObjectWriter):
    def __init__(self, final: Path) -> None:
        self.final = final
        # Backups hold whole databases: readable by pgvault's user only, whatever the umask.
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.partial")
        self._fh = os.fdopen(os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
        self._done = False

    def write(self, data: bytes) -> None:
        try:
            self._fh.write(data)
        except OSError as exc:
            raise StorageError(f"cannot write {self.final}: {exc.strerror}") from exc

    def commit(self) -> None:
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            os.replace(self.tmp, self.final)
            fsync_path(self.final.parent)
        except OSError as exc:
            self.abort()
            raise StorageError(f"cannot store {self.final}: {exc.strerror}") from exc
        self._done = True

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        with contextlib.suppress(OSError):
            self._fh.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


class LocalStorage(Storage):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def writer(self, key: str) -> ObjectWriter:
        try:
            return _LocalWriter(self._path(key))
        except OSError as exc:
            raise StorageError(f"cannot write under {self.root}: {exc.strerror}") from exc

    def read(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        try:
            with open(self._path(key), "rb") as fh:
                while chunk := fh.read(chunk_size):
                    yield chunk
        except FileNotFoundError as exc:
            raise StorageError(f"no object {key!r} in {self.root}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def folders(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(f"{prefix}/{p.name}" for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")
        )

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {self._path(key)}: {exc.strerror}") from exc

    def delete_prefix(self, prefix: str) -> int:
        try:
            return self._delete_prefix(prefix)
        except OSError as exc:
            raise StorageError(f"cannot delete {self._path(prefix)}: {exc.strerror}") from exc

    def _delete_prefix(self, prefix: str) -> int:
        base = self._path(prefix)
        if not base.is_dir():
            return 0
        count = 0
        for p in sorted(base.rglob("*"), key=lambda x: len(x.parts), reverse=True):
            if p.is_dir():
                p.rmdir()
            else:
                p.unlink()
                count += not p.name.startswith(".")
        base.rmdir()
        return count

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()
