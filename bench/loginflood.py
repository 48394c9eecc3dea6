"""A flood of wrong-password logins against a running ``pgvault serve``, and what it costs everyone else.

    .venv/bin/python -m bench.loginflood [--flooders 200] [--seconds 20] [--python PATH]

One run, phases on the same service: first quiet, then while a separate process keeps ``--flooders``
wrong-password logins for ``admin`` in flight at once (each answered request is sent again at once). In
each phase one client, sequentially, logs in as the legitimate user (from its usual address, 127.0.0.3,
and from an address never seen before, a new 127.0.2.x each time: the user travelling) and reads
GET /Instance (a page of 100), GET /V2/Plan and GET /Job/{id}; the latencies of the phases are printed
side by side, with the statuses answered. Two floods: from one address
(127.0.0.2) and from ``--flooders`` addresses (127.0.1.x, one each: a botnet), since the throttle answers
them differently. ``--python`` runs the service with another interpreter (the main branch's venv, say),
for the figures before the throttle; the bench's own code is the same.

Everything listens on 127.0.0.1 and lives in a temporary folder removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing as mp
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import apiload  # noqa: E402
from bench.service import BASE, Service  # noqa: E402

USUAL = "127.0.0.3"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class OtherPython(Service):
    """The bench's service, run by another interpreter (``--python``)."""

    def __init__(self, home: Path, python: str, **env: str) -> None:
        super().__init__(home, **env)
        self.python = python

    def start(self) -> Service:
        self.home.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen([self.python, "-m", "pgvault.cli", "serve"], env=self.env, stdout=log,
                                     stderr=log, start_new_session=True)
        log.close()
        try:
            return self._ready()
        except BaseException:
            self.stop()
            raise


# -- the flood (a process of its own: its client CPU is not the measuring client's) -----------------

async def _flood(url: str, flooders: int, spread: bool, stop: mp.synchronize.Event, counts: mp.Queue) -> None:
    seen: Counter[int] = Counter()
    body = {"username": "admin", "password": b64("not-the-password")}
    tls = ssl.create_default_context()  # one for all: each client loading its own takes ~70 ms of CPU
    clients = [httpx.AsyncClient(base_url=url + BASE, timeout=300, transport=httpx.AsyncHTTPTransport(
        verify=tls, local_address=f"127.0.1.{i % 250 + 1}" if spread else "127.0.0.2")) for i in range(flooders)]

    async def one(http: httpx.AsyncClient) -> None:
        while not stop.is_set():
            try:
                r = await http.post("/Login", json=body)
                seen[r.status_code] += 1
            except httpx.HTTPError:
                seen[0] += 1

    counts.put("ready")  # every client made: the flood starts now, all at once
    try:
        await asyncio.gather(*(one(http) for http in clients))
    finally:
        for http in clients:
            await http.aclose()
    counts.put(dict(seen))


def flood_process(url: str, flooders: int, spread: bool, stop: mp.synchronize.Event, counts: mp.Queue) -> None:
    asyncio.run(_flood(url, flooders, spread, stop, counts))


# -- the measuring client -------------------------------------------------------------------------------

def measure(svc: Service, job_id: int, seconds: float, first: int) -> tuple[dict[str, list[float]], Counter[str]]:
    """Sequential rounds for ``seconds``: each round two logins and three reads, each timed (ms)."""
    out: dict[str, list[float]] = {k: [] for k in ("login (usual address)", "login (new address)",
                                                    "GET /Instance", "GET /V2/Plan", "GET /Job/{id}")}
    codes: Counter[str] = Counter()
    reads = httpx.Client(base_url=svc.url + BASE, timeout=300, headers={"Authtoken": svc.token})
    paths = {"GET /Instance": "/Instance?offset=0&limit=100", "GET /V2/Plan": "/V2/Plan",
             "GET /Job/{id}": f"/Job/{job_id}"}
    deadline = time.monotonic() + seconds
    fresh = iter(f"127.0.2.{n}" for n in range(first, 255))
    try:
        while time.monotonic() < deadline or not out["GET /Job/{id}"]:
            for label, address in (("login (usual address)", USUAL), ("login (new address)", next(fresh))):
                with httpx.Client(base_url=svc.url + BASE, timeout=300,
                                  transport=httpx.HTTPTransport(local_address=address)) as http:
                    t0 = time.perf_counter()
                    r = http.post("/Login", json={"username": "admin", "password": b64(svc.password)})
                    out[label].append((time.perf_counter() - t0) * 1000)
                    codes[f"{label}: {r.status_code}"] += 1
            for label, path in paths.items():
                t0 = time.perf_counter()
                r = reads.get(path)
                out[label].append((time.perf_counter() - t0) * 1000)
                codes[f"{label}: {r.status_code}"] += 1
    finally:
        reads.close()
    return out, codes


def summary(xs: list[float]) -> str:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, int(0.95 * len(xs)))]
    return f"{statistics.median(xs):8.1f} {p95:8.1f} {xs[-1]:8.1f}"


def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="pgvault-loginflood-"))
    env = {"PGVAULT_SCHEDULER_SECONDS": "3600", "PGVAULT_WORKERS": "0"}
    svc = (OtherPython(tmp / "home", args.python, **env) if args.python else Service(tmp / "home", **env))
    try:
        svc.start()
        svc.stop()  # the catalog exists now: seed it while no service holds it
        job_id = apiload.seed_catalog(svc.home, args.instances)
        svc.start()
        print(f"pgvault serve ({args.python or sys.executable}), {args.instances} instances, "
              f"{args.flooders} flooders, {args.seconds:.0f} s per phase", flush=True)
        results: dict[str, dict[str, list[float]]] = {}
        results["quiet"], codes = measure(svc, job_id, args.seconds, 1)
        print(f"  quiet: {dict(codes)}", flush=True)
        for n, spread in enumerate((False, True)):
            name = f"flood from {f'{min(args.flooders, 250)} addresses' if spread else 'one address'}"
            stop, counts = mp.Event(), mp.Queue()
            proc = mp.Process(target=flood_process, args=(svc.url, args.flooders, spread, stop, counts))
            proc.start()
            assert counts.get(timeout=300) == "ready"
            time.sleep(2)  # the flood under way
            results[name], codes = measure(svc, job_id, args.seconds, 85 * (n + 1))
            stop.set()
            flood = counts.get(timeout=300)
            proc.join(60)
            print(f"  {name}: measured {dict(codes)}; flood answers {flood}", flush=True)
            time.sleep(1)
        labels = list(results["quiet"])
        print(f"\n{'ms (median, p95, max)':<24}" + "".join(f"{phase:>30}" for phase in results))
        for label in labels:
            print(f"{label:<24}" + "".join(f"{summary(results[p][label]):>30}" for p in results))
    finally:
        svc.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flooders", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--python", help="the interpreter that runs the service (default: this one)")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
