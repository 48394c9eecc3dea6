"""Where backups are kept, behind one small interface (``base.Storage``)."""

from .base import ObjectWriter, Storage, StorageError
from .local import LocalStorage

__all__ = ["LocalStorage", "ObjectWriter", "Storage", "StorageError", "open_storage"]


def open_storage(kind: str, location: str) -> Storage:
    if kind == "local":
        return LocalStorage(location)
    raise StorageError(f"unknown storage kind {kind!r}")
