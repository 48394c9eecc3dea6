"""Command Center's HTTP conventions: base path, paths without case and with // collapsed, JSON always."""

from __future__ import annotations

import httpx
import pytest


def test_base_path_answers_200(anon, service):
    assert anon.get("/").status_code == 200
    assert httpx.get(service.url + "/commandcenter/api").status_code == 200


@pytest.mark.parametrize("path", ["/client", "/CLIENT", "//Client", "/Client/", "/v2/plan", "/V2//PLAN"])
def test_paths_match_without_case_and_with_slashes_collapsed(api, path):
    r = api.get(path)
    assert r.status_code == 200, (path, r.text)


def test_case_insensitive_paths_with_ids(api):
    plans = api.get("/V2/Plan").json()["plans"]
    pid = plans[0]["plan"]["planId"]
    assert api.get(f"/v2/PLAN/{pid}").json()["plan"]["summary"]["plan"]["planName"] == "default"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/NoSuchThing", 404), ("DELETE", "/Client", 405), ("GET", "/Job/notanumber", 400),
    ("GET", "/Job/99999999", 404), ("GET", "/Instance/99999999", 404), ("GET", "/Client/99999999", 404),
    ("GET", "/V2/Plan/99999999", 404),
])
def test_errors_are_json_envelopes(api, method, path, status):
    r = api.request(method, path)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["errorCode"] != 0 and body["errorMessage"]


def test_openapi_document(service):
    doc = httpx.get(service.url + "/openapi.json").json()
    assert "/commandcenter/api/Instance" in doc["paths"]
    assert "Authtoken" in str(doc["components"]["securitySchemes"])


def test_clients_and_plans_can_be_created_listed_and_read(api, tmp_path):
    r = api.post("/Client", json={"clientName": "acme-prod", "description": "Acme's production account"})
    assert r.status_code == 200, r.text
    cid = r.json()["response"]["entity"]["clientId"]
    assert api.post("/Client", json={"clientName": "ACME-prod"}).status_code == 409
    assert api.post("/Client", json={"clientName": ""}).status_code == 400
    listed = api.get("/Client").json()["clientProperties"]
    assert "acme-prod" in [c["client"]["clientEntity"]["clientName"] for c in listed]
    one = api.get(f"/Client/{cid}").json()["clientProperties"][0]
    assert one["client"]["clientEntity"]["clientId"] == cid

    r = api.post("/V2/Plan", json={"planName": "gold", "storage": {"path": str(tmp_path / "gold")},
                                   "rpoMinutes": 60, "retentionDays": 7})
    assert r.status_code == 200, r.text
    pid = r.json()["plan"]["summary"]["plan"]["planId"]
    assert api.post("/V2/Plan", json={"planName": "GOLD"}).status_code == 409
    assert api.post("/V2/Plan", json={"planName": "x", "storage": {"path": "relative"}}).status_code == 400
    assert api.post("/V2/Plan", json={"planName": "y", "rpoMinutes": 0}).status_code == 400
    plan = api.get(f"/V2/Plan/{pid}").json()["plan"]
    assert plan["retention"]["days"] == 7 and plan["storage"]["path"] == str(tmp_path / "gold")
    assert {"summary", "operationWindow", "fullOperationWindow"} <= set(plan)


def test_backups_go_to_the_plans_storage(api, pg, tmp_path):
    from tests.support.service import seed_body

    folder = tmp_path / "silver"
    assert api.post("/V2/Plan", json={"planName": "silver", "storage": {"path": str(folder)}}).status_code == 200
    r = api.post("/Instance", json=seed_body(host="127.0.0.1", port=pg.port, user="postgres",
                                             password=pg.password, name="on-silver", plan="silver"))
    assert r.status_code == 200, r.text
    done = api.wait_job(r.json()["processinginstructioninfo"]["attributes"][1]["value"])
    assert done["status"] == "Completed"
    assert all(d["location"].startswith(folder.as_uri()) for d in done["databases"])
    api.delete(f"/Instance/{r.json()['response']['entity']['instanceId']}")


def test_routes_are_added_whole():
    """app.add_routes puts each router's own route objects in the application's router: the OpenAPI
    document is exactly what FastAPI's include_router would give for the same routers."""
    from fastapi import FastAPI

    from pgvault import __version__
    from pgvault.api import openapi
    from pgvault.app import PUBLIC, ROUTERS, create_app

    app = create_app()
    reference = FastAPI(title=app.title, version=__version__, description=app.description)
    for router in ROUTERS:
        reference.include_router(router)
    openapi.install(reference, PUBLIC)
    assert app.openapi() == reference.openapi()
    assert len(app.openapi()["paths"]) > 30


def test_every_operation_declares_its_errors_in_the_envelope_and_no_422():
    from pgvault.app import create_app

    doc = create_app().openapi()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            codes = set(op["responses"])
            assert "422" not in codes, (method, path)
            assert {"200", "400"} <= codes, (method, path)
            public = path.endswith("/api/") or path in ("/healthz", "/readyz")
            assert ("401" in codes) != public, (method, path)
            if method in ("post", "put"):
                assert {"404", "413"} <= codes, (method, path)
            for code, response in op["responses"].items():
                if code != "200":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, code)
    assert "409" in doc["paths"]["/commandcenter/api/Instance"]["post"]["responses"]


def test_the_log_says_where_it_listens_and_one_line_per_request_without_secrets(service, api):
    import time

    r = api.get("/Job/987654", params={"secret": "not-logged"})
    assert r.status_code == 404
    deadline = time.monotonic() + 10
    while "/Job/987654 404" not in service.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = service.log_text()
    assert f"listening on http://127.0.0.1:{service.port} (PGVAULT_HOME {service.home.resolve()})" in log
    line = next(x for x in log.splitlines() if "GET /commandcenter/api/Job/987654 404" in x)
    assert "pgvault.access" in line and " ms 127.0.0.1" in line
    assert "not-logged" not in log and api.token.split()[-1] not in log
