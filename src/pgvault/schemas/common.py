"""Shapes shared by many endpoints."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict

ENTITY_CLIENT, ENTITY_AGENT, ENTITY_INSTANCE, ENTITY_BACKUPSET, ENTITY_SUBCLIENT = 3, 4, 5, 6, 7
POSTGRESQL_APP_ID = 125


class WireModel(BaseModel):
    """Requests: wire names through aliases, unknown fields ignored (as Command Center does)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ErrorBody(BaseModel):
    errorCode: int
    errorMessage: str
    entity: dict[str, Any] = {}


def epoch(value: dt.datetime | None) -> int:
    """Command Center reports times as Unix seconds; 0 means "not yet"."""
    return int(value.timestamp()) if value else 0


def decode_base64_text(value: str) -> str:
    """Command Center's way of sending a password: base64 of its UTF-8. ``b64decode`` refuses text that is
    not ASCII with a plain ValueError (not ``binascii.Error``), and a decoded value that is not UTF-8 is a
    UnicodeDecodeError: all of them are ValueErrors, and all get the one message."""
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except ValueError:
        raise ValueError("must be base64-encoded UTF-8") from None
