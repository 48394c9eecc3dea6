"""GET /jobs (the job list), GET /jobs/{id} (a job, its databases and its log), GET /jobs/{id}/live (the live
part of the job page, polled by htmx every 2 s while the job runs) and POST /jobs/{id}/kill (the API's
``kill_job``).

Reads go through ``services.jobs`` (``list_jobs``, ``job_view``, ``job_runner``) as the API's do. The job's
log is a timeline built from what the catalog knows of the job (nothing is written for it). A running
item's rate is the growth of its bytes between two polls of the live part: the part's own polling URL
carries the sample it showed (``t``: when, ``s``: each item's bytes), so the next poll can say how fast it
grew; the page itself keeps no state.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from ...api import jobs as api_jobs
from ...api.deps import run_read
from ...context import Context
from ...domain.access import Capability, requires
from ...domain.jobs import ACTIVE, JobStatus, JobType
from ...errors import PgvaultError
from ...schemas.jobs import JobItemRow, JobView
from ...services import jobs as job_service
from ..render import page
from ..session import FormDep, ViewerDep

router = APIRouter(include_in_schema=False)
PAGE = 50
SECTION = "/jobs"

# What a status means, in words (the status itself is shown too).
MEANING = {
    JobStatus.WAITING: "waiting to start",
    JobStatus.RUNNING: "running",
    JobStatus.COMPLETED: "completed",
    JobStatus.COMPLETED_WITH_ERRORS: "completed, with errors",
    JobStatus.FAILED: "failed",
    JobStatus.KILLED: "killed",
}
# ?done=<key> after an action: the words come from here, never from the request.
DONE = {"kill": "Kill requested: a waiting job ends at once, a running one as soon as its worker stops it."}


def status_class(status: str) -> str:
    """``status-<slug>`` for a badge (console.css has one per job state)."""
    return "status-" + re.sub(r"[^a-z0-9]+", "-", status.lower()).strip("-")


def is_active(status: str) -> bool:
    return status in ACTIVE


# -- the list --------------------------------------------------------------------------------------------


def _moment(text: str, field: str, errors: dict[str, str]) -> dt.datetime | None:
    """A ``datetime-local`` field's value (``YYYY-MM-DDTHH:MM``), read as UTC."""
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        errors[field] = f"not a date and time: {text!r} (expected YYYY-MM-DD HH:MM, UTC)"
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


