"""The console's register form and instance page, over real HTTP against the session's real `pgvault serve`
and a real PostgreSQL server: registering through the form (and what it refuses, in the API's words, next
to the field), the connection test that saves nothing, the instance page after its first backup, and its
actions (back up now, a drill, a move to another plan, deleting with or without the backups), each checked
through the REST API; then the same in a real browser. Also the API operation the connection test is:
POST /Instance/action/testConnection."""

from __future__ import annotations

import html
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.support.console import Console
from tests.support.flows import register
from tests.support.service import b64, seed_body

from pgvault.console.pages.instances import change, sparkline

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 740}


@pytest.fixture()
def web(service):
    c = Console(service.url)
    assert c.login("admin", service.admin_password).status_code == 303
    yield c
    c.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def fields(pg, **over: str) -> dict[str, str]:
    """The register form as a user fills it for the session's server ``pg``."""
    values = {"name": unique("web"), "host": "127.0.0.1", "port": str(pg.port), "user": "postgres",
              "password": pg.password, "maintenance_db": "postgres", "version": "18", "ssl_ca": "",
              "plan": "default", "account": "default"}
    values.update(over)
    return values


def field_error(page: str, name: str) -> str:
    """The error shown next to field ``name`` of a form ("" when there is none)."""
    m = re.search(rf'<p class="field-error" id="err-{name}"[^>]*>(.*?)</p>', page, re.S)
    return html.unescape(m.group(1)) if m else ""


def instance_id_of(location: str) -> int:
    m = re.fullmatch(r"/instances/(\d+)(\?.*)?", location)
    assert m, location
    return int(m.group(1))


def job_of(location: str) -> str:
    m = re.fullmatch(r"/jobs/(\d+)", location)
    assert m, location
    return m.group(1)


def catalog_counts(home: Path) -> dict[str, int]:
    """What a refused registration or a forged form must not change, read straight from the SQLite catalog:
    instances and their parts, and jobs other than Data Aging (which the scheduler queues on its own for
    the instances other tests backed up)."""
    import sqlite3

    conn = sqlite3.connect(f"file:{home / 'catalog.db'}?mode=ro", uri=True, timeout=30)
    try:
        out = {t: conn.execute(f"select count(*) from {t}").fetchone()[0]
               for t in ("instances", "backupsets", "subclients", "cloud_accounts", "plans")}
        out["live"] = conn.execute("select count(*) from instances where deleted_at is null").fetchone()[0]
        out["jobs"] = conn.execute("select count(*) from jobs where job_type != 'DataAging'").fetchone()[0]
        return out
    finally:
        conn.close()


def instance_names(api) -> set[str]:
    return {i["instance"]["instanceName"] for i in api.get("/Instance").json()["instanceProperties"]}


def jobs_total(api) -> int:
    """Jobs other than Data Aging's (the scheduler queues those on its own)."""
    jobs = api.post("/Jobs", json={"category": 0, "pagingConfig": {"limit": 10000}}).json()["jobs"]
    return sum(1 for j in jobs if j["jobSummary"]["jobType"] != "DataAging")


# -- the API operation: POST /Instance/action/testConnection ----------------------------------------------


