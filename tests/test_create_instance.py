"""POST /instance: the seed's request end to end, and every documented refusal with nothing created."""

from __future__ import annotations

import copy
import json
import os
import signal
from typing import Any

import pytest
from tests.support.data import stored_path
from tests.support.procs import alive, bridge_processes, wait_until
from tests.support.service import b64, catalog_counts, seed_body


@pytest.fixture()
def body(pg) -> dict[str, Any]:
    return seed_body(host="127.0.0.1", port=pg.port, user="postgres", password=pg.password, name=None)


def _set(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    *parents, leaf = path.split(".")
    node = out
    for p in parents:
        node = node[p]
    if value is _DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return out


_DELETE = object()


def _refused(api, service, payload: Any, status: int, *, raw: bytes | None = None,
             headers: dict[str, str] | None = None, contains: str = "") -> dict[str, Any]:
    before = catalog_counts(service.home)
    if raw is not None:
        r = api.post("/Instance", content=raw, headers={"Content-Type": "application/json", **(headers or {})})
    else:
        r = api.post("/Instance", json=payload, headers=headers)
    assert r.status_code == status, r.text
    err = r.json()
    assert err["errorCode"] != 0, err
    assert isinstance(err["errorMessage"], str) and err["errorMessage"], err
    assert set(err["entity"]) >= {"subclientId", "clientId", "instanceName", "instanceId", "_type_"}, err
    assert err["entity"]["instanceId"] == 0
    assert contains.lower() in err["errorMessage"].lower(), err["errorMessage"]
    assert catalog_counts(service.home) == before, "a refused request changed the catalog"
    return err


def test_seed_request_creates_instance_and_backs_up_every_database(api, service, pg, body):
    with pg.connect() as conn:
        conn.execute("drop database if exists seed_extra")
        conn.execute("create database seed_extra")
    # (other tests of this worker's session may have registered this server already: then, and only then,
    # the answer warns that it is registered twice)
    twins = api.get("/Instance").json()["instanceProperties"]
    twinned = any(str(pg.port) in json.dumps(t) for t in twins)
    r = api.post("/instance", json=body)  # the reference's spelling; the curl uses /Instance
    assert r.status_code == 200, r.text
    out = r.json()
    entity = out["response"]["entity"]
    assert out["response"]["errorCode"] == 0 and out["response"]["warningCode"] == (1 if twinned else 0), out
    if twinned:
        assert "is already registered as" in out["response"]["warningMessage"]
    assert entity["_type_"] == 5 and entity["instanceId"] > 0 and entity["subclientId"] > 0
    assert entity["instanceName"] == f"127.0.0.1:{pg.port}"  # defaults to the port value
    attrs = {a["name"]: a["value"] for a in out["processinginstructioninfo"]["attributes"]}
    assert attrs["exitval"] == "0"
    job_id = attrs["jobId"]

    first = api.job(job_id)  # visible the moment its id is returned
    assert first["jobId"] == int(job_id)
    assert first["subclient"]["subclientId"] == entity["subclientId"]
    assert first["status"] in ("Waiting", "Running", "Completed")

    done = api.wait_job(job_id)
    assert done["status"] == "Completed", done
    assert done["percentComplete"] == 100
    assert done["jobEndTime"] >= done["jobStartTime"] > 0
    names = {d["name"] for d in done["databases"]}
    assert {"postgres", "seed_extra"} <= names
    assert "template0" not in names and "template1" not in names
    for d in done["databases"]:
        assert d["status"] == "Completed" and d["bytes"] > 0 and len(d["sha256"]) == 64
        assert d["location"].startswith("file:///")

    got = api.get(f"/Instance/{entity['instanceId']}").json()["instanceProperties"][0]
    assert got["instance"]["instanceName"] == entity["instanceName"]
    assert got["postGreSQLInstance"]["SAUser"] == {"userName": "postgres"}
    assert got["postGreSQLInstance"]["port"] == f"127.0.0.1:{pg.port}"
    assert got["planEntity"]["planName"] == "default"
    listed = api.get("/Instance", params={"clientId": entity["clientId"]}).json()["instanceProperties"]
    assert entity["instanceId"] in [i["instance"]["instanceId"] for i in listed]
    assert api.delete(f"/Instance/{entity['instanceId']}").status_code == 200
    assert api.get(f"/Instance/{entity['instanceId']}").status_code == 404


def test_declared_version_mismatch_creates_with_a_warning(api, pg, body):
    body = _set(body, "instanceProperties.version", "13")
    body = _set(body, "instanceProperties.instance.instanceName", "version-mismatch")
    r = api.post("/Instance", json=body)
    assert r.status_code == 200, r.text
    resp = r.json()["response"]
    assert resp["errorCode"] == 0 and resp["warningCode"] != 0
    assert "13" in resp["warningMessage"] and "18" in resp["warningMessage"]
    api.delete(f"/Instance/{resp['entity']['instanceId']}")


@pytest.mark.parametrize("headers", [{}, {"Authtoken": "QSDK 0123456789abcdef"}, {"Authtoken": ""}])
def test_missing_or_invalid_token(anon, service, body, headers):
    anonymous = anon
    _refused(anonymous, service, body, 401, headers=headers)
    _refused(anonymous, service, None, 401, raw=b"{not json", headers=headers)


def test_malformed_json(api, service):
    _refused(api, service, None, 400, raw=b'{"instanceProperties": ', contains="malformed JSON")
    _refused(api, service, None, 400, raw=b"[]")
    _refused(api, service, None, 400, raw=b"")


@pytest.mark.parametrize("path", [
    "instanceProperties",
    "instanceProperties.instance",
    "instanceProperties.version",
    "instanceProperties.postGreSQLInstance",
    "instanceProperties.postGreSQLInstance.port",
    "instanceProperties.postGreSQLInstance.SAUser",
    "instanceProperties.postGreSQLInstance.SAUser.userName",
    "instanceProperties.postGreSQLInstance.SAUser.password",
    "instanceProperties.postGreSQLInstance.cloudDBEngineType",
    "instanceProperties.planEntity",
    "instanceProperties.planEntity.planName",
    "instanceProperties.dbEngine",
])
def test_each_required_field_missing(api, service, body, path):
    err = _refused(api, service, _set(body, path, _DELETE), 400)
    assert path.split(".")[-1] in err["errorMessage"]


@pytest.mark.parametrize(("path", "value"), [
    ("instanceProperties.instance.applicationId", 126),
    ("instanceProperties.instance.applicationId", "125x"),
    ("instanceProperties.postGreSQLInstance.cloudDBEngineType", "MYSQL"),
    ("instanceProperties.postGreSQLInstance.cloudDBEngineType", "postgresql"),
    ("instanceProperties.dbEngine", "MySQL"),
    ("instanceProperties.version", 14),
    ("instanceProperties.version", "latest"),
    ("instanceProperties.postGreSQLInstance.sslOpt.sslEnabled", "maybe"),
    ("instanceProperties.postGreSQLInstance.SAUser.userName", 7),
    ("instanceProperties.planEntity", "default"),
])
def test_wrong_values_and_types(api, service, body, path, value):
    _refused(api, service, _set(body, path, value), 400)


@pytest.mark.parametrize("port", [
    "127.0.0.1", "127.0.0.1:", ":5432", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:54x2",
    "::1:5432", "[::1]", "[not-ipv6]:5432", "host name:5432", "127.0.0.1:5432:1", "",
])
def test_bad_port_formats(api, service, body, port):
    _refused(api, service, _set(body, "instanceProperties.postGreSQLInstance.port", port), 400, contains="port")


def test_invalid_base64_password(api, service, body):
    bad = _set(body, "instanceProperties.postGreSQLInstance.SAUser.password", "not base64!!")
    _refused(api, service, bad, 400, contains="base64")


def test_wrong_password_carries_postgresqls_reason(api, service, body):
    bad = _set(body, "instanceProperties.postGreSQLInstance.SAUser.password", b64("wrong"))
    err = _refused(api, service, bad, 400, contains="password authentication failed")
    assert err["errorCode"] == 4444


def test_unreachable_host(api, service, body, pg):
    from tests.support.service import free_port

    bad = _set(body, "instanceProperties.postGreSQLInstance.port", f"127.0.0.1:{free_port()}")
    _refused(api, service, bad, 400, contains="Connection refused")


def test_unknown_plan(api, service, body):
    _refused(api, service, _set(body, "instanceProperties.planEntity.planName", "nope"), 404, contains="plan")


def test_unknown_cloud_account(api, service, body):
    _refused(api, service, _set(body, "instanceProperties.instance.clientName", "nope"), 404, contains="nope")


def test_duplicate_name_in_the_same_cloud_account(api, service, body):
    body = _set(body, "instanceProperties.instance.instanceName", "dup")
    r = api.post("/Instance", json=body)
    assert r.status_code == 200, r.text
    iid = r.json()["response"]["entity"]["instanceId"]
    # its first backup writes job items: let it end, so that "the refusal changed nothing" is about the refusal
    api.wait_job(r.json()["processinginstructioninfo"]["attributes"][1]["value"])
    try:
        _refused(api, service, _set(body, "instanceProperties.instance.instanceName", "DUP"), 409, contains="dup")
        # another cloud account may use the name
        assert api.post("/Client", json={"clientName": "dup-account"}).status_code == 200
        other = api.post("/Instance", json=_set(body, "instanceProperties.instance.clientName", "dup-account"))
        assert other.status_code == 200, other.text
        api.delete(f"/Instance/{other.json()['response']['entity']['instanceId']}")
    finally:
        api.delete(f"/Instance/{iid}")
    # once deleted, the name is free again
    again = api.post("/Instance", json=body)
    assert again.status_code == 200, again.text
    api.delete(f"/Instance/{again.json()['response']['entity']['instanceId']}")


def test_extra_fields_are_ignored(api, body):
    body = _set(body, "instanceProperties.instance.instanceName", "extras")
    body["instanceProperties"]["somethingNew"] = {"x": 1}
    body["instanceProperties"]["postGreSQLInstance"]["LibDirectory"] = ""
    r = api.post("/Instance", json=body)
    assert r.status_code == 200, r.text
    api.delete(f"/Instance/{r.json()['response']['entity']['instanceId']}")


class TestSSL:
    @pytest.fixture()
    def ssl_body(self, pg_ssl) -> dict[str, Any]:
        return seed_body(host="127.0.0.1", port=pg_ssl.port, user="postgres", password=pg_ssl.password,
                         name=None, version="15", ssl=True)

    def test_ssl_required_by_server_but_not_enabled(self, api, service, ssl_body):
        plain = _set(ssl_body, "instanceProperties.postGreSQLInstance.sslOpt.sslEnabled", False)
        _refused(api, service, plain, 400, contains="no encryption")

    def test_ca_file_missing(self, api, service, ssl_body, tmp_path):
        bad = _set(ssl_body, "instanceProperties.postGreSQLInstance.sslOpt.sslCa", str(tmp_path / "nope.crt"))
        _refused(api, service, bad, 400, contains="sslCa")

    def test_wrong_ca(self, api, service, ssl_body, other_ca):
        bad = _set(ssl_body, "instanceProperties.postGreSQLInstance.sslOpt.sslCa", str(other_ca.ca_cert))
        _refused(api, service, bad, 400, contains="certificate verify failed")

    @pytest.mark.parametrize("verified", [True, False])
    def test_ssl_instance_is_backed_up(self, api, service, ssl_body, test_ca, verified):
        body = ssl_body
        if verified:
            body = _set(body, "instanceProperties.postGreSQLInstance.sslOpt.sslCa", str(test_ca.ca_cert))
        body = _set(body, "instanceProperties.instance.instanceName", f"ssl-{verified}")
        r = api.post("/Instance", json=body)
        assert r.status_code == 200, r.text
        resp = r.json()
        job_id = resp["processinginstructioninfo"]["attributes"][1]["value"]
        done = api.wait_job(job_id)
        assert done["status"] == "Completed", done
        assert any(d["name"] == "postgres" and d["bytes"] > 0 for d in done["databases"])
        assert bridge_processes(service.proc.pid) == []  # the job's bridge ended with it
        api.delete(f"/Instance/{resp['response']['entity']['instanceId']}")

    @pytest.fixture()
    def locked(self, pg_ssl):
        """A database on the SSL server whose one table is locked: a backup's pg_dump of it waits, through
        the bridge, until the test lets it go."""
        with pg_ssl.connect() as conn:
            conn.execute("drop database if exists ssl_locked with (force)")
            conn.execute("create database ssl_locked")
        with pg_ssl.connect("ssl_locked") as conn:
            conn.execute("create table t as select generate_series(1, 1000) x")
        holder = pg_ssl.connect("ssl_locked")
        holder.execute("begin")
        holder.execute("lock table t in access exclusive mode")
        try:
            yield "ssl_locked"
        finally:
            holder.execute("rollback")
            holder.close()
            with pg_ssl.connect() as conn:
                conn.execute("drop database ssl_locked with (force)")

    def _backup_waiting_for_the_lock(self, api, service, pg_ssl, ssl_body, test_ca, name):
        """Registers the SSL instance and returns (its id, the first backup's job, the bridge's pid) once
        that backup's pg_dump waits for the lock."""
        body = _set(ssl_body, "instanceProperties.postGreSQLInstance.sslOpt.sslCa", str(test_ca.ca_cert))
        r = api.post("/Instance", json=_set(body, "instanceProperties.instance.instanceName", name))
        assert r.status_code == 200, r.text
        resp = r.json()
        job_id = resp["processinginstructioninfo"]["attributes"][1]["value"]
        waiting = ("select count(*) from pg_stat_activity where datname = 'ssl_locked' "
                   "and application_name = 'pgvault' and wait_event_type = 'Lock'")
        with pg_ssl.connect() as watcher:
            wait_until(lambda: watcher.execute(waiting).fetchone() == (1,), 60, "pg_dump never waited for the lock")
        [bridge] = bridge_processes(service.proc.pid)
        return resp["response"]["entity"]["instanceId"], job_id, bridge

    def test_bridge_killed_mid_backup_fails_the_job_saying_so(self, api, service, pg_ssl, ssl_body, test_ca,
                                                               locked):
        instance, job_id, bridge = self._backup_waiting_for_the_lock(api, service, pg_ssl, ssl_body, test_ca,
                                                                     "ssl-bridge-killed")
        os.kill(bridge, signal.SIGKILL)
        done = api.wait_job(job_id, timeout=60)
        assert done["status"] == "Failed", done
        assert done["message"] == (
            f"the TLS bridge process for 127.0.0.1:{pg_ssl.port} ended unexpectedly (killed by signal 9 (SIGKILL)), "
            "cutting every connection to the server through it"), done["message"]
        assert not any(d["location"] and stored_path(d["location"]).exists() for d in done["databases"])
        assert bridge_processes(service.proc.pid) == [] and not alive(bridge)
        api.delete(f"/Instance/{instance}")

    def test_killed_ssl_job_leaves_no_bridge(self, api, service, pg_ssl, ssl_body, test_ca, locked):
        instance, job_id, bridge = self._backup_waiting_for_the_lock(api, service, pg_ssl, ssl_body, test_ca,
                                                                     "ssl-job-killed")
        r = api.post(f"/Job/{job_id}/action/kill")
        assert r.status_code == 200, r.text
        done = api.wait_job(job_id, timeout=60)
        assert done["status"] == "Killed", done
        assert bridge_processes(service.proc.pid) == [] and not alive(bridge)
        api.delete(f"/Instance/{instance}")
