"""The whole service on a PostgreSQL catalog (PGVAULT_CATALOG_URL), end to end."""

from __future__ import annotations

from tests.support.service import Service, seed_body
from tests.test_bad_input import BAD_REQUESTS


def test_seed_request_on_a_postgresql_catalog(pg, tmp_path):
    with pg.connect() as conn:
        conn.execute("drop database if exists pgvault_catalog")
        conn.execute("create database pgvault_catalog")
    url = f"postgresql://postgres:{pg.password}@127.0.0.1:{pg.port}/pgvault_catalog"
    svc = Service(tmp_path / "home", PGVAULT_CATALOG_URL=url).start()
    api = svc.login()
    try:
        assert not (svc.home / "catalog.db").exists()
        r = api.post("/Instance", json=seed_body(host="127.0.0.1", port=pg.port, user="postgres",
                                                 password=pg.password, name="on-pg-catalog"))
        assert r.status_code == 200, r.text
        done = api.wait_job(r.json()["processinginstructioninfo"]["attributes"][1]["value"])
        assert done["status"] == "Completed", done
        assert "pgvault_catalog" in {d["name"] for d in done["databases"]}
        # the read paths on PostgreSQL (run in the threadpool there): a page, one instance, a job
        iid = r.json()["response"]["entity"]["instanceId"]
        page = api.get("/Instance", params={"offset": 0, "limit": 10}).json()["instanceProperties"]
        listed = next(i for i in page if i["instance"]["instanceId"] == iid)
        assert api.get(f"/Instance/{iid}").json() == {"instanceProperties": [listed]}
        assert listed["nextBackupTime"] >= done["jobStartTime"] and listed["defaultSubclientId"] > 0
        assert api.get("/Instance").json()["instanceProperties"] == page
        assert api.get("/Job/999999").status_code == 404
        for method, path, kw in BAD_REQUESTS:  # out-of-range values: a 400 or 404 here too, never a 500
            bad = api.request(method, path, **kw)
            assert bad.status_code in (200, 400, 404), (path, bad.status_code, bad.text)
        assert pg.password not in svc.log_text()
        with pg.connect("pgvault_catalog") as conn:
            assert conn.execute("select count(*) from restore_points").fetchone()[0] == 1
    finally:
        api.close()
        svc.stop()
        with pg.connect() as conn:
            conn.execute("drop database pgvault_catalog with (force)")
