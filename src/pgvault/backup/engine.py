"""One backup of one instance: discover, dump every database (a few at a time) and the globals, stream
each through a zstd child process (``backup/compressor.py``) and then, in this process, AES-256-GCM (for
an encrypted plan) and sha256 into storage, then write the manifest.

The catalog is reached only through a ``Reporter``, so this module knows nothing of sessions; the worker
supplies one that writes progress in short transactions.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import re
import threading
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psycopg

from ..domain.jobs import ItemStatus, JobStatus
from ..errors import ConnectionFailed, PgvaultError, ToolError
from ..pgtools.binaries import Toolset, toolset_for_server
from ..pgtools.connection import ServerAddress, server_info
from ..pgtools.runner import Cancelled, CancelToken, Pipeline, client_env, run_program
from ..storage import Storage, StorageError
from .compressor import compressor_argv, compressor_env
from .discovery import Database, connection_budget, discover
from .encryption import DATA_KEY_OBJECT, FILE_SUFFIX, FORMAT_SUFFIX, ChunkEncryptor, data_key_document
from .manifest import DatabaseEntry, FileEntry, Manifest
from .progress import LiveProgress


class Reporter(Protocol):
    def phase(self, name: str, percent: int | None = None) -> None: ...
    def items(self, names: list[tuple[str, str]]) -> list[int]: ...
    def item_running(self, item_id: int, phase: str | None = None) -> None: ...
    def item_done(self, item_id: int, nbytes: int, sha256: str, location: str) -> None: ...
    def item_failed(self, item_id: int, error: str, status: ItemStatus = ItemStatus.FAILED) -> None: ...
    def warn(self, message: str) -> None: ...
    def progress(self, items: dict[int, int], phase: str, percent: int | None) -> None: ...


@dataclass
class BackupRequest:
    job_id: int
    instance: dict[str, object]  # id, name, client: for the manifest
    address: ServerAddress  # the maintenance database
    storage: Storage
    prefix: str
    compression_level: int = 1
    parallelism: int = 2
    pg_bin: Path | None = None
    lock_wait_timeout: int = 600  # seconds pg_dump waits for a table lock before that database fails
    # An encrypted plan: the restore point's data key, and the same key sealed by the master key (written
    # beside the backup as datakey.json; the worker records it in the catalog).
    data_key: bytes | None = None
    data_key_sealed: bytes | None = None
    compressor: str = "auto"  # PGVAULT_COMPRESSOR: auto, zstd or builtin (backup/compressor.py)
    runtime_dir: Path | None = None  # PGVAULT_HOME/run: passfiles, bridge sockets


@dataclass
class BackupOutcome:
    status: JobStatus
    message: str
    manifest: Manifest | None = None
    manifest_sha256: str | None = None


class _HashingWriter:
    """Bytes -> (AES-256-GCM when given a data key) -> sha256 + storage: the manifest's sha256 is that of
    the stored bytes, so checking a file never needs a key."""

    def __init__(self, writer: object, data_key: bytes | None) -> None:
        self._writer = writer
        self._encryptor = ChunkEncryptor(data_key) if data_key is not None else None
        self._sha = hashlib.sha256()
        self.bytes = 0

    def _store(self, data: bytes) -> None:
        if data:
            self._sha.update(data)
            self.bytes += len(data)
            self._writer.write(data)  # type: ignore[attr-defined]

    def __call__(self, data: bytes) -> None:
        self._store(self._encryptor.update(data) if self._encryptor is not None and data else data)

    def finish(self) -> str:
        if self._encryptor is not None:
            self._store(self._encryptor.finish())
        return self._sha.hexdigest()


def object_name(index: int, database: str) -> str:
    """A file name a DBA can read and paste into a shell, for any database name: the index makes it unique,
    and the rest is the name in plain ASCII letters, digits, ``.``, ``_`` and ``-`` (accents dropped, any
    other run of characters one ``_``). The manifest keeps the exact name: ``sales db`` is stored as
    ``002-sales_db.dump.zst``, ``données`` as ``003-donnees.dump.zst``."""
    ascii_name = unicodedata.normalize("NFKD", database).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_name).strip("._-")[:60].rstrip("._-")
    return f"{index:03d}-{slug or 'db'}"


class BackupRun:
    def __init__(self, req: BackupRequest, reporter: Reporter, cancel: CancelToken, log: logging.Logger) -> None:
        self.req = req
        self.reporter = reporter
        self.cancel = cancel
        self.log = log
        self._lock = threading.Lock()
        self._compressor: tuple[list[str], dict[str, str]] | None = None  # argv and env, chosen in _run
        self._done_weight = 0
        self._total_weight = 1
        self._dumping: dict[int, tuple[Pipeline, int]] = {}  # item id: pg_dump's pipeline and the size
        self._live: LiveProgress | None = None

    def run(self) -> BackupOutcome:
        started = dt.datetime.now(dt.UTC)
        try:
            return self._run(started)
        except Cancelled:
            self._discard()
            return BackupOutcome(JobStatus.KILLED, "the job was killed; its partial files were removed")
        except (PgvaultError, StorageError) as exc:
            self._discard()
            return BackupOutcome(JobStatus.FAILED, exc.message if isinstance(exc, PgvaultError) else str(exc))
        except Exception as exc:  # a bug or an unforeseen failure: still no files without a manifest
            self.log.exception("backup failed unexpectedly")
            self._discard()
            return BackupOutcome(JobStatus.FAILED, f"internal error: {type(exc).__name__}: {exc}")

    def _discard(self) -> None:
        try:
            removed = self.req.storage.delete_prefix(self.req.prefix)
            if removed:
                self.log.info("removed %d files of the unfinished backup", removed)
        except (StorageError, OSError) as exc:
            self.log.warning("could not remove the unfinished backup's files: %s", exc)

    def _run(self, started: dt.datetime) -> BackupOutcome:
        req = self.req
        self.reporter.phase("Discover", 1)
        with req.address.connect() as conn:
            info = server_info(conn)
            databases = discover(conn)
            budget = connection_budget(conn)
        tools = toolset_for_server(info.version_num, req.pg_bin)
        self._compressor = (compressor_argv(req.compression_level, req.compressor), compressor_env())
        # Each database in flight holds two connections (pg_dump's and the snapshot's).
        parallelism = req.parallelism if budget is None else max(1, min(req.parallelism, budget // 2))
        self.log.info("server %s, pg_dump %s, %d databases", info.version, tools.version, len(databases))

        dumpable = sorted((d for d in databases if d.can_connect), key=lambda d: -d.size)
        skipped = [d for d in databases if not d.can_connect]
        ids = self.reporter.items(
            [("globals", "(globals)")] + [("database", d.name) for d in dumpable + skipped]
        )
        globals_id, db_ids = ids[0], ids[1 : 1 + len(dumpable)]
        for item_id, _db in zip(ids[1 + len(dumpable) :], skipped, strict=True):
            self.reporter.item_failed(item_id, f"skipped: login {req.address.user!r} may not connect",
                                      ItemStatus.SKIPPED)
        self._total_weight = max(1, sum(max(d.size, 1) for d in dumpable))

        manifest = Manifest(
            job_id=req.job_id, instance=dict(req.instance), server_version=info.version,
            server_version_num=info.version_num, pg_dump_version=tools.version, started_at=started,
            ended_at=started,
            skipped=[{"name": d.name, "reason": "no CONNECT privilege"} for d in skipped],
        )
        if req.data_key_sealed is not None:
            manifest.encryption = self._write_data_key(req.data_key_sealed)
        self.reporter.phase("Backup", 2)
        with client_env(req.address, req.runtime_dir) as env, \
                LiveProgress(self.reporter, "Backup", self.log, percent=self._estimate,
                             name=f"job{req.job_id}-progress") as self._live:
            manifest.globals = self._dump_globals(globals_id, tools, env, manifest)
            with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix=f"job{req.job_id}") as pool:
                futures = [
                    pool.submit(self._dump_database, item_id, index, db, tools, env)
                    for index, (item_id, db) in enumerate(zip(db_ids, dumpable, strict=True))
                ]
                results = [f.result() for f in futures]
        self.cancel.raise_if_cancelled()

        for db, result in zip(dumpable, results, strict=True):
            if isinstance(result, DatabaseEntry):
                manifest.databases.append(result)
            else:
                manifest.failed.append({"name": db.name, "error": result})
        manifest.databases.sort(key=lambda d: d.name)
        if not manifest.databases:
            self._discard()
            reason = manifest.failed[0]["error"] if manifest.failed else (
                f"login {req.address.user!r} may connect to none of the databases")
            return BackupOutcome(JobStatus.FAILED, f"no database could be backed up: {reason}")

        self.reporter.phase("Manifest", 99)
        manifest.ended_at = dt.datetime.now(dt.UTC)
        data = manifest.to_json()
        key = f"{req.prefix}/manifest.json"
        try:
            with req.storage.writer(key) as w:
                w.write(data)
                w.commit()
        except StorageError as exc:  # (a full disk, say): no restore point, and no files kept without one
            raise StorageError(f"the manifest could not be written, so the backup was not kept: {exc}") from exc
        if manifest.failed:
            names = ", ".join(f["name"] for f in manifest.failed)
            return BackupOutcome(JobStatus.COMPLETED_WITH_ERRORS, f"failed databases: {names}", manifest,
                                 hashlib.sha256(data).hexdigest())
        message = f"{len(manifest.databases)} databases backed up"
        return BackupOutcome(JobStatus.COMPLETED, message, manifest, hashlib.sha256(data).hexdigest())

    def _write_data_key(self, sealed: bytes) -> dict[str, str]:
        """The sealed data key beside the backup, first of its objects, so that storage plus the master
        key can restore without the catalog (``pgvault keys rotate`` re-wraps it)."""
        with self.req.storage.writer(f"{self.req.prefix}/{DATA_KEY_OBJECT}") as w:
            w.write(data_key_document(sealed))
            w.commit()
        return {"algorithm": "AES-256-GCM", "format": FORMAT_SUFFIX, "dataKey": DATA_KEY_OBJECT}

    def _suffixes(self, name: str, fmt: str) -> tuple[str, str]:
        """The stored name and format of a file, encrypted or not."""
        if self.req.data_key is None:
            return name, fmt
        return name + FILE_SUFFIX, f"{fmt}+{FORMAT_SUFFIX}"

    def _advance(self, item_id: int, weight: int) -> None:
        with self._lock:
            self._dumping.pop(item_id, None)
            self._done_weight += weight
        # (the estimate with the databases still in flight, through the write that only raises the percent:
        # what the progress thread last wrote may be more than the ended databases alone)
        self.reporter.progress({}, "Backup", self._estimate({}))

    def _estimate(self, _stored: dict[int, int]) -> int:
        """The job's percent while databases are being dumped: the ended ones by their size at discovery,
        and each one in flight by what pg_dump has written so far against that size (at most 90% of it:
        a dump is often smaller than the database's files, sometimes larger)."""
        with self._lock:
            done, dumping = self._done_weight, list(self._dumping.values())
        flight = sum(min(0.9 * size, pipeline.written()) for pipeline, size in dumping)
        return min(98, 2 + int(96 * (done + flight) / self._total_weight))

    def _track(self, item_id: int, sink: _HashingWriter) -> contextlib.AbstractContextManager[None]:
        assert self._live is not None
        return self._live.track(item_id, lambda: sink.bytes)

    def _dump_globals(self, item_id: int, tools: Toolset, env: dict[str, str], manifest: Manifest) -> FileEntry | None:
        """Roles and tablespaces, without role passwords. Managed services often deny even that; the job
        records a warning and goes on, since the databases matter more."""
        self.reporter.item_running(item_id, "Dump")
        name, fmt = self._suffixes("globals.sql", "sql")
        key = f"{self.req.prefix}/{name}"
        argv = [tools.path("pg_dumpall"), "--globals-only", "--no-role-passwords", "--no-password",
                "-l", self.req.address.dbname]
        try:
            with self.req.storage.writer(key) as w:
                sink = _HashingWriter(w, self.req.data_key)
                with self._track(item_id, sink):
                    run_program(argv, env, log=self.log, cancel=self.cancel, stdout_sink=sink)
                sha = sink.finish()
                w.commit()
        except ToolError as exc:
            message = f"globals (roles) not backed up: {exc}"
            self.reporter.item_failed(item_id, message, ItemStatus.SKIPPED)
            self.reporter.warn(message)
            manifest.warnings.append(message)
            return None
        entry = FileEntry(key=key, bytes=sink.bytes, sha256=sha, format=fmt)
        self.reporter.item_done(item_id, sink.bytes, entry.sha256, self.req.storage.uri(key))
        return entry

    def _dump_database(self, item_id: int, index: int, db: Database, tools: Toolset,
                       env: dict[str, str]) -> DatabaseEntry | str:
        """Returns the stored database, or the reason it failed (which does not stop the others).

        pgvault's own connection exports a snapshot that pg_dump imports (``--snapshot``), which gives the
        database an exact point in time (``snapshot_time``, what "restore as of T" compares). That
        connection only idles while pg_dump runs: pgvault adds no scan of its own to the protected server
        (rows are counted by restore drills, from the archive; docs/performance.md).
        """
        if self.cancel.cancelled:
            return "cancelled"
        self.reporter.item_running(item_id, "Dump")
        name, fmt = self._suffixes(f"{object_name(index, db.name)}.dump.zst", "custom+zstd")
        key = f"{self.req.prefix}/databases/{name}"
        try:
            with self.req.address.with_db(db.name).connect() as snap, \
                    self.cancel.on_cancel(lambda: _cancel_query(snap)):
                snap.execute("begin isolation level repeatable read read only")
                # Managed services often limit idle transactions; this one idles while pg_dump runs and
                # must outlive it.
                snap.execute("set local idle_in_transaction_session_timeout = 0")
                row = snap.execute("select pg_export_snapshot(), now()").fetchone()
                assert row is not None
                snapshot_time = row[1]
                argv = [tools.path("pg_dump"), "--format=custom", "--compress=0", "--no-password",
                        f"--snapshot={row[0]}", f"--lock-wait-timeout={self.req.lock_wait_timeout * 1000}"]
                with self.req.storage.writer(key) as w:
                    sink = _HashingWriter(w, self.req.data_key)
                    with self._track(item_id, sink):
                        run_program(argv, {**env, "PGDATABASE": db.name}, log=self.log, cancel=self.cancel,
                                    stdout_sink=sink, stdout_through=self._compressor,
                                    on_start=lambda p: self._started(item_id, p, db.size))
                    sha = sink.finish()
                    w.commit()
                with contextlib.suppress(psycopg.Error):  # the dump is stored: the snapshot has served
                    snap.execute("commit")
        except Cancelled:
            return "cancelled"
        except ConnectionFailed as exc:
            return self._db_failed(item_id, db, exc.message)
        except (ToolError, StorageError) as exc:
            return self._db_failed(item_id, db, str(exc))
        except psycopg.Error as exc:
            return self._db_failed(item_id, db, str(exc).strip())
        entry = DatabaseEntry(db.name, FileEntry(key=key, bytes=sink.bytes, sha256=sha, format=fmt),
                              encoding=db.encoding, collate=db.collate, ctype=db.ctype,
                              snapshot_time=snapshot_time.astimezone(dt.UTC).isoformat())
        self.reporter.item_done(item_id, sink.bytes, sha, self.req.storage.uri(key))
        self._advance(item_id, max(db.size, 1))
        return entry

    def _started(self, item_id: int, pipeline: Pipeline, size: int) -> None:
        with self._lock:
            self._dumping[item_id] = (pipeline, max(size, 1))

    def _db_failed(self, item_id: int, db: Database, error: str) -> str:
        self.reporter.item_failed(item_id, error)
        self._advance(item_id, max(db.size, 1))
        return error


def _cancel_query(conn: psycopg.Connection) -> None:
    with contextlib.suppress(Exception):
        conn.cancel_safe()
