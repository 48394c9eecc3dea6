"""The benchmark's dataset, built on a throwaway server started from the bundled binaries.

Default (``--scale-factor 1``): one pgbench database at scale 50, ten at scale 2 and one database of wide
text/JSON rows of about 200 MB: the mix the field notes measured (many small databases, one large one,
one that compresses like real documents, 4-5x, rather than pgbench's 80x). ``--scale-factor 5`` makes
every database 5x larger (not more numerous). ``--tiny`` is a few MB for the test suite.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from pgvault.pgtools.binaries import bundled_bin_dir
from pgvault.pgtools.localserver import LocalServer

WORDS = [
    "backup", "restore", "tenant", "invoice", "shipment", "customer", "region", "latency", "replica",
    "snapshot", "ledger", "payment", "account", "journal", "warehouse", "catalogue", "discount", "refund",
    "session", "gateway", "cluster", "partition", "failover", "checkpoint", "vacuum", "index", "storage",
    "network", "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima",
]


@dataclass(frozen=True)
class Spec:
    big_scale: int
    small_count: int
    small_scale: int
    wide_mb: int

    @classmethod
    def make(cls, factor: int, tiny: bool) -> Spec:
        if tiny:
            return cls(big_scale=factor, small_count=2, small_scale=factor, wide_mb=4 * factor)
        return cls(big_scale=50 * factor, small_count=10, small_scale=2 * factor, wide_mb=200 * factor)

    def databases(self) -> list[str]:
        return ["bench_big", *[f"bench_small_{i:02d}" for i in range(1, self.small_count + 1)], "bench_wide"]


def pg_env(server: LocalServer, dbname: str = "postgres") -> dict[str, str]:
    """The bench's own client environment for its own throwaway servers (PGPASSWORD is fine here). An SSL
    server gets ``sslmode=require``, which needs SSL-capable client programs (not the bundled ones)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8",
        "PGHOST": server.host, "PGPORT": str(server.port), "PGUSER": server.superuser,
        "PGPASSWORD": server.password, "PGDATABASE": dbname,
        "PGSSLMODE": "require" if server.ssl_cert else "disable",
    }


def recreate(server: LocalServer, name: str) -> None:
    with server.connect() as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))


def _pgbench(server: LocalServer, dbname: str, scale: int, bin_dir: Path | None) -> None:
    # d: drop, t: tables, G: rows generated inside the server, v: vacuum, p: primary keys.
    subprocess.run([str((bin_dir or bundled_bin_dir()) / "pgbench"), "-i", "-q", "-I", "dtGvp", "-s", str(scale)],
                   env=pg_env(server, dbname), check=True, capture_output=True)


_WIDE_TABLE = """
create table documents (
    id bigint primary key,
    title text not null,
    body text not null,
    attrs jsonb not null,
    created_at timestamptz not null
)"""

# Correlated subqueries (they mention i) so that every row gets its own random words; ``0 * g`` keeps each
# aggregate at the subquery's level (an aggregate of outer columns only would belong to the outer query).
_WIDE_BATCH = """
insert into documents
select i,
       'Document ' || i || ' about ' || w[1 + i %% 40],
       (select string_agg(w[1 + floor(random() * 40 + 0 * g)::int], ' ') from generate_series(1, 110 + i %% 30) g),
       jsonb_build_object(
           'owner', 'user' || (i %% 997), 'score', floor(random() * 100000)::int, 'region', w[1 + i %% 7],
           'tags', (select jsonb_agg(w[1 + floor(random() * 40 + 0 * g)::int]) from generate_series(1, 4 + i %% 5) g),
           'note', (select string_agg(w[1 + floor(random() * 40 + 0 * g)::int], ' ')
                    from generate_series(1, 25 + 0 * i) g)),
       timestamptz '2024-01-01 00:00:00+00' + i * interval '37 seconds'
from generate_series(%(start)s::bigint, %(stop)s::bigint) i, (select %(words)s::text[] as w) words
"""


def _wide(server: LocalServer, dbname: str, target_mb: int) -> None:
    target = target_mb * 1024 * 1024
    batch = 5_000 if target_mb < 50 else 20_000
    with server.connect(dbname) as conn:
        conn.execute(_WIDE_TABLE)
        start = 1
        while True:
            conn.execute(_WIDE_BATCH, {"start": start, "stop": start + batch - 1, "words": WORDS})
            start += batch
            row = conn.execute("select pg_database_size(current_database())").fetchone()
            assert row is not None
            if row[0] >= target:
                break
        conn.execute("vacuum analyze documents")


def build(server: LocalServer, spec: Spec, log: callable = print,  # type: ignore[valid-type]
          client_bin: Path | None = None) -> dict[str, int]:
    """(Re)creates every database of the spec; returns their sizes in bytes. ``client_bin``: where an
    SSL-capable pgbench is, for an SSL-only server."""
    names = spec.databases()
    with server.connect() as conn:
        for row in conn.execute("select datname from pg_database where datname like 'bench\\_%'").fetchall():
            if row[0] not in names:
                conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(row[0])))
    for name in names:
        recreate(server, name)
        if name == "bench_big":
            _pgbench(server, name, spec.big_scale, client_bin)
        elif name == "bench_wide":
            _wide(server, name, spec.wide_mb)
        else:
            _pgbench(server, name, spec.small_scale, client_bin)
        log(f"  built {name}")
    with server.connect() as conn:
        conn.execute("checkpoint")
        rows = conn.execute(
            "select datname, pg_database_size(oid) from pg_database where datallowconn and not datistemplate"
        ).fetchall()
    return {r[0]: int(r[1]) for r in rows}
