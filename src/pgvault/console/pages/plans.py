"""Plans: GET /plans (the list), GET/POST /plans/new and /plans/{id} (the create and edit forms), GET/POST
/plans/{id}/delete (the confirmation, then the delete).

The forms build the API's own ``PlanBody`` from what was typed and call the API's route functions
(``api.plans.create_plan``, ``update_plan``, ``delete_plan``): the same validation, the same probes of the
destinations, the same errors, each shown next to the field it concerns. Destinations are a fixed number
of rows (no JavaScript); a row whose kind is "not used" is left out.

Stored S3 keys are never shown, and the API replaces a plan's destinations whole whenever they are given
(it keeps no key it is not sent again). So an edit that leaves every destination as it was sends no
destinations at all (the plan keeps them, keys included, and they are not probed again); an edit that
changes them asks for the keys of each S3 destination that has some stored.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from ...api import plans as api_plans
from ...api.deps import run_read
from ...api.errors import describe_validation
from ...catalog.models import Plan
from ...catalog.types import utcnow
from ...context import Context
from ...domain.access import Capability, requires
from ...domain.schedule import UNSCHEDULABLE, Schedule, next_due
from ...errors import Conflict, PgvaultError
from ...schemas.plans import PlanBody, plan_detail
from ...services import plans
from ..render import page
from ..session import FormDep, ViewerDep

router = APIRouter(include_in_schema=False)

ROWS = 3  # destination rows on a form (more when a plan already has more destinations)
MAX_ROWS = 8  # the API's limit
SHOWN_USERS = 50  # instances named on a plan's page (the rest: a link to the fleet filtered by the plan)
FORM = "_form"  # the key of errors that concern no one field
TIME_ZONES = sorted(zoneinfo.available_timezones())
FIELDS = ("planName", "scheduleKind", "rpo", "rpoUnit", "cron", "timeZone", "windowStart", "windowEnd",
          "retentionDays", "keepMin", "gfsDaily", "gfsWeekly", "gfsMonthly", "compressionLevel", "drillEvery")
DEST_FIELDS = ("name", "kind", "path", "endpoint", "region", "bucket", "prefix", "virtualHosted", "accessKeyId",
               "retentionDays")  # (the secret access key is read from the form, never kept in one)
CONFIG = {"local": ("path",), "s3": ("endpoint", "region", "bucket", "prefix", "virtualHosted")}  # (config())
FLASHES = {"created": "The plan was created.", "saved": "The plan was saved.", "deleted": "The plan was deleted."}


# -- reading ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlanView:
    """A plan as the API describes it (``schemas.plans.plan_detail``: no secret), and its live instances."""

    id: int
    name: str
    detail: dict[str, Any]  # plan_detail(...)["plan"]
    instances: int
    users: list[plans.PlanUser] = field(default_factory=list)  # the first SHOWN_USERS (one plan's page only)

    @property
    def schedule(self) -> dict[str, Any]:
        return self.detail["schedule"]  # type: ignore[no-any-return]


def _view(p: Plan, count: int, users: list[plans.PlanUser] | None = None) -> PlanView:
    return PlanView(p.id, p.name, plan_detail(p)["plan"], count, users or [])


def _read_all(ctx: Context) -> list[PlanView]:
    with ctx.catalog.transaction(write=False) as s:
        counts = plans.usage(s)
        return [_view(p, counts.get(p.id, 0)) for p in plans.listed(s)]


def _read_one(ctx: Context, plan_id: int) -> PlanView:
    with ctx.catalog.transaction(write=False) as s:
        p = plans.get(s, plan_id)  # NotFound: the console's 404 page
        users, total = plans.users(s, plan_id, SHOWN_USERS)
        return _view(p, total, users)


def every(minutes: int) -> str:
    """An RPO in words: ``every 6 h``, ``every 90 min``, ``every 24 h``, ``every 7 d``."""
    if minutes % 1440 == 0 and minutes > 1440:
        return f"every {minutes // 1440} d"
    if minutes % 60 == 0:
        return f"every {minutes // 60} h"
    return f"every {minutes} min"


def next_fire(schedule: dict[str, Any], now: dt.datetime) -> dt.datetime | None:
    """When a cron plan's expression next fires, inside its window (None: never)."""
    window = schedule.get("window") or {}
    plan = Schedule("cron", 1440, schedule.get("cron"), schedule["timeZone"], window.get("start"), window.get("end"))
    try:
        return next_due(plan, now, now)
    except UNSCHEDULABLE:
        return None


