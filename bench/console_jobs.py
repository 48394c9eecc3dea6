"""What the console's job list and job page cost at fleet size: GET /jobs (first page, filtered by status,
by a part of an instance's name, by a time range, a page far down), one job's page and its live part,
over HTTP from a real ``pgvault serve`` with a SQLite catalog of N instances (bench/metrics.py's: one
backup job per instance, each with its databases, as bench/console.py builds it); the time to the last
byte on loopback and the page's weight.

    .venv/bin/python bench/console_jobs.py --instances 10000
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from console import PASSWORD, free_port, timed, vary  # noqa: E402
from metrics import build  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--instances", type=int, default=10_000)
    p.add_argument("--databases", type=int, default=5)
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="pgvault-bench-jobs-") as tmp:
        home = Path(tmp)
        catalog = build(home, args.instances, args.databases)
        vary(catalog, args.instances)
        catalog.dispose()
        port = free_port()
        env = {**os.environ, "PGVAULT_HOME": str(home), "PGVAULT_PORT": str(port), "PGVAULT_WORKERS": "0",
               "PGVAULT_SCHEDULER_SECONDS": "3600"}
        with open(home / "serve.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "pgvault.cli", "serve"], env=env, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        http = httpx.Client(base_url=url, timeout=120)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit((home / "serve.log").read_text()[-2000:])
                time.sleep(0.2)
            csrf = re.search(r'name="csrf" value="([^"]*)"', http.get("/login").text).group(1)  # type: ignore[union-attr]
            login = http.post("/login", data={"username": "admin", "password": PASSWORD, "csrf": csrf})
            assert login.status_code == 303, login.text
            listed = http.get("/jobs")
            first = re.search(r'<a href="/jobs/(\d+)">', listed.text)
            assert first, "no job listed"
            job = first.group(1)
            day = time.strftime("%Y-%m-%dT00:00", time.gmtime(time.time() - 86400))
            deep = max(1, args.instances // 50 // 2)
            print(f"job list and page over {args.instances} instances (median of {args.repeat}, loopback, "
                  "2-core machine)")
            steps = (("jobs", "/jobs"), ("status filter", "/jobs?status=Failed"),
                     ("name filter", "/jobs?instance=fleet-0999"), ("time range", f"/jobs?type=Backup&from={day}"),
                     (f"page {deep}", f"/jobs?page={deep}"), ("job page", f"/jobs/{job}"),
                     ("live part", f"/jobs/{job}/live"))
            for label, path in steps:
                wall, size, _ = timed(http, path, args.repeat)
                print(f"  {label:15} {wall * 1000:6.0f} ms  {size / 1024:6.1f} KiB HTML")
        finally:
            http.close()
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    main()
