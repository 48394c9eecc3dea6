"""Issue 16: bad input at the edges of the API gets a clear 4xx in Command Center's envelope, never a 500,
and changes nothing; HTTP's own rules (405 with Allow, HEAD, 413) are kept."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.support.service import catalog_counts, seed_body


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
