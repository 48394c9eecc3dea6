"""Where pgvault may connect and write on an API user's word (domain/targets.py): PGVAULT_ALLOWED_TARGETS for
the servers it protects and the S3 endpoints it writes to, PGVAULT_LOCAL_ROOTS for local destinations."""

from __future__ import annotations

import pytest
from tests.support.flows import backup_now, register
from tests.support.service import Service, catalog_counts, seed_body

from pgvault.domain.targets import TargetPolicy, within


def test_policy_matches_networks_and_names_without_resolving():
    policy = TargetPolicy.parse("127.0.0.0/8, 10.1.0.0/16, ::1/128, *.rds.aliyuncs.com, db.internal")
    for host in ["127.0.0.1", "127.9.9.9", "10.1.200.3", "::1", "[::1]", "pgm-x.rds.aliyuncs.com",
                 "A.B.RDS.ALIYUNCS.COM", "db.internal", "db.internal."]:
        assert policy.allows(host), host
    for host in ["10.2.0.1", "192.168.1.1", "169.254.169.254", "::2", "rds.aliyuncs.com.evil.com",
                 "evilrds.aliyuncs.com", "internal", "db.internal.evil", "localhost"]:
        assert not policy.allows(host), host
    assert TargetPolicy.parse("").open and TargetPolicy.parse(" , ").allows("anything.example")
    with pytest.raises(ValueError, match="neither a network"):
        TargetPolicy.parse("127.0.0.0/8, not a host!")


def test_within_resolves_dots_and_links(tmp_path):
    root = tmp_path / "backups"
    (root / "a").mkdir(parents=True)
    (root / "link").symlink_to("/etc")
    assert within(root / "a" / "new", (root,)) and within(root, (root,))
    assert not within(root / ".." / "elsewhere", (root,))
    assert not within(root / "link" / "x", (root,))  # out through a link
    assert not within(root.parent / "backups2", (root,))


@pytest.fixture(scope="module")
def fenced_service(tmp_path_factory):
    """A service that may reach only loopback servers and 127.0.0.1's S3, and write only under its home
    (no PGVAULT_LOCAL_ROOTS)."""
    svc = Service(tmp_path_factory.mktemp("fenced") / "home", PGVAULT_ALLOWED_TARGETS="127.0.0.0/8",
                  PGVAULT_LOCAL_ROOTS="").start()
    yield svc
    svc.stop()


class Fenced:
    def __init__(self, svc: Service) -> None:
        self.svc, self.home = svc, svc.home
        self._clients: list = []

    def login(self):
        client = self.svc.login()
        self._clients.append(client)
        return client


@pytest.fixture()
def fenced(fenced_service):
    f = Fenced(fenced_service)
    yield f
    for client in f._clients:
        client.close()


@pytest.mark.parametrize("address", ["10.0.0.1:5432", "169.254.169.254:5432", "db.example.com:5432",
                                     "[2001:db8::1]:5432"])
def test_a_server_outside_the_allowed_targets_is_refused_before_any_connection(fenced, address):
    api = fenced.login()
    before = catalog_counts(fenced.home)
    body = seed_body(host="x", port=1, user="u", password="p", name=f"far-{address}")
    body["instanceProperties"]["postGreSQLInstance"]["port"] = address
    r = api.post("/Instance", json=body)
    assert r.status_code == 400, r.text
    assert "is not among the servers pgvault may reach" in r.json()["errorMessage"]
    assert "PGVAULT_ALLOWED_TARGETS: 127.0.0.0/8" in r.json()["errorMessage"]
    assert catalog_counts(fenced.home) == before


def test_an_allowed_server_registers(fenced, pg):
    api = fenced.login()
    _, job_id = register(api, pg, "near")
    assert api.wait_job(job_id)["status"] == "Completed"


def test_local_destinations_stay_under_the_allowed_folders(fenced, tmp_path):
    api = fenced.login()
    outside = tmp_path / "outside"
    r = api.post("/V2/Plan", json={"planName": "outside", "storage": {"path": str(outside)}})
    assert r.status_code == 400 and "is not under the folders local destinations may use" in r.text, r.text
    assert str(fenced.home / "backups") in r.json()["errorMessage"]
    assert not outside.exists()  # refused before anything was created
    sneaky = fenced.home / "backups" / ".." / "elsewhere"
    assert api.post("/V2/Plan", json={"planName": "sneaky", "storage": {"path": str(sneaky)}}).status_code == 400
    inside = fenced.home / "backups" / "gold"
    assert api.post("/V2/Plan", json={"planName": "inside", "storage": {"path": str(inside)}}).status_code == 200


def test_an_s3_endpoint_outside_the_allowed_targets_is_refused(fenced):
    api = fenced.login()
    for endpoint, region in [("https://minio.example.com:9000", "us-east-1"), (None, "eu-west-1")]:
        dest = {"name": "s3", "kind": "s3", "endpoint": endpoint, "region": region, "bucket": "b"}
        r = api.post("/V2/Plan", json={"planName": f"s3-{region}", "destinations": [dest]})
        assert r.status_code == 400 and "is not among the targets pgvault may reach" in r.text, r.text


def test_a_job_refuses_a_server_the_policy_no_longer_allows(tmp_path, pg):
    home = tmp_path / "home"
    svc = Service(home).start()
    try:
        api = svc.login()
        entity, job_id = register(api, pg, "then-allowed")
        assert api.wait_job(job_id)["status"] == "Completed"
        api.close()
    finally:
        svc.stop()
    svc = Service(home, PGVAULT_ALLOWED_TARGETS="10.0.0.0/8").start()
    try:
        api = svc.login()
        done = api.wait_job(backup_now(api, entity["subclientId"]))
        api.close()
        assert done["status"] == "Failed" and "PGVAULT_ALLOWED_TARGETS" in done["message"], done
    finally:
        svc.stop()
