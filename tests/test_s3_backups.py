"""Backups and restores through a real S3 endpoint on loopback (moto's server mode), a destination
that stops answering, and the unfinished multipart uploads Data Aging aborts (and those it must not)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import time

from psycopg import sql
from tests.support.data import fill, fingerprint, recreate_database
from tests.support.flows import backup_now, register, restore, restore_body

LOG = logging.getLogger(__name__)


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


def _stranded(s3, bucket: str, key: str) -> str:
    """An unfinished multipart upload with one part, as a backup killed mid-upload leaves it."""
    client = s3.client()
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * (5 << 20))
    return upload_id


def _uploads(s3, bucket: str) -> set[str]:
    return {u["Key"] for u in s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])}


def _initiated_when_told(monkeypatch, told: dict[str, dt.datetime]) -> None:
    """Moto's ListMultipartUploads says every upload was initiated on 2010-11-10 (a constant in
    moto/s3/responses.py), which would make every upload look ancient: the uploads in ``told`` are
    reported with the time given there instead (the server is in this process)."""
    from moto.s3.responses import S3Response

    original = S3Response.list_multipart_uploads

    def listing(self):
        status, headers, body = original(self)
        text = body.decode() if isinstance(body, bytes) else body

        def one(m: re.Match) -> str:
            upload_id = re.search(r"<UploadId>([^<]+)</UploadId>", m.group(0))
            when = told.get(upload_id.group(1)) if upload_id else None
            if when is None:
                return m.group(0)
            stamp = when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            return re.sub(r"<Initiated>[^<]+</Initiated>", f"<Initiated>{stamp}</Initiated>", m.group(0))

        return status, headers, re.sub(r"<Upload>.*?</Upload>", one, text, flags=re.S)

    monkeypatch.setattr(S3Response, "list_multipart_uploads", listing)


def _aging_catalog(cat, sealer, config: dict, secret: dict, now: dt.datetime) -> tuple[int, int, int]:
    """An instance whose plan writes to one S3 destination, with a backup job that ended two hours ago
    (Failed: no restore point) and one still running under another node's lease; their ids."""
    from pgvault.catalog.models import Backupset, CloudAccount, Instance, Job, Plan, PlanDestination, Subclient
    from pgvault.services.destinations import seal_secret

    hour = dt.timedelta(hours=1)
    with cat.transaction(write=True) as s:
        dest = PlanDestination(name="s3", kind="s3", config=config, secret_sealed=seal_secret(sealer, secret))
        inst = Instance(cloud_account=CloudAccount(name="a", name_key="a"),
                        plan=Plan(name="p", name_key="p", destinations=[dest]),
                        name="i", name_key="i", host="h", port=1, maintenance_db="postgres", username="u",
                        password_sealed=b"x", declared_version="18", server_version="18", server_version_num=180000)
        sub = Subclient(instance=inst, backupset=Backupset(instance=inst))
        s.add(sub)
        s.flush()
        dead = Job(job_type="Backup", status="Failed", instance_id=inst.id, subclient_id=sub.id,
                   started_at=now - 3 * hour, ended_at=now - 2 * hour)
        live = Job(job_type="Backup", status="Running", instance_id=inst.id, subclient_id=sub.id,
                   started_at=now - 3 * hour, lease_owner="elsewhere:1", lease_expires_at=now + hour)
        s.add_all([dead, live])
        s.flush()
        return inst.id, dead.id, live.id


def test_data_aging_aborts_the_uploads_ended_runs_stranded_and_nothing_else(s3, tmp_path, monkeypatch):
    """A killed backup's multipart upload is no object, so only ListMultipartUploads finds it. Data Aging
    aborts one whose run folder the catalog proves dead (the job ended longer than the grace ago) and that
    was started longer than the grace ago; it leaves a live job's, a young one, and everything outside the
    destination's prefix or the instance's folder."""
    from pgvault.catalog.db import Catalog
    from pgvault.crypto import Sealer
    from pgvault.retention import backup_prefix
    from pgvault.services.aging import Aging

    bucket, sealer = s3.new_bucket(), Sealer(os.urandom(32))
    cat = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    cat.migrate()
    now, hour = dt.datetime.now(dt.UTC), dt.timedelta(hours=1)
    iid, dead_id, live_id = _aging_catalog(cat, sealer, s3.config(bucket, prefix="team"), s3.secret(), now)
    dead_run = backup_prefix(iid, dead_id, now - 2.5 * hour)
    live_run = backup_prefix(iid, live_id, now - 2.5 * hour)
    aborted = f"team/{dead_run}/databases/a.dump.zst"
    young = f"team/{dead_run}/databases/b.dump.zst"
    kept = {
        young,
        f"team/{live_run}/databases/c.dump.zst",  # a live job's run
        f"{dead_run}/databases/d.dump.zst",  # outside the destination's prefix
        f"other/team/{dead_run}/d.dump.zst",
        f"team/instance-{iid}/loose.dump.zst",  # in the instance's folder, but in no run's
        f"team/{backup_prefix(iid + 1, dead_id, now - 2.5 * hour)}/e.dump.zst",  # another instance's folder
    }
    ids = {key: _stranded(s3, bucket, key) for key in [aborted, *sorted(kept)]}
    _initiated_when_told(monkeypatch, {ids[young]: now - dt.timedelta(minutes=5)})

    report = Aging(cat, sealer, iid, LOG, grace_seconds=900).run()
    assert report.errors == [], report.errors
    assert report.uploads == [(dead_id, f"s3://{bucket}/{aborted}")]
    assert "1 unfinished uploads of ended backup runs aborted" in report.message
    assert _uploads(s3, bucket) == kept
    assert report.leftovers == [] and report.strays == []  # an upload makes no folder

    later = Aging(cat, sealer, iid, LOG, now=now + hour, grace_seconds=900).run()
    assert later.uploads == [(dead_id, f"s3://{bucket}/{young}")]  # its grace is over too
    assert _uploads(s3, bucket) == kept - {young}
    cat.dispose()


def test_keys_that_may_not_list_uploads_leave_them_to_the_lifecycle_rule(s3, tmp_path):
    """Keys that may write and delete objects but not list multipart uploads (a common least-privilege
    policy): Data Aging still ends Completed, saying which rights would let it abort them."""
    from pgvault.catalog.db import Catalog
    from pgvault.crypto import Sealer
    from pgvault.retention import backup_prefix
    from pgvault.services.aging import Aging

    iam, bucket, user = s3.client("iam"), s3.new_bucket(), f"no-uploads-{tmp_path.name}"[:60]
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="objects", PolicyDocument=json.dumps({"Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
                      {"Effect": "Deny", "Action": "s3:ListBucketMultipartUploads", "Resource": "*"}]}))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    sealer = Sealer(os.urandom(32))
    cat = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    cat.migrate()
    now = dt.datetime.now(dt.UTC)
    secret = {"accessKeyId": key["AccessKeyId"], "secretAccessKey": key["SecretAccessKey"]}
    iid, dead_id, _ = _aging_catalog(cat, sealer, s3.config(bucket, prefix="team"), secret, now)
    stranded = f"team/{backup_prefix(iid, dead_id, now - dt.timedelta(hours=2.5))}/databases/a.dump.zst"
    _stranded(s3, bucket, stranded)

    report = Aging(cat, sealer, iid, LOG, grace_seconds=900).run()
    assert report.errors == [] and report.uploads == []
    [notice] = report.notices
    assert "access denied" in notice and "s3:ListBucketMultipartUploads" in notice, notice
    assert key["SecretAccessKey"] not in notice
    assert _uploads(s3, bucket) == {stranded}
    cat.dispose()