@router.get("/jobs")
@requires(Capability.VIEW)
async def job_list(
    request: Request, viewer: ViewerDep,
    type: Annotated[str, Query(max_length=32)] = "", status: Annotated[str, Query(max_length=40)] = "",
    instance: Annotated[str, Query(max_length=255)] = "",
    instance_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    since: Annotated[str, Query(alias="from", max_length=40)] = "",
    until: Annotated[str, Query(alias="to", max_length=40)] = "",
    page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> Response:
    ctx: Context = request.app.state.context
    errors: dict[str, str] = {}
    if type and type not in {t.value for t in JobType}:
        errors["type"] = f"no job type {type!r}"
    if status and status not in {s.value for s in JobStatus}:
        errors["status"] = f"no job status {status!r}"
    queued_from, queued_to = _moment(since, "from", errors), _moment(until, "to", errors)
    if queued_from and queued_to and queued_to <= queued_from:
        errors["to"] = "the end of the time range must come after its start"
    filters = {"type": type, "status": status, "instance": instance, "from": since, "to": until,
               "instance_id": str(instance_id or "")}
    offset = (page_no - 1) * PAGE
    rows: list[JobView] = []
    total = 0
    if not errors:
        rows, total = await run_read(ctx, _read_list, ctx, type, status, instance, instance_id, queued_from,
                                     queued_to, offset, short=False)

    def url(n: int) -> str:
        return "/jobs?" + urlencode({**{k: v for k, v in filters.items() if v}, "page": n})

    return page(request, "jobs.html", viewer, section=SECTION, jobs=rows, total=total, filters=filters,
                errors=errors, types=[t.value for t in JobType], statuses=list(MEANING.items()),
                first=offset + 1, last=offset + len(rows), live=any(is_active(v.job.status) for v in rows),
                status_class=status_class, meaning=MEANING,
                prev_url=url(page_no - 1) if page_no > 1 else None,
                next_url=url(page_no + 1) if offset + PAGE < total else None,
                status_code=400 if errors else 200)


def _read_list(ctx: Context, job_type: str, status: str, instance: str, instance_id: int | None,
               queued_from: dt.datetime | None, queued_to: dt.datetime | None,
               offset: int) -> tuple[list[JobView], int]:
    with ctx.catalog.transaction(write=False) as s:
        return job_service.list_jobs(s, job_types=[job_type] if job_type else None,
                                     statuses=[status] if status else None, instance_name=instance,
                                     instance_id=instance_id,
                                     queued_from=queued_from, queued_to=queued_to, offset=offset, limit=PAGE)


# -- one job ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """A line of the job's log: when (None: not recorded), what, and whether it went wrong."""

    at: dt.datetime | None
    text: str
    bad: bool = False


@dataclass(frozen=True)
class ItemLine:
    item: JobItemRow
    rate: float | None  # bytes per second since the previous poll, while it runs


@dataclass(frozen=True)
class JobPage:
    view: JobView
    node: str | None
    kill_requested: bool
    items: list[ItemLine]
    log: list[Event]
    sample: str  # the live part's next polling URL's query: this poll's time and bytes

    @property
    def active(self) -> bool:
        return is_active(self.view.job.status)


def node_of(lease_owner: str | None) -> str | None:
    """The node's name in a lease (``<node>:<pid>.<random>:<claim>``; a node's name may hold colons)."""
    if not lease_owner:
        return None
    parts = lease_owner.rsplit(":", 2)
    return parts[0] if len(parts) == 3 else lease_owner


def timeline(view: JobView, node: str | None, kill_requested: bool) -> list[Event]:
    """The job's log as the catalog knows it: queued, started (attempts, node), each item's outcome,
    warnings, the kill asked, the end and its message."""
    job = view.job
    log = [Event(job.created_at, f"queued ({job.trigger}, by {job.started_by})")]
    if job.started_at is not None:
        where = f" on node {node}" if node else ""
        log.append(Event(job.started_at, f"started{where}"))
        if job.attempts > 1:
            log.append(Event(None, f"claimed {job.attempts} times: a worker was lost and the job started again"))
    if job.status == JobStatus.WAITING and job.message:
        log.append(Event(job.updated_at, job.message, bad=job.attempts > 0))
    for item in view.items:
        what = f"{item.kind} {item.name}" if item.kind != "globals" else "globals (roles, tablespaces)"
        text = f"{what}: {item.status}"
        if item.bytes:
            text += f", {item.bytes:,} bytes"
        if item.target:
            text += f", into {item.target}"
        if item.error:
            text += f": {item.error}"
        log.append(Event(None, text, bad=item.status in (JobStatus.FAILED, JobStatus.KILLED)))
    for warning in job.warnings or []:
        log.append(Event(None, f"warning: {warning}", bad=True))
    if kill_requested and job.ended_at is None:
        log.append(Event(job.updated_at, "kill requested: waiting for the worker to stop", bad=True))
    if job.ended_at is not None:
        ended = f"ended {job.status}" + (f": {job.message}" if job.message else "")
        log.append(Event(job.ended_at, ended, bad=job.status != JobStatus.COMPLETED))
    elif job.status == JobStatus.RUNNING:
        log.append(Event(job.updated_at, f"last progress: {job.phase}, {job.percent_complete} %"))
    return log


def parse_sample(t: str, s: str) -> tuple[float, list[int]] | None:
    """The previous poll's sample from the live part's URL (bad or missing: no rate, not an error)."""
    try:
        when = float(t)
        sizes = [int(x) for x in s.split(",")] if s else []
    except ValueError:
        return None
    return when, sizes


def with_rates(view: JobView, previous: tuple[float, list[int]] | None, now: float) -> list[ItemLine]:
    lines = []
    for n, item in enumerate(view.items):
        rate = None
        if previous is not None and item.status == JobStatus.RUNNING and n < len(previous[1]):
            elapsed = now - previous[0]
            grown = item.bytes - previous[1][n]
            if elapsed > 0 and grown >= 0:
                rate = grown / elapsed
        lines.append(ItemLine(item, rate))
    return lines


def _read_job(ctx: Context, job_id: int, previous: tuple[float, list[int]] | None) -> JobPage:
    with ctx.catalog.transaction(write=False) as s:
        view = job_service.job_view(s, job_id)
        lease_owner, kill_requested = job_service.job_runner(s, job_id)
    now = time.time()
    sample = urlencode({"t": f"{now:.3f}", "s": ",".join(str(i.bytes) for i in view.items)})
    node = node_of(lease_owner)
    return JobPage(view, node, kill_requested, with_rates(view, previous, now),
                   timeline(view, node, kill_requested), sample)


def _job_page(request: Request, viewer: Any, job: JobPage, *, error: str | None = None, flash: str | None = None,
              status_code: int = 200) -> Response:
    return page(request, "job.html", viewer, section=SECTION, job=job, error=error, flash=flash,
                flash_kind="ok" if flash else None, status_class=status_class, meaning=MEANING,
                status_code=status_code)


@router.get("/jobs/{job_id}")
@requires(Capability.VIEW)
async def job_detail(request: Request, viewer: ViewerDep, job_id: int, done: str = "") -> Response:
    ctx: Context = request.app.state.context
    job = await run_read(ctx, _read_job, ctx, job_id, None, short=False)
    return _job_page(request, viewer, job, flash=DONE.get(done))


@router.get("/jobs/{job_id}/live")
@requires(Capability.VIEW)
async def job_live(request: Request, viewer: ViewerDep, job_id: int,
                   t: Annotated[str, Query(max_length=32)] = "",
                   s: Annotated[str, Query(max_length=20_000)] = "") -> Response:
    """The live part of the job page alone (htmx swaps it in; it stops polling once the job has ended)."""
    ctx: Context = request.app.state.context
    job = await run_read(ctx, _read_job, ctx, job_id, parse_sample(t, s), short=False)
    return page(request, "job_live.html", viewer, job=job, status_class=status_class, meaning=MEANING)


@router.post("/jobs/{job_id}/kill")
@requires(Capability.KILL_JOBS)
async def kill(request: Request, viewer: ViewerDep, _: FormDep, job_id: int) -> Response:
    ctx: Context = request.app.state.context
    try:
        await run_in_threadpool(api_jobs.kill_job, ctx, viewer.user, job_id)  # the API's own kill
    except PgvaultError as exc:  # already finished, or gone
        job = await run_read(ctx, _read_job, ctx, job_id, None, short=False)
        return _job_page(request, viewer, job, error=exc.message, status_code=exc.http_status)
    return RedirectResponse(f"/jobs/{job_id}?done=kill", status_code=303)