# -- the form -------------------------------------------------------------------------------------------

@dataclass
class Row:
    """One destination row of the form, as shown (never a secret)."""

    index: int
    values: dict[str, str]
    has_credentials: bool = False  # the stored destination of this name has keys (edit only)
    virtual_hosted: bool = False


@dataclass
class PlanForm:
    values: dict[str, str]
    rows: list[Row]
    encryption: bool = False
    errors: dict[str, str] = field(default_factory=dict)

    def error(self, key: str, message: str) -> None:
        self.errors[key] = f"{self.errors[key]}; {message}" if key in self.errors else message


def _blank_row(n: int) -> Row:
    return Row(n, {k: "" for k in DEST_FIELDS})


def new_form(ctx: Context) -> PlanForm:
    rows = [_blank_row(n) for n in range(ROWS)]
    rows[0].values.update(name="primary", kind="local", path=str(ctx.settings.backups_dir))
    values = {"planName": "", "scheduleKind": "rpo", "rpo": "24", "rpoUnit": "hours", "cron": "", "timeZone": "UTC",
              "windowStart": "", "windowEnd": "", "retentionDays": "30", "keepMin": "3", "gfsDaily": "0",
              "gfsWeekly": "0", "gfsMonthly": "0", "compressionLevel": "1", "drillEvery": "0"}
    return PlanForm(values, rows)


