"""Engine, sessions and migrations. Dialect-specific behaviour lives here and nowhere else."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydantic_core
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from .prepared import DriverReader

MIGRATIONS = Path(__file__).parent / "migrations"
READ_ONLY = "pgvault_read_only"  # execution option of Catalog.transaction(write=False)'s sessions
# SQLite connections kept open: as many as threads may use the catalog at once (the API's threadpool of
# 40, the workers, the scheduler), so that none is opened (four PRAGMAs) and closed per request, which
# the default pool of 5 + 10 overflow did under load. An idle SQLite connection costs a few file
# descriptors and the pages it cached.
SQLITE_POOL_SIZE = 48


def _json_loads(text: str | bytes) -> object:
    """JSON columns are read with pydantic's parser, 4x faster than the json module's (a GET /Job reads one
    per database of the job); what it refuses and the json module wrote (a lone surrogate escaped into an
    error message) still reads."""
    try:
        return pydantic_core.from_json(text)
    except ValueError:
        return json.loads(text)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=SQLITE_POOL_SIZE, max_overflow=SQLITE_POOL_SIZE,
                               json_deserializer=_json_loads)
        _sqlite_tuning(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, json_deserializer=_json_loads)


def _end_read(fairy: Any, raw: Any, sqlite: bool) -> None:
    """End a ``Catalog.rows`` read before its connection goes back to the pool: roll SQLite's read
    transaction back; turn PostgreSQL's autocommit off again, so that a session never gets a connection
    whose writes would not be atomic. A connection that cannot be reset is thrown away."""
    try:
        if sqlite:
            raw.rollback()
        elif raw.autocommit:
            raw.autocommit = False
    except Exception as exc:
        if fairy.is_valid:
            fairy.invalidate(exc)


def _sqlite_tuning(engine: Engine) -> None:
    """WAL so readers never wait for the writer; foreign keys on; and every transaction takes the write
    lock up front (``BEGIN IMMEDIATE``): pysqlite's deferred BEGIN lets two transactions both read and
    then deadlock upgrading to write, which busy_timeout cannot resolve."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # read transactions (Catalog.transaction(write=False)) only read: a deferred BEGIN takes no lock
        # (WAL gives them a snapshot) and cannot deadlock, since they never upgrade to write.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


