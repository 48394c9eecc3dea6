"""The benchmark harness runs end to end at its tiny size and writes its results (no timing is asserted:
the figures are for people, see docs/performance.md)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KEYS = ["backup_vs_floor", "backup_vs_peers", "restore_vs_floor", "pgvault_cpu_share", "rss_mb_1x", "rss_mb_5x",
        "api_read_vs_trivial", "api_p99_ms"]


def run_bench(tmp_path: Path, *args: str) -> tuple[str, dict]:
    """bench/run.py at its tiny size with a small API load and ``args``; its stdout and its results."""
    out = tmp_path / "latest.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--tiny", "--api-requests", "40", "--api-rounds", "1",
         "--api-clients", "4", "--api-instances", "300", "--workdir", str(tmp_path), "--output", str(out), *args],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


@pytest.mark.skipif(shutil.which("zstd") is None, reason="the floor pipeline needs the zstd CLI (apt-get install zstd)")
def test_bench_runs_at_tiny_size(tmp_path: Path) -> None:
    _, result = run_bench(tmp_path, "--repeat", "1", "--restore-repeat", "1", "--memory-scale", "2")
    for key in KEYS:
        value = result[key]
        if key == "restore_vs_floor" and result["restore_status"].startswith("not available"):
            assert value is None
            continue
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, value)
    medians = result["medians"]
    for key in ("floor_s", "peers_s", "pgvault_s", "restore_floor_s"):
        assert medians[key] > 0
    # The SSL backup: measured wherever an SSL-capable pg_dump and a server of its major are installed.
    if medians["ssl_status"].startswith("measured"):
        for key in ("ssl_backup_vs_floor", "ssl_pgvault_cpu_share"):
            assert isinstance(result[key], float) and result[key] > 0, (key, result[key])
        for key in ("ssl_floor_s", "ssl_bridge_floor_s", "ssl_pgvault_s", "ssl_bridge_cpu_s_per_gb"):
            assert medians[key] > 0, (key, medians[key])
        assert medians["ssl_pgvault_service_cpu_s_per_gb"] >= 0
    else:
        assert result["ssl_backup_vs_floor"] is None, medians["ssl_status"]
    assert medians["api"]["job"]["errors"] == 0 and medians["api"]["instances"]["errors"] == 0
    assert list(tmp_path.iterdir()) == [tmp_path / "latest.json"], "the work folder (servers, backups) was not removed"


@pytest.mark.skipif(shutil.which("zstd") is None, reason="the bench checks for the zstd CLI first")
def test_bench_measures_the_api_on_a_postgresql_catalog(tmp_path: Path) -> None:
    stdout, result = run_bench(tmp_path, "--skip", "backup", "--skip", "restore", "--skip", "memory", "--skip", "ssl",
                               "--api-catalog", "postgresql")
    assert "postgresql catalog" in stdout
    api = result["medians"]["api"]
    assert api["job"]["errors"] == 0 and api["instances"]["errors"] == 0 and api["job"]["rps"] > 0
    assert result["backup_vs_floor"] is None and result["ssl_backup_vs_floor"] is None
    assert result["api_read_vs_trivial"] > 0
    assert list(tmp_path.iterdir()) == [tmp_path / "latest.json"], "the work folder (servers, backups) was not removed"
