from tests.support.service import seed_body


def test_seed_end_to_end(api, pg):
    body = seed_body(host="127.0.0.1", port=pg.port, user="postgres", password=pg.password, name="smoke")
    r = api.post("/Instance", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    job_id = out["processinginstructioninfo"]["attributes"][1]["value"]
    summary = api.wait_job(job_id)
    print(summary)
    assert summary["status"] == "Completed", summary
