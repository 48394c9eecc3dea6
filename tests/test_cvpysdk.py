"""Commvault's own Python SDK (cvpysdk 11.44 from PyPI, unmodified) against a running pgvault and real
PostgreSQL servers: log in, walk client -> agent -> instance -> backupset -> subclient, add instances both
ways, back up, follow the job, list jobs, read plans; and the refusals, which must reach the caller as the
SDK's own SDKException carrying pgvault's message.

cvpysdk sleeps 30 s per poll in ``Job.wait_for_completion``: the tests poll ``job.is_finished`` (which
refreshes the job) themselves and call ``wait_for_completion`` once the job has ended, when it returns
without sleeping.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidTag
from cvpysdk.commcell import Commcell
from cvpysdk.exception import SDKException
from cvpysdk.job import Job
from psycopg import sql
from tests.support.data import fill, fingerprint, recreate_database, restore_dump
from tests.support.service import BASE, Service, catalog_counts, seed_body

import pgvault
from pgvault.crypto import Sealer, decode_master_key
from pgvault.pgtools.localserver import LocalServer

LOGIN = "sdk_login"
APPDB = "sdk_appdb"


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A pgvault of this module's own: the SDK lists every client and instance, and matches names by
    substring, so other modules' instances stay out of its way."""
    service = Service(tmp_path_factory.mktemp("sdk") / "home").start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def login(pg: LocalServer) -> Iterator[tuple[str, str]]:
    """A login of the protected server that may read every database, and a database with real data."""
    password = "Sdk-pw:" + secrets.token_hex(8)
    with pg.connect() as conn:
        conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(LOGIN)))
        conn.execute(sql.SQL("create role {} login superuser password {}").format(
            sql.Identifier(LOGIN), sql.Literal(password)))
    recreate_database(pg, APPDB)
    fill(pg, APPDB, rows=50)
    yield LOGIN, password
    with pg.connect() as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(APPDB)))


def connect(svc: Service, **kw: Any) -> Commcell:
    return Commcell("127.0.0.1", web_service_url=f"{svc.url}{BASE}", **kw)


@pytest.fixture(scope="module")
def cc(svc: Service) -> Iterator[Commcell]:
    commcell = connect(svc, commcell_username="admin", commcell_password=svc.admin_password)
    yield commcell
    commcell.logout()


@pytest.fixture(scope="module")
def sdk_inst(cc: Commcell, pg: LocalServer, login: tuple[str, str]) -> str:
    """An instance added with the SDK's own add_postgresql_instance, through a credential the SDK creates
    (the tests below may run on different xdist workers, so each module instance makes its own)."""
    user, password = login
    assert not cc.credentials.has_credential("sdk-cred")
    sdk_add(cc, "sdk-inst", pg, credential_name="sdk-cred", user_name=user, password=password,
            storage_policy="default", maintenance_db="postgres")
    assert wait(_backupset(cc, "sdk-inst").subclients.get("default").find_latest_job())
    return "sdk-inst"


def wait(job: Job, timeout: float = 120) -> bool:
    """Poll until the job ends, then let the SDK's own wait_for_completion give its verdict (it returns at
    once for a finished job)."""
    deadline = time.monotonic() + timeout
    while not job.is_finished:
        assert time.monotonic() < deadline, f"job {job.job_id} still {job.status}"
        time.sleep(0.2)
    started = time.monotonic()
    verdict = job.wait_for_completion()
    assert time.monotonic() - started < 5, "wait_for_completion slept: the job was not finished"
    return verdict


def raw(svc: Service, token: str) -> httpx.Client:
    return httpx.Client(base_url=svc.url + BASE, headers={"Authtoken": token}, timeout=30)


def sdk_add(cc: Commcell, name: str, pg: LocalServer, **kw: Any) -> None:
    agent = cc.clients.get("default").agents.get("postgresql")
    options = {"port": f"127.0.0.1:{pg.port}", "version": "18", **kw}
    assert agent.instances.add_postgresql_instance(name, **options) is None  # the SDK forgets to return it


