"""The version matrix: PostgreSQL 10 to 18, each as a source and as a target, every restore judged by the
data. Per major: register, back up, restore renamed, in place with overwrite, onto the next older and newer
major (with the globals), table level, a drill on the source's own major, the README's by-hand restore;
and SSL with CA verification on an old and a new major. The servers come from scripts/pg-servers.sh.

Each major's tests share one backed-up source and run on one xdist worker (``xdist_group``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql
from tests.support import certs
from tests.support.data import drop_database, fill, fingerprint, recreate_database, stored_path
from tests.support.flows import restore, restore_body
from tests.support.servers import MATRIX_MAJORS, MajorServers
from tests.support.service import Api, Service, seed_body

from pgvault.pgtools.binaries import bundled_bin_dir
from pgvault.pgtools.localserver import LocalServer

# Names a shell makes awkward: a space; a double quote, '=' (a connection string's separator) and accents.
DATABASES = ["sales db", 'Quote"d=été']
ROLE = "matrix role"


def per_major(majors: list[int]) -> list[Any]:
    return [pytest.param(m, id=f"pg{m}", marks=pytest.mark.xdist_group(f"pg{m}")) for m in majors]


def register(api: Api, server: LocalServer, name: str, **kw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    with server.connect() as conn:
        version = str(conn.info.server_version // 10000)
    body = seed_body(host="127.0.0.1", port=server.port, user="postgres", password=server.password, name=name,
                     version=version, **kw)
    r = api.post("/Instance", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    job = api.wait_job(out["processinginstructioninfo"]["attributes"][1]["value"], timeout=180)
    return {**out["response"]["entity"], "warning": out["response"]["warningMessage"]}, job


class Protected:
    """A major's source server, filled and backed up once through the API."""

    def __init__(self, server: LocalServer, entity: dict[str, Any], job: dict[str, Any],
                 original: dict[str, dict[str, tuple[int, str]]]) -> None:
        self.server, self.entity, self.job, self.original = server, entity, job, original


@pytest.fixture(scope="session")
def matrix(majors: MajorServers, service: Service):
    """Per worker: each major's protected source, and each major's server registered as a restore target."""
    api = service.login()
    sources: dict[int, Protected] = {}
    targets: dict[int, dict[str, Any]] = {}

    def source(major: int) -> Protected:
        if major not in sources:
            server = majors.get(major)
            with server.connect() as conn:
                if not conn.execute("select 1 from pg_roles where rolname = %s", (ROLE,)).fetchone():
                    conn.execute(sql.SQL("create role {} login").format(sql.Identifier(ROLE)))
            for name in DATABASES:
                recreate_database(server, name)
                fill(server, name, rows=200)
            original = {name: fingerprint(server, name) for name in DATABASES}
            entity, job = register(api, server, f"matrix-{major}")
            sources[major] = Protected(server, entity, job, original)
        return sources[major]

    def target(major: int) -> dict[str, Any]:
        if major not in targets:
            entity, job = register(api, majors.get(major), f"matrix-target-{major}")
            assert job["status"] == "Completed", job
            targets[major] = entity
        return targets[major]

    yield source, target
    api.close()


def restored_name(name: str, tag: str) -> str:
    return f"{name} {tag}"


@pytest.mark.parametrize("major", per_major(MATRIX_MAJORS))
def test_backup_of_every_database_with_names_a_shell_can_use(api, matrix, major):
    src = matrix[0](major)
    job = src.job
    assert job["status"] == "Completed", job
    by_name = {d["name"]: d for d in job["databases"]}
    assert set(DATABASES) <= set(by_name), by_name
    for name in DATABASES:
        location = by_name[name]["location"]
        assert "%25" not in location, location  # not encoded twice
        path = stored_path(location)
        assert path.is_file(), path
        assert all(c.isascii() and (c.isalnum() or c in "._-") for c in path.name), path.name
    assert stored_path(by_name["sales db"]["location"]).name.endswith("-sales_db.dump.zst")
    assert stored_path(by_name['Quote"d=été']["location"]).name.endswith("-Quote_d_ete.dump.zst")
    manifest = json.loads((stored_path(by_name["sales db"]["location"]).parents[1] / "manifest.json").read_text())
    assert {d["name"] for d in manifest["databases"]} >= set(DATABASES)  # the exact names
    assert manifest["server_version"].startswith(f"{major}.")


