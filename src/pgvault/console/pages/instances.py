"""Registering an instance (GET/POST /instances/new, POST /instances/test) and an instance's page
(GET /instances/{id}) with its actions: back up now, a drill of the newest restore point, a move to
another plan, and deleting it (GET /instances/{id}/delete says what happens to its backups first).

Every action is the API's own operation with the API's typed body (``api.instances.create_instance``,
``test_connection``, ``update_instance``, ``delete_instance``; ``api.subclients.backup_now``;
``api.restore_points.verify_restore_point``): the same rules and the same errors, which the page shows in
words next to the field they concern. The password typed in the register form is never sent back.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from ...api import instances as api_instances
from ...api import restore_points as api_points
from ...api import subclients as api_subclients
from ...api.deps import run_read
from ...api.errors import describe_validation
from ...catalog.types import utcnow
from ...context import Context
from ...domain.access import Capability, requires
from ...errors import ConnectionFailed, NotFound, PgvaultError
from ...schemas.instance import CreateInstanceRequest, InstanceRow, UpdateInstanceRequest
from ...services import instance_view, instances
from ..render import env, page
from ..session import FormDep, ViewerDep

router = APIRouter(include_in_schema=False)

# The register form's fields, in the order the page shows them, with their labels.
FIELDS = {
    "name": "Instance name", "host": "Host", "port": "Port", "user": "Login user", "password": "Password",
    "maintenance_db": "Maintenance database", "version": "PostgreSQL version", "ssl": "SSL",
    "ssl_ca": "CA certificate file", "plan": "Plan", "account": "Cloud account",
}
TEXT_FIELDS = ("name", "host", "port", "user", "maintenance_db", "version", "ssl_ca", "plan", "account")

# Where an error of the seed's body belongs: the last key of its location.
_BY_KEY = {"instanceName": "name", "clientName": "account", "version": "version", "MaintainenceDB": "maintenance_db",
           "userName": "user", "password": "password", "sslEnabled": "ssl", "sslCa": "ssl_ca", "planName": "plan"}

# Where an error the API raises belongs, by what its message says (services/instances.py, errors of the probe).
_BY_MESSAGE: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p, re.I), f) for p, f in (
    (r"^an instance named ", "name"),
    (r"^cloud account \(client\) ", "account"),
    (r"^plan .* does not exist", "plan"),
    (r"^version .* is not a PostgreSQL version", "version"),
    (r"^sslOpt\.sslCa", "ssl_ca"),
    (r"^postGreSQLInstance\.port: ", "host"),
))

# Where PostgreSQL's reason for refusing a connection belongs (libpq's and the server's own words).
_BY_REASON: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p, re.I), f) for p, f in (
    (r"password authentication failed|password is required|no password supplied|"
     r"password must be|authentication failed", "password"),
    (r'role "[^"]*" does not exist|permission denied|not permitted to log in', "user"),
    (r'database "[^"]*" does not exist', "maintenance_db"),
    (r"certificate|\bSSL\b|\btls\b", "ssl_ca"),
    (r"", "host"),  # could not translate the host name, connection refused, timeout, pg_hba, ...
))


def port_or_host(message: str, port_typed: str) -> str:
    """Which of the two form fields a message about ``postGreSQLInstance.port`` (``host:port``) concerns."""
    if message.startswith("port ") or not re.fullmatch(r"\d{1,5}", port_typed.strip()):
        return "port"
    return "host"


def validation_errors(exc: ValidationError, port_typed: str) -> dict[str, list[str]]:
    """Each error of the body, next to its form field ("" for the form as a whole), in the API's words."""
    out: dict[str, list[str]] = {}
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        words = describe_validation([{**err, "loc": ()}]).removeprefix("body: ")
        if err.get("type") == "missing" or (err.get("type") in ("too_short", "string_too_short")
                                            and err.get("input") in ("", None)):
            words = "this field is required"  # (the API: "at least 1 item after validation, not 0")
        key = next((k for k in reversed(loc) if k in _BY_KEY or k == "port"), "")
        where = port_or_host(words, port_typed) if key == "port" else _BY_KEY.get(key, "")
        if where == "password" and err.get("type") == "string_too_long":
            words = "at most 1,024 bytes"  # (the limit is on its base64 form, which the form builds)
        out.setdefault(where, []).append(words)
    return out