def _backupset(cc: Commcell, instance: str) -> Any:
    return cc.clients.get("default").agents.get("postgresql").instances.get(instance).backupsets.get(
        "DumpBasedBackupSet")


# --- login, tokens, the CommServ ------------------------------------------------------------------------


def test_login_commserv_authtoken_and_logout(svc: Service, cc: Commcell):
    assert cc.commcell_username == "admin"
    assert cc.version == pgvault.__version__  # "0.1.0": the SDK rebuilds it from csVersionInfo
    assert cc.commserv_version == int(pgvault.__version__.split(".")[1])
    assert cc.commserv_name and cc.commserv_hostname
    assert cc.commserv_timezone.startswith("(UTC")

    other = connect(svc, authtoken=cc.auth_token)  # skips /Login: POST /WhoAmI with the token
    assert other.commcell_username == "admin"
    assert other.clients.has_client("default")

    session = connect(svc, commcell_username="admin", commcell_password=svc.admin_password)
    token = session.auth_token
    with raw(svc, token) as http:
        assert http.get("/Client").status_code == 200
        session.logout()
        assert http.get("/Client").status_code == 401


def test_wrong_password_and_dead_token_are_sdk_exceptions_with_pgvault_message(svc: Service):
    with pytest.raises(SDKException) as denied:
        connect(svc, commcell_username="admin", commcell_password="not-the-password")
    assert "invalid user name or password" in str(denied.value)

    with pytest.raises(SDKException) as dead:
        connect(svc, authtoken="QSDK 00" * 8)
    assert "cannot be renewed" in str(dead.value) and "log in again" in str(dead.value)


def test_an_expired_token_is_renewed_on_401(svc: Service):
    session = connect(svc, commcell_username="admin", commcell_password=svc.admin_password)
    old = session.auth_token
    digest = hashlib.sha256(old.encode()).hexdigest()
    db = sqlite3.connect(svc.home / "catalog.db", timeout=30)
    try:
        db.execute("update auth_tokens set expires_at = ? where token_hash = ?",
                   (time.strftime("%Y-%m-%d %H:%M:%S.000000", time.gmtime(time.time() - 60)), digest))
        db.commit()
    finally:
        db.close()
    with raw(svc, old) as http:
        assert http.get("/Client").status_code == 401

    session.clients.refresh()  # 401 -> POST RenewLoginToken -> the same call again, with the new token
    assert session.clients.has_client("default")
    assert session.auth_token != old and session.auth_token.startswith("QSDK ")
    with raw(svc, old) as http:  # the renewed token is spent: it cannot be renewed twice
        r = http.post("/RenewLoginToken", json={"sessionId": old, "deviceId": "x"})
        assert r.status_code == 400 and "cannot be renewed" in r.json()["errorMessage"]
    session.logout()


# --- clients, agents, plans ---------------------------------------------------------------------------


def test_clients_agents_and_plans(cc: Commcell):
    client = cc.clients.get("default")
    assert client.client_name == "default"
    agents = client.agents
    assert agents.has_agent("postgresql") and list(agents.all_agents) == ["postgresql"]
    agent = agents.get("postgresql")
    assert agent.agent_id == "125"

    assert cc.plans.has_plan("default")
    plan = cc.plans.get("default")
    assert plan.plan_name == "default" and plan.plan_id == cc.plans.all_plans["default"]
    assert "default" in repr(plan)
    assert plan.get_plan_properties()["name"] == "default"  # GET /V4/ServerPlan/{id} (server plans)

    with pytest.raises(SDKException, match="No client exists with the given name"):
        cc.clients.get("no-such-account")
    with pytest.raises(SDKException):
        agents.get("mysql")
    with pytest.raises(SDKException):
        cc.plans.get("no-such-plan")


# --- adding instances ---------------------------------------------------------------------------------


