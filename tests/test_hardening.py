"""Issue 16: bad input at the edges of the API gets a clear 4xx in Command Center's envelope, never a 500,
and changes nothing; HTTP's own rules (405 with Allow, HEAD, 413) are kept."""

from __future__ import annotations

import copy
import json
import socket
import sqlite3
from typing import Any

import httpx
import pytest
from tests.support.service import BASE, b64, catalog_counts, seed_body


def _log_since(service, mark: int) -> str:
    return service.log_text()[mark:]


def _envelope(r: httpx.Response, status: int, code: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text[:500])
    err = r.json()
    assert err["errorCode"] == code, err
    assert isinstance(err["errorMessage"], str) and err["errorMessage"], err
    assert "entity" in err, err
    return err  # type: ignore[no-any-return]


# -- 1. a password that is not ASCII is not base64: a 400, not a 500 -------------------------------------

@pytest.mark.parametrize("password", ["é", "pässword", "\u2603\u2603\u2603\u2603", "YWRtaW4=\u00a0"])
def test_login_with_a_non_ascii_password_is_a_400_without_traceback(anon, service, password):
    mark = len(service.log_text())
    err = _envelope(anon.post("/Login", json={"username": "admin", "password": password}), 400, 2)
    assert "base64" in err["errorMessage"], err
    log = _log_since(service, mark)
    assert "Traceback" not in log and "unhandled error" not in log, log


def test_non_ascii_base64_passwords_in_instance_and_credential_bodies(api, service, pg):
    mark = len(service.log_text())
    body = seed_body(host="127.0.0.1", port=pg.port, user="postgres", password=pg.password)
    body["instanceProperties"]["postGreSQLInstance"]["SAUser"]["password"] = "é"
    err = _envelope(api.post("/Instance", json=body), 400, 2)
    assert "SAUser.password: must be base64-encoded UTF-8" in err["errorMessage"], err
    err = _envelope(api.post("/V4/Credential", json={"name": "nonascii", "username": "u", "password": "é"}), 400, 2)
    assert "password: must be base64-encoded UTF-8" in err["errorMessage"], err
    assert "Traceback" not in _log_since(service, mark)


# -- 2. instance id 1 is a reserved placeholder: 404 wherever an instance is named ----------------------

RESERVED = [
    ("POST", "/Instance/1/action/dataAging", {}),
    ("GET", "/Instance/1", {}),
    ("PUT", "/Instance/1", {"json": {"instanceProperties": {"planEntity": {"planName": "default"}}}}),
    ("POST", "/Instance/1", {"json": {"instanceProperties": {"planEntity": {"planName": "default"}}}}),
    ("DELETE", "/Instance/1", {}),
    ("DELETE", "/Instance/1", {"params": {"deleteBackups": "true"}}),
    ("POST", "/DoBrowse", {"json": {"entity": {"instanceId": 1}}}),
    ("POST", "/DoBrowse", {"json": {"entity": {"instanceName": "DefaultInstanceName"}}}),
    ("POST", "/CreateTask", {"json": {"taskInfo": {"associations": [{"instanceId": 1}], "subTasks": [
        {"subTask": {"subTaskType": 3, "operationType": 1001},
         "options": {"restoreOptions": {"fileOption": {"sourceItem": ["/postgres"]}}}}]}}}),
    ("POST", "/CreateTask", {"json": {"taskInfo": {"associations": [
        {"clientName": "default", "instanceName": "DefaultInstanceName"}], "subTasks": [
        {"subTask": {"subTaskType": 3, "operationType": 1001},
         "options": {"restoreOptions": {"fileOption": {"sourceItem": ["/postgres"]}}}}]}}}),
]


@pytest.mark.parametrize(("method", "path", "kw"), RESERVED)
def test_the_reserved_instance_one_is_not_found(api, service, method, path, kw):
    mark = len(service.log_text())
    before = catalog_counts(service.home)
    _envelope(api.request(method, path, **kw), 404, 6)
    assert catalog_counts(service.home) == before
    assert "Traceback" not in _log_since(service, mark)


def test_the_reserved_instance_one_has_no_subclient_or_backupset(api):
    assert api.get("/Subclient", params={"instanceId": 1}).json() == {"subClientProperties": []}
    assert api.get("/Backupset", params={"instanceId": 1}).json() == {"backupsetProperties": []}


# -- 3. NUL and control characters in what becomes a name, a host, a login or a database -----------------

