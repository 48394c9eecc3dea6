"""Crash hygiene: a real ``pgvault serve`` SIGKILLed during a dump (twice in a row), while writing a manifest,
in the middle of an S3 multipart upload and during a restore; a manifest that cannot be written (a full
disk, a full bucket). After each: the job's state and its items' agree, the node that comes back takes its
jobs back at once (not after the lease), and nothing is left in the destinations (local and S3, unfinished
multipart uploads included) or in PGVAULT_HOME/run.

Timings (kill to reclaim) are printed: run with ``-s`` to see them."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from tests.support.data import fingerprint, recreate_database
from tests.support.flows import register, restore, restore_body
from tests.support.relay import Relay
from tests.support.service import Api, Service

from pgvault.domain.jobs import MAX_ATTEMPTS
from pgvault.pgtools.localserver import LocalServer

LEASE = 60  # the default lease: a reclaim that waited for it would take over a minute
FAST = 30  # what "at once" must beat: the start of a service, with room for a busy machine


@pytest.fixture(scope="module")
def crash_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A server of this module's own: a backup of it holds a known set of databases."""
    with LocalServer(tmp_path_factory.mktemp("pg-crash")) as server:
        yield server


def _wait(cond: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := cond()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return got


def _row(svc: Service, job_id: str | int, catalog_url: str | None = None) -> dict[str, Any]:
    """The job's row, read at the source (the API does not show leases)."""
    query = f"select status, attempts, lease_owner, message from jobs where id = {int(job_id)}"
    if catalog_url:
        with psycopg.connect(catalog_url) as conn:
            row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    else:
        conn = sqlite3.connect(f"file:{svc.home / 'catalog.db'}?mode=ro", uri=True, timeout=30)
        try:
            row = conn.execute(query).fetchone()
        finally:
            conn.close()
    assert row is not None
    return dict(zip(("status", "attempts", "lease_owner", "message"), row, strict=True))


@contextlib.contextmanager
def _locked(server: LocalServer, dbname: str) -> Iterator[None]:
    """A database whose one table is locked: pg_dump waits for it, which holds a backup mid-dump."""
    recreate_database(server, dbname)
    with server.connect(dbname) as conn:
        conn.execute("create table t as select generate_series(1, 1000) x")
    holder = server.connect(dbname)
    holder.execute("begin")
    holder.execute("lock table t in access exclusive mode")
    try:
        yield
    finally:
        holder.execute("rollback")
        holder.close()
        with server.connect() as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname)))


def _dump_waiting(server: LocalServer, dbname: str, since: object = None) -> int:
    """pg_dumps waiting for the lock on ``dbname`` (that connected after ``since``, a time of the server's)."""
    with server.connect() as conn:
        row = conn.execute("select count(*) from pg_stat_activity where datname = %s and wait_event_type = 'Lock' "
                           "and application_name = 'pgvault' "
                           "and backend_start > coalesce(%s::timestamptz, '-infinity')", (dbname, since)).fetchone()
        return int(row[0]) if row else 0


def _server_now(server: LocalServer) -> object:
    with server.connect() as conn:
        return conn.execute("select now()").fetchone()[0]


def _passfiles(home: Path) -> set[Path]:
    return set((home / "run").glob("pgvault-*"))


def _plan(api: Api, name: str, destinations: list[dict[str, Any]]) -> str:
    r = api.post("/V2/Plan", json={"planName": name, "destinations": destinations})
    assert r.status_code == 200, r.text
    return name


def _objects(s3: Any, bucket: str) -> list[str]:
    out = s3.client().list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in out.get("Contents", []))