def test_sdk_add_postgresql_instance_maps_credential_and_storage_policy(svc: Service, cc: Commcell, pg, login,
                                                                       sdk_inst):
    user, password = login
    agent = cc.clients.get("default").agents.get("postgresql")
    inst = agent.instances.get(sdk_inst)
    assert inst.postgres_server_port_number == f"127.0.0.1:{pg.port}"
    assert inst.postgres_server_user_name == user  # from the credential
    assert inst.maintenance_database == "postgres"
    assert inst.postgres_version == "18"
    assert inst.postgres_ssl_status is False and inst.postgres_ssl_ca_file == ""
    assert int(inst.instance_id) > 1  # cvpysdk never reads the properties of instance 1

    # The credential is a real record: listed without its password, sealed at rest under its own context.
    cred = cc.credentials.get("sdk-cred")
    assert cred.credential_user_name == user
    with raw(svc, cc.auth_token) as http:
        listed = http.get("/CommCell/Credentials", params={"propertyLevel": 10})
        one = http.get(f"/V5/credential/{cred.credential_id}")
    for r in (listed, one):
        assert r.status_code == 200 and password not in r.text
    assert one.json()["userAccount"] == user and one.json()["security"]["associations"][0]["user"]["name"] == "admin"
    db = sqlite3.connect(f"file:{svc.home / 'catalog.db'}?mode=ro", uri=True, timeout=30)
    try:
        sealed = db.execute("select password_sealed from credentials where name = 'sdk-cred'").fetchone()[0]
    finally:
        db.close()
    assert password.encode() not in sealed
    sealer = Sealer(decode_master_key((svc.home / "master.key").read_text()))
    assert sealer.open(sealed, "credential.password").decode() == password
    with pytest.raises(InvalidTag):  # a sealed credential cannot pass for an instance password
        sealer.open(sealed, "instance.password")
    assert password not in svc.log_text()

    # Its first backup ran, with the credential's login.
    job = _backupset(cc, sdk_inst).subclients.get("default").find_latest_job()
    assert wait(job) and job.status == "Completed"


def test_seed_body_sent_through_the_sdk(cc: Commcell, pg, login):
    user, password = login
    agent = cc.clients.get("default").agents.get("postgresql")
    body = seed_body(host="127.0.0.1", port=pg.port, user=user, password=password, name="seed-via-sdk")
    inst = agent.instances._process_add_response(body)  # the SDK's own add-and-parse, with the seed's body
    assert inst.instance_name == "seed-via-sdk"
    assert inst.postgres_server_user_name == user

    body = seed_body(host="127.0.0.1", port=pg.port, user=user, password=password, name="seed-via-request")
    r = cc.request("POST", "Instance", body)
    assert r.status_code == 200 and r.json()["response"]["errorCode"] == 0
    agent.instances.refresh()
    assert agent.instances.has_instance("seed-via-request")
    for name in ("seed-via-sdk", "seed-via-request"):
        assert wait(_backupset(cc, name).subclients.get("default").find_latest_job())


def test_refused_adds_are_sdk_exceptions_with_pgvault_message(svc: Service, cc: Commcell, pg, login, sdk_inst):
    user, password = login
    cc.credentials.add_postgres_database_creds("sdk-wrong", user, "not-" + password)
    cc.credentials.refresh()
    before = catalog_counts(svc.home)
    cases = [
        ({"credential_name": "sdk-cred", "storage_policy": "gold"}, "'gold' is not a pgvault plan"),
        ({"credential_name": "sdk-wrong", "storage_policy": "default"}, "password authentication failed"),
        ({"credential_name": "sdk-cred", "port": "5432"}, "hostname:port"),
        ({"credential_name": "sdk-cred", "version": "eighteen"}, "not a PostgreSQL version"),
    ]
    agent = cc.clients.get("default").agents.get("postgresql")
    for options, message in cases:
        with pytest.raises(SDKException) as refused:
            agent.instances.add_postgresql_instance("sdk-refused", **{"port": f"127.0.0.1:{pg.port}", **options})
        assert refused.value.exception_module == "Instance" and refused.value.exception_id == "102", refused.value
        assert message in str(refused.value)
    assert catalog_counts(svc.home) == before, "a refused add changed the catalog"

    with pytest.raises(SDKException, match="already exists"):  # the SDK checks the name itself
        agent.instances.add_postgresql_instance(sdk_inst, credential_name="sdk-cred")

    # The SDK's own credential add, refused by pgvault (no user name): its message reaches the caller.
    with pytest.raises(SDKException) as refused:
        agent.instances.add_postgresql_instance("sdk-nouser", credential_name="sdk-nouser", password="x")
    assert "username" in str(refused.value)


