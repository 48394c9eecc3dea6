"""The console's plans (page 7) over real HTTP against a real `pgvault serve`: creating and editing plans
through the forms and finding exactly what was typed in the API; an S3 destination on a real S3 endpoint
(moto on loopback) whose secret never comes back in a page; bad input refused with the API's own words
next to the field, changing nothing; a plan in use that cannot be deleted, naming its instances; and
requests without a session or without the form's CSRF value changing nothing. One browser test creates a
plan through the form in Chromium."""

from __future__ import annotations

import html
import os
import re
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from tests.support.console import Console, csrf_of
from tests.support.flows import register
from tests.support.service import catalog_counts

from pgvault.catalog.models import CloudAccount, Instance, Plan
from pgvault.errors import Conflict
from pgvault.services import plans as plan_service
from pgvault.services.bootstrap import bootstrap

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 740}


@pytest.fixture()
def console(service):
    c = Console(service.url)
    assert c.login("admin", service.admin_password).status_code == 303
    yield c
    c.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def form(name: str, **fields: str) -> dict[str, str]:
    """The create form as a browser posts it: its defaults, then ``fields``."""
    data = {"planName": name, "scheduleKind": "rpo", "rpo": "24", "rpoUnit": "hours", "cron": "", "timeZone": "UTC",
            "windowStart": "", "windowEnd": "", "retentionDays": "30", "keepMin": "3", "gfsDaily": "0",
            "gfsWeekly": "0", "gfsMonthly": "0", "compressionLevel": "1", "drillEvery": "0"}
    for n in range(3):
        data |= {f"d{n}.{k}": "" for k in ("name", "kind", "path", "endpoint", "region", "bucket", "prefix",
                                            "accessKeyId", "secretAccessKey", "retentionDays")}
    return data | fields


def plan_id_of(location: str) -> int:
    m = re.fullmatch(r"/plans/(\d+)\?done=(created|saved)", location)
    assert m, location
    return int(m.group(1))


def api_plan(api, pid: int) -> dict[str, Any]:
    r = api.get(f"/V2/Plan/{pid}")
    assert r.status_code == 200, r.text
    return r.json()["plan"]  # type: ignore[no-any-return]


def field_error(page: str, key: str) -> str | None:
    """The error shown next to a field (``err-<key>``, which the field's aria-describedby names)."""
    eid = "err-" + key.replace(".", "-")
    m = re.search(rf'<p class="field-error" id="{re.escape(eid)}">([^<]*)</p>', page)
    if m is None:
        return None
    assert re.search(rf'aria-describedby="[^"]*{re.escape(eid)}"', page), f"no field is described by {eid}"
    return html.unescape(m.group(1))


