"""A bound on request bodies (``PGVAULT_MAX_BODY_BYTES``): a larger one is refused with 413 in Command
Center's envelope, and never read whole.

A body whose declared ``Content-Length`` is over the bound is refused before a byte of it is read (and
before the token is checked: nothing about the request matters then). One without a length (chunked) is
counted as the route reads it, and refused at the chunk that crosses the bound; FastAPI passes the
exception on to ``api/errors.py``. Either way uvicorn discards the rest as it arrives, without keeping it.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import body_too_large


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_message(limit))


def too_large_message(limit: int) -> str:
    return f"the request body is larger than {limit} bytes (PGVAULT_MAX_BODY_BYTES)"


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((value for name, value in scope["headers"] if name == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = body_too_large(Request(scope), too_large_message(self.max_bytes))
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted, send)
