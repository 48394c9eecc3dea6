"""Roles and capabilities: every route of the application's own route table, declared and checked.

The matrix: every API route x every role (a login token and an API key of that role) x {no token, an
expired token, a revoked API key}, against a real
`pgvault serve`: the expected allow (anything but 401/403, never a 500) or deny (403 errorCode 11 for a
role, 401 for the rest), and on every deny the whole catalog (every row of every table) is unchanged.
Denials run first against real objects (a user, their session and key, the default plan and account, a
notification target), so that a missing check would have something to change.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from tests.support.service import BASE, Service, b64

from pgvault.app import PUBLIC, create_app
from pgvault.domain import access
from pgvault.domain.access import CAPABILITIES, Capability, Role

PASSWORD = "Long-enough pass 1"
USERS = {Role.VIEWER: "viewer1", Role.RESTORE_OPERATOR: "restorer1", Role.OPERATOR: "operator1",
         Role.ADMINISTRATOR: "admin2"}


def api_routes() -> list[tuple[str, str, Any]]:
    """(method, path, declared capability) of every API route the application serves (HEAD twins aside)."""
    out = []
    for route in create_app().router.routes:
        if isinstance(route, APIRoute) and route.include_in_schema and not route.path.startswith("/console"):
            for method in sorted(route.methods or ()):
                out.append((method, route.path, access.capability_of(route.endpoint)))
    return out


def test_every_route_declares_a_capability():
    routes = api_routes()
    assert len(routes) > 70
    undeclared = [(m, p) for m, p, cap in routes if cap is None]
    assert not undeclared, undeclared
    # public exactly where the service takes no token (and /metrics, which checks its own)
    public = {p for _, p, cap in routes if cap == access.PUBLIC}
    assert public - PUBLIC == {"/metrics"}, public - PUBLIC


def test_a_route_without_a_declaration_stops_the_application():
    from fastapi import APIRouter

    from pgvault.app import declare_capabilities

    router = APIRouter()

    @router.get("/forgotten")
    def forgotten() -> dict:
        return {}

    with pytest.raises(TypeError, match="declares no capability"):
        declare_capabilities(router)


def test_roles_are_nested_and_documented():
    ranked = sorted(Role, key=lambda r: r.rank)
    for weaker, stronger in itertools.pairwise(ranked):
        assert CAPABILITIES[weaker] < CAPABILITIES[stronger]
    assert CAPABILITIES[Role.ADMINISTRATOR] == frozenset(Capability)
    doc = (Path(__file__).parents[1] / "docs" / "api.md").read_text()
    table = doc.split("### Roles and capabilities", 1)[1].split("\n\n", 2)[1]
    for cap in Capability:
        row = next(line for line in table.splitlines() if line.startswith(f"| `{cap.value}`"))
        marks = [c.strip() for c in row.strip("|").split("|")][2:]
        assert marks == ["yes" if cap in CAPABILITIES[r] else "" for r in ranked], row


def snapshot(home: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, read straight from the SQLite catalog (an API key's last use aside: a
    use that was let in is recorded in the background, and is not a change a refusal could make; and the
    audit trail aside, which records every refusal by design: tests/test_audit.py checks those records)."""
    conn = sqlite3.connect(f"file:{home / 'catalog.db'}?mode=ro", uri=True, timeout=30)
    try:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")]
        out = {}
        for table in tables:
            if table == "audit_events":
                continue
            cols = [r[1] for r in conn.execute(f"pragma table_info({table})")]
            shown = ", ".join("null" if (table, c) == ("api_keys", "last_used_at") else c for c in cols)
            out[table] = sorted(conn.execute(f"select {shown} from {table}").fetchall(), key=repr)
        return out
    finally:
        conn.close()


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service(tmp_path_factory.mktemp("access") / "home", PGVAULT_TOKEN_CACHE_SECONDS="0").start()
    yield service
    service.stop()