# --- backups and jobs ---------------------------------------------------------------------------------


def test_backup_job_and_job_lists(cc: Commcell, sdk_inst):
    agent = cc.clients.get("default").agents.get("postgresql")
    inst = agent.instances.get(sdk_inst)
    backupsets = inst.backupsets
    assert backupsets.has_backupset("DumpBasedBackupSet") and backupsets.default_backup_set == "dumpbasedbackupset"
    backupset = backupsets.get("DumpBasedBackupSet")
    assert backupset.plan.plan_name == "default"  # planEntity -> the SDK's Plan
    subclient = backupset.subclients.get("default")
    assert subclient.is_default_subclient and subclient.plan == "default"
    on_plan = cc.plans.get("default").associated_entities  # GET /V2/Plan/{id}/AssociatedEntities
    assert int(subclient.subclient_id) in [e["subclientId"] for e in on_plan]

    job = subclient.backup("Full")
    assert isinstance(job, Job) and job.job_type == "Backup" and job.backup_level == "Full"
    assert job.instance_name == "sdk-inst" and job.subclient_name == "default"
    assert job.username == "admin"  # who started it (jobSummary.userName)
    assert wait(job) is True
    assert job.is_finished and job.status == "Completed"
    assert job.end_time and job.delay_reason is None
    assert job.details["jobDetail"]["progressInfo"]["numOfFilesTransferred"] >= 2  # postgres, sdk_appdb

    finished = cc.job_controller.finished_jobs("default", job_filter="Backup")
    assert int(job.job_id) in finished
    mine = finished[int(job.job_id)]
    assert mine["status"] == "Completed" and mine["subclient_id"] == int(subclient.subclient_id)
    assert int(job.job_id) in cc.job_controller.all_jobs("default")
    assert int(job.job_id) not in cc.job_controller.active_jobs("default")
    assert subclient.find_latest_job().job_id == job.job_id

    again = Job(cc, job.job_id)  # a job looked up by id
    assert again.status == "Completed" and again.subclient_name == "default"


def test_failing_backup_surfaces_pgvault_reason(svc: Service, cc: Commcell, pg):
    with pg.connect() as conn:
        conn.execute("drop role if exists sdk_fragile")
        conn.execute("create role sdk_fragile login superuser password 'fragile-1'")
    try:
        sdk_add(cc, "sdk-fragile", pg, credential_name="sdk-fragile", user_name="sdk_fragile", password="fragile-1")
        subclient = _backupset(cc, "sdk-fragile").subclients.get("default")
        assert wait(subclient.find_latest_job())
        with pg.connect() as conn:
            conn.execute("alter role sdk_fragile password 'fragile-2'")

        job = subclient.backup("Full")
        assert wait(job) is False
        assert job.status == "Failed"
        assert "password authentication failed" in (job.delay_reason or "")
        assert "password authentication failed" in (job.pending_reason or "")

        # A subclient whose instance is gone: the backup request itself is refused, with the reason.
        instance_id = subclient._instance_object.instance_id
        with raw(svc, cc.auth_token) as http:
            assert http.delete(f"/Instance/{instance_id}").status_code == 200
        with pytest.raises(SDKException) as refused:
            subclient.backup("Full")
        assert f"subclient {subclient.subclient_id} does not exist" in str(refused.value)
    finally:
        with pg.connect() as conn:
            conn.execute("drop role if exists sdk_fragile")


def test_the_data_backed_up_is_the_data(svc: Service, cc: Commcell, pg, pg_target, sdk_inst):
    """What the SDK's backup wrote is the database: restore the file by hand and compare."""
    job = _backupset(cc, sdk_inst).subclients.get("default").find_latest_job()
    assert wait(job)
    with raw(svc, cc.auth_token) as http:
        summary = http.get(f"/Job/{job.job_id}").json()["jobs"][0]["jobSummary"]
    item = next(d for d in summary["databases"] if d["name"] == APPDB)
    try:
        restore_dump(item["location"], pg_target, "sdk_copy")
        assert fingerprint(pg_target, "sdk_copy") == fingerprint(pg, APPDB)
    finally:
        with pg_target.connect() as conn:
            conn.execute("drop database if exists sdk_copy with (force)")