def test_the_connection_test_is_an_api_operation_that_saves_nothing(service, api, pg):
    before = catalog_counts(service.home)
    body = seed_body(host="127.0.0.1", port=pg.port, user="postgres", password=pg.password, name=unique("t"))
    r = api.post("/Instance/action/testConnection", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["errorCode"] == 0 and answer["serverVersion"].startswith("18")
    assert answer["serverVersionNum"] // 10000 == 18
    # a declared version that is not the server's is said, as POST /Instance says it
    body["instanceProperties"]["version"] = "16"
    warned = api.post("/Instance/action/testConnection", json=body).json()
    assert warned["warningCode"] == 1 and "declared version '16'" in warned["warningMessage"]
    # PostgreSQL's own reason for a wrong password, as Command Center's 4444
    wrong = seed_body(host="127.0.0.1", port=pg.port, user="postgres", password="not-the-password")
    r = api.post("/Instance/action/testConnection", json=wrong)
    assert r.status_code == 400 and r.json()["errorCode"] == 4444
    assert 'password authentication failed for user "postgres"' in r.json()["errorMessage"]
    assert "not-the-password" not in r.text
    # the body's own rules, the same as POST /Instance
    bad = seed_body(host="127.0.0.1", port=70000, user="postgres", password="x")
    r = api.post("/Instance/action/testConnection", json=bad)
    assert r.status_code == 400 and "port 70000 is outside 1-65535" in r.json()["errorMessage"]
    assert api.post("/Instance/action/testConnection", json=body, headers={"Authtoken": "nope"}).status_code == 401
    assert catalog_counts(service.home) == before


def test_the_connection_test_names_a_server_registered_already(api, pg):
    name = unique("twin")
    register(api, pg, name)
    body = seed_body(host="127.0.0.1", port=pg.port, user="postgres", password=pg.password)
    answer = api.post("/Instance/action/testConnection", json=body).json()
    assert answer["warningCode"] == 1 and repr(name) in answer["warningMessage"]


def test_the_connection_test_takes_cvpysdks_body_too_and_refuses_it_as_an_error(service, api, pg):
    """Either body POST /Instance takes: cvpysdk's names a credential, whose login is tested. Its refusals
    are the ordinary envelope (a 400), not the HTTP 200 that only POST /Instance gives the SDK."""
    cred = unique("cred")
    r = api.post("/V4/Credential", json={"name": cred, "username": "postgres", "password": b64(pg.password)})
    assert r.status_code == 200, r.text
    sdk = {"instanceProperties": {
        "instance": {"clientName": "default", "instanceName": unique("sdk"), "appName": "PostgreSQL"},
        "version": "18",
        "postGreSQLInstance": {"MaintainenceDB": "postgres", "port": f"127.0.0.1:{pg.port}",
                               "credentialEntity": {"credentialName": cred}}}}
    before = catalog_counts(service.home)
    r = api.post("/Instance/action/testConnection", json=sdk)
    assert r.status_code == 200 and r.json()["serverVersion"].startswith("18"), r.text
    sdk["instanceProperties"]["postGreSQLInstance"]["port"] = 5432  # cvpysdk's on-premises port alone
    r = api.post("/Instance/action/testConnection", json=sdk)
    assert r.status_code == 400 and r.json()["errorCode"] == 2 and "hostname:port" in r.json()["errorMessage"]
    assert catalog_counts(service.home) == before


# -- the register form -----------------------------------------------------------------------------------


def test_the_register_form_has_the_seeds_fields_with_labels(web):
    page = web.get("/instances/new")
    assert page.status_code == 200 and "<h1>Register an instance</h1>" in page.text
    for name in ("name", "host", "port", "user", "password", "maintenance_db", "version", "ssl", "ssl_ca", "plan",
                 "account"):
        assert f'id="f-{name}"' in page.text, name
        assert f'for="f-{name}"' in page.text or f'id="f-{name}" name="ssl"' in page.text, name
    assert '<option selected>default</option>' in page.text  # the default plan and cloud account
    assert 'formaction="/instances/test"' in page.text


def test_register_through_the_form_then_see_its_first_backup_and_databases(service, api, pg, web):
    with pg.connect() as conn:
        conn.execute("drop database if exists console_shop")
        conn.execute("create database console_shop")
    with pg.connect("console_shop") as conn:
        conn.execute("create table orders (id int primary key, note text)")
        conn.execute("insert into orders select g, repeat('x', 200) from generate_series(1, 2000) g")
    values = fields(pg, name=unique("web-reg"))
    r = web.post("/instances/new", values)
    assert r.status_code == 303, field_error(r.text, "") or r.text[-2000:]
    instance_id = instance_id_of(r.headers["location"])
    listed = api.get(f"/Instance/{instance_id}").json()["instanceProperties"][0]
    assert listed["instance"]["instanceName"] == values["name"]
    assert listed["postGreSQLInstance"]["port"] == f"127.0.0.1:{pg.port}"

    page = web.get(r.headers["location"])
    assert page.status_code == 200 and f"<h1>{values['name']}</h1>" in page.text
    assert "Registered: its first backup is queued" in page.text
    first = api.post("/Jobs", json={"category": 0, "jobFilter": {"entity": {"instanceId": instance_id}}}).json()["jobs"]
    job_id = next(j["jobSummary"]["jobId"] for j in first if j["jobSummary"]["jobType"] == "Backup")
    assert f'href="/jobs/{job_id}"' in page.text  # the first backup's job, linked
    facts = re.search(r'<dl class="facts" id="facts">(.*?)</dl>', page.text, re.S).group(1)
    assert f"127.0.0.1:{pg.port}" in facts and "postgres" in facts and "PostgreSQL 18" in facts
    assert pg.password not in page.text  # never the password

    assert api.wait_job(job_id)["status"] == "Completed"
    page = web.get(f"/instances/{instance_id}").text
    dbs = re.search(r'<table class="grid" id="databases">(.*?)</table>', page, re.S).group(1)
    row = re.search(r"<tr>\s*<td>console_shop</td>(.*?)</tr>", dbs, re.S)
    assert row, dbs
    assert "<time" in row.group(1) and "KiB" in row.group(1) and "Completed" in row.group(1)
    points = api.get("/RestorePoints", params={"instanceId": instance_id}).json()["restorePoints"]
    assert len(points) == 1
    rp = re.search(rf'<tr id="point-{points[0]["restorePointId"]}">(.*?)</tr>', page, re.S)
    assert rp and "local" in rp.group(1) and f'href="/jobs/{job_id}"' in rp.group(1)
    assert "1 restore point" in page


def test_a_wrong_password_shows_postgresqls_reason_next_to_it_and_registers_nothing(service, api, pg, web):
    before = catalog_counts(service.home)
    values = fields(pg, password="Wrong-Pa55word-xyz")
    r = web.post("/instances/new", values)
    assert r.status_code == 400
    reason = field_error(r.text, "password")
    assert 'password authentication failed for user "postgres"' in reason, reason
    assert "Wrong-Pa55word-xyz" not in r.text and pg.password not in r.text  # never echoed
    assert re.search(r'id="f-password" name="password" type="password" autocomplete="new-password" value=""', r.text)
    assert f'value="{values["name"]}"' in r.text  # what was typed stays, but the password
    assert catalog_counts(service.home) == before
    assert values["name"] not in instance_names(api)


def test_an_unknown_login_is_refused_as_postgresql_refuses_it(service, pg, web):
    """PostgreSQL tells a client no more about an unknown role than about a wrong password (its log does),
    so the page says what it was told, next to the password."""
    before = catalog_counts(service.home)
    r = web.post("/instances/new", fields(pg, user="nobody_here"))
    assert r.status_code == 400
    assert 'password authentication failed for user "nobody_here"' in field_error(r.text, "password")
    assert catalog_counts(service.home) == before


def test_an_unknown_maintenance_database_is_said_next_to_it(service, pg, web):
    before = catalog_counts(service.home)
    r = web.post("/instances/new", fields(pg, maintenance_db="no_such_db"))
    assert r.status_code == 400
    assert 'database "no_such_db" does not exist' in field_error(r.text, "maintenance_db")
    assert catalog_counts(service.home) == before


def test_a_duplicate_name_is_refused_next_to_the_name(service, api, pg, web):
    name = unique("dup")
    register(api, pg, name)
    before = catalog_counts(service.home)
    r = web.post("/instances/new", fields(pg, name=name))
    assert r.status_code == 409
    assert f"an instance named {name!r} already exists in cloud account 'default'" in field_error(r.text, "name")
    assert catalog_counts(service.home) == before


@pytest.mark.parametrize("port, words", [("70000", "port 70000 is outside 1-65535"),
                                         ("abc", "is not in hostname:port format"),
                                         ("", "is not in hostname:port format")])
def test_a_bad_port_is_refused_next_to_the_port(service, pg, web, port, words):
    before = catalog_counts(service.home)
    r = web.post("/instances/new", fields(pg, port=port))
    assert r.status_code == 400
    assert words in field_error(r.text, "port"), r.text[-3000:]
    assert field_error(r.text, "host") == ""
    assert catalog_counts(service.home) == before


def test_bad_fields_each_show_the_apis_error_next_to_them(service, pg, web):
    before = catalog_counts(service.home)
    r = web.post("/instances/new", fields(pg, host="bad-host!", user="", version=""))
    assert r.status_code == 400
    assert "is not a valid host name" in field_error(r.text, "host")
    assert field_error(r.text, "user") == "this field is required"
    assert field_error(r.text, "version") == "this field is required"
    r = web.post("/instances/new", fields(pg, version="banana"))
    assert r.status_code == 400 and "is not a PostgreSQL version" in field_error(r.text, "version")
    r = web.post("/instances/new", fields(pg, ssl_ca="/no/such/ca.pem", ssl="on"))
    assert r.status_code == 400 and "does not exist or cannot be read" in field_error(r.text, "ssl_ca")
    r = web.post("/instances/new", fields(pg, ssl_ca="/no/such/ca.pem"))
    assert r.status_code == 400 and "sslEnabled is false" in field_error(r.text, "ssl_ca")
    r = web.post("/instances/new", fields(pg, plan="no-such-plan"))
    assert r.status_code == 404 and "plan 'no-such-plan' does not exist" in field_error(r.text, "plan")
    r = web.post("/instances/new", fields(pg, account="no-such-account"))
    assert r.status_code == 404 and "does not exist" in field_error(r.text, "account")
    r = web.post("/instances/new", fields(pg, password="x" * 1100))
    assert r.status_code == 400 and "at most 1,024 bytes" in field_error(r.text, "password")
    assert "x" * 1100 not in r.text
    assert catalog_counts(service.home) == before


def test_test_connection_says_what_it_found_and_saves_nothing(service, pg, web):
    before = catalog_counts(service.home)
    values = fields(pg)
    r = web.post("/instances/test", values)
    assert r.status_code == 200
    assert re.search(r"Connected: PostgreSQL 18\.\d+\. Nothing was saved\.", r.text)
    assert pg.password not in r.text
    wrong = web.post("/instances/test", fields(pg, password="Wrong-Pa55word-xyz"))
    assert wrong.status_code == 200 and "Test failed, nothing was saved" in wrong.text
    assert 'password authentication failed for user "postgres"' in field_error(wrong.text, "password")
    assert "Wrong-Pa55word-xyz" not in wrong.text
    closed = web.post("/instances/test", fields(pg, port="1"))  # nothing listens there
    assert "Connection refused" in field_error(closed.text, "host") or "connection" in field_error(
        closed.text, "host").lower()
    assert catalog_counts(service.home) == before


def test_ssl_with_a_ca_file_through_the_form(service, api, pg_ssl, test_ca, other_ca, web):
    """An SSL-only server: the CA file verifies it; another CA's file, or no SSL, is refused where it
    belongs, in PostgreSQL's (or libpq's) words."""
    before = catalog_counts(service.home)
    ssl = fields(pg_ssl, port=str(pg_ssl.port), password=pg_ssl.password, version="15", ssl="on",
                 ssl_ca=str(test_ca.ca_cert))
    r = web.post("/instances/test", ssl)
    assert re.search(r"Connected: PostgreSQL \d+\.\d+\. Nothing was saved\.", r.text), r.text[-2000:]
    wrong = web.post("/instances/test", {**ssl, "ssl_ca": str(other_ca.ca_cert)})
    assert "certificate verify failed" in field_error(wrong.text, "ssl_ca")
    plain = web.post("/instances/test", {**ssl, "ssl": "", "ssl_ca": ""})
    assert "no encryption" in field_error(plain.text, "host")
    assert catalog_counts(service.home) == before
    r = web.post("/instances/new", ssl)
    assert r.status_code == 303, r.text[-2000:]
    iid = instance_id_of(r.headers["location"])
    page = web.get(f"/instances/{iid}").text
    assert f"<dt>SSL</dt><dd>on, verified with {test_ca.ca_cert}</dd>" in page
    assert api.get(f"/Instance/{iid}").json()["instanceProperties"][0]["postGreSQLInstance"]["sslOpt"] == {
        "sslEnabled": True, "sslCa": str(test_ca.ca_cert)}
    api.delete(f"/Instance/{iid}")


# -- the instance page and its actions -------------------------------------------------------------------


@pytest.fixture()
def backed_up(api, pg) -> dict[str, Any]:
    """An instance of ``pg`` registered through the API, its first backup completed."""
    entity, job_id = register(api, pg, unique("page"))
    assert api.wait_job(job_id)["status"] == "Completed"
    return entity


def test_back_up_now_queues_a_backup_and_shows_its_job(api, web, backed_up):
    iid = backed_up["instanceId"]
    r = web.post(f"/instances/{iid}/backup")
    assert r.status_code == 303
    job = api.job(job_of(r.headers["location"]))
    assert job["jobType"] == "Backup" and job["subclient"]["instanceId"] == iid
    assert job["userName"]["userName"] == "admin"
    assert api.wait_job(job["jobId"])["status"] == "Completed"
    page = web.get(f"/instances/{iid}").text
    assert "2 restore points" in page
    # the trend now has two sizes per database
    row = re.search(r"<tr>\s*<td>postgres</td>(.*?)</tr>", page, re.S).group(1)
    assert re.search(r'<span class="spark" aria-hidden="true">[▁-█]{2}</span>', row), row


def test_run_a_drill_on_the_newest_restore_point(api, web, backed_up):
    iid = backed_up["instanceId"]
    point = api.get("/RestorePoints", params={"instanceId": iid}).json()["restorePoints"][0]
    page = web.get(f"/instances/{iid}").text
    assert f'name="point" value="{point["restorePointId"]}"' in page
    r = web.post(f"/instances/{iid}/drill", {"point": str(point["restorePointId"])})
    assert r.status_code == 303
    job = api.wait_job(job_of(r.headers["location"]), timeout=180)
    assert job["jobType"] == "Verify" and job["status"] == "Completed", job
    detail = api.get(f"/RestorePoints/{point['restorePointId']}").json()
    assert detail["drill"]["status"] == "Passed"
    row = re.search(rf'<tr id="point-{point["restorePointId"]}">(.*?)</tr>', web.get(f"/instances/{iid}").text, re.S)
    assert "Passed" in row.group(1)


def test_a_drill_of_another_instances_point_or_of_none_is_refused(api, web, backed_up, pg):
    other, job_id = register(api, pg, unique("other"))
    assert api.wait_job(job_id)["status"] == "Completed"
    theirs = api.get("/RestorePoints", params={"instanceId": other["instanceId"]}).json()["restorePoints"][0]
    before = jobs_total(api)
    r = web.post(f"/instances/{backed_up['instanceId']}/drill", {"point": str(theirs["restorePointId"])})
    assert r.status_code == 404 and "is not one of instance" in field_error(r.text, "drill")
    r = web.post(f"/instances/{backed_up['instanceId']}/drill", {"point": ""})
    assert r.status_code == 400 and "no restore point was chosen" in field_error(r.text, "drill")
    assert jobs_total(api) == before


def test_move_to_another_plan(api, web, backed_up, tmp_path):
    plan = unique("gold")
    r = api.post("/V2/Plan", json={"planName": plan, "schedule": {"rpoMinutes": 60},
                                   "destinations": [{"kind": "local", "path": str(tmp_path / "gold")}]})
    assert r.status_code == 200, r.text
    iid = backed_up["instanceId"]
    assert f"<option>{plan}</option>" in web.get(f"/instances/{iid}").text
    r = web.post(f"/instances/{iid}/plan", {"plan": plan})
    assert r.status_code == 303 and r.headers["location"] == f"/instances/{iid}?done=moved"
    assert api.get(f"/Instance/{iid}").json()["instanceProperties"][0]["planEntity"]["planName"] == plan
    page = web.get(r.headers["location"]).text
    assert "Moved: its next backups follow the plan shown here." in page
    assert re.search(rf"<dt>Plan</dt><dd>{plan}</dd>", page)
    r = web.post(f"/instances/{iid}/plan", {"plan": "no-such-plan"})
    assert r.status_code == 404 and "plan 'no-such-plan' does not exist" in field_error(r.text, "plan")
    assert api.get(f"/Instance/{iid}").json()["instanceProperties"][0]["planEntity"]["planName"] == plan


def test_delete_keeping_the_backups(api, web, backed_up):
    iid = backed_up["instanceId"]
    confirm = web.get(f"/instances/{iid}/delete")
    assert confirm.status_code == 200
    assert re.search(r'<strong id="point-count">1 restore point</strong>', confirm.text)
    assert "Its 1 restore point stays: it can still be restored" in confirm.text
    assert "Its 1 restore point (1 copy) is marked for deletion now and removed by a Data Aging job" in confirm.text
    r = web.post(f"/instances/{iid}/delete", {"backups": "keep"})
    assert r.status_code == 303 and r.headers["location"] == f"/instances/{iid}/deleted"
    assert api.get(f"/Instance/{iid}").status_code == 404
    assert api.get("/RestorePoints", params={"instanceId": iid}).json()["totalRecords"] == 1
    gone = web.get(r.headers["location"]).text
    assert "Its 1 restore point is kept" in gone
    assert web.get(f"/instances/{iid}").status_code == 404


def test_delete_with_the_backups(api, web, backed_up):
    iid = backed_up["instanceId"]
    confirm = web.get(f"/instances/{iid}/delete").text
    assert "Delete it and its backups" in confirm
    assert "Its 1 restore point (1 copy) is marked for deletion now" in confirm
    r = web.post(f"/instances/{iid}/delete", {"backups": "delete"})
    assert r.status_code == 303
    aging = api.wait_job(job_of(r.headers["location"]))
    assert aging["jobType"] == "DataAging" and aging["status"] == "Completed", aging
    assert api.get(f"/Instance/{iid}").status_code == 404
    assert api.get("/RestorePoints", params={"instanceId": iid}).json()["totalRecords"] == 0


def test_delete_without_a_choice_changes_nothing(api, web, backed_up):
    iid = backed_up["instanceId"]
    r = web.post(f"/instances/{iid}/delete", {"backups": "maybe"})
    assert r.status_code == 400 and "choose whether its backups are kept or deleted" in r.text
    assert api.get(f"/Instance/{iid}").status_code == 200


def test_an_unknown_instance_is_a_404_page(web):
    huge = "9" * 30  # (beyond any id the catalog can hold)
    for path in ("/instances/999999", "/instances/999999/delete", "/instances/999999/deleted", f"/instances/{huge}",
                 f"/instances/{huge}/delete", f"/instances/{huge}/deleted"):
        r = web.get(path)
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), path
    for path, data in ((f"/instances/{huge}/backup", {}), (f"/instances/{huge}/plan", {"plan": "default"}),
                       (f"/instances/{huge}/delete", {"backups": "keep"}), ("/instances/1/drill", {"point": huge})):
        r = web.post(path, data)
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), path
    assert web.get("/instances/abc").status_code == 404


