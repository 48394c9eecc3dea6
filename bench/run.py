"""pgvault's benchmark: whole-instance backup and restore against the floor and the peers' method,
an SSL backup against an SSL floor, pgvault's own CPU and memory, and the API under load. ``make bench``;
docs/performance.md explains it.

Everything it starts (PostgreSQL servers, ``pgvault serve``) listens on 127.0.0.1 only, lives in a
temporary folder and is stopped and removed by this script, on errors and Ctrl-C too.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import apiload, dataset, methods, procstat, sslbackup  # noqa: E402
from bench.methods import Measured  # noqa: E402
from bench.service import BASE, Service  # noqa: E402
from pgvault.pgtools.localserver import LocalServer  # noqa: E402

REQUIRED_KEYS = ["backup_vs_floor", "backup_vs_peers", "restore_vs_floor", "pgvault_cpu_share", "rss_mb_1x",
                 "rss_mb_5x", "api_read_vs_trivial", "api_p99_ms", "ssl_backup_vs_floor", "ssl_pgvault_cpu_share"]


def say(msg: str) -> None:
    print(msg, flush=True)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def interleave(reps: int, runners: dict[str, Callable[[], Measured]]) -> dict[str, list[Measured]]:
    """A B C, B C A, C A B, ...: every method runs ``reps`` times, in rotating order, so that a slow
    moment of a shared machine does not always land on the same method."""
    names = list(runners)
    out: dict[str, list[Measured]] = {n: [] for n in names}
    for r in range(reps):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            m = runners[name]()
            out[name].append(m)
            say(f"  rep {r + 1}/{reps} {name:<16} {m.wall:8.2f} s  {m.bytes / 1e6:9.1f} MB")
    return out


def cpu_medians(runs: list[Measured]) -> dict[str, float]:
    keys = sorted({k for m in runs for k in m.cpu})
    return {k: round(median([m.cpu.get(k, 0.0) for m in runs]), 3) for k in keys}


def backup_phase(work: Path, server: LocalServer, svc: Service, subclient: int, reps: int,
                 with_peers: bool) -> dict[str, list[Measured]]:
    dbs = methods.databases(server)
    seq = iter(range(1_000_000))
    runners: dict[str, Callable[[], Measured]] = {
        "floor": lambda: methods.floor(server, dbs, work / f"floor-{next(seq)}"),
        "pgvault": lambda: svc.backup(server, subclient),
    }
    if with_peers:
        runners["peers"] = lambda: methods.peers(server, dbs, work / f"peers-{next(seq)}")
    return interleave(reps, runners)


def prune_backups(svc: Service, keep_job: int | None) -> None:
    """Removes pgvault's stored backups except the one of ``keep_job`` (disk, and page cache)."""
    root = svc.home / "backups"
    for folder in root.glob("instance-*/*-job-*"):
        if keep_job is None or not folder.name.endswith(f"-job-{keep_job}"):
            shutil.rmtree(folder, ignore_errors=True)


def restore_available(svc: Service) -> bool:
    """Whether the service has the restore endpoint (POST /CreateTask), from its OpenAPI document."""
    r = svc.api().get(svc.url + "/openapi.json")
    spec = r.json() if r.status_code == 200 else {}
    return any(p.lower() == (BASE + "/createtask").lower() for p in spec.get("paths", {}))


