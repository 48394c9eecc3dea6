"""Users, API keys, sessions and the password policy, through a real `pgvault serve` and the real `pgvault`
command (the offline recovery included)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from tests.support.service import Api, Service, b64

PW = "Correct horse 42"


def run(config: Path, *args: str, stdin: str = "",
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("PGVAULT_URL", "PGVAULT_TOKEN")}
    full.update({"XDG_CONFIG_HOME": str(config), **(env or {})})
    return subprocess.run([sys.executable, "-m", "pgvault.cli", *args], input=stdin, env=full,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Tracked(tmp_path_factory.mktemp("users") / "home").start()
    yield service
    service.stop()


class Tracked(Service):
    """A Service whose HTTP clients are all closed after each test (no socket left to a ResourceWarning)."""

    opened: ClassVar[list[Api]] = []

    def client(self, token: str | None = None) -> Api:
        api = super().client(token)
        Tracked.opened.append(api)
        return api


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while Tracked.opened:
        Tracked.opened.pop().close()


def add(api, name: str, role: str, password: str = PW):
    return api.post("/User", json={"users": [{"userEntity": {"userName": name}, "password": b64(password),
                                              "role": role}]})


def test_password_policy_and_names(svc):
    admin = svc.login()
    for password, why in (("short-1", "too short"), ("xxpolicy-userxx", "user name"), ("a" * 20, "repeated")):
        r = add(admin, "policy-user", "Viewer", password)
        assert r.status_code == 400 and why in r.json()["errorMessage"], r.text
    assert add(admin, "bad name", "Viewer").status_code == 400
    assert "unknown role" in add(admin, "policy-user", "Superuser").json()["errorMessage"]
    assert add(admin, "policy-user", "viewer").status_code == 200
    r = add(admin, "POLICY-USER", "Viewer")
    assert r.status_code == 409 and r.json()["errorCode"] == 7
    users = {u["userEntity"]["userName"]: u for u in admin.get("/User").json()["users"]}
    assert users["admin"]["role"]["roleName"] == "Administrator"
    assert users["policy-user"]["role"]["roleName"] == "Viewer" and users["policy-user"]["enableUser"]
    admin.close()


def test_disable_ends_sessions_and_keys_and_the_last_admin_stays(svc):
    admin = svc.login()
    uid = add(admin, "dora", "Operator").json()["response"][0]["entity"]["userId"]
    dora = svc.login("dora", PW)
    assert dora.get("/Instance").status_code == 200
    assert dora.post("/ApiKey", json={"name": "x"}).status_code == 403  # operators make no keys
    assert admin.post(f"/User/{uid}/action/disable").status_code == 200
    assert dora.get("/Instance").status_code == 401  # its sessions ended
    r = svc.client().post("/Login", json={"username": "dora", "password": b64(PW)})
    assert r.status_code == 401 and "disabled" in r.json()["errorMessage"]
    r = svc.client().post("/Login", json={"username": "dora", "password": b64("wrong password!")})
    assert "invalid user name or password" in r.json()["errorMessage"]  # a wrong guess learns nothing
    assert admin.post(f"/User/{uid}/action/enable").status_code == 200
    assert svc.login("dora", PW).get("/Instance").status_code == 200
    # the last enabled Administrator cannot go, nor can anyone act on themselves
    me = admin.post("/WhoAmI").json()["user"]["userId"]
    assert admin.post(f"/User/{me}/action/disable").status_code == 400
    assert admin.put(f"/User/{me}", json={"role": "Viewer"}).status_code == 400
    assert admin.delete(f"/User/{me}").status_code == 400
    # a key acts with the weaker of its role and its creator's: demote the creator, the key is demoted
    adm2 = add(admin, "adm2", "Administrator").json()["response"][0]["entity"]["userId"]
    a2 = svc.login("adm2", PW)
    strong = a2.post("/ApiKey", json={"name": "strong", "role": "Administrator"}).json()
    assert svc.client(strong["key"]).get("/User").status_code == 200
    assert admin.put(f"/User/{adm2}", json={"role": "Viewer"}).status_code == 200
    assert svc.client(strong["key"]).get("/User").status_code == 403
    assert svc.client(strong["key"]).get("/Instance").status_code == 200
    assert admin.delete(f"/User/{adm2}").status_code == 200
    assert svc.client(strong["key"]).get("/Instance").status_code == 401
    # a disabled user's keys stop working (a key acts as its user), and work again when enabled
    adm3 = add(admin, "adm3", "Administrator").json()["response"][0]["entity"]["userId"]
    key3 = svc.login("adm3", PW).post("/ApiKey", json={"name": "k3"}).json()
    assert key3["role"] == "Administrator" and svc.client(key3["key"]).get("/User").status_code == 200
    assert admin.post(f"/User/{adm3}/action/disable").status_code == 200
    r = svc.client(key3["key"]).get("/User")
    assert r.status_code == 401 and "disabled" in r.json()["errorMessage"]
    assert admin.post(f"/User/{adm3}/action/enable").status_code == 200
    assert svc.client(key3["key"]).get("/User").status_code == 200
    admin.close()


def test_api_keys_are_shown_once_stored_hashed_and_revocable(svc):
    admin = svc.login()
    created = admin.post("/ApiKey", json={"name": "nightly", "role": "Viewer"})
    assert created.status_code == 200, created.text
    key = created.json()
    assert key["key"].startswith("QSDK pgvault-key-") and key["role"] == "Viewer" and key["lastUsedTime"] is None
    script = svc.client(key["key"])
    assert script.get("/Instance").status_code == 200
    r = script.post("/Instance", json={})
    assert r.status_code == 403 and r.json()["errorCode"] == 11
    assert script.post("/Logout").status_code == 400  # a key is revoked, not logged out
    listed = admin.get("/ApiKey").json()["apiKeys"]
    assert all("key" not in k for k in listed) and any(k["id"] == key["id"] for k in listed)
    conn = sqlite3.connect(f"file:{svc.home / 'catalog.db'}?mode=ro", uri=True)
    try:
        stored = conn.execute("select key_hash from api_keys where id = ?", (key["id"],)).fetchone()[0]
    finally:
        conn.close()
    assert stored == hashlib.sha256(key["key"].encode()).hexdigest()
    assert key["key"] not in svc.log_text()
    assert admin.delete(f"/ApiKey/{key['id']}").status_code == 200
    assert script.get("/Instance").status_code == 401
    assert admin.delete("/ApiKey/999999").status_code == 404
    script.close()
    admin.close()


def test_sessions_list_revoke_and_log_out_everywhere(svc):
    add(svc.login(), "sam", "Viewer")
    one, two = svc.login("sam", PW), svc.login("sam", PW)
    sessions = one.get("/Session").json()["sessions"]
    assert len(sessions) == 2 and [s["current"] for s in sessions] == [False, True]
    assert one.delete(f"/Session/{sessions[0]['id']}").status_code == 200  # ends `two`
    assert two.get("/Instance").status_code == 401 and one.get("/Instance").status_code == 200
    other = svc.login().get("/Session").json()["sessions"][0]["id"]  # an admin's: not there for sam
    assert one.delete(f"/Session/{other}").status_code == 404
    assert one.get("/Session", params={"userId": 1}).status_code == 403
    three = svc.login("sam", PW)
    ended = one.post("/Session/action/logoutEverywhere").json()["sessionsEnded"]
    assert ended == 2 and one.get("/Instance").status_code == 401 and three.get("/Instance").status_code == 401


def test_own_password_change_keeps_this_session_and_ends_the_others(svc):
    add(svc.login(), "pat", "Restore operator")
    me, other = svc.login("pat", PW), svc.login("pat", PW)
    bad = me.post("/ChangePassword", json={"currentPassword": b64("not it at all"), "newPassword": b64(PW + "x")})
    assert bad.status_code == 400 and "current" in bad.json()["errorMessage"]
    assert me.post("/ChangePassword", json={"currentPassword": b64(PW), "newPassword": b64("pat")}).status_code == 400
    ok = me.post("/ChangePassword", json={"currentPassword": b64(PW), "newPassword": b64("A new one, long enough")})
    assert ok.status_code == 200, ok.text
    assert me.get("/Instance").status_code == 200 and other.get("/Instance").status_code == 401
    svc.login("pat", "A new one, long enough")


def test_bootstrap_password_file_goes_when_the_admin_password_changes(tmp_path):
    svc = Tracked(tmp_path / "home")
    del svc.env["PGVAULT_ADMIN_PASSWORD"]
    svc.start()
    try:
        path = svc.home / "admin-password"
        generated = path.read_text().strip()
        api = svc.login("admin", generated)
        r = api.post("/ChangePassword", json={"currentPassword": b64(generated), "newPassword": b64(PW)})
        assert r.status_code == 200, r.text
        assert not path.exists()
        svc.login("admin", PW)
    finally:
        svc.stop()


def test_cli_users_and_keys_against_a_real_service(svc, tmp_path):
    cfg = tmp_path / "xdg"
    assert run(cfg, "login", "--url", svc.url, stdin=svc.admin_password + "\n").returncode == 0
    done = run(cfg, "users", "add", "olga", "--role", "Operator", stdin=PW + "\n")
    assert done.returncode == 0, done.stderr
    assert PW not in done.stdout + done.stderr
    listed = run(cfg, "users", "list")
    assert listed.returncode == 0 and any(line.split()[1:3] == ["olga", "Operator"]
                                          for line in listed.stdout.splitlines()[1:])
    assert "Operator" in run(cfg, "users", "show", "olga").stdout
    assert run(cfg, "users", "add", "olga2", stdin="short\n").stderr.strip().endswith("at least 12 characters")
    assert run(cfg, "users", "disable", "olga").returncode == 0
    assert svc.client().post("/Login", json={"username": "olga", "password": b64(PW)}).status_code == 401
    assert run(cfg, "users", "enable", "olga").returncode == 0
    assert run(cfg, "users", "reset-password", "olga", stdin="A brand new secret 7\n").returncode == 0
    svc.login("olga", "A brand new secret 7")
    assert run(cfg, "users", "set-role", "olga", "Viewer").stdout.strip() == "user olga is now Viewer"
    # an API key for a script: printed once, on stdout alone, and usable as PGVAULT_TOKEN
    made = run(cfg, "apikeys", "create", "report", "--role", "Viewer")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("QSDK pgvault-key-")
    script = run(cfg, "instances", "--json", env={"PGVAULT_TOKEN": key})
    assert script.returncode == 0, script.stderr
    refused = run(cfg, "users", "list", env={"PGVAULT_TOKEN": key})
    assert refused.returncode == 1 and "manage_users" in refused.stderr
    key_id = run(cfg, "apikeys", "list").stdout.splitlines()[-1].split()[0]
    assert key not in run(cfg, "apikeys", "list").stdout
    assert run(cfg, "apikeys", "revoke", key_id).returncode == 0
    assert run(cfg, "instances", env={"PGVAULT_TOKEN": key}).returncode == 1
    assert run(cfg, "users", "delete", "olga").returncode == 0
    assert "olga" not in run(cfg, "users", "list").stdout
    # your own password, the current one first (two lines on stdin)
    run(cfg, "users", "add", "quinn", stdin=PW + "\n")
    qcfg = tmp_path / "quinn"
    assert run(qcfg, "login", "--url", svc.url, "--user", "quinn", stdin=PW + "\n").returncode == 0
    changed = run(qcfg, "users", "passwd", stdin=f"{PW}\nAn even better secret 8\n")
    assert changed.returncode == 0, changed.stderr
    svc.login("quinn", "An even better secret 8")


def test_offline_reset_recovers_a_lost_admin_password(tmp_path):
    svc = Tracked(tmp_path / "home")
    del svc.env["PGVAULT_ADMIN_PASSWORD"]
    svc.start()
    env = {"PGVAULT_HOME": str(svc.home)}
    try:
        assert (svc.home / "admin-password").exists()
        token = svc.login("admin", (svc.home / "admin-password").read_text().strip()).token
        refused = run(tmp_path / "x", "users", "reset-password", "admin", "--offline", stdin="short\n", env=env)
        assert refused.returncode == 1 and "at least 12" in refused.stderr
        done = run(tmp_path / "x", "users", "reset-password", "admin", "--offline", stdin=PW + "\n", env=env)
        assert done.returncode == 0, done.stderr
        assert PW not in done.stdout + done.stderr
        assert not (svc.home / "admin-password").exists()
        svc.login("admin", PW)
        assert svc.client(token).get("/Instance").status_code == 401  # the old sessions ended
        unknown = run(tmp_path / "x", "users", "reset-password", "nobody", "--offline", stdin=PW + "\n", env=env)
        assert unknown.returncode == 1 and "no user named 'nobody'" in unknown.stderr
    finally:
        svc.stop()
