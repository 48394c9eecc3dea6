"""The FastAPI application: Command Center's API under /commandcenter/api, workers started with it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from . import __version__
from .api import (
    agents,
    auth,
    backupsets,
    clients,
    commserv,
    credentials,
    errors,
    instances,
    jobs,
    plans,
    restore_points,
    root,
    schedules,
    subclients,
    tasks,
)
from .api.limits import BodyLimit
from .api.paths import CanonicalPaths
from .context import Context
from .settings import Settings

BASE = "/commandcenter/api"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = Context.open(settings)
        app.state.context = ctx
        ctx.pool.start()
        ctx.scheduler.start()
        try:
            yield
        finally:
            ctx.close()

    app = FastAPI(
        title="pgvault", version=__version__, lifespan=lifespan,
        description="Data protection for PostgreSQL fleets, with Command Center's REST API.",
    )
    templates = [BASE]
    # Routes are matched in this order, one regular expression each: the ones polled hardest (a job's
    # progress, the instance list) come first. No two modules' paths overlap, so the order changes
    # nothing else.
    for module in (jobs, instances, root, auth, clients, plans, subclients, tasks, restore_points,
                   commserv, agents, credentials, backupsets, schedules):
        for route in module.router.routes:
            _add_route(app, BASE, route)
            templates.append(BASE + route.path)
    app.add_api_route(BASE, root.root, methods=["GET"], include_in_schema=False)
    for route in list(app.router.routes):
        if isinstance(route, APIRoute) and "GET" in (route.methods or ()):
            _add_head(app, route)
    errors.install(app, frozenset({BASE, BASE + "/", BASE + "/Login", BASE + "/RenewLoginToken"}))
    app.add_middleware(CanonicalPaths, templates=templates)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)  # outermost: before anything else
    return app


def _add_route(app: FastAPI, prefix: str, route: BaseRoute) -> None:
    """A module's route, added to the application's own router rather than through ``include_router``:
    FastAPI (0.165) keeps an included router as a live branch and matches a request against every branch
    before it, twice, which was a fifth of the CPU of a GET /Job/{id}; routes of the application's
    router are matched once, in order. The settings pgvault's routes use are carried over; one that is
    not (route dependencies, custom responses, ...) is refused here rather than silently dropped."""
    if not isinstance(route, APIRoute):
        raise TypeError(f"{route!r}: only API routes are expected in pgvault's routers")
    unsupported = [name for name, default in _UNSUPPORTED.items() if getattr(route, name) != default]
    if unsupported:
        raise TypeError(f"{route.path}: _add_route does not carry over {', '.join(unsupported)}")
    app.router.add_api_route(
        prefix + route.path, route.endpoint, methods=sorted(route.methods or ()), name=route.name,
        tags=route.tags, summary=route.summary, description=route.description,
        response_model=route.response_model, status_code=route.status_code,
        include_in_schema=route.include_in_schema,
    )


def _add_head(app: FastAPI, route: APIRoute) -> None:
    """HEAD wherever GET answers (HTTP requires it of a GET resource; FastAPI, unlike Starlette, does not
    add it): the same endpoint under HEAD alone, after every other route so that GETs are matched as
    before, and out of the OpenAPI document. uvicorn sends the GET's status and headers without the body."""
    app.router.add_api_route(
        route.path, route.endpoint, methods=["HEAD"], name=route.name, response_model=route.response_model,
        status_code=route.status_code, include_in_schema=False,
    )


_UNSUPPORTED: dict[str, object] = {
    "dependencies": [], "responses": {}, "deprecated": None, "operation_id": None, "openapi_extra": None,
    "callbacks": [], "response_model_include": None, "response_model_exclude": None,
    "response_model_exclude_unset": False, "response_model_exclude_defaults": False,
    "response_model_exclude_none": False, "response_model_by_alias": True,
    "response_description": "Successful Response",
}
