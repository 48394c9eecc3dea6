"""Pages from templates: Jinja2 with autoescaping, and the few filters every page uses (times, ages, sizes)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.responses import HTMLResponse

from .. import __version__
from ..catalog.types import utcnow
from ..domain.access import Capability, allows
from .session import Viewer

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
env = templates.env
env.autoescape = True

# The navigation bar: (path, label, the capability its page needs); a page names the one it belongs to. A
# viewer sees only the entries their role allows (``nav_for``).
NAV = (("/", "Fleet", Capability.VIEW), ("/jobs", "Jobs", Capability.VIEW), ("/restore", "Restore", Capability.RESTORE),
       ("/plans", "Plans", Capability.VIEW), ("/instances/new", "Register", Capability.MANAGE_INSTANCES),
       ("/users", "Users", Capability.MANAGE_USERS), ("/audit", "Audit", Capability.READ_AUDIT),
       ("/account", "Account", Capability.OWN_SESSION), ("/docs", "API", Capability.OWN_SESSION))


def nav_for(viewer: Viewer | None) -> list[tuple[str, str]]:
    """The entries of ``NAV`` the viewer's role allows (none without a viewer)."""
    if viewer is None:
        return []
    return [(path, label) for path, label, needed in NAV if allows(viewer.user.role, needed)]


def _aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def when(value: dt.datetime | None, empty: str = "never") -> Markup:
    """A moment, in UTC in the page (what a browser without scripts shows) and in the browser's own time
    zone once console.js has run, with UTC on hover."""
    if value is None:
        return Markup('<span class="muted">{}</span>').format(empty)
    value = _aware(value).astimezone(dt.UTC)
    iso = value.isoformat(timespec="seconds").replace("+00:00", "Z")
    utc = value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(iso, utc, value.strftime("%Y-%m-%d %H:%M UTC"))


def duration(value: dt.timedelta | float | None) -> str:
    """A span of time in the two largest units that matter: ``2 d 3 h``, ``4 h 12 min``, ``38 s``."""
    if value is None:
        return "-"
    seconds = int(value.total_seconds() if isinstance(value, dt.timedelta) else value)
    if seconds < 0:
        seconds = 0
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def ago(value: dt.datetime | None) -> str:
    return "-" if value is None else duration(utcnow() - _aware(value))


def size(value: int | float | None) -> str:
    if value is None:
        return "-"
    n = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


env.filters.update(when=when, duration=duration, ago=ago, size=size)
env.globals.update(nav_for=nav_for, version=__version__)


def page(request: Request, template: str, viewer: Viewer | None, *, status_code: int = 200,
         **values: Any) -> HTMLResponse:
    response = templates.TemplateResponse(request, template, {"viewer": viewer, "now": utcnow(), **values},
                                          status_code=status_code)
    response.headers.update(HEADERS)
    return response


# Every console page: no caching (live state, the user's), scripts and styles from pgvault only, never in
# a frame of another site.
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
