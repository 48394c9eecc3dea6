"""Which compression for pg_dump's output: zstd (levels 1, 3, 6, 9) against zlib/gzip (1, 6, pg_dump's
own default) and no compression, on the benchmark's dataset.

Each database is dumped once as an uncompressed custom archive (``pg_dump -Fc -Z0``, what pgvault
compresses), then every codec compresses the same bytes in 1 MiB chunks, as pgvault's stream does,
interleaved and repeated; the table gives the median seconds of compressor CPU, MB/s, and the ratio,
per kind of database (pgbench-like vs wide text/JSON documents).

    .venv/bin/python bench/compression.py [--tiny] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.dataset import Spec, build, pg_env
from pgvault.pgtools.binaries import bundled_bin_dir
from pgvault.pgtools.localserver import LocalServer

CHUNK = 1 << 20


def _zstd(level: int) -> Callable[[bytes], int]:
    def run(data: bytes) -> int:
        c = zstandard.ZstdCompressor(level=level).compressobj()
        out = 0
        for i in range(0, len(data), CHUNK):
            out += len(c.compress(data[i : i + CHUNK]))
        return out + len(c.flush())
    return run


def _zlib(level: int) -> Callable[[bytes], int]:
    def run(data: bytes) -> int:
        c = zlib.compressobj(level)
        out = 0
        for i in range(0, len(data), CHUNK):
            out += len(c.compress(data[i : i + CHUNK]))
        return out + len(c.flush())
    return run


CODECS: dict[str, Callable[[bytes], int]] = {
    "none": len,
    "zstd-1": _zstd(1), "zstd-3": _zstd(3), "zstd-6": _zstd(6), "zstd-9": _zstd(9),
    "gzip-1": _zlib(1), "gzip-6 (pg_dump -Fc default)": _zlib(6),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="a few MB, to prove the script works")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "compression.json")
    args = ap.parse_args(argv)
    spec = Spec.make(1, args.tiny)
    with tempfile.TemporaryDirectory(prefix="pgvault-bench-zstd-") as tmp, LocalServer(Path(tmp) / "pg") as server:
        print("building the dataset ...", flush=True)
        build(server, spec, log=lambda m: print(m, flush=True))
        raw: dict[str, bytes] = {}
        for kind, names in (("pgbench", [n for n in spec.databases() if n != "bench_wide"]),
                            ("documents", ["bench_wide"])):
            parts = []
            for name in names:
                out = subprocess.run([str(bundled_bin_dir() / "pg_dump"), "-Fc", "-Z0"], env=pg_env(server, name),
                                     check=True, capture_output=True)
                parts.append(out.stdout)
            raw[kind] = b"".join(parts)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for kind, data in raw.items():
        times: dict[str, list[float]] = {c: [] for c in CODECS}
        sizes: dict[str, int] = {}
        for _ in range(args.reps):
            for name, codec in CODECS.items():  # interleaved: A B C ... A B C ...
                t0 = time.process_time()
                sizes[name] = codec(data)
                times[name].append(time.process_time() - t0)
        results[kind] = {
            name: {"seconds": statistics.median(times[name]),
                   "mb_per_s": len(data) / 1e6 / max(statistics.median(times[name]), 1e-9),
                   "ratio": len(data) / max(sizes[name], 1), "bytes_in": len(data), "bytes_out": sizes[name]}
            for name in CODECS
        }
    print(f"\n{'codec':<30} {'kind':<10} {'CPU s':>8} {'MB/s':>9} {'ratio':>7}")
    for kind, rows in results.items():
        for name, r in rows.items():
            print(f"{name:<30} {kind:<10} {r['seconds']:>8.3f} {r['mb_per_s']:>9.0f} {r['ratio']:>7.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"tiny": args.tiny, "reps": args.reps, "results": results}, indent=2))
    print(f"\nwritten {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
