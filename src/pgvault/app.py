"""The FastAPI application: Command Center's API under /commandcenter/api, workers started with it."""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from . import __version__, console
from .api import (
    BASE,
    agents,
    audit,
    auth,
    backupsets,
    clients,
    commserv,
    credentials,
    errors,
    instances,
    jobs,
    metrics,
    notifications,
    openapi,
    plans,
    restore_points,
    root,
    schedules,
    subclients,
    tasks,
    users,
)
from .api.accesslog import AccessLog
from .api.audit import AuditTrail
from .api.limits import BodyLimit
from .api.paths import CanonicalPaths
from .context import Context
from .domain import access
from .settings import Settings

log = logging.getLogger("pgvault")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = Context.open(settings)
        app.state.context = ctx
        log.info("pgvault %s listening on http://%s:%s (PGVAULT_HOME %s)", __version__, settings.host,
                 settings.port, settings.home_dir)
        ctx.notifier.start()
        ctx.pool.start()
        ctx.scheduler.start()
        try:
            yield
        finally:
            ctx.close()

    app = FastAPI(
        title="pgvault", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,  # (console: /docs)
        description="Data protection for PostgreSQL fleets, with Command Center's REST API.",
    )
    templates = [BASE]
    for router in ROUTERS:
        declare_capabilities(router)
        add_routes(app, router)
        templates += [r.path for r in router.routes if isinstance(r, APIRoute)]
    app.add_api_route(BASE, root.root, methods=["GET"], include_in_schema=False)
    for router in console.ROUTERS:  # (pages and form actions declare theirs too: console/session.py checks it)
        declare_capabilities(router)
        add_routes(app, router)
    console.install(app)
    for route in list(app.router.routes):
        if isinstance(route, APIRoute) and "GET" in (route.methods or ()):
            _add_head(app, route)
    errors.install(app, PUBLIC, html=console.error_page)
    openapi.install(app, PUBLIC)
    app.add_middleware(AuditTrail)  # inside CanonicalPaths: sees the route and the user (api/audit.py)
    app.add_middleware(CanonicalPaths, templates=templates)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)  # before anything reads a body
    app.add_middleware(AccessLog)  # outermost: every request gets its line, refusals included
    return app


# no token needed (/metrics checks its own: an API token, or PGVAULT_METRICS_TOKEN)
PUBLIC = frozenset({BASE, BASE + "/", BASE + "/Login", BASE + "/RenewLoginToken", "/healthz", "/readyz"})

# Routes are matched in this order, one regular expression each: the ones polled hardest (a job's progress,
# the instance list) come first. No two modules' paths overlap, so the order changes nothing else.
ROUTERS: tuple[APIRouter, ...] = tuple(m.router for m in (
    jobs, instances, root, auth, clients, plans, subclients, tasks, restore_points, commserv, agents, credentials,
    backupsets, schedules, notifications, users, audit,
    metrics))  # (metrics: /metrics, /healthz, /readyz, outside Command Center's API)


def declare_capabilities(router: APIRouter) -> None:
    """Every API route says what capability it needs (``domain/access.py``; ``api.deps.current_user``
    checks it): one without a declaration stops the application here, so none can be forgotten. The
    declaration goes into the OpenAPI document too (``x-pgvault-capability``)."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        needed = access.capability_of(route.endpoint)
        if needed is None:
            raise TypeError(f"{sorted(route.methods or ())} {route.path} ({route.endpoint.__qualname__}) declares no "
                            "capability: put @requires(Capability.X) or @public under its @router line")
        route.openapi_extra = {**(route.openapi_extra or {}), "x-pgvault-capability": str(needed)}


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """A module's routes (built by its router, prefix ``BASE`` included), added whole to the application's
    own router rather than through ``include_router``: FastAPI (0.165) keeps an included router as a live
    branch and matches a request against every branch before it, twice, which was a fifth of the CPU of a
    GET /Job/{id}; routes of the application's router are matched once, in order. Nothing is copied or
    rebuilt, so nothing a route declares can be lost on the way (tests/test_http.py compares the OpenAPI
    document with an ``include_router`` build)."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"{route!r}: only API routes are expected in pgvault's routers")
        app.router.routes.append(route)


def _add_head(app: FastAPI, route: APIRoute) -> None:
    """HEAD wherever GET answers (HTTP requires it of a GET resource; FastAPI, unlike Starlette, does not
    add it): the same route under HEAD alone, after every other route so that GETs are matched as before,
    and out of the OpenAPI document. uvicorn sends the GET's status and headers without the body."""
    twin = copy.copy(route)
    twin.methods = {"HEAD"}
    twin.include_in_schema = False
    app.router.routes.append(twin)
