"""What routes depend on: the running context and the logged-in user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from ..catalog.models import User
from ..context import Context
from ..services import auth

authtoken_header = APIKeyHeader(name="Authtoken", auto_error=False, description="the token from POST /Login")


async def get_context(request: Request) -> Context:  # async: no threadpool hop for a lookup
    return request.app.state.context  # type: ignore[no-any-return]


def current_user(
    ctx: Annotated[Context, Depends(get_context)],
    token: Annotated[str | None, Security(authtoken_header)],
) -> User:
    with ctx.catalog.read() as s:
        user = auth.authenticate(s, token)
        s.expunge(user)
        return user


ContextDep = Annotated[Context, Depends(get_context)]
UserDep = Annotated[User, Depends(current_user)]
