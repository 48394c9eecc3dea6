"""How pgvault reaches a protected server: one description used by psycopg and by the client programs.

SSL follows the registration: ``sslEnabled`` false means no SSL at all; true with a CA file means the
certificate chain and host name are verified (libpq's verify-full); true without one means SSL is
required but unverified (libpq's require).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import psycopg

from ..errors import ConnectionFailed
from .versions import PgVersion


@dataclass(frozen=True)
class ServerAddress:
    host: str
    port: int
    user: str
    password: str
    dbname: str = "postgres"
    ssl_enabled: bool = False
    ssl_ca: str | None = None
    connect_timeout: int = 10

    def __repr__(self) -> str:  # never show the password, even in a traceback
        return f"ServerAddress({self.user}@{self.host}:{self.port}/{self.dbname}, ssl={self.sslmode})"

    __str__ = __repr__

    @property
    def sslmode(self) -> str:
        if not self.ssl_enabled:
            return "disable"
        return "verify-full" if self.ssl_ca else "require"

    def with_db(self, dbname: str) -> ServerAddress:
        return replace(self, dbname=dbname)

    def psycopg_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "host": self.host, "port": self.port, "user": self.user, "password": self.password,
            "dbname": self.dbname, "sslmode": self.sslmode, "connect_timeout": self.connect_timeout,
            "application_name": "pgvault",
        }
        if self.ssl_ca:
            kw["sslrootcert"] = self.ssl_ca
        return kw

    def connect(self, **extra: Any) -> psycopg.Connection:
        """A psycopg connection, or ``ConnectionFailed`` carrying PostgreSQL's own reason."""
        try:
            return psycopg.connect(autocommit=True, **self.psycopg_kwargs(), **extra)
        except psycopg.Error as exc:
            raise ConnectionFailed(
                f"Connection to PostgreSQL Server failed.\n[~Connection to Database Failed: "
                f"{_reason(exc)} ~]"
            ) from None


def _reason(exc: psycopg.Error) -> str:
    text = str(exc).strip()
    # libpq repeats itself once per address tried; the first reason is the useful one.
    return text.replace("\n", " ").strip()


@dataclass(frozen=True)
class ServerInfo:
    version: str
    version_num: int

    @property
    def pg_version(self) -> PgVersion:
        return PgVersion(self.version_num)


def server_info(conn: psycopg.Connection) -> ServerInfo:
    """The version of the server ``conn`` is connected to (the one place it is read)."""
    row = conn.execute("select current_setting('server_version'), current_setting('server_version_num')")
    version, num = row.fetchone()  # type: ignore[misc]
    return ServerInfo(version=str(version).split()[0], version_num=int(num))


def probe(address: ServerAddress) -> ServerInfo:
    """Log in and read the server's version (time-limited by ``connect_timeout``)."""
    with address.connect() as conn:
        return server_info(conn)
