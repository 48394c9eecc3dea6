"""The audit trail: recorded here for every route at once, and read through ``GET /AuditTrail``.

``AuditTrail`` is an ASGI middleware that records every request the application routes to a route whose
method changes something (anything but GET and HEAD, minus the few reads Command Center asks with a POST,
``NOT_AUDITED``), plus the reads that reveal a secret's use (``AUDITED_READS``), whatever module or prefix
the route has (the console's form actions included): nothing per route, so a new route cannot be forgotten.
A record holds the route's template and endpoint name, its path and query parameters, the status answered,
the client's address and the user. The user is what authenticated the request, in ``request.state.user``:
set by ``api.deps.current_user`` (the API's token check), ``console.session.viewer`` (the console's
session) and ``note_user`` (the login and renewal routes, and any other way in); a login notes the name
tried (``note``). Never a body or a header: no password, no token reaches the trail.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..context import Context
from ..domain.access import Capability, requires
from ..errors import BadRequest
from ..schemas.audit import AuditTrailList
from ..services import audit
from ..services.auth import AuthUser
from . import BASE
from .deps import ContextDep, UserDep
from .openapi import answers

log = logging.getLogger("pgvault.audit")
router = APIRouter(prefix=BASE, tags=["audit"])

# Reads that Command Center's API asks with a POST: not actions.
NOT_AUDITED = frozenset({("POST", BASE + "/Jobs"), ("POST", BASE + "/JobDetails"), ("POST", BASE + "/WhoAmI"),
                         ("POST", BASE + "/DoBrowse")})
# GETs that reveal a secret's use (none today: no GET answers a secret); recorded like actions.
AUDITED_READS: frozenset[tuple[str, str]] = frozenset()
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_VERSION = re.compile(r"^(V\d+|CommCell|Commcell)$")
_ID_KEYS = ("instanceId", "planId", "clientId", "credentialId", "targetId", "userId", "roleId", "keyId", "id")
_SECRET_NAMES = re.compile(r"pass|secret|token|key", re.IGNORECASE)
_CAPTURE = 64 * 1024  # of a success answer's JSON, read for the new resource's id and jobIds


def note_user(request: Request, user: AuthUser | None) -> None:
    """The user a request acts as, for its audit record (whatever authenticated it: a token, a console's
    session)."""
    if user is not None:
        request.state.user = user


def note(request: Request, **details: Any) -> None:
    """Something the record should carry that the route table cannot know (a login's user name)."""
    notes = getattr(request.state, "audit", None)
    if notes is None:
        request.state.audit = notes = {}
    notes.update(details)


def resource_of(template: str) -> str:
    """``/V2/Plan/{plan_id}`` -> Plan; ``/CommCell/Credentials/action/delete`` -> Credentials; ``/Login`` ->
    Login; ``/plans/new`` -> plans: the last literal segment before the first parameter, ``action`` or
    ``new``, versions skipped."""
    path = template[len(BASE):] if template.startswith(BASE) else template
    literals: list[str] = []
    for seg in path.strip("/").split("/"):
        if seg.startswith("{") or seg in ("action", "new"):
            break
        if seg and not _VERSION.match(seg):
            literals.append(seg)
    return literals[-1] if literals else (path.strip("/").split("/")[0] or "/")


def _found_ids(doc: Any, depth: int = 0) -> tuple[str | None, list[str] | None]:
    """The first resource id (by ``_ID_KEYS`` order) and the jobIds a JSON answer names."""
    if not isinstance(doc, dict) or depth > 3:
        return None, None
    jobs = doc.get("jobIds")
    job_ids = [str(j) for j in jobs[:20]] if isinstance(jobs, list) else None
    for key in _ID_KEYS:
        value = doc.get(key)
        if isinstance(value, int | str) and not isinstance(value, bool) and str(value) not in ("", "0"):
            return str(value), job_ids
    for value in doc.values():
        found, more = _found_ids(value, depth + 1)
        job_ids = job_ids or more
        if found is not None:
            return found, job_ids
    return None, job_ids


class AuditTrail:
    """The middleware (inside the path canonicalisation: it sees the routes' own spelling)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"] in _READ_METHODS and not AUDITED_READS):
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})  # shared with the request objects of the app (request.state)
        status = 0
        is_json = False
        body = bytearray()
        recorded = False

        async def send_noting(message: Message) -> None:
            nonlocal status, is_json, recorded
            if message["type"] == "http.response.start":
                status = message["status"]
                is_json = any(k.lower() == b"content-type" and v.startswith(b"application/json")
                              for k, v in message.get("headers", ()))
            elif message["type"] == "http.response.body" and not recorded:
                if is_json and status < 400 and len(body) < _CAPTURE:
                    body.extend(message.get("body", b"")[: _CAPTURE - len(body)])
                if not message.get("more_body", False):
                    recorded = True
                    await self._record(scope, status, bytes(body))  # before the answer's end
            await send(message)

        try:
            await self.app(scope, receive, send_noting)
        except BaseException:
            if not recorded:
                recorded = True
                await self._record(scope, 500, b"")
            raise

    async def _record(self, scope: Scope, status: int, answer: bytes) -> None:
        route = scope.get("route")
        method = scope["method"]
        if not isinstance(route, Route) or method not in (route.methods or ()):
            return  # no route (404) or not this method (405): nothing was done
        template = route.path
        if method in _READ_METHODS and (method, template) not in AUDITED_READS:
            return
        if (method, template) in NOT_AUDITED:
            return
        try:
            row = self._row(scope, route, status, answer)
            ctx: Context = scope["app"].state.context
            fut = ctx.audit.submit(row)
            if status < 400:  # an action done: the answer waits for its record (a refusal changed nothing)
                await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)), audit.WAIT_SECONDS)
        except TimeoutError:
            log.warning("the audit record of %s %s is not written yet after %.0f s; it stays queued", method,
                        template, audit.WAIT_SECONDS)
        except Exception:
            log.exception("could not record %s %s in the audit trail", method, template)

    def _row(self, scope: Scope, route: Route, status: int, answer: bytes) -> dict[str, Any]:
        state = scope.get("state") or {}
        notes: dict[str, Any] = dict(state.get("audit") or {})
        user = state.get("user")
        user_id = user.id if isinstance(user, AuthUser) else None
        user_name = user.username if isinstance(user, AuthUser) else None
        tried = notes.pop("userName", None)
        if tried is not None and user_name is None:
            user_name = str(tried)
        path_params = {k: str(v)[:200] for k, v in (scope.get("path_params") or {}).items()}
        query = _query(scope.get("query_string", b""))
        resource_id = next(iter(path_params.values()), None)
        details = dict(notes)
        if answer:
            try:
                found, job_ids = _found_ids(json.loads(answer))
            except ValueError:
                found, job_ids = None, None
            if resource_id is None and found is not None:
                resource_id = found
            if job_ids:
                details["jobIds"] = job_ids
        client = scope.get("client")
        template = route.path
        shown_route = template[len(BASE):] if template.startswith(BASE + "/") else template
        return audit.event(
            method=scope["method"], action=getattr(route, "name", None) or shown_route,
            route=f"{scope['method']} {shown_route}", resource=resource_of(template), status=status,
            user_id=user_id, user_name=user_name, address=client[0] if client else None, resource_id=resource_id,
            params={**path_params, **query}, details=details)


def _query(raw: bytes) -> dict[str, str]:
    """Query parameters worth keeping (``deleteBackups``, ``backupLevel``), never one named like a secret."""
    from urllib.parse import parse_qsl

    out: dict[str, str] = {}
    for k, v in parse_qsl(raw.decode("latin-1"), keep_blank_values=True)[:20]:
        if not _SECRET_NAMES.search(k):
            out[k[:64]] = v[:200]
    return out


# -- reading ---------------------------------------------------------------------------------------

Outcome = Literal["success", "failure"]


def _filters(user: str | None, action: str | None, resource: str | None, resource_id: str | None,
             outcome: Outcome | None, since: dt.datetime | None, until: dt.datetime | None) -> audit.Filters:
    def utc(value: dt.datetime | None, name: str) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        if not dt.datetime(1970, 1, 1, tzinfo=dt.UTC) <= value <= dt.datetime(9999, 1, 1, tzinfo=dt.UTC):
            raise BadRequest(f"{name} is out of range")
        return value
    return audit.Filters(user=user, action=action, resource=resource, resource_id=resource_id, outcome=outcome,
                         since=utc(since, "since"), until=utc(until, "until"))


Text255 = Annotated[str | None, Query(max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$")]
When = Annotated[dt.datetime | None, Query(description="ISO 8601 (UTC when no offset) or epoch seconds")]


@router.get("/AuditTrail", summary="The audit trail, newest first: who did what, from where, with which outcome",
            responses=answers(AuditTrailList, "the matching records and how many match in all"))
@requires(Capability.READ_AUDIT)
def list_audit(
    ctx: ContextDep, _user: UserDep,
    user: Annotated[str | None, Query(max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$",
                                      description="a user name, or a user id")] = None,
    action: Annotated[str | None, Query(max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$",
                                        description="an action (login, create_instance ...) or a route "
                                                    "(POST /Instance)")] = None,
    resource: Text255 = None,
    resourceId: Text255 = None,
    outcome: Outcome | None = None,
    since: When = None,
    until: When = None,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    f = _filters(user, action, resource, resourceId, outcome, since, until)
    ctx.audit.flush()  # what this process answered before is in what it reads
    with ctx.catalog.transaction(write=False) as s:
        rows, total = audit.page(s, f, offset, limit)
    return {"auditTrail": rows, "totalRecordsWithoutPaging": total}


class JsonLines(StreamingResponse):
    media_type = "application/x-ndjson"


@router.get("/AuditTrail/export", summary="The audit trail as JSON lines, oldest first (same filters)",
            response_class=JsonLines, responses={200: {"description": "one record (as in GET /AuditTrail) per line",
                             "content": {"application/x-ndjson": {"schema": {"type": "string"}}}}})
@requires(Capability.READ_AUDIT)
async def export_audit(
    request: Request, _user: UserDep,
    user: Annotated[str | None, Query(max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$",
                                      description="a user name, or a user id")] = None,
    action: Text255 = None,
    resource: Text255 = None,
    resourceId: Text255 = None,
    outcome: Outcome | None = None,
    since: When = None,
    until: When = None,
) -> JsonLines:
    ctx: Context = request.app.state.context
    f = _filters(user, action, resource, resourceId, outcome, since, until)

    def batch(after: int) -> list[dict[str, Any]]:
        with ctx.catalog.transaction(write=False) as s:
            return audit.after(s, f, after, 1000)

    async def lines() -> AsyncIterator[bytes]:
        await run_in_threadpool(ctx.audit.flush)  # what this process answered before is in what it reads
        after = 0
        while True:
            rows = await run_in_threadpool(batch, after)
            if not rows:
                return
            yield b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in rows)
            after = rows[-1]["id"]

    return JsonLines(lines())
