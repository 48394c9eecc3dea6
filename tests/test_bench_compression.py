"""The compression benchmark runs end to end at a tiny size (figures are printed, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_compression_benchmark_writes_its_table(tmp_path):
    out = tmp_path / "compression.json"
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "bench" / "compression.py"), "--tiny", "--reps", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"pgbench", "documents"}
    for rows in results.values():
        assert {"none", "zstd-1", "gzip-6 (pg_dump -Fc default)"} <= set(rows)
        assert rows["zstd-1"]["ratio"] > 1 and rows["none"]["ratio"] == 1
