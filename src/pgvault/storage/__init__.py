"""Where backups are kept, behind one small interface (``base.Storage``)."""

from __future__ import annotations

import json
from typing import Any

from .base import ObjectWriter, Storage, StorageError
from .fanout import FanOutStorage
from .local import LocalStorage

__all__ = ["FanOutStorage", "LocalStorage", "ObjectWriter", "Storage", "StorageError", "open_location",
           "open_storage"]

KINDS = ("local", "s3")


def open_location(kind: str, config: dict[str, Any], secret: dict[str, Any] | None = None) -> Storage:
    """A storage backend from a destination's (or a copy's) kind, configuration and opened secret."""
    if kind == "local":
        return LocalStorage(config["path"])
    if kind == "s3":
        from .s3 import S3Storage

        return S3Storage.from_config(config, secret or {})
    raise StorageError(f"unknown storage kind {kind!r}")


def open_storage(kind: str, location: str, secret: dict[str, Any] | None = None) -> Storage:
    """A local folder by path, or S3 by its configuration as JSON (for callers that hold one string)."""
    if kind == "local":
        return LocalStorage(location)
    if kind == "s3":
        try:
            config = json.loads(location)
        except ValueError:
            raise StorageError("an S3 location is its configuration as a JSON object") from None
        if not isinstance(config, dict):
            raise StorageError("an S3 location is its configuration as a JSON object")
        return open_location(kind, config, secret)
    raise StorageError(f"unknown storage kind {kind!r}")
