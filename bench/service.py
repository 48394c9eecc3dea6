"""A real ``pgvault serve`` process for the bench, and one backup through its API, timed end to end."""

from __future__ import annotations

import base64
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from pgvault.pgtools.localserver import LocalServer

from . import methods, procstat
from .methods import SETTLE, Measured

BASE = "/commandcenter/api"
TERMINAL = {"Completed", "Completed w/ one or more errors", "Failed", "Killed"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Service:
    """``pgvault serve`` on 127.0.0.1 with its own PGVAULT_HOME; its own session, so a Ctrl-C meant for
    the bench reaches it only through ``stop``."""

    def __init__(self, home: Path, **env: str) -> None:
        self.home = home
        self.port = free_port()
        self.password = "bench-" + os.urandom(6).hex()
        self.log_path = home.parent / f"{home.name}.log"
        self.env = {**os.environ, "PGVAULT_HOME": str(home), "PGVAULT_HOST": "127.0.0.1",
                    "PGVAULT_PORT": str(self.port), "PGVAULT_ADMIN_PASSWORD": self.password, **env}
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.http: httpx.Client | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Service:
        self.home.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen([sys.executable, "-m", "pgvault.cli", "serve"], env=self.env, stdout=log,
                                     stderr=log, start_new_session=True)
        log.close()
        try:
            return self._ready()
        except BaseException:
            self.stop()  # a service that never answered (or refused the login) is not left running
            raise

    def _ready(self) -> Service:
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgvault serve exited: {self.log_tail()}")
            try:
                if httpx.get(self.url + BASE + "/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"pgvault serve did not answer within 60 s: {self.log_tail()}")
            time.sleep(0.1)
        self.http = httpx.Client(base_url=self.url + BASE, timeout=120)
        r = self.http.post("/Login", json={"username": "admin", "password": b64(self.password)})
        r.raise_for_status()
        self.token = r.json()["token"]
        self.http.headers["Authtoken"] = self.token
        self.rss_at_start_mb = procstat.status_kb(self.pid, "VmRSS") / 1024
        self.rss_start_peak_mb = procstat.status_kb(self.pid, "VmHWM") / 1024  # start-up and the first login
        return self

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.http is not None:
            self.http.close()
            self.http = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    # -- API --------------------------------------------------------------------------------------

    def api(self) -> httpx.Client:
        assert self.http is not None
        return self.http

    def register(self, server: LocalServer, name: str = "bench", *, version: str = "18",
                 ssl_ca: Path | None = None) -> tuple[int, int]:
        """POST /Instance with the seed's body; returns (subclient id, the first backup's job id). A server
        with SSL is registered with ``sslEnabled`` and, given ``ssl_ca``, verified against it."""
        ssl_opt: dict[str, Any] = {"sslEnabled": server.ssl_cert is not None}
        if ssl_ca is not None:
            ssl_opt["sslCa"] = str(ssl_ca)
        body = {"instanceProperties": {
            "instance": {"instanceName": name, "applicationId": 125, "clientName": "default"},
            "version": version,
            "postGreSQLInstance": {
                "MaintainenceDB": "postgres", "port": f"{server.host}:{server.port}",
                "SAUser": {"userName": server.superuser, "password": b64(server.password)},
                "cloudDBEngineType": "POSTGRESQL", "sslOpt": ssl_opt,
            },
            "planEntity": {"planName": "default"},
            "dbEngine": "PostgreSQL",
        }}
        r = self.api().post("/Instance", json=body)
        if r.status_code != 200:
            raise RuntimeError(f"POST /Instance: {r.status_code} {r.text}")
        out = r.json()
        attrs = {a["name"]: a["value"] for a in out["processinginstructioninfo"]["attributes"]}
        return int(out["response"]["entity"]["subclientId"]), int(attrs["jobId"])

    def job(self, job_id: int) -> dict[str, Any]:
        r = self.api().get(f"/Job/{job_id}")
        r.raise_for_status()
        return r.json()["jobs"][0]["jobSummary"]  # type: ignore[no-any-return]

    def _catalog_status(self, conn: sqlite3.Connection, job_id: int) -> str:
        row = conn.execute("select status from jobs where id = ?", (job_id,)).fetchone()
        return str(row[0]) if row else "Waiting"

    def wait(self, job_id: int, t0: float, timeout: float = 3600) -> float:
        """Seconds from ``t0`` until the catalog records the job as finished. The bench polls the catalog
        (SQLite, read-only, every 20 ms) rather than GET /Job so that its polling costs pgvault no CPU and
        the end is seen within 20 ms; the outcome is then read through the API."""
        conn = sqlite3.connect(f"file:{self.home / 'catalog.db'}?mode=ro", uri=True, timeout=30)
        try:
            while True:
                status = self._catalog_status(conn, job_id)
                if status in TERMINAL:
                    return time.perf_counter() - t0
                if time.perf_counter() - t0 > timeout:
                    raise RuntimeError(f"job {job_id} still {status} after {timeout} s")
                time.sleep(0.02)
        finally:
            conn.close()

    def check_completed(self, job_id: int) -> dict[str, Any]:
        summary = self.job(job_id)
        if summary["status"] != "Completed":
            failed = [d for d in summary.get("databases", []) if d["status"] != "Completed"]
            raise RuntimeError(f"job {job_id} ended {summary['status']}: {summary['message']} {failed}\n"
                               f"{self.log_tail()}")
        return summary

    def backup(self, server: LocalServer, subclient_id: int) -> Measured:
        """One on-demand backup, from the POST to the job's Completed, with the CPU of pgvault itself, of
        its children (pg_dump, pg_dumpall and the zstd compressors between them and pgvault) and of the
        server's backends over that time."""
        pm = procstat.postmaster_pid(server.data_dir)
        me0, pm0 = procstat.cpu(self.pid), procstat.cpu(pm)
        exact = procstat.reset_peak(self.pid)
        with procstat.RssSampler(self.pid) as rss:
            t0 = time.perf_counter()
            r = self.api().post(f"/Subclient/{subclient_id}/action/backup", params={"backupLevel": "full"})
            r.raise_for_status()
            job_id = int(r.json()["jobIds"][0])
            wall = self.wait(job_id, t0)
        time.sleep(SETTLE)
        me, srv = procstat.cpu(self.pid) - me0, procstat.cpu(pm) - pm0
        peak = self.rss_hwm_mb() if exact else rss.peak_mb
        summary = self.check_completed(job_id)
        stored = sum(d["bytes"] for d in summary["databases"]) + ((summary.get("globals") or {}).get("bytes") or 0)
        cpu = {"pgvault": me.own, "pg_dump+zstd": me.children, "server": srv.own + srv.children}
        return Measured(wall, stored, cpu,
                        {"rss_peak_mb": peak, "rss_sampled_mb": rss.peak_mb, "rss_exact": float(exact),
                         "job_id": job_id})

    def restore(self, target: LocalServer, source_instance: int, target_instance: int, backup_job: int,
                names: list[str]) -> Measured:
        """One restore job (POST /CreateTask) of ``names`` from ``backup_job`` into the target instance,
        from the POST to the job's Completed. The databases are dropped first, as for the other methods."""
        methods.drop(target, names)
        body = {"taskInfo": {
            "associations": [{"instanceId": source_instance}],
            "subTasks": [{"subTask": {"subTaskType": 3, "operationType": 1001}, "options": {"restoreOptions": {
                "jobIds": [backup_job],
                "destination": {"destinationInstance": {"instanceId": target_instance}},
                "fileOption": {"sourceItem": [f"/{n}" for n in names]},
                "commonOptions": {"unconditionalOverwrite": True},
                "postgresRstOption": {"parallelism": 2},
            }}}],
        }}
        pm = procstat.postmaster_pid(target.data_dir)
        me0, pm0 = procstat.cpu(self.pid), procstat.cpu(pm)
        t0 = time.perf_counter()
        r = self.api().post("/CreateTask", json=body)
        if r.status_code != 200:
            raise RuntimeError(f"POST /CreateTask: {r.status_code} {r.text}")
        job_id = int(r.json()["jobIds"][0])
        wall = self.wait(job_id, t0)
        time.sleep(SETTLE)
        me, srv = procstat.cpu(self.pid) - me0, procstat.cpu(pm) - pm0
        self.check_completed(job_id)
        return Measured(wall, 0, {"pgvault": me.own, "pg_restore": me.children, "server": srv.own + srv.children},
                        {"job_id": job_id})

    def rss_hwm_mb(self) -> float:
        """VmHWM: the peak RSS since the start or the last ``procstat.reset_peak``."""
        return procstat.status_kb(self.pid, "VmHWM") / 1024
