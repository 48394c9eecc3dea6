"""The console's foundation over real HTTP against a real `pgvault serve`: the session (a login token in an
HttpOnly cookie), CSRF on every form, logout ending the session in the catalog, every page closed to a
browser without a session, the API reference without a CDN, and the fleet overview's standings."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import httpx
import pytest
from sqlalchemy import insert, select
from starlette.routing import Mount
from tests.support.console import Console, csrf_of
from tests.support.flows import register

from pgvault import console
from pgvault.app import create_app
from pgvault.catalog.models import Backupset, CloudAccount, Instance, Job, Plan, RestorePoint, Subclient
from pgvault.services import fleet
from pgvault.services.bootstrap import bootstrap


@pytest.fixture()
def browser_like(service):
    c = Console(service.url)
    yield c
    c.close()


def test_a_session_is_a_login_token_in_a_private_cookie(service, browser_like):
    r = browser_like.login("admin", service.admin_password)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("pgvault_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # served over plain HTTP here; over TLS it is Secure (session.secure)
    token = browser_like.http.cookies["pgvault_session"].strip('"')
    # the same token the API takes
    assert httpx.post(service.url + "/commandcenter/api/WhoAmI", headers={"Authtoken": token}).json()["user"][
        "userName"] == "admin"
    home = browser_like.get("/")
    assert home.status_code == 200 and "<h1>Fleet</h1>" in home.text
    assert home.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in home.headers["content-security-policy"]
    assert token not in home.text and service.admin_password not in home.text


def test_a_wrong_password_is_said_in_words_and_sets_no_session(service, browser_like):
    r = browser_like.login("admin", "not-the-password")
    assert r.status_code == 401
    assert "invalid user name or password" in r.text
    assert "pgvault_session" not in browser_like.http.cookies
    assert browser_like.get("/").status_code == 303


def test_the_login_form_needs_its_own_csrf_value(service):
    c = Console(service.url)
    c.http.get("/login")
    r = c.http.post("/login", data={"username": "admin", "password": service.admin_password, "csrf": "forged"})
    assert r.status_code == 403 and "pgvault_session" not in c.http.cookies
    # a form posted from another site, with a value it cannot have read, is refused the same way
    fresh = Console(service.url)
    value = csrf_of(fresh.http.get("/login").text)
    r = fresh.http.post("/login", data={"username": "admin", "password": service.admin_password, "csrf": value},
                        headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "pgvault_session" not in fresh.http.cookies
    c.close()
    fresh.close()


@pytest.mark.parametrize("target, landing", [("/jobs", "/jobs"), ("//evil.example/x", "/"),
                                             ("https://evil.example", "/"), ("/\\evil.example", "/")])
def test_after_login_the_console_goes_back_to_its_own_pages_only(service, target, landing):
    c = Console(service.url)
    value = csrf_of(c.http.get("/login", params={"next": target}).text)
    r = c.http.post("/login", data={"username": "admin", "password": service.admin_password, "csrf": value,
                                    "next": target})
    assert r.status_code == 303 and r.headers["location"] == landing
    c.close()


def test_a_form_without_this_sessions_csrf_value_changes_nothing(service, browser_like):
    browser_like.login("admin", service.admin_password)
    token = browser_like.http.cookies["pgvault_session"].strip('"')
    for value in ("", "0" * 64, csrf_of(_other_session_page(service))):
        r = browser_like.post("/logout", csrf=value)
        assert r.status_code == 403, value
        assert "did not come from this console session" in r.text
    r = browser_like.post("/logout", headers={"Origin": "http://evil.example"})  # the right value, wrong site
    assert r.status_code == 403
    assert httpx.post(service.url + "/commandcenter/api/WhoAmI", headers={"Authtoken": token}).status_code == 200


def _other_session_page(service) -> str:
    other = Console(service.url)
    other.login("admin", service.admin_password)
    try:
        return other.get("/").text
    finally:
        other.close()


def test_logout_ends_the_session_in_the_catalog(service, browser_like):
    browser_like.login("admin", service.admin_password)
    token = browser_like.http.cookies["pgvault_session"].strip('"')
    r = browser_like.post("/logout")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    # the cookie is gone, and the token itself no longer works anywhere, even if someone kept it
    assert "pgvault_session" not in browser_like.http.cookies
    kept = httpx.Client(base_url=service.url, cookies={"pgvault_session": token})
    assert kept.get("/").status_code == 303
    assert httpx.post(service.url + "/commandcenter/api/WhoAmI", headers={"Authtoken": token}).status_code == 401
    kept.close()


def _console_routes() -> list[tuple[str, str]]:
    """Every (method, path) of the console, from the application's own route table, ids filled in."""
    app = create_app()
    out = []
    for route in app.router.routes:
        if isinstance(route, Mount) or not console.is_console_path(route.path):
            continue
        if route.path in ("/login", "/docs"):
            continue  # public: the login page itself, and the API reference (the document is public too)
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                out.append((method, re.sub(r"\{[^}]+\}", "1", route.path)))
    return out