def test_create_an_rpo_and_a_cron_plan_and_edit_them(service, api, console, tmp_path):
    rpo_name, cron_name = unique("console-rpo"), unique("console-cron")
    r = console.post("/plans/new", form(
        rpo_name, rpo="6", rpoUnit="hours", timeZone="Asia/Shanghai", retentionDays="14", keepMin="5", gfsDaily="7",
        gfsWeekly="4", gfsMonthly="12", compressionLevel="3", drillEvery="10", encryption="on",
        **{"d0.kind": "local", "d0.name": "fast", "d0.path": str(tmp_path / "fast"), "d0.retentionDays": "7",
           "d1.kind": "local", "d1.name": "slow", "d1.path": str(tmp_path / "slow"), "d1.retentionDays": "90"}))
    assert r.status_code == 303, r.text
    rpo_id = plan_id_of(r.headers["location"])
    assert console.get(r.headers["location"]).text.count("The plan was created.") == 1
    got = api_plan(api, rpo_id)
    assert got["summary"]["plan"]["planName"] == rpo_name
    assert got["schedule"] == {"rpoMinutes": 360, "timeZone": "Asia/Shanghai", "window": None}
    assert got["retention"] == {"days": 14, "keepMin": 5, "gfs": {"daily": 7, "weekly": 4, "monthly": 12}}
    assert [(d["name"], d["kind"], d["path"], d["retentionDays"], d["hasCredentials"]) for d in got["destinations"]] \
        == [("fast", "local", str(tmp_path / "fast"), 7, False), ("slow", "local", str(tmp_path / "slow"), 90, False)]
    assert got["compression"]["level"] == 3 and got["drillEvery"] == 10
    assert got["encryption"] == {"enabled": True, "algorithm": "AES-256-GCM"}

    r = console.post("/plans/new", form(
        cron_name, scheduleKind="cron", cron="30 2 * * *", timeZone="Europe/Berlin", windowStart="22:00",
        windowEnd="06:00", **{"d0.kind": "local", "d0.name": "primary", "d0.path": str(tmp_path / "nightly")}))
    assert r.status_code == 303, r.text
    cron_id = plan_id_of(r.headers["location"])
    got = api_plan(api, cron_id)
    assert got["schedule"] == {"cron": "30 2 * * *", "timeZone": "Europe/Berlin",
                               "window": {"start": "22:00", "end": "06:00"}}
    assert [(d["name"], d["path"], d["retentionDays"]) for d in got["destinations"]] == [
        ("primary", str(tmp_path / "nightly"), 30)]
    assert got["encryption"]["enabled"] is False and got["drillEvery"] == 0

    # the list says each plan in words, and how many instances use it
    listing = console.get("/plans").text
    row = _row(listing, rpo_id)
    assert "every 6 h" in row and "time zone Asia/Shanghai" in row
    assert "14 days, at least 5 kept" in row and "GFS: 7 daily, 4 weekly, 12 monthly" in row
    assert str(tmp_path / "fast") in row and "kept 7 days" in row and "kept 90 days" in row
    assert "zstd level 3" in row and "encrypted" in row and "after every 10 backups" in row and "none" in row
    row = _row(listing, cron_id)
    assert 'cron <code class="nowrap">30 2 * * *</code> (Europe/Berlin)' in row
    assert "only from 22:00 to 06:00 Europe/Berlin" in row and "not encrypted" in row
    assert "next: <time" in row  # when the expression next fires, in the browser's zone

    # the edit form shows what is stored
    page = console.get(f"/plans/{cron_id}").text
    assert f"<h1>Plan {cron_name}</h1>" in page
    assert 'name="cron" type="text" value="30 2 * * *"' in page and 'value="Europe/Berlin"' in page
    assert 'name="windowStart" type="time" value="22:00"' in page
    assert 'value="cron" checked' in page

    # edit: now by RPO, every 90 minutes, no window, other retention; the destination stays as it was
    r = console.post(f"/plans/{cron_id}", form(
        cron_name, scheduleKind="rpo", rpo="90", rpoUnit="minutes", cron="30 2 * * *", timeZone="Europe/Berlin",
        retentionDays="21", keepMin="2", gfsWeekly="8", compressionLevel="5", drillEvery="1", encryption="on",
        **{"d0.kind": "local", "d0.name": "primary", "d0.path": str(tmp_path / "nightly")}))
    assert r.status_code == 303 and r.headers["location"] == f"/plans/{cron_id}?done=saved", r.text
    got = api_plan(api, cron_id)
    assert got["schedule"] == {"rpoMinutes": 90, "timeZone": "Europe/Berlin", "window": None}
    assert got["retention"] == {"days": 21, "keepMin": 2, "gfs": {"daily": 0, "weekly": 8, "monthly": 0}}
    assert [(d["name"], d["path"], d["retentionDays"]) for d in got["destinations"]] == [
        ("primary", str(tmp_path / "nightly"), 21)]
    assert got["compression"]["level"] == 5 and got["drillEvery"] == 1 and got["encryption"]["enabled"] is True
    assert "every 90 min" in _row(console.get("/plans").text, cron_id)

    # edit the destinations: another folder, its own retention, a second one; a new name
    renamed = cron_name + "-b"
    r = console.post(f"/plans/{cron_id}", form(
        renamed, rpo="2", rpoUnit="hours", retentionDays="21", keepMin="2",
        **{"d0.kind": "local", "d0.name": "primary", "d0.path": str(tmp_path / "moved"), "d0.retentionDays": "3",
           "d2.kind": "local", "d2.name": "second", "d2.path": str(tmp_path / "second")}))
    assert r.status_code == 303, r.text
    got = api_plan(api, cron_id)
    assert got["summary"]["plan"]["planName"] == renamed and got["schedule"]["rpoMinutes"] == 120
    assert [(d["name"], d["path"], d["retentionDays"]) for d in got["destinations"]] == [
        ("primary", str(tmp_path / "moved"), 3), ("second", str(tmp_path / "second"), 21)]
    assert (tmp_path / "moved").is_dir() and (tmp_path / "second").is_dir()  # probed by the API
    assert got["encryption"]["enabled"] is False  # an unticked box is "off"


