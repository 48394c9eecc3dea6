"""GET /restore and POST /restore: the guided restore, a form in steps (no script needed).

instance -> restore point (one backup, or "as of" a time) -> databases, or tables of one database ->
target (in place, renamed, or another instance) -> options -> a summary of exactly what will happen ->
start. Every choice so far travels in the query string (each step is a plain GET form carrying the
earlier choices as hidden fields), so any step can be linked to, reloaded or gone back to; the instance
page links to ``/restore?instance=<id>``.

The summary and the start build the same ``CreateTaskRequest`` the API's ``POST /CreateTask`` takes (the
cvpysdk shape) from those choices: the summary resolves it with the service's own ``plan_restore`` (every
up-front refusal of the API, shown in words) and asks the target the job's own question
(``services.restore.preflight``: which databases exist, whether it could replace them); the start calls
the API's ``create_task`` and sends the browser to the job's page.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData, QueryParams

from ...api import tasks as api_tasks
from ...api.deps import run_read
from ...context import Context
from ...domain.access import Capability, requires
from ...errors import PgvaultError
from ...schemas.restore import CreateTaskRequest
from ...services import instances as instance_service
from ...services import restore as restore_service
from ..render import page
from ..session import FormDep, ViewerDep

router = APIRouter(include_in_schema=False)

STEPS = ("instance", "point", "items", "target", "options", "summary")
TITLES = {"instance": "Instance", "point": "Restore point", "items": "What to restore", "target": "Target",
          "options": "Options", "summary": "Summary"}
POINTS_SHOWN = 50


_NAME = re.compile(r'"((?:[^"]|"")*)"|([^."]+)')  # one part of schema.table: quoted, or up to a dot


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


@dataclass
class Choices:
    """What the user chose so far (from the query string of a step, or the summary's form)."""

    instance: int | None = None
    point: str = ""  # a backup job id, or "asof"
    asof: str = ""  # with point "asof": YYYY-MM-DDTHH:MM[:SS], UTC
    level: str = ""  # "databases" | "tables"
    databases: list[str] = field(default_factory=list)
    table_db: str = ""
    tables: str = ""  # schema.table, one a line
    target: str = ""  # "inplace" | "rename" | "other"
    dest: int | None = None
    names: dict[str, str] = field(default_factory=dict)  # new names: source database -> name on the target
    overwrite: bool = False
    globals: bool = False
    ownership: bool = False
    parallelism: str = "2"
    options_seen: bool = False

    @classmethod
    def parse(cls, q: QueryParams | FormData) -> Choices:
        def text(name: str, limit: int = 255) -> str:
            value = q.get(name)
            return value.strip()[:limit] if isinstance(value, str) else ""

        return cls(
            instance=_int(text("instance")), point=text("point", 32), asof=text("asof", 40),
            level=text("level", 16), databases=[d for d in q.getlist("db") if isinstance(d, str) and d][:500],
            table_db=text("tdb"), tables=text("tables", 20_000), target=text("target", 16), dest=_int(text("dest")),
            names=dict([(k[3:], v.strip()[:255]) for k, v in q.multi_items()
                        if k.startswith("as.") and isinstance(v, str)][:500]),
            overwrite=text("overwrite") == "1", globals=text("globals") == "1", ownership=text("ownership") == "1",
            parallelism=text("parallelism", 8) or "2", options_seen=text("optionsSeen") == "1",
        )

    # -- what each step's form sends, so the others can carry it along as hidden fields --

    def fields(self, step: str) -> list[tuple[str, str]]:
        if step == "instance":
            return [("instance", str(self.instance))] if self.instance is not None else []
        if step == "point":
            return [(k, v) for k, v in (("point", self.point), ("asof", self.asof)) if v]
        if step == "items":
            out = [("level", self.level)] if self.level else []
            out += [("db", d) for d in self.databases]
            out += [(k, v) for k, v in (("tdb", self.table_db), ("tables", self.tables)) if v]
            return out
        if step == "target":
            out = [("target", self.target)] if self.target else []
            if self.dest is not None:
                out.append(("dest", str(self.dest)))
            out += [(f"as.{k}", v) for k, v in self.names.items()]
            if self.overwrite:
                out.append(("overwrite", "1"))
            return out
        if step == "options":
            if not self.options_seen:
                return []
            out = [("optionsSeen", "1"), ("parallelism", self.parallelism)]
            out += [(k, "1") for k, v in (("globals", self.globals), ("ownership", self.ownership)) if v]
            return out
        return []

    def carried(self, *, but: str) -> list[tuple[str, str]]:
        """Hidden fields for every step's choices except ``but``'s (the one whose form is shown)."""
        return [pair for step in STEPS if step != but for pair in self.fields(step)]

    def url(self, step: str, *, upto: str | None = None) -> str:
        """A link to ``step`` with the choices of the steps before ``upto`` (default: all of them)."""
        last = STEPS.index(upto) if upto else len(STEPS)
        pairs = [pair for s in STEPS[:last] for pair in self.fields(s)]
        return "/restore?" + urlencode([*pairs, ("step", step)])

    # -- the restore these choices ask for --

    def table_list(self) -> list[tuple[str, str]]:
        """``schema.table`` lines as (schema, table): names as they are (``Odd Schema.Mixed Case``) or in
        SQL's double quotes (``"a.b"."c"``, for a dot in a name); without a schema, ``public``."""
        out: list[tuple[str, str]] = []
        for line in self.tables.splitlines():
            names = [(q.replace('""', '"') if q else bare.strip()) for q, bare in _NAME.findall(line.strip())]
            names = [n for n in names if n]
            if not names:
                continue
            pair = ("public", names[0]) if len(names) == 1 else (names[0], ".".join(names[1:]))
            if pair not in out:
                out.append(pair)
        return out

    def sources(self) -> list[str]:
        return [self.table_db] if self.level == "tables" else list(self.databases)

    def renames(self) -> dict[str, str]:
        if self.target not in ("rename", "other"):
            return {}
        return {db: self.names[db] for db in self.sources() if self.names.get(db) and self.names[db] != db}

    def body(self, items: list[str] | None = None) -> dict[str, Any]:
        """The ``POST /CreateTask`` body (the shape cvpysdk's restore_postgres_server sends); ``items``
        instead of the chosen ones (``["/"]``: every database, to find the restore point's)."""
        if items is not None:
            pass
        elif self.level == "tables":
            items = [f"/{self.table_db}/{s}/{t}" for s, t in self.table_list()]
        else:
            items = [f"/{d}" for d in self.databases]
        as_of = self.asof.replace("T", " ") if self.point == "asof" else ""
        options: dict[str, Any] = {
            "browseOption": {"backupset": {"instanceId": self.instance}, "timeRange": {}},
            "fileOption": {"sourceItem": items},
            "commonOptions": {"unconditionalOverwrite": self.overwrite},
            "postgresRstOption": {
                "tableLevelRestore": self.level == "tables", "refTime": {"timevalue": as_of} if as_of else {},
                "renameDatabases": self.renames(), "restoreGlobals": self.globals,
                "restoreOwnership": self.ownership, "parallelism": self.parallelism,
            },
        }
        if self.point != "asof":
            options["jobIds"] = [self.point]
        if self.target == "other" and self.dest is not None:
            options["destination"] = {"destinationInstance": {"instanceId": self.dest}}
        return {"taskInfo": {
            "associations": [{"instanceId": self.instance}],
            "subTasks": [{"subTask": {"subTaskType": restore_service.RESTORE_SUBTASK,
                                      "operationType": restore_service.RESTORE_OPERATION},
                          "options": {"restoreOptions": options}}],
        }}


# -- what the steps read -------------------------------------------------------------------------------

@dataclass
class PointRow:
    job_id: int
    point_id: int
    time: dt.datetime | None
    size: int
    databases: list[str]
    copies: int
    encrypted: bool
    drill_status: str | None
    drill_at: dt.datetime | None
    verify_status: str | None


@dataclass
class Summary:
    """The restore as the service resolved it, in the terms the summary says it in."""

    source: str
    dest: str
    dest_login: str
    in_place: bool
    point: PointRow
    items: list[dict[str, Any]]
    overwrite: bool
    globals: bool
    ownership: bool
    parallelism: int
    preflight: restore_service.Preflight | None = None


@dataclass
class Read:
    instance: restore_service.Choice | None = None
    points: list[PointRow] = field(default_factory=list)
    point_total: int = 0
    databases: list[str] = field(default_factory=list)  # of the chosen restore point
    choices: list[restore_service.Choice] = field(default_factory=list)  # instances to choose from
    summary: Summary | None = None
    address: Any = None


def _row(point: Any, job: Any) -> PointRow:
    return PointRow(point.job_id, point.id, job.started_at, point.total_bytes, list(point.databases),
                    len(point.copies), point.data_key_sealed is not None, point.drill_status, point.drill_at,
                    point.verify_status)


def _choice(inst: Any) -> restore_service.Choice:
    return restore_service.Choice(inst.id, inst.name, inst.cloud_account.name, inst.host, inst.port,
                                  inst.deleted_at is not None, 0)


class _Back(Exception):
    """A choice of an earlier step does not hold (an instance gone, no backup at that time, a number out
    of range): that step is shown again, with the reason (next to ``field`` when it is one)."""

    def __init__(self, step: str, message: str, status: int, field: str | None = None) -> None:
        super().__init__(message)
        self.step, self.message, self.status, self.field = step, message, status, field


def _body(c: Choices, items: list[str] | None = None) -> CreateTaskRequest:
    try:
        return CreateTaskRequest.model_validate(c.body(items))
    except ValidationError as exc:
        for err in exc.errors():
            if "parallelism" in err.get("loc", ()):
                raise _Back("options", f"Databases restored at once: {err['msg']}", 400, "parallelism") from None
        raise _Back("summary", "; ".join(_words(e) for e in exc.errors()), 400) from None


def _read(ctx: Context, c: Choices, step: str, find: str) -> Read:
    out = Read()
    settings = ctx.settings
    with ctx.catalog.transaction(write=False) as s:
        if step == "instance" or c.instance is None:
            out.choices = restore_service.instance_choices(s, name=find)
            return out
        try:
            source = instance_service.get_any(s, c.instance)
        except PgvaultError as exc:
            raise _Back("instance", exc.message, exc.http_status) from None
        out.instance = _choice(source)
        if step == "point":
            out.point_total, page_ = restore_service.list_points(
                s, instance_id=c.instance, database=None, start=None, end=None, offset=0, limit=POINTS_SHOWN)
            out.points = [_row(p, j) for p, j in page_]
            return out
        if step == "items":  # the databases of the restore point chosen (or found "as of" the time)
            opts = _body(Choices(**{**c.__dict__, "level": "databases"}), ["/"]).taskInfo.subTasks[0].options
            assert opts.restoreOptions is not None
            try:
                point = restore_service.choose_restore_point(s, source, opts.restoreOptions)
            except PgvaultError as exc:
                raise _Back("point", exc.message, exc.http_status) from None
            out.databases = list(point.databases)
            return out
        if step == "target":
            out.choices = [x for x in restore_service.instance_choices(s, name=find, live_only=True, limit=200)
                           if x.id != c.instance]
            if c.dest is not None and all(x.id != c.dest for x in out.choices):
                with contextlib.suppress(PgvaultError):  # (gone since: the list offers the others)
                    out.choices.insert(0, _choice(instance_service.get(s, c.dest)))
            return out
        if step == "summary":
            plan = restore_service.plan_restore(s, _body(c))
            pg = plan.opts.postgresRstOption
            out.summary = Summary(
                source=plan.source.name, dest=plan.dest.name, dest_login=plan.dest.username,
                in_place=plan.dest.id == plan.source.id, point=_row(plan.point, plan.backup), items=plan.items,
                overwrite=plan.opts.commonOptions.unconditionalOverwrite, globals=pg.restoreGlobals,
                ownership=pg.restoreOwnership, parallelism=pg.parallelism)
            out.address = instance_service.address_of(plan.dest, ctx.sealer, settings.connect_timeout_seconds,
                                                      settings.target_policy)
    return out


def _first_missing(c: Choices) -> str:
    """The earliest step whose choice is still missing (or the summary when none is)."""
    if c.instance is None:
        return "instance"
    if not c.point or (c.point == "asof" and not c.asof) or (c.point != "asof" and _int(c.point) is None):
        return "point"
    if c.level == "tables":
        if not c.table_db or not c.table_list():
            return "items"
    elif c.level != "databases" or not c.databases:
        return "items"
    if c.target not in ("inplace", "rename", "other") or (c.target == "other" and c.dest is None):
        return "target"
    if not c.options_seen:
        return "options"
    return "summary"


def _step_error(c: Choices, asked: str) -> tuple[str, str] | None:
    """Why the step the user came from is not done, when it is the first one missing: the field it
    concerns (its error is shown next to it) and the reason."""
    missing = _first_missing(c)
    came_from = STEPS[max(0, STEPS.index(asked) - 1)]
    if STEPS.index(missing) >= STEPS.index(asked) or missing != came_from:
        return None
    if missing == "instance":
        return "instance", "Choose the instance whose backup to restore."
    if missing == "point":
        if c.point == "asof":
            return "asof", "Give the time to restore as of."
        return "point", "Choose a restore point, or give the time to restore as of."
    if missing == "items":
        if c.level != "tables":
            return "db", "Choose at least one database."
        if not c.table_db:
            return "tdb", "Choose the database whose tables to restore."
        return "tables", "Name at least one table (schema.table, one a line)."
    if missing == "target":
        if c.target == "other":
            return "dest", "Choose the instance to restore to."
        return "target", "Choose where to restore to."
    return None


def step_error_step(error: tuple[str, str]) -> str:
    """The step whose form has the field an error concerns."""
    return {"instance": "instance", "point": "point", "asof": "point", "db": "items", "tdb": "items",
            "tables": "items", "dest": "target", "target": "target"}[error[0]]


async def _wizard(request: Request, viewer: Any, c: Choices, asked: str, *, find: str = "",
                  error: str | None = None, status_code: int = 200) -> Response:
    ctx: Context = request.app.state.context
    if asked not in STEPS:
        asked = "instance"
    missing = _first_missing(c)
    step_error = _step_error(c, asked)
    step = asked if STEPS.index(asked) <= STEPS.index(missing) else missing
    field_errors: dict[str, str] = {}
    if step_error and step == step_error_step(step_error):
        field_errors[step_error[0]] = step_error[1]
    try:
        read = await run_read(ctx, _read, ctx, c, step, find, short=False)
    except _Back as back:
        status_code = back.status
        if back.field:
            field_errors[back.field] = back.message
        else:
            error = back.message
        if back.step == "instance":
            c = Choices()
        step = back.step if back.step != "summary" else step
        read = Read() if back.step == "summary" else await run_read(ctx, _read, ctx, c, step, find, short=False)
    except PgvaultError as exc:  # what the API refuses up front, in its words
        read, error, status_code = Read(), exc.message, exc.http_status
    if read.summary is not None and read.address is not None:
        summary = read.summary
        summary.preflight = await run_read(ctx, restore_service.preflight, read.address, summary.items,
                                           summary.overwrite, short=False)
        if summary.preflight.refusal and error is None:
            error = summary.preflight.refusal
    done = [(s, TITLES[s], c.url(s, upto=s)) for s in STEPS[:STEPS.index(step)]]
    return page(request, "restore.html", viewer, section="/restore", status_code=status_code, step=step,
                steps=STEPS, titles=TITLES, done=done, c=c, read=read, find=find, error=error,
                field_errors=field_errors,
                hidden=c.carried(but=step if step != "summary" else "-"), default_name=lambda db: f"{db}_restored")


def _words(err: Any) -> str:
    where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("taskInfo", "subTasks", 0, "options",
                                                                         "restoreOptions"))
    return f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid"))


