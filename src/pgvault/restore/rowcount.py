"""How many rows each table has in a custom-format archive: what a restore drill expects to find.

``pg_restore --data-only --file=-`` turns the archive's TABLE DATA into a script of ``COPY ... FROM
stdin;`` blocks in COPY's text format, where every row is one line (a newline inside a value is written
as ``\\n``) and a line of ``\\.`` ends the block. So the rows of a table are the newlines of its block,
which ``bytes.count`` finds at memory speed: no per-row Python, unlike parsing the archive's own framing
(one length-prefixed chunk per row; measured at 1.9 µs of CPU per row, docs/performance.md).

Both counts name tables "schema.table", unquoted: the archive's (``archive_row_counts``, decoded from the
script's ``client_encoding``, the dump's own) and a restored database's (``row_counts``), which a drill
compares. A partitioned table is counted whole (``count(*)`` of the parent) as well as per partition:
pg_dump may load every partition's rows through the parent (hash partitions on an enum key), and then
the archive has one COPY block for the parent.
"""

from __future__ import annotations

import logging
import re

import psycopg
from psycopg import sql
from psycopg._encodings import pg2pyenc  # PostgreSQL's encoding names to Python's codecs (psycopg's own map)

from ..pgtools.runner import CancelToken, run_program
from .archive import ProgramInput

_IDENT = rb'(?:"(?:[^"]|"")*"|[^\s."]+)'
# "COPY schema.table (columns) FROM stdin;", or with two spaces for a table without columns; a quoted
# name may hold a newline, so the header may span lines.
_COPY = re.compile(rb"COPY (" + _IDENT + rb")\.(" + _IDENT + rb") (?:\(.*\) | )FROM stdin;", re.DOTALL)
_ENCODING = re.compile(rb"SET client_encoding = '([A-Za-z0-9_]+)';")
_END = b"\\.\n"  # the line that ends a COPY block
_HEADER_MAX = 1 << 20  # a COPY header is at most this long (1,600 quoted column names fit many times)


def _unquote(ident: bytes, encoding: str) -> str:
    # A name that does not decode becomes one no table has (the drill reports it) rather than an error.
    text = ident.decode(encoding, "replace")
    return text[1:-1].replace('""', '"') if text.startswith('"') else text


class CopyRowCounter:
    """Fed a pg_restore script in chunks of any size; ``counts`` is rows per table."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._table: str | None = None  # inside this table's COPY block
        self._mid_row = False  # inside a block, in the middle of a row (its newline not seen yet)
        self._carry = b""  # inside a block: the start of a line that may be the end marker
        self._line: list[bytes] = []  # outside: the start of the current line (a COPY header?)
        self._line_len = 0
        self._encoding = "utf-8"  # of the names in the script: its SET client_encoding says

    def __call__(self, chunk: bytes) -> None:
        pos = 0
        if self._carry:
            chunk, self._carry = self._carry + chunk, b""
        while pos < len(chunk):
            pos = self._in_block(chunk, pos) if self._table is not None else self._outside(chunk, pos)

    def _outside(self, data: bytes, pos: int) -> int:
        nl = data.find(b"\n", pos)
        part = data[pos:] if nl < 0 else data[pos:nl]
        if self._line_len < _HEADER_MAX:
            self._line.append(part[: _HEADER_MAX - self._line_len])
            self._line_len += len(part)
        if nl < 0:
            return len(data)
        line = b"".join(self._line)
        if line.startswith(b"COPY ") and line.count(b'"') % 2 == 1 and self._line_len < _HEADER_MAX:
            self._line.append(b"\n")  # a quoted name or column with a newline in it: the header goes on
            self._line_len += 1
            return nl + 1
        self._line, self._line_len = [], 0
        m = _COPY.fullmatch(line)
        if m:
            self._table = f"{_unquote(m.group(1), self._encoding)}.{_unquote(m.group(2), self._encoding)}"
            self.counts.setdefault(self._table, 0)
        elif e := _ENCODING.fullmatch(line):
            try:
                self._encoding = pg2pyenc(e.group(1))
            except Exception:  # an encoding Python has no codec for: names decode with replacements
                self._encoding = "ascii"
        return nl + 1

    def _in_block(self, data: bytes, pos: int) -> int:
        assert self._table is not None
        if self._mid_row:
            nl = data.find(b"\n", pos)
            if nl < 0:
                return len(data)
            self.counts[self._table] += 1
            self._mid_row = False
            pos = nl + 1
        # At the start of a line: the end marker, or rows up to the next end marker.
        if data.startswith(_END, pos):
            self._table = None
            return pos + len(_END)
        rest = data[pos:]
        if len(rest) < len(_END) and _END.startswith(rest):
            self._carry = rest  # too short to tell; decided with the next chunk
            return len(data)
        end = data.find(b"\n" + _END, pos)
        if end >= 0:
            self.counts[self._table] += data.count(b"\n", pos, end + 1)
            self._table = None
            return end + 1 + len(_END)
        last = data.rfind(b"\n", pos)
        if last >= 0:
            self.counts[self._table] += data.count(b"\n", pos, last + 1)
            pos = last + 1
        tail = data[pos:]
        if tail and _END.startswith(tail):
            self._carry = tail
        elif tail:
            self._mid_row = True  # no row starts with a backslash and a dot: COPY escapes backslashes
        return len(data)


def archive_row_counts(pg_restore: str, env: dict[str, str], archive: ProgramInput, *, log: logging.Logger,
                       cancel: CancelToken | None = None) -> dict[str, int]:
    """Rows per table in the archive (``archive.archive_input``; pg_restore reads it, no database is used)."""
    counter = CopyRowCounter()
    run_program([pg_restore, "--data-only", "--file=-"], env, log=log, cancel=cancel, stdout_sink=counter,
                **archive)
    return counter.counts


# Every table (and partitioned table) outside the system schemas, named "schema.table" (unquoted, as
# pg_dump's table of contents names it): what a restore drill counts in the scratch database.
_TABLES = """
select n.nspname || '.' || c.relname, format('%I.%I', n.nspname, c.relname)
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p')
  and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_(toast|temp_)'
order by 1
"""


def row_counts(conn: psycopg.Connection) -> tuple[dict[str, int], list[str]]:
    """Exact row counts per table in the connection's current transaction, and what could not be
    counted (each count under a savepoint, so one unreadable table does not end the transaction)."""
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
