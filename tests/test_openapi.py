"""The OpenAPI document types every success answer (issue 16): each operation's 200 is a named model of
schemas/, and the answers recorded in tests/data/read_paths.json are what those models say. (The fuzz run,
tests/test_fuzz.py, checks the running service's answers against them too; tests/support/service.Api checks
every 200 the service tests get.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, RootModel
from tests.support import answers

from pgvault.app import create_app
from pgvault.schemas.common import Answer
from pgvault.schemas.instance import InstanceList
from pgvault.schemas.jobs import JobDetailsResponse, JobList

GOLDEN = json.loads((Path(__file__).parent / "data" / "read_paths.json").read_text())
OPERATIONS = 79  # (+ POST /Instance/action/testConnection, the users' routes, GET /AuditTrail and its export)
# not JSON: Prometheus' text format; the audit trail's export as JSON lines
TEXT = {"/metrics": "prometheus", "/commandcenter/api/AuditTrail/export": "application/x-ndjson"}


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


def test_every_operation_declares_a_named_success_model():
    doc = create_app().openapi()
    ops = operations(doc)
    assert len(ops) == OPERATIONS  # a new route needs its model (and this count)
    schemas = doc["components"]["schemas"]
    for method, path, op in ops:
        ok = op["responses"]["200"]
        assert ok["description"] != "Successful Response", (method, path)  # said what it answers
        if path in TEXT:
            from prometheus_client import CONTENT_TYPE_LATEST

            assert list(ok["content"]) == [TEXT[path].replace("prometheus", CONTENT_TYPE_LATEST)], ok
            continue
        schema = ok["content"]["application/json"]["schema"]
        assert list(schema) == ["$ref"], (method, path, schema)  # a model, not FastAPI's {} or object
        name = schema["$ref"].removeprefix("#/components/schemas/")
        assert name in schemas and schemas[name] != {}, (method, path)


# Answer models open to fields they do not list: a job item's details are free JSON in the catalog.
OPEN = {"ItemDetail"}


def test_the_models_are_closed_unless_said_so():
    """Every answer model lists all its fields (additionalProperties false): an undeclared field in an
    answer fails the fuzz run's schema check, so a model cannot silently fall behind its route. (Request
    models stay open: Command Center ignores fields it does not know.)"""
    doc = create_app().openapi()
    open_answers = {name for name, schema in doc["components"]["schemas"].items()
                    if "properties" in schema and schema.get("additionalProperties") is not False and _is_answer(name)}
    assert open_answers == OPEN


def _is_answer(name: str) -> bool:
    seen: set[type] = set()

    def walk(cls: type) -> bool:
        if cls in seen:
            return False
        seen.add(cls)
        return cls.__name__ == name or any(walk(sub) for sub in cls.__subclasses__())

    return walk(Answer)


def _validate_all(method: str, path: str, bodies: list[Any]) -> int:
    for body in bodies:
        answers.check(method, path, body)
    return len(bodies)


def test_the_recorded_answers_are_what_the_document_declares():
    """tests/data/read_paths.json: GET /Instance pages, GET /Instance/{id}, GET /Job/{id}, POST /Jobs and POST
    /JobDetails as the service answered them (every case their shapes depend on), against the generated
    document's schemas (JSON Schema, as a client generator reads them)."""
    n = _validate_all("GET", "/Instance", [page["body"] for page in GOLDEN["pages"]])
    n += _validate_all("GET", "/Instance/300", list(GOLDEN["one"].values()))
    n += _validate_all("GET", "/Job/900", list(GOLDEN["jobs"].values()))
    n += _validate_all("POST", "/Jobs", [listed["body"] for listed in GOLDEN["lists"]])
    n += _validate_all("POST", "/JobDetails", list(GOLDEN["details"].values()))
    assert n > 40


@pytest.mark.parametrize(("model", "bodies"), [
    (InstanceList, lambda: [p["body"] for p in GOLDEN["pages"]] + list(GOLDEN["one"].values())),
    (JobList, lambda: list(GOLDEN["jobs"].values()) + [listed["body"] for listed in GOLDEN["lists"]]),
    (JobDetailsResponse, lambda: list(GOLDEN["details"].values())),
], ids=["InstanceList", "JobList", "JobDetailsResponse"])
def test_the_recorded_answers_are_what_the_models_say(model: type[BaseModel], bodies):
    """The same answers through the pydantic models themselves, and back: nothing is lost or added."""
    for body in bodies():
        parsed = model.model_validate(body)
        assert parsed.model_dump(by_alias=True, exclude_unset=True) == body


def test_a_wrong_answer_is_caught():
    """The check has teeth: a missing field, an extra one, a wrong type or a wrong constant each fail."""
    good = GOLDEN["one"]["300"]
    answers.check("GET", "/Instance/300", good)
    entry = good["instanceProperties"][0]
    for broken in (
        {k: v for k, v in entry.items() if k != "nextBackupTime"},
        {**entry, "password": "x"},
        {**entry, "createdTime": "yesterday"},
        {**entry, "dbEngine": "MySQL"},
    ):
        with pytest.raises(AssertionError, match="not the declared"):
            answers.check("GET", "/Instance/300", {"instanceProperties": [broken]})


def test_operations_are_found_as_the_service_finds_them():
    assert answers.operation("GET", "/instance/3?limit=1") == "/commandcenter/api/Instance/{instance_id}"
    assert answers.operation("GET", "//CommCell/Credentials") == "/commandcenter/api/CommCell/Credentials"
    assert answers.operation("POST", "/Job/4/action/kill") == "/commandcenter/api/Job/{job_id}/action/kill"
    assert answers.operation("GET", "/commandcenter/api/") == "/commandcenter/api/"


def test_union_answers_are_named_root_models():
    """Where a route answers one of two shapes, the document names the choice (a root model): GET /Client
    (cloud accounts, or no pseudo-clients) and POST /Instance (registered, or refused in cvpysdk's way)."""
    from pgvault.schemas.clients import ClientListAnswer
    from pgvault.schemas.instance import CreateInstanceAnswer

    for model in (ClientListAnswer, CreateInstanceAnswer):
        assert issubclass(model, RootModel)
    answers.check("GET", "/Client?PseudoClientType=VSPseudo", {"VSPseudoClientsList": []})
    refused = {"errorCode": 6, "errorMessage": "no", "entity": {"subclientId": 0, "clientId": 0, "instanceName": "",
                                                                 "instanceId": 0, "_type_": 5}}
    answers.check("POST", "/Instance", {**refused, "response": {"errorCode": 6, "errorString": "no",
                                                                "entity": refused["entity"]}})
