"""Shapes shared by many endpoints."""

from __future__ import annotations

import base64
import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr
from pydantic.json_schema import SkipJsonSchema

ENTITY_CLIENT, ENTITY_AGENT, ENTITY_INSTANCE, ENTITY_BACKUPSET, ENTITY_SUBCLIENT = 3, 4, 5, 6, 7
POSTGRESQL_APP_ID = 125


class WireModel(BaseModel):
    """Requests: wire names through aliases, unknown fields ignored (as Command Center does)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ErrorBody(BaseModel):
    errorCode: int
    errorMessage: str
    entity: dict[str, Any] = {}


# -- answers ---------------------------------------------------------------------------------------
# What the routes answer, declared for the OpenAPI document (``responses={200: ...}``, api/openapi.py):
# the routes keep building their dicts (or pre-serialised bytes), and FastAPI neither validates nor
# filters them against these models. tests/test_openapi.py holds recorded answers to them, and the fuzz
# run (tests/test_fuzz.py) every answer it gets.

class Answer(BaseModel):
    """A success answer or a part of one: every field it has, and no other (``additionalProperties:
    false``). A field without a default is always there; ``X | Absent = None`` is left out at times and
    never null; ``X | None`` is always there and may be null."""

    model_config = ConfigDict(extra="forbid")


Absent = SkipJsonSchema[None]
NoneListed = Annotated[list[dict[str, Any]], Field(max_length=0)]  # a Command Center list pgvault has none of


class GenericResponse(Answer):
    """``{"errorCode": 0, "errorMessage": ""}``: Command Center's plain "done"."""

    errorCode: Literal[0]
    errorMessage: str


class JobIdsResponse(Answer):
    """The job (as a string, as Command Center sends it) an action queued: ``GET /Job/{id}`` follows it."""

    jobIds: list[str]


class ActivityControlOption(Answer):
    activityType: int  # 1 backup, 2 restore
    enableAfterADelay: bool
    enableActivityType: bool


class ActivityControl(Answer):
    activityControlOptions: list[ActivityControlOption]


class PlanEntity(Answer):
    planName: str
    planId: int


class UserEntity(Answer):
    userName: str
    userId: int


class TimeZoneInfo(Answer):
    TimeZoneName: str


PostgreSQLAppId = Literal[125]
PostgreSQLAppName = Literal["PostgreSQL"]


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


def decode_login_password(value: str) -> str:
    """A PostgreSQL login's password, base64 of UTF-8, that pgvault can hand on: libpq ends a string at NUL,
    and pg_dump reads the password from a password file, one line per entry, so a CR or LF would make it
    another password: every backup would fail although the login worked when the instance was added."""
    password = decode_base64_text(value)
    if any(c in password for c in "\x00\r\n"):
        raise ValueError("the decoded password must not contain NUL, CR or LF (libpq and pg_dump's password "
                         "file cannot carry them)")
    return password


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000): PostgreSQL cannot store it, and libpq and the "
                         "operating system end the string there")
    return value


def no_control(value: str) -> str:
    """``Name``'s rule (also for a field whose type is a union, ``str | int``)."""
    m = _CONTROL.search(value)
    if m:
        raise ValueError(f"must not contain control characters (U+{ord(m.group()):04X} at position {m.start()})")
    return value


# Request strings. ``Text`` is free text (a path, a description, a secret): anything but NUL. ``Name`` is
# what names a thing or reaches PostgreSQL as an identifier (names, host, login, database, version): no
# control character at all (C0 and DEL), which never belongs there and would be cut or mangled on the way.
Text = Annotated[StrictStr, AfterValidator(_no_nul)]
Name = Annotated[StrictStr, AfterValidator(no_control)]