def test_every_console_page_and_action_needs_a_session(service, api):
    routes = _console_routes()
    assert ("GET", "/") in routes and ("POST", "/logout") in routes
    before = api.post("/Jobs", json={"category": 0}).json()["totalRecordsWithoutPaging"]
    anon = httpx.Client(base_url=service.url, follow_redirects=False)
    for method, path in routes:
        r = anon.request(method, path, data={"csrf": "x"} if method == "POST" else None)
        assert r.status_code == 303, (method, path, r.status_code)
        assert r.headers["location"].startswith("/login"), (method, path)
        # a live part of a page asks htmx to send the browser to the login page instead
        r = anon.request(method, path, headers={"HX-Request": "true"})
        assert r.status_code == 204 and r.headers["hx-redirect"] == "/login", (method, path)
    assert api.post("/Jobs", json={"category": 0}).json()["totalRecordsWithoutPaging"] == before
    anon.close()


def test_the_api_reference_needs_no_internet(service):
    page = httpx.get(service.url + "/docs")
    assert page.status_code == 200
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs and all(ref.startswith("/") for ref in refs), refs  # nothing from a CDN
    for ref in refs:
        if ref.startswith("/static/"):
            assert httpx.get(service.url + ref).status_code == 200, ref
    assert httpx.get(service.url + "/openapi.json").json()["info"]["title"] == "pgvault"
    assert httpx.get(service.url + "/redoc").status_code == 404  # FastAPI's CDN page is off


def test_an_unknown_console_page_is_a_page_and_an_unknown_api_path_stays_json(service):
    page = httpx.get(service.url + "/no-such-page")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "no such endpoint" in page.text
    api = httpx.get(service.url + "/commandcenter/api/NoSuchThing")
    assert api.status_code == 404 and api.json()["errorCode"] == 404


def test_the_fleet_overview_shows_a_backed_up_instance_within_its_rpo(service, api, pg, browser_like):
    entity, job_id = register(api, pg, "console-fleet")
    assert api.wait_job(job_id)["status"] == "Completed"
    browser_like.login("admin", service.admin_password)
    page = browser_like.get("/", params={"name": "console-fleet"}).text
    row = re.search(r'<tr class="state-(\w+)">\s*<td><a href="/instances/(\d+)">console-fleet</a>', page)
    assert row and row.group(1) == "ok" and int(row.group(2)) == entity["instanceId"]
    assert "within RPO" in page and f'href="/jobs/{job_id}">Completed' in page
    assert browser_like.get("/", params={"name": "console-fleet", "status": "late"}).text.count(
        "console-fleet</a>") == 0


# -- the standings, on a catalog of both dialects ---------------------------------------------------------


def _fleet(catalog, now: dt.datetime, tmp) -> None:
    """Six instances of the default plan (RPO 24 h): within, late, failed (within), never, never with a
    running first backup, and one of a second account and plan."""
    with catalog.transaction(write=True) as s:
        bootstrap(s, home=tmp, backups_dir=tmp / "backups", admin_password="x" * 16)
    with catalog.transaction(write=True) as s:
        account = s.scalar(select(CloudAccount.id))
        plan = s.scalar(select(Plan.id))
        s.add(CloudAccount(id=90, name="Other", name_key="other"))
        s.add(Plan(id=90, name="hourly", name_key="hourly", rpo_minutes=60))
        s.flush()
        specs = {  # id: (name, account, plan, [(backup start, status, makes a restore point)])
            10: ("ok-1", account, plan, [(now - dt.timedelta(hours=2), "Completed", True)]),
            11: ("late-1", account, plan, [(now - dt.timedelta(hours=30), "Completed", True)]),
            12: ("failed-1", account, plan, [(now - dt.timedelta(hours=3), "Completed", True),
                                             (now - dt.timedelta(hours=1), "Failed", False)]),
            13: ("never-1", account, plan, [(now - dt.timedelta(hours=1), "Failed", False)]),
            14: ("never-2", account, plan, [(now - dt.timedelta(minutes=1), "Running", False)]),
            15: ("other-1", 90, 90, [(now - dt.timedelta(minutes=20), "Completed", True)]),
        }
        job_id = 100
        for iid, (name, acc, pl, backups) in specs.items():
            s.execute(insert(Instance).values(
                id=iid, cloud_account_id=acc, plan_id=pl, name=name, name_key=name, host="h", port=5432,
                maintenance_db="postgres", username="u", password_sealed=b"x", ssl_enabled=False,
                declared_version="16", server_version="16.4", server_version_num=160004,
                created_at=now - dt.timedelta(days=3)))
            s.execute(insert(Backupset).values(id=iid, instance_id=iid))
            s.execute(insert(Subclient).values(id=iid, instance_id=iid, backupset_id=iid))
            for started, status, point in backups:
                job_id += 1
                s.execute(insert(Job).values(
                    id=job_id, job_type="Backup", status=status, instance_id=iid, subclient_id=iid,
                    started_at=started, ended_at=None if status == "Running" else started + dt.timedelta(minutes=5),
                    updated_at=started))
                if point:
                    s.execute(insert(RestorePoint).values(
                        job_id=job_id, instance_id=iid, prefix="p", manifest_sha256="0" * 64, server_version="16.4",
                        total_bytes=10, database_count=2, created_at=started))


