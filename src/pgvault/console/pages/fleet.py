"""GET /: the fleet overview, the console's home page: is everything protected, and if not, what is wrong."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ...api.deps import run_read
from ...catalog.types import utcnow
from ...context import Context
from ...domain.access import Capability, requires
from ...services import fleet
from ..render import page
from ..session import ViewerDep

router = APIRouter(include_in_schema=False)
PAGE = 50


@router.get("/")
@requires(Capability.VIEW)
async def overview(
    request: Request, viewer: ViewerDep,
    name: Annotated[str, Query(max_length=255)] = "", account: Annotated[str, Query(max_length=255)] = "",
    plan: Annotated[str, Query(max_length=255)] = "", status: Annotated[str, Query(max_length=16)] = "",
    page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> Response:
    ctx: Context = request.app.state.context
    if status not in {s.value for s in fleet.Standing}:
        status = ""
    offset = (page_no - 1) * PAGE
    result = await run_read(ctx, _read, ctx, name, account, plan, status, offset, short=False)
    filters = {"name": name, "account": account, "plan": plan, "status": status}

    def url(n: int) -> str:
        return "/?" + urlencode({**{k: v for k, v in filters.items() if v}, "page": n})

    return page(request, "fleet.html", viewer, section="/", fleet=result, filters=filters,
                standings=list(fleet.Standing), first=offset + 1, last=offset + len(result.rows),
                prev_url=url(page_no - 1) if page_no > 1 else None,
                next_url=url(page_no + 1) if offset + PAGE < result.matching else None)


def _read(ctx: Context, name: str, account: str, plan: str, status: str, offset: int) -> fleet.FleetPage:
    with ctx.catalog.transaction(write=False) as s:
        return fleet.overview(s, utcnow(), name=name, account=account, plan=plan, standing=status,
                              offset=offset, limit=PAGE)