def error_field(exc: PgvaultError, form: dict[str, str]) -> str:
    """The form field an error of the API concerns ("" when it is about the form as a whole)."""
    if isinstance(exc, ConnectionFailed):
        reason = exc.message
        for pattern, where in _BY_REASON:
            if pattern.search(reason):
                if where == "ssl_ca" and not form.get("ssl_ca"):
                    return "ssl"
                return where
    return next((where for pattern, where in _BY_MESSAGE if pattern.search(exc.message)), "")


def _text(form: FormData, key: str) -> str:
    value = form.get(key)
    return value if isinstance(value, str) else ""


def typed(form: FormData) -> dict[str, str]:
    """What the user typed, to show again: never the password."""
    values = {k: _text(form, k).strip() for k in TEXT_FIELDS}
    values["ssl"] = "on" if _text(form, "ssl") else ""
    return values


def seed_body(values: dict[str, str], password: str) -> dict[str, Any]:
    """The seed's ``POST /Instance`` body (create-instance.txt) from the form."""
    host = values["host"]
    if ":" in host and not host.startswith("["):  # an IPv6 address: the seed wants it in brackets
        host = f"[{host}]"
    host_port = f"{host}:{values['port']}"
    ssl: dict[str, Any] = {"sslEnabled": values["ssl"] == "on"}
    if values["ssl_ca"]:
        ssl["sslCa"] = values["ssl_ca"]
    return {"instanceProperties": {
        "instance": {"instanceName": values["name"] or None, "applicationId": 125,
                     "clientName": values["account"] or None},
        "version": values["version"],
        "postGreSQLInstance": {
            "MaintainenceDB": values["maintenance_db"] or "postgres",
            "port": host_port,
            "SAUser": {"userName": values["user"], "password": base64.b64encode(password.encode()).decode()},
            "cloudDBEngineType": "POSTGRESQL",
            "sslOpt": ssl,
        },
        "planEntity": {"planName": values["plan"]},
        "dbEngine": "PostgreSQL",
    }}


def _choices(ctx: Context) -> instance_view.Choices:
    with ctx.catalog.transaction(write=False) as s:
        return instance_view.choices(s)


def _register_page(request: Request, viewer: Any, values: dict[str, str], *, errors: dict[str, list[str]] | None = None,
                   status_code: int = 200, probe: dict[str, Any] | None = None) -> Response:
    ctx: Context = request.app.state.context
    return page(request, "instance_new.html", viewer, section="/instances/new", status_code=status_code,
                values=values, errors=errors or {}, fields=FIELDS, choices=_choices(ctx), probe=probe)


DEFAULTS = {"name": "", "host": "", "port": "5432", "user": "", "maintenance_db": "postgres", "version": "",
            "ssl": "", "ssl_ca": "", "plan": "default", "account": "default"}


@router.get("/instances/new")
@requires(Capability.MANAGE_INSTANCES)
def register_form(request: Request, viewer: ViewerDep) -> Response:
    return _register_page(request, viewer, dict(DEFAULTS))


def _body(form: FormData) -> tuple[dict[str, str], CreateInstanceRequest | dict[str, list[str]]]:
    values = typed(form)
    try:
        return values, CreateInstanceRequest.model_validate(seed_body(values, _text(form, "password")))
    except ValidationError as exc:
        return values, validation_errors(exc, values["port"])


@router.post("/instances/new")
@requires(Capability.MANAGE_INSTANCES)
def register(request: Request, viewer: ViewerDep, form: FormDep) -> Response:
    ctx: Context = request.app.state.context
    values, body = _body(form)
    if isinstance(body, dict):
        return _register_page(request, viewer, values, errors=body, status_code=400)
    try:
        answer = api_instances.create_instance(request, ctx, viewer.user, body)  # the API's own operation
    except PgvaultError as exc:
        return _register_page(request, viewer, values, errors={error_field(exc, values): [exc.message]},
                              status_code=exc.http_status)
    instance_id = answer["response"]["entity"]["instanceId"]
    return RedirectResponse(f"/instances/{instance_id}?done=registered", status_code=303)


