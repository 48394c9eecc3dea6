"""What routes depend on: the running context, the logged-in user, and how a read reaches the catalog."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import pydantic_core
from fastapi import Depends, Request, Response, Security
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from ..context import Context
from ..domain import access
from ..errors import NotAuthenticated
from ..services import auth
from ..services.auth import AuthUser

authtoken_header = APIKeyHeader(name="Authtoken", auto_error=False, description="the token from POST /Login")

T = TypeVar("T")


async def get_context(request: Request) -> Context:  # async: no threadpool hop for a lookup
    return request.app.state.context  # type: ignore[no-any-return]


def check_token(ctx: Context, token: str | None) -> AuthUser:
    """The token's user: from this process's cache of tokens it validated lately, else from the catalog
    (which then caches it). Raises NotAuthenticated."""
    if not token:
        raise NotAuthenticated("Authtoken header is missing")
    user = ctx.tokens.get(token)
    if user is None:
        with ctx.catalog.rows() as conn:
            user = auth.authenticate(conn, token, ctx.tokens)
    return user


async def run_read(ctx: Context, fn: Callable[..., T], *args: Any, short: bool = True) -> T:
    """Run ``fn(*args)``, a read of the catalog that builds its answer. A short read of a local catalog
    (SQLite: a call into this process, well under a millisecond of CPU for the hot GETs) runs right here
    on the event loop: handing it to the threadpool costs more than the read, and with 40 threads taking
    turns at the GIL every call into SQLite has to win it back. A short read of a catalog across the
    network (PostgreSQL) goes to a few threads of its own (``Context.reads``), which mostly wait on round
    trips; a long read (an unpaged list) to the shared threadpool. Either way the event loop never waits."""
    if short and ctx.catalog.local:
        return fn(*args)
    if short:
        return await asyncio.get_running_loop().run_in_executor(ctx.reads, fn, *args)
    return await run_in_threadpool(fn, *args)


async def current_user(request: Request, token: Annotated[str | None, Security(authtoken_header)]) -> AuthUser:
    """The caller, once it is known to hold the capability its route declared (``domain.access``): the
    one check of every API route, made before the route reads or changes anything."""
    # (the context straight from the app, not Depends(get_context): each dependency FastAPI resolves
    # costs a GET ~15 us of CPU)
    ctx: Context = request.app.state.context
    user = ctx.tokens.get(token) if token else None  # most requests: no catalog transaction at all
    if user is None:
        user = await run_read(ctx, check_token, ctx, token)
    request.state.user = user  # who the request acts as: its audit record says so (api/audit.py)
    needed = access.capability_of(request.scope["route"].endpoint)
    if needed != access.PUBLIC:
        # a route that declares nothing never reaches here (create_app refuses it): fail closed anyway
        access.require(user, needed if isinstance(needed, access.Capability) else access.Capability.MANAGE_USERS)
    if user.key_id is not None:
        ctx.key_used(user.key_id)
    return user


def json_response(content: Any) -> Response:
    """``content`` serialised here, as FastAPI would (pydantic's JSON encoder, the same bytes), so that a
    read answered on the event loop needs no second pass (FastAPI validates a returned dict against the
    route's return type, in the threadpool for a sync route, before it serialises it)."""
    return Response(content=pydantic_core.to_json(content), media_type="application/json")


ContextDep = Annotated[Context, Depends(get_context)]
UserDep = Annotated[AuthUser, Depends(current_user)]