def _row(listing: str, pid: int) -> str:
    m = re.search(rf'<tr id="plan-{pid}">(.*?)</tr>', listing, re.S)
    assert m, f"plan {pid} is not in the list"
    return m.group(1)


def test_an_s3_destination_on_a_real_endpoint_never_shows_its_secret(service, api, console, s3):
    bucket = s3.new_bucket()
    name = unique("console-s3")
    secret = s3.secret_access_key
    s3_row = {"d0.kind": "s3", "d0.name": "oss", "d0.endpoint": s3.url, "d0.region": s3.region, "d0.bucket": bucket,
              "d0.prefix": "pgvault", "d0.accessKeyId": s3.access_key_id, "d0.secretAccessKey": secret,
              "d0.retentionDays": "90"}
    pages: list[str] = []

    # a wrong secret: S3 refuses the probe; the API's words next to the secret, which is not typed back
    r = console.post("/plans/new", form(name, **(s3_row | {"d0.secretAccessKey": "wrong-secret-" + "x" * 28})))
    pages.append(r.text)
    assert r.status_code == 400
    said = field_error(r.text, "d0.secretAccessKey")
    assert said and said.startswith("destination 'oss' cannot be written") and "secret access key" in said, said
    assert 'name="d0.secretAccessKey" type="password" value=""' in r.text
    assert "wrong-secret-" not in r.text and name not in _names(api)

    r = console.post("/plans/new", form(name, **s3_row))
    assert r.status_code == 303, r.text
    pid = plan_id_of(r.headers["location"])
    got = api_plan(api, pid)
    assert got["destinations"] == [{"destinationId": got["destinations"][0]["destinationId"], "name": "oss",
                                    "kind": "s3", "endpoint": s3.url, "region": s3.region, "bucket": bucket,
                                    "prefix": "pgvault", "virtualHosted": False, "retentionDays": 90,
                                    "hasCredentials": True}]
    pages += [console.get(r.headers["location"]).text, console.get("/plans").text,
              console.get(f"/plans/{pid}/delete").text]
    edit = pages[-3]
    assert "stored, never shown" in edit and 'name="d0.secretAccessKey" type="password" value=""' in edit

    # an edit that leaves the destinations as they were keeps the stored keys
    r = console.post(f"/plans/{pid}", form(name, retentionDays="40", **(s3_row | {"d0.accessKeyId": "",
                                                                                  "d0.secretAccessKey": ""})))
    assert r.status_code == 303, r.text
    got = api_plan(api, pid)
    assert got["retention"]["days"] == 40 and got["destinations"][0]["hasCredentials"] is True
    assert got["destinations"][0]["retentionDays"] == 90

    # changing a destination without its keys: the page says why they are needed again, and nothing changes
    r = console.post(f"/plans/{pid}", form(name, retentionDays="40", **(s3_row | {
        "d0.prefix": "elsewhere", "d0.accessKeyId": "", "d0.secretAccessKey": ""})))
    pages.append(r.text)
    assert r.status_code == 400
    assert "enter the access key id and secret access key again" in (field_error(r.text, "d0.secretAccessKey") or "")
    assert api_plan(api, pid) == got
    # with them, it changes
    r = console.post(f"/plans/{pid}", form(name, retentionDays="40", **(s3_row | {"d0.prefix": "elsewhere"})))
    assert r.status_code == 303, r.text
    assert api_plan(api, pid)["destinations"][0]["prefix"] == "elsewhere"
    assert api_plan(api, pid)["destinations"][0]["hasCredentials"] is True

    # an endpoint that does not answer: the API's words next to the endpoint
    r = console.post(f"/plans/{pid}", form(name, **(s3_row | {"d0.endpoint": f"http://127.0.0.1:{_closed_port()}"})))
    pages.append(r.text)
    assert r.status_code == 400
    assert "cannot reach http://127.0.0.1" in (field_error(r.text, "d0.endpoint") or ""), r.text
    assert api_plan(api, pid)["destinations"][0]["endpoint"] == s3.url

    pages += [console.get(f"/plans/{pid}").text, console.get("/plans").text]
    for text in pages:
        assert secret not in text and s3.access_key_id not in html.unescape(text).replace(
            f'value="{s3.access_key_id}"', "")  # (only where the user typed it, on a refused form)
    edit = console.get(f"/plans/{pid}").text
    assert s3.access_key_id not in edit  # the API never shows the key id either
    assert secret not in service.log_text()