@router.post("/instances/test")
@requires(Capability.MANAGE_INSTANCES)
def test_connection(request: Request, viewer: ViewerDep, form: FormDep) -> Response:
    """The connection test: the API's ``POST /Instance/action/testConnection`` with the form's body. The
    page is a report (200) whatever the server said; nothing is saved. With htmx only its ``#probe``
    part is swapped in, so the form keeps what was typed (the password included, which the server never
    sends back)."""
    ctx: Context = request.app.state.context
    values, body = _body(form)
    if isinstance(body, dict):
        return _register_page(request, viewer, values, errors=body, probe={"ok": False, "errors": body})
    try:
        answer = api_instances.test_connection(ctx, viewer.user, body)
    except PgvaultError as exc:
        errors = {error_field(exc, values): [exc.message]}
        return _register_page(request, viewer, values, errors=errors, probe={"ok": False, "errors": errors})
    return _register_page(request, viewer, values, probe={"ok": True, **answer})


# -- the instance page ---------------------------------------------------------------------------------

DONE = {"registered": "Registered: its first backup is queued (below, under Recent jobs).",
        "moved": "Moved: its next backups follow the plan shown here."}


MAX_ID = 2**63 - 1  # (a larger number in the path names nothing: the catalog could not even look it up)


def known(number: int, what: str = "instance") -> int:
    if number > MAX_ID:
        raise NotFound(f"{what} {number} does not exist")
    return number


def _read_page(ctx: Context, instance_id: int) -> instance_view.InstancePage:
    with ctx.catalog.transaction(write=False) as s:
        return instance_view.instance_page(s, instance_id, utcnow())


async def _instance_page(request: Request, viewer: Any, instance_id: int, *, status_code: int = 200,
                         errors: dict[str, str] | None = None, done: str = "") -> Response:
    ctx: Context = request.app.state.context
    view = await run_read(ctx, _read_page, ctx, instance_id, short=False)
    return page(request, "instance.html", viewer, section="/", status_code=status_code, view=view, inst=view.row,
                errors=errors or {}, flash=DONE.get(done), flash_kind="ok")


@router.get("/instances/{instance_id:int}")
@requires(Capability.VIEW)
async def instance(request: Request, viewer: ViewerDep, instance_id: int, done: str = "") -> Response:
    known(instance_id)
    return await _instance_page(request, viewer, instance_id, done=done)


def _row(ctx: Context, instance_id: int) -> InstanceRow:
    with ctx.catalog.transaction(write=False) as s:
        return instances.live_row(s, instance_id)


def _job_page(answer: dict[str, Any]) -> Response:
    return RedirectResponse(f"/jobs/{answer['jobIds'][0]}", status_code=303)


@router.post("/instances/{instance_id:int}/backup")
@requires(Capability.BACKUP)
async def back_up_now(request: Request, viewer: ViewerDep, _: FormDep, instance_id: int) -> Response:
    known(instance_id)
    ctx: Context = request.app.state.context
    row = await run_read(ctx, _row, ctx, instance_id)
    if row.subclient_id is None:
        return await _instance_page(request, viewer, instance_id, status_code=409,
                                    errors={"backup": "this instance has no subclient to back up"})
    try:  # cvpysdk's Subclient.backup: the instance's default subclient, every database
        answer = await _call(api_subclients.backup_now, ctx, viewer.user, row.subclient_id, "full")
    except PgvaultError as exc:
        return await _instance_page(request, viewer, instance_id, status_code=exc.http_status,
                                    errors={"backup": exc.message})
    return _job_page(answer)


@router.post("/instances/{instance_id:int}/drill")
@requires(Capability.VERIFY)
async def drill(request: Request, viewer: ViewerDep, form: FormDep, instance_id: int) -> Response:
    known(instance_id)
    ctx: Context = request.app.state.context
    try:
        point_id = known(int(_text(form, "point")), "restore point")
    except ValueError:
        return await _instance_page(request, viewer, instance_id, status_code=400,
                                    errors={"drill": "no restore point was chosen: back it up first"})
    try:
        await run_read(ctx, _check_point, ctx, instance_id, point_id)
        body = api_points.VerifyRequestBody(drill=True)
        answer = await _call(api_points.verify_restore_point, ctx, viewer.user, point_id, body)
    except PgvaultError as exc:
        return await _instance_page(request, viewer, instance_id, status_code=exc.http_status,
                                    errors={"drill": exc.message})
    return _job_page(answer)


def _check_point(ctx: Context, instance_id: int, point_id: int) -> None:
    with ctx.catalog.transaction(write=False) as s:
        instance_view.point_of(s, instance_id, point_id)


