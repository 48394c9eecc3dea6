"""Session-wide real PostgreSQL servers, started by the tests on 127.0.0.1 and stopped by them."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.certs import TestCA, make_ca
from tests.support.servers import MajorServers, matrix_dirs, system_pg_bin
from tests.support.service import Api, Service

from pgvault.catalog.db import Catalog
from pgvault.pgtools.localserver import LocalServer

# Every `pgvault serve` the tests start finds the matrix's server programs for restore drills (a drill runs
# on the backed-up server's own major).
os.environ.setdefault("PGVAULT_PG_SERVERS", os.pathsep.join(str(p) for p in matrix_dirs()))


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A PostgreSQL 18 server from the bundled binaries: the instance most tests protect."""
    with LocalServer(tmp_path_factory.mktemp("pg-main")) as server:
        yield server


@pytest.fixture(scope="session")
def pg_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A second, fresh PostgreSQL 18 server that backups are restored into."""
    with LocalServer(tmp_path_factory.mktemp("pg-target")) as server:
        yield server


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    """A CA that did not sign the SSL server's certificate."""
    return make_ca(tmp_path_factory.mktemp("other-ca"), cn="some other CA")


@pytest.fixture(scope="session")
def pg_ssl(tmp_path_factory: pytest.TempPathFactory, test_ca: TestCA) -> Iterator[LocalServer]:
    """An SSL-only server (hostssl lines only). The bundled build has no OpenSSL, so this is Debian's
    PostgreSQL server (scripts/test-deps.sh installs it)."""
    bin_dir = system_pg_bin()
    if bin_dir is None:
        pytest.skip("no SSL-capable PostgreSQL server installed (run scripts/test-deps.sh as root)")
    server = LocalServer(
        tmp_path_factory.mktemp("pg-ssl"), bin_dir=bin_dir, ssl_cert=test_ca.server_cert,
        ssl_key=test_ca.server_key, hba=["hostssl all all 127.0.0.1/32 scram-sha-256"],
    )
    with server:
        yield server



@pytest.fixture(scope="session")
def majors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MajorServers]:
    """PostgreSQL 10 to 18 (scripts/pg-servers.sh), one server per major, started when first asked for."""
    pool = MajorServers(tmp_path_factory.mktemp("majors"))
    yield pool
    pool.stop()


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One ``pgvault serve`` for the session, on the embedded defaults (SQLite, local folder)."""
    svc = Service(tmp_path_factory.mktemp("svc") / "home").start()
    yield svc
    svc.stop()


@pytest.fixture()
def api(service: Service) -> Iterator[Api]:
    client = service.login()
    yield client
    client.close()


@pytest.fixture()
def anon(service: Service) -> Iterator[Api]:
    """A client that has not logged in."""
    client = service.client()
    yield client
    client.close()


class MotoS3:
    """Moto's S3 server on loopback and the IAM keys it accepts. It checks SigV4 signatures, so wrong
    keys are refused the way AWS refuses them. Every ``ThreadedMotoServer`` in this process shares one
    in-memory backend, so a second server (one a test stops midway) sees the same buckets."""

    region = "us-east-1"

    def __init__(self, url: str, access_key_id: str, secret_access_key: str) -> None:
        self.url = url
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key

    def client(self, service: str = "s3"):  # a boto3 client, for checks obstore cannot make
        import boto3

        return boto3.client(service, endpoint_url=self.url, region_name=self.region,
                            aws_access_key_id=self.access_key_id, aws_secret_access_key=self.secret_access_key)

    def new_bucket(self) -> str:
        import uuid

        name = f"pgvault-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def config(self, bucket: str, prefix: str = "", **extra: object) -> dict:
        return {"endpoint": self.url, "region": self.region, "bucket": bucket, "prefix": prefix,
                "virtualHosted": False, **extra}

    def secret(self) -> dict:
        return {"accessKeyId": self.access_key_id, "secretAccessKey": self.secret_access_key}


@pytest.fixture(scope="session")
def s3() -> Iterator[MotoS3]:
    """A real S3 endpoint on 127.0.0.1 for the session (moto's server mode), with signature checks on."""
    import json
    import logging

    import boto3
    import httpx
    from moto.server import ThreadedMotoServer

    werkzeug_log = logging.getLogger("werkzeug")
    level = werkzeug_log.level
    werkzeug_log.setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    url = "http://{}:{}".format(*server.get_host_and_port())
    iam = boto3.client("iam", endpoint_url=url, region_name=MotoS3.region, aws_access_key_id="bootstrap",
                       aws_secret_access_key="bootstrap")
    iam.create_user(UserName="pgvault")
    iam.put_user_policy(UserName="pgvault", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="pgvault")["AccessKey"]
    httpx.post(f"{url}/moto-api/reset-auth", content=b"0").raise_for_status()  # from now on, keys are checked
    try:
        yield MotoS3(url, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        httpx.post(f"{url}/moto-api/reset-auth", content=b"inf")
        server.stop()
        werkzeug_log.setLevel(level)


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    """A migrated, empty catalog on each dialect: a SQLite file, and a database of its own on the
    session's PostgreSQL server (started only when a PostgreSQL case runs)."""
    if request.param == "sqlite":
        cat = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
        cat.migrate()
        yield cat
        cat.dispose()
        return
    pg = request.getfixturevalue("pg")
    name = "catalog_" + secrets.token_hex(4)
    with pg.connect() as conn:
        conn.execute(f"create database {name}")
    cat = Catalog(f"postgresql+psycopg://postgres:{pg.password}@127.0.0.1:{pg.port}/{name}")
    cat.migrate()
    yield cat
    cat.dispose()
    with pg.connect() as conn:
        conn.execute(f"drop database {name} with (force)")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (``playwright install`` cannot download its own browser
    here); skipped with the reason where either is missing. Per module, not per session: Playwright's sync
    API keeps an event loop running in the thread while it is open, and a later test's ``asyncio.run``
    (tests/test_login_throttle.py) would find it."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("no chromium: apt-get install chromium (scripts/test-deps.sh installs it as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is missing: pip install -e '.[dev]'")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()