@router.get("/restore")
@requires(Capability.RESTORE)
async def restore_form(request: Request, viewer: ViewerDep) -> Response:
    q = request.query_params
    c = Choices.parse(q)
    asked = q.get("step") or ""
    if asked not in STEPS:
        asked = _first_missing(c)
    return await _wizard(request, viewer, c, asked, find=(q.get("find") or "")[:255])


@router.post("/restore")
@requires(Capability.RESTORE)
async def start_restore(request: Request, viewer: ViewerDep, form: FormDep) -> Response:
    ctx: Context = request.app.state.context
    c = Choices.parse(form)
    if _first_missing(c) != "summary":
        return await _wizard(request, viewer, c, "summary", status_code=400)
    # The summary again, as the user saw it: the service's plan, and the target asked the job's own question
    # (a restore the job would refuse before changing anything is not queued).
    try:
        body = _body(c)
        seen = await run_read(ctx, _read, ctx, c, "summary", "", short=False)
    except (_Back, PgvaultError):
        return await _wizard(request, viewer, c, "summary", status_code=400)
    assert seen.summary is not None
    check = await run_read(ctx, restore_service.preflight, seen.address, seen.summary.items, seen.summary.overwrite,
                           short=False)
    if check.refusal:
        return await _wizard(request, viewer, c, "summary", status_code=409)
    try:
        answer = await run_read(ctx, api_tasks.create_task, ctx, viewer.user, body, short=False)
    except PgvaultError as exc:  # the API's own refusal, in its words
        return await _wizard(request, viewer, c, "summary", status_code=exc.http_status, error=exc.message)
    return RedirectResponse(f"/jobs/{answer['jobIds'][0]}", status_code=303)
