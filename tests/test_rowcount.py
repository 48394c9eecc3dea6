"""The rows a drill expects: counted from an archive's COPY blocks, checked against count(*) in the source
on tables built to break a line counter (newlines, tabs and backslashes in values, a value that reads
like the end marker, no columns, empty, odd names, a partition, a long row), at every chunk boundary."""

from __future__ import annotations

import logging
import subprocess

import pytest
from tests.support.data import recreate_database

from pgvault.pgtools.binaries import bundled_bin_dir
from pgvault.restore.rowcount import CopyRowCounter, archive_row_counts, row_counts

log = logging.getLogger("test")
WEIRD_SCHEMA = '"we.ird ""schema"""'
WEIRD_TABLE = WEIRD_SCHEMA + '."Ta""ble.1"'


def feed(script: bytes, size: int) -> dict[str, int]:
    counter = CopyRowCounter()
    for i in range(0, len(script), size):
        counter(script[i : i + size])
    return counter.counts


def test_counter_on_a_written_script_at_every_chunk_size():
    script = (
        b"SET statement_timeout = 0;\n--\n-- Data for Name: t; Type: TABLE DATA\n--\n\n"
        b"COPY public.t (a, b) FROM stdin;\n1\tone\n2\t\\\\.\n3\t\\n\\.\\n\n\\N\t\\N\n\\.\n\n"
        b'COPY "Odd ""Schema"""."x.y" (id) FROM stdin;\n\\.\n\n'
        b"COPY public.nocols  FROM stdin;\n\n\n\n\\.\n\n"
        b"SELECT pg_catalog.setval('public.t_a_seq', 3, true);\n"
        b"COPY public.tail (v) FROM stdin;\nlast\n\\.\n"
    )
    expected = {"public.t": 4, 'Odd "Schema".x.y': 0, "public.nocols": 3, "public.tail": 1}
    for size in (*range(1, 12), 64, len(script)):
        assert feed(script, size) == expected, size


@pytest.fixture(scope="module")
def tricky(pg):
    recreate_database(pg, "rc_tricky")
    with pg.connect("rc_tricky") as conn:
        conn.execute(f"create schema {WEIRD_SCHEMA}")
        conn.execute(f"create table {WEIRD_TABLE} (id int, v text)")
        conn.execute(f'''insert into {WEIRD_TABLE}
                        select i, case i % 6 when 0 then E'line\\nbreak' when 1 then E'tab\\there'
                                             when 2 then E'\\\\.' when 3 then E'ends with backslash\\\\'
                                             when 4 then null else E'\\\\.\\n\\\\.' end
                        from generate_series(1, 3000) i''')
        conn.execute("create table public.empty (a int)")
        conn.execute("create table public.nocols ()")
        conn.execute("insert into public.nocols default values")
        conn.execute("insert into public.nocols select from generate_series(1, 9)")
        conn.execute("create table public.long_rows (id int, body text, raw bytea)")
        conn.execute("insert into public.long_rows select i, repeat(md5(i::text), 6000), "
                     "decode(repeat('5c2e0a', 20000), 'hex') from generate_series(1, 5) i")
        conn.execute("create table public.parted (k int, v text) partition by range (k)")
        conn.execute("create table public.parted_a partition of public.parted for values from (0) to (100)")
        conn.execute("create table public.parted_b partition of public.parted for values from (100) to (200)")
        conn.execute("insert into public.parted select i, 'v' || i from generate_series(0, 199) i")
        conn.execute("create table public.\"données\" (x text)")
        conn.execute("insert into public.\"données\" values ('été'), (E'\\\\.')")
        conn.execute('create table public."two\nlines" ("col\nx" text)')
        conn.execute('''insert into public."two\nlines" values ('COPY public.empty (a) FROM stdin;'), ('x')''')
        conn.execute("create type public.colour as enum ('red', 'green', 'blue')")
        conn.execute("create table public.hp (c public.colour, n int) partition by hash (c)")
        conn.execute("create table public.hp0 partition of public.hp for values with (modulus 2, remainder 0)")
        conn.execute("create table public.hp1 partition of public.hp for values with (modulus 2, remainder 1)")
        conn.execute("insert into public.hp select (array['red','green','blue'])[1 + i % 3]::public.colour, i "
                     "from generate_series(1, 30) i")
        conn.execute("begin isolation level repeatable read read only")
        truth, errors = row_counts(conn)
        conn.execute("commit")
    assert not errors
    env = {"PGHOST": pg.host, "PGPORT": str(pg.port), "PGUSER": pg.superuser, "PGPASSWORD": pg.password,
           "PGDATABASE": "rc_tricky", "PGSSLMODE": "disable"}
    archive = subprocess.run([str(bundled_bin_dir() / "pg_dump"), "--format=custom", "--compress=0"], env=env,
                             check=True, capture_output=True).stdout
    script = subprocess.run([str(bundled_bin_dir() / "pg_restore"), "--data-only", "--file=-"], input=archive,
                            check=True, capture_output=True).stdout
    yield truth, archive, script
    with pg.connect() as conn:
        conn.execute("drop database rc_tricky with (force)")


