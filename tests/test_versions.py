"""Version numbers (9.x has two-part majors), which servers the bundled tools accept, what pg_restore 18
reports on older servers, the SQL-script filter, and the file names a shell user sees. No binaries of 9.x
are available here: the 9.2-9.6 decisions are proven by these unit tests only (docs/architecture.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgvault.backup.engine import object_name
from pgvault.errors import ToolError
from pgvault.pgtools.binaries import Toolset, check_tools_serve
from pgvault.pgtools.connection import ServerInfo
from pgvault.pgtools.versions import PgVersion
from pgvault.restore.pgrestore import RestoreErrors, target_options
from pgvault.restore.script import ScriptFilter
from pgvault.services.instances import server_major

TOOLS_18 = Toolset(bin_dir=Path("/pg18/bin"), major=18, version="18.6")


@pytest.mark.parametrize(("num", "major", "label"), [
    (90224, "9.2", "9.2.24"), (90624, "9.6", "9.6.24"), (100023, "10", "10.23"), (110022, "11", "11.22"),
    (150018, "15", "15.18"), (180004, "18", "18.4"), (90100, "9.1", "9.1.0"),
])
def test_majors_before_10_have_two_parts(num, major, label):
    assert PgVersion(num).major_label == major
    assert PgVersion(num).label == label
    assert server_major(ServerInfo(version=label, version_num=num)) == major


def test_versions_order_by_number_and_major():
    assert PgVersion(90624) < PgVersion(100000) < PgVersion(180004)
    assert PgVersion(90624).major < PgVersion(100023).major
    assert PgVersion.of_major("9.6") == PgVersion(90600)
    assert PgVersion.of_major(15) == PgVersion(150000)


@pytest.mark.parametrize("num", [90224, 90325, 90424, 90524, 90624, 100023, 140023, 170010, 180004])
def test_tools_18_accept_every_server_from_9_2(num):
    assert check_tools_serve(TOOLS_18, num) is TOOLS_18


@pytest.mark.parametrize("num", [80423, 90024, 90124])
def test_servers_before_9_2_are_refused_with_what_to_do(num):
    with pytest.raises(ToolError) as err:
        check_tools_serve(TOOLS_18, num)
    assert f"PostgreSQL {PgVersion(num).label}, older than 9.2" in err.value.message
    assert "PGVAULT_PG_BIN" in err.value.message


def test_a_newer_server_than_the_tools_is_refused_by_its_real_major():
    with pytest.raises(ToolError) as err:
        check_tools_serve(TOOLS_18, 190002)
    assert "PostgreSQL 19.2" in err.value.message and "install PostgreSQL 19 client tools" in err.value.message
    older_tools = Toolset(bin_dir=Path("/pg14/bin"), major=14, version="14.9")
    assert check_tools_serve(older_tools, 90124) is older_tools  # pg_dump 14 still dumps 9.1 and older
    with pytest.raises(ToolError):
        check_tools_serve(older_tools, 150000)


PREAMBLE_ERROR = [
    'pg_restore: error: could not execute query: ERROR:  unrecognized configuration parameter "transaction_timeout"',
    "Command was: SET transaction_timeout = 0;",
]
REAL_ERROR = [
    "pg_restore: from TOC entry 2; 3079 16385 EXTENSION hstore (no owner)",
    'pg_restore: error: could not execute query: ERROR:  permission denied to create extension "hstore"',
    "Command was: CREATE EXTENSION IF NOT EXISTS hstore WITH SCHEMA public;",
]


def feed(target: int, lines: list[str]) -> RestoreErrors:
    errors = RestoreErrors(PgVersion(target))
    for line in lines:
        errors.feed(line)
    return errors


def test_settings_an_older_target_lacks_are_not_failed_objects():
    errors = feed(150018, [*PREAMBLE_ERROR, *REAL_ERROR, "pg_restore: warning: errors ignored on restore: 2"])
    assert errors.ignored == 2
    assert errors.failed == 1 and errors.objects[0]["object"] == "EXTENSION hstore (no owner)"
    assert "transaction_timeout" in errors.summary() and "15.18" in errors.summary()
    assert feed(100023, PREAMBLE_ERROR).failed == 0


def test_the_same_errors_on_a_server_that_has_the_setting_still_count():
    assert feed(170010, PREAMBLE_ERROR).failed == 1  # 17 has transaction_timeout: something else is wrong
    wrong_value = ['pg_restore: error: could not execute query: ERROR:  unrecognized configuration parameter '
                   '"transaction_timeout"', "Command was: SET transaction_timeout = 'x'; DROP TABLE t;"]
    assert feed(150018, wrong_value).failed == 1


def test_an_object_whose_failure_quotes_those_lines_still_failed():
    """A function whose definition carries the two lines of the harmless error is not made harmless by
    them: only the exact shape, outside any TOC entry, with nothing in between, counts."""
    quoted = [
        "pg_restore: from TOC entry 214; 1255 16390 FUNCTION public.evil() postgres",
        "pg_restore: error: could not execute query: ERROR:  syntax error at or near \"x\"",
        'LINE 1: unrecognized configuration parameter "transaction_timeout"',
        "Command was: SET transaction_timeout = 0;",
        "pg_restore: warning: errors ignored on restore: 1",
    ]
    assert feed(150018, quoted).failed == 1
    in_between = [PREAMBLE_ERROR[0], "HINT:  something", PREAMBLE_ERROR[1]]
    assert feed(150018, in_between).failed == 1


def test_pg_restores_own_count_wins_over_what_was_parsed():
    assert feed(150018, [*PREAMBLE_ERROR, "pg_restore: warning: errors ignored on restore: 3"]).failed == 2


def test_no_table_access_method_before_12():
    assert target_options(PgVersion(110022)) == ["--no-table-access-method"]
    assert target_options(PgVersion(120000)) == []


SCRIPT = (b"--\n-- PostgreSQL database dump\n--\n\\restrict abc\nBEGIN;\n\nSET statement_timeout = 0;\n"
          b"SET transaction_timeout = 0;\nSET lock_timeout = 0;\n"
          b"SELECT pg_catalog.set_config('search_path', '', false);\n\n"
          b"CREATE FUNCTION f() RETURNS void AS $$\nSET transaction_timeout = 0;\nCOMMIT;\n$$ LANGUAGE sql;\n"
          b"CREATE TABLE t (x text);\n"
          b"COPY public.t (x) FROM stdin;\nSET transaction_timeout = 0;\nrow 2\n\\.\n"
          b"COPY public.e (x) FROM stdin;\n\\.\n"
          b"SET transaction_timeout = 0;\nSELECT 1;\nCOMMIT;\n\n--\n-- dump complete\n--\n\n\\unrestrict abc\n")


def run_filter(target: int, script: bytes, cuts: list[int]) -> tuple[bytes, bytes]:
    """(what the filter let out before finish, all of it)."""
    filt = ScriptFilter(PgVersion(target))
    parts, last = [], 0
    for cut in [*cuts, len(script)]:
        parts.append(filt.feed(script[last:cut]))
        last = cut
    early = b"".join(parts)
    return early, early + filt.finish()


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64, 1 << 20])
def test_script_filter_drops_only_preamble_settings(chunk):
    cuts = list(range(chunk, len(SCRIPT), chunk))
    early, out = run_filter(110022, SCRIPT, cuts)
    assert out == SCRIPT.replace(b"SET transaction_timeout = 0;\nSET lock_timeout", b"SET lock_timeout", 1)
    assert out.count(b"SET transaction_timeout = 0;") == 3  # a function body, COPY data, after the preamble
    assert not early.endswith(b"\\unrestrict abc\n") and b"SELECT 1;\n" in early
    assert early.count(b"COMMIT;") == 1  # the function body's; the closing COMMIT waits for finish()


def test_script_filter_fuzzed_against_its_reference():
    import random

    rng = random.Random(11)
    want = run_filter(110022, SCRIPT, [])[1]
    for _ in range(3000):
        cuts = sorted(rng.sample(range(1, len(SCRIPT)), rng.randint(1, 12)))
        early, out = run_filter(110022, SCRIPT, cuts)
        assert out == want, cuts
        assert b"dump complete" not in early, cuts


def test_script_filter_keeps_everything_for_a_target_that_knows_the_settings():
    _, out = run_filter(170010, SCRIPT, [10, 100])
    assert out == SCRIPT


@pytest.mark.parametrize(("name", "expected"), [
    ("sales db", "002-sales_db"), ('Quote"d=été', "002-Quote_d_ete"), ("données_été", "002-donnees_ete"),
    ("it's", "002-it_s"), ("日本語", "002-db"), ("..", "002-db"), ("a" * 100, "002-" + "a" * 60),
    ("-rf", "002-rf"),
])
def test_file_names_a_shell_user_can_read_and_paste(name, expected):
    assert object_name(2, name) == expected