class World:
    """The users of each role with their tokens, and real objects for the path parameters."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        admin = svc.login()
        self.ids: dict[str, int] = {"plan_id": 1, "client_id": 2, "instance_id": 1, "subclient_id": 1,
                                    "backupset_id": 1, "job_id": 1, "point_id": 1, "credential_id": 1}
        for role, name in USERS.items():
            r = admin.post("/User", json={"users": [{"userEntity": {"userName": name}, "password": b64(PASSWORD),
                                                     "role": role.value}]})
            assert r.status_code == 200, r.text
        victim = admin.post("/User", json={"users": [{"userEntity": {"userName": "victim"},
                                                      "password": b64(PASSWORD), "role": "Operator"}]})
        self.ids["user_id"] = victim.json()["response"][0]["entity"]["userId"]
        victim_api = svc.login("victim", PASSWORD)
        self.ids["session_id"] = victim_api.get("/Session").json()["sessions"][0]["id"]
        victim_api.close()
        key = admin.post("/ApiKey", json={"name": "victim-ish", "role": "Viewer"}).json()
        self.ids["key_id"] = key["id"]
        self.ids["role_id"] = 1
        clients = admin.get("/Client").json()
        self.ids["client_id"] = clients["clientProperties"][0]["client"]["clientEntity"]["clientId"]
        target = admin.post("/NotificationTarget", json={"name": "t", "url": "json://127.0.0.1:9/x"})
        assert target.status_code == 200, target.text
        self.ids["target_id"] = target.json()["id"]
        self.tokens = {role: self.login(name) for role, name in USERS.items()}
        # an expired login token, a revoked API key
        expired = self.login(USERS[Role.ADMINISTRATOR])
        conn = sqlite3.connect(svc.home / "catalog.db", timeout=30)
        try:
            conn.execute("update auth_tokens set expires_at = '2000-01-01 00:00:00.000000' where token_hash = ?",
                         (hashlib.sha256(expired.encode()).hexdigest(),))
            conn.commit()
        finally:
            conn.close()
        self.keys = {role: admin.post("/ApiKey", json={"name": f"{role.value} key", "role": role.value}).json()["key"]
                     for role in Role}
        revoked = admin.post("/ApiKey", json={"name": "revoked", "role": "Administrator"}).json()
        assert admin.delete(f"/ApiKey/{revoked['id']}").status_code == 200
        admin.close()
        self.bad = {"no token": None, "expired token": expired, "revoked key": revoked["key"]}

    def login(self, name: str) -> str:
        api = self.svc.login(name, PASSWORD)
        api.close()
        return str(api.token)

    def call(self, method: str, template: str, token: str | None, *, real_ids: bool = True) -> httpx.Response:
        """``template`` with real ids (or ids that name nothing), a ``{}`` body where it takes one."""
        ids = self.ids if real_ids else {}
        path = re.sub(r"\{(\w+)\}", lambda m: str(ids.get(m.group(1), 999999)), template)
        if not path.startswith(BASE):  # /metrics, /healthz, /readyz: outside the API's base
            return httpx.request(method, self.svc.url + path, headers={"Authtoken": token} if token else {})
        api = self.svc.client(token)
        try:
            kw: dict[str, Any] = {"json": {}} if method in ("POST", "PUT") else {}
            return api.request(method, path.removeprefix(BASE), **kw)
        finally:
            api.close()


@pytest.fixture(scope="module")
def world(svc: Service) -> World:
    return World(svc)


def test_denials_change_nothing(svc: Service, world: World):
    routes = [(m, p, cap) for m, p, cap in api_routes() if cap != access.PUBLIC]
    checked = 0
    for method, template, cap in routes:
        cases = [(why, token, 401) for why, token in world.bad.items()]
        cases += [(role.value, world.tokens[role], 403) for role in Role if cap not in CAPABILITIES[role]]
        cases += [(f"{role.value} key", world.keys[role], 403) for role in Role if cap not in CAPABILITIES[role]]
        for why, token, status in cases:
            before = snapshot(svc.home)
            r = world.call(method, template, token)
            assert r.status_code == status, (method, template, why, r.status_code, r.text)
            body = r.json()
            assert body["errorCode"] == (11 if status == 403 else 5), body
            if status == 403:
                assert cap in body["errorMessage"], body
            assert snapshot(svc.home) == before, (method, template, why)
            checked += 1
    assert checked > 350  # (362 with the routes of December 2026)


def test_allowed_roles_pass_the_check(svc: Service, world: World):
    """Ids that name nothing here: an allowed call is let through the check (then finds nothing, or
    refuses the empty body), and nothing the denial test relies on is touched."""
    for method, template, cap in api_routes():
        roles = list(Role) if cap == access.PUBLIC else [r for r in Role if cap in CAPABILITIES[r]]
        for role in roles:
            token = world.tokens[role]  # (public routes too: /metrics checks its own)
            r = world.call(method, template, token, real_ids=False)
            assert r.status_code not in (401, 403, 500), (method, template, role, r.status_code, r.text)
            r = world.call(method, template, world.keys[role], real_ids=False)
            assert r.status_code not in (401, 403, 500), (method, template, f"{role} key", r.status_code, r.text)
            if template.endswith(("/Logout", "/logoutEverywhere", "/RenewLoginToken")):  # it ended: log in again
                world.tokens[role] = world.login(USERS[role])


def test_the_migration_makes_the_existing_users_administrators(catalog) -> None:
    """A catalog from before roles (revision 0010) with its admin: after the upgrade, an enabled
    Administrator whose bootstrap password still stands; new rows say their own role (no default)."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import inspect, text
    from sqlalchemy.exc import IntegrityError

    from pgvault.catalog.db import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with catalog.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0010")
    with catalog.engine.begin() as conn:
        assert "role" not in {c["name"] for c in inspect(conn).get_columns("users")}
        conn.execute(text("insert into users (username, password_hash, created_at) "
                          "values ('admin', 'scrypt$x', '2026-01-01 00:00:00+00:00')"))
    catalog.migrate()
    with catalog.engine.begin() as conn:
        row = conn.execute(text("select role, enabled, updated_at, password_changed_at from users")).one()
        assert row[0] == "Administrator" and bool(row[1]) and row[2] is not None and row[3] is None
    with pytest.raises(IntegrityError), catalog.engine.begin() as conn:
        conn.execute(text("insert into users (username, password_hash, created_at, updated_at) "
                          "values ('x', 'y', '2026-01-01 00:00:00+00:00', '2026-01-01 00:00:00+00:00')"))


def test_an_api_key_is_never_stronger_than_its_creator(catalog) -> None:
    """The rule in services/users.create_key, for any creator (the API lets only Administrators make keys,
    so through it the rule is met by construction)."""
    from pgvault.errors import BadRequest
    from pgvault.services import auth, users
    from pgvault.services.auth import AuthUser

    with catalog.transaction(write=True) as s:
        uid = users.add_user(s, "opal", "scrypt$x", Role.OPERATOR).id
    operator = AuthUser(uid, "opal", Role.OPERATOR)
    with catalog.transaction(write=True) as s:
        with pytest.raises(BadRequest, match="cannot be stronger than yours"):
            users.create_key(s, operator, "too strong", Role.ADMINISTRATOR)
        key, secret = users.create_key(s, operator, "fine", Role.RESTORE_OPERATOR)
        with pytest.raises(BadRequest, match="cannot make API keys"):
            users.create_key(s, AuthUser(uid, "opal", Role.OPERATOR, key.id), "from a key", Role.VIEWER)
    with catalog.transaction(write=False) as s:
        me = auth.authenticate(s, secret)
    assert me == AuthUser(uid, "opal", Role.RESTORE_OPERATOR, key.id)
