"""POST /Login, /Logout, /WhoAmI."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Security
from pydantic import StrictStr

from ..domain.access import Capability, public, requires
from ..errors import BadRequest
from ..schemas.auth import LoginResponse, LogoutResponse, RenewLoginTokenResponse, WhoAmIResponse
from ..schemas.common import WireModel, decode_base64_text
from ..services import auth
from . import BASE
from .deps import ContextDep, UserDep, authtoken_header
from .openapi import answers

router = APIRouter(prefix=BASE, tags=["login"])


class LoginRequest(WireModel):
    username: StrictStr
    password: StrictStr  # base64 of the UTF-8 password, as Command Center expects


@router.post("/Login", summary="Log in; returns the token for the Authtoken header",
             responses=answers(LoginResponse, "logged in: the token for the Authtoken header"))
@public
def login(ctx: ContextDep, body: Annotated[LoginRequest, Body()]) -> dict:
    try:
        password = decode_base64_text(body.password)
    except ValueError as exc:
        raise BadRequest(f"password {exc}") from None
    with ctx.catalog.transaction(write=False) as s:
        row = auth.password_row(s, body.username)
    user = auth.check_password(row, password)  # scrypt, outside any transaction
    with ctx.catalog.transaction(write=True) as s:
        token = auth.issue_token(s, user, ctx.settings.token_ttl_seconds)
    return {"token": token, "userName": user.username, "userId": user.id, "aliasName": str(user.id)}


class RenewRequest(WireModel):
    sessionId: StrictStr | None = None  # the token to renew; the Authtoken header when absent
    deviceId: StrictStr | None = None


@router.post("/RenewLoginToken", summary="Trade a live (or lately expired) token for a fresh one",
             responses=answers(RenewLoginTokenResponse, "a fresh token; the old one stops working"))
@public
def renew_login_token(
    ctx: ContextDep, token: Annotated[str | None, Security(authtoken_header)],
    body: Annotated[RenewRequest | None, Body()] = None,
) -> dict:
    old = (body.sessionId if body else None) or token
    with ctx.catalog.transaction(write=True) as s:
        new_token, user = auth.renew(s, old, ctx.settings.token_ttl_seconds)
        answer = {"token": new_token, "userName": user.username, "userId": user.id}
    ctx.tokens.forget(old)  # after the commit: from now on the catalog refuses it too
    return answer


@router.post("/Logout", summary="End the session of the Authtoken sent",
             responses=answers(LogoutResponse, "logged out; the token stops working"))
@requires(Capability.OWN_SESSION)
def logout(ctx: ContextDep, token: Annotated[str | None, Security(authtoken_header)]) -> dict:
    with ctx.catalog.transaction(write=True) as s:
        auth.logout(s, token)
    ctx.tokens.forget(token)  # after the commit: from now on the catalog refuses it too
    return {"response": "User logged out"}


@router.post("/WhoAmI", summary="The user the Authtoken belongs to",
             responses=answers(WhoAmIResponse, "the user of the token"))
@requires(Capability.OWN_SESSION)
def whoami(user: UserDep) -> dict:
    return {"user": {"userName": user.username, "userId": user.id}}
