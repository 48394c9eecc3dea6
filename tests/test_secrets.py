"""Secrets never appear in logs, process arguments or environments, API output, or plain text at rest."""

from __future__ import annotations

import base64
import os
import secrets
import stat
import time
from pathlib import Path

import pytest
from tests.support.data import recreate_database
from tests.support.service import seed_body


@pytest.fixture()
def secret_login(pg):
    password = "Sx-" + secrets.token_hex(12) + ":\\'\""
    with pg.connect() as conn:
        conn.execute("drop role if exists vaulted")
        conn.execute(f"create role vaulted login superuser password {_literal(password)}")
    yield "vaulted", password
    with pg.connect() as conn:
        conn.execute("drop role if exists vaulted")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _forms(password: str) -> list[bytes]:
    return [password.encode(), base64.b64encode(password.encode())]


def _pg_dump_processes() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("pg_dump", "pg_dumpall"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_password_absent_from_argv_environment_logs_api_and_disk(api, service, pg, secret_login):
    user, password = secret_login
    recreate_database(pg, "secret_wait")
    with pg.connect("secret_wait") as conn:
        conn.execute("create table t (x int)")
    holder = pg.connect("secret_wait")
    holder.execute("begin")
    holder.execute("lock table t in access exclusive mode")
    try:
        r = api.post("/Instance", json=seed_body(host="127.0.0.1", port=pg.port, user=user, password=password,
                                                 name="secretive"))
        assert r.status_code == 200, r.text
        entity = r.json()["response"]["entity"]
        job_id = r.json()["processinginstructioninfo"]["attributes"][1]["value"]

        # While pg_dump waits on the lock, look at what the running processes carry.
        deadline = time.monotonic() + 60
        seen = []
        while not seen:
            seen = [p for p in _pg_dump_processes()
                    if b"secret_wait" in Path(f"/proc/{p}/environ").read_bytes()]
            assert time.monotonic() < deadline, "no pg_dump of secret_wait appeared"
            time.sleep(0.1)
        for pid in seen:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            for form in _forms(password):
                assert form not in cmdline and form not in environ
            assert b"PGPASSWORD" not in environ
            passfile = next(v for v in environ.split(b"\0") if v.startswith(b"PGPASSFILE="))[11:]
            assert stat.S_IMODE(os.stat(passfile).st_mode) == 0o600
            assert stat.S_IMODE(os.stat(os.path.dirname(passfile)).st_mode) == 0o700
            assert Path(passfile.decode()).is_relative_to(service.home / "run")  # swept at the next start
    finally:
        holder.execute("rollback")
        holder.close()
    done = api.wait_job(job_id)
    assert done["status"] == "Completed", done
    assert not Path(passfile.decode()).exists(), "the passfile outlived the job"

    outputs = [
        api.get(f"/Instance/{entity['instanceId']}").content,
        api.get("/Instance").content,
        api.get(f"/Job/{job_id}").content,
        r.content,
    ]
    logs = [service.log_path.read_bytes()] + [p.read_bytes() for p in (service.home / "jobs").glob("*.log")]
    at_rest = [p.read_bytes() for p in service.home.rglob("*") if p.is_file() and p.suffix != ".zst"]
    for blob in outputs + logs + at_rest:
        for form in _forms(password):
            assert form not in blob
    with pg.connect() as conn:
        conn.execute("drop database secret_wait with (force)")
    api.delete(f"/Instance/{entity['instanceId']}")


def test_sealed_passwords_need_the_master_key(tmp_path):
    from pgvault.crypto import MasterKeyError, Sealer

    a, b = Sealer(os.urandom(32)), Sealer(os.urandom(32))
    sealed = a.seal(b"pw", "instance.password")
    assert b"pw" not in sealed
    assert a.open(sealed, "instance.password") == b"pw"
    with pytest.raises(MasterKeyError):
        b.open(sealed, "instance.password")
    from cryptography.exceptions import InvalidTag

    with pytest.raises(InvalidTag):
        a.open(sealed, "another.context")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(InvalidTag):
        a.open(tampered, "instance.password")


def test_master_key_from_the_environment_is_used_and_not_written(tmp_path, pg):
    from tests.support.service import Service

    key = base64.b64encode(os.urandom(32)).decode()
    svc = Service(tmp_path / "home", PGVAULT_MASTER_KEY=key).start()
    try:
        assert not (svc.home / "master.key").exists()
        assert key not in svc.log_text()
    finally:
        svc.stop()


def test_address_repr_hides_the_password():
    from pgvault.pgtools.connection import ServerAddress

    a = ServerAddress(host="h", port=1, user="u", password="hunter2-secret")
    assert "hunter2" not in repr(a) and "hunter2" not in str(a) and "hunter2" not in f"{a}"
