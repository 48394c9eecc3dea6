"""A property-based fuzz run of the whole API: Schemathesis, from the service's own OpenAPI document, against
a real ``pgvault serve`` with a real login, for a bounded time (PGVAULT_FUZZ_SECONDS, 120 by default).

Checks: no server error; every status code, content type and error body as the document declares them;
no protected operation that answers without a token. It keeps going after the first failure and reports
them all. The service has a home of its own (the fuzz creates plans, credentials and cloud accounts) and is
fenced: it may reach only loopback servers (PGVAULT_ALLOWED_TARGETS) and write local destinations only
under this test's folder (PGVAULT_LOCAL_ROOTS), so no fuzzed host name or path leaves this machine's
loopback or the test's folder. Logout and RenewLoginToken are left out: they end the session the fuzz
runs with (tests/test_auth.py covers them).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.service import Service

SECONDS = int(os.environ.get("PGVAULT_FUZZ_SECONDS", "120"))
TOOL_FAULT = "AST constructor recursion depth mismatch"
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
          "ignored_auth")


@pytest.mark.xdist_group("fuzz")
def test_the_api_survives_a_fuzzer(tmp_path: Path):
    cli = Path(sys.executable).parent / "schemathesis"
    if not cli.exists():
        pytest.skip("schemathesis is not installed (make install brings it)")
    roots = tmp_path / "destinations"
    roots.mkdir()
    svc = Service(tmp_path / "home", PGVAULT_ALLOWED_TARGETS="127.0.0.0/8", PGVAULT_LOCAL_ROOTS=str(roots),
                  PGVAULT_CONNECT_TIMEOUT_SECONDS="2", PGVAULT_LOG_LEVEL="INFO").start()
    try:
        api = svc.login()
        token = api.token
        api.close()
        config = tmp_path / "schemathesis.toml"
        config.write_text('[auth.openapi.APIKeyHeader]\napi_key = "${PGVAULT_FUZZ_TOKEN}"\n')
        argv = [str(cli), "--config-file", str(config), "--no-color", "run", f"{svc.url}/openapi.json",
                "--checks", CHECKS, "--phases", "examples,coverage,fuzzing", "--max-time", str(SECONDS),
                "--continue-on-failure", "--workers", "2", "--request-timeout", "30", "--seed", "20261204",
                "--exclude-path-regex", "/(Logout|RenewLoginToken)$"]
        env = {**os.environ, "PGVAULT_FUZZ_TOKEN": token}
        proc = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=SECONDS + 300)
        out = proc.stdout + proc.stderr
        if proc.returncode != 0 and TOOL_FAULT in out and "FAILURES" not in out:
            # CPython 3.11's parser failing inside Hypothesis' own code generation (seen twice in ~20 runs):
            # a fault of the fuzzer, not an answer of pgvault's; run again, once, with another seed
            argv[argv.index("--seed") + 1] = "20261205"
            proc = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True,
                                  timeout=SECONDS + 300)
            out = proc.stdout + proc.stderr
        summary = re.search(r"(\d+) generated.*", out)
        print(f"fuzz: {summary.group(0) if summary else '?'} in {SECONDS} s")  # the figures for the note
        assert proc.returncode == 0, out[-12000:]
        assert "Tested: " in out and summary is not None, out[-4000:]
        log = svc.log_text()
        assert "Traceback" not in log, log[-6000:]
    finally:
        svc.stop()
        shutil.rmtree(roots, ignore_errors=True)
