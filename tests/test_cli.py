"""The `pgvault` command as a user runs it: a real process, against a real `pgvault serve` and PostgreSQL."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from psycopg import sql
from tests.support.data import fill, fingerprint, recreate_database


def run(config: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("PGVAULT_URL", "PGVAULT_TOKEN")}
    full.update({"XDG_CONFIG_HOME": str(config), **(env or {})})
    return subprocess.run([sys.executable, "-m", "pgvault.cli", *args], input=stdin, env=full,
                          capture_output=True, text=True, timeout=timeout)


def _drop(server, *names: str) -> None:
    with server.connect() as conn:
        for name in names:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture()
def config(tmp_path: Path, service) -> Path:
    cfg = tmp_path / "xdg"
    done = run(cfg, "login", "--url", service.url, stdin=service.admin_password + "\n")
    assert done.returncode == 0, done.stderr
    return cfg


def test_login_keeps_the_token_private_and_a_wrong_password_fails(tmp_path, service):
    cfg = tmp_path / "xdg"
    bad = run(cfg, "login", "--url", service.url, stdin="wrong\n")
    assert bad.returncode == 1
    assert bad.stderr.strip() == "pgvault: Login failed: invalid user name or password"
    assert not (cfg / "pgvault" / "config.json").exists()

    good = run(cfg, "login", "--url", service.url, stdin=service.admin_password + "\n")
    assert good.returncode == 0, good.stderr
    path = cfg / "pgvault" / "config.json"
    token = json.loads(path.read_text())["token"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert token not in good.stdout + good.stderr and service.admin_password not in good.stdout

    listed = run(cfg, "instances", "--json")
    assert listed.returncode == 0 and isinstance(json.loads(listed.stdout), list)
    # environment variables win over the stored login (for scripts)
    assert run(cfg, "jobs", env={"PGVAULT_TOKEN": "QSDK nope"}).returncode == 1

    out = run(cfg, "logout")
    assert out.returncode == 0 and not path.exists()
    again = run(cfg, "jobs", env={"PGVAULT_TOKEN": token})
    assert again.returncode == 1 and again.stderr.startswith("pgvault: ")
    assert "not logged in" in run(cfg, "jobs").stderr


def test_no_password_on_the_command_line():
    """Passwords come from a prompt or stdin, never from argv: no command has a password option."""
    from typer.main import get_command

    from pgvault.cli import app

    def options(cmd, path=()):
        for p in cmd.params:
            yield path, p.opts
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from options(sub, (*path, name))

    for path, opts in options(get_command(app)):
        for opt in opts:
            assert "password" not in opt or opt == "--password-stdin", (path, opt)


def test_add_backup_restore_verify(config, service, pg):
    recreate_database(pg, "cli_app")
    fill(pg, "cli_app", rows=50)
    original = fingerprint(pg, "cli_app")

    added = run(config, "instances", "add", "cli-src", "--host", f"127.0.0.1:{pg.port}", "--user", pg.superuser,
                "--version", "18", "--password-stdin", "--json", stdin=pg.password + "\n")
    assert added.returncode == 0, added.stderr
    first = json.loads(added.stdout)["processinginstructioninfo"]["attributes"][1]["value"]
    try:
        assert pg.password not in added.stdout + added.stderr
        assert run(config, "job", first, "--follow").returncode == 0

        shown = run(config, "instances", "show", "cli-src")
        assert shown.returncode == 0 and f"127.0.0.1:{pg.port}" in shown.stdout

        backed = run(config, "backup", "cli-src", "--follow")
        assert backed.returncode == 0, backed.stdout + backed.stderr
        assert "cli_app: Completed" in backed.stdout and "Completed 100%" in backed.stdout

        jobs = json.loads(run(config, "jobs", "--json").stdout)
        assert {j["status"] for j in jobs[:2]} == {"Completed"}
        assert isinstance(json.loads(run(config, "jobs", "--running", "--json").stdout), list)

        _drop(pg, "cli_app_restored")
        restored = run(config, "restore", "cli-src", "cli_app", "--as", "cli_app_restored", "--follow")
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert fingerprint(pg, "cli_app_restored") == original

        # without --overwrite an in-place restore fails, exit 1
        refused = run(config, "restore", "cli-src", "cli_app", "--follow")
        assert refused.returncode == 1 and "Failed" in refused.stdout

        pts = json.loads(run(config, "points", "cli-src", "--json").stdout)
        point = str(pts[0]["restorePointId"])
        drilled = run(config, "verify", point, "--drill", "--follow", "--json")
        assert drilled.returncode == 0, drilled.stdout + drilled.stderr
        assert json.loads(drilled.stdout)["status"] == "Completed"

        missing = run(config, "instances", "show", "no-such-instance")
        assert missing.returncode == 1 and missing.stderr.startswith("pgvault: no instance")
        unknown = run(config, "job", "999999")
        assert unknown.returncode == 1 and len(unknown.stderr.strip().splitlines()) == 1
    finally:
        removed = run(config, "instances", "remove", "cli-src", "--delete-backups")
        assert removed.returncode == 0, removed.stderr
        _drop(pg, "cli_app", "cli_app_restored")


def test_wrong_server_password_is_the_services_message(config, service, pg):
    added = run(config, "instances", "add", "cli-bad", "--host", f"127.0.0.1:{pg.port}", "--user", pg.superuser,
                "--password-stdin", stdin="not-the-password\n")
    assert added.returncode == 1
    assert added.stderr.startswith("pgvault: Connection to PostgreSQL Server failed")