@router.post("/instances/{instance_id:int}/plan")
@requires(Capability.MANAGE_INSTANCES)
async def move_plan(request: Request, viewer: ViewerDep, form: FormDep, instance_id: int) -> Response:
    known(instance_id)
    ctx: Context = request.app.state.context
    try:
        body = UpdateInstanceRequest.model_validate(
            {"instanceProperties": {"planEntity": {"planName": _text(form, "plan")}}})
    except ValidationError as exc:
        return await _instance_page(request, viewer, instance_id, status_code=400,
                                    errors={"plan": describe_validation(exc.errors())})
    try:
        await _call(api_instances.update_instance, ctx, viewer.user, instance_id, body)
    except PgvaultError as exc:
        return await _instance_page(request, viewer, instance_id, status_code=exc.http_status,
                                    errors={"plan": exc.message})
    return RedirectResponse(f"/instances/{instance_id}?done=moved", status_code=303)


async def _call(fn: Any, *args: Any) -> Any:
    """An API operation (a sync route function: it opens write transactions, it may wake the workers)
    from an async page, in the threadpool as FastAPI would run it."""
    return await run_in_threadpool(fn, *args)


# -- deleting --------------------------------------------------------------------------------------------

def _impact(ctx: Context, instance_id: int) -> instance_view.DeleteImpact:
    with ctx.catalog.transaction(write=False) as s:
        return instance_view.delete_impact(s, instance_id)


async def _delete_page(request: Request, viewer: Any, instance_id: int, *, status_code: int = 200,
                       error: str | None = None) -> Response:
    ctx: Context = request.app.state.context
    impact = await run_read(ctx, _impact, ctx, instance_id, short=False)
    return page(request, "instance_delete.html", viewer, section="/", status_code=status_code, impact=impact,
                error=error)


@router.get("/instances/{instance_id:int}/delete")
@requires(Capability.MANAGE_INSTANCES)
async def delete_form(request: Request, viewer: ViewerDep, instance_id: int) -> Response:
    known(instance_id)
    return await _delete_page(request, viewer, instance_id)


@router.post("/instances/{instance_id:int}/delete")
@requires(Capability.MANAGE_INSTANCES)
async def delete(request: Request, viewer: ViewerDep, form: FormDep, instance_id: int) -> Response:
    known(instance_id)
    ctx: Context = request.app.state.context
    choice = _text(form, "backups")
    if choice not in ("keep", "delete"):
        return await _delete_page(request, viewer, instance_id, status_code=400,
                                  error="choose whether its backups are kept or deleted")
    try:
        answer = await _call(api_instances.delete_instance, ctx, viewer.user, instance_id, choice == "delete")
    except PgvaultError as exc:
        return await _delete_page(request, viewer, instance_id, status_code=exc.http_status, error=exc.message)
    if answer["jobIds"]:  # the Data Aging job that removes its backups
        return _job_page(answer)
    return RedirectResponse(f"/instances/{instance_id}/deleted", status_code=303)


def _deleted(ctx: Context, instance_id: int) -> instance_view.Deleted:
    with ctx.catalog.transaction(write=False) as s:
        return instance_view.deleted(s, instance_id)


@router.get("/instances/{instance_id:int}/deleted")
@requires(Capability.VIEW)
async def deleted(request: Request, viewer: ViewerDep, instance_id: int) -> Response:
    known(instance_id)
    ctx: Context = request.app.state.context
    gone = await run_read(ctx, _deleted, ctx, instance_id, short=False)
    return page(request, "instance_deleted.html", viewer, section="/", gone=gone)


# -- a size trend in text ----------------------------------------------------------------------------------

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(sizes: list[int]) -> str:
    """Sizes as a line of block characters, from the smallest (▁) to the largest (█) of the series."""
    if not sizes:
        return ""
    low, high = min(sizes), max(sizes)
    if high == low:
        return _BARS[3] * len(sizes)
    return "".join(_BARS[round((s - low) * (len(_BARS) - 1) / (high - low))] for s in sizes)


def change(sizes: list[int]) -> str:
    """The newest size against the one before, in words: ``+12%``, ``-3%``, ``same``; "" with one size."""
    if len(sizes) < 2:
        return ""
    before, now = sizes[-2], sizes[-1]
    if before == now:
        return "same"
    if before == 0:
        return "new data"
    pct = (now - before) * 100 / before
    return f"{pct:+.0f}%" if abs(pct) >= 1 else f"{pct:+.1f}%"


env.filters.update(sparkline=sparkline, change=change)