def _names(api) -> list[str]:
    return [p["plan"]["planName"] for p in api.get("/V2/Plan").json()["plans"]]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


OUTSIDE = "/var/lib/pgvault-not-allowed"  # under neither PGVAULT_HOME/backups nor PGVAULT_LOCAL_ROOTS


@pytest.mark.parametrize(("fields", "body", "key"), [
    ({"scheduleKind": "cron", "cron": "61 2 * * *"}, {"schedule": {"cron": "61 2 * * *"}}, "cron"),
    ({"scheduleKind": "cron", "cron": "0 0 30 2 *"}, {"schedule": {"cron": "0 0 30 2 *"}}, "cron"),
    ({"timeZone": "Mars/Olympus"}, {"schedule": {"rpoMinutes": 1440, "timeZone": "Mars/Olympus"}}, "timeZone"),
    ({"d0.kind": "local", "d0.path": OUTSIDE}, {"destinations": [{"kind": "local", "path": OUTSIDE}]}, "d0.path"),
    ({"d1.kind": "local", "d1.path": "relative/folder"},
     {"destinations": [{"kind": "local", "path": "relative/folder"}]}, "d1.path"),
    ({"windowStart": "25:00", "windowEnd": "06:00"},
     {"schedule": {"rpoMinutes": 1440, "window": {"start": "25:00", "end": "06:00"}}}, "windowStart"),
    ({"windowStart": "22:00"}, {"schedule": {"rpoMinutes": 1440, "window": {"start": "22:00"}}}, "windowEnd"),
    ({"compressionLevel": "30"}, {"compressionLevel": 30}, "compressionLevel"),
    ({"retentionDays": "ten"}, {"retention": {"days": "ten"}}, "retentionDays"),
    ({"gfsMonthly": "-1"}, {"retention": {"gfs": {"monthly": -1}}}, "gfsMonthly"),
    ({"rpo": "0"}, {"schedule": {"rpoMinutes": 0}}, "rpo"),
    ({"d0.kind": "s3", "d0.region": "us-east-1"}, {"destinations": [{"kind": "s3", "region": "us-east-1"}]},
     "d0.bucket"),
    ({"planName": ""}, {"planName": ""}, "planName"),
])
def test_bad_input_shows_the_apis_words_next_to_the_field_and_changes_nothing(service, api, console, fields, body,
                                                                                key):
    name = unique("console-bad")
    refused = api.post("/V2/Plan", json={"planName": name, **body})  # the same body, straight to the API
    assert refused.status_code == 400, refused.text
    before = catalog_counts(service.home)["plans"]
    r = console.post("/plans/new", form(name, **fields))
    assert r.status_code == 400, r.text
    assert field_error(r.text, key) == refused.json()["errorMessage"], r.text
    assert catalog_counts(service.home)["plans"] == before and name not in _names(api)
    # what was typed comes back, to be corrected
    typed = next(v for k, v in fields.items() if k != "scheduleKind" and not k.endswith(".kind"))
    assert f'value="{html.escape(typed)}"' in r.text

    # the same on an existing plan's form: the plan stays as it was
    ok = api.post("/V2/Plan", json={"planName": name})
    pid = ok.json()["plan"]["summary"]["plan"]["planId"]
    stored = api_plan(api, pid)
    edit = form(name, **{"d0.kind": "local", "d0.name": "primary", "d0.path": stored["destinations"][0]["path"]})
    r = console.post(f"/plans/{pid}", edit | fields)
    assert r.status_code == 400 and field_error(r.text, key), r.text
    assert api_plan(api, pid) == stored
    api.delete(f"/V2/Plan/{pid}")