def _uploads(s3: Any, bucket: str) -> list[str]:
    return [u["Key"] for u in s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def _folders(root: Path, instance_id: int) -> list[Path]:
    base = root / f"instance-{instance_id}"
    return sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def _restart(svc: Service, what: str) -> float:
    """SIGKILL, start again at once; the seconds from the kill to the service answering."""
    svc.kill()
    killed = time.monotonic()
    svc.start()
    took = time.monotonic() - killed
    print(f"\n[crash matrix] {what}: reclaimed {took:.1f} s after the kill (lease {LEASE} s)")
    return took


def _reclaimed(row: dict[str, Any], before: dict[str, Any]) -> None:
    """The old incarnation's lease is gone (requeued, then maybe claimed again by the new one; or ended)."""
    assert row["lease_owner"] != before["lease_owner"], row
    node = before["lease_owner"].split(":")[0]
    assert row["lease_owner"] is None or row["lease_owner"].split(":")[0] == node, row  # the same node name


def _agree(summary: dict[str, Any]) -> None:
    """A finished job's items have all ended, and only a kept backup has Completed items with locations."""
    items = [*summary["databases"], *([summary["globals"]] if summary.get("globals") else [])]
    assert all(i["status"] not in ("Waiting", "Running") for i in items), summary
    if summary["jobType"] == "Backup" and summary["status"] in ("Failed", "Killed"):
        assert all(i["status"] != "Completed" and i["location"] is None for i in items), summary


def _aging(api: Api, instance_id: int) -> dict[str, Any]:
    r = api.post(f"/Instance/{instance_id}/action/dataAging")
    assert r.status_code == 200, r.text
    done = api.wait_job(r.json()["jobIds"][0])
    assert done["status"] == "Completed", done
    return done


def test_a_node_killed_twice_during_a_dump(crash_pg, s3, tmp_path):
    """Killed mid-dump and back: the job is taken back at once and runs again; killed again mid-dump and
    back: the job is Failed at once, every item with it (none Running, none Completed pointing at a file),
    and Data Aging removes both runs' folders from the local disk and the bucket."""
    bucket, disk = s3.new_bucket(), tmp_path / "disk"
    svc = Service(tmp_path / "home", PGVAULT_LEFTOVER_GRACE_SECONDS="0").start()
    api = svc.login()
    name = _plan(api, "twice", [{"name": "s3", "kind": "s3", **s3.config(bucket), **s3.secret()},
                                {"name": "disk", "path": str(disk)}])
    node = (svc.home / "node-id").read_text().strip()
    try:
        with _locked(crash_pg, "crash_locked"):
            entity, job = register(api, crash_pg, "twice", plan=name)
            _wait(lambda: _dump_waiting(crash_pg, "crash_locked"), "pg_dump waiting for the lock")
            first, passfiles = _row(svc, job), _passfiles(svc.home)
            assert first["lease_owner"].startswith(f"{node}:") and passfiles
            assert [p for p in disk.rglob(".*.partial")], "a dump was being written"

            restarted = _server_now(crash_pg)
            assert _restart(svc, "dump, first kill") < FAST
            second = _row(svc, job)
            _reclaimed(second, first)
            assert second["message"].startswith("requeued: its node restarted"), second
            assert not passfiles & _passfiles(svc.home)  # the killed run's password file: swept at start
            assert (svc.home / "node-id").read_text().strip() == node  # the same node, a new incarnation

            _wait(lambda: _row(svc, job)["attempts"] == MAX_ATTEMPTS
                  and _dump_waiting(crash_pg, "crash_locked", restarted), "the second run's pg_dump waiting too")
            assert _restart(svc, "dump, second kill") < FAST
            after = _row(svc, job)
            assert after["status"] == "Failed" and after["lease_owner"] is None, after
            assert "lost 2 times" in after["message"] and "node restarted" in after["message"], after
            summary = api.job(job)  # (the token outlives the process: it is in the catalog)
            assert summary["status"] == "Failed"
            _agree(summary)
            by_name = {d["name"]: d for d in summary["databases"]}
            locked = by_name["crash_locked"]
            assert locked["status"] == "Failed" and locked["error"] == after["message"]
            assert summary["globals"]["error"].startswith("not kept: the backup ended Failed")  # dumped before the kill

        iid = entity["instanceId"]
        assert len(_folders(disk, iid)) == 2 and any(f"-job-{job}/" in k for k in _objects(s3, bucket))
        done = _aging(api, iid)
        removed = [w for w in done["warnings"] if f"unfinished run of backup job {job}" in w]
        assert len(removed) == 4, done  # two runs' folders, in each destination
        assert "4 folders left by unfinished backup runs removed" in done["message"]
        assert _folders(disk, iid) == [] and not list(disk.rglob("*.partial"))
        assert _objects(s3, bucket) == [] and _uploads(s3, bucket) == []
        assert not _passfiles(svc.home)
    finally:
        api.close()
        svc.stop()


def test_a_node_killed_while_writing_the_manifest(crash_pg, s3, tmp_path):
    """The bucket holds the manifest's upload (a relay in front of it never forwards it) and the node is
    killed: back at once, the job runs again and completes, and the first run's folder (its dumps, and on
    disk the manifest's partial file) is removed by the Data Aging that follows the backup."""
    bucket, disk = s3.new_bucket(), tmp_path / "disk"
    relay = Relay(s3.url)
    svc = Service(tmp_path / "home", PGVAULT_LEFTOVER_GRACE_SECONDS="0").start()
    api = svc.login()
    try:
        name = _plan(api, "manifest", [{"name": "s3", "kind": "s3", **s3.config(bucket, endpoint=relay.endpoint),
                                        **s3.secret()}, {"name": "disk", "path": str(disk)}])
        relay.hold = "manifest.json"
        entity, job = register(api, crash_pg, "manifest", plan=name)
        assert relay.held.wait(60), "the manifest was never written"
        first = _row(svc, job)
        iid = entity["instanceId"]
        [run1] = _folders(disk, iid)
        assert list(run1.glob(".manifest.json.*.partial")) and list((run1 / "databases").glob("*.dump.zst"))
        assert any(k.startswith(f"{run1.parent.name}/{run1.name}/databases/") for k in _objects(s3, bucket))

        relay.hold = None
        assert _restart(svc, "manifest") < FAST
        _reclaimed(_row(svc, job), first)
        done = api.wait_job(job)
        assert done["status"] == "Completed", done
        _agree(done)
        assert _row(svc, job)["attempts"] == 2

        point = api.get("/RestorePoints", params={"instanceId": iid}).json()["restorePoints"][0]
        assert point["jobId"] == int(job)
        aging = _wait(lambda: _newest(svc, iid, "DataAging"), "the Data Aging queued by the backup")
        aged = api.wait_job(aging)
        assert aged["status"] == "Completed", aged
        assert sum(f"job-{job}" in w and run1.name in w for w in aged["warnings"]) == 2, aged
        [kept] = _folders(disk, iid)
        assert kept != run1 and (kept / "manifest.json").exists() and not list(disk.rglob("*.partial"))
        assert {k.split("/")[1] for k in _objects(s3, bucket)} == {kept.name}
        assert _uploads(s3, bucket) == []
    finally:
        api.close()
        svc.stop()
        relay.close()


def test_a_node_killed_during_a_multipart_upload_leaves_no_unfinished_upload(crash_pg, s3, tmp_path):
    """A dump larger than one part (32 MiB) goes to S3 as a multipart upload; a relay holds its first part
    and the node is killed: the bucket keeps an unfinished upload, which is no object. Back at once, the
    job runs again and completes, and the Data Aging that follows the backup aborts the killed run's
    upload (a warning of the job) and removes its folder: no upload and no object of that run remains."""
    bucket, relay = s3.new_bucket(), Relay(s3.url)
    recreate_database(crash_pg, "crash_big")
    with crash_pg.connect("crash_big") as conn:  # ~40 MB of random bytes: 40+ MB even compressed
        conn.execute("create table blob as select decode(string_agg(md5(random()::text || g::text || i::text), ''),"
                     " 'hex') b from generate_series(1, 80000) g, generate_series(1, 32) i group by g")
    svc = Service(tmp_path / "home", PGVAULT_LEFTOVER_GRACE_SECONDS="0").start()
    api = svc.login()
    try:
        name = _plan(api, "multipart", [{"name": "s3", "kind": "s3", **s3.config(bucket, endpoint=relay.endpoint),
                                         **s3.secret()}])
        relay.hold_part = "crash_big.dump.zst"
        entity, job = register(api, crash_pg, "multipart", plan=name)
        assert relay.held.wait(120), "the big dump never uploaded a part"
        [stranded] = _wait(lambda: _uploads(s3, bucket), "the multipart upload")
        assert stranded.endswith("crash_big.dump.zst") and stranded not in _objects(s3, bucket)
        first = _row(svc, job)

        relay.hold_part = None
        assert _restart(svc, "multipart upload") < FAST
        _reclaimed(_row(svc, job), first)
        done = api.wait_job(job, timeout=300)
        assert done["status"] == "Completed", done
        _agree(done)
        iid = entity["instanceId"]
        aging = _wait(lambda: _newest(svc, iid, "DataAging"), "the Data Aging queued by the backup")
        aged = api.wait_job(aging)
        assert aged["status"] == "Completed", aged
        run1 = stranded.split("/")[1]
        assert any(f"aborted the unfinished upload a run of backup job {job} left" in w and run1 in w
                   for w in aged["warnings"]), aged
        assert _uploads(s3, bucket) == []
        assert {k.split("/")[1] for k in _objects(s3, bucket)} == {stored_run(done)} != {run1}
    finally:
        api.close()
        svc.stop()
        relay.close()
        with crash_pg.connect() as conn:
            conn.execute("drop database if exists crash_big with (force)")


def stored_run(summary: dict[str, Any]) -> str:
    """The run folder a completed backup's items point at (``s3://bucket/instance-N/<run>/...``)."""
    [run] = {d["location"].split("/")[4] for d in summary["databases"] if d["location"]}
    return run


def _newest(svc: Service, instance_id: int, job_type: str) -> int | None:
    conn = sqlite3.connect(f"file:{svc.home / 'catalog.db'}?mode=ro", uri=True, timeout=30)
    try:
        row = conn.execute("select max(id) from jobs where instance_id = ? and job_type = ?",
                           (instance_id, job_type)).fetchone()
    finally:
        conn.close()
    return row[0] if row else None


def _tmpfs_wrapper(mountpoint: Path, inodes: int) -> list[str]:
    """Runs the service in a mount namespace of its own where ``mountpoint`` is a tmpfs with ``inodes``
    inodes: a disk that fills up when the backup creates one file more than that."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1)")
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace here: {probe.stderr.decode().strip()}")
    mountpoint.mkdir()
    script = f'mount -t tmpfs -o nr_inodes={inodes},size=64m,mode=0700 tmpfs "{mountpoint}" && exec "$@"'
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh"]


@pytest.mark.parametrize("where", ["local-disk-full", "bucket-full"])
def test_a_manifest_that_cannot_be_written_fails_the_job_and_keeps_nothing(crash_pg, s3, tmp_path, where):
    """Every database dumped, then the manifest cannot be written: the job is Failed, no item says
    Completed or points at a file (they were removed), and nothing is left in the destination."""
    with crash_pg.connect() as conn:
        databases = conn.execute("select count(*) from pg_database where datallowconn and not datistemplate"
                                 ).fetchone()[0]
    disk, relay, bucket, wrapper = tmp_path / "full", None, "", None
    if where == "local-disk-full":
        # the root, instance-<id>/, its backup folder, globals.sql, databases/ and one dump per database:
        # the manifest is one file too many.
        wrapper = _tmpfs_wrapper(disk, 5 + databases)
        destination = {"name": "disk", "path": str(disk)}
    else:
        bucket, relay = s3.new_bucket(), Relay(s3.url)
        relay.refuse = ("manifest.json", 507, "XMinioStorageFull")
        destination = {"name": "s3", "kind": "s3", **s3.config(bucket, endpoint=relay.endpoint), **s3.secret()}
    svc = Service(tmp_path / "home", wrapper=wrapper).start()
    api = svc.login()
    try:
        name = _plan(api, f"full-{where}", [destination])
        entity, job = register(api, crash_pg, f"full-{where}", plan=name)
        done = api.wait_job(job)
        assert done["status"] == "Failed", done
        assert "the manifest could not be written" in done["message"], done
        assert ("No space left on device" if relay is None else "the storage is full") in done["message"], done
        _agree(done)
        assert len(done["databases"]) == databases
        for item in [*done["databases"], done["globals"]]:
            assert item["status"] == "Failed" and item["error"].startswith("not kept: the backup ended Failed")
        if relay is None:
            assert svc.proc is not None  # its view of the tmpfs: the test's own namespace has none
            seen = Path(f"/proc/{svc.proc.pid}/root") / str(disk).lstrip("/")
            assert _folders(seen, entity["instanceId"]) == []
        else:
            assert relay.refused and _objects(s3, bucket) == [] and _uploads(s3, bucket) == []
    finally:
        api.close()
        svc.stop()
        if relay is not None:
            relay.close()


def test_a_node_killed_during_a_restore(crash_pg, tmp_path):
    """Killed while pg_restore loads a scratch database: back at once, the restore runs again (dropping the
    first run's scratch database) and completes; no scratch database and no password file is left."""
    recreate_database(crash_pg, "rt_crash")
    with crash_pg.connect("rt_crash") as conn:
        conn.execute("""create function gate(x int) returns boolean language plpgsql as $$
            begin
              if current_database() like 'pgvault_restore_%' then perform pg_sleep(0.1); end if;
              return true;
            end $$""")
        conn.execute("create table slow (id int primary key check (gate(id)))")
        conn.execute("insert into slow select generate_series(1, 40)")
    svc = Service(tmp_path / "home").start()
    api = svc.login()
    try:
        entity, backup = register(api, crash_pg, "rt-crash")
        assert api.wait_job(backup)["status"] == "Completed"
        job = restore(api, restore_body(entity, ["/rt_crash"], renameDatabases={"rt_crash": "rt_crash_copy"}))

        def scratch() -> list[str]:
            with crash_pg.connect() as conn:
                return [r[0] for r in conn.execute("select datname from pg_stat_activity where datname like "
                                                   "'pgvault_restore_%' and query like 'COPY%'")]

        [loading] = _wait(scratch, "pg_restore loading a scratch database")
        assert loading == f"pgvault_restore_{job}_1_0"
        first = _row(svc, job)
        assert _restart(svc, "restore") < FAST
        _reclaimed(_row(svc, job), first)
        done = api.wait_job(job)
        assert done["status"] == "Completed", done
        _agree(done)
        assert _row(svc, job)["attempts"] == 2
        assert fingerprint(crash_pg, "rt_crash_copy") == fingerprint(crash_pg, "rt_crash")
        with crash_pg.connect() as conn:
            left = conn.execute("select datname from pg_database where datname like 'pgvault_restore_%'").fetchall()
        assert left == []
        assert not _passfiles(svc.home)
    finally:
        api.close()
        svc.stop()
        with crash_pg.connect() as conn:
            for db in ("rt_crash", "rt_crash_copy"):
                conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(db)))


