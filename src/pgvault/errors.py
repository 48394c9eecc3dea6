"""One exception root; ``api/errors.py`` maps it to HTTP with Command Center's error envelope.

Error codes are part of the API and documented in docs/api.md.
"""

from __future__ import annotations

from typing import Any


class PgvaultError(Exception):
    http_status = 500
    error_code = 1

    def __init__(self, message: str, *, entity: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.entity = entity


class BadRequest(PgvaultError):
    http_status = 400
    error_code = 2


class NotAuthenticated(PgvaultError):
    http_status = 401
    error_code = 5


class NotFound(PgvaultError):
    http_status = 404
    error_code = 6


class Conflict(PgvaultError):
    http_status = 409
    error_code = 7


class ConnectionFailed(BadRequest):
    """The protected PostgreSQL server could not be reached or refused the login (Command Center's 4444)."""

    error_code = 4444


class ToolError(PgvaultError):
    """An external program (pg_dump, pg_restore, ...) failed or could not be run."""
