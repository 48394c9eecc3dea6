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

# Every ordinary table outside the system schemas, named "schema.table" (unquoted, as pg_dump's table of
# contents names it): counted at backup time in pg_dump's snapshot and again by a restore drill.
_TABLES = """
select n.nspname || '.' || c.relname, format('%I.%I', n.nspname, c.relname)
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind = 'r'
  and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_(toast|temp_)'
order by 1
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


def row_counts(conn: psycopg.Connection) -> tuple[dict[str, int], list[str]]:
    """Exact row counts per table in the connection's current transaction, and what could not be
    counted (each count under a savepoint, so one unreadable table does not end the transaction)."""
    from psycopg import sql

    counts: dict[str, int] = {}
    errors: list[str] = []
    for name, quoted in conn.execute(_TABLES).fetchall():
        conn.execute("savepoint pgvault_count")
        try:
            row = conn.execute(sql.SQL("select count(*) from {}").format(sql.SQL(quoted))).fetchone()
        except psycopg.errors.QueryCanceled:
            raise
        except psycopg.Error as exc:
            conn.execute("rollback to savepoint pgvault_count")
            errors.append(f"{name}: {str(exc).strip()}")
            continue
        conn.execute("release savepoint pgvault_count")
        counts[name] = int(row[0]) if row else 0
    return counts, errors
