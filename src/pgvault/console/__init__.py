"""The web console: Command Center in the browser, served by ``pgvault serve`` itself at ``/``.

Server-rendered pages (Jinja2 templates, ``templates/``) with htmx for the live parts (a running job's
progress, the fleet overview's refresh), every asset served by pgvault from ``static/`` (no CDN, no Node
build). The console is a second face of the REST API, not a second copy of its rules: a page reads
through the services the API reads through, and an action calls the API's own operation (the function
of its route, with the same typed body), so whatever the console can do the API can, with the same
checks and the same errors, which the page shows in words. docs/architecture.md, "The console".
"""

from __future__ import annotations

from urllib.parse import quote

import fastapi_swagger
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.routing import Mount

from .. import api
from .pages import audit, docs, fleet, instances, jobs, login, plans, restore, users
from .render import HERE, page
from .session import LoginRequired

ROUTERS = (login.router, fleet.router, instances.router, jobs.router, plans.router, restore.router, docs.router,
           audit.router, users.router)
API_PATHS = (api.BASE, "/metrics", "/healthz", "/readyz", "/openapi.json")


def is_console_path(path: str) -> bool:
    return not any(path == p or path.startswith(p + "/") for p in API_PATHS)


def install(app: FastAPI) -> None:
    """Its assets and its answer to a request without a session (its routes, ``ROUTERS``, are added by
    app.py with the API's)."""
    swagger = StaticFiles(directory=fastapi_swagger.__path__[0] + "/resources")
    app.router.routes.append(Mount("/static/swagger", app=swagger, name="swagger"))
    app.router.routes.append(Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"))

    @app.exception_handler(LoginRequired)
    async def _login_first(request: Request, exc: LoginRequired) -> Response:
        if request.headers.get("hx-request"):  # a live part of a page: send the whole page to the login
            return Response(status_code=204, headers={"HX-Redirect": "/login"})
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":
            target = "/"
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def error_page(request: Request, status: int, message: str) -> Response | None:
    """The HTML answer for an error on a console path (api/errors.py asks before it answers JSON)."""
    if not is_console_path(request.url.path):
        return None
    headings = {400: "That did not work", 401: "Please log in", 403: "Not allowed", 404: "Not found",
                405: "Not allowed", 409: "Conflict", 413: "Too large"}
    return page(request, "error.html", None, status_code=status, heading=headings.get(status, "Something went wrong"),
                message=message)
