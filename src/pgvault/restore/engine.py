"""One restore job: verify every file it needs, check the target, then restore database by database.

Guarantees:
- nothing on the target is touched until every needed file matched its sha256 (and, when encrypted,
  authenticated under the restore point's data key) and the target checks passed (an existing database is
  replaced only with ``overwrite``);
- a whole database is restored into a scratch database and renamed into place only at the end, so a kill
  or a failure never leaves a half-restored database under the requested name;
- tables are restored in one transaction (``--single-transaction``): all of them or none;
- objects the login may not restore (an extension on a managed service) are reported one by one and the
  job ends ``Completed w/ one or more errors``, never a false ``Completed``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psycopg
from psycopg import sql

from ..backup.engine import Reporter
from ..backup.manifest import DatabaseEntry, FileEntry, Manifest
from ..backup.progress import LiveProgress
from ..crypto import Sealer
from ..domain.jobs import JobStatus, overall
from ..errors import ArchiveIntegrityError, ConnectionFailed, PgvaultError, ToolError
from ..pgtools.binaries import Toolset, toolset_for_server
from ..pgtools.connection import ServerAddress, server_info
from ..pgtools.runner import Cancelled, CancelToken, client_env, dbname_arg, run_program
from ..pgtools.versions import PgVersion
from ..storage import Storage, StorageError
from .archive import (
    Filter,
    ProgramInput,
    archive_input,
    check_file,
    data_key,
    decoded_stream,
    decompressor,
    is_encrypted,
    load_manifest,
)
from .pgrestore import RestoreErrors, target_options
from .script import ScriptErrors, restore_script
from .toc import select_entries

COMPLETED, PARTIAL, FAILED, KILLED = (JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS, JobStatus.FAILED,
                                      JobStatus.KILLED)


class RestoreReporter(Reporter, Protocol):
    def item_update(self, item_id: int, **values: object) -> None: ...


@dataclass
class RestoreItem:
    source: str  # database name in the backup
    target: str  # database name on the target instance
    tables: list[tuple[str, str]] | None = None  # table-level: (schema, table) pairs


@dataclass
class RestoreRequest:
    job_id: int
    storage: Storage
    prefix: str
    manifest_sha256: str
    address: ServerAddress  # the target instance's maintenance database
    items: list[RestoreItem]
    overwrite: bool = False
    restore_globals: bool = False
    ownership: bool = False
    parallelism: int = 2
    alternates: list[Storage] = field(default_factory=list)  # the restore point's other copies
    pg_bin: Path | None = None
    data_key_sealed: bytes | None = None  # an encrypted restore point's data key, sealed by the master key
    sealer: Sealer | None = None  # opens it
    compressor: str = "auto"  # PGVAULT_COMPRESSOR: which decompressor feeds pg_restore (archive.decompressor)
    runtime_dir: Path | None = None  # PGVAULT_HOME/run: passfiles, bridge sockets
    attempt: int = 1  # which run of the job this is: scratch databases are named for it


@dataclass
class RestoreOutcome:
    status: JobStatus
    message: str
    results: list[str] = field(default_factory=list)


class _Failed(Exception):
    """The job stops here, with this message, having touched nothing it did not say."""


def target_refusal(items: Sequence[RestoreItem], *, existing: set[str], replaceable: set[str], overwrite: bool,
                   maintenance_db: str, user: str) -> str | None:
    """Why the target cannot take these items, from the databases it has (``existing``) and those the
    login may replace; None when it can. The job checks this before it changes anything, and the console's
    summary asks the same question before the job is queued (services.restore.preflight)."""
    for item in items:
        if item.tables is None and item.target in existing and not overwrite:
            return (f"database {item.target!r} exists on the target; set "
                    "commonOptions.unconditionalOverwrite to replace it; nothing on the target was touched")
        if item.tables is None and item.target in existing and item.target == maintenance_db:
            return (f"{item.target!r} is the target's maintenance database, which pgvault is connected "
                    "to and cannot replace in place; restore it under another name (renameDatabases); "
                    "nothing on the target was touched")
        if item.tables is None and item.target in existing and item.target not in replaceable:
            return (f"login {user!r} does not own database {item.target!r} and so cannot "
                    "replace it; restore it under another name; nothing on the target was touched")
        if item.tables is not None and item.target not in existing:
            return (f"table-level restore goes into an existing database, and {item.target!r} does not "
                    "exist on the target; nothing on the target was touched")
    return None


REPLACEABLE = ("select datname from pg_database where pg_has_role(datdba, 'MEMBER') "
               "or (select rolsuper from pg_roles where rolname = current_user)")


def scratch_name(job_id: int, attempt: int, index: int) -> str:
    """Each run of a job has its own scratch databases: a run that lost its job (its worker was reaped and
    is still stopping) never drops the ones of the run that replaced it."""
    return f"pgvault_restore_{job_id}_{attempt}_{index}"


def _earlier_scratch(names: set[str], job_id: int, attempt: int) -> list[str]:
    """Scratch databases of this job's earlier runs (one that crashed left them)."""
    runs = {name: re.fullmatch(rf"pgvault_restore_{job_id}_(\d+)_\d+", name) for name in names}
    return sorted(name for name, m in runs.items() if m is not None and int(m.group(1)) < attempt)


