"""Restores, judged by comparing data table by table: in place, out of place, renamed, table level,
managed (non-superuser) targets, by time, a corrupted file, and a kill midway; and verification."""

from __future__ import annotations

import os
import time

import pytest
from psycopg import sql
from tests.support.data import fill, fingerprint, recreate_database, stored_path
from tests.support.flows import backup_now, register, restore, restore_body


def _drop(server, *names):
    with server.connect() as conn:
        for name in names:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def source(pg, service):
    """An instance on `pg` with one filled database, backed up once."""
    recreate_database(pg, "rt_app")
    fill(pg, "rt_app", rows=300)
    api = service.login()
    entity, job_id = register(api, pg, "rt-source")
    done = api.wait_job(job_id)
    assert done["status"] == "Completed", done
    original = fingerprint(pg, "rt_app")
    yield {"entity": entity, "job": job_id, "original": original}
    api.delete(f"/Instance/{entity['instanceId']}")
    api.close()
    _drop(pg, "rt_app", "rt_app_restored")


@pytest.fixture(scope="module")
def target_instance(pg_target, service):
    api = service.login()
    entity, job_id = register(api, pg_target, "rt-target")
    api.wait_job(job_id)
    yield entity
    api.delete(f"/Instance/{entity['instanceId']}")
    api.close()


def test_in_place_refuses_without_overwrite_and_replaces_with_it(api, pg, source):
    with pg.connect("rt_app") as conn:
        conn.execute("delete from sales.orders where id % 2 = 0")
    damaged = fingerprint(pg, "rt_app")
    assert damaged != source["original"]

    refused = api.wait_job(restore(api, restore_body(source["entity"], ["/rt_app"])))
    assert refused["status"] == "Failed"
    assert "exists" in refused["message"] and "unconditionalOverwrite" in refused["message"]
    assert fingerprint(pg, "rt_app") == damaged  # untouched

    done = api.wait_job(restore(api, restore_body(source["entity"], ["/rt_app"], overwrite=True)))
    assert done["status"] == "Completed", done
    assert done["jobType"] == "Restore" and done["percentComplete"] == 100
    assert done["databases"][0]["name"] == "rt_app" and done["databases"][0]["status"] == "Completed"
    assert fingerprint(pg, "rt_app") == source["original"]
    with pg.connect() as conn:
        assert not conn.execute("select 1 from pg_database where datname like 'pgvault_restore_%'").fetchall()


def test_out_of_place_to_another_instance(api, pg_target, source, target_instance):
    _drop(pg_target, "rt_app")
    dest = {"clientName": "default", "instanceName": target_instance["instanceName"]}
    done = api.wait_job(restore(api, restore_body(source["entity"], ["/rt_app"], dest=dest)))
    assert done["status"] == "Completed", done
    assert fingerprint(pg_target, "rt_app") == source["original"]
    _drop(pg_target, "rt_app")


def test_under_a_new_name(api, pg, source):
    _drop(pg, "rt_app_restored")
    body = restore_body(source["entity"], ["/rt_app"], renameDatabases={"rt_app": "rt_app_restored"})
    done = api.wait_job(restore(api, body))
    assert done["status"] == "Completed", done
    assert done["databases"][0]["target"] == "rt_app_restored"
    assert fingerprint(pg, "rt_app_restored") == source["original"]


