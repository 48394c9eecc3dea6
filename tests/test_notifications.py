"""Notifications against real receivers on loopback: an SMTP server (aiosmtpd) and an HTTP webhook
(http.server), through apprise's mailto:// and json:// URLs. A failed backup and a failed drill arrive with
the instance, the error in words and the job's link; an RPO breach and its recovery arrive once each (the
breach found by the scheduler's check at an injected time); a receiver that is down neither slows nor fails
the job and shows in its target's status and in /metrics; a target's URL appears in no API answer and no log."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from tests.support.data import fill, recreate_database, stored_path
from tests.support.flows import backup_now, register
from tests.support.service import Service, free_port

from pgvault.catalog.db import Catalog
from pgvault.scheduler import Scheduler

MAIL_USER, MAIL_PASSWORD = "mailer", "Mail-Secret-9"
HOOK_TOKEN, HOOK_PASSWORD = "hook-Token-7f3a", "Hook-Pass-5"
PUBLIC = "http://pgvault.example:8400"
SECRETS = (MAIL_PASSWORD, HOOK_TOKEN, HOOK_PASSWORD)


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.original_content, policy=email.policy.default))
        return "250 OK"

    def texts(self) -> list[str]:
        out = []
        for msg in self.messages:
            body = msg.get_body(preferencelist=("plain", "html"))
            out.append(f"{msg['subject']}\n{body.get_content() if body else ''}")
        return out


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == MAIL_USER.encode() \
        and auth_data.password == MAIL_PASSWORD.encode()
    return AuthResult(success=ok)


class Webhook:
    """A tiny HTTP receiver: every POST's path and JSON body."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hook.received.append((self.path, json.loads(body or b"{}")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def texts(self, path: str) -> list[str]:
        return [f"{b.get('title')}\n{b.get('message')}" for p, b in self.received if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(what: Callable[[], Any], timeout: float = 30, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {message}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def env(pg, tmp_path_factory) -> Iterator[dict[str, Any]]:
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port(), authenticator=_authenticate,
                      auth_require_tls=False)
    smtp.start()
    hook = Webhook()
    svc = Service(tmp_path_factory.mktemp("notify") / "home", PGVAULT_PUBLIC_URL=PUBLIC,
                  PGVAULT_NOTIFY_POLL_SECONDS="0.3", PGVAULT_NOTIFY_BACKOFF_SECONDS="0.3",
                  PGVAULT_NOTIFY_ATTEMPTS="2", PGVAULT_SCHEDULER_SECONDS="3600", PGVAULT_RPO_GRACE_SECONDS="0",
                  PGVAULT_METRICS_TOKEN="scrape-Notify-1").start()
    api = svc.login()
    with pg.connect() as conn:
        conn.execute("drop role if exists nt_login")
        conn.execute("create role nt_login login superuser password 'Nt-Login-1'")
    recreate_database(pg, "nt_db")
    fill(pg, "nt_db", rows=20)
    try:
        yield {"svc": svc, "api": api, "mail": mailbox, "smtp": smtp, "hook": hook}
    finally:
        api.close()
        svc.stop()
        hook.close()
        smtp.stop()
        with pg.connect() as conn:
            conn.execute("drop database if exists nt_db with (force)")
            conn.execute("drop role if exists nt_login")


def mail_url(env: dict[str, Any]) -> str:
    return (f"mailto://{MAIL_USER}:{MAIL_PASSWORD}@127.0.0.1:{env['smtp'].port}"
            "?from=pgvault@example.com&to=dba@example.com")


def hook_url(env: dict[str, Any], name: str) -> str:
    return f"json://hookuser:{HOOK_PASSWORD}@127.0.0.1:{env['hook'].port}/{name}/{HOOK_TOKEN}"


def no_secrets(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_targets_are_configured_through_the_api_and_never_show_their_url(env):
    api = env["api"]
    r = api.post("/NotificationTarget", json={"name": "crud-hook", "url": hook_url(env, "crud"),
                                              "events": ["job_failed"], "planName": "default"})
    assert r.status_code == 200, r.text
    target = r.json()
    assert target["url"] == f"json://127.0.0.1:{env['hook'].port}"
    assert target["scope"] == "plan" and target["plan"]["planName"] == "default"
    assert target["events"] == ["job_failed"] and target["status"]["sent"] == 0
    tid = target["id"]
    assert api.post("/NotificationTarget", json={"name": "CRUD-hook", "url": hook_url(env, "x")}).status_code == 409
    bad = api.post("/NotificationTarget", json={"name": "bad", "url": "nosuchscheme://secret-Thing@host/x"})
    assert bad.status_code == 400 and "secret-Thing" not in bad.text
    assert api.post("/NotificationTarget", json={"name": "bad", "url": hook_url(env, "x"),
                                                 "events": ["everything"]}).status_code == 400
    assert api.post("/NotificationTarget", json={"name": "bad", "url": hook_url(env, "x"),
                                                 "planName": "no-such-plan"}).status_code == 404
    assert api.get("/NotificationTarget/999999").status_code == 404
    r = api.put(f"/NotificationTarget/{tid}", json={"scope": "global", "events": ["rpo_breach", "job_failed"],
                                                    "url": mail_url(env)})
    assert r.status_code == 200, r.text
    changed = r.json()
    assert changed["scope"] == "global" and changed["plan"] is None
    assert changed["events"] == ["job_failed", "rpo_breach"]
    assert changed["url"] == f"mailto://127.0.0.1:{env['smtp'].port}"
    for text in (api.get("/NotificationTarget").text, api.get(f"/NotificationTarget/{tid}").text, r.text):
        no_secrets(text)
        assert MAIL_USER not in text
    assert api.delete(f"/NotificationTarget/{tid}").status_code == 200
    assert api.get(f"/NotificationTarget/{tid}").status_code == 404
    # the test action: a real message, and the outcome in the target's status
    r = api.post("/NotificationTarget", json={"name": "test-hook", "url": hook_url(env, "test")})
    tid = r.json()["id"]
    sent = api.post(f"/NotificationTarget/{tid}/action/test")
    assert sent.status_code == 200 and sent.json()["sent"] is True, sent.text
    assert sent.json()["target"]["status"]["lastSuccess"] is not None
    assert "test notification" in env["hook"].texts(f"/test/{HOOK_TOKEN}")[0]
    assert api.delete(f"/NotificationTarget/{tid}").status_code == 200


def test_a_failed_backup_notifies_by_mail_and_webhook_and_a_receiver_down_costs_the_job_nothing(env, pg):
    api, hook, svc = env["api"], env["hook"], env["svc"]
    made = {}
    for name, url, events in (("ops-mail", mail_url(env), ["job_failed"]),
                              ("ops-hook", hook_url(env, "ops"), ["job_failed", "drill_failed"]),
                              ("down-hook", f"json://127.0.0.1:{free_port()}/down/{HOOK_TOKEN}", ["job_failed"])):
        r = api.post("/NotificationTarget", json={"name": name, "url": url, "events": events})
        assert r.status_code == 200, r.text
        made[name] = r.json()["id"]
    entity, first = register(api, pg, "nt-fail", user="nt_login", password="Nt-Login-1")
    assert api.wait_job(first)["status"] == "Completed"
    env["entity"] = entity
    env["first_job"] = first
    with pg.connect() as conn:  # the login the instance was registered with no longer gets in
        conn.execute("alter role nt_login password 'Changed-Elsewhere-2'")
    job_id = backup_now(api, entity["subclientId"])
    started = time.monotonic()
    done = api.wait_job(job_id)
    assert done["status"] == "Failed", done
    assert time.monotonic() - started < 30  # (a receiver down does not hold the job's end)
    link = f"{PUBLIC}/commandcenter/api/Job/{job_id}"

    texts = wait_for(lambda: hook.texts(f"/ops/{HOOK_TOKEN}"), message="the webhook's message")
    assert len(texts) == 1
    text = texts[0]
    assert "nt-fail" in text and f"job {job_id}" in text.lower() and link in text
    assert "password authentication failed" in text, text
    mails = wait_for(lambda: [t for t in env["mail"].texts() if link in t], message="the mail")
    assert "nt-fail" in mails[0] and "password authentication failed" in mails[0]

    def down_status() -> dict[str, Any]:
        return api.get(f"/NotificationTarget/{made['down-hook']}").json()["status"]

    status = wait_for(lambda: (s := down_status())["abandoned"] == 1 and s, message="the down target given up")
    assert status["failures"] == 2 and status["consecutiveFailures"] == 2 and status["sent"] == 0
    assert "Connection error" in status["lastError"] and status["lastErrorTime"] and status["pending"] == 0
    up = api.get(f"/NotificationTarget/{made['ops-hook']}").json()["status"]
    assert up["sent"] == 1 and up["lastSuccess"] and up["failures"] == 0

    metrics = httpx.get(svc.url + "/metrics", headers={"Authorization": "Bearer scrape-Notify-1"}).text
    assert 'pgvault_notifications_total{outcome="failed",target="down-hook"} 2.0' in metrics
    assert 'pgvault_notifications_total{outcome="abandoned",target="down-hook"} 1.0' in metrics
    assert 'pgvault_notifications_total{outcome="sent",target="ops-hook"} 1.0' in metrics

    tested = api.post(f"/NotificationTarget/{made['down-hook']}/action/test").json()
    assert tested["sent"] is False and "Connection error" in tested["error"]
    for text in (api.get("/NotificationTarget").text, json.dumps(tested), svc.log_text()):
        no_secrets(text)
    with pg.connect() as conn:
        conn.execute("alter role nt_login password 'Nt-Login-1'")


def test_a_failed_drill_notifies(env):
    api, hook = env["api"], env["hook"]
    first = api.job(env["first_job"])
    item = next(d for d in first["databases"] if d["name"] == "nt_db")
    path = stored_path(item["location"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    points = api.get("/RestorePoints", params={"instanceId": env["entity"]["instanceId"]}).json()["restorePoints"]
    r = api.post(f"/RestorePoints/{points[0]['restorePointId']}/action/verify", json={"drill": True})
    job_id = r.json()["jobIds"][0]
    assert api.wait_job(job_id, timeout=180)["status"] == "Failed"
    texts = wait_for(lambda: [t for t in hook.texts(f"/ops/{HOOK_TOKEN}") if "drill failed" in t],
                     message="the drill's notification")
    assert "nt-fail" in texts[0] and f"{PUBLIC}/commandcenter/api/Job/{job_id}" in texts[0]
    assert "sha256" in texts[0]


def test_an_rpo_breach_and_its_recovery_notify_once_each(env, pg):
    api, hook, svc = env["api"], env["hook"], env["svc"]
    assert api.post("/V2/Plan", json={"planName": "nt-hourly", "rpoMinutes": 60}).status_code == 200
    r = api.post("/NotificationTarget", json={"name": "rpo-hook", "url": hook_url(env, "rpo"), "planName": "nt-hourly",
                                              "events": ["rpo_breach", "rpo_recovered"]})
    assert r.status_code == 200, r.text
    entity, job_id = register(api, pg, "nt-rpo", plan="nt-hourly")
    assert api.wait_job(job_id)["status"] == "Completed"
    catalog = Catalog(f"sqlite:///{svc.home / 'catalog.db'}")
    now = dt.datetime.now(dt.UTC)
    clock = {"now": now + dt.timedelta(hours=3)}
    checker = Scheduler(catalog, 3600, lambda: None, clock=lambda: clock["now"], rpo_grace=dt.timedelta(0))
    try:
        breached, _ = checker.check_rpo()
        assert entity["instanceId"] in breached
        assert checker.check_rpo()[0] == []  # once per breach
        path = f"/rpo/{HOOK_TOKEN}"
        texts = wait_for(lambda: hook.texts(path), message="the breach")
        assert len(texts) == 1 and "nt-rpo" in texts[0] and "past its RPO" in texts[0] and "1 h" in texts[0]
        clock["now"] = now
        assert entity["instanceId"] in checker.check_rpo()[1]
        assert checker.check_rpo() == ([], [])
        texts = wait_for(lambda: len(hook.texts(path)) == 2 and hook.texts(path), message="the recovery")
        assert "back within its RPO" in texts[1] and "nt-rpo" in texts[1]
        assert not any("nt-fail" in t for t in texts)  # the target is the plan's: other instances are not its own
    finally:
        catalog.dispose()