# -- refusals: no session, no CSRF value ------------------------------------------------------------------


def test_logged_out_and_forged_forms_change_nothing(service, api, pg, backed_up):
    iid = backed_up["instanceId"]
    plan_before = api.get(f"/Instance/{iid}").json()["instanceProperties"][0]["planEntity"]["planName"]
    point = api.get("/RestorePoints", params={"instanceId": iid}).json()["restorePoints"][0]["restorePointId"]
    actions = [("/instances/new", fields(pg)), ("/instances/test", fields(pg)), (f"/instances/{iid}/backup", {}),
               (f"/instances/{iid}/drill", {"point": str(point)}), (f"/instances/{iid}/plan", {"plan": "default"}),
               (f"/instances/{iid}/delete", {"backups": "delete"})]
    before, jobs_before = catalog_counts(service.home), jobs_total(api)
    anon = Console(service.url)
    for path in ("/instances/new", f"/instances/{iid}", f"/instances/{iid}/delete", f"/instances/{iid}/deleted"):
        r = anon.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    for path, data in actions:
        r = anon.post(path, data, csrf="x")
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    anon.close()
    web = Console(service.url)
    web.login("admin", service.admin_password)
    other = Console(service.url)
    other.login("admin", service.admin_password)
    for path, data in actions:
        for value in ("", "0" * 64, other.csrf):
            r = web.post(path, data, csrf=value)
            assert r.status_code == 403, (path, value)
            assert pg.password not in r.text
        r = web.post(path, data, headers={"Origin": "http://evil.example"})  # the right value, another site
        assert r.status_code == 403, path
    web.close()
    other.close()
    assert catalog_counts(service.home) == before and jobs_total(api) == jobs_before
    assert api.get(f"/Instance/{iid}").json()["instanceProperties"][0]["planEntity"]["planName"] == plan_before


