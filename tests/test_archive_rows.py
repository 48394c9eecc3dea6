"""Row counts read from pg_dump's archive as it streams, checked against count(*) on real databases."""

from __future__ import annotations

import os
import subprocess

import pytest
from tests.support.data import fill, recreate_database

from pgvault.backup.archive_rows import RowCounter
from pgvault.backup.discovery import row_counts
from pgvault.pgtools.binaries import bundled_bin_dir


@pytest.fixture(scope="module")
def archive(pg) -> bytes:
    recreate_database(pg, "rows_db")
    fill(pg, "rows_db", rows=321)
    with pg.connect("rows_db") as conn:
        conn.execute("create table public.empty (x int)")
        conn.execute('create schema "we.ird"')
        conn.execute('create table "we.ird"."t\tab" (v text)')
        conn.execute("""insert into "we.ird"."t\tab" values (E'multi\\nline\\\\.'), (E'\\\\.'), ('x')""")
        conn.execute("create table parts (k int, v text) partition by range (k)")
        conn.execute("create table parts_1 partition of parts for values from (0) to (100)")
        conn.execute("create table parts_2 partition of parts for values from (100) to (1000)")
        conn.execute("insert into parts select g, 'p' from generate_series(0, 499) g")
    env = {**os.environ, "PGPASSWORD": pg.password, "PGHOST": pg.host, "PGPORT": str(pg.port), "PGUSER": "postgres"}
    out = subprocess.run([str(bundled_bin_dir() / "pg_dump"), "-Fc", "-Z0", "-d", "rows_db"], env=env,
                         capture_output=True, check=True).stdout
    yield out
    with pg.connect() as conn:
        conn.execute("drop database rows_db with (force)")


@pytest.mark.parametrize("chunk", [1, 5, 4096, 1 << 20])
def test_counts_match_count_star_whatever_the_chunking(pg, archive, chunk):
    counter = RowCounter()
    for i in range(0, len(archive), chunk):
        counter.feed(archive[i : i + chunk])
    counts = counter.result()
    assert counts is not None, counter.failed
    with pg.connect("rows_db") as conn:
        conn.execute("begin")
        expected, errors = row_counts(conn)
    assert not errors
    assert counts == {k: v for k, v in expected.items() if k in counts}
    assert counts["sales.orders"] == 642 and counts["public.empty"] == 0
    assert counts["we.ird.t\tab"] == 3  # a value holding "\." and a newline is still one row each
    assert counts["public.parts_1"] == 100 and counts["public.parts_2"] == 400


def test_a_cut_archive_or_something_else_gives_no_counts(archive):
    cut = RowCounter()
    cut.feed(archive[: len(archive) // 2])
    assert cut.result() is None
    other = RowCounter()
    other.feed(b"-- PostgreSQL database dump\n" * 10)
    assert other.result() is None and other.failed
