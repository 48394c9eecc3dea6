"""The SSL backup: an SSL-only server (the usual case on PaaS), backed up by pgvault, whose bundled pg_dump
has no OpenSSL and so goes through pgvault's TLS bridge process, against an SSL floor.

**The floor** is the plain floor's pipeline (``pg_dumpall --globals-only``, then ``pg_dump -Fc -Z0 | zstd
-1 | tee | sha256sum``, two at a time, largest first, fsynced) run by an SSL-capable pg_dump that speaks TLS
itself (libpq, ``sslmode=verify-full`` against the CA): what a DBA with SSL-capable client tools does, and
the cost pgvault's design must be held to. Such tools here are the packaged client of some major M
(Debian's PostgreSQL 15 on the project's machine), and pg_dump M refuses servers newer than M, so the
server is of major M as well: from ``PGVAULT_PG_SERVERS`` (the npm builds, with OpenSSL), else the packaged
server. pgvault's pg_dump 18 dumps it through the bridge; pg_dump 15 and 18 write the same archive.

**The bridge floor** tells the bridge's cost from the rest of pgvault's: the bundled pg_dump through
pgvault's bridge process (``BridgeProcess``, one per repetition as one per job) driven by the harness, in
the same pipeline. bridge floor / floor is what the bridge costs; pgvault / bridge floor, pgvault's own
overhead. Its ``bridge`` CPU is the child's, read from /proc before it stops.

**pgvault** is an on-demand backup of the instance registered with ``sslEnabled`` and the CA (verify-full),
as in the plain phase. Its ``pgvault`` CPU is the service process's own (where the bridge ran before it
became a child), its children's CPU is pg_dump's, zstd's and now the bridge's.

``--compare-pythonpath DIR`` adds a second service run from another checkout's ``src`` (the code before a
change: ``git archive <commit> src | tar -x -C DIR``), its backups interleaved with the others, so that
before and after are measured in the same run.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from tests.support.certs import make_ca

from pgvault.errors import ToolError
from pgvault.pgtools.binaries import server_binaries
from pgvault.pgtools.localserver import LocalServer
from pgvault.pgtools.tlsbridge import BridgeProcess

from . import dataset, methods, procstat
from .methods import Database, Measured
from .service import Service

PACKAGED = Path("/usr/lib/postgresql")  # Debian's and PGDG's packages: built with OpenSSL


@dataclass(frozen=True)
class Tools:
    client_bin: Path  # an SSL-capable pg_dump, pg_dumpall and pgbench of ``major``
    server_bin: Path  # initdb, pg_ctl and postgres of ``major``
    major: str


def find_tools(pg_servers: list[Path]) -> Tools | str:
    """The newest packaged client programs and a server of their major; or why there are none."""
    clients = sorted((p for p in PACKAGED.glob("*/bin") if p.parent.name.replace(".", "").isdigit()
                      and all((p / n).is_file() for n in ("pg_dump", "pg_dumpall", "pgbench"))),
                     key=lambda p: float(p.parent.name))
    if not clients:
        return (f"no SSL-capable pg_dump, pg_dumpall and pgbench in {PACKAGED}/<major>/bin "
                "(apt-get install postgresql-client-15 postgresql-contrib-15, or postgresql-15)")
    client = clients[-1]
    try:
        server = server_binaries(client.parent.name, pg_servers).bin_dir
    except ToolError as exc:
        return str(exc)
    return Tools(client, server, client.parent.name)


def bridge_floor(server: LocalServer, dbs: list[Database], out_dir: Path, ca: Path) -> Measured:
    """The floor's pipeline with the bundled pg_dump through pgvault's bridge process (started and stopped
    within the timing, as a job does)."""
    t0 = time.perf_counter()
    with BridgeProcess(server.host, server.port, ca_file=ca) as bridge:
        started = time.perf_counter() - t0
        assert bridge.pid is not None
        before = procstat.cpu(bridge.pid).own
        env = {**dataset.pg_env(server), **bridge.libpq_env()}
        m = methods.floor(server, dbs, out_dir, env=env)
        m.cpu["bridge"] = procstat.cpu(bridge.pid).own - before
        t1 = time.perf_counter()
    m.wall += started + (time.perf_counter() - t1)
    return m


def phase(work: Path, stack: contextlib.ExitStack, spec: dataset.Spec, reps: int, pg_servers: list[Path],
          compare: Path | None, say: Callable[[str], None],
          interleave: Callable[[int, dict[str, Callable[[], Measured]]], dict[str, list[Measured]]],
          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Runs the SSL comparison; returns (keys, medians). Without the programs it needs, it says why in
    ``medians["ssl_status"]`` and measures nothing."""
    tools = find_tools(pg_servers)
    if isinstance(tools, str):
        return {}, {"ssl_status": f"not measured: {tools}"}
    ca = make_ca(work / "ssl-ca")
    server = LocalServer(work / "pg-ssl", bin_dir=tools.server_bin, ssl_cert=ca.server_cert,
                         ssl_key=ca.server_key, hba=["hostssl all all 127.0.0.1/32 scram-sha-256"],
                         settings={"max_wal_size": "4GB", "checkpoint_timeout": "30min"})
    stack.callback(server.stop)
    server.start()
    t0 = time.perf_counter()
    say(f"ssl: building the dataset ({spec}) on an SSL-only PostgreSQL {tools.major} server "
        f"({tools.server_bin}), 127.0.0.1:{server.port}")
    sizes = dataset.build(server, spec, say, client_bin=tools.client_bin)
    say(f"  {len(sizes)} databases, {sum(sizes.values()) / 1e6:.0f} MB on disk in {time.perf_counter() - t0:.0f} s")

    def registered(name: str, env: dict[str, str]) -> tuple[Service, int]:
        svc = Service(work / name, **env)
        stack.callback(svc.stop)
        svc.start()
        t0 = time.perf_counter()
        subclient, first = svc.register(server, name, version=tools.major, ssl_ca=ca.ca_cert)
        svc.wait(first, t0)
        svc.check_completed(first)
        return svc, subclient

    svc, subclient = registered("pgvault-ssl", {})
    dbs = methods.databases(server)
    floor_env = {**dataset.pg_env(server), "PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(ca.ca_cert)}
    seq = iter(range(1_000_000))
    runners: dict[str, Callable[[], Measured]] = {
        "ssl floor": lambda: methods.floor(server, dbs, work / f"ssl-floor-{next(seq)}", bin_dir=tools.client_bin,
                                           env=floor_env),
        "ssl bridge floor": lambda: bridge_floor(server, dbs, work / f"ssl-bridge-{next(seq)}", ca.ca_cert),
        "ssl pgvault": lambda: svc.backup(server, subclient),
    }
    if compare is not None:
        other, other_subclient = registered("pgvault-ssl-compared", {"PYTHONPATH": str(compare.resolve())})
        runners["ssl compared"] = lambda: other.backup(server, other_subclient)
    say(f"ssl: {reps} interleaved repetitions (floor: {tools.client_bin}/pg_dump, verify-full)")
    runs = interleave(reps, runners)
    last = svc.job(int(runs["ssl pgvault"][-1].extra["job_id"]))
    files = [Path(unquote(urlparse(d["location"]).path)) for d in last["databases"]]
    gb = methods.uncompressed_bytes(files) / 1e9
    svc.stop()
    if compare is not None:
        other.stop()

    def med(values: list[float]) -> float:
        return round(statistics.median(values), 3)

    walls = {k: med([m.wall for m in v]) for k, v in runs.items()}
    pgv = runs["ssl pgvault"]
    own = med([m.cpu["pgvault"] for m in pgv])
    children = med([m.cpu["pg_dump+zstd"] for m in pgv])
    bridge = med([m.cpu["bridge"] for m in runs["ssl bridge floor"]])
    medians = {
        "ssl_status": f"measured: PostgreSQL {tools.major} server, SSL floor with {tools.client_bin}/pg_dump",
        "ssl_floor_s": walls["ssl floor"], "ssl_bridge_floor_s": walls["ssl bridge floor"],
        "ssl_pgvault_s": walls["ssl pgvault"],
        "ssl_pg_dump_output_mb": round(gb * 1000, 1),
        "ssl_floor_cpu_s": {k: med([m.cpu.get(k, 0.0) for m in runs["ssl floor"]]) for k in runs["ssl floor"][0].cpu},
        "ssl_bridge_floor_cpu_s": {k: med([m.cpu.get(k, 0.0) for m in runs["ssl bridge floor"]])
                                   for k in runs["ssl bridge floor"][0].cpu},
        "ssl_pgvault_cpu_s": {"pgvault": own, "children (pg_dump, zstd, bridge)": children,
                              "server": med([m.cpu["server"] for m in pgv])},
        # Per GB of pg_dump's output (the -Z0 archive): about what crosses the bridge.
        "ssl_pgvault_service_cpu_s_per_gb": round(own / gb, 3) if gb else None,
        "ssl_bridge_cpu_s_per_gb": round(bridge / gb, 3) if gb else None,
        "ssl_all_s": {k: [round(m.wall, 3) for m in v] for k, v in runs.items()},
    }
    if compare is not None:
        cmp_runs = runs["ssl compared"]
        cmp_own = med([m.cpu["pgvault"] for m in cmp_runs])
        medians.update({
            "ssl_compared_pythonpath": str(compare), "ssl_compared_s": walls["ssl compared"],
            "ssl_compared_cpu_s": {"pgvault": cmp_own,
                                   "children": med([m.cpu["pg_dump+zstd"] for m in cmp_runs]),
                                   "server": med([m.cpu["server"] for m in cmp_runs])},
            "ssl_compared_service_cpu_s_per_gb": round(cmp_own / gb, 3) if gb else None,
        })
    keys = {
        "ssl_backup_vs_floor": round(walls["ssl pgvault"] / walls["ssl floor"], 3),
        "ssl_pgvault_cpu_share": med([m.cpu["pgvault"] / sum(m.cpu.values()) for m in pgv]),
    }
    return keys, medians
