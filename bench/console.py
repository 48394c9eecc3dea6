"""What the console's fleet overview costs at fleet size: a SQLite catalog of N instances (bench/metrics.py's,
with a tenth made late and a tenth given a failed last backup), served by a real ``pgvault serve``, read
by a logged-in browser session over HTTP: the first page, a name filter, a status filter and a later
page; the time to the last byte on loopback (the server's time: no network in between) and the page's
weight (its HTML, and the assets a first visit loads once).

    .venv/bin/python bench/console.py --instances 10000
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import update

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from metrics import build  # noqa: E402

from pgvault.catalog.models import Job, RestorePoint  # noqa: E402

PASSWORD = "bench-Pa55word"  # (bench/metrics.py's admin)  # noqa: S105


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def vary(catalog, instances: int) -> None:  # type: ignore[no-untyped-def]
    """A tenth of the fleet late (its restore point 2 days old), a tenth with a failed last backup."""
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    late = list(range(2, 2 + instances, 10))
    failed = list(range(3, 2 + instances, 10))
    with catalog.transaction(write=True) as s:
        s.execute(update(Job).where(Job.id.in_(late)).values(started_at=old, ended_at=old))
        s.execute(update(RestorePoint).where(RestorePoint.job_id.in_(late)).values(created_at=old))
        s.execute(update(Job).where(Job.id.in_(failed)).values(status="Failed"))
        s.execute(RestorePoint.__table__.delete().where(RestorePoint.job_id.in_(failed)))


def timed(http: httpx.Client, path: str, repeat: int) -> tuple[float, int, str]:
    walls, body = [], ""
    for _ in range(repeat):
        started = time.perf_counter()
        r = http.get(path)
        walls.append(time.perf_counter() - started)
        assert r.status_code == 200, (path, r.status_code)
        body = r.text
    return statistics.median(walls), len(body.encode()), body


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--instances", type=int, default=10_000)
    p.add_argument("--databases", type=int, default=5)
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="pgvault-bench-console-") as tmp:
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
            http = httpx.Client(base_url=url, timeout=120)
            csrf = re.search(r'name="csrf" value="([^"]*)"', http.get("/login").text).group(1)  # type: ignore[union-attr]
            login = http.post("/login", data={"username": "admin", "password": PASSWORD, "csrf": csrf})
            assert login.status_code == 303, login.text
            print(f"fleet overview of {args.instances} instances (median of {args.repeat}, loopback, 2-core machine)")
            timed(http, "/", 1)  # (first request: warms the process)
            for label, path in (("first page", "/"), ("name filter", "/?name=fleet-0999"),
                                ("status filter", "/?status=late"), ("page 100", "/?page=100")):
                wall, size, body = timed(http, path, args.repeat)
                rows = body.count('<tr class="state-')
                print(f"  {label:14} {wall * 1000:6.0f} ms  {size / 1024:6.1f} KiB HTML  {rows} rows")
            assets = sum(len(http.get(a).content) for a in ("/static/console.css", "/static/console.js",
                                                            "/static/htmx.min.js", "/static/favicon.svg"))
            print(f"  assets loaded once per visit: {assets / 1024:.1f} KiB (css, js, htmx, icon)")
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
