"""Plans through the API: create, read, change, delete; destinations each with their own retention."""

from __future__ import annotations

import time

import pytest
from tests.support.data import stored_path
from tests.support.flows import register


def test_create_read_update_delete(api, tmp_path):
    body = {
        "planName": "nightly-berlin",
        "schedule": {"cron": "30 2 * * *", "timeZone": "Europe/Berlin", "window": {"start": "22:00", "end": "06:00"}},
        "retention": {"days": 14, "keepMin": 5, "gfs": {"daily": 7, "weekly": 4, "monthly": 12}},
        "destinations": [{"name": "fast", "kind": "local", "path": str(tmp_path / "fast"), "retentionDays": 7},
                         {"name": "slow", "kind": "local", "path": str(tmp_path / "slow"), "retentionDays": 90}],
        "compressionLevel": 3,
        "drillEvery": 10,
    }
    r = api.post("/V2/Plan", json=body)
    assert r.status_code == 200, r.text
    plan = r.json()["plan"]
    pid = plan["summary"]["plan"]["planId"]
    got = api.get(f"/V2/Plan/{pid}").json()["plan"]
    assert got["schedule"] == {"cron": "30 2 * * *", "timeZone": "Europe/Berlin",
                               "window": {"start": "22:00", "end": "06:00"}}
    assert got["retention"] == {"days": 14, "keepMin": 5, "gfs": {"daily": 7, "weekly": 4, "monthly": 12}}
    assert [(d["name"], d["retentionDays"]) for d in got["destinations"]] == [("fast", 7), ("slow", 90)]
    assert got["compression"]["level"] == 3 and got["drillEvery"] == 10 and got["encryption"]["enabled"] is False

    r = api.put(f"/V2/Plan/{pid}", json={"retention": {"days": 30, "keepMin": 2}, "schedule": {"rpoMinutes": 240}})
    assert r.status_code == 200, r.text
    got = api.get(f"/V2/Plan/{pid}").json()["plan"]
    assert got["retention"]["days"] == 30 and got["retention"]["gfs"] == {"daily": 0, "weekly": 0, "monthly": 0}
    assert got["schedule"]["rpoMinutes"] == 240 and "cron" not in got["schedule"]
    assert [d["name"] for d in got["destinations"]] == ["fast", "slow"]  # untouched
    assert got["compression"]["level"] == 3

    assert api.delete(f"/V2/Plan/{pid}").status_code == 200
    assert api.get(f"/V2/Plan/{pid}").status_code == 404


@pytest.mark.parametrize("body", [
    {"planName": "x", "schedule": {"cron": "not a cron"}},
    {"planName": "x", "schedule": {"cron": "0 0 30 2 *"}},
    {"planName": "x", "schedule": {"cron": "*/5 * * * * 10"}},
    {"planName": "x", "schedule": {"cron": "0 2 * * *", "timeZone": "Mars/Olympus"}},
    {"planName": "x", "schedule": {"cron": "0 2 * * *", "rpoMinutes": 5}},
    {"planName": "x", "schedule": {}},
    {"planName": "x", "schedule": {"rpoMinutes": 60, "window": {"start": "25:00", "end": "06:00"}}},
    {"planName": "x", "destinations": []},
    {"planName": "x", "destinations": [{"kind": "local", "path": "relative/path"}]},
    {"planName": "x", "destinations": [{"kind": "s3", "region": "us-east-1"}]},
    {"planName": "x", "destinations": [{"kind": "s3", "bucket": "b", "region": "r", "accessKeyId": "only-one"}]},
    {"planName": "x", "destinations": [{"kind": "ftp", "path": "/x"}]},
    {"planName": "x", "destinations": [{"name": "a", "path": "/tmp/a"}, {"name": "A", "path": "/tmp/b"}]},
    {"planName": "x", "retention": {"days": 0}},
    {"planName": "x", "compressionLevel": 30},
    {"planName": "x", "encryption": "yes"},
    {"planName": ""},
])
def test_bad_plans_are_refused_and_create_nothing(api, body):
    before = api.get("/V2/Plan").json()["plans"]
    r = api.post("/V2/Plan", json=body)
    assert r.status_code == 400, (body, r.text)
    assert r.json()["errorCode"] != 0 and r.json()["errorMessage"]
    assert api.get("/V2/Plan").json()["plans"] == before


