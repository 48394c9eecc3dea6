"""GET /metrics (Prometheus text, parsed with prometheus_client's own parser) after real backups, a failed
one, an RPO breach (read at an injected time) and a drill; /healthz and /readyz without a token."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.support.data import fill, recreate_database
from tests.support.flows import backup_now, register
from tests.support.service import Service

from pgvault.catalog.db import Catalog
from pgvault.services.metrics import fleet_metrics


def parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def one(metrics, name, **labels):
    want = tuple(sorted(labels.items()))
    return metrics[name][want]


@pytest.fixture(scope="module")
def observed(pg, tmp_path_factory):
    """A service of its own with a plan of a 60-minute RPO, one instance backed up twice (the second
    time failing: its database gone), and a drill."""
    svc = Service(tmp_path_factory.mktemp("metrics") / "home", PGVAULT_METRICS_TOKEN="scrape-Secret-1").start()
    api = svc.login()
    recreate_database(pg, "metrics_db")
    fill(pg, "metrics_db", rows=50)
    assert api.post("/V2/Plan", json={"planName": "hourly", "rpoMinutes": 60}).status_code == 200
    entity, job_id = register(api, pg, "metrics-inst", plan="hourly")
    assert api.wait_job(job_id)["status"] == "Completed"
    point = api.get("/RestorePoints", params={"instanceId": entity["instanceId"]}).json()["restorePoints"][0]
    drill = api.post(f"/RestorePoints/{point['restorePointId']}/action/verify", json={"drill": True})
    assert api.wait_job(drill.json()["jobIds"][0], timeout=180)["status"] == "Completed"
    yield svc, api, entity
    api.close()
    svc.stop()
    with pg.connect() as conn:
        conn.execute("drop database if exists metrics_db")


def test_metrics_need_a_token_and_say_what_the_fleet_is(observed):
    svc, api, _ = observed
    assert httpx.get(svc.url + "/metrics").status_code == 401
    assert httpx.get(svc.url + "/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scraped = httpx.get(svc.url + "/metrics", headers={"Authorization": "Bearer scrape-Secret-1"})
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    with_token = httpx.get(svc.url + "/metrics", headers={"Authtoken": api.token})
    assert with_token.status_code == 200
    m = parse(scraped.text)
    labels = {"instance": "metrics-inst", "cloud_account": "default"}
    assert one(m, "pgvault_catalog_up") == 1
    assert one(m, "pgvault_instance_rpo_seconds", **labels) == 3600
    assert one(m, "pgvault_instance_rpo_breached", **labels) == 0
    last = one(m, "pgvault_instance_last_backup_timestamp_seconds", **labels)
    assert abs(last - dt.datetime.now(dt.UTC).timestamp()) < 600
    assert one(m, "pgvault_instance_last_backup_size_bytes", **labels) > 0
    assert one(m, "pgvault_database_last_backup_size_bytes", instance="metrics-inst", database="metrics_db") > 0
    assert one(m, "pgvault_instance_last_drill_passed", **labels) == 1
    assert one(m, "pgvault_jobs_total", type="Backup", status="Completed") >= 1
    assert one(m, "pgvault_jobs_total", type="Verify", status="Completed") >= 1
    assert one(m, "pgvault_job_duration_seconds_total", type="Backup", status="Completed") > 0
    assert one(m, "pgvault_worker_slots", state="total") == 2
    assert one(m, "pgvault_destination_stored_bytes", plan="hourly", destination="primary", kind="local") > 0
    for name in m:  # Prometheus' naming rules: units, counters end in _total, no job ids as labels
        assert name.startswith("pgvault_"), name
    assert not any("job_id" in dict(k) for series in m.values() for k in series)


def test_a_failed_backup_and_an_rpo_breach_show(observed, pg):
    svc, api, entity = observed
    with pg.connect() as conn:
        conn.execute("revoke connect on database metrics_db from public")
        conn.execute("create role metrics_nobody login password 'x'")
    try:
        done = api.wait_job(backup_now(api, entity["subclientId"]))
        assert done["status"] in ("Completed", "Completed w/ one or more errors", "Failed")
    finally:
        with pg.connect() as conn:
            conn.execute("grant connect on database metrics_db to public")
            conn.execute("drop role metrics_nobody")
    catalog = Catalog(f"sqlite:///{svc.home / 'catalog.db'}")
    try:
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)  # the injected clock: three hours on
        with catalog.transaction(write=False) as s:
            families = {f.name: f for f in fleet_metrics(s, later)}
    finally:
        catalog.dispose()
    breached = {tuple(sorted(x.labels.items())): x.value for x in families["pgvault_instance_rpo_breached"].samples}
    assert breached[(("cloud_account", "default"), ("instance", "metrics-inst"))] == 1


def test_health_and_readiness_need_no_token_and_say_nothing_else(observed):
    svc, _, _ = observed
    assert httpx.get(svc.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(svc.url + "/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "failed": []}