def test_table_level(api, pg, source):
    with pg.connect("rt_app") as conn:
        conn.execute("drop table sales.orders cascade")
        conn.execute("""update "Odd Schema"."Mixed Case" set "välue" = 'changed'""")
    body = restore_body(source["entity"], ["/rt_app/sales/orders"], table_level=True)
    done = api.wait_job(restore(api, body))
    assert done["status"] == "Completed", done
    restored = fingerprint(pg, "rt_app")
    assert restored["sales.orders"] == source["original"]["sales.orders"]
    with pg.connect("rt_app") as conn:  # the primary key and the foreign key came back with it
        kinds = {r[0] for r in conn.execute(
            "select contype from pg_constraint where conrelid = 'sales.orders'::regclass")}
        assert {"p", "f"} <= kinds
        assert conn.execute("select last_value from sales.orders_id_seq").fetchone()[0] == 600

    # an existing table is replaced only with overwrite; names with spaces and non-ASCII work
    existing = restore_body(source["entity"], ['/rt_app/Odd Schema/Mixed Case'], table_level=True)
    refused = api.wait_job(restore(api, existing))
    assert refused["status"] == "Failed" and "exists" in refused["message"]
    existing = restore_body(source["entity"], ['/rt_app/Odd Schema/Mixed Case'], table_level=True, overwrite=True)
    done = api.wait_job(restore(api, existing))
    assert done["status"] == "Completed", done
    assert fingerprint(pg, "rt_app") == source["original"]


def test_refusals_up_front(api, source):
    e = source["entity"]
    cases = [
        (restore_body(e, ["/no_such_db"]), 400, "not in the restore point"),
        (restore_body(e, ["/rt_app/public"]), 400, "is not /database"),
        (restore_body(e, ["/rt_app"], table_level=True), 400, "table-level"),
        (restore_body(e, ["/rt_app/sales/orders"]), 400, "tableLevelRestore"),
        (restore_body(e, ["/rt_app"], dest={"clientName": "default", "instanceName": "nope"}), 404, "nope"),
        (restore_body(e, ["/rt_app"], job_id="999999"), 404, "no restore point"),
        (restore_body(e, ["/rt_app"], ref_time="2001-01-01 00:00:00"), 404, "no restore point"),
        (restore_body(e, ["/rt_app"], ref_time="yesterday"), 400, "not a time"),
        (restore_body(e, ["/rt_app"], renameDatabases={"other": "x"}), 400, "renameDatabases"),
    ]
    for body, status, words in cases:
        r = api.post("/CreateTask", json=body)
        assert r.status_code == status, (body, r.text)
        assert words in r.json()["errorMessage"], r.json()
    backup_task = restore_body(e, ["/rt_app"])
    backup_task["taskInfo"]["subTasks"][0]["subTask"] = {"subTaskType": 2, "operationType": 2}
    r = api.post("/CreateTask", json=backup_task)
    assert r.status_code == 400 and "only restore tasks" in r.json()["errorMessage"]


def test_restore_point_chosen_by_time_and_by_job(api, pg, source):
    entity = source["entity"]
    with pg.connect("rt_app") as conn:
        conn.execute("insert into public.customers (name) values ('added later')")
    later_state = fingerprint(pg, "rt_app")
    time.sleep(1.1)  # the restore points' times are in whole seconds
    second = api.wait_job(backup_now(api, entity["subclientId"]))
    assert second["status"] == "Completed"
    first = api.job(source["job"])
    # A time means its whole second. The first's end (in whole seconds, rounded down) is a second that
    # holds or follows the first's snapshot (taken after its start, perhaps in a later second than the
    # start) and ends before the second's, taken at least 1.1 s after the first ended.
    between = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(first["jobEndTime"]))

    _drop(pg, "rt_app_restored")
    body = restore_body(entity, ["/rt_app"], ref_time=between, renameDatabases={"rt_app": "rt_app_restored"})
    assert api.wait_job(restore(api, body))["status"] == "Completed"
    assert fingerprint(pg, "rt_app_restored") == source["original"]

    _drop(pg, "rt_app_restored")
    body = restore_body(entity, ["/rt_app"], job_id=str(second["jobId"]), renameDatabases={"rt_app": "rt_app_restored"})
    assert api.wait_job(restore(api, body))["status"] == "Completed"
    assert fingerprint(pg, "rt_app_restored") == later_state

    listed = api.get("/RestorePoints", params={"instanceId": entity["instanceId"], "database": "rt_app"}).json()
    jobs = [p["jobId"] for p in listed["restorePoints"]]
    assert jobs[:2] == [second["jobId"], int(source["job"])]  # newest first
    page = api.get("/RestorePoints", params={"instanceId": entity["instanceId"], "limit": 1, "offset": 1}).json()
    assert page["totalRecords"] == listed["totalRecords"] and len(page["restorePoints"]) == 1
    with pg.connect("rt_app") as conn:
        conn.execute("delete from public.customers where name = 'added later'")


