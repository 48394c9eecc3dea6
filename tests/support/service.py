"""A real ``pgvault serve`` process for the tests, spoken to over real HTTP."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from tests.support import answers

BASE = "/commandcenter/api"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """``pgvault serve`` in a subprocess, its log in ``home/service.log``. ``wrapper`` is a command that
    runs it (``unshare ... sh -c '...; exec "$@"' sh``): the service's own process, same pid."""

    def __init__(self, home: Path, admin_password: str = "admin-Pa55:word", *, wrapper: list[str] | None = None,
                 **env: str) -> None:
        self.home = home
        self.wrapper = wrapper or []
        self.port = free_port()
        self.admin_password = admin_password
        self.log_path = home.parent / f"{home.name}-service.log"
        self.env = {
            **os.environ,
            "PGVAULT_HOME": str(home),
            "PGVAULT_PORT": str(self.port),
            "PGVAULT_ADMIN_PASSWORD": admin_password,
            "PGVAULT_JOB_POLL_SECONDS": "0.5",
            "PGVAULT_LOG_LEVEL": "DEBUG",
            # the tests' plans keep their local destinations in pytest's temporary folders
            "PGVAULT_LOCAL_ROOTS": tempfile.gettempdir(),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> Service:
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*self.wrapper, sys.executable, "-m", "pgvault.cli", "serve"], env=self.env, stdout=self._log,
            stderr=self._log,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgvault serve exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + BASE + "/", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("pgvault serve did not answer within 60 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self._log.close()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer stops it: no shutdown, no cleanup of any kind."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self._log.close()
        self.proc = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, token: str | None = None) -> Api:
        return Api(self.url, token)

    def login(self, username: str = "admin", password: str | None = None) -> Api:
        api = self.client()
        r = api.post("/Login", json={"username": username, "password": b64(password or self.admin_password)})
        assert r.status_code == 200, r.text
        api.token = r.json()["token"]
        return api


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Api:
    def __init__(self, url: str, token: str | None) -> None:
        self.http = httpx.Client(base_url=url + BASE, timeout=60)
        self.token = token

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if self.token and "Authtoken" not in headers:
            headers["Authtoken"] = self.token
        r = self.http.request(method, path, headers=headers, **kw)
        sent = r.request.url.path  # (what httpx made of `path`: "//Client" is a host to it, not a path)
        answers.check_status(method, sent, r.status_code)  # what the tests see is what the document declares
        json_answer = r.headers.get("content-type", "").startswith("application/json")
        if r.status_code == 200 and json_answer and method.upper() != "HEAD" and answers.operation(method, sent):
            answers.check(method, sent, r.json())  # every success answer is what the OpenAPI document says
        return r

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, **kw)

    def job(self, job_id: int | str) -> dict[str, Any]:
        r = self.get(f"/Job/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()["jobs"][0]["jobSummary"]  # type: ignore[no-any-return]

    def wait_job(self, job_id: int | str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            summary = self.job(job_id)
            if summary["status"] not in ("Waiting", "Running"):
                return summary
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {summary['status']} after {timeout}s: {summary}")
            time.sleep(0.2)

    def close(self) -> None:
        self.http.close()


def seed_body(*, host: str, port: int, user: str, password: str, name: str | None = "string",
              client: str | None = "default", plan: str = "default", version: str = "18",
              maintenance_db: str = "postgres", ssl: bool = False, ssl_ca: str | None = None) -> dict[str, Any]:
    """The seed's request body (create-instance.txt), with the caller's values."""
    instance: dict[str, Any] = {"applicationId": 125}
    if name is not None:
        instance["instanceName"] = name
    if client is not None:
        instance["clientName"] = client
    ssl_opt: dict[str, Any] = {"sslEnabled": ssl}
    if ssl_ca is not None:
        ssl_opt["sslCa"] = ssl_ca
    return {
        "instanceProperties": {
            "instance": instance,
            "version": version,
            "postGreSQLInstance": {
                "MaintainenceDB": maintenance_db,
                "port": f"{host}:{port}",
                "SAUser": {"userName": user, "password": b64(password)},
                "cloudDBEngineType": "POSTGRESQL",
                "sslOpt": ssl_opt,
            },
            "planEntity": {"planName": plan},
            "dbEngine": "PostgreSQL",
        }
    }


def catalog_counts(home: Path) -> dict[str, int]:
    """Rows per table, read straight from the SQLite catalog: "nothing was created" is checked at the
    source, not through the API that might hide a row."""
    import sqlite3

    conn = sqlite3.connect(f"file:{home / 'catalog.db'}?mode=ro", uri=True, timeout=30)
    try:
        tables = ["instances", "backupsets", "subclients", "jobs", "job_items", "restore_points",
                  "cloud_accounts", "plans"]
        return {t: conn.execute(f"select count(*) from {t}").fetchone()[0] for t in tables}
    finally:
        conn.close()
