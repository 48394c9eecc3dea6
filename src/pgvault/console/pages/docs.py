"""GET /docs: the API reference (Swagger UI 5 on pgvault's OpenAPI document), every asset served by pgvault.

FastAPI's own /docs loads Swagger UI from a CDN, a blank page on a host without internet; its /redoc
likewise. Both are turned off (app.py) for this page, whose assets come from the fastapi-swagger wheel."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from ...domain.access import public
from ..render import HEADERS

router = APIRouter(include_in_schema=False)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>API reference · pgvault</title>
<link rel="stylesheet" href="/static/swagger/swagger-ui.css"><link rel="icon" href="/static/favicon.svg">
</head><body>
<p style="margin:8px 16px;font-family:system-ui,sans-serif"><a href="/">&larr; pgvault console</a> ·
Command Center's REST API under <code>/commandcenter/api</code>; log in with <code>POST /Login</code>, then
send the token in the <code>Authtoken</code> header.</p>
<div id="swagger-ui"></div>
<script src="/static/swagger/swagger-ui-bundle.js"></script>
<script src="/static/swagger-init.js"></script>
</body></html>"""


@router.get("/docs")
@public
def api_reference() -> HTMLResponse:
    # (Swagger UI sets inline styles: allowed here, and only here)
    return HTMLResponse(_PAGE, headers={**HEADERS, "Content-Security-Policy": HEADERS["Content-Security-Policy"]
                                        .replace("default-src 'self';", "default-src 'self'; style-src 'self' "
                                                 "'unsafe-inline';")})