# --- browse and restore (POST /DoBrowse, POST /CreateTask) --------------------------------------------


def test_browse_lists_the_databases_of_the_latest_restore_point(cc: Commcell, sdk_inst):
    backupset = _backupset(cc, sdk_inst)
    latest = backupset.subclients.get("default").find_latest_job()
    assert wait(latest)
    paths, details = backupset.browse(path="/")
    assert {"/postgres", f"/{APPDB}"} <= set(paths)
    assert details[f"/{APPDB}"]["advanced_data"]["jobId"] == int(latest.job_id)
    assert details[f"/{APPDB}"]["size"] > 0


def test_restore_postgres_server_in_place_and_to_another_instance(cc: Commcell, pg, pg_target, sdk_inst):
    sdk_add(cc, "sdk-target", pg_target, credential_name="sdk-target", user_name=pg_target.superuser,
            password=pg_target.password)
    target = _backupset(cc, "sdk-target").subclients.get("default")
    assert wait(target.find_latest_job())
    backupset = _backupset(cc, sdk_inst)
    assert wait(backupset.subclients.get("default").find_latest_job())
    original = fingerprint(pg, APPDB)
    try:
        job = backupset.restore_postgres_server(database_list=[f"/{APPDB}"], dest_client_name="default",
                                                dest_instance_name="sdk-target")
        assert job.job_type == "Restore"
        assert wait(job) is True and job.status == "Completed", job.delay_reason
        assert fingerprint(pg_target, APPDB) == original

        with pg.connect(APPDB) as conn:  # damage the source, then restore it in place
            conn.execute("delete from sales.orders where id % 2 = 0")
            conn.execute("drop view sales.big_orders")
        assert fingerprint(pg, APPDB) != original
        job = backupset.restore_postgres_server(database_list=[f"/{APPDB}"])
        assert wait(job) is True and job.status == "Completed", job.delay_reason
        assert fingerprint(pg, APPDB) == original
        with pg.connect(APPDB) as conn:
            assert conn.execute("select count(*) from sales.big_orders").fetchone()[0] > 0
    finally:
        with pg_target.connect() as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(APPDB)))


def test_the_sdk_lists_users_and_roles_and_deletes_a_user(svc: Service, cc: Commcell) -> None:
    """cvpysdk's ``commcell.users`` (GET v4/user), ``users.get`` (v4/user/{id}, User/{id}/Security),
    ``users.add`` (POST User), ``users.delete`` (DELETE User/{id}?newUserId=...) and ``commcell.roles``
    (GET V4/Role): what of its users and roles API pgvault answers."""
    admin = svc.login()
    try:
        r = admin.post("/User", json={"users": [{"userEntity": {"userName": "sdk-bob"},
                                                 "password": base64.b64encode(b"A long enough secret").decode(),
                                                 "role": "Operator"}]})
        assert r.status_code == 200, r.text
    finally:
        admin.close()
    users = cc.users
    users.refresh()
    assert users.has_user("admin") and users.has_user("sdk-bob")
    assert set(users.all_users) >= {"admin", "sdk-bob"}
    roles = cc.roles
    assert set(roles.all_roles) == {"administrator", "operator", "restore operator", "viewer"}
    assert roles.has_role("Operator")
    bob = users.get("sdk-bob")
    assert bob.user_id == users.all_users["sdk-bob"] and bob.status is True
    carol = users.add("sdk-carol", "carol@example.com", password="Carol's long secret")
    assert carol.email == "carol@example.com" and users.has_user("sdk-carol")
    users.delete("sdk-bob", new_user="admin")
    users.delete("sdk-carol", new_user="admin")
    assert not users.has_user("sdk-bob") and not users.has_user("sdk-carol")
    with pytest.raises(SDKException):
        users.delete("nobody-here", new_user="admin")