@pytest.mark.parametrize("major", per_major(MATRIX_MAJORS))
def test_restore_renamed_then_in_place_with_overwrite(api, matrix, major):
    src = matrix[0](major)
    server = src.server
    renames = {name: restored_name(name, "renamed") for name in DATABASES}
    with server.connect() as conn:
        for new in renames.values():
            drop_database(conn, new)
    done = api.wait_job(restore(api, restore_body(src.entity, [f"/{n}" for n in DATABASES],
                                                  renameDatabases=renames)), timeout=180)
    assert done["status"] == "Completed", (done["message"], done)
    for name, new in renames.items():
        assert fingerprint(server, new) == src.original[name], new

    # damage one database, then ask for it to be replaced: it is, and nothing is left beside it
    name = DATABASES[0]
    with server.connect(name) as conn:
        conn.execute("delete from sales.orders where id % 3 = 0")
        conn.execute('drop table "Odd Schema"."Mixed Case"')
    assert fingerprint(server, name) != src.original[name]
    done = api.wait_job(restore(api, restore_body(src.entity, [f"/{name}"], overwrite=True)), timeout=180)
    assert done["status"] == "Completed", (done["message"], done)
    assert fingerprint(server, name) == src.original[name]
    with server.connect() as conn:
        assert not conn.execute("select datname from pg_database where datname like 'pgvault_restore_%'").fetchall()
        for new in renames.values():
            drop_database(conn, new)


def neighbours(major: int) -> list[int]:
    i = MATRIX_MAJORS.index(major)
    return [m for m in (MATRIX_MAJORS[i - 1] if i else None, MATRIX_MAJORS[i + 1] if i + 1 < len(MATRIX_MAJORS)
                        else None) if m is not None]


@pytest.mark.parametrize("major", per_major(MATRIX_MAJORS))
def test_restore_onto_an_older_and_a_newer_major_with_globals(api, matrix, majors, major):
    src = matrix[0](major)
    name = DATABASES[1]
    for other in neighbours(major):
        dest_entity = matrix[1](other)
        dest = majors.get(other)
        new = restored_name(name, f"from {major}")
        with dest.connect() as conn:
            drop_database(conn, new)
            conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(ROLE)))
        body = restore_body(src.entity, [f"/{name}"], renameDatabases={name: new}, restoreGlobals=True,
                            dest={"clientName": "default", "instanceName": dest_entity["instanceName"]})
        done = api.wait_job(restore(api, body), timeout=180)
        assert done["status"] == "Completed", (major, other, done["message"], done["databases"])
        assert fingerprint(dest, new) == src.original[name], (major, other)
        with dest.connect() as conn:
            assert conn.execute("select 1 from pg_roles where rolname = %s", (ROLE,)).fetchone(), (major, other)
            drop_database(conn, new)


@pytest.mark.parametrize("major", per_major(MATRIX_MAJORS))
def test_table_level_restore(api, matrix, major):
    src = matrix[0](major)
    name = DATABASES[0]
    with src.server.connect(name) as conn:
        conn.execute('delete from "Odd Schema"."Mixed Case" where "Key" > 10')
    body = restore_body(src.entity, [f"/{name}/Odd Schema/Mixed Case"], overwrite=True, table_level=True)
    done = api.wait_job(restore(api, body), timeout=180)
    assert done["status"] == "Completed", (done["message"], done)
    assert fingerprint(src.server, name) == src.original[name]


@pytest.mark.parametrize("major", per_major(MATRIX_MAJORS))
def test_drill_runs_on_the_source_major(api, matrix, major):
    src = matrix[0](major)
    points = api.get("/RestorePoints", params={"instanceId": src.entity["instanceId"]}).json()["restorePoints"]
    point = next(p for p in points if str(p["jobId"]) == str(src.job["jobId"]))
    r = api.post(f"/RestorePoints/{point['restorePointId']}/action/verify", json={"drill": True})
    assert r.status_code == 200, r.text
    done = api.wait_job(r.json()["jobIds"][0], timeout=240)
    assert done["status"] == "Completed", (done["message"], done)
    drill = api.get(f"/RestorePoints/{point['restorePointId']}").json()["drill"]
    assert drill["status"] == "Passed", drill
    assert f"on PostgreSQL {major}." in drill["message"], drill


