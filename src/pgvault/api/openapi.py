"""The OpenAPI document as pgvault answers, not as FastAPI guesses: every operation declares its success
answer's shape (a model of schemas/, through ``answers``) and the error responses it can give, in Command
Center's envelope (``ErrorBody``), and none declares the 422 that FastAPI adds by default and pgvault never
sends (api/errors.py answers bad input with a 400).

Which errors an operation declares follows from what it is (one rule, here): 400 for every operation (bad
input of any kind); 401 unless it is public without a body (Login checks a password); 403 unless it is public (the
capability it declares, ``x-pgvault-capability``, domain/access.py); 404 when it names
something (a path or query parameter, or a body);
413 when it takes a body; 409 when its route says so (``CONFLICT``); 429 with Retry-After where a
password is checked (``THROTTLED``: POST /Login). Schemathesis checks the document
against the running service in CI (tests/test_fuzz.py: status code, content type and schema conformance).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ..schemas.common import ErrorBody

_ERRORS = {
    "400": "bad input: a missing or wrong field, a wrong type, malformed JSON, a value out of range (errorCode 2)",
    "401": "no token, or a bad or expired one (errorCode 5)",
    "403": "the caller's role lacks the capability the operation needs (x-pgvault-capability; errorCode 11)",
    "404": "something the request names does not exist (errorCode 6)",
    "409": "a name already in use, or a resource busy (errorCode 7)",
    "413": "a request body over PGVAULT_MAX_BODY_BYTES (errorCode 2)",
    "429": "too many failed logins lately, or too many at once: try again after Retry-After seconds (errorCode 12)",
}
THROTTLED: dict[int | str, dict[str, Any]] = {429: {
    "model": ErrorBody, "description": _ERRORS["429"],
    "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}}}
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": ErrorBody, "description": _ERRORS["409"]}}


def answers(model: Any, description: str, *, conflict: bool = False,
            throttled: bool = False) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses``: its HTTP 200 answer is ``model`` (and, with ``conflict``, it may answer 409;
    with ``throttled``, 429).
    For the document only: FastAPI neither validates nor filters what the route returns against it (so the
    pre-serialised answers of the hot paths stay as they are, and no field is ever dropped), which is why
    ``response_model`` is not used."""
    out: dict[int | str, dict[str, Any]] = {200: {"model": model, "description": description}}
    return {**out, **(CONFLICT if conflict else {}), **(THROTTLED if throttled else {})}
_BODY_METHODS = {"post", "put", "patch"}


def install(app: FastAPI, public_paths: frozenset[str]) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app, public_paths)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(app: FastAPI, public_paths: frozenset[str]) -> dict[str, Any]:
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["ErrorBody"] = ErrorBody.model_json_schema()
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in doc["paths"].items():
        public = path in public_paths or path.rstrip("/") in public_paths
        for method, op in operations.items():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            codes = {"400"}
            has_body = "requestBody" in op or method in _BODY_METHODS
            if public:
                op["security"] = [{}, *op.get("security", [])]  # a token is optional there
            if not public or has_body:  # (a public operation with a body checks what it carries: Login)
                codes.add("401")
            if op.get("x-pgvault-capability", "public") != "public":
                codes.add("403")
            if "{" in path or has_body or op.get("parameters"):
                codes.add("404")
            if has_body:
                codes.add("413")
            for code in sorted(codes):
                responses.setdefault(code, {"description": _ERRORS[code]})
            for code, response in responses.items():
                if code == "200":  # the model's $ref alone, not merged into FastAPI's guess from `-> dict`
                    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                    if "$ref" in schema:
                        response["content"]["application/json"]["schema"] = {"$ref": schema["$ref"]}
                if code != "200" and code[0] in "45":
                    response["content"] = {"application/json": {"schema": ref}}
    return doc