# -- the pieces ---------------------------------------------------------------------------------------------


def test_the_size_trend_in_text():
    assert sparkline([]) == "" and sparkline([5, 5, 5]) == "▄▄▄"
    assert sparkline([1, 8]) == "▁█" and sparkline([0, 50, 100]) == "▁▅█"
    assert change([100]) == "" and change([100, 100]) == "same" and change([100, 112]) == "+12%"
    assert change([1000, 999]) == "-0.1%" and change([0, 5]) == "new data"


# -- in a real browser -----------------------------------------------------------------------------------


@pytest.fixture()
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("PGVAULT_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_register_in_the_browser_and_land_on_the_instance_page(chromium, service, api, pg, shots):
    context = chromium.new_context(viewport=DESKTOP, locale="en-GB")
    page = context.new_page()
    errors: list[str] = []
    # (a form refused is answered with the API's status, 400 here, which Chromium logs as a failed load)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and not m.text.startswith(
        "Failed to load resource: the server responded with a status of 400") else None)
    page.goto(service.url + "/login?next=/instances/new")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(service.admin_password)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url(service.url + "/instances/new")
    assert page.get_by_role("heading", name="Register an instance").is_visible()

    def fill(values: dict[str, str]) -> None:
        for name, label in (("host", "Host"), ("port", "Port"), ("name", "Instance name"),
                            ("version", "PostgreSQL version"), ("user", "Login user"), ("password", "Password")):
            page.get_by_label(label, exact=True).fill(values[name])

    # a wrong password: PostgreSQL's reason next to the password field, and the field left empty
    name = unique("browser")
    fill(fields(pg, name=name, password="Wrong-Pa55word-xyz"))
    page.get_by_role("button", name="Test connection").click()  # (htmx: the report and the errors only)
    page.wait_for_selector("#err-password")
    assert "Test failed, nothing was saved" in page.locator("#probe-result").inner_text()
    assert 'password authentication failed for user "postgres"' in page.locator("#err-password").inner_text()
    assert page.get_by_label("Password", exact=True).input_value() == "Wrong-Pa55word-xyz"  # still as typed
    with page.expect_navigation():  # a plain form post: the whole page comes back, refused
        page.get_by_role("button", name="Register and back up").click()
    page.wait_for_selector("#err-password")
    reason = page.locator("#err-password").inner_text()
    assert 'password authentication failed for user "postgres"' in reason
    assert page.get_by_label("Password", exact=True).get_attribute("aria-describedby").startswith("err-password")
    assert page.get_by_label("Password", exact=True).input_value() == ""
    assert page.get_by_label("Instance name").input_value() == name
    assert name not in instance_names(api)

    # the connection test (htmx: only its report is swapped in, the typed password stays in the form)
    page.get_by_label("Password", exact=True).fill(pg.password)
    page.get_by_role("button", name="Test connection").click()
    page.wait_for_selector("#probe-result")
    assert "Connected: PostgreSQL 18" in page.locator("#probe-result").inner_text()
    assert page.get_by_label("Password", exact=True).input_value() == pg.password
    assert page.locator("#err-password").count() == 0  # the earlier refusal's words went with it
    page.screenshot(path=shots / "register.png", full_page=True)
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1
    page.set_viewport_size(DESKTOP)

    page.get_by_role("button", name="Register and back up").click()
    page.wait_for_url(re.compile(re.escape(service.url) + r"/instances/\d+\?done=registered"))
    assert page.get_by_role("heading", name=name).is_visible()
    instance_id = instance_id_of(page.url.removeprefix(service.url))
    assert name in instance_names(api)
    # its first backup completes while the page is open (the live part refreshes)
    page.locator("#restore-points tr[id^=point-]").first.wait_for(timeout=120_000)
    assert "Completed" in page.locator("#jobs").inner_text()
    assert page.get_by_role("button", name="Run a drill").is_enabled()  # refreshed with the tables
    page.screenshot(path=shots / "instance.png", full_page=True)
    page.set_viewport_size(PHONE)  # nothing but the tables' own scrollers is wider than a phone
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1
    assert api.get("/RestorePoints", params={"instanceId": instance_id}).json()["totalRecords"] >= 1
    assert errors == [], errors
    context.close()