def test_browse_and_restore_point_detail(api, source):
    e = source["entity"]
    r = api.post("/DoBrowse", json={"entity": {"instanceId": e["instanceId"], "clientId": e["clientId"]},
                                    "paths": [{"path": "/"}], "timeRange": {}})
    assert r.status_code == 200, r.text
    rows = r.json()["browseResponses"][0]["browseResult"]["dataResultSet"]
    assert "rt_app" in [row["name"] for row in rows]
    assert all(row["flags"]["directory"] and row["path"] == "/" + row["name"] for row in rows)
    point_id = next(row for row in rows if row["name"] == "rt_app")["advancedData"]["restorePointId"]
    detail = api.get(f"/RestorePoints/{point_id}").json()
    files = {f["database"]: f for f in detail["files"]}
    assert len(files["rt_app"]["sha256"]) == 64 and files["rt_app"]["bytes"] > 0
    assert files["rt_app"]["format"] == "custom+zstd"
    assert detail["serverVersion"].startswith("18")


def test_corrupted_file_is_refused_and_reported(api, pg, service, tmp_path):
    recreate_database(pg, "rt_corrupt")
    fill(pg, "rt_corrupt", rows=50)
    try:
        entity, job_id = register(api, pg, "rt-corrupt")
        done = api.wait_job(job_id)
        item = next(d for d in done["databases"] if d["name"] == "rt_corrupt")
        path = stored_path(item["location"])
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
        before = fingerprint(pg, "rt_corrupt")

        failed = api.wait_job(restore(api, restore_body(entity, ["/rt_corrupt"], overwrite=True)))
        assert failed["status"] == "Failed"
        assert path.name in failed["message"] and "sha256 mismatch" in failed["message"]
        assert "nothing on the target was touched" in failed["message"]
        assert fingerprint(pg, "rt_corrupt") == before

        points = api.get("/RestorePoints", params={"instanceId": entity["instanceId"]}).json()["restorePoints"]
        r = api.post(f"/RestorePoints/{points[0]['restorePointId']}/action/verify", json={})
        verify = api.wait_job(r.json()["jobIds"][0])
        assert verify["status"] == "Failed" and path.name in verify["message"]
        bad = [f for f in verify["files"] if f["status"] == "Failed"]
        assert [f["name"] for f in bad] == [path.name]
        detail = api.get(f"/RestorePoints/{points[0]['restorePointId']}").json()
        assert detail["verification"]["status"] == "Failed"
        api.delete(f"/Instance/{entity['instanceId']}")
    finally:
        _drop(pg, "rt_corrupt")


def test_verification_and_drills(api, pg, pg_target, source, target_instance):
    points = api.get("/RestorePoints", params={"instanceId": source["entity"]["instanceId"]}).json()
    point_id = points["restorePoints"][-1]["restorePointId"]
    cheap = api.wait_job(api.post(f"/RestorePoints/{point_id}/action/verify", json={}).json()["jobIds"][0])
    assert cheap["status"] == "Completed" and all(f["status"] == "Completed" for f in cheap["files"])

    on_throwaway = api.post(f"/RestorePoints/{point_id}/action/verify", json={"drill": True})
    drill = api.wait_job(on_throwaway.json()["jobIds"][0], timeout=180)
    assert drill["status"] == "Completed", drill
    detail = api.get(f"/RestorePoints/{point_id}").json()
    assert detail["drill"]["status"] == "Passed" and detail["drill"]["seconds"] > 0
    assert detail["verification"]["status"] == "Passed"

    on_instance = api.post(f"/RestorePoints/{point_id}/action/verify",
                           json={"drill": True, "targetInstanceId": target_instance["instanceId"]})
    drill = api.wait_job(on_instance.json()["jobIds"][0], timeout=180)
    assert drill["status"] == "Completed", drill
    with pg_target.connect() as conn:
        assert not conn.execute("select 1 from pg_database where datname like 'pgvault_drill_%'").fetchall()


