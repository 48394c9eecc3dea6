"""Who is looking at the console, and whether a form really comes from it.

The session is an ordinary login token (``services.auth.issue_token``, the same users, lifetime and
revocation as the API's ``Authtoken``), kept in a cookie the page's scripts cannot read (HttpOnly), that
the browser sends only to pgvault (SameSite=Lax) and only over TLS when the console is served over TLS
(Secure). Logging out revokes the token in the catalog, as ``POST /Logout`` does.

Every form that changes something carries a CSRF token, derived from the session's token with HMAC
(``csrf_for``): another site can make the browser post a form, but cannot read the cookie or the page, so
it cannot know the value. The login form, which has no session yet, uses a random value set in a cookie
and repeated in the form (double submit). A form post whose ``Origin`` names another site is refused too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from starlette.datastructures import FormData

from ..api.deps import check_token, run_read
from ..context import Context
from ..domain import access
from ..errors import NotAuthenticated, PgvaultError
from ..services.auth import AuthUser

COOKIE = "pgvault_session"
LOGIN_COOKIE = "pgvault_login_csrf"
CSRF_FIELD = "csrf"


class LoginRequired(Exception):
    """No live session: the page sends the browser to the login page (``console.install``)."""


class FormRefused(PgvaultError):
    http_status, error_code = 403, 15


def csrf_for(token: str) -> str:
    return hmac.new(token.encode(), b"pgvault console form", hashlib.sha256).hexdigest()


def new_login_csrf() -> str:
    return secrets.token_hex(16)


def secure(request: Request) -> bool:
    """Whether the browser reached the console over TLS (uvicorn with a certificate, or a proxy it trusts
    that says so in X-Forwarded-Proto)."""
    return request.url.scheme == "https"


@dataclass(frozen=True)
class Viewer:
    """The logged-in user of a console request, with the session's token and the CSRF value of its forms."""

    user: AuthUser
    token: str
    csrf: str


async def viewer(request: Request) -> Viewer:
    token = request.cookies.get(COOKIE)
    if not token:
        raise LoginRequired
    ctx: Context = request.app.state.context
    try:
        user = ctx.tokens.get(token)
        if user is None:
            user = await run_read(ctx, check_token, ctx, token)
    except NotAuthenticated:
        raise LoginRequired from None
    request.state.user = user  # who the request acts as: its audit record says so (api/audit.py)
    # What the page or action declared it needs (``@requires`` under its route line, as the API's routes
    # do; app.py refuses a console route without one): the same check as the API's (domain/access.py),
    # before the page reads or the action changes anything. A refusal is a page saying so (403).
    needed = access.capability_of(request.scope["route"].endpoint)
    if isinstance(needed, access.Capability):
        access.require(user, needed)
    elif needed != access.PUBLIC:  # (never reached: create_app refuses such a route) fail closed anyway
        access.require(user, access.Capability.MANAGE_USERS)
    return Viewer(user, token, csrf_for(token))


def same_origin(request: Request) -> bool:
    """False when the browser says the form comes from another site (``Origin``, or ``Referer`` when it
    sends no ``Origin``); True when it says nothing (older browsers, curl)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return source != "null"
    parts = urlsplit(source)
    return parts.netloc.lower() == request.headers.get("host", "").lower()


async def posted(request: Request, viewer: Annotated[Viewer, Depends(viewer)]) -> FormData:
    """The form of a console action, once proved to come from this session's own pages."""
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    if not same_origin(request) or not isinstance(sent, str) or not hmac.compare_digest(sent, viewer.csrf):
        raise FormRefused("this form did not come from this console session (it may have expired): "
                          "reload the page and try again")
    return form


ViewerDep = Annotated[Viewer, Depends(viewer)]
FormDep = Annotated[FormData, Depends(posted)]
