"""The rows a drill expects: counted from an archive's COPY blocks, checked against count(*) in the source
on tables built to break a line counter (newlines, tabs and backslashes in values, a value that reads
like the end marker, no columns, empty, odd names, a partition, a long row), at every chunk boundary."""

from __future__ import annotations

import logging
import subprocess

import pytest
from tests.support.data import recreate_database

from pgvault.pgtools.binaries import bundled_bin_dir
from pgvault.pgtools.runner import run_program
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


def test_counts_match_count_star_at_every_boundary(tricky):
    truth, _, script = tricky
    assert truth['we.ird "schema".Ta"ble.1'] == 3000 and truth["public.nocols"] == 10
    assert truth["public.parted_a"] == 100 and truth["public.long_rows"] == 5
    for size in (1, 2, 3, 5, 4096, 65536):
        assert feed(script, size) == truth, size


def test_archive_row_counts_runs_pg_restore_on_the_stream(tricky):
    truth, archive, _ = tricky
    chunks = (archive[i : i + 8192] for i in range(0, len(archive), 8192))
    counts = archive_row_counts(str(bundled_bin_dir() / "pg_restore"), {"PATH": "/usr/bin:/bin"}, chunks, log=log)
    assert counts == truth


def test_a_row_lost_from_the_script_is_seen(tricky):
    truth, _, script = tricky
    damaged = script.replace(b"\n150\tv150\n", b"\n", 1)  # one row of a partition gone
    counts = feed(damaged, 4096)
    assert counts["public.parted_b"] == truth["public.parted_b"] - 1


def test_output_filter_failure_and_success(tmp_path):
    data = tmp_path / "in"
    data.write_bytes(b"abc\n" * 1000)
    got: list[bytes] = []
    run_program(["cat", str(data)], {"PATH": "/usr/bin:/bin"}, log=log, stdout_sink=got.append,
                stdout_through=(["tr", "a-z", "A-Z"], {"PATH": "/usr/bin:/bin"}))
    assert b"".join(got) == b"ABC\n" * 1000
    from pgvault.errors import ToolError

    with pytest.raises(ToolError, match=r"sh \(the output filter of cat\) exited with code 3: broken"):
        run_program(["cat", str(data)], {"PATH": "/usr/bin:/bin"}, log=log, stdout_sink=got.append,
                    stdout_through=(["sh", "-c", "echo broken >&2; exit 3"], {"PATH": "/usr/bin:/bin"}))