def migrate(engine: Engine) -> None:
    """Bring the catalog to the newest schema (run at every start; a no-op when current)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Catalog:
    """Owns the engine and hands out transactions. The one rule for catalog access:

    - ``with catalog.transaction(write=...) as session``: every read and write goes through it, and says
      which it is. ``write=True`` takes SQLite's write lock up front (``BEGIN IMMEDIATE``) and commits at
      the end of the block (rolls back on an exception); ``write=False`` is a read transaction (a deferred
      BEGIN: a WAL snapshot, no lock, so reads never queue behind writers or each other). Writing in a read
      transaction is a bug. Services take the session and never commit.
    - ``with catalog.rows() as reader``: the same read transaction for the API's hottest GETs, on the
      driver's cursor (``catalog/prepared.py``): a detail behind the rule, for ``Prepared`` statements only.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_engine = self.engine.execution_options(**{READ_ONLY: True})
        self._read_sessions = sessionmaker(self._read_engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        migrate(self.engine)

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[Session]:
        """The one way to the catalog (see the class): a write transaction, or a read transaction that takes
        no write lock on SQLite (with BEGIN IMMEDIATE, 32 concurrent GETs once waited in SQLite's busy
        handler and failed with "database is locked")."""
        with (self._sessions if write else self._read_sessions)() as session, session.begin():
            yield session

    @contextmanager
    def rows(self) -> Iterator[DriverReader]:
        """A read transaction on a pooled connection's DBAPI cursor, for ``Prepared`` reads: the API's hot
        GETs, without SQLAlchemy's per-statement machinery. Nothing is written through it.

        On SQLite the reads share one deferred transaction (a WAL snapshot, no lock), which costs nothing.
        On PostgreSQL each statement is its own transaction (autocommit): BEGIN and ROLLBACK were two of a
        GET /Job's five round trips, and the API's reads are single statements except GET /Job's
        job-then-items, whose two snapshots can differ only as two successive polls would (the workers
        write a job's progress and its items in separate transactions anyway). Its own ``finally`` ends the
        read (rolls SQLite back; turns PostgreSQL's autocommit off again) before the connection goes back to
        the pool, so no session is ever handed a connection in autocommit.

        The driver's errors come out as SQLAlchemy's (``DataError`` for an id out of PostgreSQL's integer
        range, which the API answers with a 400, as on the Core path), and a connection the server
        dropped is thrown out of the pool rather than handed to the next request."""
        dispatch = self.engine.dispatch
        if dispatch.before_cursor_execute or dispatch.after_cursor_execute:
            # the fence of catalog/prepared.py: its statements bypass SQLAlchemy's execution, so events
            # that expect to see every statement (logging, tracing) would silently miss them
            raise RuntimeError("Catalog.rows() bypasses SQLAlchemy's execution events, and this engine has "
                               "listeners for them: read through transaction(write=False) instead")
        dialect = self.engine.dialect
        fairy = self.engine.raw_connection()
        raw: Any = fairy.dbapi_connection
        sqlite = self.dialect == "sqlite"
        try:
            cursor = fairy.cursor()
            try:
                if sqlite:
                    cursor.execute("BEGIN")
                else:
                    raw.autocommit = True  # (no transaction is open: the pool rolled it back on return)
                yield DriverReader(cursor, dialect)
            except dialect.loaded_dbapi.Error as exc:
                invalidated = dialect.is_disconnect(exc, raw, cursor)
                if invalidated:
                    fairy.invalidate(exc)
                raise DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error,
                                          connection_invalidated=invalidated, dialect=dialect) from exc
            finally:
                with contextlib.suppress(Exception):  # never in place of the read's own error
                    cursor.close()
                _end_read(fairy, raw, sqlite)
        finally:
            fairy.close()

    def schema_current(self) -> bool:
        """Whether the catalog's schema is the newest migration's (readiness)."""
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        heads = set(ScriptDirectory.from_config(cfg).get_heads())
        with self.engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads()) == heads

    @property
    def local(self) -> bool:
        """Whether a read is a call into this process (SQLite) rather than a round trip over the network:
        the API runs short reads of a local catalog on its event loop instead of a thread."""
        return self.dialect == "sqlite"

    def hold_node_lock(self, name: str) -> Callable[[], None] | None:
        """Take, for as long as this process lives (or until the returned function releases it), a lock
        that one live process at a time can hold for node ``name`` on this catalog; None if another
        process holds it. What it proves: the Running jobs leased by an earlier incarnation of the node
        have no live worker left (``worker.WorkerPool.start`` takes them back at once).

        PostgreSQL: a session advisory lock on a connection kept for it (the server drops it when the
        process dies, its socket closed by the kernel). SQLite: ``flock`` on a file beside the database
        (a SQLite catalog is on one host; the kernel drops the lock when the process dies)."""
        key = int.from_bytes(hashlib.sha256(f"pgvault-node:{name}".encode()).digest()[:8], "big", signed=True)
        if self.dialect != "sqlite":
            conn = self.engine.connect()
            try:
                held = bool(conn.execute(text("select pg_try_advisory_lock(:key)"), {"key": key}).scalar())
                conn.commit()
            except Exception:
                conn.close()
                raise
            if not held:
                conn.close()
                return None

            def release() -> None:
                with contextlib.suppress(Exception):
                    conn.execute(text("select pg_advisory_unlock(:key)"), {"key": key})
                    conn.commit()
                conn.close()

            return release
        database = self.engine.url.database
        if not database or database == ":memory:":  # a catalog no other process can open
            return lambda: None
        return flock_file(Path(f"{database}.node-{key & 0xFFFFFFFF:08x}.lock"))

    def dispose(self) -> None:
        self.engine.dispose()


def flock_file(path: Path) -> Callable[[], None] | None:
    """An exclusive ``flock`` on ``path`` (created 0600), held until the returned function is called or the
    process ends; None if another open file holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise

    def release() -> None:
        with contextlib.suppress(OSError):
            os.close(fd)  # (closing the only descriptor drops the lock)

    return release
