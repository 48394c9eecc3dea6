"""Where backups are kept, behind one small interface (``base.Storage``)."""

from __future__ import annotations

from typing import Any

from .base import ObjectWriter, Storage, StorageDenied, StorageError, Upload
from .fanout import FanOutStorage
from .local import LocalStorage

__all__ = ["FanOutStorage", "LocalStorage", "ObjectWriter", "Storage", "StorageDenied", "StorageError", "Upload",
           "open_location"]


def open_location(kind: str, config: dict[str, Any], secret: dict[str, Any] | None = None) -> Storage:
    """A storage backend from a destination's (or a copy's) kind, configuration and opened secret."""
    if kind == "local":
        return LocalStorage(config["path"])
    if kind == "s3":
        from .s3 import S3Storage

        return S3Storage.from_config(config, secret or {})
    raise StorageError(f"unknown storage kind {kind!r}")