def api_phase(work: Path, args: argparse.Namespace, catalog_server: LocalServer) -> dict[str, Any]:
    env: dict[str, str] = {}
    url = None
    if args.api_catalog == "postgresql":  # the scale-out's catalog: a database on a PostgreSQL server
        with catalog_server.connect() as conn:
            conn.execute("drop database if exists pgvault_api_catalog")
            conn.execute("create database pgvault_api_catalog")
        url = (f"postgresql+psycopg://{catalog_server.superuser}:{catalog_server.password}@127.0.0.1:"
               f"{catalog_server.port}/pgvault_api_catalog")
        env["PGVAULT_CATALOG_URL"] = url
    svc = Service(work / "pgvault-api", **env).start()
    try:
        t0 = time.perf_counter()
        job_id = apiload.seed_catalog(svc.home, args.api_instances, catalog_url=url)
        seeded = time.perf_counter() - t0
        say(f"  {args.api_instances} instances written to the catalog in {seeded:.1f} s; job {job_id}")
        r = svc.api().get("/Instance", params={"offset": args.api_instances - 5, "limit": 100})
        r.raise_for_status()
        assert len(r.json()["instanceProperties"]) >= 5, r.text
        headers = {"Authtoken": svc.token, "Accept": "application/json"}
        kinds = {"trivial": "GET /commandcenter/api/", "job": f"GET /Job/{job_id}",
                 "instances": f"GET /Instance?offset=..&limit={args.api_page}"}
        results: dict[str, list[apiload.LoadResult]] = {k: [] for k in kinds}
        for k in kinds:  # warm-up: connections, caches, the first import of each route
            apiload.run_load(svc.port, apiload.paths_for(k, BASE, min(200, args.api_requests), job_id,
                                                         args.api_instances, args.api_page, 0), 8, headers)
        for rnd in range(args.api_rounds):
            order = list(kinds)[rnd % 3:] + list(kinds)[: rnd % 3]
            for k in order:
                paths = apiload.paths_for(k, BASE, args.api_requests, job_id, args.api_instances, args.api_page,
                                          rnd + 1)
                before = procstat.cpu(svc.pid)
                res = apiload.run_load(svc.port, paths, args.api_clients, headers)
                res.server_cpu_s = (procstat.cpu(svc.pid) - before).own
                results[k].append(res)
                say(f"  round {rnd + 1}/{args.api_rounds} {k:<10} {res.rps:8.0f} req/s  p50 {res.pct(0.5):6.1f} ms"
                    f"  p99 {res.pct(0.99):6.1f} ms  errors {res.errors}")
        out = {k: apiload.summarize(v) for k, v in results.items()}
        out["endpoints"] = kinds  # type: ignore[assignment]
        out["rss_hwm_mb"] = round(svc.rss_hwm_mb(), 1)  # type: ignore[assignment]
        return out
    finally:
        svc.stop()


def pg_servers() -> list[Path]:
    """PGVAULT_PG_SERVERS, as the service reads it: folders holding <major>/bin."""
    return [Path(p) for p in os.environ.get("PGVAULT_PG_SERVERS", "").split(os.pathsep) if p]


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "src"], capture_output=True,
                                text=True).stdout.strip())
    return {"cpus": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in load], "commit": commit,
            "src_modified": dirty, "python": sys.version.split()[0]}


