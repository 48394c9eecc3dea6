"""GET /audit (the audit trail, newest first, with filters and pages) and GET /audit/export (the same
filters as JSON lines, oldest first).

Both call the API's own functions (``api.audit.list_audit``, ``api.audit.export_audit``), so the filters
mean what they mean in ``GET /AuditTrail``. The export has a console route of its own because the
console's session is a cookie, not the API's ``Authtoken`` header: a link to ``/commandcenter/api/
AuditTrail/export`` from the page would be refused.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal, cast
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ...api import audit as api_audit
from ...api.deps import run_read
from ...context import Context
from ...domain.access import Capability, requires
from ...errors import BadRequest, PgvaultError
from ..render import page
from ..session import ViewerDep

router = APIRouter(include_in_schema=False)
PAGE = 50
SECTION = "/audit"
FIELDS = ("user", "action", "resource", "resourceId", "outcome", "since", "until")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
Text = Annotated[str, Query(max_length=2000)]


def _moment(text: str, field: str, errors: dict[str, str]) -> dt.datetime | None:
    """A ``datetime-local`` field's value (``YYYY-MM-DDTHH:MM``), read as UTC."""
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        errors[field] = f"not a date and time: {text[:60]!r} (expected YYYY-MM-DD HH:MM, UTC)"
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _checked(values: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The API's keyword arguments from the form's fields, and the errors of the fields it would refuse."""
    errors: dict[str, str] = {}
    for key in ("user", "action", "resource", "resourceId"):
        if len(values[key]) > 255:
            errors[key] = "at most 255 characters"
        elif _CONTROL.search(values[key]):
            errors[key] = "no control characters"
    if values["outcome"] not in ("", "success", "failure"):
        errors["outcome"] = "success, failure, or any"
    since, until = _moment(values["since"], "since", errors), _moment(values["until"], "until", errors)
    if since and until and until <= since:
        errors["until"] = "the end of the time range must come after its start"
    kwargs = {"user": values["user"] or None, "action": values["action"] or None,
              "resource": values["resource"] or None, "resourceId": values["resourceId"] or None,
              "outcome": cast(Literal["success", "failure"] | None, values["outcome"] or None),
              "since": since, "until": until}
    return kwargs, errors


def _place(message: str) -> str:
    """The field an error of the API concerns (``since is out of range``), else the form's."""
    word = message.split(" ", 1)[0]
    return word if word in FIELDS else ""


@router.get("/audit")
@requires(Capability.READ_AUDIT)
async def audit_trail(request: Request, viewer: ViewerDep, user: Text = "", action: Text = "", resource: Text = "",
                      resourceId: Text = "", outcome: Text = "", since: Text = "", until: Text = "",
                      page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1) -> Response:
    ctx: Context = request.app.state.context
    values = {"user": user.strip(), "action": action.strip(), "resource": resource.strip(),
              "resourceId": resourceId.strip(), "outcome": outcome, "since": since, "until": until}
    kwargs, errors = _checked(values)
    offset = (page_no - 1) * PAGE
    records: list[dict[str, Any]] = []
    total = 0
    if not errors:
        try:
            answer = await run_read(ctx, lambda: api_audit.list_audit(ctx, viewer.user, **kwargs, offset=offset,
                                                                       limit=PAGE), short=False)
        except PgvaultError as exc:
            errors[_place(exc.message)] = exc.message
        else:
            total = answer["totalRecordsWithoutPaging"]
            records = [{**r, "at": dt.datetime.fromtimestamp(r["time"], dt.UTC)} for r in answer["auditTrail"]]
    shown = {k: v for k, v in values.items() if v}

    def url(n: int) -> str:
        return "/audit?" + urlencode({**shown, "page": n})

    return page(request, "audit.html", viewer, section=SECTION, records=records, total=total, filters=values,
                errors=errors, first=offset + 1, last=offset + len(records),
                export_url="/audit/export" + ("?" + urlencode(shown) if shown else ""),
                prev_url=url(page_no - 1) if page_no > 1 else None,
                next_url=url(page_no + 1) if offset + PAGE < total else None,
                status_code=400 if errors else 200)


@router.get("/audit/export")
@requires(Capability.READ_AUDIT)
async def audit_export(request: Request, viewer: ViewerDep, user: Text = "", action: Text = "", resource: Text = "",
                       resourceId: Text = "", outcome: Text = "", since: Text = "", until: Text = "") -> Response:
    values = {"user": user.strip(), "action": action.strip(), "resource": resource.strip(),
              "resourceId": resourceId.strip(), "outcome": outcome, "since": since, "until": until}
    kwargs, errors = _checked(values)
    if errors:
        raise BadRequest("; ".join(f"{k}: {v}" for k, v in errors.items()))
    response = await api_audit.export_audit(request, viewer.user, **kwargs)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    response.headers["Content-Disposition"] = f'attachment; filename="pgvault-audit-{stamp}.jsonl"'
    response.headers["Cache-Control"] = "no-store"
    return response