def by_hand(archive: Path, server: LocalServer, dbname: str, *, filtered: bool) -> subprocess.CompletedProcess:
    """The README's by-hand restore, as a shell runs it: the plain one, or the one for targets before 17
    (with --no-table-access-method before 12)."""
    recreate_database(server, dbname)
    pgbin = bundled_bin_dir()
    with server.connect() as conn:
        before_12 = conn.info.server_version < 120000
    env = {**os.environ, "PGPASSWORD": server.password, "PGHOST": server.host, "PGPORT": str(server.port),
           "PGUSER": server.superuser, "PGBIN": str(pgbin), "ARCHIVE": str(archive), "DB": dbname}
    if filtered:
        no_am = " --no-table-access-method" if before_12 else ""
        command = (f'zstd -dc "$ARCHIVE" | "$PGBIN/pg_restore" -f - --no-owner{no_am} '
                   "| sed '/^SET transaction_timeout = 0;$/d' "
                   '| "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$DB"')
    else:
        command = 'zstd -dc "$ARCHIVE" | "$PGBIN/pg_restore" -d "$DB" --no-owner'
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("major", per_major(MATRIX_MAJORS))
def test_readme_restore_by_hand(matrix, majors, major):
    src = matrix[0](major)
    name = DATABASES[0]
    archive = stored_path(next(d for d in src.job["databases"] if d["name"] == name)["location"])
    plain = by_hand(archive, src.server, "by hand", filtered=False)
    if major >= 17:
        assert plain.returncode == 0, plain.stderr
        assert fingerprint(src.server, "by hand") == src.original[name]
    else:  # what the README says to expect, and why
        assert plain.returncode == 1 and 'unrecognized configuration parameter "transaction_timeout"' in plain.stderr
        assert "errors ignored on restore: 1" in plain.stderr, plain.stderr
    filtered = by_hand(archive, src.server, "by hand", filtered=True)
    assert filtered.returncode == 0, filtered.stderr
    assert fingerprint(src.server, "by hand") == src.original[name]
    with src.server.connect() as conn:
        drop_database(conn, "by hand")
    # onto the next older major too (12 onto 11: no table access methods there)
    for other in [m for m in neighbours(major) if m < major]:
        dest = majors.get(other)
        onto = by_hand(archive, dest, "by hand", filtered=True)
        assert onto.returncode == 0, (other, onto.stderr)
        assert fingerprint(dest, "by hand") == src.original[name], other
        with dest.connect() as conn:
            drop_database(conn, "by hand")


@pytest.mark.parametrize("major", per_major([10, 18]))
def test_ssl_with_ca_verification(api, majors, test_ca: certs.TestCA, other_ca: certs.TestCA, major):
    server = majors.get(major, flavour="ssl", ssl_cert=test_ca.server_cert, ssl_key=test_ca.server_key,
                        hba=["hostssl all all 127.0.0.1/32 scram-sha-256"])
    recreate_database(server, "ssl db")
    fill(server, "ssl db", rows=100)
    original = fingerprint(server, "ssl db")

    wrong = seed_body(host="127.0.0.1", port=server.port, user="postgres", password=server.password,
                      name=f"ssl-wrong-ca-{major}", version=str(major), ssl=True, ssl_ca=str(other_ca.ca_cert))
    refused = api.post("/Instance", json=wrong)
    assert refused.status_code == 400 and "certificate" in refused.text.lower(), refused.text

    entity, job = register(api, server, f"ssl-{major}", ssl=True, ssl_ca=str(test_ca.ca_cert))
    assert job["status"] == "Completed", job
    done = api.wait_job(restore(api, restore_body(entity, ["/ssl db"], renameDatabases={"ssl db": "ssl copy"})),
                        timeout=180)
    assert done["status"] == "Completed", (done["message"], done)
    assert fingerprint(server, "ssl copy") == original
    with server.connect() as conn:
        drop_database(conn, "ssl copy")


@pytest.mark.parametrize("major", per_major([16]))
def test_drill_without_the_source_major_says_so_instead_of_passing(majors, tmp_path, major):
    """No PostgreSQL 16 programs anywhere pgvault looks: the drill fails with the reason, it does not fall
    back to the bundled 18."""
    if Path(f"/usr/lib/postgresql/{major}/bin/postgres").exists():
        pytest.skip(f"Debian's PostgreSQL {major} is installed, so the major cannot be made missing")
    server = majors.get(major)
    empty = tmp_path / "no-servers"
    empty.mkdir()
    svc = Service(tmp_path / "home", PGVAULT_PG_SERVERS=str(empty)).start()
    try:
        api = svc.login()
        entity, job = register(api, server, "drill-missing-major")
        assert job["status"] == "Completed", job
        point = api.get("/RestorePoints", params={"instanceId": entity["instanceId"]}).json()["restorePoints"][0]
        r = api.post(f"/RestorePoints/{point['restorePointId']}/action/verify", json={"drill": True})
        done = api.wait_job(r.json()["jobIds"][0], timeout=120)
        assert done["status"] == "Failed", done
        assert f"no PostgreSQL {major} server programs" in done["message"], done["message"]
        assert "PGVAULT_PG_SERVERS" in done["message"]
        drill = api.get(f"/RestorePoints/{point['restorePointId']}").json()["drill"]
        assert drill["status"] is None  # nothing recorded as passed (or failed) on the backup
        api.close()
    finally:
        svc.stop()


@pytest.mark.parametrize("major", per_major([14]))
def test_the_same_server_registered_twice_is_accepted_with_a_warning(api, majors, major):
    server = majors.get(major, flavour="twice")
    first, _ = register(api, server, f"twice-a-{major}")
    assert first["warning"] == ""
    second, _ = register(api, server, f"twice-b-{major}")
    assert f"127.0.0.1:{server.port} is already registered as 'twice-a-{major}'" in second["warning"]
    for entity in (first, second):
        assert api.delete(f"/Instance/{entity['instanceId']}").status_code == 200
    third, _ = register(api, server, f"twice-c-{major}")
    assert third["warning"] == ""  # deleted registrations do not count
    api.delete(f"/Instance/{third['instanceId']}")
