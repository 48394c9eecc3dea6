"""Session-wide real PostgreSQL servers, started by the tests on 127.0.0.1 and stopped by them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support.certs import TestCA, make_ca
from tests.support.servers import system_pg_bin
from tests.support.service import Api, Service

from pgvault.pgtools.localserver import LocalServer


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