def test_a_name_taken_is_said_next_to_the_name(api, console, tmp_path):
    name = unique("console-taken")
    assert api.post("/V2/Plan", json={"planName": name}).status_code == 200
    r = console.post("/plans/new", form(name.upper()))
    assert r.status_code == 409
    assert field_error(r.text, "planName") == f"a plan named {name.upper()!r} already exists"


def test_deleting_a_plan_in_use_names_its_instances_and_changes_nothing(service, api, console, pg, tmp_path):
    name = unique("console-busy")
    assert api.post("/V2/Plan", json={"planName": name, "storage": {"path": str(tmp_path)}}).status_code == 200
    pid = next(p["plan"]["planId"] for p in api.get("/V2/Plan").json()["plans"] if p["plan"]["planName"] == name)
    instance = unique("on-plan")
    entity, job = register(api, pg, instance, plan=name)
    api.wait_job(job)
    stored = api_plan(api, pid)

    # the API's refusal names the instance, its cloud account and id (status and error code unchanged)
    refused = api.delete(f"/V2/Plan/{pid}")
    assert refused.status_code == 409 and refused.json()["errorCode"] == 7
    message = refused.json()["errorMessage"]
    assert message == (f"plan {name!r} is used by 1 instance: {instance!r} (cloud account 'default', id "
                       f"{entity['instanceId']}); move it to another plan or delete it first")

    confirm = console.get(f"/plans/{pid}/delete")
    assert confirm.status_code == 200
    assert "cannot be deleted while instances use it" in confirm.text
    assert f'<a href="/instances/{entity["instanceId"]}">{instance}</a>' in confirm.text
    assert 'action="/plans/' not in confirm.text  # no delete button for a plan in use

    r = console.post(f"/plans/{pid}/delete")  # (a page from before the instance came)
    assert r.status_code == 409
    said = re.search(r'<p class="error" role="alert" id="delete-error">([^<]*)</p>', r.text)
    assert said and html.unescape(said.group(1)) == message
    assert f'<a href="/instances/{entity["instanceId"]}">{instance}</a>' in r.text
    assert api_plan(api, pid) == stored
    # the plan's page and the list say who uses it
    assert f'<a href="/instances/{entity["instanceId"]}">{instance}</a>' in console.get(f"/plans/{pid}").text
    assert "1 instance</a>" in _row(console.get("/plans").text, pid)
    api.delete(f"/Instance/{entity['instanceId']}", params={"deleteBackups": "true"})

    # the default plan is not deleted either, in words
    default = next(p["plan"]["planId"] for p in api.get("/V2/Plan").json()["plans"]
                   if p["plan"]["planName"] == "default")
    r = console.post(f"/plans/{default}/delete")
    assert r.status_code == 409 and "the default plan cannot be deleted" in r.text

    # a plan nobody uses goes, after its confirmation page
    idle = unique("console-idle")
    ok = api.post("/V2/Plan", json={"planName": idle})
    idle_id = ok.json()["plan"]["summary"]["plan"]["planId"]
    confirm = console.get(f"/plans/{idle_id}/delete")
    assert f'<form method="post" action="/plans/{idle_id}/delete"' in confirm.text
    r = console.post(f"/plans/{idle_id}/delete")
    assert r.status_code == 303 and r.headers["location"] == "/plans?done=deleted"
    assert api.get(f"/V2/Plan/{idle_id}").status_code == 404
    assert "The plan was deleted." in console.get(r.headers["location"]).text
    assert console.get(f"/plans/{idle_id}").status_code == 404


