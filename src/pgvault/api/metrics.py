"""Operations endpoints outside Command Center's API: ``GET /metrics`` (Prometheus text format, read from the
catalog at scrape time: services/metrics.py), ``GET /healthz`` (the process answers) and ``GET /readyz``
(catalog reachable, its schema current, the master key usable). The probes need no token and say nothing
but their checks' names."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..context import Context
from ..domain.access import public
from ..errors import NotAuthenticated
from ..schemas.operations import Health, Readiness
from ..services.metrics import FleetCollector, ProcessState
from .deps import current_user
from .openapi import answers

router = APIRouter(tags=["operations"])


def registry_for(ctx: Context) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(ctx.catalog, ProcessState(ctx.pool.slots, lambda: ctx.scheduler.last_lag_seconds)))
    return registry


@router.get("/metrics", summary="Prometheus metrics (a token, or PGVAULT_METRICS_TOKEN as a bearer token)",
            response_class=Response,
            # the API token scheme, declared so that the fuzz run's ignored-auth check covers this route too
            # (PGVAULT_METRICS_TOKEN, a bearer token, is the other way in)
            openapi_extra={"security": [{"APIKeyHeader": []}]}, responses={200: {
                "description": "the metrics, in Prometheus' text format",
                "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}})
@public
async def metrics(request: Request, authorization: Annotated[str | None, Header()] = None) -> Response:
    ctx: Context = request.app.state.context
    scrape_token = ctx.settings.metrics_token.get_secret_value() if ctx.settings.metrics_token else None
    given = (authorization or "").removeprefix("Bearer ").strip()
    if not (scrape_token and given and hmac.compare_digest(given.encode(), scrape_token.encode())):
        try:
            await current_user(request, request.headers.get("authtoken"))
        except NotAuthenticated:
            raise NotAuthenticated("a token is required: Authtoken (from /Login), or PGVAULT_METRICS_TOKEN as "
                                   "'Authorization: Bearer ...'") from None
    if getattr(request.app.state, "metrics_registry", None) is None:
        request.app.state.metrics_registry = registry_for(ctx)
    body = await run_in_threadpool(generate_latest, request.app.state.metrics_registry)
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", summary="The process answers (no token)", responses=answers(Health, "the process answers"))
@public
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Ready to serve: catalog reachable and current, master key usable (no token)",
            responses={**answers(Readiness, "ready"),
                       503: {"model": Readiness, "description": "not ready: the checks that failed"}})
@public
async def readyz(request: Request) -> JSONResponse:
    ctx: Context = request.app.state.context
    failed = await run_in_threadpool(_readiness, ctx)
    return JSONResponse(status_code=503 if failed else 200,
                        content={"status": "not ready" if failed else "ready", "failed": failed})


def _readiness(ctx: Context) -> list[str]:
    failed = []
    try:
        if not ctx.catalog.schema_current():
            failed.append("catalog schema")
    except Exception:
        failed.append("catalog")
    try:
        ctx.sealer.open(ctx.sealer.seal(b"ready", "readyz"), "readyz")
    except Exception:
        failed.append("master key")
    return failed
