"""Verification of a restore point: every stored file re-read against its sha256 (cheap; for an encrypted
restore point also authenticated under its data key in the same pass: a backup whose key is lost does not
pass), and on request
a restore drill: each database restored into a scratch database, its rows counted per table and compared
with the rows the archive holds (``restore/rowcount.py``), then the scratch dropped.

The drill runs on a registered instance or on a throwaway server pgvault starts from the bundled
binaries (so a drill never needs a spare server of the user's).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from ..backup.manifest import DatabaseEntry
from ..crypto import Sealer
from ..domain.jobs import ItemStatus, JobStatus
from ..errors import ArchiveIntegrityError, PgvaultError, ToolError
from ..pgtools.binaries import server_binaries, toolset_for_server
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
    decompressor,
    is_encrypted,
    load_manifest,
    readable_twice,
)
from .engine import RestoreReporter, _drop_database
from .pgrestore import RestoreErrors, target_options
from .rowcount import archive_row_counts, row_counts


@dataclass
class VerifyRequest:
    job_id: int
    storage: Storage
    prefix: str
    manifest_sha256: str
    drill: bool
    drill_address: ServerAddress | None  # None: a throwaway server
    scratch_dir: Path  # outside PGVAULT_HOME: a throwaway server's folder must be reachable by its own user
    pg_bin: Path | None = None
    pg_servers: list[Path] = field(default_factory=list)  # PGVAULT_PG_SERVERS: a throwaway server's programs
    runtime_dir: Path | None = None  # PGVAULT_HOME/run: passfiles, bridge sockets, local copies
    data_key_sealed: bytes | None = None  # an encrypted restore point's data key, sealed by the master key
    sealer: Sealer | None = None  # opens it
    compressor: str = "auto"  # PGVAULT_COMPRESSOR: which decompressor feeds pg_restore (archive.decompressor)


@dataclass
class VerifyOutcome:
    status: JobStatus
    message: str
    verify_status: str | None = None
    drill_status: str | None = None
    drill_seconds: float | None = None
    drill_message: str | None = None


class VerifyRun:
    def __init__(self, req: VerifyRequest, reporter: RestoreReporter, cancel: CancelToken,
                 log: logging.Logger) -> None:
        self.req = req
        self.reporter = reporter
        self.cancel = cancel
        self.log = log
        self._key: bytes | None = None
        self._decompressor: Filter | None = None

    def run(self) -> VerifyOutcome:
        try:
            return self._run()
        except Cancelled:
            return VerifyOutcome(JobStatus.KILLED, "killed; scratch databases dropped")
        except (ArchiveIntegrityError, StorageError) as exc:
            return VerifyOutcome(JobStatus.FAILED, f"verification failed: {exc}", verify_status="Failed")
        except (PgvaultError, psycopg.Error) as exc:
            # The drill could not run (its server unreachable, a login that may not create databases):
            # a fact about the drill's target, not about the backup, so nothing is recorded on it.
            text = exc.message if isinstance(exc, PgvaultError) else str(exc).strip()
            return VerifyOutcome(JobStatus.FAILED, f"the verification could not run: {text}")

    def _archive(self, entry: DatabaseEntry, storage: Storage) -> ProgramInput:
        """A stored database's archive as pg_restore's input (decrypted here, decompressed by a child),
        from ``storage`` (the restore point's, or a local copy of it: ``readable_twice``)."""
        return archive_input(storage, entry.file, None, self._key, self._decompressor)

    def _run(self) -> VerifyOutcome:
        req = self.req
        self.reporter.phase("Verify files", 1)
        manifest = load_manifest(req.storage, req.prefix, req.manifest_sha256)
        files = [d.file for d in manifest.databases] + ([manifest.globals] if manifest.globals else [])
        self._key = data_key(req.sealer, req.data_key_sealed)
        if self._key is None and any(is_encrypted(f) for f in files):
            raise ArchiveIntegrityError("the files are encrypted and the restore point has no data key")
        ids = self.reporter.items([("file", f.key.rsplit("/", 1)[-1]) for f in files])
        bad: list[str] = []
        for n, (item_id, entry) in enumerate(zip(ids, files, strict=True)):
            self.cancel.raise_if_cancelled()
            try:
                check_file(req.storage, entry, data_key=self._key)
            except ArchiveIntegrityError as exc:
                bad.append(str(exc))
                self.reporter.item_update(item_id, status=ItemStatus.FAILED, error=str(exc))
            else:
                self.reporter.item_update(item_id, status=ItemStatus.COMPLETED, bytes=entry.bytes, sha256=entry.sha256,
                                          location=req.storage.uri(entry.key))
            self.reporter.phase("Verify files", 1 + int(49 * (n + 1) / max(1, len(files))))
        if bad:
            return VerifyOutcome(JobStatus.FAILED, "verification failed: " + "; ".join(bad), verify_status="Failed")
        if not req.drill:
            decrypted = " and decrypt under the restore point's data key" if self._key is not None else ""
            return VerifyOutcome(JobStatus.COMPLETED, f"{len(files)} files match their sha256{decrypted}",
                                 verify_status="Passed")

        self.reporter.phase("Restore drill", 50)
        self._decompressor = decompressor(req.compressor)  # only a drill decompresses
        started = time.monotonic()
        problems: list[str] = []
        source = PgVersion(manifest.server_version_num)
        with self._drill_server(source) as (address, where):
            with address.connect() as conn:
                version_num = server_info(conn).version_num
            tools = toolset_for_server(version_num, req.pg_bin)
            on = f"on PostgreSQL {PgVersion(version_num).label} ({where})"
            self.log.info("restore drill %s; the backup is of PostgreSQL %s", on, source.label)
            with client_env(address, req.runtime_dir) as env:
                for n, database in enumerate(manifest.databases):
                    self.cancel.raise_if_cancelled()
                    problems += self._drill_one(address, env, tools.path("pg_restore"), version_num, n, database)
                    self.reporter.phase("Restore drill", 50 + int(48 * (n + 1) / max(1, len(manifest.databases))))
        seconds = round(time.monotonic() - started, 3)
        if problems:
            message = "; ".join(problems)
            return VerifyOutcome(JobStatus.COMPLETED_WITH_ERRORS, f"files verified; drill {on} found: {message}",
                                 verify_status="Passed", drill_status="Failed", drill_seconds=seconds,
                                 drill_message=f"{on}: {message}")
        message = (f"{len(manifest.databases)} databases restored {on} and their row counts match the "
                   "archive's")
        return VerifyOutcome(JobStatus.COMPLETED, f"files verified; {message}", verify_status="Passed",
                             drill_status="Passed", drill_seconds=seconds, drill_message=message)

    @contextlib.contextmanager
    def _drill_server(self, source: PgVersion) -> Iterator[tuple[ServerAddress, str]]:
        """The drill's server and a few words on it: the instance asked for, else a throwaway server of the
        backed-up server's own major (a drill on another major proves nothing about restoring to the
        source: pg_restore 18 onto 16 fails in ways it does not on 18). No such binaries: a ToolError."""
        if self.req.drill_address is not None:
            yield self.req.drill_address, "a registered instance"
            return
        from ..pgtools.localserver import LocalServer

        binaries = server_binaries(source.major_label, self.req.pg_servers)
        self.req.scratch_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"drill-{self.req.job_id}-", dir=self.req.scratch_dir) as tmp, \
                LocalServer(Path(tmp), bin_dir=binaries.bin_dir) as server:
            yield (ServerAddress(host=server.host, port=server.port, user=server.superuser, password=server.password),
                   f"a throwaway server from {binaries.bin_dir}")

    def _drill_one(self, address: ServerAddress, env: dict[str, str], pg_restore: str, version_num: int,
                   index: int, entry: DatabaseEntry) -> list[str]:
        scratch = f"pgvault_drill_{self.req.job_id}_{index}"
        with address.connect() as conn:
            _drop_database(conn, scratch, version_num)
            conn.execute(sql.SQL("create database {} template template0").format(sql.Identifier(scratch)))
        try:
            errors = RestoreErrors(PgVersion(version_num))
            # read twice (restored, then its rows counted): from one local copy when the storage is remote
            with readable_twice(self.req.storage, entry.file, self.cancel, self.req.runtime_dir) as storage:
                try:
                    argv = [pg_restore, "--no-password", dbname_arg(scratch), "--no-owner", "--no-privileges",
                            *target_options(errors.target)]
                    result = run_program(argv, {**env, "PGDATABASE": scratch}, log=self.log, cancel=self.cancel,
                                         on_stderr=errors.feed, check=False, **self._archive(entry, storage))
                except ToolError as exc:  # the decompressor failed (the archive did not come out whole)
                    return [f"{entry.name}: the archive could not be restored: {exc}"]
                if result.returncode != 0 and not errors.ignored:
                    return [f"{entry.name}: pg_restore failed: {result.stderr[-300:]}"]
                problems = [f"{entry.name}: {o['object']}: {o['error']}" for o in errors.objects]
                try:
                    expected = archive_row_counts(pg_restore, env, self._archive(entry, storage),
                                                  log=self.log, cancel=self.cancel)
                except ToolError as exc:
                    return [*problems, f"{entry.name}: the archive's rows could not be counted: {exc}"]
            with address.with_db(scratch).connect() as conn:
                conn.execute("begin isolation level repeatable read read only")
                restored, _ = row_counts(conn)
            # The backup's tables are the reference: a table the archive had no data for (a view's, an
            # extension's own) is not one the drill can miss.
            for table in sorted(expected):
                want, got = expected[table], restored.get(table)
                if want != got:
                    problems.append(f"{entry.name}: {table}: {got} rows restored, {want} in the backup")
            return problems
        except psycopg.Error as exc:
            return [f"{entry.name}: {str(exc).strip()}"]
        finally:
            with contextlib.suppress(Exception), address.connect() as conn:
                _drop_database(conn, scratch, version_num)
