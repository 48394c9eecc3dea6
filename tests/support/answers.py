"""The success answers the OpenAPI document declares, as a check on real answers: ``check(method, path,
body)`` validates a JSON answer against the 200 schema of the operation the path names (the document's own
JSON Schema, so exactly what a client generator reads). tests/support/service.Api checks every HTTP 200
answer the tests get through it."""

from __future__ import annotations

import functools
import re
from typing import Any

import jsonschema

from pgvault.api import BASE


@functools.cache
def document() -> dict[str, Any]:
    from pgvault.app import create_app

    return create_app().openapi()


@functools.cache
def _templates() -> list[tuple[re.Pattern[str], str]]:
    """The document's paths as patterns (case-insensitive, as the service matches them), literal ones first."""
    paths = sorted(document()["paths"], key=lambda p: p.count("{"))
    return [(re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(p)) + "/?$", re.IGNORECASE), p)
            for p in paths]


def operation(method: str, path: str) -> str | None:
    """The document path of ``path`` (with or without the API's base, a query string ignored), if any."""
    path = re.sub("/{2,}", "/", path.split("?", 1)[0].split("#", 1)[0])
    if not path.lower().startswith(BASE.lower()):
        path = BASE + ("" if path.startswith("/") else "/") + path
    for pattern, template in _templates():
        if pattern.match(path) and method.lower() in document()["paths"][template]:
            return template
    return None


@functools.cache
def validator(template: str, method: str) -> jsonschema.protocols.Validator:
    schema = document()["paths"][template][method]["responses"]["200"]["content"]["application/json"]["schema"]
    root = {**schema, "components": document()["components"]}
    cls = jsonschema.validators.validator_for(root, default=jsonschema.Draft202012Validator)
    return cls(root)  # type: ignore[no-any-return]


def check(method: str, path: str, body: Any) -> None:
    """Raise AssertionError naming every way ``body`` is not the declared 200 answer of ``method path``."""
    template = operation(method, path)
    assert template is not None, f"{method} {path}: no such operation in the document"
    errors = sorted(validator(template, method.lower()).iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, f"{method} {path}: the answer is not the declared {template} 200:\n" + "\n".join(
        f"  at {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:300]}" for e in errors[:10])


def check_status(method: str, path: str, status: int) -> None:
    """Every status code a test observes from an operation is one the document declares for it (the
    declared codes cover what the tests see; the fuzz run checks the same for generated requests)."""
    template = operation(method, path)
    if template is None or method.upper() == "HEAD":
        return  # no such operation: the 404/405 of the router, declared nowhere by design
    declared = document()["paths"][template][method.lower()]["responses"]
    assert str(status) in declared, f"{method} {path}: answered {status}, which {template} does not declare"