def test_the_refusal_names_twenty_instances_then_says_how_many_more(catalog, tmp_path):
    with catalog.transaction(write=True) as s:
        bootstrap(s, home=tmp_path, backups_dir=tmp_path / "backups", admin_password="x" * 16)
        plan = Plan(name="crowded", name_key="crowded", rpo_minutes=60, retention_days=7, compression_level=1)
        account = s.scalar(select(CloudAccount).where(CloudAccount.name == "default"))
        s.add(plan)
        s.flush()
        for n in range(25):
            s.add(Instance(cloud_account=account, plan=plan, name=f"db-{n:02}", name_key=f"db-{n:02}", host="h",
                           port=5432, maintenance_db="postgres", username="u", password_sealed=b"x",
                           declared_version="18", server_version="18.1", server_version_num=180001))
        plan_id = plan.id
    with catalog.transaction(write=True) as s, pytest.raises(Conflict) as refused:
        plan_service.delete(s, plan_id)
    message = refused.value.message
    assert message.startswith("plan 'crowded' is used by 25 instances: 'db-00' (cloud account 'default', id ")
    assert "'db-19'" in message and "'db-20'" not in message and message.endswith(
        " and 5 more; move them to another plan or delete them first")
    with catalog.transaction(write=False) as s:
        assert s.get(Plan, plan_id) is not None
        assert plan_service.usage(s)[plan_id] == 25
        users, total = plan_service.users(s, plan_id, 3)
        assert total == 25 and [u.name for u in users] == ["db-00", "db-01", "db-02"]


def test_no_session_and_forged_forms_change_nothing(service, api, console, tmp_path):
    name = unique("console-guarded")
    ok = api.post("/V2/Plan", json={"planName": name, "storage": {"path": str(tmp_path)}})
    pid = ok.json()["plan"]["summary"]["plan"]["planId"]
    stored = api_plan(api, pid)
    counts = catalog_counts(service.home)
    attempt = form(name + "-changed", **{"d0.kind": "local", "d0.path": str(tmp_path)})

    anon = Console(service.url)
    for path in ("/plans", "/plans/new", f"/plans/{pid}", f"/plans/{pid}/delete"):
        r = anon.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
    for path in ("/plans/new", f"/plans/{pid}", f"/plans/{pid}/delete"):
        r = anon.post(path, attempt, csrf="anything")
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    anon.close()

    other = Console(service.url)
    other.login("admin", service.admin_password)
    foreign = csrf_of(other.get("/plans").text)
    other.close()
    for path in ("/plans/new", f"/plans/{pid}", f"/plans/{pid}/delete"):
        for value in ("", "0" * 64, foreign):
            r = console.post(path, attempt, csrf=value)
            assert r.status_code == 403 and "did not come from this console session" in r.text, (path, value)
        r = console.post(path, attempt, headers={"Origin": "http://evil.example"})  # the right value, another site
        assert r.status_code == 403, path
    assert api_plan(api, pid) == stored and catalog_counts(service.home) == counts
    assert name + "-changed" not in _names(api)


def test_a_bad_address_is_a_page_in_words(service, console):
    anon = Console(service.url)
    assert anon.get("/plans/abc").status_code == 303  # the session first, then the address
    anon.close()
    for path, words in (("/plans/abc", "plan_id: Input should be a valid integer"),
                        ("/plans/99999999999999999999999", "a number in the request is out of range"),
                        ("/plans/2147483000", "plan 2147483000 does not exist")):
        r = console.get(path)
        assert r.status_code in (400, 404) and r.headers["content-type"].startswith("text/html"), path
        assert words in html.unescape(r.text), (path, r.text)


# -- in a browser -------------------------------------------------------------------------------------

