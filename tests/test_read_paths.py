"""The API's read paths (SQL rows, not ORM objects) answer exactly what they answered before, on both
catalog dialects; paging, ?clientId= and nextBackupTime through a real ``pgvault serve``; the token cache
and the path cache."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from tests.support.readpaths import NOW, seed

import pgvault.schemas.jobs as job_schemas
from pgvault.api.instances import properties_body
from pgvault.api.paths import CanonicalPaths
from pgvault.catalog.db import Catalog
from pgvault.catalog.models import AuthToken, Instance, User
from pgvault.errors import NotAuthenticated, NotFound
from pgvault.schemas.jobs import job_details, job_response, job_summary
from pgvault.services import auth, instances, jobs

# Recorded with the ORM read paths (list_live + selectinload, get_job + joinedload) on the catalog of
# tests/support/readpaths.py, before they were replaced.
GOLDEN = json.loads((Path(__file__).parent / "data" / "read_paths.json").read_text())


def as_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


@pytest.fixture()
def seeded(catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> tuple[Catalog, dict[str, list[int]]]:
    monkeypatch.setattr(job_schemas, "utcnow", lambda: NOW)  # a running job's elapsed time
    monkeypatch.setattr(jobs, "utcnow", lambda: NOW)  # POST /Jobs' look-up time
    return catalog, seed(catalog)


# Every read path runs two ways: prepared on the driver's cursor (Catalog.rows, what the API uses) and
# through SQLAlchemy (a read Session: what other callers use).
READERS = ["rows", "session"]


def open_reader(cat, reader: str):
    return cat.rows() if reader == "rows" else cat.transaction(write=False)


@pytest.mark.parametrize("reader", READERS)
def test_instance_pages_are_what_they_were(seeded, reader):
    cat, ids = seeded
    with open_reader(cat, reader) as conn:
        for page in GOLDEN["pages"]:
            rows = instances.live_rows(conn, page["clientId"], offset=page["offset"], limit=page["limit"])
            assert as_json(properties_body(rows, NOW)) == page["body"], page
        for iid in ids["instances"]:
            assert as_json(properties_body([instances.live_row(conn, iid)], NOW)) == GOLDEN["one"][str(iid)]
        for iid in [*ids["deleted"], 999_999]:
            with pytest.raises(NotFound):
                instances.live_row(conn, iid)


def test_the_golden_pages_cover_what_the_shape_depends_on():
    """The recorded answers hold the cases the SQL has to get right."""
    everything = GOLDEN["pages"][0]["body"]["instanceProperties"]
    by_id = {i["instance"]["instanceId"]: i for i in everything}
    assert len(by_id) == 10 and not {302, 305, 306, 311} & set(by_id)  # deleted ones are left out
    assert by_id[303]["defaultBackupsetId"] == 504 and by_id[303]["defaultSubclientId"] == 704  # the first of two
    assert by_id[307]["defaultBackupsetId"] == 0 and by_id[307]["defaultSubclientId"] == 0  # none
    assert by_id[310]["nextBackupTime"] == 0  # a plan whose zone does not exist
    assert by_id[301]["nextBackupTime"] > int(NOW.timestamp())  # running: the next slot after now
    assert by_id[300]["nextBackupTime"] == int(NOW.timestamp())  # overdue: now
    assert by_id[300]["postGreSQLInstance"]["sslOpt"] == {"sslEnabled": True, "sslCa": "/etc/ca.pem"}
    assert by_id[300]["postGreSQLInstance"]["port"] == "[2001:db8::7]:5432"
    assert {i["instance"]["clientId"] for i in GOLDEN["pages"][4]["body"]["instanceProperties"]} == {101}


@pytest.mark.parametrize("reader", READERS)
def test_jobs_are_what_they_were(seeded, reader):
    cat, ids = seeded
    with open_reader(cat, reader) as conn:
        for jid in ids["jobs"]:
            view = jobs.job_view(conn, jid)
            assert as_json(job_response(view)) == GOLDEN["jobs"][str(jid)], jid
            assert as_json(job_details(view)) == GOLDEN["details"][str(jid)], jid
        with pytest.raises(NotFound):
            jobs.job_view(conn, 999_999)
    with cat.transaction(write=False) as conn:
        for listed in GOLDEN["lists"]:
            views, total = jobs.list_jobs(conn, **listed["query"])
            body = {"totalRecordsWithoutPaging": total, "jobs": [{"jobSummary": job_summary(v)} for v in views]}
            assert as_json(body) == listed["body"], listed["query"]
    summary = GOLDEN["jobs"]["901"]["jobs"][0]["jobSummary"]
    assert [d["name"] for d in summary["databases"]] == ["app", 'broken "db"']
    assert summary["globals"]["name"] == "(globals)" and summary["files"][0]["name"] == "manifest.json"
    assert GOLDEN["jobs"]["906"]["jobs"][0]["jobSummary"]["databases"][0]["target"] == "app_copy"


def test_the_scheduler_reads_the_same_due_instances_as_rows(catalog):
    """due_instances reads rows now: the overdue live instances of the seeded catalog, nothing else."""
    from pgvault.scheduler import due_instances

    seed(catalog)
    with catalog.transaction(write=False) as s:
        due = due_instances(s, NOW)
    # hourly plans: 300 (last backup 90 min ago), 304 (2 days ago), 308 (killed 30 h ago), 312 (never
    # backed up); not 301 (its backup runs); the cron and window plans are not due at noon UTC, and 310's
    # zone does not exist (logged, left out).
    assert due == [300, 304, 308, 312]


# -- the token cache -------------------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_token(cat: Catalog, expires: dt.datetime) -> str:
    token = auth.TOKEN_PREFIX + "ab" * 32
    with cat.transaction(write=True) as s:
        user = User(username="alice", password_hash="x")
        s.add(user)
        s.flush()
        s.add(AuthToken(token_hash=auth._token_hash(token), user_id=user.id, expires_at=expires))
    return token


@pytest.mark.parametrize("reader", READERS)
def test_a_cached_token_saves_the_catalog_and_is_forgotten_on_logout(catalog, reader):
    clock = Clock()
    cache = auth.TokenCache(5, clock=clock)
    token = make_token(catalog, dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    assert cache.get(token) is None
    with open_reader(catalog, reader) as conn:
        user = auth.authenticate(conn, token, cache)
    assert user.username == "alice" and cache.get(token) == user and cache.get(" " + token + " ") == user
    with catalog.transaction(write=True) as s:  # logged out, here
        auth.logout(s, token)
    cache.forget(token)
    assert cache.get(token) is None
    with open_reader(catalog, reader) as conn, pytest.raises(NotAuthenticated, match="logged out"):
        auth.authenticate(conn, token, cache)
    # a check that read the catalog before the logout committed cannot put the token back
    cache.put(auth._token_hash(token), user, dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    assert cache.get(token) is None
    clock.now += 6
    cache.put(auth._token_hash(token), user, dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    assert cache.get(token) == user  # (only a stale reader could do this, and only after the TTL)


@pytest.mark.parametrize("reader", READERS)
def test_a_cached_entry_lives_at_most_its_ttl_and_never_past_the_tokens_expiry(catalog, reader):
    clock = Clock()
    cache = auth.TokenCache(5, clock=clock)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    token = make_token(catalog, soon)
    with open_reader(catalog, reader) as conn:
        auth.authenticate(conn, token, cache)
    assert cache.get(token) is not None
    clock.now += 5
    assert cache.get(token) is None and len(cache) == 0  # the TTL ran out
    with open_reader(catalog, reader) as conn:
        auth.authenticate(conn, token, cache)
    assert cache.get(token) is not None
    cache.put(auth._token_hash(token), auth.AuthUser(1, "alice"), dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    assert cache.get(token) is None  # expired: refused even though cached moments ago
    with catalog.transaction(write=True) as s:
        s.execute(update(AuthToken).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    with open_reader(catalog, reader) as conn, pytest.raises(NotAuthenticated, match="expired"):
        auth.authenticate(conn, token, cache)


def test_the_token_cache_is_bounded_and_can_be_turned_off():
    cache = auth.TokenCache(5, max_entries=3)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    for n in range(5):
        cache.put(auth._token_hash(f"t{n}"), auth.AuthUser(n, f"u{n}"), later)
    assert len(cache) == 3 and cache.get("t0") is None and cache.get("t4") == auth.AuthUser(4, "u4")
    off = auth.TokenCache(0)
    off.put(auth._token_hash("t"), auth.AuthUser(1, "u"), later)
    assert off.get("t") is None and len(off) == 0


def test_through_the_api_a_logged_out_token_stops_at_once(service):
    api = service.login()
    for _ in range(3):  # cached now
        assert api.get("/Client").status_code == 200
    assert api.post("/Logout").status_code == 200
    r = api.get("/Client")
    assert r.status_code == 401 and "logged out" in r.json()["errorMessage"]
    api.close()


def test_through_the_api_a_renewed_token_stops_at_once(service):
    api = service.login()
    assert api.get("/Client").status_code == 200  # cached
    r = api.post("/RenewLoginToken", json={})
    assert r.status_code == 200, r.text
    new = r.json()["token"]
    assert api.get("/Client").status_code == 401
    api.token = new
    assert api.get("/Client").status_code == 200
    api.close()


# -- the paths' cache ------------------------------------------------------------------------------------

def test_canonical_paths_are_the_same_cached_or_not():
    paths = CanonicalPaths(lambda *a: None, ["/api", "/api/Job/{job_id}", "/api/Job/Summary", "/api/V4/Credential"])
    for raw, want in [("/API//job/7", "/api/Job/7"), ("/api/job/summary/", "/api/Job/Summary"),
                      ("/api/v4/credential", "/api/V4/Credential"), ("/nothing", "/nothing")]:
        for _ in range(2):  # computed, then remembered
            assert paths.canonical(raw) == want
    long = "/api/job/" + "9" * 500
    assert paths.canonical(long) == "/api/Job/" + "9" * 500 and long not in paths._known


# -- through a real pgvault serve --------------------------------------------------------------------------

def test_instance_pages_with_deleted_instances_client_filter_and_next_backup_time(service, api):
    """Rows written straight into the service's catalog (registering needs reachable servers): pages
    skip deleted instances, ?clientId= filters, each entry equals GET /Instance/{id}, and
    nextBackupTime follows the plan."""
    cat = Catalog(f"sqlite:///{service.home / 'catalog.db'}")
    try:
        with cat.transaction(write=True) as s:
            from pgvault.catalog.models import Backupset, CloudAccount, Plan, Subclient

            account = CloudAccount(name="paging-acc", name_key="paging-acc")
            other = CloudAccount(name="paging-other", name_key="paging-other")
            plan = Plan(name="paging-hourly", name_key="paging-hourly", rpo_minutes=60)
            s.add_all([account, other, plan])
            s.flush()
            created = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
            made = []
            for n in range(12):
                inst = Instance(cloud_account_id=(account if n % 2 else other).id, plan_id=plan.id, name=f"pg-{n}",
                                name_key=f"pg-{n}", host="h", port=5432, maintenance_db="postgres", username="u",
                                password_sealed=b"x", declared_version="16", server_version="16.1",
                                server_version_num=160001, created_at=created,
                                deleted_at=created if n in (3, 4, 9) else None)
                s.add(inst)
                s.flush()
                bs = Backupset(instance_id=inst.id)
                s.add(bs)
                s.flush()
                s.add(Subclient(instance_id=inst.id, backupset_id=bs.id))
                made.append((inst.id, n))
            account_id = account.id
    finally:
        cat.dispose()
    live = [iid for iid, n in made if n not in (3, 4, 9)]
    everything = [i["instance"]["instanceId"] for i in api.get("/Instance").json()["instanceProperties"]]
    assert [i for i in everything if i in {iid for iid, _ in made}] == live
    start = everything.index(live[0])
    pages = []
    for offset in range(start, start + len(live), 4):
        r = api.get("/Instance", params={"offset": offset, "limit": 4})
        assert r.status_code == 200
        pages += r.json()["instanceProperties"]
    assert [p["instance"]["instanceId"] for p in pages][: len(live)] == live
    for p in pages[: len(live)]:
        one = api.get(f"/Instance/{p['instance']['instanceId']}").json()["instanceProperties"][0]
        assert one == p
        assert p["nextBackupTime"] == p["createdTime"] + 3600  # never backed up: registration + RPO
        assert p["defaultSubclientId"] > 0 and p["planEntity"]["planName"] == "paging-hourly"
    mine = api.get("/Instance", params={"clientId": account_id}).json()["instanceProperties"]
    assert [i["instance"]["instanceId"] for i in mine] == [iid for iid, n in made if n % 2 and n != 3 and n != 9]
    assert api.get("/Instance", params={"clientId": account_id, "offset": 2, "limit": 2}).json() == {
        "instanceProperties": mine[2:4]}
    deleted = next(iid for iid, n in made if n == 4)
    assert api.get(f"/Instance/{deleted}").status_code == 404
    for bad in ({"offset": -1}, {"limit": 0}, {"limit": "x"}, {"clientId": "abc"}, {"offset": 2**70}):
        r = api.get("/Instance", params=bad)
        assert r.status_code == 400 and r.json()["errorCode"] != 0, (bad, r.text)
    assert api.get("/Instance", params={"offset": 10**6, "limit": 5}).json() == {"instanceProperties": []}


def test_job_reads_refuse_bad_ids_with_the_envelope(api):
    for path, status in (("/Job/0", 404), ("/Job/-3", 404), ("/Job/abc", 400), (f"/Job/{2**70}", 400),
                         ("/Instance/abc", 400), (f"/Instance/{2**70}", 400)):
        r = api.get(path)
        assert r.status_code == status and r.json()["errorCode"] != 0, (path, r.text)


def test_restore_points_filter_by_database_and_page_in_sql(catalog):
    """The database filter runs in SQL on both dialects (a JSON list), so paging stays in SQL too."""
    import datetime as dt

    from pgvault.catalog.models import Job, RestorePoint
    from pgvault.services.restore import list_points

    ids = seed(catalog)
    names = [["app", 'broken "db"'], ["données", "50%_off"], ["app"], ["application"]]
    with catalog.transaction(write=True) as s:
        template = s.get(Job, ids["jobs"][0])
        for n, databases in enumerate(names):
            job = Job(job_type="Backup", instance_id=template.instance_id, subclient_id=template.subclient_id,
                      status="Completed", started_at=NOW + dt.timedelta(seconds=n))
            s.add(job)
            s.flush()
            point = RestorePoint(job_id=job.id, instance_id=job.instance_id, prefix=f"p/{n}", manifest_sha256="0" * 64,
                                 server_version="16.4", total_bytes=1, database_count=len(databases),
                                 databases=databases, created_at=NOW + dt.timedelta(seconds=n))
            s.add(point)
    with catalog.transaction(write=False) as s:
        def count(db, **kw):
            return list_points(s, instance_id=None, database=db, start=None, end=None, offset=0, limit=100, **kw)[0]
        assert count("app") == 2 and count("application") == 1 and count("ap") == 0
        assert count('broken "db"') == 1 and count("données") == 1 and count("50%_off") == 1 and count("50") == 0
        total, page = list_points(s, instance_id=None, database="app", start=None, end=None, offset=1, limit=1)
        assert total == 2 and len(page) == 1