def test_managed_target_reports_what_it_could_not_restore(api, pg, pg_target, source):
    """A non-superuser login on the target: an extension it may not create is reported per object, the
    rest is restored, and the job says Completed w/ one or more errors."""
    recreate_database(pg, "rt_ext")
    with pg.connect("rt_ext") as conn:
        conn.execute("create extension pg_buffercache")  # untrusted: needs a superuser
        conn.execute("create extension hstore")  # trusted: the database owner may create it
        conn.execute("create table kv (id int primary key, attrs hstore)")
        conn.execute("insert into kv select i, hstore('k', i::text) from generate_series(1, 100) i")
    with pg_target.connect() as conn:
        conn.execute("drop role if exists tenant")
        conn.execute("create role tenant login createdb password 'tenant-pw-1'")
    api_entity, job = register(api, pg, "rt-ext-source")
    try:
        assert api.wait_job(job)["status"] == "Completed"
        managed, mjob = register(api, pg_target, "rt-managed", user="tenant", password="tenant-pw-1")
        api.wait_job(mjob)
        dest = {"clientName": "default", "instanceName": managed["instanceName"]}
        done = api.wait_job(restore(api, restore_body(api_entity, ["/rt_ext"], dest=dest)))
        assert done["status"] == "Completed w/ one or more errors", done
        item = done["databases"][0]
        assert item["status"] == "Completed w/ one or more errors"
        objects = " ".join(d["object"] + " " + d["error"] for d in item["details"])
        assert "pg_buffercache" in objects and "hstore" not in objects
        assert fingerprint(pg_target, "rt_ext")["public.kv"] == fingerprint(pg, "rt_ext")["public.kv"]
        with pg_target.connect("rt_ext") as conn:
            assert conn.execute("select pg_get_userbyid(relowner) from pg_class where relname = 'kv'"
                                ).fetchone()[0] == "tenant"
        api.delete(f"/Instance/{managed['instanceId']}")
    finally:
        api.delete(f"/Instance/{api_entity['instanceId']}")
        _drop(pg, "rt_ext")
        _drop(pg_target, "rt_ext")
        with pg_target.connect() as conn:
            conn.execute("drop role if exists tenant")


def test_globals_on_request(api, pg, pg_target, source, target_instance):
    with pg.connect() as conn:
        conn.execute("drop role if exists rt_reporting")
        conn.execute("create role rt_reporting nologin")
    with pg_target.connect() as conn:
        conn.execute("drop role if exists rt_reporting")
    try:
        backup = api.wait_job(backup_now(api, source["entity"]["subclientId"]))
        _drop(pg_target, "rt_app")
        dest = {"clientName": "default", "instanceName": target_instance["instanceName"]}
        body = restore_body(source["entity"], ["/rt_app"], dest=dest, job_id=str(backup["jobId"]),
                            restoreGlobals=True)
        done = api.wait_job(restore(api, body))
        assert done["status"] == "Completed", done
        assert done["globals"]["status"] == "Completed"
        with pg_target.connect() as conn:
            assert conn.execute("select 1 from pg_roles where rolname = 'rt_reporting'").fetchone()
    finally:
        _drop(pg_target, "rt_app")
        for server in (pg, pg_target):
            with server.connect() as conn:
                conn.execute("drop role if exists rt_reporting")


