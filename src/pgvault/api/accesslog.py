"""One line per request in the service log (``pgvault.access``): method, path, status, milliseconds and the
client's address. Never a query string, a header or a body: tokens travel in headers and passwords in
bodies, and neither may reach a log."""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("pgvault.access")


class AccessLog:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before it answers

        async def send_and_note(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            if log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                log.info("%s %s %d %.1f ms %s", scope["method"], scope["path"], status,
                         (time.perf_counter() - started) * 1000, client[0] if client else "-")
