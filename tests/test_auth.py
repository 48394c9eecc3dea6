"""Login, tokens and the admin bootstrap."""

from __future__ import annotations

import hashlib
import sqlite3
import stat

from tests.support.service import Service, b64


def test_login_returns_a_qsdk_token_that_authorises_calls(service, anon):
    r = anon.post("/Login", json={"username": "admin", "password": b64(service.admin_password),
                                  "mode": 4, "deviceId": "x", "clientType": 30})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["userName"] == "admin" and body["token"].startswith("QSDK ")
    anon.token = body["token"]
    assert anon.post("/WhoAmI").json()["user"]["userName"] == "admin"
    assert anon.get("/Client").status_code == 200


def test_wrong_password_unknown_user_and_bad_base64(service, anon):
    for user, pw in (("admin", b64("nope")), ("nobody", b64(service.admin_password))):
        r = anon.post("/Login", json={"username": user, "password": pw})
        assert r.status_code == 401 and r.json()["errorCode"] != 0
        assert "invalid user name or password" in r.json()["errorMessage"]
    r = anon.post("/Login", json={"username": "admin", "password": "%%%"})
    assert r.status_code == 400 and "base64" in r.json()["errorMessage"]


def test_logout_ends_the_token(service):
    api = service.login()
    assert api.post("/Logout").status_code == 200
    r = api.get("/Client")
    assert r.status_code == 401 and r.json()["errorCode"] != 0
    api.close()


def test_expired_tokens_are_refused(service):
    api = service.login()
    conn = sqlite3.connect(service.home / "catalog.db", timeout=30)
    try:
        digest = hashlib.sha256(api.token.encode()).hexdigest()
        conn.execute("update auth_tokens set expires_at = '2000-01-01 00:00:00.000000' where token_hash = ?",
                     (digest,))
        conn.commit()
    finally:
        conn.close()
    r = api.get("/Client")
    assert r.status_code == 401 and "expired" in r.json()["errorMessage"]
    api.close()


def test_tokens_and_passwords_are_stored_hashed(service, api):
    conn = sqlite3.connect(f"file:{service.home / 'catalog.db'}?mode=ro", uri=True)
    try:
        hashes = [r[0] for r in conn.execute("select token_hash from auth_tokens")]
        pw_hash = conn.execute("select password_hash from users where username = 'admin'").fetchone()[0]
    finally:
        conn.close()
    assert api.token not in hashes and hashlib.sha256(api.token.encode()).hexdigest() in hashes
    assert pw_hash.startswith("scrypt$") and service.admin_password not in pw_hash


def test_generated_admin_password_is_written_once_0600_and_never_logged(tmp_path):
    svc = Service(tmp_path / "home")
    del svc.env["PGVAULT_ADMIN_PASSWORD"]
    svc.start()
    try:
        path = svc.home / "admin-password"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        password = path.read_text().strip()
        assert len(password) >= 16
        assert password not in svc.log_text() and str(path) in svc.log_text()
        api = svc.login(password=password)
        api.close()
        key = svc.home / "master.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    finally:
        svc.stop()
    svc.start()  # a second start keeps the same admin password
    try:
        svc.login(password=password).close()
    finally:
        svc.stop()


def test_password_checks_run_one_at_a_time_and_outside_any_transaction(catalog, monkeypatch):
    """scrypt takes 32 MiB per call: eight logins at once hold at most KDF_AT_ONCE of them. And the login
    only reads before the check, which runs outside any transaction: it never waits for (or holds) the
    catalog's write lock."""
    import threading
    import time

    from sqlalchemy import select

    from pgvault.errors import NotAuthenticated
    from pgvault.services import auth

    with catalog.transaction(write=True) as s:
        auth.create_user(s, "alice", "correct horse")
    real, lock, running, peak = hashlib.scrypt, threading.Lock(), [0], [0]

    def counting_scrypt(*args, **kwargs):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            time.sleep(0.05)
            return real(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(hashlib, "scrypt", counting_scrypt)
    results: list[object] = []

    def one(password: str) -> None:
        try:
            with catalog.transaction(write=False) as s:
                row = auth.password_row(s, "alice")
            results.append(auth.check_password(row, password).username)
        except NotAuthenticated as exc:
            results.append(exc)

    with catalog.transaction(write=True) as writer:  # a writer holds the catalog meanwhile (SQLite: the write lock)
        writer.execute(select(1))
        threads = [threading.Thread(target=one, args=("correct horse" if i % 2 else "wrong",)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert peak[0] == auth.KDF_AT_ONCE
    assert sorted(map(str, results)).count("alice") == 4 and len(results) == 8
