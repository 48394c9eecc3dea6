"""Choosing a table's entries from ``pg_restore -l``, for table-level restore.

pg_restore's own ``-t`` restores a table's definition and data but not its constraints, indexes,
defaults or sequences. pgvault selects those too, from the archive's table of contents:

- TABLE and TABLE DATA of the table itself;
- CONSTRAINT, FK CONSTRAINT, TRIGGER, DEFAULT, POLICY and RULE entries, whose tag starts with the table's name;
- INDEX and SEQUENCE entries (and SEQUENCE SET/OWNED BY) named after the table as PostgreSQL names them
  (``<table>_…``), attributed to the longest table name that prefixes them, so ``orders_archive_pkey``
  goes with ``orders_archive`` and not ``orders``.

Lines of ``-l`` are ``<id>; <catalog oid> <oid> <DESC> <schema> <tag> <owner>``; names are not quoted,
so entries are matched by prefix on known strings rather than split on spaces.
"""

from __future__ import annotations

_BY_TAG = ("CONSTRAINT", "FK CONSTRAINT", "TRIGGER", "DEFAULT", "POLICY", "RULE")
_BY_NAME = ("INDEX", "SEQUENCE", "SEQUENCE SET", "SEQUENCE OWNED BY")


def _body(line: str) -> str | None:
    if not line or line.startswith(";"):
        return None
    parts = line.split(" ", 3)
    return parts[3] if len(parts) == 4 and parts[0].endswith(";") else None


def _starts(body: str, desc: str, schema: str, name: str) -> bool:
    prefix = f"{desc} {schema} {name}"
    return body == prefix or body.startswith(prefix + " ")


def tables_in(listing: str) -> set[tuple[str, str]]:
    """Best effort: the (schema, table) pairs of TABLE entries (ambiguous when names hold spaces, so only
    used to attribute index and sequence names)."""
    out = set()
    for line in listing.splitlines():
        body = _body(line)
        if body and body.startswith("TABLE ") and not body.startswith("TABLE DATA "):
            words = body.split(" ")
            if len(words) >= 3:
                out.add((words[1], words[2]))
    return out


def select_entries(listing: str, wanted: list[tuple[str, str]]) -> tuple[list[str], list[tuple[str, str]]]:
    """The -l lines to restore for ``wanted`` tables, and the wanted tables not found in the archive."""
    known = tables_in(listing) | set(wanted)
    chosen: list[str] = []
    found: set[tuple[str, str]] = set()
    for line in listing.splitlines():
        body = _body(line)
        if body is None:
            continue
        for schema, table in wanted:
            if _starts(body, "TABLE", schema, table) or _starts(body, "TABLE DATA", schema, table):
                chosen.append(line)
                found.add((schema, table))
                break
            if any(body.startswith(f"{d} {schema} {table} ") for d in _BY_TAG):
                chosen.append(line)
                break
            if any(body.startswith(f"{d} {schema} {table}_") for d in _BY_NAME) and _owner_of(
                body, schema, known
            ) == table:
                chosen.append(line)
                break
    return chosen, [w for w in wanted if w not in found]


def _owner_of(body: str, schema: str, known: set[tuple[str, str]]) -> str | None:
    for desc in sorted(_BY_NAME, key=len, reverse=True):
        if body.startswith(f"{desc} {schema} "):
            name = body[len(desc) + len(schema) + 2 :]
            break
    else:
        return None
    candidates = [t for s, t in known if s == schema and name.startswith(t + "_")]
    return max(candidates, key=len) if candidates else None
