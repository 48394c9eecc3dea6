"""Command Center's paths match without regard to case and with ``//`` collapsed (cvpysdk sends both
``V4/Credential`` and ``v4/Credential``, and ``…/api//CommCell/Credentials``).

An ASGI middleware rewrites each request path to the canonical spelling of the route template it
matches, so the routes themselves (and the OpenAPI document) keep Command Center's own spelling.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

_SLASHES = re.compile(r"/{2,}")
_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
_KNOWN_PATHS, _KNOWN_LENGTH = 4096, 200


def _compile(template: str) -> tuple[re.Pattern[str], str]:
    """``/a/{id:int}/b`` -> a case-insensitive pattern and the format string ``/a/{id}/b``."""
    pattern, fmt, pos = "", "", 0
    for m in _PARAM.finditer(template):
        pattern += re.escape(template[pos : m.start()]) + f"(?P<{m.group(1)}>[^/]+)"
        fmt += template[pos : m.start()].replace("{", "{{").replace("}", "}}") + "{" + m.group(1) + "}"
        pos = m.end()
    pattern += re.escape(template[pos:])
    fmt += template[pos:]
    return re.compile(f"^{pattern}$", re.IGNORECASE), fmt


class CanonicalPaths:
    def __init__(self, app: ASGIApp, templates: Iterable[str]) -> None:
        self.app = app
        # Literal templates first, so /Job/{id} never swallows a fixed path of the same shape.
        ordered = sorted(set(templates), key=lambda t: t.count("{"))
        self._table = [_compile(t) for t in ordered]
        self._known: dict[str, str] = {}

    def canonical(self, path: str) -> str:
        """The canonical spelling of ``path``; remembered for the last few thousand paths asked (a request
        would otherwise try every template's pattern in turn)."""
        known = self._known.get(path)
        if known is None:
            known = self._canonical(path)
            if len(path) <= _KNOWN_LENGTH:  # bounded memory, whatever paths clients send
                if len(self._known) >= _KNOWN_PATHS:
                    self._known.clear()  # many distinct paths (ids): start over rather than track recency
                self._known[path] = known
        return known

    def _canonical(self, path: str) -> str:
        path = _SLASHES.sub("/", path)
        candidates = [path]
        if len(path) > 1 and path.endswith("/"):
            candidates.append(path[:-1])  # a trailing slash is tolerated
        for candidate in candidates:
            for pattern, fmt in self._table:
                m = pattern.match(candidate)
                if m:
                    return fmt.format(**m.groupdict())
        return path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = self.canonical(scope["path"])
            if path != scope["path"]:
                scope = dict(scope, path=path, raw_path=path.encode())
        await self.app(scope, receive, send)
