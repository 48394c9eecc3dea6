"""The console's Users, Audit trail and My account pages over real HTTP against a real `pgvault serve`:
each action through its form, checked through the API; refusals in words; roles that may not see them."""

from __future__ import annotations

import html
import json
import re
import uuid

import pytest
from tests.support.console import Console
from tests.support.service import b64

PW = "Console-Pa55word-42"


@pytest.fixture()
def console(service):
    c = Console(service.url)
    assert c.login("admin", service.admin_password).status_code == 303
    yield c
    c.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def field_error(page: str, key: str) -> str | None:
    m = re.search(rf'<p class="field-error" id="err-{re.escape(key)}">([^<]*)</p>', page)
    return html.unescape(m.group(1)) if m else None


def api_user(api, name: str) -> dict | None:
    return next((u for u in api.get("/User").json()["users"] if u["userEntity"]["userName"] == name), None)


def test_users_through_the_forms(service, api, console):
    name = unique("cu")
    r = console.post("/users/new", {"userName": name, "role": "Viewer", "password": "short", "password2": "short"})
    assert r.status_code == 400 and "too short" in (field_error(r.text, "password") or ""), r.text
    assert "short" not in re.findall(r'type="password" value="([^"]*)"', r.text)
    r = console.post("/users/new", {"userName": name, "role": "Viewer", "password": PW, "password2": PW + "x"})
    assert r.status_code == 400 and "differ" in (field_error(r.text, "password2") or "")
    assert api_user(api, name) is None
    r = console.post("/users/new", {"userName": name, "role": "Operator", "password": PW, "password2": PW})
    assert r.status_code == 303, r.text
    uid = api_user(api, name)["userEntity"]["userId"]
    assert r.headers["location"] == f"/users/{uid}?done=created"
    assert api_user(api, name)["role"]["roleName"] == "Operator"
    assert name in console.get("/users").text

    assert console.post(f"/users/{uid}/role", {"role": "Restore operator"}).status_code == 303
    assert api_user(api, name)["role"]["roleName"] == "Restore operator"
    assert console.post(f"/users/{uid}/disable").status_code == 303
    assert api_user(api, name)["enableUser"] is False
    assert console.post(f"/users/{uid}/enable").status_code == 303
    assert api_user(api, name)["enableUser"] is True
    new = PW + "-reset"
    assert console.post(f"/users/{uid}/password", {"newPassword": new, "newPassword2": new}).status_code == 303
    service.login(name, new).close()  # logs in with the new one (login() asserts it)
    assert "Delete user" in console.get(f"/users/{uid}/delete").text
    assert console.post(f"/users/{uid}/delete").status_code == 303
    assert api_user(api, name) is None


def test_refusals_in_words_and_bad_csrf(service, api, console):
    admin_id = api_user(api, "admin")["userEntity"]["userId"]
    r = console.post(f"/users/{admin_id}/disable")
    assert r.status_code == 400 and "cannot disable yourself" in (field_error(r.text, "enabled") or ""), r.text
    r = console.post(f"/users/{admin_id}/delete")
    assert r.status_code == 400 and "cannot delete yourself" in html.unescape(r.text)
    assert api_user(api, "admin")["enableUser"] is True
    name = unique("csrf")
    assert console.post("/users/new", {"userName": name, "role": "Viewer", "password": PW, "password2": PW},
                        csrf="wrong").status_code == 403
    assert api_user(api, name) is None
    anon = Console(service.url)
    r = anon.post("/users/new", {"userName": name, "role": "Viewer", "password": PW, "password2": PW})
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert api_user(api, name) is None
    anon.close()


def test_operator_sees_no_admin_pages_and_changes_own_password(service, api):
    name = unique("op")
    r = api.post("/User", json={"users": [{"userEntity": {"userName": name}, "password": b64(PW), "role": "Operator"}]})
    assert r.status_code == 200, r.text
    c = Console(service.url)
    assert c.login(name, PW).status_code == 303
    assert c.get("/audit").status_code == 403 and c.get("/users").status_code == 403
    home = c.get("/").text
    assert 'href="/users"' not in home and 'href="/audit"' not in home and 'href="/account"' in home
    r = c.post("/account/password", {"currentPassword": "wrong-one-x", "newPassword": PW + "2",
                                     "newPassword2": PW + "2"})
    assert r.status_code == 400 and field_error(r.text, "currentPassword"), r.text
    r = c.post("/account/password", {"currentPassword": PW, "newPassword": "tiny", "newPassword2": "tiny"})
    assert r.status_code == 400 and "too short" in (field_error(r.text, "newPassword") or "")
    new = PW + "-new"
    r = c.post("/account/password", {"currentPassword": PW, "newPassword": new, "newPassword2": new})
    assert r.status_code == 303
    assert "this one" in c.get("/account").text
    c2 = Console(service.url)
    assert c2.login(name, PW).status_code != 303 and c2.login(name, new).status_code == 303
    r = c2.post("/account/logout-everywhere", {"everywhere": "yes"})
    assert r.status_code == 303 and c.get("/account").status_code == 303  # every session ended
    c.close()
    c2.close()


def test_audit_page_filters_and_export(service, api, console, tmp_path):
    name = unique("aud")
    api.post("/User", json={"users": [{"userEntity": {"userName": name}, "password": b64(PW), "role": "Operator"}]})
    op = service.login(name, PW)
    plan = unique("audit-plan")
    r = op.post("/V2/Plan", json={"planName": plan, "storage": {"path": str(tmp_path / "p")}})
    assert r.status_code == 200, r.text
    pid = str(r.json()["plan"]["summary"]["plan"]["planId"])
    page = console.get("/audit", params={"user": name, "action": "create_plan"})
    assert page.status_code == 200 and f'>{pid}</a>' in page.text and "create_plan" in page.text
    assert re.search(rf'<a href="/audit\?user={name}">{name}</a>', page.text)
    assert "No record matches" in console.get("/audit", params={"user": name, "outcome": "failure"}).text
    r = console.get("/audit", params={"since": "not-a-date"})
    assert r.status_code == 400 and field_error(r.text, "since")
    r = console.get("/audit/export", params={"user": name})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert lines and all(x["user"]["userName"] == name for x in lines)
    assert any(x["action"] == "create_plan" and x["resourceId"] == pid for x in lines)
    op.close()
