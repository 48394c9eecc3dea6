"""A property-based fuzz run of the whole API: Schemathesis, from the service's own OpenAPI document, against
a real ``pgvault serve`` with a real login, for a bounded time (PGVAULT_FUZZ_SECONDS, 120 by default).

Checks: no server error; every status code, content type and error body as the document declares them;
no protected operation that answers without a token. It keeps going after the first failure and reports
them all. The service has a home of its own (the fuzz creates plans, credentials and cloud accounts) and is
fenced: it may reach only loopback servers (PGVAULT_ALLOWED_TARGETS) and write local destinations only
under this test's folder (PGVAULT_LOCAL_ROOTS), so no fuzzed host name or path leaves this machine's
loopback or the test's folder. Logout, RenewLoginToken, logoutEverywhere, DELETE /Session/{id} and an
administrator's resetPassword are left out: they end the session the fuzz runs with (tests/test_auth.py,
test_users.py and test_access.py cover them).

The fuzz may mutate the catalog, so the service runs against its own PGVAULT_HOME and as an unprivileged
user: when the tests run as root, the dedicated account ``pgvault_fuzz`` (tests/support/unprivileged.py),
owning that home and the destinations folder and nothing else; otherwise the current user. The code may sit
under /root (0700) on a CI machine, so the service runs in a private mount namespace where the folders it
cannot traverse are covered by a tmpfs holding read-only binds of exactly the code it needs (no copy, no
permission changed). The alternatives were weighed and set aside: a venv of its own needs a readable
interpreter too, so a copy of about 1.6 GB (pyenv's prefix and the environment) or a reinstall per run
(2.5 minutes measured); and
dropping privileges after importing does not even start (sqlite3 is imported lazily on start-up; apprise's
plugins and codecs would follow on the fuzz's first notification or odd host name). The test proves the
uid from /proc: the process that holds the listening socket runs as the account with no capabilities, and
everything in the home, the catalog first, belongs to it. Schemathesis, the client, runs as the tests do.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support import unprivileged
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
    acct = unprivileged.account()
    home = unprivileged.own_folder(tmp_path / "home", acct)
    roots = unprivileged.own_folder(tmp_path / "destinations", acct)
    svc = Service(home, wrapper=unprivileged.wrapper(acct, writable=[home, roots], cwd=home), HOME=str(home),
                  PGVAULT_ALLOWED_TARGETS="127.0.0.0/8", PGVAULT_LOCAL_ROOTS=str(roots),
                  PGVAULT_CONNECT_TIMEOUT_SECONDS="2", PGVAULT_LOG_LEVEL="INFO").start()
    try:
        _runs_as(acct, svc)
        api = svc.login()
        token = api.token
        api.close()
        config = tmp_path / "schemathesis.toml"
        config.write_text('[auth.openapi.APIKeyHeader]\napi_key = "${PGVAULT_FUZZ_TOKEN}"\n')
        argv = [str(cli), "--config-file", str(config), "--no-color", "run", f"{svc.url}/openapi.json",
                "--checks", CHECKS, "--phases", "examples,coverage,fuzzing", "--max-time", str(SECONDS),
                "--continue-on-failure", "--workers", "2", "--request-timeout", "30", "--seed", "20261204",
                "--exclude-path-regex", "/(Logout|RenewLoginToken|logoutEverywhere|resetPassword|Session/[^/]+)$"]
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
        _runs_as(acct, svc)  # still, after every request
        foreign = [str(p) for p in [home, *home.rglob("*")] if p.lstat().st_uid != acct.uid]
        assert (home / "catalog.db").exists() and not foreign, foreign
    finally:
        svc.stop()
        shutil.rmtree(roots, ignore_errors=True)


def _runs_as(acct: unprivileged.Account, svc: Service) -> None:
    """The process that listens on the service's port runs as the account, and as nothing more."""
    assert svc.proc is not None
    status = unprivileged.serving_process(svc.proc.pid, svc.port)
    assert status["Uid"].split() == [str(acct.uid)] * 4, status["Uid"]
    assert status["Gid"].split() == [str(acct.gid)] * 4, status["Gid"]
    assert acct.uid != 0
    if acct.dropped:
        assert status["Groups"] == "" and int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0, status
        assert status["NoNewPrivs"] == "1", status