def form_of(view: PlanView) -> PlanForm:
    """The edit form of a stored plan, from the API's description of it."""
    d = view.detail
    sch, ret = d["schedule"], d["retention"]
    minutes = int(d["summary"]["rpoInMinutes"])
    hours = minutes % 60 == 0
    window = sch.get("window") or {}
    values = {"planName": view.name, "scheduleKind": "cron" if "cron" in sch else "rpo",
              "rpo": str(minutes // 60 if hours else minutes), "rpoUnit": "hours" if hours else "minutes",
              "cron": sch.get("cron") or "", "timeZone": sch["timeZone"], "windowStart": window.get("start", ""),
              "windowEnd": window.get("end", ""), "retentionDays": str(ret["days"]), "keepMin": str(ret["keepMin"]),
              "gfsDaily": str(ret["gfs"]["daily"]), "gfsWeekly": str(ret["gfs"]["weekly"]),
              "gfsMonthly": str(ret["gfs"]["monthly"]), "compressionLevel": str(d["compression"]["level"]),
              "drillEvery": str(d["drillEvery"])}
    rows = []
    for n, dest in enumerate(d["destinations"]):
        row = _blank_row(n)
        own = dest["retentionDays"] if dest["retentionDays"] != ret["days"] else None
        row.values.update({k: str(dest.get(k) or "") for k in ("name", "kind", "path", "endpoint", "region", "bucket",
                                                                 "prefix")})
        row.values["retentionDays"] = str(own or "")
        row.virtual_hosted = bool(dest.get("virtualHosted"))
        row.has_credentials = bool(dest["hasCredentials"])
        rows.append(row)
    rows += [_blank_row(n) for n in range(len(rows), min(MAX_ROWS, max(ROWS, len(rows) + 1)))]
    return PlanForm(values, rows, encryption=bool(d["encryption"]["enabled"]))


def _text(form: FormData, key: str, limit: int = 4096) -> str:
    value = form.get(key)
    return value[:limit] if isinstance(value, str) else ""


def posted_form(form: FormData, stored: PlanView | None) -> PlanForm:
    """What was typed, to build the body from and to show again (without any secret)."""
    values = {k: _text(form, k).strip() for k in FIELDS}
    stored_keys = {dest["name"].lower(): dest["hasCredentials"] for dest in stored.detail["destinations"]} \
        if stored else {}
    rows = []
    count = min(MAX_ROWS, max(ROWS, len(stored.detail["destinations"]) + 1 if stored else ROWS))
    for n in range(count):
        row = _blank_row(n)
        row.values.update({k: _text(form, f"d{n}.{k}").strip() for k in DEST_FIELDS if k != "virtualHosted"})
        row.virtual_hosted = form.get(f"d{n}.virtualHosted") == "on"
        row.has_credentials = bool(stored_keys.get((row.values["name"] or "primary").lower()))
        rows.append(row)
    return PlanForm(values, rows, encryption=form.get("encryption") == "on")


_INT = re.compile(r"[+-]?\d{1,12}")


def number(text: str) -> int | str:
    """A whole number typed in a field; anything else as typed, for the API's model to refuse in its words."""
    return int(text) if _INT.fullmatch(text) else text


def _put(target: dict[str, Any], key: str, text: str) -> None:
    if text != "":
        target[key] = number(text)


@dataclass
class Built:
    """The API's body as a dict, and which form row each of its destinations came from."""

    body: dict[str, Any]
    rows: list[Row]  # body["destinations"][i] came from rows[i]
    secrets: list[str | None]


def build(f: PlanForm, form: FormData, *, creating: bool) -> Built:
    v = f.values
    body: dict[str, Any] = {"planName": v["planName"]}
    schedule: dict[str, Any] = {}
    if v["scheduleKind"] == "cron":
        schedule["cron"] = v["cron"]
    elif v["rpo"] != "":
        rpo = number(v["rpo"])
        schedule["rpoMinutes"] = rpo * 60 if isinstance(rpo, int) and v["rpoUnit"] == "hours" else rpo
    if v["timeZone"]:
        schedule["timeZone"] = v["timeZone"]
    window: dict[str, Any] = {}
    for key, name in (("windowStart", "start"), ("windowEnd", "end")):
        if v[key]:
            window[name] = v[key]
    if window:
        schedule["window"] = window
    body["schedule"] = schedule
    retention: dict[str, Any] = {}
    _put(retention, "days", v["retentionDays"])
    _put(retention, "keepMin", v["keepMin"])
    gfs: dict[str, Any] = {}
    for key, name in (("gfsDaily", "daily"), ("gfsWeekly", "weekly"), ("gfsMonthly", "monthly")):
        _put(gfs, name, v[key])
    retention["gfs"] = gfs
    body["retention"] = retention
    _put(body, "compressionLevel", v["compressionLevel"])
    _put(body, "drillEvery", v["drillEvery"])
    body["encryption"] = f.encryption
    used: list[Row] = []
    secrets: list[str | None] = []
    destinations: list[dict[str, Any]] = []
    for row in f.rows:
        r = row.values
        if r["kind"] not in ("local", "s3"):
            if r["kind"]:
                f.error(f"d{row.index}.kind", "choose local folder, S3, or not used")
            continue
        dest: dict[str, Any] = {"kind": r["kind"]}
        secret = None
        if r["name"]:
            dest["name"] = r["name"]
        if r["kind"] == "local":
            dest["path"] = r["path"]
        else:
            for key in ("endpoint", "region", "bucket"):
                if r[key]:
                    dest[key] = r[key]
            dest["prefix"] = r["prefix"]
            dest["virtualHosted"] = row.virtual_hosted
            secret = _text(form, f"d{row.index}.secretAccessKey", 1024) or None
            if r["accessKeyId"]:
                dest["accessKeyId"] = r["accessKeyId"]
            if secret:  # (one without the other: the API's model says to give both)
                dest["secretAccessKey"] = secret
        _put(dest, "retentionDays", r["retentionDays"])
        destinations.append(dest)
        used.append(row)
        secrets.append(secret)
    if destinations or not creating:
        body["destinations"] = destinations  # (none on a new plan: the API's default folder)
    return Built(body, used, secrets)


def _unchanged(body: PlanBody, stored: PlanView) -> bool:
    """Whether the body's destinations are the plan's as stored, with no keys typed."""
    if body.destinations is None:
        return True
    have = [(d["name"], d["kind"], {k: d.get(k) for k in CONFIG[d["kind"]]}, d["retentionDays"])
            for d in stored.detail["destinations"]]
    days = stored.detail["retention"]["days"]  # (what the form showed an empty own retention as)
    want = [(d.name, d.kind, d.config(), d.retentionDays or days) for d in body.destinations]
    return have == want and all(d.accessKeyId is None for d in body.destinations)


# -- where an error goes ----------------------------------------------------------------------------

_PLACES = {("planName",): "planName", ("schedule", "rpoMinutes"): "rpo", ("schedule", "cron"): "cron",
           ("schedule", "timeZone"): "timeZone", ("schedule", "window"): "windowStart",
           ("schedule", "window", "start"): "windowStart", ("schedule", "window", "end"): "windowEnd",
           ("retention", "days"): "retentionDays", ("retention", "keepMin"): "keepMin",
           ("retention", "gfs", "daily"): "gfsDaily", ("retention", "gfs", "weekly"): "gfsWeekly",
           ("retention", "gfs", "monthly"): "gfsMonthly", ("compressionLevel",): "compressionLevel",
           ("encryption",): "encryption", ("drillEvery",): "drillEvery", ("destinations",): "destinations",
           ("schedule",): "scheduleKind"}


def place_validation(err: dict[str, Any], rows: list[Row]) -> str:
    """The form field a pydantic error of the body concerns."""
    loc = tuple(err.get("loc", ()))
    msg = str(err.get("msg", ""))
    if len(loc) >= 2 and loc[0] == "destinations" and isinstance(loc[1], int) and loc[1] < len(rows):
        row = rows[loc[1]].index
        if len(loc) >= 3:
            return f"d{row}.{loc[2]}"
        for word, key in (("absolute path", "path"), ("bucket", "bucket"), ("accessKeyId", "accessKeyId")):
            if word in msg:
                return f"d{row}.{key}"
        return f"d{row}"
    if loc == ("schedule",):
        for word, key in (("timeZone", "timeZone"), ("cron", "cron")):
            if word in msg:
                return key
    if loc == () and "destination" in msg:
        return "destinations"
    return _PLACES.get(loc, FORM)


# (storage/s3.py's words for a refusal, the most precise first)
_S3_WORDS = (("secret access key", "secretAccessKey"), ("access key id", "accessKeyId"), ("does not exist", "bucket"),
             ("cannot reach", "endpoint"), ("endpoint", "endpoint"))


def place_refusal(message: str, rows: list[Row]) -> str:
    """The form field an error of the API (a ``PgvaultError``) concerns, as far as its words tell."""
    if message.startswith(("a plan named", "planName")):
        return "planName"
    for row in rows:
        name = row.values["name"] or "primary"
        if message.startswith(f"destination {name!r}"):
            if row.values["kind"] == "local":
                return f"d{row.index}.path"
            for words, key in _S3_WORDS:
                if words in message:
                    return f"d{row.index}.{key}"
            return f"d{row.index}"
    return FORM


# -- routes ---------------------------------------------------------------------------------------------

@router.get("/plans")
@requires(Capability.VIEW)
async def list_plans(request: Request, viewer: ViewerDep, done: str = "") -> Response:
    ctx: Context = request.app.state.context
    views = await run_read(ctx, _read_all, ctx, short=False)
    now = utcnow()
    return page(request, "plans.html", viewer, section="/plans", plans=views, every=every,
                next_fire={v.id: next_fire(v.schedule, now) for v in views if "cron" in v.schedule},
                flash=FLASHES.get(done), flash_kind="ok")


def _form_page(request: Request, viewer: Any, f: PlanForm, stored: PlanView | None, *, status_code: int = 200,
               flash: str | None = None) -> Response:
    fires = {stored.id: next_fire(stored.schedule, utcnow())} if stored and "cron" in stored.schedule else {}
    return page(request, "plan.html", viewer, section="/plans", status_code=status_code, form=f, plan=stored,
                time_zones=TIME_ZONES, every=every, next_fire=fires, flash=flash, flash_kind="ok", FORM=FORM)


@router.get("/plans/new")
@requires(Capability.EDIT_PLANS)
async def new_plan(request: Request, viewer: ViewerDep) -> Response:
    return _form_page(request, viewer, new_form(request.app.state.context), None)


@router.get("/plans/{plan_id}")
@requires(Capability.VIEW)
async def edit_plan(request: Request, viewer: ViewerDep, plan_id: int, done: str = "") -> Response:
    ctx: Context = request.app.state.context
    view = await run_read(ctx, _read_one, ctx, plan_id, short=False)
    return _form_page(request, viewer, form_of(view), view, flash=FLASHES.get(done))


@router.post("/plans/new")
@requires(Capability.EDIT_PLANS)
async def create_plan(request: Request, viewer: ViewerDep, form: FormDep) -> Response:
    return await _save(request, viewer, form, None)


@router.post("/plans/{plan_id}")
@requires(Capability.EDIT_PLANS)
async def save_plan(request: Request, viewer: ViewerDep, form: FormDep, plan_id: int) -> Response:
    ctx: Context = request.app.state.context
    stored = await run_read(ctx, _read_one, ctx, plan_id, short=False)
    return await _save(request, viewer, form, stored)


async def _save(request: Request, viewer: Any, form: FormData, stored: PlanView | None) -> Response:
    ctx: Context = request.app.state.context
    f = posted_form(form, stored)
    built = build(f, form, creating=stored is None)
    body: PlanBody | None = None
    try:
        body = PlanBody.model_validate(built.body)
    except ValidationError as exc:
        for err in exc.errors():
            f.error(place_validation(dict(err), built.rows), describe_validation([err]))
    if body is not None and stored is not None:
        if _unchanged(body, stored):  # the plan keeps its destinations, and their stored keys
            body = PlanBody.model_validate({k: v for k, v in built.body.items() if k != "destinations"})
        else:
            for row, secret in zip(built.rows, built.secrets, strict=True):
                if row.values["kind"] == "s3" and row.has_credentials and secret is None:
                    f.error(f"d{row.index}.secretAccessKey",
                            "this destination's keys are stored, but the API replaces a plan's destinations "
                            "whole when any of them changes and keeps no key it is not sent: enter the access "
                            "key id and secret access key again (or leave every destination as it was)")
    if f.errors or body is None:
        return _form_page(request, viewer, f, stored, status_code=400)
    try:
        if stored is None:
            answer = await run_in_threadpool(api_plans.create_plan, ctx, viewer.user, body)
        else:
            answer = await run_in_threadpool(api_plans.update_plan, ctx, viewer.user, stored.id, body)
    except PgvaultError as exc:
        f.error(place_refusal(exc.message, built.rows), exc.message)
        return _form_page(request, viewer, f, stored, status_code=exc.http_status)
    plan_id = answer["plan"]["summary"]["plan"]["planId"]
    return RedirectResponse(f"/plans/{plan_id}?done={'created' if stored is None else 'saved'}", status_code=303)


@router.get("/plans/{plan_id}/delete")
@requires(Capability.DELETE_PLANS)
async def confirm_delete(request: Request, viewer: ViewerDep, plan_id: int) -> Response:
    ctx: Context = request.app.state.context
    view = await run_read(ctx, _read_one, ctx, plan_id, short=False)
    return page(request, "plan_delete.html", viewer, section="/plans", plan=view, error=None)


@router.post("/plans/{plan_id}/delete")
@requires(Capability.DELETE_PLANS)
async def delete_plan(request: Request, viewer: ViewerDep, _: FormDep, plan_id: int) -> Response:
    ctx: Context = request.app.state.context
    try:
        await run_in_threadpool(api_plans.delete_plan, ctx, viewer.user, plan_id)
    except Conflict as exc:  # in use (the API names the instances), or the default plan
        view = await run_read(ctx, _read_one, ctx, plan_id, short=False)
        return page(request, "plan_delete.html", viewer, section="/plans", plan=view, error=exc.message,
                    status_code=exc.http_status)
    return RedirectResponse("/plans?done=deleted", status_code=303)