def in_archive(truth: dict[str, int], counts: dict[str, int]) -> None:
    """Every table the archive has rows for is counted as count(*) counts it; every table has a COPY block
    but a partitioned parent whose partitions were dumped one by one and partitions that were loaded
    through their parent."""
    assert {t: truth.get(t) for t in counts} == counts
    assert set(truth) - set(counts) == {"public.parted", "public.hp0", "public.hp1"}


def test_counts_match_count_star_at_every_boundary(tricky):
    truth, _, script = tricky
    assert truth['we.ird "schema".Ta"ble.1'] == 3000 and truth["public.nocols"] == 10
    assert truth["public.parted_a"] == 100 and truth["public.long_rows"] == 5
    assert truth["public.two\nlines"] == 2 and truth["public.empty"] == 0
    assert truth["public.hp"] == 30  # loaded through the parent: pg_dump writes one COPY for it
    for size in (1, 2, 3, 5, 4096, 65536):
        in_archive(truth, feed(script, size))


def test_archive_row_counts_runs_pg_restore_on_the_stream(tricky):
    truth, archive, _ = tricky
    chunks = (archive[i : i + 8192] for i in range(0, len(archive), 8192))
    counts = archive_row_counts(str(bundled_bin_dir() / "pg_restore"), {"PATH": "/usr/bin:/bin"},
                                {"stdin_source": chunks, "stdin_through": None}, log=log)
    in_archive(truth, counts)


def test_names_are_read_in_the_dumps_encoding(pg):
    """A LATIN1 database's names come out of pg_restore in LATIN1."""
    with pg.connect() as conn:
        conn.execute("drop database if exists rc_latin1")
        conn.execute("create database rc_latin1 encoding 'LATIN1' locale 'C' template template0")
    try:
        with pg.connect("rc_latin1") as conn:
            conn.execute('create table public."café" (x text)')
            conn.execute('insert into public."café" values (\'crème\'), (\'brûlée\')')
        env = {"PGHOST": pg.host, "PGPORT": str(pg.port), "PGUSER": pg.superuser, "PGPASSWORD": pg.password,
               "PGDATABASE": "rc_latin1", "PGSSLMODE": "disable"}
        archive = subprocess.run([str(bundled_bin_dir() / "pg_dump"), "--format=custom", "--compress=0"], env=env,
                                 check=True, capture_output=True).stdout
        counts = archive_row_counts(str(bundled_bin_dir() / "pg_restore"), {"PATH": "/usr/bin:/bin"},
                                    {"stdin_source": iter([archive]), "stdin_through": None}, log=log)
        assert counts == {"public.café": 2}
    finally:
        with pg.connect() as conn:
            conn.execute("drop database rc_latin1 with (force)")


def test_a_row_lost_from_the_script_is_seen(tricky):
    truth, _, script = tricky
    damaged = script.replace(b"\n150\tv150\n", b"\n", 1)  # one row of a partition gone
    counts = feed(damaged, 4096)
    assert counts["public.parted_b"] == truth["public.parted_b"] - 1