def _children_of(pid: int) -> list[str]:
    """The command lines of the processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    found.append(f.read().replace(b"\0", b" ").decode(errors="replace"))
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return found


def test_kill_midway_leaves_no_half_restored_database(api, pg, source, service):
    """Rows of one table pass a CHECK that sleeps while it runs in a restore's scratch database, so the
    restore is reliably caught in the middle of loading data. Neither pg_restore nor the decompressor
    feeding it outlives the kill."""
    recreate_database(pg, "rt_slow")
    with pg.connect("rt_slow") as conn:
        conn.execute("""create function gate(x int) returns boolean language plpgsql as $$
            begin
              if current_database() like 'pgvault_restore_%' then perform pg_sleep(0.2); end if;
              return true;
            end $$""")
        conn.execute("create table slow (id int primary key check (gate(id)))")
        conn.execute("insert into slow select generate_series(1, 200)")
    entity, job = register(api, pg, "rt-slow")
    try:
        assert api.wait_job(job)["status"] == "Completed"
        body = restore_body(entity, ["/rt_slow"], renameDatabases={"rt_slow": "rt_slow_copy"})
        job_id = restore(api, body)
        deadline = time.monotonic() + 60
        while True:
            with pg.connect() as conn:
                loading = conn.execute("select count(*) from pg_stat_activity where datname like 'pgvault_restore_%' "
                                       "and query like 'COPY%'").fetchone()[0]
            if loading:
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert service.proc is not None
        assert any("pg_restore" in c for c in _children_of(service.proc.pid))
        assert api.post(f"/Job/{job_id}/action/kill").status_code == 200
        done = api.wait_job(job_id, timeout=60)
        assert done["status"] == "Killed", done
        left = [c for c in _children_of(service.proc.pid) if "pg_restore" in c or "-d" in c.split()]
        assert not left, left
        assert "scratch copies dropped" in done["message"]
        with pg.connect() as conn:
            names = {r[0] for r in conn.execute("select datname from pg_database")}
        assert "rt_slow_copy" not in names
        assert not any(n.startswith("pgvault_restore_") for n in names)
    finally:
        api.delete(f"/Instance/{entity['instanceId']}")
        _drop(pg, "rt_slow", "rt_slow_copy")


def test_restore_as_of_a_time_uses_each_databases_snapshot_time(api, pg, service, source):
    """In a long backup a database dumped late holds data from after the job started: a restore "as of T"
    must not take it when its snapshot is later than T."""
    import datetime as dt
    import json
    import sqlite3

    entity = source["entity"]
    later = api.wait_job(backup_now(api, entity["subclientId"]))
    assert later["status"] == "Completed"
    conn = sqlite3.connect(service.home / "catalog.db", timeout=30)
    try:
        sql_get = "select snapshot_times from restore_points where job_id = ?"
        (raw,) = conn.execute(sql_get, (later["jobId"],)).fetchone()
        times = json.loads(raw)
        assert set(times) >= {"rt_app", "postgres"}  # recorded per database
        times["rt_app"] = (dt.datetime.fromisoformat(times["rt_app"]) + dt.timedelta(hours=1)).isoformat()
        sql_set = "update restore_points set snapshot_times = ? where job_id = ?"
        conn.execute(sql_set, (json.dumps(times), later["jobId"]))
        conn.commit()
    finally:
        conn.close()
    as_of = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(later["jobStartTime"] + 5))
    body = restore_body(entity, ["/rt_app"], ref_time=as_of, renameDatabases={"rt_app": "rt_app_restored"})
    _drop(pg, "rt_app_restored")
    done = api.wait_job(restore(api, body))
    assert done["status"] == "Completed", done
    point = api.get(f"/RestorePoints/{done['restorePointId']}").json()
    assert point["jobId"] != later["jobId"]  # an earlier backup, whose rt_app snapshot is before T
    body = restore_body(entity, ["/postgres"], ref_time=as_of, renameDatabases={"postgres": "pg_copy_asof"})
    _drop(pg, "pg_copy_asof")
    done = api.wait_job(restore(api, body))
    assert api.get(f"/RestorePoints/{done['restorePointId']}").json()["jobId"] == later["jobId"]
    _drop(pg, "pg_copy_asof", "rt_app_restored")
