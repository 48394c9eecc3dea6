"""Backups judged by their restore: every database of an instance, restored with pg_restore into a
fresh server and compared table by table; plus the ways a backup can partly fail or be stopped."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from psycopg import sql
from tests.support.data import AWKWARD_NAMES, fill, fingerprint, recreate_database, restore_dump, stored_path
from tests.support.flows import restore, restore_body
from tests.support.servers import system_pg_bin
from tests.support.service import Service, seed_body


def register(api, server, name, *, user="postgres", password=None, version="18"):
    body = seed_body(host="127.0.0.1", port=server.port, user=user, password=password or server.password,
                     name=name, version=version)
    r = api.post("/Instance", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    return out["response"]["entity"], out["processinginstructioninfo"]["attributes"][1]["value"]


def backup_now(api, subclient_id):
    r = api.post(f"/Subclient/{subclient_id}/action/backup", params={"backupLevel": "full"})
    assert r.status_code == 200, r.text
    return r.json()["jobIds"][0]


@pytest.fixture(scope="module")
def awkward(pg):
    for name in AWKWARD_NAMES:
        recreate_database(pg, name)
        fill(pg, name)
    with pg.connect() as conn:
        conn.execute("drop role if exists report_reader")
        conn.execute("create role report_reader login password 'reader-secret-0'")
    yield AWKWARD_NAMES
    with pg.connect() as conn:
        for name in AWKWARD_NAMES:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def test_every_database_restores_identically(api, pg, pg_target, awkward):
    entity, job_id = register(api, pg, "awkward")
    done = api.wait_job(job_id)
    assert done["status"] == "Completed", done
    by_name = {d["name"]: d for d in done["databases"]}
    assert set(awkward) <= set(by_name)

    for i, name in enumerate(awkward):
        item = by_name[name]
        assert item["status"] == "Completed" and item["error"] is None
        restore_dump(item["location"], pg_target, f"restored_{i}")
        original, restored = fingerprint(pg, name), fingerprint(pg_target, f"restored_{i}")
        assert restored == original, name
        assert any(k.startswith("lo:") for k in original)
        assert original["sales.orders"][0] == 1000

    globals_sql = stored_path(done["globals"]["location"]).read_text()
    assert "report_reader" in globals_sql
    assert "reader-secret-0" not in globals_sql and "SCRAM-SHA-256$" not in globals_sql

    manifest_path = stored_path(by_name[awkward[0]]["location"]).parents[1] / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["job_id"] == int(job_id)
    assert manifest["server_version"].startswith("18") and manifest["pg_dump_version"].startswith("18")
    stored = {d["name"]: d["file"] for d in manifest["databases"]}
    for name in awkward:
        assert stored[name]["sha256"] == by_name[name]["sha256"]
        assert stored[name]["bytes"] == stored_path(by_name[name]["location"]).stat().st_size
    api.delete(f"/Instance/{entity['instanceId']}")


def test_new_databases_are_discovered_and_dropped_ones_disappear(api, pg):
    entity, job_id = register(api, pg, "discovery")
    first = api.wait_job(job_id)
    assert "late_comer" not in {d["name"] for d in first["databases"]}
    recreate_database(pg, "late_comer")
    try:
        second = api.wait_job(backup_now(api, entity["subclientId"]))
        assert second["status"] == "Completed"
        assert "late_comer" in {d["name"] for d in second["databases"]}
    finally:
        with pg.connect() as conn:
            conn.execute("drop database late_comer")
    third = api.wait_job(backup_now(api, entity["subclientId"]))
    assert third["status"] == "Completed"
    assert "late_comer" not in {d["name"] for d in third["databases"]}
    api.delete(f"/Instance/{entity['instanceId']}")


def test_one_failing_database_does_not_lose_the_others(api, pg):
    """A login without SELECT on one table: that database fails, the others are kept, and the job says
    which and why. A database the login may not connect to is skipped, and listed."""
    recreate_database(pg, "has_secret")
    recreate_database(pg, "no_entry")
    with pg.connect() as conn:
        conn.execute("drop role if exists limited")
        conn.execute("create role limited login password 'limited-pw-1'")
        conn.execute("revoke connect on database no_entry from public")
    with pg.connect("has_secret") as conn:
        conn.execute("create table hidden (x int)")
        conn.execute("revoke all on hidden from public")
    try:
        entity, job_id = register(api, pg, "partial", user="limited", password="limited-pw-1")
        done = api.wait_job(job_id)
        assert done["status"] == "Completed w/ one or more errors", done
        by_name = {d["name"]: d for d in done["databases"]}
        assert by_name["has_secret"]["status"] == "Failed"
        assert "permission denied" in by_name["has_secret"]["error"]
        assert by_name["no_entry"]["status"] == "Skipped"
        assert by_name["postgres"]["status"] == "Completed" and by_name["postgres"]["bytes"] > 0
        assert "has_secret" in done["message"]
        api.delete(f"/Instance/{entity['instanceId']}")
    finally:
        with pg.connect() as conn:
            conn.execute("drop database has_secret")
            conn.execute("drop database no_entry")
            conn.execute("drop role limited")


def test_kill_stops_pg_dump_and_removes_partial_files(api, pg):
    recreate_database(pg, "locked_db")
    with pg.connect("locked_db") as conn:
        conn.execute("create table t as select generate_series(1, 1000) x")
    holder = pg.connect("locked_db")
    try:
        holder.execute("begin")
        holder.execute("lock table t in access exclusive mode")  # pg_dump will wait for this lock
        entity, job_id = register(api, pg, "to-kill")
        deadline = time.monotonic() + 60
        while True:
            summary = api.job(job_id)
            locked = [d for d in summary["databases"] if d["name"] == "locked_db"]
            if locked and locked[0]["status"] == "Running" and _pg_dump_waiting(pg):
                break
            assert time.monotonic() < deadline, summary
            time.sleep(0.2)
        r = api.post(f"/Job/{job_id}/action/kill")
        assert r.status_code == 200, r.text
        done = api.wait_job(job_id, timeout=30)
        assert done["status"] == "Killed", done
        gone = time.monotonic() + 5  # the backend notices its client is gone within moments
        while _pg_dump_waiting(pg):
            assert time.monotonic() < gone, "pg_dump still connected after the kill"
            time.sleep(0.1)
        for d in done["databases"]:
            if d["location"]:
                assert not stored_path(d["location"]).exists(), d
                assert not stored_path(d["location"]).parents[1].exists()
        assert api.post(f"/Job/{job_id}/action/kill").status_code == 400  # already finished
        api.delete(f"/Instance/{entity['instanceId']}")
    finally:
        holder.execute("rollback")
        holder.close()
        with pg.connect() as conn:
            conn.execute("drop database locked_db with (force)")


def _pg_dump_waiting(pg) -> bool:
    with pg.connect() as conn:
        return bool(conn.execute("select count(*) from pg_stat_activity where datname = 'locked_db' "
                                 "and application_name = 'pgvault'").fetchone()[0])


@pytest.mark.skipif(system_pg_bin() is None, reason="needs an older PostgreSQL's pg_dump (scripts/test-deps.sh)")
def test_server_newer_than_pg_dump_fails_with_what_to_install(pg, tmp_path):
    svc = Service(tmp_path / "home", PGVAULT_PG_BIN=str(system_pg_bin())).start()
    api = svc.login()
    try:
        _, job_id = register(api, pg, "too-new")
        done = api.wait_job(job_id)
        assert done["status"] == "Failed"
        assert "install PostgreSQL 18 client tools" in done["message"], done["message"]
    finally:
        api.close()
        svc.stop()


def test_unreachable_at_backup_time_fails_cleanly(api, pg, tmp_path):
    """The server went away between registration and the job: the job fails with the reason."""
    from pgvault.pgtools.localserver import LocalServer

    with LocalServer(tmp_path / "short-lived") as short:
        entity, job_id = register(api, short, "short-lived")
        api.wait_job(job_id)
    second = api.wait_job(backup_now(api, entity["subclientId"]))
    assert second["status"] == "Failed"
    assert "Connection" in second["message"] and "refused" in second["message"]
    api.delete(f"/Instance/{entity['instanceId']}")


def test_on_demand_backup_refusals(api):
    assert api.post("/Subclient/999999/action/backup").status_code == 404
    r = api.post("/Subclient/1/action/backup", params={"backupLevel": "weekly"})
    assert r.status_code in (400, 404)
    assert r.json()["errorCode"] != 0


def test_restore_point_only_with_manifest(api, pg, service):
    """Exactly one restore point per completed backup; none for a failed one."""
    import sqlite3

    entity, job_id = register(api, pg, "rp-check")
    assert api.wait_job(job_id)["status"] == "Completed"
    conn = sqlite3.connect(f"file:{service.home / 'catalog.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute("select prefix, manifest_sha256, database_count from restore_points where job_id = ?",
                            (int(job_id),)).fetchall()
    finally:
        conn.close()
    assert len(rows) == 1
    prefix, sha, count = rows[0]
    manifest = service.home / "backups" / prefix / "manifest.json"
    import hashlib

    assert hashlib.sha256(manifest.read_bytes()).hexdigest() == sha
    assert count == len(json.loads(manifest.read_text())["databases"])
    api.delete(f"/Instance/{entity['instanceId']}")



@pytest.mark.parametrize("compressor", ["builtin", "zstd"])
def test_each_compressor_makes_files_that_restore(pg, pg_target, tmp_path, compressor):
    """The zstd program and pgvault's own compressor (backup/compressor.py) both sit between pg_dump and
    pgvault, and both decompress between pgvault and pg_restore; either one's files restore to the same
    data, by hand and by a restore job (which then runs the same one as its decompressor)."""
    if compressor == "zstd" and shutil.which("zstd") is None:
        pytest.skip("no zstd program on PATH (scripts/test-deps.sh installs it when root)")
    name = f"cmp_{compressor}"
    recreate_database(pg, name)
    fill(pg, name, rows=300)
    svc = Service(tmp_path / "home", PGVAULT_COMPRESSOR=compressor).start()
    api = svc.login()
    try:
        entity, job_id = register(api, pg, name)
        done = api.wait_job(job_id)
        assert done["status"] == "Completed", done
        item = next(d for d in done["databases"] if d["name"] == name)
        restore_dump(item["location"], pg_target, f"{name}_restored")
        assert fingerprint(pg_target, f"{name}_restored") == fingerprint(pg, name)
        body = restore_body(entity, [f"/{name}"], renameDatabases={name: f"{name}_job"})
        restored = api.wait_job(restore(api, body))
        assert restored["status"] == "Completed", restored
        assert fingerprint(pg, f"{name}_job") == fingerprint(pg, name)
    finally:
        api.close()
        svc.stop()
        with pg.connect() as conn:
            for db in (name, f"{name}_job"):
                conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(db)))


def test_a_missing_zstd_program_fails_the_job_with_the_reason(pg, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    svc = Service(tmp_path / "home", PGVAULT_COMPRESSOR="zstd", PATH=str(empty)).start()
    api = svc.login()
    try:
        _, job_id = register(api, pg, "no-zstd")
        done = api.wait_job(job_id)
        assert done["status"] == "Failed", done
        assert "PGVAULT_COMPRESSOR=zstd, but there is no zstd program on PATH" in done["message"]
    finally:
        api.close()
        svc.stop()