NUL = "\u0000"
FIELDS = {
    "instanceProperties.instance.instanceName": "nul" + NUL + "name",
    "instanceProperties.instance.clientName": "default" + NUL,
    "instanceProperties.version": "18" + NUL,
    "instanceProperties.postGreSQLInstance.MaintainenceDB": "postgres" + NUL + "junk",
    "instanceProperties.postGreSQLInstance.SAUser.userName": "postgres" + NUL + "x",
    "instanceProperties.postGreSQLInstance.sslOpt.sslCa": "/etc/ssl/certs/ca-certificates.crt" + NUL + "x",
    "instanceProperties.planEntity.planName": "default" + NUL,
}
CONTROL = {
    "instanceProperties.instance.instanceName": "tab\tname",
    "instanceProperties.instance.clientName": "default\n",
    "instanceProperties.postGreSQLInstance.MaintainenceDB": "postgres\x01",
    "instanceProperties.postGreSQLInstance.SAUser.userName": "postgres\r\n",
    "instanceProperties.planEntity.planName": "default\x7f",
}


def _set(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    *parents, leaf = path.split(".")
    node = out
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return out


@pytest.fixture()
def body(pg) -> dict[str, Any]:
    return seed_body(host="127.0.0.1", port=pg.port, user="postgres", password=pg.password, name="hardening")


def _refused(api, service, payload: Any, field: str) -> dict[str, Any]:
    before = catalog_counts(service.home)
    err = _envelope(api.post("/Instance", json=payload), 400, 2)
    assert field in err["errorMessage"], err
    assert err["entity"]["instanceId"] == 0, err
    assert catalog_counts(service.home) == before, "a refused request changed the catalog"
    return err


@pytest.mark.parametrize(("field", "value"), [*FIELDS.items(), *CONTROL.items()], ids=repr)
def test_control_characters_are_refused_naming_the_field(api, service, body, field, value):
    err = _refused(api, service, _set(body, field, value), field)
    assert "control character" in err["errorMessage"] or "NUL" in err["errorMessage"], err


@pytest.mark.parametrize("password", ["pass" + NUL + "word", "pass\nword", "pass\rword"])
def test_passwords_that_libpq_cannot_carry_are_refused(api, service, body, password):
    bad = _set(body, "instanceProperties.postGreSQLInstance.SAUser.password", b64(password))
    _refused(api, service, bad, "SAUser.password")
    r = api.post("/V4/Credential", json={"name": "cut-password", "username": "u", "password": b64(password)})
    assert "password" in _envelope(r, 400, 2)["errorMessage"]


@pytest.mark.parametrize("port", ["127.0.0.1" + NUL + ":5432", "127.0.0.1:5432" + NUL, "127.0.0.1\n:5432"])
def test_control_characters_in_the_host_are_refused(api, service, body, port):
    _refused(api, service, _set(body, "instanceProperties.postGreSQLInstance.port", port), "port")


def test_nul_in_the_sdk_shape_is_refused_the_sdks_way(api, service, pg):
    before = catalog_counts(service.home)
    sdk = {"instanceProperties": {
        "instance": {"clientName": "default", "instanceName": "sdk" + NUL, "appName": "PostgreSQL"},
        "version": "18",
        "postGreSQLInstance": {"MaintainenceDB": "postgres", "port": f"127.0.0.1:{pg.port}", "SAUser": {},
                               "credentialEntity": {"credentialName": "whatever"}}}}
    r = api.post("/Instance", json=sdk)
    assert r.status_code == 200, r.text
    assert r.json()["response"]["errorCode"] == 2, r.text
    assert "instanceName" in r.json()["response"]["errorString"], r.text
    assert catalog_counts(service.home) == before



def test_a_stored_credential_with_a_control_character_is_refused_not_a_500(api, service, pg):
    """Credentials stored before the rules were strict can hold such a login: the SDK's add says why."""
    r = api.post("/V4/Credential", json={"name": "old-cred", "username": "postgres", "password": b64(pg.password)})
    assert r.status_code == 200, r.text
    conn = sqlite3.connect(service.home / "catalog.db", timeout=30)
    try:
        conn.execute("update credentials set username = ? where name = 'old-cred'", ("post\ngres",))
        conn.commit()
    finally:
        conn.close()
    before = catalog_counts(service.home)
    sdk = {"instanceProperties": {
        "instance": {"clientName": "default", "instanceName": "old-cred-instance", "appName": "PostgreSQL"},
        "version": "18",
        "postGreSQLInstance": {"MaintainenceDB": "postgres", "port": f"127.0.0.1:{pg.port}",
                               "credentialEntity": {"credentialName": "old-cred"}}}}
    r = api.post("/Instance", json=sdk)
    assert r.status_code == 200 and r.json()["response"]["errorCode"] == 2, r.text
    assert "old-cred" in r.json()["response"]["errorString"] and "userName" in r.json()["response"]["errorString"]
    assert catalog_counts(service.home) == before

@pytest.mark.parametrize(("path", "payload", "field"), [
    ("/V2/Plan", {"planName": "p" + NUL}, "planName"),
    ("/V2/Plan", {"planName": "nul-path", "destinations": [{"name": "d", "path": "/tmp/x" + NUL + "y"}]}, "path"),
    ("/V2/Plan", {"planName": "nul-path2", "storage": {"path": "/tmp/x" + NUL + "y"}}, "path"),
    ("/V2/Plan", {"planName": "nul-dest", "destinations": [{"name": "d\n", "path": "/tmp/x"}]}, "name"),
    ("/V4/Credential", {"name": "c" + NUL, "username": "u", "password": "YQ=="}, "name"),
    ("/V4/Credential", {"name": "cred-nul-user", "username": "u" + NUL, "password": "YQ=="}, "username"),
    ("/Client", {"clientName": "c" + NUL}, "clientName"),
])
def test_nul_in_plan_credential_and_client_bodies(api, service, path, payload, field):
    mark = len(service.log_text())
    before = catalog_counts(service.home)
    err = _envelope(api.post(path, json=payload), 400, 2)
    assert field in err["errorMessage"], err
    assert catalog_counts(service.home) == before
    assert "Traceback" not in _log_since(service, mark)
    listed = json.dumps([api.get(p).json() for p in ("/V2/Plan", "/V4/Credential", "/Client")])
    assert "\\u0000" not in listed


# -- 4. a body that is not JSON: errorCode 2, as docs/api.md says ---------------------------------------

@pytest.mark.parametrize("raw", [b"\xff\xfe{}", b'{"planName": "\xe9"}', b"[" * 100_000])
@pytest.mark.parametrize("path", ["/V2/Plan", "/Instance"])
def test_a_body_that_is_not_json_is_error_code_2(api, service, raw, path):
    before = catalog_counts(service.home)
    r = api.post(path, content=raw, headers={"Content-Type": "application/json"})
    err = _envelope(r, 400, 2)
    assert "JSON" in err["errorMessage"], err
    assert catalog_counts(service.home) == before


# -- 5. a bad value is echoed bounded -----------------------------------------------------------------

@pytest.mark.parametrize(("field", "shape"), [
    ("instanceProperties.postGreSQLInstance.port", "{}"),
    ("instanceProperties.postGreSQLInstance.port", "{}:5432"),
    ("instanceProperties.dbEngine", "{}"),
    ("instanceProperties.postGreSQLInstance.cloudDBEngineType", "{}"),
])
def test_a_huge_bad_value_is_echoed_bounded(api, service, body, field, shape):
    value = shape.format("9" * 1_000_000)
    err = _refused(api, service, _set(body, field, value), field)
    message = err["errorMessage"]
    assert len(message) < 1000, message[:300]
    assert "9" * 101 not in message, message
    # echoed bounded, or (port: longer than its documented maximum) refused without an echo at all
    assert "9" * 100 + "…" in message or (field.endswith(".port") and "at most 262" in message), message


def test_bounded_echoes_elsewhere(api):
    err = _envelope(api.post("/V2/Plan", json={"planName": "cron", "schedule": {"cron": "x" * 500_000}}), 400, 2)
    assert len(err["errorMessage"]) < 1000 and "x" * 100 + "…" in err["errorMessage"], err["errorMessage"][:300]
    r = api.post("/Subclient/2/action/backup", params={"backupLevel": "y" * 5000})
    err = _envelope(r, 400, 2)
    assert len(err["errorMessage"]) < 1000 and "y" * 100 + "…" in err["errorMessage"], err["errorMessage"][:300]
    task = {"taskInfo": {"associations": [{"instanceId": 2}], "subTasks": [
        {"subTask": {"subTaskType": 3, "operationType": 1001},
         "options": {"restoreOptions": {"postgresRstOption": {"renameDatabases": {"k" * 500_000: 5}}}}}]}}
    err = _envelope(api.post("/CreateTask", json=task), 400, 2)  # a dict key in the field's path
    assert len(err["errorMessage"]) < 1000 and "k" * 100 + "…" in err["errorMessage"], err["errorMessage"][:300]
    body = {"instanceProperties": {"postGreSQLInstance": {"port": "[" + "1:" * 100 + "]:5432"}}}
    err = _envelope(api.post("/Instance", json=body), 400, 2)  # (within port's 262 characters, so parsed)
    assert len(err["errorMessage"]) < 1000 and "1:" * 49 + "…" in err["errorMessage"], err["errorMessage"][:300]
    many = {"taskInfo": {"associations": [{"instanceId": 2}], "subTasks": [
        {"subTask": {"subTaskType": 3, "operationType": 1001},
         "options": {"restoreOptions": {"fileOption": {"sourceItem": [1] * 1000}}}}]}}
    err = _envelope(api.post("/CreateTask", json=many), 400, 2)  # a thousand errors: the message is bounded
    assert 1000 < len(err["errorMessage"]) <= 2001 and err["errorMessage"].endswith("…"), len(err["errorMessage"])


# -- 6. 405 says what is allowed; HEAD works wherever GET does -------------------------------------------

def test_405_carries_allow(api):
    r = api.request("DELETE", "/Jobs")
    _envelope(r, 405, 405)
    assert r.headers["allow"] == "POST"
    r = api.request("PATCH", "/Instance/2")
    _envelope(r, 405, 405)
    assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "PUT", "POST", "DELETE"}
    r = api.request("HEAD", "/Jobs")
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_head_answers_wherever_get_does(api, anon, service):
    paths = [p for p, ops in httpx.get(service.url + "/openapi.json").json()["paths"].items() if "get" in ops]
    assert len(paths) > 15
    for template in paths:
        path = template.replace(BASE, "", 1)
        for param in ("{instance_id}", "{job_id}", "{client_id}", "{plan_id}", "{point_id}", "{backupset_id}",
                      "{subclient_id}", "{credential_id}", "{target_id}", "{user_id}", "{role_id}"):
            path = path.replace(param, "2")
        assert "{" not in path, path
        get, head = api.get(path), api.request("HEAD", path)
        assert head.status_code == get.status_code, (path, get.status_code, head.status_code)
        assert head.content == b"", path
        if get.status_code == 200:
            assert head.headers["content-type"] == get.headers["content-type"], path
    assert anon.request("HEAD", "/").status_code == 200
    r = anon.request("HEAD", "/Instance")
    assert r.status_code == 401 and r.content == b""