def test_a_killed_job_takes_its_password_file_with_it(crash_pg, tmp_path):
    """Killing a job (not the process) stops pg_dump and removes the libpq password file at once."""
    svc = Service(tmp_path / "home").start()
    api = svc.login()
    try:
        with _locked(crash_pg, "crash_kill"):
            _, job = register(api, crash_pg, "kill")
            _wait(lambda: _dump_waiting(crash_pg, "crash_kill"), "pg_dump waiting for the lock")
            [folder] = _passfiles(svc.home)
            assert (folder / "pgpass").exists()
            assert api.post(f"/Job/{job}/action/kill").status_code == 200
            done = api.wait_job(job, timeout=30)
            assert done["status"] == "Killed", done
            _agree(done)
            assert not folder.exists() and not _passfiles(svc.home)
    finally:
        api.close()
        svc.stop()


def test_two_nodes_on_one_catalog_never_take_each_others_jobs(crash_pg, tmp_path):
    """Two nodes share a PostgreSQL catalog. A is killed mid-dump; B, started after, leaves A's job to A's
    lease; A, back, takes it back at once."""
    with crash_pg.connect() as conn:
        conn.execute("drop database if exists crash_catalog with (force)")
        conn.execute("create database crash_catalog")
    url = f"postgresql://postgres:{crash_pg.password}@127.0.0.1:{crash_pg.port}/crash_catalog"
    a = Service(tmp_path / "a", PGVAULT_CATALOG_URL=url, PGVAULT_NODE_NAME="node-a").start()
    b = Service(tmp_path / "b", PGVAULT_CATALOG_URL=url, PGVAULT_NODE_NAME="node-b")
    api = a.login()
    try:
        with _locked(crash_pg, "crash_shared"):
            _, job = register(api, crash_pg, "shared")
            _wait(lambda: _dump_waiting(crash_pg, "crash_shared"), "pg_dump waiting for the lock")
            first = _row(a, job, url)
            assert first["lease_owner"].startswith("node-a:")
            a.kill()
            b.start()
            time.sleep(2)  # a heartbeat of B
            assert _row(b, job, url) == first  # still A's, until its lease runs out or A comes back
            killed = time.monotonic()
            a.start()
            print(f"\n[crash matrix] two nodes: A reclaimed {time.monotonic() - killed:.1f} s after its restart")
            _reclaimed(_row(a, job, url), first)
    finally:
        api.close()
        a.stop()
        b.stop()
        with crash_pg.connect() as conn:
            conn.execute("drop database if exists crash_catalog with (force)")