@pytest.fixture()
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("PGVAULT_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_create_a_plan_in_the_browser(chromium, service, api, tmp_path, shots):
    name = unique("browser-plan")
    context = chromium.new_context(viewport=DESKTOP, timezone_id="Europe/Berlin", locale="en-GB")
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(service.url + "/plans")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(service.admin_password)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url(service.url + "/plans")
    page.get_by_role("link", name="New plan").click()
    page.wait_for_url(service.url + "/plans/new")
    assert page.get_by_role("heading", name="New plan").is_visible()

    page.get_by_label("Plan name").fill(name)
    every, cron = page.get_by_label("Back up every"), page.get_by_label("Cron expression", exact=True)
    assert every.is_visible() and not cron.is_visible()
    page.get_by_label("By cron expression").check()  # the form shows the cron field instead, without a script
    assert cron.is_visible() and not every.is_visible()
    cron.fill("15 1 * * 1-5")
    page.get_by_label("Time zone", exact=True).fill("Asia/Shanghai")
    page.get_by_label("Window from (HH:MM)").fill("23:00")
    page.get_by_label("Window to (HH:MM)").fill("05:00")
    page.get_by_label("Keep backups for (days)").fill("10")
    page.get_by_label("GFS weekly").fill("4")
    first = page.locator("#dest-0")
    assert not first.get_by_label("Bucket", exact=True).is_visible()  # a local row shows no S3 fields
    first.get_by_label("Folder", exact=True).fill(str(tmp_path / "browser"))
    first.get_by_label("Keep for (days)").fill("5")
    second = page.locator("#dest-1")
    assert not second.get_by_label("Folder", exact=True).is_visible()  # an unused row shows only its kind
    second.get_by_label("Kind", exact=True).select_option("local")
    second.get_by_label("Name", exact=True).fill("copy")
    second.get_by_label("Folder", exact=True).fill(str(tmp_path / "copy"))
    page.get_by_label("zstd compression level (1-19)").fill("4")
    page.get_by_label("Encrypt new backups (AES-256-GCM)").check()
    page.get_by_role("button", name="Create plan").click()
    page.wait_for_url(re.compile(re.escape(service.url) + r"/plans/\d+\?done=created"))
    assert page.get_by_text("The plan was created.").is_visible()
    assert page.get_by_role("heading", name=f"Plan {name}").is_visible()
    pid = int(re.search(r"/plans/(\d+)", page.url).group(1))  # type: ignore[union-attr]
    got = api_plan(api, pid)
    assert got["schedule"] == {"cron": "15 1 * * 1-5", "timeZone": "Asia/Shanghai",
                               "window": {"start": "23:00", "end": "05:00"}}
    assert got["retention"] == {"days": 10, "keepMin": 3, "gfs": {"daily": 0, "weekly": 4, "monthly": 0}}
    assert [(d["name"], d["path"], d["retentionDays"]) for d in got["destinations"]] == [
        ("primary", str(tmp_path / "browser"), 5), ("copy", str(tmp_path / "copy"), 10)]
    assert got["compression"]["level"] == 4 and got["encryption"]["enabled"] is True
    page.screenshot(path=shots / "plan.png", full_page=True)

    page.get_by_role("link", name="Plans", exact=True).click()
    page.wait_for_url(service.url + "/plans")
    row = page.locator(f"#plan-{pid}")
    assert "cron 15 1 * * 1-5 (Asia/Shanghai)" in row.inner_text()
    assert row.locator("time").first.get_attribute("title").endswith("UTC")  # the next run, UTC on hover
    page.screenshot(path=shots / "plans.png", full_page=True)

    # phone width: only the table's own scroller is wider than the screen
    page.set_viewport_size(PHONE)
    for path in ("/plans", f"/plans/{pid}"):
        page.goto(service.url + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1, path
    assert errors == [], errors  # no script errors, nothing refused by the Content-Security-Policy
    context.close()


@pytest.mark.parametrize(("minutes", "words"), [(360, "every 6 h"), (90, "every 90 min"), (1440, "every 24 h"),
                                                (10080, "every 7 d"), (1, "every 1 min")])
def test_an_rpo_in_words(minutes, words):
    from pgvault.console.pages.plans import every

    assert every(minutes) == words
