"""What to back up, decided at run time: every database that accepts connections, except templates.

A database created after registration is covered by the next run, and a dropped one stops appearing.
Databases that refuse this login (no CONNECT privilege, as managed services do for their own system
databases) are listed as skipped, with the reason, rather than failing every job.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

_QUERY = """
select datname,
       has_database_privilege(datname, 'CONNECT') as can_connect,
       case when has_database_privilege(datname, 'CONNECT') then pg_database_size(oid) end as size,
       pg_encoding_to_char(encoding), datcollate, datctype
from pg_database
where datallowconn and not datistemplate
order by datname
"""

@dataclass(frozen=True)
class Database:
    name: str
    size: int
    can_connect: bool
    encoding: str = "UTF8"
    collate: str = ""
    ctype: str = ""


def discover(conn: psycopg.Connection) -> list[Database]:
    rows = conn.execute(_QUERY).fetchall()
    return [Database(name=r[0], can_connect=bool(r[1]), size=int(r[2] or 0), encoding=r[3], collate=r[4],
                     ctype=r[5]) for r in rows]


def connection_budget(conn: psycopg.Connection) -> int | None:
    """How many connections the login may hold at once (None: no limit of its own)."""
    row = conn.execute("select rolconnlimit from pg_roles where rolname = current_user").fetchone()
    return None if row is None or row[0] < 0 else int(row[0])
