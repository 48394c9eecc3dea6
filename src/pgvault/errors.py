"""One exception root: every error pgvault raises on purpose is a ``PgvaultError`` carrying its HTTP status
and Command Center error code, which ``api/errors.py`` maps to the error envelope in one handler (jobs
record its ``message``). Callers catch a family (``StorageError``, ``ArchiveIntegrityError``) or the root,
never tuples of unrelated classes.

Error codes are part of the API and documented in docs/api.md.
"""

from __future__ import annotations

from typing import Any

ECHO_CHARS = 100  # of a bad value, quoted back in an error message
MESSAGE_CHARS = 2000  # of a whole error message, whatever it quotes (api/errors.py)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters and "…"."""
    return text if len(text) <= limit else text[:limit] + "…"


def shown(value: object) -> str:
    """A value from a request, quoted for an error message: its repr, of a string the first ECHO_CHARS
    characters (then "…"), so that a megabyte of bad input is neither sent back nor logged whole. Every
    message that quotes what the client sent goes through here."""
    if isinstance(value, str) and len(value) > ECHO_CHARS:
        quoted = repr(value[:ECHO_CHARS])
        return quoted[:-1] + "…" + quoted[-1]
    return clip(repr(value), ECHO_CHARS)


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


class Forbidden(PgvaultError):
    """The caller is known but their role lacks the capability the request needs (``domain/access.py``):
    refused before anything is read or changed."""

    http_status = 403
    error_code = 11


class NotFound(PgvaultError):
    http_status = 404
    error_code = 6


class Conflict(PgvaultError):
    http_status = 409
    error_code = 7


class TooManyRequests(PgvaultError):
    """A login refused without checking its password (``services.logins``): too many failures lately, or
    too many logins at once. ``retry_after`` (whole seconds) becomes the answer's ``Retry-After``."""

    http_status = 429
    error_code = 12

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class LeaseLost(Conflict):
    """A run wrote to a job it no longer holds: it was reaped (its lease ran out, or its node restarted) and
    may already run elsewhere."""


class ConnectionFailed(BadRequest):
    """The protected PostgreSQL server could not be reached or refused the login (Command Center's 4444)."""

    error_code = 4444


class ToolError(PgvaultError):
    """An external program (pg_dump, pg_restore, ...) failed or could not be run."""


class CompressorMissing(ToolError):
    """The compressor asked for (``PGVAULT_COMPRESSOR=zstd``) is not installed."""


class StorageError(PgvaultError):
    """A backup destination failed: unreachable, denied, full, or without the object asked for."""

    http_status = 502
    error_code = 8


class ArchiveIntegrityError(PgvaultError):
    """A stored backup is not what the backup wrote (a checksum, a manifest, a data key that does not
    open it)."""

    http_status = 409
    error_code = 9


class DecryptionError(ArchiveIntegrityError):
    """A stored file does not decrypt: the wrong data key, or bytes altered, reordered, cut or added."""


class MasterKeyError(PgvaultError):
    """The master key (or a key of the keyring) is missing, malformed or cannot be written: the service's
    configuration, not the request."""

    http_status = 503
    error_code = 10