def test_an_unwritable_destination_is_refused(api, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    r = api.post("/V2/Plan", json={"planName": "blocked", "storage": {"path": str(blocker / "sub")}})
    assert r.status_code == 400 and "cannot be written" in r.json()["errorMessage"]


def test_a_plan_in_use_cannot_be_deleted(api, pg, tmp_path):
    assert api.post("/V2/Plan", json={"planName": "busy", "storage": {"path": str(tmp_path)}}).status_code == 200
    pid = next(p["plan"]["planId"] for p in api.get("/V2/Plan").json()["plans"] if p["plan"]["planName"] == "busy")
    entity, job = register(api, pg, "on-busy", plan="busy")
    api.wait_job(job)
    r = api.delete(f"/V2/Plan/{pid}")
    assert r.status_code == 409 and "on-busy" in r.json()["errorMessage"]
    default = next(p["plan"]["planId"] for p in api.get("/V2/Plan").json()["plans"]
                   if p["plan"]["planName"] == "default")
    assert api.delete(f"/V2/Plan/{default}").status_code == 409
    api.delete(f"/Instance/{entity['instanceId']}", params={"deleteBackups": "true"})


def test_a_backup_goes_to_every_destination(api, pg, tmp_path):
    body = {"planName": "two-places",
            "destinations": [{"name": "one", "path": str(tmp_path / "one")},
                             {"name": "two", "path": str(tmp_path / "two"), "retentionDays": 90}]}
    assert api.post("/V2/Plan", json=body).status_code == 200
    entity, job = register(api, pg, "twice", plan="two-places")
    done = api.wait_job(job)
    assert done["status"] == "Completed"
    first = stored_path(done["databases"][0]["location"])
    assert first.is_relative_to(tmp_path / "one")
    second = tmp_path / "two" / first.relative_to(tmp_path / "one")
    assert second.read_bytes() == first.read_bytes()
    point = api.get("/RestorePoints", params={"instanceId": entity["instanceId"]}).json()["restorePoints"][0]
    assert [(c["path"], c["retentionDays"]) for c in point["copies"]] == [
        (str(tmp_path / "one"), None), (str(tmp_path / "two"), 90)]
    r = api.delete(f"/Instance/{entity['instanceId']}", params={"deleteBackups": "true"})
    assert r.json()["response"]["restorePointsToDelete"] == 1
    done = api.wait_job(r.json()["jobIds"][0])
    assert done["status"] == "Completed" and "1 restore points gone" in done["message"], done
    assert not first.exists() and not second.exists()


def test_a_plan_can_ask_for_a_drill_after_every_nth_backup(api, pg, tmp_path):
    name = f"drilled-{tmp_path.name}"
    r = api.post("/V2/Plan", json={"planName": name, "storage": {"path": str(tmp_path)}, "drillEvery": 2})
    assert r.status_code == 200, r.text
    entity, job = register(api, pg, name, plan=name)
    assert api.wait_job(job)["status"] == "Completed"
    points = api.get("/RestorePoints", params={"instanceId": entity["instanceId"]}).json()["restorePoints"]
    assert points[0]["drill"]["status"] is None  # the first backup: no drill yet
    second = api.post(f"/Subclient/{entity['subclientId']}/action/backup")
    assert api.wait_job(second.json()["jobIds"][0])["status"] == "Completed"
    deadline = time.monotonic() + 180
    while True:
        latest = api.get("/RestorePoints", params={"instanceId": entity["instanceId"]}).json()["restorePoints"][0]
        if latest["drill"]["status"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert latest["drill"]["status"] == "Passed", latest
    assert latest["verification"]["status"] == "Passed" and latest["drill"]["seconds"] > 0
    api.delete(f"/Instance/{entity['instanceId']}", params={"deleteBackups": "true"})


def test_a_damaged_copy_gives_way_to_the_next(api, pg, tmp_path):
    from tests.support.data import fingerprint, recreate_database
    from tests.support.flows import restore, restore_body

    name = f"spare-{tmp_path.name}"
    body = {"planName": name, "destinations": [{"name": "one", "path": str(tmp_path / "one")},
                                               {"name": "two", "path": str(tmp_path / "two")}]}
    assert api.post("/V2/Plan", json=body).status_code == 200
    recreate_database(pg, "spare_db")
    with pg.connect("spare_db") as conn:
        conn.execute("create table t as select generate_series(1, 500) x")
    try:
        entity, job = register(api, pg, name, plan=name)
        done = api.wait_job(job)
        damaged = stored_path(next(d for d in done["databases"] if d["name"] == "spare_db")["location"])
        damaged.write_bytes(damaged.read_bytes()[:-10] + b"0123456789")
        body = restore_body(entity, ["/spare_db"], renameDatabases={"spare_db": "spare_copy"})
        restored = api.wait_job(restore(api, body))
        assert restored["status"] == "Completed", restored
        assert any("copies passed over" in w and "sha256 mismatch" in w for w in restored["warnings"]), restored
        assert fingerprint(pg, "spare_copy") == fingerprint(pg, "spare_db")
        api.delete(f"/Instance/{entity['instanceId']}", params={"deleteBackups": "true"})
    finally:
        with pg.connect() as conn:
            conn.execute("drop database if exists spare_db with (force)")
            conn.execute("drop database if exists spare_copy with (force)")
