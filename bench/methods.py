"""The ways to back up (and restore) the dataset that the harness times against each other.

Each function runs one repetition and returns a ``Measured``: wall seconds, the bytes stored, and CPU
seconds split by who spent them (the bench's own children, the PostgreSQL server's backends and, for
pgvault, the ``pgvault serve`` process itself).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import zstandard
from psycopg import sql

from pgvault.files import fsync_path
from pgvault.pgtools.binaries import bundled_bin_dir
from pgvault.pgtools.localserver import LocalServer

from . import procstat
from .dataset import pg_env, recreate

SETTLE = 0.3  # seconds for the postmaster to reap the backends that just ended, before reading its CPU


@dataclass
class Measured:
    wall: float
    bytes: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # who -> CPU seconds
    extra: dict[str, float] = field(default_factory=dict)


def tool(name: str) -> str:
    return str(bundled_bin_dir() / name)


@dataclass(frozen=True)
class Database:
    name: str
    size: int


def databases(server: LocalServer) -> list[Database]:
    """What pgvault backs up: every database that accepts connections, except templates; largest first
    (the schedule pgvault uses, and the best one for two at a time)."""
    with server.connect() as conn:
        rows = conn.execute(
            "select datname, pg_database_size(oid) from pg_database where datallowconn and not datistemplate"
        ).fetchall()
    return sorted((Database(r[0], int(r[1])) for r in rows), key=lambda d: (-d.size, d.name))




def _wait(procs: list[subprocess.Popen[bytes]]) -> list[tuple[int, float]]:
    """Waits for each process with wait4 to get its own rusage: (exit code, CPU seconds)."""
    out = []
    for p in procs:
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.append((p.returncode, ru.ru_utime + ru.ru_stime))
    return out


class _ServerCpu:
    """CPU of a PostgreSQL server's backends over a block (from its postmaster's accounting)."""

    def __init__(self, server: LocalServer) -> None:
        self.pid = procstat.postmaster_pid(server.data_dir)

    def __enter__(self) -> _ServerCpu:
        self.before = procstat.cpu(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(SETTLE)
        d = procstat.cpu(self.pid) - self.before
        self.seconds = d.own + d.children


def _pipeline(argvs: list[list[str]], env: dict[str, str], stdout: int | None = None) -> list[subprocess.Popen[bytes]]:
    procs: list[subprocess.Popen[bytes]] = []
    prev = None
    for i, argv in enumerate(argvs):
        last = i == len(argvs) - 1
        p = subprocess.Popen(argv, env=env, stdin=prev if prev is not None else subprocess.DEVNULL,
                             stdout=(stdout if last else subprocess.PIPE), stderr=subprocess.PIPE)
        if prev is not None:
            prev.close()  # the next process owns it now
        prev = p.stdout if not last else None
        procs.append(p)
    return procs


def _floor_one(argv: list[str], env: dict[str, str], out: Path, compress: bool) -> tuple[int, dict[str, float]]:
    """``argv | zstd -1 | tee out | sha256sum``, then fsync: a real pipeline, wired here so that each
    program's CPU can be told apart."""
    stages = [argv]
    if compress:
        stages.append(["zstd", "-1", "-q", "-c"])
    stages += [["tee", str(out)], ["sha256sum"]]
    procs = _pipeline(stages, env, stdout=subprocess.PIPE)
    digest = procs[-1].stdout.read() if procs[-1].stdout else b""  # type: ignore[union-attr]
    results = _wait(procs)
    errors = [p.stderr.read().decode(errors="replace") if p.stderr else "" for p in procs]
    for p in procs:
        for s in (p.stdout, p.stderr):
            if s:
                s.close()
    for (code, _), err, stage in zip(results, errors, stages, strict=True):
        if code != 0:
            raise RuntimeError(f"{stage[0]} exited {code}: {err.strip()}")
    assert len(digest.split()[0]) == 64
    fsync_path(out)
    names = ["pg_dump", "zstd", "tee", "sha256sum"] if compress else ["pg_dumpall", "tee", "sha256sum"]
    return out.stat().st_size, {n: cpu for n, (_, cpu) in zip(names, results, strict=True)}


def floor(server: LocalServer, dbs: list[Database], out_dir: Path, parallel: int = 2, *,
          bin_dir: Path | None = None, env: dict[str, str] | None = None) -> Measured:
    """The best shell pipeline: ``pg_dumpall --globals-only``, then ``pg_dump -Fc -Z0 | zstd -1`` with
    sha256 on the fly, two databases at a time, largest first; every file fsynced. ``bin_dir`` and ``env``
    choose other client programs and how they connect (the SSL floor: an SSL-capable pg_dump)."""
    out_dir.mkdir(parents=True)
    env = pg_env(server) if env is None else env
    programs = bin_dir or bundled_bin_dir()
    cpu: dict[str, float] = {}
    total = 0

    def add(result: tuple[int, dict[str, float]]) -> None:
        nonlocal total
        total += result[0]
        for k, v in result[1].items():
            cpu[k] = cpu.get(k, 0.0) + v

    with _ServerCpu(server) as srv:
        t0 = time.perf_counter()
        add(_floor_one([str(programs / "pg_dumpall"), "--globals-only", "--no-role-passwords"], env,
                       out_dir / "globals.sql", compress=False))
        with ThreadPoolExecutor(parallel) as pool:
            futures = [
                pool.submit(_floor_one, [str(programs / "pg_dump"), "-Fc", "-Z0"], {**env, "PGDATABASE": d.name},
                            out_dir / f"{i:03d}.dump.zst", True)
                for i, d in enumerate(dbs)
            ]
            for f in futures:
                add(f.result())
        wall = time.perf_counter() - t0
    cpu["pg_dump"] = cpu.get("pg_dump", 0.0) + cpu.pop("pg_dumpall", 0.0)
    cpu["server"] = srv.seconds
    shutil.rmtree(out_dir)
    return Measured(wall, total, cpu)


