"""A running job reports, per database, the bytes streamed so far while the database is being dumped (or
its archive read by a restore), not only when it ends; `pgvault ... --follow` shows them.

Made deterministic without timing: a test holds a lock that the program waits on in the middle of its
stream, checks what the job and the command line say while it waits (the database cannot have ended),
then lets go. pg_dump writes every table's data before the large objects' data, so with
``pg_largeobject`` locked it stops after ``big``'s ~26 MB; a table-level restore with overwrite starts
with ``DROP TABLE``, which waits for a reader of the table while pg_restore reads the archive into pipes
that fill.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql
from tests.support.data import recreate_database
from tests.support.flows import register

ROWS = 400_000  # ~26 MB of hex text in the dump, ~13 MB stored: far more than the pipes on the way hold
MIB = 1 << 20
SIZE = r"[\d.]+ (?:B|KiB|MiB|GiB)"
PROGRESS = re.compile(rf"^  live_db: Running (?P<phase>\w+) (?P<size>{SIZE}) at (?P<rate>{SIZE}/s|-)$")


def _env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PGVAULT_URL", "PGVAULT_TOKEN")}
    env["XDG_CONFIG_HOME"] = str(config)
    return env


def cli(config: Path, *args: str) -> subprocess.Popen[str]:
    """`pgvault ARGS`, running: its output is read as it comes (``Lines``)."""
    return subprocess.Popen([sys.executable, "-m", "pgvault.cli", *args], env=_env(config), text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


class Lines:
    """A command run in the background (``start``), its stdout read line by line as it prints them."""

    def __init__(self, config: Path, *args: str) -> None:
        self.config, self.args = config, args
        self.proc: subprocess.Popen[str] | None = None
        self.seen: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()

    def start(self) -> None:
        self.proc = cli(self.config, *self.args)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def stop(self) -> None:
        """The command is ended (a test that failed midway) and its pipes closed."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 120) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._q.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line like {pattern.pattern!r} in {timeout} s: {self.seen}") from None
            if line is None:
                raise AssertionError(f"the command ended without a line like {pattern.pattern!r}: {self.seen}")
            self.seen.append(line)
            if m := pattern.match(line):
                return m

    def finish(self, timeout: float = 300) -> tuple[int, str, str]:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        deadline = time.monotonic() + 10
        while (line := self._q.get(timeout=max(0.1, deadline - time.monotonic()))) is not None:
            self.seen.append(line)
        assert self.proc.stderr is not None and self.proc.stdout is not None
        return code, "\n".join(self.seen), self.proc.stderr.read()