def r3(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale-factor", type=int, default=1, help="dataset size: 1 = default, 5 = every database 5x")
    p.add_argument("--memory-scale", type=int, default=5,
                   help="second dataset size for pgvault's CPU/RSS (rss_mb_5x); 0 skips it")
    p.add_argument("--tiny", action="store_true", help="a few MB of data (for the test suite)")
    p.add_argument("--repeat", type=int, default=5, help="repetitions of each backup method")
    p.add_argument("--restore-repeat", type=int, default=3, help="repetitions of each restore method")
    p.add_argument("--api-requests", type=int, default=1500, help="requests per endpoint per round")
    p.add_argument("--api-rounds", type=int, default=3)
    p.add_argument("--api-clients", type=int, default=32)
    p.add_argument("--api-instances", type=int, default=10_000)
    p.add_argument("--api-page", type=int, default=100, help="GET /Instance page size")
    p.add_argument("--api-catalog", choices=["sqlite", "postgresql"], default="sqlite",
                   help="the API service's catalog: SQLite (the default) or a database on the source server")
    p.add_argument("--skip", action="append", default=[], choices=["backup", "restore", "memory", "ssl", "api"])
    p.add_argument("--compare-pythonpath", type=Path, default=None,
                   help="ssl phase: also back up with a `pgvault serve` run with PYTHONPATH=this folder (another "
                        "checkout's src, e.g. the code before a change), interleaved with this one's")
    p.add_argument("--workdir", type=Path, default=None, help="where the temporary folder goes")
    p.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = p.parse_args(argv)

    if shutil.which("zstd") is None:
        say("the floor pipeline needs the zstd command-line tool: apt-get install zstd")
        return 2

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    started = dt.datetime.now(dt.UTC)
    result: dict[str, Any] = {"started_at": started.isoformat(timespec="seconds"), "machine": machine(),
                              "conditions": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pgvault-bench-", dir=args.workdir)))
        say(f"work folder {work} (removed at the end)")
        source = LocalServer(work / "pg-source", settings={"max_wal_size": "4GB", "checkpoint_timeout": "30min"})
        stack.callback(source.stop)
        source.start()
        spec = dataset.Spec.make(args.scale_factor, args.tiny)
        if "backup" not in args.skip or ("memory" not in args.skip and args.memory_scale):
            t0 = time.perf_counter()
            say(f"building the dataset ({spec}) on 127.0.0.1:{source.port}")
            sizes = dataset.build(source, spec, say)
            result["dataset"] = {"spec": vars(spec), "bytes_on_disk": sum(sizes.values()), "databases": len(sizes),
                                 "build_seconds": round(time.perf_counter() - t0, 1)}
            say(f"  {len(sizes)} databases, {sum(sizes.values()) / 1e6:.0f} MB on disk")

        keys: dict[str, Any] = dict.fromkeys(REQUIRED_KEYS)
        medians: dict[str, Any] = {}

        if "backup" not in args.skip:
            svc = Service(work / "pgvault-1x")
            stack.callback(svc.stop)
            svc.start()
            t0 = time.perf_counter()
            subclient, first_job = svc.register(source)
            first = svc.wait(first_job, t0)
            svc.check_completed(first_job)
            say(f"registered; first backup (POST /Instance -> Completed) {first:.2f} s")
            medians["pgvault_first_backup_s"] = round(first, 3)
            say(f"backup: {args.repeat} interleaved repetitions")
            runs = backup_phase(work, source, svc, subclient, args.repeat, with_peers=True)
            floor_s, peers_s, pgv_s = (median([m.wall for m in runs[k]]) for k in ("floor", "peers", "pgvault"))
            pgv_cpu = cpu_medians(runs["pgvault"])
            shares = [m.cpu["pgvault"] / sum(m.cpu.values()) for m in runs["pgvault"]]
            client_shares = [m.cpu["pgvault"] / (m.cpu["pgvault"] + m.cpu["pg_dump+zstd"]) for m in runs["pgvault"]]
            floor_cpu = cpu_medians(runs["floor"])
            last = svc.job(int(runs["pgvault"][-1].extra["job_id"]))
            files = [Path(unquote(urlparse(d["location"]).path)) for d in last["databases"]]
            raw_bytes = methods.uncompressed_bytes(files)
            medians.update({
                "floor_s": r3(floor_s), "peers_s": r3(peers_s), "pgvault_s": r3(pgv_s),
                "floor_mb": round(median([m.bytes for m in runs["floor"]]) / 1e6, 1),
                "peers_mb": round(median([m.bytes for m in runs["peers"]]) / 1e6, 1),
                "pgvault_mb": round(median([m.bytes for m in runs["pgvault"]]) / 1e6, 1),
                "floor_cpu_s": floor_cpu, "peers_cpu_s": cpu_medians(runs["peers"]), "pgvault_cpu_s": pgv_cpu,
                "pgvault_cpu_share_of_client": r3(median(client_shares)),
                "pg_dump_output_mb": round(raw_bytes / 1e6, 1),
                "pgvault_rss_sampled_mb_1x": round(max(m.extra["rss_sampled_mb"] for m in runs["pgvault"]), 1),
                "pgvault_rss_at_start_mb": round(svc.rss_at_start_mb, 1),
                "pgvault_rss_peak_of_start_and_login_mb": round(svc.rss_start_peak_mb, 1),
                "all_s": {k: [round(m.wall, 3) for m in v] for k, v in runs.items()},
            })
            rss_1x = max(m.extra["rss_peak_mb"] for m in runs["pgvault"])
            keys.update(backup_vs_floor=r3(pgv_s / floor_s), backup_vs_peers=r3(peers_s / pgv_s),
                        pgvault_cpu_share=r3(median(shares)), rss_mb_1x=round(rss_1x, 1))

            if "restore" not in args.skip:
                last_job = int(runs["pgvault"][-1].extra["job_id"])
                prune_backups(svc, last_job)
                say(f"restore: {args.restore_repeat} interleaved repetitions into a fresh server")
                target = LocalServer(work / "pg-target",
                                     settings={"max_wal_size": "4GB", "checkpoint_timeout": "30min"})
                stack.callback(target.stop)
                target.start()
                dbs = [d for d in methods.databases(source) if d.name != "postgres"]  # the empty one stays
                methods.peers(source, dbs, work / "peers-archives", keep=True)
                archives = {d.name: work / "peers-archives" / f"{d.name}.dump" for d in dbs}
                job = svc.job(last_job)
                pgv_files = {d["name"]: Path(unquote(urlparse(d["location"]).path)) for d in job["databases"]
                             if d["name"] in archives}
                runners: dict[str, Callable[[], Measured]] = {
                    "pg_restore -j2": lambda: methods.restore_floor(target, archives),
                    "pgvault files": lambda: methods.restore_pgvault_files(target, pgv_files),
                }
                available = restore_available(svc)
                if available:
                    src_instance = int(svc.job(last_job)["subclient"]["instanceId"])
                    _, tjob = svc.register(target, "bench-target")  # its own first backup: waited for, not timed
                    svc.wait(tjob, time.perf_counter())
                    tgt_instance = int(svc.job(tjob)["subclient"]["instanceId"])
                    prune_backups(svc, last_job)
                    runners["pgvault restore"] = lambda: svc.restore(target, src_instance, tgt_instance, last_job,
                                                                     list(archives))
                    result["restore_status"] = "measured: POST /CreateTask -> Completed"
                else:
                    result["restore_status"] = "not available: pgvault has no restore endpoint (POST /CreateTask)"
                    say(f"  pgvault restore job: {result['restore_status']}")
                rruns = interleave(args.restore_repeat, runners)
                rfloor = median([m.wall for m in rruns["pg_restore -j2"]])
                rpgv = median([m.wall for m in rruns["pgvault restore"]]) if available else None
                medians.update({
                    "restore_floor_s": r3(rfloor),
                    "restore_pgvault_files_by_hand_s": r3(median([m.wall for m in rruns["pgvault files"]])),
                    "restore_pgvault_s": r3(rpgv),
                    "restore_floor_cpu_s": cpu_medians(rruns["pg_restore -j2"]),
                    "restore_pgvault_files_cpu_s": cpu_medians(rruns["pgvault files"]),
                    "restore_pgvault_cpu_s": cpu_medians(rruns["pgvault restore"]) if available else None,
                    "restore_all_s": {k: [round(m.wall, 3) for m in v] for k, v in rruns.items()},
                })
                keys["restore_vs_floor"] = r3(rpgv / rfloor) if rpgv is not None else None
            svc.stop()

        if "memory" not in args.skip and args.memory_scale:
            mspec = dataset.Spec.make(args.scale_factor * args.memory_scale, args.tiny)
            say(f"memory: rebuilding the dataset at {args.memory_scale}x ({mspec})")
            t0 = time.perf_counter()
            msizes = dataset.build(source, mspec, say)
            say(f"  {sum(msizes.values()) / 1e6:.0f} MB on disk in {time.perf_counter() - t0:.0f} s")
            svc5 = Service(work / "pgvault-5x")
            stack.callback(svc5.stop)
            svc5.start()
            t0 = time.perf_counter()
            subclient5, job5 = svc5.register(source, "bench-5x")
            svc5.wait(job5, t0)
            svc5.check_completed(job5)
            prune_backups(svc5, None)
            dbs5 = methods.databases(source)
            runs5 = interleave(1, {"floor": lambda: methods.floor(source, dbs5, work / "floor-5x"),
                                   "pgvault": lambda: svc5.backup(source, subclient5)})
            m5 = runs5["pgvault"][0]
            keys["rss_mb_5x"] = round(m5.extra["rss_peak_mb"], 1)
            medians.update({
                "memory_dataset_bytes": sum(msizes.values()),
                "floor_5x_s": r3(runs5["floor"][0].wall), "pgvault_5x_s": r3(m5.wall),
                "pgvault_cpu_s_5x": {k: round(v, 3) for k, v in m5.cpu.items()},
                "pgvault_cpu_share_5x": r3(m5.cpu["pgvault"] / sum(m5.cpu.values())),
                "pgvault_rss_sampled_mb_5x": round(m5.extra["rss_sampled_mb"], 1),
            })
            svc5.stop()

        if "ssl" not in args.skip:
            ssl_keys, ssl_medians = sslbackup.phase(work, stack, spec, args.repeat, pg_servers(),
                                                    args.compare_pythonpath, say, interleave)
            keys.update(ssl_keys)
            medians.update(ssl_medians)
            say(f"  ssl: {ssl_medians['ssl_status']}")

        if "api" not in args.skip:
            say(f"api: {args.api_rounds} rounds x {args.api_requests} requests per endpoint, "
                f"{args.api_clients} clients, {args.api_instances} instances, {args.api_catalog} catalog")
            api = api_phase(work, args, source)
            reads = [api["job"], api["instances"]]
            keys.update(api_read_vs_trivial=r3(min(r["rps"] for r in reads) / api["trivial"]["rps"]),
                        api_p99_ms=round(max(r["p99_ms"] for r in reads), 1))
            medians["api"] = api

        with contextlib.suppress(Exception):
            shutil.rmtree(work / "peers-archives")
    result.update(keys)
    result["medians"] = medians
    result["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    say(f"written to {args.output}")
    return 0


TARGETS: dict[str, tuple[str, float]] = {
    "backup_vs_floor": ("<=", 1.10), "backup_vs_peers": (">=", 1.8), "restore_vs_floor": ("<=", 1.10),
    "pgvault_cpu_share": ("<=", 0.05), "rss_mb_1x": ("<=", 150), "rss_mb_5x": ("<=", 150),
    "api_read_vs_trivial": (">=", 0.5), "api_p99_ms": ("<=", 50),
    "ssl_backup_vs_floor": ("<=", 1.10), "ssl_pgvault_cpu_share": ("<=", 0.05),
}


def print_table(result: dict[str, Any]) -> None:
    m = result["medians"]
    say("")
    say("medians (seconds)                 wall      stored MB")
    for label, key, mb in (("floor (pg_dump -Z0 | zstd -1, 2 at a time)", "floor_s", "floor_mb"),
                           ("peers (pg_dump -Fc, sequential)", "peers_s", "peers_mb"),
                           ("pgvault (POST -> Completed)", "pgvault_s", "pgvault_mb"),
                           ("restore: pg_restore -j2 per database", "restore_floor_s", None),
                           ("restore: pgvault files by hand", "restore_pgvault_files_by_hand_s", None),
                           ("restore: pgvault restore job", "restore_pgvault_s", None),
                           ("ssl floor (SSL-capable pg_dump, verify-full)", "ssl_floor_s", None),
                           ("ssl bridge floor (pg_dump via the bridge)", "ssl_bridge_floor_s", None),
                           ("ssl pgvault (POST -> Completed)", "ssl_pgvault_s", None)):
        if key in m:
            wall = "n/a" if m[key] is None else f"{m[key]:.2f}"
            stored = f"{m[mb]:.1f}" if mb and mb in m else ""
            say(f"  {label:<44} {wall:>8}  {stored:>9}")
    if m.get("ssl_pgvault_service_cpu_s_per_gb") is not None:
        say(f"  ssl: service process CPU {m['ssl_pgvault_service_cpu_s_per_gb']:.3f} s/GB of pg_dump output; "
            f"bridge process {m['ssl_bridge_cpu_s_per_gb']:.3f} s/GB")
        if m.get("ssl_compared_service_cpu_s_per_gb") is not None:
            say(f"  ssl: compared service ({m['ssl_compared_pythonpath']}): {m['ssl_compared_s']:.2f} s, service "
                f"process CPU {m['ssl_compared_service_cpu_s_per_gb']:.3f} s/GB")
    if "api" in m:
        say("api                                req/s     p50 ms    p99 ms   server CPU ms/request")
        for k, v in m["api"].items():
            if isinstance(v, dict) and "rps" in v:
                say(f"  {k:<30} {v['rps']:9.0f} {v['p50_ms']:9.1f} {v['p99_ms']:9.1f}"
                    f"   {v['server_cpu_ms_per_request']:6.2f}")
    say(f"load average at start {result['machine']['loadavg_at_start']}, at end {result['loadavg_at_end']} "
        f"({result['machine']['cpus']} CPUs)")
    say("")
    say("key                       value      target   met")
    for key in REQUIRED_KEYS:
        value = result.get(key)
        op, goal = TARGETS[key]
        if value is None:
            say(f"  {key:<22} {'n/a':>9}   {op} {goal:<6}  -")
            continue
        ok = value <= goal if op == "<=" else value >= goal
        say(f"  {key:<22} {value:9.3f}   {op} {goal:<6}  {'yes' if ok else 'NO'}")
    if result.get("restore_status"):
        say(f"  restore: {result['restore_status']}")
    if m.get("ssl_status"):
        say(f"  ssl: {m['ssl_status']}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; everything it started was stopped", file=sys.stderr)
        sys.exit(130)
