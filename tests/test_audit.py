"""The audit trail (docs/api.md, "Audit trail"): every action recorded once, with its user, address, route,
resource and outcome, through the API and through the `pgvault` command, against a real `pgvault serve`;
no route left out (enumerated from the application's own route table); never a secret; kept for
PGVAULT_AUDIT_RETENTION_DAYS."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest
from tests.support.flows import backup_now, register, restore, restore_body
from tests.support.service import BASE, Service, b64

from pgvault.api.audit import NOT_AUDITED, resource_of

CREDENTIAL_PASSWORD = "cred-Secret-4711"
HOOK_SECRET = "hook-Secret-0815"


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    service = Service(tmp_path_factory.mktemp("audit") / "home").start()
    yield service
    service.stop()


def trail(api, **params) -> list[dict]:
    r = api.get("/AuditTrail", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    return r.json()["auditTrail"]


def one(records: list[dict], route: str, resource_id: str | None = None) -> dict:
    found = [r for r in records if r["route"] == route and (resource_id is None or r["resourceId"] == resource_id)]
    assert len(found) == 1, (route, resource_id, found)
    return found[0]


def cli(config: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None):
    full = {k: v for k, v in os.environ.items() if k not in ("PGVAULT_URL", "PGVAULT_TOKEN")}
    full.update({"XDG_CONFIG_HOME": str(config), **(env or {})})
    return subprocess.run([sys.executable, "-m", "pgvault.cli", *args], input=stdin, env=full,
                          capture_output=True, text=True, timeout=300)


def test_every_action_is_recorded_once_with_its_user(svc, pg, tmp_path):
    api = svc.login()
    anon = svc.client()
    assert anon.post("/Login", json={"username": "admin", "password": b64("not-it")}).status_code == 401
    assert anon.post("/Login", json={"username": "nobody", "password": b64("x")}).status_code == 401

    r = api.post("/V2/Plan", json={"planName": "audit-gold", "storage": {"path": str(tmp_path / "gold")}})
    assert r.status_code == 200, r.text
    plan_id = str(r.json()["plan"]["summary"]["plan"]["planId"])
    assert api.put(f"/V2/Plan/{plan_id}", json={"retention": {"days": 30}}).status_code == 200

    entity, first = register(api, pg, "audit-src")
    iid, sub = str(entity["instanceId"]), entity["subclientId"]
    assert api.wait_job(first)["status"] == "Completed"
    moved = api.post(f"/Instance/{iid}", json={"instanceProperties": {"planEntity": {"planName": "audit-gold"}}})
    assert moved.status_code == 200, moved.text
    backup = backup_now(api, sub)
    assert api.wait_job(backup)["status"] == "Completed"
    assert api.post(f"/Job/{backup}/action/kill").status_code in (200, 400)  # ended: refused, still recorded
    with pg.connect() as conn:
        conn.execute("drop database if exists audit_restored with (force)")
    restored = restore(api, restore_body(entity, ["/postgres"], renameDatabases={"postgres": "audit_restored"}))
    api.wait_job(restored)
    point = api.get("/RestorePoints", params={"instanceId": iid}).json()["restorePoints"][0]["restorePointId"]
    verify = api.post(f"/RestorePoints/{point}/action/verify", json={})
    assert verify.status_code == 200
    api.wait_job(verify.json()["jobIds"][0])

    target = api.post("/NotificationTarget", json={"name": "audit-hook",
                                                   "url": f"json://u:{HOOK_SECRET}@127.0.0.1:9/x"})
    assert target.status_code == 200, target.text
    tid = str(target.json()["id"])
    assert api.put(f"/NotificationTarget/{tid}", json={"enabled": False}).status_code == 200
    assert api.delete(f"/NotificationTarget/{tid}").status_code == 200
    cred = api.post("/V4/Credential", json={"name": "audit-cred", "username": "u",
                                            "password": b64(CREDENTIAL_PASSWORD)})
    assert cred.status_code == 200, cred.text
    gone = api.post("/CommCell/Credentials/action/delete",
                    json={"credentialRecordInfo": [{"credentialRecord": {"credentialName": "audit-cred"}}]})
    assert gone.status_code == 200

    rotated = subprocess.run([sys.executable, "-m", "pgvault.cli", "keys", "rotate"], capture_output=True, text=True,
                             env={**os.environ, "PGVAULT_HOME": str(svc.home)}, timeout=120)
    assert rotated.returncode == 0, rotated.stderr
    assert api.delete(f"/Instance/{iid}").status_code == 200
    plan_gone = api.delete(f"/V2/Plan/{plan_id}")  # refused (409): its restore points keep it
    assert plan_gone.status_code in (200, 409)
    other = svc.login()
    assert other.post("/Logout").status_code == 200

    # reads, including the ones Command Center asks with a POST, are not actions
    assert api.post("/Jobs", json={}).status_code == 200
    assert api.post("/WhoAmI").status_code == 200

    records = trail(api)
    admin = {"userId": 1, "userName": "admin"}
    for route, rid in [
        ("POST /V2/Plan", plan_id), ("PUT /V2/Plan/{plan_id}", plan_id), ("DELETE /V2/Plan/{plan_id}", plan_id),
        ("POST /Instance", iid), ("POST /Instance/{instance_id}", iid), ("DELETE /Instance/{instance_id}", iid),
        ("POST /Subclient/{subclient_id}/action/backup", str(sub)), ("POST /Job/{job_id}/action/kill", backup),
        ("POST /CreateTask", None), ("POST /RestorePoints/{point_id}/action/verify", str(point)),
        ("POST /NotificationTarget", tid), ("PUT /NotificationTarget/{target_id}", tid),
        ("DELETE /NotificationTarget/{target_id}", tid), ("POST /V4/Credential", None),
        ("POST /CommCell/Credentials/action/delete", None), ("POST /Logout", None),
    ]:
        rec = one(records, route, rid)
        assert rec["user"] == admin and rec["address"] == "127.0.0.1", rec
    assert one(records, "POST /Subclient/{subclient_id}/action/backup")["details"]["jobIds"] == [backup]
    assert one(records, "POST /CreateTask")["details"]["jobIds"] == [restored]
    plan_rec = one(records, "DELETE /V2/Plan/{plan_id}")
    assert plan_rec["resource"] == "Plan" and plan_rec["status"] == plan_gone.status_code
    assert plan_rec["outcome"] == ("success" if plan_gone.status_code == 200 else "failure")
    logins = [r for r in records if r["action"] == "login"]
    assert Counter((r["user"]["userName"], r["user"]["userId"], r["outcome"], r["status"]) for r in logins) == {
        ("admin", 1, "success", 200): 2, ("admin", None, "failure", 401): 1, ("nobody", None, "failure", 401): 1}
    key = one(records, "pgvault keys rotate")
    assert key["method"] == "CLI" and key["user"]["userName"].startswith("os:") and key["resource"] == "MasterKey"
    assert not [r for r in records if r["method"] == "GET" or r["route"] in ("POST /Jobs", "POST /WhoAmI")]

    # filters, paging, export
    assert {r["action"] for r in trail(api, user="admin", outcome="failure")} >= {"login"}
    assert all(r["outcome"] == "failure" for r in trail(api, outcome="failure"))
    assert [r["route"] for r in trail(api, action="create_instance")] == ["POST /Instance"]
    deleted = "DELETE /Instance/{instance_id}"
    assert [r["route"] for r in trail(api, action=deleted)] == [deleted]
    assert {r["resource"] for r in trail(api, resource="plan")} == {"Plan"}
    assert trail(api, since="2999-01-01T00:00:00Z") == [] and trail(api, until="2000-01-01") == []
    assert len(trail(api, user="1")) == len(trail(api, user="admin")) - 1  # the failed login has no user id
    page = api.get("/AuditTrail", params={"offset": 2, "limit": 3}).json()
    assert page["totalRecordsWithoutPaging"] >= len(records) and [r["id"] for r in page["auditTrail"]] == \
        [r["id"] for r in records[2:5]]
    assert [r["id"] for r in records] == sorted((r["id"] for r in records), reverse=True)
    export = httpx.get(svc.url + BASE + "/AuditTrail/export", headers={"Authtoken": api.token}, timeout=60)
    assert export.status_code == 200 and export.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert [r["id"] for r in lines] == sorted(r["id"] for r in records)
    bad = api.get("/AuditTrail", params={"outcome": "maybe"})
    assert bad.status_code == 400 and bad.json()["errorCode"] == 2
    assert api.get("/AuditTrail", params={"since": "yesterday"}).status_code == 400
    assert anon.get("/AuditTrail").status_code == 401

    # never a secret, anywhere in the trail
    conn = sqlite3.connect(f"file:{svc.home / 'catalog.db'}?mode=ro", uri=True, timeout=30)
    try:
        stored = json.dumps(conn.execute("select * from audit_events").fetchall())
    finally:
        conn.close()
    for secret in (svc.admin_password, pg.password, CREDENTIAL_PASSWORD, HOOK_SECRET, api.token, other.token,
                   b64(svc.admin_password), b64(CREDENTIAL_PASSWORD)):
        assert secret not in stored
    api.close()
    anon.close()
    other.close()


def test_no_route_is_left_out(svc):
    """Every route of the application's route table that is not a read is recorded, once per request, with
    no user when no token came (the refusal is recorded too); the reads asked with a POST are not."""
    from fastapi.routing import APIRoute

    from pgvault.app import create_app

    api = svc.login()
    before = Counter(r["route"] for r in trail(api, outcome="failure"))
    sent = []
    with httpx.Client(base_url=svc.url, timeout=60) as http:
        for route in create_app().routes:
            if not isinstance(route, APIRoute) or not route.include_in_schema:
                continue
            for method in sorted(route.methods - {"GET", "HEAD"}):
                path = re.sub(r"\{\w+\}", "987654", route.path)
                r = http.request(method, path, content=b"{}", headers={"Content-Type": "application/json"},
                                 follow_redirects=False)
                api_route = route.path.startswith(BASE + "/")
                # the API: a 401 (no token) or a 400 (public, bad body); the console: its login page, a 303
                assert r.status_code in ((400, 401) if api_route else (303, 400, 401, 403)), (method, path, r)
                shown = route.path.removeprefix(BASE)
                sent.append(((method, route.path) in NOT_AUDITED, f"{method} {shown}", resource_of(route.path),
                             api_route, r.status_code))
    assert len(sent) > 25
    after = trail(api, outcome="failure")
    grew = Counter(r["route"] for r in after) - before
    for skipped, route, resource, _api_route, status in sent:
        if status < 400:  # (a console redirect to its login page: recorded as a success of the redirect)
            continue
        assert grew[route] == (0 if skipped else 1), route
        if not skipped:
            rec = next(r for r in after if r["route"] == route)
            assert rec["resource"] == resource and rec["address"] == "127.0.0.1" and rec["status"] == status
            if route not in ("POST /Login", "POST /RenewLoginToken", "POST /login"):
                assert rec["user"] == {"userId": None, "userName": None}, rec
    redirected = [route for skipped, route, _, _, status in sent if status < 400]
    assert redirected == [] or all(any(r["route"] == route for r in trail(api)) for route in redirected)
    api.close()


def test_actions_through_the_cli_are_recorded_and_read_back_with_pgvault_audit(svc, pg, tmp_path):
    api = svc.login()
    entity, first = register(api, pg, "audit-cli")
    api.wait_job(first)
    config = tmp_path / "xdg"
    assert cli(config, "login", "--url", svc.url, stdin=svc.admin_password + "\n").returncode == 0
    started = cli(config, "backup", "audit-cli")
    assert started.returncode == 0, started.stderr
    job = started.stdout.split("backup job ")[1].split()[0]
    api.wait_job(job)
    assert cli(config, "instances", "remove", "audit-cli").returncode == 0

    done = cli(config, "audit", "--since", "1h", "--user", "admin", "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    iid = str(entity["instanceId"])
    backup = one(rows, "POST /Subclient/{subclient_id}/action/backup", str(entity["subclientId"]))
    assert backup["details"]["jobIds"] == [job] and backup["user"]["userName"] == "admin"
    assert one(rows, "DELETE /Instance/{instance_id}", iid)["outcome"] == "success"
    assert all(r["user"]["userName"] == "admin" for r in rows)
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)  # oldest first

    table = cli(config, "audit", "--since", "1h", "--resource", "Instance")
    assert table.returncode == 0 and "DELETE /Instance/{instance_id}" in table.stdout and "admin" in table.stdout
    assert "POST /Subclient" not in table.stdout
    bad = cli(config, "audit", "--since", "last week")
    assert bad.returncode == 2 and "30m, 12h, 7d" in bad.stderr
    assert cli(config, "logout").returncode == 0
    assert cli(config, "audit").returncode == 1  # logged out: refused
    logouts = trail(api, action="logout", since=(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat())
    assert logouts and logouts[0]["user"]["userName"] == "admin"
    api.close()


def test_records_are_append_only_and_go_after_the_retention(catalog):
    from sqlalchemy import select, text

    from pgvault.catalog.models import AuditEvent
    from pgvault.scheduler import Scheduler
    from pgvault.services import audit

    now = dt.datetime.now(dt.UTC)
    with catalog.transaction(write=True) as s:
        for days in (400, 200, 1):
            audit.record(s, audit.event(method="POST", action="create_plan", route="POST /V2/Plan", resource="Plan",
                                        status=200, user_name="alice", at=now - dt.timedelta(days=days)))
    with pytest.raises(Exception, match="append-only"), catalog.transaction(write=True) as s:
        s.execute(text("update audit_events set user_name = 'mallory'"))
    clock = [now]
    scheduler = Scheduler(catalog, 30, lambda: None, clock=lambda: clock[0],
                          audit_retention=dt.timedelta(days=300))
    assert scheduler.prune_audit() == 1
    clock[0] = now + dt.timedelta(minutes=30)
    scheduler.audit_retention = dt.timedelta(days=100)
    assert scheduler.prune_audit() == 0  # at most once an hour
    clock[0] = now + dt.timedelta(hours=2)
    assert scheduler.prune_audit() == 1
    with catalog.transaction(write=False) as s:
        assert [r.user_name for r in s.scalars(select(AuditEvent))] == ["alice"]


def test_console_login_and_form_actions_are_recorded_with_their_user(svc, tmp_path):
    """The console's forms are routes like any other: its login (throttled by the same service) and a plan
    created from its form are recorded, with the user of the session."""
    from tests.support.console import Console
    from tests.test_console_plans import form, plan_id_of

    api = svc.login()
    console = Console(svc.url)
    try:
        assert console.login("admin", "wrong").status_code == 401
        assert console.login("admin", svc.admin_password).status_code == 303
        r = console.post("/plans/new", form("audit-console", **{"d0.kind": "local", "d0.name": "primary",
                                                                  "d0.path": str(tmp_path / "console")}))
        assert r.status_code == 303, r.text
        pid = str(plan_id_of(r.headers["location"]))
        assert console.post("/logout").status_code == 303
    finally:
        console.close()
    records = trail(api, since=(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)).isoformat())
    logins = [(r["status"], r["user"]) for r in records if r["route"] == "POST /login"]
    assert logins == [(303, {"userId": 1, "userName": "admin"}), (401, {"userId": None, "userName": "admin"})]
    created = one(records, "POST /plans/new")
    assert created["user"] == {"userId": 1, "userName": "admin"} and created["resource"] == "plans"
    assert created["status"] == 303 and created["outcome"] == "success"
    assert one(records, "POST /logout")["user"]["userName"] == "admin"
    assert pid and svc.admin_password not in json.dumps(records), [r for r in records if "password" in json.dumps(r)]
    api.close()
