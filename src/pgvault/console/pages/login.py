"""GET/POST /login and POST /logout: a console session is an ordinary login token (console/session.py)."""

from __future__ import annotations

import base64
import contextlib
import hmac
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from ...api import auth as api_auth
from ...domain.access import Capability, public, requires
from ...errors import NotAuthenticated, PgvaultError
from ..render import page
from ..session import COOKIE, LOGIN_COOKIE, FormDep, ViewerDep, new_login_csrf, same_origin, secure

router = APIRouter(include_in_schema=False)


def local_path(target: str | None) -> str:
    """Where to go after logging in: a path of this console only (never another site: ``//host``, a scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _login_page(request: Request, *, next_path: str, username: str = "", error: str | None = None,
                status_code: int = 200) -> Response:
    csrf = new_login_csrf()
    response = page(request, "login.html", None, status_code=status_code, login_csrf=csrf, next=next_path,
                    username=username, error=error)
    response.set_cookie(LOGIN_COOKIE, csrf, httponly=True, samesite="strict", secure=secure(request), path="/login")
    return response


@router.get("/login")
@public
def login_form(request: Request, next: str = "/") -> Response:
    return _login_page(request, next_path=local_path(next))


@router.post("/login")
@public
async def login(request: Request, username: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
          csrf: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/") -> Response:
    ctx = request.app.state.context
    target = local_path(next)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(csrf, expected) or not same_origin(request):
        return _login_page(request, next_path=target, username=username, status_code=403,
                           error="The login form expired or did not come from this page: please try again.")
    if not username or not password:
        return _login_page(request, next_path=target, username=username, status_code=400,
                           error="Enter a user name and a password.")
    body = api_auth.LoginRequest(username=username, password=base64.b64encode(password.encode()).decode())
    try:
        # the API's own login: the same checks, the same throttle (services/logins.py), the same token
        answer = await api_auth.login(request, body)
    except PgvaultError as exc:
        return _login_page(request, next_path=target, username=username, error=exc.message,
                           status_code=exc.http_status)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, answer["token"], httponly=True, samesite="lax", secure=secure(request), path="/",
                        max_age=ctx.settings.token_ttl_seconds)
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
@requires(Capability.OWN_SESSION)
def logout(request: Request, viewer: ViewerDep, _: FormDep) -> Response:
    ctx = request.app.state.context
    with contextlib.suppress(NotAuthenticated):  # (logged out elsewhere meanwhile: the cookie goes anyway)
        api_auth.logout(ctx, viewer.user, viewer.token)  # revoked in the catalog, as POST /Logout does
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