class RestoreRun:
    def __init__(self, req: RestoreRequest, reporter: RestoreReporter, cancel: CancelToken,
                 log: logging.Logger) -> None:
        self.req = req
        self.reporter = reporter
        self.cancel = cancel
        self.log = log
        self._read: dict[int, list[int]] = {}  # item id: [bytes of its archive read so far]
        self._total = 1
        self._key: bytes | None = None
        self._decompressor: Filter | None = None
        self._live: LiveProgress | None = None

    def run(self) -> RestoreOutcome:
        try:
            return self._run()
        except Cancelled:
            return RestoreOutcome(KILLED, "killed; the target was left without partial databases "
                                          "(scratch copies dropped, table restores rolled back)")
        except _Failed as exc:
            return RestoreOutcome(FAILED, str(exc))
        except (ArchiveIntegrityError, StorageError) as exc:
            return RestoreOutcome(FAILED, f"{exc}; nothing on the target was touched")
        except PgvaultError as exc:
            return RestoreOutcome(FAILED, exc.message)

    def _archive(self, entry: DatabaseEntry, progress: Callable[[int], None] | None = None,
                 storage: Storage | None = None) -> ProgramInput:
        """A stored database's archive as pg_restore's input (decrypted here, decompressed by a child),
        from the restore point's storage or from ``storage`` (a local copy: ``readable_twice``)."""
        return archive_input(storage or self.req.storage, entry.file, progress, self._key, self._decompressor)

    # -- phases --------------------------------------------------------------------------------
    def _run(self) -> RestoreOutcome:
        req = self.req
        self.reporter.phase("Verify", 1)
        self._key = data_key(req.sealer, req.data_key_sealed)
        self._decompressor = decompressor(req.compressor)
        manifest, entries = self._verified_copy()

        ids = self.reporter.items(
            [("database" if i.tables is None else "tables", i.source) for i in req.items]
            + ([("globals", "(globals)")] if req.restore_globals else [])
        )
        for item_id, item in zip(ids, req.items, strict=False):
            self.reporter.item_update(item_id, target=item.target if item.tables is None else
                                      f"{item.target}: " + ", ".join(f"{s}.{t}" for s, t in item.tables))

        self.reporter.phase("Check target", 5)
        with req.address.connect() as conn:
            version_num = server_info(conn).version_num
            existing = {r[0] for r in conn.execute("select datname from pg_database")}
            for stale in _earlier_scratch(existing, req.job_id, req.attempt):
                self.log.info("dropping %s, left by an earlier run of this job", stale)
                _drop_database(conn, stale, version_num)
                existing.discard(stale)
            can_create = bool(_one(conn, "select rolcreatedb or rolsuper from pg_roles where rolname = current_user"))
        tools = toolset_for_server(version_num, req.pg_bin)
        whole = [i for i in req.items if i.tables is None]
        if whole and not can_create:
            raise _Failed(f"login {req.address.user!r} may not create databases (needs CREATEDB); "
                          "nothing on the target was touched")
        with req.address.connect() as conn:
            replaceable = {r[0] for r in conn.execute(REPLACEABLE)}
        refusal = target_refusal(req.items, existing=existing, replaceable=replaceable, overwrite=req.overwrite,
                                 maintenance_db=req.address.dbname, user=req.address.user)
        if refusal:
            raise _Failed(refusal)
        for item in req.items:
            if item.tables is not None:
                self._check_tables(item)

        self._total = max(1, sum(e.file.bytes for e in entries))
        self.reporter.phase("Restore", 10)
        by_name = {e.name: e for e in entries}
        with client_env(req.address, req.runtime_dir) as env, \
                LiveProgress(self.reporter, "Restore", self.log, percent=self._percent,
                             name=f"restore{req.job_id}-progress") as self._live:
            with ThreadPoolExecutor(max(1, req.parallelism), thread_name_prefix=f"restore{req.job_id}") as pool:
                futures = [
                    pool.submit(self._restore_one, item_id, index, item, by_name[item.source], tools, env,
                                version_num, existing)
                    for index, (item_id, item) in enumerate(zip(ids, req.items, strict=False))
                ]
                results = [f.result() for f in futures]
            if req.restore_globals:
                assert manifest.globals is not None
                results.append(self._restore_globals(ids[-1], manifest, tools, env))
        self.cancel.raise_if_cancelled()

        status = overall(r[0] for r in results)
        notes = [r[1] for r in results if r[1]]
        return RestoreOutcome(status, f"{len(results)} items restored" if status == COMPLETED else "; ".join(notes))

    def _check(self, file: FileEntry) -> None:
        if is_encrypted(file) and self._key is None:
            raise ArchiveIntegrityError(f"{file.key}: the file is encrypted and the restore point has no data key")
        check_file(self.req.storage, file, data_key=self._key)

    def _verified_copy(self) -> tuple[Manifest, list[DatabaseEntry]]:
        """The first copy of the restore point whose every needed file matches the manifest; a damaged or
        unreachable copy gives way to the next one, and the job says why each was passed over."""
        req = self.req
        problems: list[str] = []
        for storage in [req.storage, *req.alternates]:
            try:
                manifest = load_manifest(storage, req.prefix, req.manifest_sha256)
                req.storage = storage
                entries = self._entries(manifest)
                for entry in entries:
                    self.cancel.raise_if_cancelled()
                    self._check(entry.file)
                if req.restore_globals:
                    if manifest.globals is None:
                        raise _Failed("the backup holds no globals (roles) file; nothing on the target was touched")
                    self._check(manifest.globals)
            except (ArchiveIntegrityError, StorageError) as exc:
                problems.append(f"{storage.uri(req.prefix)}: {exc}")
                continue
            if problems:
                self.reporter.warn("copies passed over: " + "; ".join(problems))
            return manifest, entries
        if len(problems) == 1:
            raise ArchiveIntegrityError(problems[0].split(": ", 1)[1])
        raise ArchiveIntegrityError("no copy is intact: " + "; ".join(problems))

    def _entries(self, manifest: Manifest) -> list[DatabaseEntry]:
        out = []
        for item in self.req.items:
            entry = manifest.database(item.source)
            if entry is None:
                raise _Failed(f"database {item.source!r} is not in this backup; "
                              "nothing on the target was touched")
            if entry not in out:
                out.append(entry)
        return out

    def _check_tables(self, item: RestoreItem) -> None:
        assert item.tables is not None
        with self.req.address.with_db(item.target).connect() as conn:
            for schema, table in item.tables:
                found = conn.execute(
                    "select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                    "where n.nspname = %s and c.relname = %s", (schema, table)).fetchone()
                if found and not self.req.overwrite:
                    raise _Failed(f"table {schema}.{table} exists in {item.target!r}; set commonOptions."
                                  "unconditionalOverwrite to replace it; nothing on the target was touched")

    def _counter(self, item_id: int) -> tuple[Callable[[int], None], Callable[[], int]]:
        """What the archive's reader calls per chunk read (it only adds: the catalog is written by
        ``LiveProgress``'s thread, about once a second, so a busy catalog never slows the stream that feeds
        pg_restore), and what reads the item's bytes so far."""
        read = self._read.setdefault(item_id, [0])

        def add(nbytes: int) -> None:
            read[0] += nbytes  # (one reader thread per item)

        return add, lambda: read[0]

    def _percent(self, _values: dict[int, int]) -> int:
        done = sum(r[0] for r in list(self._read.values()))
        return min(98, 10 + int(88 * done / self._total))

    # -- one item ------------------------------------------------------------------------------
    def _restore_one(self, item_id: int, index: int, item: RestoreItem, entry: DatabaseEntry, tools: Toolset,
                     env: dict[str, str], version_num: int, existing: set[str]) -> tuple[JobStatus, str]:
        if self.cancel.cancelled:
            return KILLED, ""
        self.reporter.item_running(item_id, "Restore")
        add, read = self._counter(item_id)
        try:
            assert self._live is not None
            with self._live.track(item_id, read):
                if item.tables is None:
                    status, note, details = self._restore_database(index, item, entry, tools, env, version_num,
                                                                   existing, add)
                else:
                    status, note, details = self._restore_tables(item, entry, tools, env, version_num, add)
        except Cancelled:
            self.reporter.item_update(item_id, status=KILLED, error="killed")
            raise
        except (ToolError, ConnectionFailed, psycopg.Error, StorageError, ArchiveIntegrityError) as exc:
            status, note, details = FAILED, f"{item.source}: {_text(exc)}", []
        self.reporter.item_update(item_id, status=status, error=note or None, details=details,
                                  bytes=entry.file.bytes)
        return status, note

    def _restore_database(self, index: int, item: RestoreItem, entry: DatabaseEntry, tools: Toolset,
                          env: dict[str, str], version_num: int, existing: set[str], progress: Callable[[int], None]
                          ) -> tuple[JobStatus, str, list[dict[str, str]]]:
        scratch = scratch_name(self.req.job_id, self.req.attempt, index)
        with self.req.address.connect() as conn:
            _drop_database(conn, scratch, version_num)
            self._create_database(conn, scratch, entry)
        errors = RestoreErrors(PgVersion(version_num))
        argv = [tools.path("pg_restore"), "--no-password", dbname_arg(scratch), *target_options(errors.target)]
        if not self.req.ownership:
            argv += ["--no-owner", "--no-privileges"]
        try:
            result = run_program(argv, {**env, "PGDATABASE": scratch}, log=self.log, cancel=self.cancel,
                                 **self._archive(entry, progress),
                                 on_stderr=errors.feed, check=False)
        except BaseException:
            with contextlib.suppress(Exception), self.req.address.connect() as conn:
                _drop_database(conn, scratch, version_num)
            raise
        if result.returncode != 0 and not errors.ignored:
            with self.req.address.connect() as conn:
                _drop_database(conn, scratch, version_num)
            return FAILED, f"{item.source}: pg_restore failed: {result.stderr[-1000:]}", errors.objects
        if note := errors.summary():
            self.log.info("%s: %s", item.source, note)
        replacing = item.target in existing
        if errors.failed and replacing:
            return (PARTIAL, f"{item.source}: {errors.failed} objects could not be restored; the existing "
                    f"database {item.target!r} was kept and the partial restore left as {scratch!r}",
                    errors.objects)
        dropped = False
        try:
            with self.req.address.connect() as conn:
                if replacing:
                    _drop_database(conn, item.target, version_num)
                    dropped = True
                conn.execute(sql.SQL("alter database {} rename to {}").format(sql.Identifier(scratch),
                                                                              sql.Identifier(item.target)))
        except psycopg.Error as exc:
            with contextlib.suppress(Exception), self.req.address.connect() as conn:
                _drop_database(conn, scratch, version_num)
            state = (f"the existing database {item.target!r} had already been dropped" if dropped
                     else "the target was left as it was")
            return (FAILED, f"{item.source}: could not put the restored database in place as {item.target!r}: "
                    f"{str(exc).strip()}; {state}; the scratch copy was dropped", errors.objects)
        if errors.failed:
            return PARTIAL, f"{item.source}: {errors.failed} objects could not be restored", errors.objects
        return COMPLETED, "", []

    def _create_database(self, conn: psycopg.Connection, name: str, entry: DatabaseEntry) -> None:
        """As the original was (encoding, collation), falling back to the target's defaults when it lacks
        the locale."""
        ident = sql.Identifier(name)
        attempts = [
            sql.SQL("create database {} template template0 encoding {} lc_collate {} lc_ctype {}").format(
                ident, sql.Literal(entry.encoding), sql.Literal(entry.collate), sql.Literal(entry.ctype)),
            sql.SQL("create database {} template template0 encoding {}").format(ident, sql.Literal(entry.encoding)),
            sql.SQL("create database {} template template0").format(ident),
        ]
        if not entry.collate:
            attempts = attempts[1:]
        for n, statement in enumerate(attempts):
            try:
                conn.execute(statement)
                if n:
                    self.reporter.warn(f"{entry.name}: created without the original's locale "
                                       f"({entry.encoding}, {entry.collate}); the target lacks it")
                return
            except (psycopg.errors.InvalidParameterValue, psycopg.errors.FeatureNotSupported,
                    psycopg.errors.InvalidObjectDefinition):
                if n == len(attempts) - 1:
                    raise

    def _restore_tables(self, item: RestoreItem, entry: DatabaseEntry, tools: Toolset, env: dict[str, str],
                        version_num: int, progress: Callable[[int], None]
                        ) -> tuple[JobStatus, str, list[dict[str, str]]]:
        # (read twice, but ``pg_restore --list`` stops after the archive's table of contents, its first
        # bytes: no local copy of a remote archive, unlike a drill's two full reads)
        assert item.tables is not None
        listing: list[bytes] = []
        run_program([tools.path("pg_restore"), "--list"], env, log=self.log, cancel=self.cancel,
                    **self._archive(entry),
                    stdout_sink=listing.append)
        chosen, missing = select_entries(b"".join(listing).decode("utf-8", "replace"), item.tables)
        if missing:
            names = ", ".join(f"{s}.{t}" for s, t in missing)
            return FAILED, f"{item.source}: not in the backup: {names}", []
        errors = ScriptErrors()
        with tempfile.TemporaryDirectory(prefix="pgvault-toc-") as tmp:
            os.chmod(tmp, 0o700)
            list_file = Path(tmp) / "restore.list"
            list_file.write_text("\n".join(chosen) + "\n")
            argv = [tools.path("pg_restore"), "--single-transaction", f"--use-list={list_file}", "--file=-",
                    *target_options(PgVersion(version_num))]
            if not self.req.ownership:
                argv += ["--no-owner", "--no-privileges"]
            if self.req.overwrite:
                argv += ["--clean", "--if-exists"]
            psql = [tools.path("psql"), "--no-password", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"]
            result, dropped = restore_script(argv, env, self._archive(entry, progress), psql,
                                             {**env, "PGDATABASE": item.target}, target=PgVersion(version_num),
                                             log=self.log, cancel=self.cancel, on_psql_stderr=errors.feed)
        if dropped:
            self.log.info("%s: the target (PostgreSQL %s) does not have %s, which pg_restore sets; ignored",
                          item.source, PgVersion(version_num).label, ", ".join(sorted(set(dropped))))
        if result.returncode != 0:
            return (FAILED, f"{item.source}: table restore rolled back: {result.stderr[-800:]}", errors.objects)
        return COMPLETED, "", []

    def _restore_globals(self, item_id: int, manifest: Manifest, tools: Toolset, env: dict[str, str]
                         ) -> tuple[JobStatus, str]:
        """Roles and tablespaces, statement by statement: on a managed target some are refused (and
        roles that already exist are fine); each refusal is reported."""
        assert manifest.globals is not None
        self.reporter.item_running(item_id)
        errors: list[dict[str, str]] = []

        fatal: list[str] = []

        def feed(line: str) -> None:
            if "ERROR:" in line and "already exists" not in line:
                errors.append({"object": "globals", "error": line.split("ERROR:", 1)[1].strip()})
            elif "FATAL:" in line or line.startswith("psql: error"):
                fatal.append(line.strip())

        result = run_program(
            [tools.path("psql"), "--no-password", "-X", "-q", "-v", "ON_ERROR_STOP=0", "-f", "-"],
            env, log=self.log, cancel=self.cancel, on_stderr=feed, check=False,
            stdin_source=decoded_stream(self.req.storage, manifest.globals, data_key=self._key))
        if fatal or result.returncode not in (0, 3):  # 3: a script error, reported per statement above
            note = f"globals: psql failed ({result.returncode}): {(fatal or [result.stderr[-300:]])[0]}"
            self.reporter.item_update(item_id, status=FAILED, error=note, details=errors)
            return FAILED, note
        status = PARTIAL if errors else COMPLETED
        note = f"globals: {len(errors)} statements refused" if errors else ""
        self.reporter.item_update(item_id, status=status, error=note or None, details=errors,
                                  bytes=manifest.globals.bytes)
        return status, note


def _drop_database(conn: psycopg.Connection, name: str, version_num: int) -> None:
    ident = sql.Identifier(name)
    if version_num >= 130000:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(ident))
        return
    conn.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (name,))
    conn.execute(sql.SQL("drop database if exists {}").format(ident))


def _one(conn: psycopg.Connection, query: str) -> object:
    row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


def _text(exc: BaseException) -> str:
    if isinstance(exc, PgvaultError):
        return exc.message
    return str(exc).strip()
