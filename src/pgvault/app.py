"""The FastAPI application: Command Center's API under /commandcenter/api, workers started with it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

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
    for module in (root, auth, clients, plans, instances, subclients, jobs, tasks, restore_points,
                   commserv, agents, credentials, backupsets, schedules):
        app.include_router(module.router, prefix=BASE)
        templates += [BASE + r.path for r in module.router.routes if hasattr(r, "path")]
    app.add_api_route(BASE, root.root, methods=["GET"], include_in_schema=False)
    errors.install(app, frozenset({BASE, BASE + "/", BASE + "/Login", BASE + "/RenewLoginToken"}))
    app.add_middleware(CanonicalPaths, templates=templates)
    return app
