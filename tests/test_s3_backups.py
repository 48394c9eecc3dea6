"""Backups and restores through a real S3 endpoint on loopback (moto's server mode), and a destination
that stops answering."""

from __future__ import annotations

import time

from psycopg import sql
from tests.support.data import fill, fingerprint, recreate_database
from tests.support.flows import backup_now, register, restore, restore_body


def _objects(s3, bucket: str) -> list[str]:
    out = s3.client().list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in out.get("Contents", []))


def _drop(server, *names):
    with server.connect() as conn:
        for name in names:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def test_backup_and_restore_through_s3(api, service, pg, s3, tmp_path):
    bucket = s3.new_bucket()
    dest = {"name": "oss", "kind": "s3", **s3.config(bucket, prefix="team-a"), **s3.secret()}
    body = {"planName": f"s3-{tmp_path.name}", "destinations": [dest, {"name": "disk", "path": str(tmp_path)}]}
    r = api.post("/V2/Plan", json=body)
    assert r.status_code == 200, r.text
    plan = r.json()["plan"]
    assert s3.secret_access_key not in r.text
    assert plan["destinations"][0]["hasCredentials"] is True and plan["destinations"][0]["bucket"] == bucket

    recreate_database(pg, "s3_app")
    fill(pg, "s3_app", rows=200)
    try:
        entity, job = register(api, pg, f"s3-{tmp_path.name}", plan=f"s3-{tmp_path.name}")
        done = api.wait_job(job)
        assert done["status"] == "Completed", done
        item = next(d for d in done["databases"] if d["name"] == "s3_app")
        assert item["location"].startswith(f"s3://{bucket}/team-a/instance-")
        keys = _objects(s3, bucket)
        assert any(k.endswith("/manifest.json") for k in keys) and all(k.startswith("team-a/") for k in keys)
        assert (tmp_path / keys[0].removeprefix("team-a/")).exists()  # the local copy, byte for byte the same path

        _drop(pg, "s3_app_copy")
        restored = api.wait_job(restore(api, restore_body(entity, ["/s3_app"],
                                                          renameDatabases={"s3_app": "s3_app_copy"})))
        assert restored["status"] == "Completed", restored
        assert fingerprint(pg, "s3_app_copy") == fingerprint(pg, "s3_app")
        # a table restore and a drill read an archive twice, from one download (restore.archive.readable_twice)
        original = fingerprint(pg, "s3_app")
        with pg.connect("s3_app") as conn:
            conn.execute("drop table sales.orders cascade")
        tables = restore_body(entity, ["/s3_app/sales/orders"], table_level=True)
        assert api.wait_job(restore(api, tables))["status"] == "Completed"
        assert fingerprint(pg, "s3_app") == original
        point = api.get("/RestorePoints", params={"instanceId": entity["instanceId"]}).json()["restorePoints"][0]
        drill = api.post(f"/RestorePoints/{point['restorePointId']}/action/verify", json={"drill": True})
        assert drill.status_code == 200, drill.text
        drilled = api.wait_job(drill.json()["jobIds"][0])
        assert drilled["status"] == "Completed", drilled
        assert api.get(f"/RestorePoints/{point['restorePointId']}").json()["drill"]["status"] == "Passed"
        assert s3.secret_access_key not in service.log_text()
        gone = api.delete(f"/Instance/{entity['instanceId']}", params={"deleteBackups": "true"})
        assert gone.status_code == 200, gone.text
        assert api.wait_job(gone.json()["jobIds"][0])["status"] == "Completed"
        assert _objects(s3, bucket) == [], gone.text
    finally:
        _drop(pg, "s3_app", "s3_app_copy")


def test_a_destination_that_stops_answering(api, pg, s3, tmp_path):
    """The job fails cleanly and leaves nothing behind; the earlier restore point stays whole; and a plan
    pointing at an unreachable endpoint is refused when it is created."""
    from moto.server import ThreadedMotoServer

    bucket = s3.new_bucket()
    second = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    second.start()
    host, port = second.get_host_and_port()
    config = {**s3.config(bucket), "endpoint": f"http://{host}:{port}"}
    name = f"flaky-{tmp_path.name}"
    r = api.post("/V2/Plan", json={"planName": name, "destinations": [{"name": "s3", "kind": "s3", **config,
                                                                          **s3.secret()}]})
    assert r.status_code == 200, r.text
    entity, job = register(api, pg, name, plan=name)
    assert api.wait_job(job)["status"] == "Completed"
    before = _objects(s3, bucket)
    second.stop()
    try:
        failed = api.wait_job(backup_now(api, entity["subclientId"]), timeout=300)
        assert failed["status"] == "Failed", failed
        assert "cannot reach" in failed["message"] or "connect" in failed["message"].lower(), failed["message"]
        assert _objects(s3, bucket) == before  # nothing of the failed job, nothing of the earlier one lost

        refused = api.post("/V2/Plan", json={"planName": name + "-2", "destinations": [
            {"name": "s3", "kind": "s3", **config, **s3.secret()}]})
        assert refused.status_code == 400 and "cannot be written" in refused.json()["errorMessage"]
    finally:
        again = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        again.start()
        time.sleep(0.2)
    try:
        _drop(pg, "postgres_copy")
        done = api.wait_job(restore(api, restore_body(entity, ["/postgres"], job_id=str(job),
                                                      renameDatabases={"postgres": "postgres_copy"})))
        assert done["status"] == "Completed", done
        api.delete(f"/Instance/{entity['instanceId']}", params={"deleteBackups": "true"})
    finally:
        again.stop()
        _drop(pg, "postgres_copy")
