"""Test data with the awkward parts real instances have, and the comparison a restore is judged by."""

from __future__ import annotations

import os
import subprocess
import urllib.parse
from pathlib import Path

import psycopg
import zstandard
from psycopg import sql

from pgvault.pgtools.binaries import bundled_bin_dir
from pgvault.pgtools.localserver import LocalServer

AWKWARD_NAMES = ["app db", 'Quote"d', "CamelCase", "données_été", "it's"]


def drop_database(conn: psycopg.Connection, name: str) -> None:
    """``drop database ... with (force)``, also on servers before 13 (which lack it)."""
    if conn.info.server_version >= 130000:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        return
    conn.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (name,))
    conn.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(name)))


def recreate_database(server: LocalServer, name: str) -> None:
    with server.connect() as conn:
        drop_database(conn, name)
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))


def fill(server: LocalServer, dbname: str, rows: int = 500) -> None:
    """Several schemas, many column types, a view, an index, a sequence and two large objects."""
    with server.connect(dbname) as conn:
        conn.execute("create schema sales")
        conn.execute('create schema "Odd Schema"')
        conn.execute("""
            create table public.customers (id serial primary key, name text not null, email text unique,
                                           joined timestamptz default now(), balance numeric(12,2),
                                           tags text[], profile jsonb)""")
        conn.execute("""
            create table sales.orders (id bigserial primary key, customer_id int references public.customers,
                                       total numeric(12,2), note text, raw bytea, placed date)""")
        conn.execute('create table "Odd Schema"."Mixed Case" ("Key" int primary key, "välue" text)')
        conn.execute("create view sales.big_orders as select * from sales.orders where total > 500")
        conn.execute("create index on sales.orders (placed)")
        conn.execute(f"""
            insert into public.customers (name, email, balance, tags, profile)
            select 'customer ' || i || E' \\u00e9\\t"q''', 'c' || i || '@example.com', (i * 3.17)::numeric(12,2),
                   array['t' || (i % 7), 'x'], jsonb_build_object('i', i, 'nested', jsonb_build_object('ok', i % 2 = 0))
            from generate_series(1, {rows}) i""")
        conn.execute(f"""
            insert into sales.orders (customer_id, total, note, raw, placed)
            select 1 + (i % {rows}), (i * 7.5)::numeric(12,2), case when i % 3 = 0 then null else 'n' || i end,
                   decode(md5(i::text), 'hex'), date '2024-01-01' + i
            from generate_series(1, {rows * 2}) i""")
        conn.execute("""insert into "Odd Schema"."Mixed Case" select i, 'v' || i from generate_series(1, 50) i""")
        conn.execute("select lo_from_bytea(0, convert_to(repeat('large object ', 20000), 'UTF8'))")
        conn.execute("select lo_from_bytea(0, '\\x00ff00ff'::bytea)")


def fingerprint(server: LocalServer, dbname: str) -> dict[str, tuple[int, str]]:
    """Per table: row count and an md5 over its rows in a stable order; plus the large objects."""
    out: dict[str, tuple[int, str]] = {}
    with server.connect(dbname) as conn:
        tables = conn.execute("""
            select table_schema, table_name from information_schema.tables
            where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema')
            order by 1, 2""").fetchall()
        for schema, table in tables:
            q = sql.SQL("select count(*), coalesce(md5(string_agg(t::text, '|' order by t::text)), '') "
                        "from {}.{} t").format(sql.Identifier(schema), sql.Identifier(table))
            count, digest = conn.execute(q).fetchone()  # type: ignore[misc]
            out[f"{schema}.{table}"] = (count, digest)
        for oid, digest in conn.execute(
            "select oid, md5(lo_get(oid)) from pg_largeobject_metadata order by oid"
        ).fetchall():
            out[f"lo:{oid}"] = (1, digest)
        out["sequences"] = (0, repr(conn.execute(
            "select schemaname, sequencename, last_value from pg_sequences order by 1, 2").fetchall()))
    return out


def stored_path(location: str) -> Path:
    assert location.startswith("file://"), location
    return Path(urllib.parse.unquote(urllib.parse.urlparse(location).path))


def restore_dump(location: str, target: LocalServer, dbname: str) -> None:
    """What a user does by hand: zstd -dc file | pg_restore -d dbname (with the bundled pg_restore)."""
    recreate_database(target, dbname)
    env = {**os.environ, "PGPASSWORD": target.password, "PGHOST": target.host, "PGPORT": str(target.port),
           "PGUSER": target.superuser, "PGDATABASE": dbname}
    with open(stored_path(location), "rb") as fh:
        raw = zstandard.ZstdDecompressor().stream_reader(fh).read()
    proc = subprocess.run([str(bundled_bin_dir() / "pg_restore"), "--exit-on-error", "--no-owner", "-d", dbname],
                          input=raw, env=env, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()


def connect_as(server: LocalServer, user: str, password: str, dbname: str = "postgres") -> psycopg.Connection:
    return server.connect(dbname, user=user, password=password)
