"""Prepared reads: the API's hottest SELECTs, compiled once per dialect and run on the driver's cursor.

A GET /Job/{id} spent ~380 us of CPU reading its two statements through SQLAlchemy (a Connection, a
transaction, result objects, per-execution context), where SQLite itself needs ~60 us. A ``Prepared`` is
an ordinary SQLAlchemy Core statement, built once at import (as the services' read paths already were);
``Catalog.rows`` hands out the pooled connection's DBAPI cursor (SQLite: in one read transaction;
PostgreSQL: in autocommit, each statement its own snapshot), and the statement runs there with
SQLAlchemy's own result processors (SQLite's dates and booleans, JSON, ``UTCDateTime``), so the rows
are the same values the Core path gives. Anywhere else (a Session or a Connection, inside a write
transaction for instance) the same ``Prepared`` runs through SQLAlchemy.

What SQLAlchemy does not do for a statement run on the driver's cursor: no execution events fire
(``before_cursor_execute``, ``after_cursor_execute``; nor ``handle_error``), no statement cache or compiled-cache
entry is used, no echo logging. That is the fence: ``Catalog.rows`` refuses to run on an engine that has
listeners for those events, rather than let them miss statements; anything that needs them reads through
``Catalog.transaction(write=False)``, where the same ``Prepared`` runs through SQLAlchemy.

Only statements whose caller-given parameters need no conversion on the way in (integers, strings) and
that have no expanding (IN-list) parameters can be prepared (the statement's own constants are converted
once, when it is compiled); that is checked when a statement is first compiled for
a dialect, so a statement that does not qualify fails its first use in any test, not in production. A
NULL comes back as None without its column's processor being called (every type the catalog uses maps
None to None; a type that turned NULL into something else would read differently here).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

R = TypeVar("R")


class _Compiled:
    """One statement as one dialect runs it: the SQL text, how to order the parameters, and a result
    processor (or None) per column."""

    __slots__ = ("fixed", "names", "positional", "processors", "sql")

    def __init__(self, stmt: Select[Any], dialect: Dialect) -> None:
        compiled = stmt.compile(dialect=dialect)
        # the values the statement carries itself (``job_type == JobType.BACKUP``), converted once here as
        # SQLAlchemy would convert them at every execution; the caller's fill the rest, unconverted
        self.fixed: dict[str, Any] = {}
        for name, bind in compiled.binds.items():
            if bind.expanding:
                raise TypeError(f"parameter {name!r} is an IN list: a prepared read cannot expand it")
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            fixed = not bind.required and bind.callable is None
            if fixed:
                self.fixed[name] = processor(bind.value) if processor is not None else bind.value
            elif processor is not None:
                raise TypeError(f"parameter {name!r} ({bind.type}) needs converting: a prepared read "
                                "takes integers and strings only")
        self.sql = compiled.string
        self.positional = compiled.positional
        self.names: Sequence[str] = tuple(compiled.positiontup or ()) if compiled.positional \
            else tuple(compiled.binds)
        # (column index, processor) of the columns whose driver value needs converting; most need none
        self.processors = tuple((i, p) for i, c in enumerate(stmt.selected_columns)
                                if (p := c.type.dialect_impl(dialect).result_processor(dialect, None)) is not None)

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
        merged = {**self.fixed, **values} if self.fixed else values
        try:
            if self.positional:
                return tuple(merged[n] for n in self.names)
            return {n: merged[n] for n in self.names}
        except KeyError as exc:
            raise TypeError(f"prepared read needs parameter {exc.args[0]!r}") from None

    def convert(self, row: Sequence[Any]) -> Sequence[Any]:
        if not self.processors:
            return row
        out = list(row)
        for i, p in self.processors:
            v = out[i]
            if v is not None:
                out[i] = p(v)
        return out


class Prepared(Generic[R]):
    """A SELECT built once, whose rows come back as ``row(*values)`` (a namedtuple class, typically)."""

    def __init__(self, stmt: Select[Any], row: Callable[..., R]) -> None:
        self.stmt = stmt
        self.row = row
        self._compiled: dict[tuple[str, str], _Compiled] = {}
        self._lock = threading.Lock()

    def compiled(self, dialect: Dialect) -> _Compiled:
        key = (dialect.name, dialect.driver)  # the SQL and the processors depend on both
        done = self._compiled.get(key)
        if done is None:
            with self._lock:
                done = self._compiled.get(key) or _Compiled(self.stmt, dialect)
                self._compiled[key] = done
        return done

    def all(self, conn: DriverReader | Connection | Session, **params: Any) -> list[R]:
        if isinstance(conn, DriverReader):
            return conn.all(self, params)
        return [self.row(*r) for r in conn.execute(self.stmt, params).all()]

    def first(self, conn: DriverReader | Connection | Session, **params: Any) -> R | None:
        if isinstance(conn, DriverReader):
            return conn.first(self, params)
        r = conn.execute(self.stmt, params).first()
        return None if r is None else self.row(*r)


class DriverReader:
    """A DBAPI cursor that only reads, as ``Catalog.rows`` hands it out."""

    __slots__ = ("cursor", "dialect")

    def __init__(self, cursor: Any, dialect: Dialect) -> None:
        self.cursor = cursor
        self.dialect = dialect

    def all(self, prepared: Prepared[R], params: Mapping[str, Any]) -> list[R]:
        c = prepared.compiled(self.dialect)
        self.cursor.execute(c.sql, c.parameters(params))
        make, convert = prepared.row, c.convert
        return [make(*convert(r)) for r in self.cursor.fetchall()]

    def first(self, prepared: Prepared[R], params: Mapping[str, Any]) -> R | None:
        c = prepared.compiled(self.dialect)
        self.cursor.execute(c.sql, c.parameters(params))
        r = self.cursor.fetchone()
        return None if r is None else prepared.row(*c.convert(r))