# -- 7. a body over PGVAULT_MAX_BODY_BYTES is refused with 413, unread -----------------------------------

LIMIT = 1024 * 1024


def test_a_body_over_the_limit_is_413(api, service):
    before = catalog_counts(service.home)
    big = json.dumps({"planName": "too-big", "pad": "x" * LIMIT}).encode()
    err = _envelope(api.post("/V2/Plan", content=big, headers={"Content-Type": "application/json"}), 413, 2)
    assert str(LIMIT) in err["errorMessage"], err
    assert catalog_counts(service.home) == before


def test_a_chunked_body_over_the_limit_is_413(api, service):
    def chunks():
        for _ in range(64):  # 4 MiB, without a Content-Length
            yield b"x" * 65536

    r = api.post("/V2/Plan", content=chunks(), headers={"Content-Type": "application/json"})
    _envelope(r, 413, 2)


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(api, service):
    token = api.token
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(
            f"POST {BASE}/V2/Plan HTTP/1.1\r\nHost: x\r\nAuthtoken: {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {10 * 1024**3}\r\n\r\n{{".encode())
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)  # times out (fails) if the server waits for 10 GiB
            if not chunk:
                break
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer[:300]
    assert json.loads(payload)["errorCode"] == 2


def test_a_body_under_the_limit_is_read(api):
    big = json.dumps({"planName": "padded", "pad": "x" * (LIMIT - 100)}).encode()
    r = api.post("/V2/Plan", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text[:300]
    assert api.delete(f"/V2/Plan/{r.json()['plan']['summary']['plan']['planId']}").status_code == 200


@pytest.mark.parametrize(("pointer", "limit"), [
    ("instanceProperties.postGreSQLInstance.port", 262),
    ("instanceProperties.postGreSQLInstance.sslOpt.sslCa", 4096),
    ("instanceProperties.postGreSQLInstance.SAUser.password", 1368),
    ("instanceProperties.instance.instanceName", 255),
    ("instanceProperties.version", 64),
])
def test_every_string_of_the_seed_body_has_a_documented_maximum(api, service, pointer, limit):
    body = seed_body(host="127.0.0.1", port=1, user="u", password="p", name="too-long")
    node = body
    *parents, last = pointer.split(".")
    for key in parents:
        node = node[key]
    node[last] = "x" * (limit + 1)
    before = catalog_counts(service.home)
    r = api.post("/Instance", json=body)
    assert r.status_code == 400, r.text
    message = r.json()["errorMessage"]
    assert last in message and f"at most {limit} " in message, message
    assert catalog_counts(service.home) == before
