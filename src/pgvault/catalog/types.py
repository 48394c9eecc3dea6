"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import Boolean, ColumnElement, DateTime, Float, String, bindparam
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware timestamps only. Naive datetimes are refused at bind time (they are a bug: whose
    local time?); SQLite, which stores no zone, hands values back as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r} refused: use an aware (UTC) datetime")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class StrEnumColumn(TypeDecorator[Any]):
    """A ``StrEnum`` stored as its string (a plain VARCHAR, as the migrations made it): a value that is not
    one of the enum's is refused at bind time, and rows read back as enum members."""

    impl = String
    cache_ok = True

    def __init__(self, enum_cls: type[enum.StrEnum], length: int) -> None:
        super().__init__(length)
        self.enum_cls = enum_cls

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return self.enum_cls(value).value  # ValueError for a state the lifecycle does not have

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else self.enum_cls(value)


class JsonListContains(ColumnElement[bool]):
    """``value in column`` for a JSON list of strings, in SQL on both dialects (so that a filter on it can
    page in SQL): SQLite's ``json_each``, PostgreSQL's ``jsonb`` containment."""

    inherit_cache = True
    type = Boolean()

    def __init__(self, column: ColumnElement[Any], value: str) -> None:
        self.column = column
        self.value = bindparam(None, value, type_=String())


@compiles(JsonListContains, "sqlite")
def _contains_sqlite(element: JsonListContains, compiler: Any, **kw: Any) -> str:
    return (f"EXISTS (SELECT 1 FROM json_each({compiler.process(element.column, **kw)}) "
            f"WHERE json_each.value = {compiler.process(element.value, **kw)})")


@compiles(JsonListContains, "postgresql")
def _contains_postgresql(element: JsonListContains, compiler: Any, **kw: Any) -> str:
    return (f"(CAST({compiler.process(element.column, **kw)} AS jsonb) @> "
            f"jsonb_build_array(CAST({compiler.process(element.value, **kw)} AS text)))")


class ElapsedSeconds(ColumnElement[float]):
    """Seconds from one timestamp column to another (NULL when either is), in SQL on both dialects."""

    inherit_cache = True
    type = Float()

    def __init__(self, start: ColumnElement[Any], end: ColumnElement[Any]) -> None:
        self.start, self.end = start, end


@compiles(ElapsedSeconds, "sqlite")
def _elapsed_sqlite(element: ElapsedSeconds, compiler: Any, **kw: Any) -> str:
    return (f"((julianday({compiler.process(element.end, **kw)}) - "
            f"julianday({compiler.process(element.start, **kw)})) * 86400.0)")


@compiles(ElapsedSeconds, "postgresql")
def _elapsed_postgresql(element: ElapsedSeconds, compiler: Any, **kw: Any) -> str:
    return f"EXTRACT(EPOCH FROM ({compiler.process(element.end, **kw)} - {compiler.process(element.start, **kw)}))"
