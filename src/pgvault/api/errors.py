"""The one place where errors become HTTP: Command Center's envelope, never the framework's defaults.

400 for bad input of any kind (including what FastAPI would answer with 422), 401, 403, 404, 409, 429 (with
``Retry-After``), and a 500
only for bugs, logged with their traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, StatementError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from ..domain import access
from ..errors import ECHO_CHARS, MESSAGE_CHARS, Forbidden, NotAuthenticated, PgvaultError, TooManyRequests, clip
from ..schemas.instance import SDK_SHAPE, SEED_SHAPE, instance_entity
from .deps import check_token, run_read

log = logging.getLogger("pgvault.api")


def envelope(status: int, code: int, message: str, entity: dict[str, Any] | None = None) -> JSONResponse:
    """Command Center's error body. Messages quote bad values through ``errors.shown`` (bounded); the
    message as a whole is bounded here too, whatever it quotes (a list of many errors, an OS error)."""
    return JSONResponse(status_code=status, content={
        "errorCode": code, "errorMessage": clip(message, MESSAGE_CHARS), "entity": entity or {}})


def reply_errors_in_body(request: Request) -> None:
    """Refuse this request the way Command Center refuses cvpysdk's instance add: HTTP 200 with
    ``response.errorCode`` and ``response.errorString``, which is the only refusal the SDK reads (it turns
    any other status into "Response was not success")."""
    request.state.errors_in_body = True


def _refusal(request: Request, status: int, code: int, message: str, entity: dict[str, Any]) -> JSONResponse:
    if getattr(request.state, "errors_in_body", False):
        message = clip(message, MESSAGE_CHARS)
        return JSONResponse(status_code=200, content={
            "errorCode": code, "errorMessage": message, "entity": entity,
            "response": {"errorCode": code, "errorString": message, "entity": entity},
        })
    return envelope(status, code, message, entity)


def _default_entity(request: Request) -> dict[str, Any]:
    path = request.url.path.lower().rstrip("/")
    return instance_entity() if path.endswith("/instance") else {}


_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> str:
    """The ``Allow`` of a 405: the methods of every route of this path (a path is served by several
    routes, one or two methods each, and the route Starlette picked knows only its own)."""
    path = request.scope["path"]
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(path):
            methods |= route.methods
    return ", ".join(sorted(methods, key=lambda m: (_METHOD_ORDER.index(m) if m in _METHOD_ORDER else 99, m)))


def body_too_large(request: Request, message: str) -> JSONResponse:
    """413 for a body over ``PGVAULT_MAX_BODY_BYTES`` (``api/limits.py``): bad input, errorCode 2."""
    return _refusal(request, 413, 2, message, _default_entity(request))


def describe_validation(errors: list[Any]) -> str:
    parts = []
    for err in errors:
        loc = [clip(str(p), ECHO_CHARS) for p in err.get("loc", ()) if p != "body"]  # keys of a dict sent
        if loc and loc[0] in (SEED_SHAPE, SDK_SHAPE):  # which of POST /Instance's two shapes was read
            loc = loc[1:]
        msg = str(err.get("msg", "invalid"))
        msg = msg.removeprefix("Value error, ")
        if err.get("type") == "json_invalid":
            parts.append(f"malformed JSON: {err.get('ctx', {}).get('error', msg)}")
        elif err.get("type") == "missing":
            parts.append(f"{'.'.join(loc) or 'body'} is required")
        else:
            parts.append(f"{'.'.join(loc) or 'body'}: {msg}")
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI, public_paths: frozenset[str],
            html: Callable[[Request, int, str], Response | None] | None = None) -> None:
    """``html``: the web console's page for an error on one of its paths (None for an API path)."""

    def page(request: Request, status: int, message: str) -> Response | None:
        return html(request, status, message) if html is not None else None

    @app.exception_handler(PgvaultError)
    async def _pgvault(request: Request, exc: PgvaultError) -> Response:
        if (shown := page(request, exc.http_status, exc.message)) is not None:
            return shown
        entity = exc.entity if exc.entity is not None else _default_entity(request)
        answer = _refusal(request, exc.http_status, exc.error_code, exc.message, entity)
        if isinstance(exc, TooManyRequests):
            answer.headers["Retry-After"] = str(exc.retry_after)
        return answer

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        # (a console page: its session was checked before its parameters, and it has no Authtoken header)
        if (shown := page(request, 400, describe_validation(list(exc.errors())))) is not None:
            return shown
        # FastAPI parses the body before it runs dependencies; the token is still checked first, so
        # that a caller without one learns nothing about the endpoint's input rules.
        # Likewise the capability: a caller whose role may not use the endpoint gets its 403 (domain/access.py).
        if request.url.path not in public_paths:
            try:
                ctx = request.app.state.context
                user = await run_read(ctx, check_token, ctx, request.headers.get("authtoken"))
                request.state.user = user  # (the audit record names who was refused)
                route = request.scope.get("route")
                needed = access.capability_of(route.endpoint) if route is not None else None
                if isinstance(needed, access.Capability):
                    access.require(user, needed)
            except (NotAuthenticated, Forbidden) as denied:
                return envelope(denied.http_status, denied.error_code, denied.message, _default_entity(request))
        errors = list(exc.errors())
        if _default_entity(request) and any(tuple(e.get("loc", ()))[:2] == ("body", SDK_SHAPE) for e in errors):
            reply_errors_in_body(request)  # (POST /Instance only: what cvpysdk's add_postgresql_instance reads)
        return _refusal(request, 400, 2, describe_validation(errors), _default_entity(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:
            # FastAPI's own refusal of a body it could not parse as JSON at all (bytes that are not UTF-8,
            # nesting deeper than the parser goes): malformed JSON, errorCode 2 like any other.
            cause = exc.__cause__
            reason = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc.detail)
            return _refusal(request, 400, 2, f"malformed JSON: {reason}", _default_entity(request))
        if exc.status_code == 413:
            return body_too_large(request, str(exc.detail))
        messages = {404: f"no such endpoint: {request.method} {request.url.path}",
                    405: f"{request.method} is not allowed on {request.url.path}"}
        if exc.status_code in (404, 405) and (shown := page(request, exc.status_code, messages[exc.status_code])):
            if exc.status_code == 405:
                shown.headers["Allow"] = allowed_methods(request)
            return shown
        answer = envelope(exc.status_code, exc.status_code, messages.get(exc.status_code, str(exc.detail)))
        if exc.status_code == 405:
            answer.headers["Allow"] = allowed_methods(request)
        return answer

    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, exc: OverflowError) -> Response:
        if (shown := page(request, 400, "a number in the request is out of range")) is not None:
            return shown
        return _refusal(request, 400, 2, "a number in the request is out of range", _default_entity(request))

    @app.exception_handler(StatementError)
    async def _statement(request: Request, exc: StatementError) -> JSONResponse:
        # Values the catalog cannot store (an id beyond 64 bits, a string too long for its column, a NUL
        # byte on PostgreSQL) are bad input, not bugs; anything else is a bug.
        if isinstance(exc.orig, OverflowError) or isinstance(exc, DataError):
            reason = str(exc.orig).splitlines()[0] if exc.orig else "out of range"
            return _refusal(request, 400, 2, f"a value in the request cannot be stored: {reason}",
                            _default_entity(request))
        return await _bug(request, exc)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return envelope(500, 1, f"internal error ({type(exc).__name__}); see the server log")