def peers(server: LocalServer, dbs: list[Database], out_dir: Path, keep: bool = False) -> Measured:
    """What simple tools do: ``pg_dump -Fc`` (zlib at its default level) of each database, one after the
    other, plus ``pg_dumpall --globals-only``. pg_dump fsyncs its output file itself."""
    out_dir.mkdir(parents=True)
    env = pg_env(server)
    before = os.times()
    with _ServerCpu(server) as srv:
        t0 = time.perf_counter()
        subprocess.run([tool("pg_dumpall"), "--globals-only", "--no-role-passwords", "-f",
                        str(out_dir / "globals.sql")], env=env, check=True, capture_output=True)
        for d in dbs:
            subprocess.run([tool("pg_dump"), "-Fc", "-f", str(out_dir / f"{d.name}.dump")],
                           env={**env, "PGDATABASE": d.name}, check=True, capture_output=True)
        wall = time.perf_counter() - t0
    after = os.times()
    size = sum(p.stat().st_size for p in out_dir.iterdir())
    if not keep:
        shutil.rmtree(out_dir)
    cpu = {"pg_dump": (after.children_user - before.children_user) + (after.children_system - before.children_system),
           "server": srv.seconds}
    return Measured(wall, size, cpu)


# -- restore ------------------------------------------------------------------------------------------


def drop(target: LocalServer, names: list[str]) -> None:
    with target.connect() as conn:
        for name in names:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        conn.execute("checkpoint")


def _fresh(target: LocalServer, names: list[str]) -> None:
    for name in names:
        recreate(target, name)
    with target.connect() as conn:
        conn.execute("checkpoint")


def restore_floor(target: LocalServer, archives: dict[str, Path]) -> Measured:
    """``pg_restore -j 2`` of each database's ``pg_dump -Fc`` file (seekable, so -j works), one database
    after the other, into freshly created databases."""
    _fresh(target, list(archives))
    env = pg_env(target)
    before = os.times()
    with _ServerCpu(target) as srv:
        t0 = time.perf_counter()
        for name, path in archives.items():
            subprocess.run([tool("pg_restore"), "-j", "2", "--exit-on-error", "-d", name, str(path)],
                           env=env, check=True, capture_output=True)
        wall = time.perf_counter() - t0
    after = os.times()
    cpu = {"pg_restore": (after.children_user - before.children_user)
           + (after.children_system - before.children_system), "server": srv.seconds}
    return Measured(wall, 0, cpu)


def restore_pgvault_files(target: LocalServer, archives: dict[str, Path], parallel: int = 2) -> Measured:
    """pgvault's stored files restored by hand: ``zstd -dc file | pg_restore -d db`` (one stream each: a
    piped custom archive has no data offsets for -j), two databases at a time, largest first."""
    _fresh(target, list(archives))
    env = pg_env(target)

    def one(name: str, path: Path) -> None:
        procs = _pipeline([["zstd", "-dc", str(path)], [tool("pg_restore"), "--exit-on-error", "-d", name]], env,
                          stdout=subprocess.DEVNULL)
        results = _wait(procs)
        errors = [p.stderr.read().decode(errors="replace") if p.stderr else "" for p in procs]
        for p in procs:
            if p.stderr:
                p.stderr.close()
        for (code, _), err in zip(results, errors, strict=True):
            if code != 0:
                raise RuntimeError(f"restore of {name} failed: {err.strip()}")

    order = sorted(archives.items(), key=lambda kv: -kv[1].stat().st_size)
    before = os.times()
    with _ServerCpu(target) as srv:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(parallel) as pool:
            for f in [pool.submit(one, n, p) for n, p in order]:
                f.result()
        wall = time.perf_counter() - t0
    after = os.times()
    cpu = {"client": (after.children_user - before.children_user) + (after.children_system - before.children_system),
           "server": srv.seconds}
    return Measured(wall, 0, cpu)


def uncompressed_bytes(files: list[Path]) -> int:
    """What pg_dump wrote for ``files`` (pgvault's stored dumps) before compression."""
    total = 0
    for path in files:
        with open(path, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as reader:
            while data := reader.read(1 << 20):
                total += len(data)
    return total