def _size(text: str) -> float:
    value, unit = text.split()
    return float(value) * {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[unit]


@pytest.fixture()
def live_db(pg):
    recreate_database(pg, "live_db")
    with pg.connect("live_db") as conn:
        conn.execute("create table big as select g as id, md5(g::text) || md5((-g)::text) as payload "
                     "from generate_series(1, %s) g", (ROWS,))
        conn.execute("select lo_from_bytea(0, 'written after every table')")
    yield "live_db"
    with pg.connect() as conn:
        conn.execute(sql.SQL("drop database if exists live_db with (force)"))


@pytest.fixture()
def config(tmp_path: Path, service) -> Path:
    cfg = tmp_path / "xdg"
    done = subprocess.run([sys.executable, "-m", "pgvault.cli", "login", "--url", service.url], env=_env(cfg),
                          input=service.admin_password + "\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return cfg


def _waiting_on_a_lock(pg) -> bool:
    """pgvault's program (pg_dump, psql) in live_db waits for a lock: its stream cannot end now."""
    with pg.connect() as conn:
        return bool(conn.execute("select count(*) from pg_stat_activity where datname = 'live_db' "
                                 "and application_name = 'pgvault' and wait_event_type = 'Lock'").fetchone()[0])


def _item(job: dict, name: str = "live_db") -> dict:
    return next(d for d in job["databases"] if d["name"] == name)


def _wait_streaming(api, pg, job_id: str, at_least: int) -> tuple[dict, dict]:
    """Polls (no timing asserted) until live_db's program waits on the lock and the job shows bytes."""
    deadline = time.monotonic() + 120
    while True:
        job = api.job(job_id)
        items = [d for d in job["databases"] if d["name"] == "live_db"]
        if items and items[0]["status"] == "Running" and items[0]["bytes"] >= at_least and _waiting_on_a_lock(pg):
            return job, items[0]
        assert job["status"] in ("Waiting", "Running"), job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


@contextlib.contextmanager
def _following(config: Path, *args: str) -> Iterator[Lines]:
    lines = Lines(config, *args)
    try:
        yield lines
    finally:
        lines.stop()


def test_backup_reports_the_bytes_of_a_database_while_it_is_dumped(api, pg, live_db, config):
    entity, first = register(api, pg, "live-src")
    assert api.wait_job(first)["status"] == "Completed"
    holder = pg.connect("live_db")
    with _following(config, "backup", "live-src", "--follow") as follower:
        try:
            holder.execute("begin")
            holder.execute("lock table pg_largeobject in access exclusive mode")  # pg_dump's last data
            follower.start()
            job_id = follower.wait_for(re.compile(r"^job (\d+) Backup: ")).group(1)

            job, item = _wait_streaming(api, pg, job_id, MIB)
            # the dump has not ended (pg_dump waits for the lock), yet its bytes are in the job
            assert job["status"] == "Running" and job["currentPhaseName"] == "Backup"
            assert 2 <= job["percentComplete"] < 99
            assert item["phase"] == "Dump" and item["sha256"] is None and item["location"] is None
            assert item["elapsedSeconds"] > 0 and item["bytesPerSecond"] > 0
            live_bytes = item["bytes"]

            line = follower.wait_for(PROGRESS)
            while _size(line["size"]) < MIB:  # (the first line may be from before the first report)
                line = follower.wait_for(PROGRESS)
            assert line["phase"] == "Dump" and line["rate"] != "-"
            assert _item(api.job(job_id))["status"] == "Running" and _waiting_on_a_lock(pg)
        finally:
            holder.execute("rollback")
            holder.close()
        code, out, err = follower.finish()
    assert code == 0, out + err
    done = api.job(job_id)
    assert done["status"] == "Completed"
    final = _item(done)
    assert final["status"] == "Completed" and final["bytes"] >= live_bytes
    assert "phase" not in final and final["elapsedSeconds"] > 0 and final["bytesPerSecond"] > 0
    percents = [int(p) for p in re.findall(rf"^job {job_id} Backup: \w+ (\d+)%", out, re.M)]
    assert percents == sorted(percents) and percents[-1] == 100, out  # a percent never goes back
    assert re.search(r"^  live_db: Completed [\d.]+ MiB$", out, re.M), out
    assert re.search(r"^DATABASE +TARGET +STATUS +SIZE +RATE +ERROR$", out, re.M), out
    assert re.search(r"^live_db +Completed +[\d.]+ MiB +[\d.]+ [KMG]?i?B/s$", out, re.M), out
    api.delete(f"/Instance/{entity['instanceId']}", params={"deleteBackups": "true"})


def test_restore_reports_the_bytes_of_the_archive_read_while_it_restores(api, pg, live_db, config):
    entity, first = register(api, pg, "live-restore")
    backup = api.wait_job(first)
    assert backup["status"] == "Completed"
    stored = _item(backup)["bytes"]
    assert stored > 4 * MIB  # much more than the pipes between the archive and psql hold
    holder = pg.connect("live_db")
    with _following(config, "restore", "live-restore", "live_db", "--table", "public.big", "--overwrite",
                    "--follow") as follower:
        try:
            holder.execute("begin")
            holder.execute("select 1 from big limit 1")  # the restore's DROP TABLE waits for this reader
            follower.start()
            job_id = follower.wait_for(re.compile(r"^job (\d+) Restore: ")).group(1)

            job, item = _wait_streaming(api, pg, job_id, 1)
            assert job["status"] == "Running" and job["currentPhaseName"] == "Restore"
            assert item["phase"] == "Restore" and 0 < item["bytes"] < stored
            assert item["elapsedSeconds"] > 0 and "bytesPerSecond" in item

            line = follower.wait_for(PROGRESS)
            while _size(line["size"]) == 0:
                line = follower.wait_for(PROGRESS)
            assert line["phase"] == "Restore" and _size(line["size"]) < stored
            assert _item(api.job(job_id))["status"] == "Running" and _waiting_on_a_lock(pg)
        finally:
            holder.execute("rollback")
            holder.close()
        code, out, err = follower.finish()
    assert code == 0, out + err
    done = api.job(job_id)
    assert done["status"] == "Completed" and _item(done)["bytes"] == stored
    with pg.connect("live_db") as conn:
        assert conn.execute("select count(*), sum(length(payload)) from big").fetchone() == (ROWS, ROWS * 64)
    api.delete(f"/Instance/{entity['instanceId']}", params={"deleteBackups": "true"})


def test_progress_lands_only_on_running_items_of_the_runs_lease(catalog):
    """``services.jobs.record_progress`` on both dialects: a report changes the bytes of items still
    Running under the run's lease, never an item that ended (a report that raced the item's end) nor one
    of a run that lost its job; the percent only rises; both read paths show the live fields alike."""
    from sqlalchemy import update as sql_update
    from tests.support.readpaths import seed

    from pgvault.catalog.models import Job, JobItem
    from pgvault.schemas.jobs import job_summary
    from pgvault.services import jobs

    seed(catalog)
    lease = "node-a:1.ab:1"
    with catalog.transaction(write=True) as s:  # job 902 of the seed is a running backup at 40%
        s.execute(sql_update(Job).where(Job.id == 902).values(lease_owner=lease))
        s.add_all([JobItem(id=2001, job_id=902, kind="database", name="live", status="Running", bytes=0,
                           phase="Dump", elapsed_ms=0),
                   JobItem(id=2002, job_id=902, kind="database", name="ended", status="Completed", bytes=500,
                           elapsed_ms=5000)])
    with catalog.transaction(write=True) as s:
        jobs.record_progress(s, 902, {2001: (1000, 8000), 2002: (7, 9000)}, "Backup", 50, lease=lease)
    with catalog.transaction(write=True) as s:
        jobs.record_progress(s, 902, {2001: (1500, 10_000)}, "Backup", 45, lease=lease)  # an estimate made earlier
        jobs.record_progress(s, 902, {2001: (99_999, 11_000)}, "Backup", 90, lease="node-b:2.cd:1")  # not its run

    answers = []
    for reader in ("rows", "session"):
        with catalog.rows() if reader == "rows" else catalog.transaction(write=False) as conn:
            answers.append(job_summary(jobs.job_view(conn, 902)))
    assert answers[0] == answers[1]
    job = answers[0]
    assert job["percentComplete"] == 50 and job["currentPhaseName"] == "Backup"
    live, ended = (next(d for d in job["databases"] if d["name"] == n) for n in ("live", "ended"))
    assert live == {"name": "live", "status": "Running", "bytes": 1500, "sha256": None, "location": None,
                    "error": None, "phase": "Dump", "elapsedSeconds": 10.0, "bytesPerSecond": 150}
    assert ended["bytes"] == 500 and ended["bytesPerSecond"] == 100 and "phase" not in ended