def test_fleet_standings_worst_first_with_filters_and_pages(catalog, tmp_path):
    now = dt.datetime.now(dt.UTC)
    _fleet(catalog, now, tmp_path)
    with catalog.transaction(write=False) as s:
        everything = fleet.overview(s, now, limit=50)
        names = [r.name for r in everything.rows]
        states = {r.name: r.standing for r in everything.rows}
        assert names[0] == "late-1" and names[-1] in ("ok-1", "other-1")
        assert states == {"ok-1": "ok", "late-1": "late", "failed-1": "failed", "never-1": "never",
                          "never-2": "never", "other-1": "ok"}
        assert [names.index(n) for n in ("late-1", "never-1", "failed-1", "ok-1")] == sorted(
            names.index(n) for n in ("late-1", "never-1", "failed-1", "ok-1"))
        assert everything.counts == {"ok": 2, "late": 1, "failed": 1, "never": 2}
        assert everything.instances == 6 and everything.databases == 8
        late = next(r for r in everything.rows if r.name == "late-1")
        assert late.rpo == dt.timedelta(hours=24) and late.due is not None and late.due < now
        assert next(r for r in everything.rows if r.name == "never-2").last_job_status == "Running"
        assert all(r.next_backup is not None for r in everything.rows)

        other = fleet.overview(s, now, account="Other")
        assert [r.name for r in other.rows] == ["other-1"] and other.rows[0].rpo == dt.timedelta(hours=1)
        assert other.counts == everything.counts  # the tiles count the whole fleet, the table what matches
        assert [r.name for r in fleet.overview(s, now, plan="hourly").rows] == ["other-1"]
        assert {r.name for r in fleet.overview(s, now, name="NEVER").rows} == {"never-1", "never-2"}
        assert [r.name for r in fleet.overview(s, now, standing="failed").rows] == ["failed-1"]
        pages = [fleet.overview(s, now, offset=o, limit=4) for o in (0, 4)]
        assert [r.name for p in pages for r in p.rows] == names and pages[1].matching == 6


# -- roles: the console refuses what the API would, in words, and changes nothing -------------------------


def _declared_console_routes() -> list[tuple[str, str, object]]:
    """(method, path with unknown ids, capability) of every console route that needs a session."""
    from pgvault.domain import access

    app = create_app()
    out = []
    for route in app.router.routes:
        if isinstance(route, Mount) or not console.is_console_path(route.path):
            continue
        needed = access.capability_of(route.endpoint)
        if needed == access.PUBLIC:
            continue
        for method in sorted(route.methods or ()):
            if method != "HEAD" and route.path != "/logout":
                out.append((method, re.sub(r"\{[^}]+\}", "999999", route.path), needed))
    return out


@pytest.mark.parametrize("role", ["Viewer", "Restore operator", "Operator"])
def test_each_role_reaches_only_what_its_capabilities_allow(service, api, role):
    from tests.support.service import b64, catalog_counts

    from pgvault.domain.access import Role, allows

    name = f"console-{Role.parse(role).name.lower().replace('_', '-')}-{uuid.uuid4().hex[:4]}"
    password = "Role-Pa55word-" + uuid.uuid4().hex[:6]
    r = api.post("/User", json={"users": [{"userEntity": {"userName": name}, "password": b64(password),
                                           "role": role}]})
    assert r.status_code == 200, r.text
    c = Console(service.url)
    assert c.login(name, password).status_code == 303
    routes = _declared_console_routes()
    assert routes
    before = catalog_counts(service.home)
    for method, path, needed in routes:
        r = c.get(path) if method == "GET" else c.post(path)
        if allows(Role.parse(role), needed):
            assert r.status_code != 403, (role, method, path, r.text[:300])
        else:
            assert r.status_code == 403, (role, method, path, r.status_code)
            assert "may not do this" in r.text and needed.value in r.text, (role, path)
    assert catalog_counts(service.home) == before
    c.close()
