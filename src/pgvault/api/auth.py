"""POST /Login, /Logout, /WhoAmI."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request, Security
from pydantic import StrictStr

from ..context import Context
from ..domain.access import Capability, public, requires
from ..errors import BadRequest
from ..schemas.auth import LoginResponse, LogoutResponse, RenewLoginTokenResponse, WhoAmIResponse
from ..schemas.common import WireModel, decode_base64_text
from ..services import auth
from . import BASE
from .audit import note, note_user
from .deps import ContextDep, UserDep, authtoken_header
from .openapi import answers

router = APIRouter(prefix=BASE, tags=["login"])


class LoginRequest(WireModel):
    username: StrictStr
    password: StrictStr  # base64 of the UTF-8 password, as Command Center expects


@router.post("/Login", summary="Log in; returns the token for the Authtoken header",
             responses=answers(LoginResponse, "logged in: the token for the Authtoken header", throttled=True))
@public
async def login(request: Request, body: Annotated[LoginRequest, Body()]) -> dict:
    # async: a login waiting for its password check (or refused by the throttle) holds no thread
    # (services/logins.py)
    ctx: Context = request.app.state.context
    note(request, userName=body.username)  # the name tried, for the audit trail (never the password)
    try:
        password = decode_base64_text(body.password)
    except ValueError as exc:
        raise BadRequest(f"password {exc}") from None
    client = request.client
    done = await ctx.logins.login(ctx.catalog, ctx.reads, body.username, password, client.host if client else None,
                                  ctx.settings.token_ttl_seconds)
    note_user(request, done.user)
    user = done.user
    return {"token": done.token, "userName": user.username, "userId": user.id, "aliasName": str(user.id)}


class RenewRequest(WireModel):
    sessionId: StrictStr | None = None  # the token to renew; the Authtoken header when absent
    deviceId: StrictStr | None = None


@router.post("/RenewLoginToken", summary="Trade a live (or lately expired) token for a fresh one",
             responses=answers(RenewLoginTokenResponse, "a fresh token; the old one stops working"))
@public
def renew_login_token(
    request: Request, ctx: ContextDep, token: Annotated[str | None, Security(authtoken_header)],
    body: Annotated[RenewRequest | None, Body()] = None,
) -> dict:
    old = (body.sessionId if body else None) or token
    with ctx.catalog.transaction(write=True) as s:
        new_token, user = auth.renew(s, old, ctx.settings.token_ttl_seconds)
        answer = {"token": new_token, "userName": user.username, "userId": user.id}
        note_user(request, auth.AuthUser(user.id, user.username))
    ctx.tokens.forget(old)  # after the commit: from now on the catalog refuses it too
    return answer


@router.post("/Logout", summary="End the session of the Authtoken sent",
             responses=answers(LogoutResponse, "logged out; the token stops working"))
@requires(Capability.OWN_SESSION)
def logout(ctx: ContextDep, user: UserDep, token: Annotated[str | None, Security(authtoken_header)]) -> dict:
    # (``user``: checks the token as every route does, and names who logged out in the audit trail)
    with ctx.catalog.transaction(write=True) as s:
        auth.logout(s, token)
    ctx.tokens.forget(token)  # after the commit: from now on the catalog refuses it too
    return {"response": "User logged out"}


@router.post("/WhoAmI", summary="The user the Authtoken belongs to",
             responses=answers(WhoAmIResponse, "the user of the token"))
@requires(Capability.OWN_SESSION)
def whoami(user: UserDep) -> dict:
    return {"user": {"userName": user.username, "userId": user.id}}
