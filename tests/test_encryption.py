"""Encryption at rest: the chunked AES-256-GCM format, encrypted plans end to end (backup, restore, drill,
the storage-only path), and the master keyring (rotate, rewrap, list, retire) against a running service."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard
from psycopg import sql
from sqlalchemy import LargeBinary
from tests.support.data import fill, fingerprint, recreate_database, stored_path
from tests.support.flows import backup_now, register, restore, restore_body
from tests.support.service import Api, Service

from pgvault.backup.encryption import (
    HEADER,
    TAG,
    ChunkEncryptor,
    DecryptionError,
    decrypt_stream,
    open_data_key,
    parse_data_key_document,
)
from pgvault.crypto import Keyring, MasterKeyError, Sealer, decode_master_key, key_id_hex, write_key_file

KEY = bytes(range(32))
CHUNK = 64


# -- the stream format ----------------------------------------------------------------------------------

def _encrypt(data: bytes, key: bytes = KEY, chunk: int = CHUNK, piece: int = 7) -> bytes:
    enc = ChunkEncryptor(key, chunk)
    return b"".join(enc.update(data[i : i + piece]) for i in range(0, len(data), piece)) + enc.finish()


def _decrypt(stored: bytes, key: bytes = KEY, piece: int = 5) -> bytes:
    return b"".join(decrypt_stream(key, [stored[i : i + piece] for i in range(0, len(stored), piece)]))


def _chunks(stored: bytes, chunk: int = CHUNK) -> tuple[bytes, list[bytes]]:
    body = stored[HEADER.size :]
    size = chunk + TAG
    return stored[: HEADER.size], [body[i : i + size] for i in range(0, len(body), size)]


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17])
def test_round_trip_at_every_chunk_boundary(size):
    data = os.urandom(size)
    stored = _encrypt(data)
    assert len(stored) == HEADER.size + size + TAG * max(1, -(-size // CHUNK))
    assert _decrypt(stored) == data
    assert _decrypt(stored, piece=len(stored) or 1) == data
    assert stored[:6] == b"PGVENC" and (size < 16 or data not in stored)


def test_two_encryptions_of_the_same_data_differ():
    data = b"same plaintext " * 20
    assert _encrypt(data) != _encrypt(data)  # a random nonce prefix per file


def _fails(stored: bytes, key: bytes = KEY) -> str:
    out: list[bytes] = []
    with pytest.raises(DecryptionError) as info:
        for piece in decrypt_stream(key, [stored]):
            out.append(piece)
    return str(info.value)


def test_tampering_is_detected():
    data = os.urandom(5 * CHUNK + 9)
    stored = _encrypt(data)
    header, chunks = _chunks(stored)
    assert len(chunks) == 6

    for position in (0, 10, HEADER.size + 3, HEADER.size + CHUNK + TAG + 1, len(stored) - 1):
        flipped = bytearray(stored)
        flipped[position] ^= 0x01
        _fails(bytes(flipped))

    assert "authenticate" in _fails(header + b"".join(chunks[:-1]))  # last chunk dropped: truncation
    _fails(header + b"".join(chunks[:3]))  # cut at a chunk boundary in the middle
    _fails(stored[:-5])  # cut inside the last chunk
    _fails(header + b"".join([chunks[1], chunks[0], *chunks[2:]]))  # two chunks swapped
    _fails(stored + chunks[2])  # extension: a chunk appended after the final one
    other = _encrypt(os.urandom(5 * CHUNK + 9))
    _fails(header + b"".join(chunks[:2] + _chunks(other)[1][2:]))  # spliced from another file
    _fails(stored[: HEADER.size - 1])
    assert "magic" in _fails(b"PGVXXX" + stored[6:])


def test_a_wrong_key_yields_nothing():
    stored = _encrypt(os.urandom(4 * CHUNK))
    out: list[bytes] = []
    with pytest.raises(DecryptionError, match="chunk 0 does not authenticate"):
        for piece in decrypt_stream(bytes(32), [stored]):
            out.append(piece)
    assert out == []


def test_streaming_keeps_memory_bounded():
    """Output comes while input is still arriving, and the encryptor never holds more than a chunk."""
    chunk = 1 << 16
    enc = ChunkEncryptor(KEY, chunk)
    produced = bytearray()
    for _ in range(64):
        produced += enc.update(os.urandom(10_000))
        assert len(enc._pending) <= chunk
    produced += enc.finish()

    consumed = 0
    first_output_at = None

    def source() -> Iterator[bytes]:
        nonlocal consumed
        for i in range(0, len(produced), 4096):
            consumed += 4096
            yield bytes(produced[i : i + 4096])

    total = 0
    for piece in decrypt_stream(KEY, source()):
        if first_output_at is None:
            first_output_at = consumed
        total += len(piece)
    assert total == 640_000
    assert first_output_at is not None and first_output_at <= 2 * (chunk + TAG) + HEADER.size + 4096


# -- the keyring ------------------------------------------------------------------------------------------

def test_keyring_follows_a_rotation_on_disk_and_names_a_missing_key(tmp_path):
    home = tmp_path / "home"
    ring = Keyring.open_home(home, None, create=True)
    old = decode_master_key((home / "master.key").read_text())
    sealed_old = ring.seal(b"secret", "ctx")
    assert key_id_hex(sealed_old) == ring.active_id

    new = os.urandom(32)
    write_key_file(home / "keys" / f"{ring.active_id}.key", old)
    write_key_file(home / "master.key", new)
    assert stat.S_IMODE((home / "master.key").stat().st_mode) == 0o600
    sealed_new = ring.seal(b"secret", "ctx")  # the running keyring noticed the new active key
    assert key_id_hex(sealed_new) == Sealer(new).key_id.hex() != key_id_hex(sealed_old)
    assert ring.open(sealed_old, "ctx") == ring.open(sealed_new, "ctx") == b"secret"

    (home / "keys" / f"{Sealer(old).key_id.hex()}.key").unlink()
    with pytest.raises(MasterKeyError, match=Sealer(old).key_id.hex()):
        ring.open(sealed_old, "ctx")
    other = Keyring.open_home(home, None, create=False)
    assert [k.key_id for k in other.known_keys()] == [Sealer(new).key_id.hex()]

    with pytest.raises(MasterKeyError, match="no master key"):
        Keyring.open_home(tmp_path / "elsewhere", None, create=False)


def test_every_sealed_column_is_rotated():
    """A column holding sealed values that rotation does not know would stay under the old key forever."""
    from pgvault.catalog.models import Base
    from pgvault.services.keys import SEALED

    sealed = {(t.name, c.name) for t in Base.metadata.tables.values() for c in t.columns
              if isinstance(c.type, LargeBinary)}
    assert sealed == {(col.model.__tablename__, col.attribute) for col in SEALED}


# -- encrypted plans, end to end ------------------------------------------------------------------------

def _cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PGVAULT_")}
    environ.update({"PGVAULT_HOME": str(home), **env})
    return subprocess.run([sys.executable, "-m", "pgvault.cli", *args], env=environ, capture_output=True,
                          text=True, timeout=120)


def _keys(home: Path, **env: str) -> dict[str, dict[str, Any]]:
    out = _cli(home, "keys", "list", "--json", **env)
    assert out.returncode == 0, out.stderr
    return {row["keyId"]: row for row in json.loads(out.stdout)}


def _active(home: Path, **env: str) -> str:
    return next(k for k, row in _keys(home, **env).items() if row["state"] == "active")


def _create_plan(api: Api, name: str) -> None:
    r = api.post("/V2/Plan", json={"planName": name, "encryption": True})
    assert r.status_code == 200, r.text
    assert r.json()["plan"]["encryption"] == {"enabled": True, "algorithm": "AES-256-GCM"}


def _point(api: Api, job_id: str) -> dict[str, Any]:
    points = api.get("/RestorePoints").json()["restorePoints"]
    summary = next(p for p in points if str(p["jobId"]) == str(job_id))
    r = api.get(f"/RestorePoints/{summary['restorePointId']}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _folder(point: dict[str, Any]) -> Path:
    return stored_path(point["files"][0]["location"]).parent.parent


def _drop(server, *names):
    with server.connect() as conn:
        for name in names:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def _restore_to(api: Api, source: dict[str, Any], target: dict[str, Any], job_id: str, db: str,
                as_name: str) -> dict[str, Any]:
    dest = {"clientName": "default", "instanceName": target["instanceName"]}
    body = restore_body(source, [f"/{db}"], dest=dest, job_id=job_id, renameDatabases={db: as_name})
    return api.wait_job(restore(api, body))


def _drill(api: Api, point_id: int) -> dict[str, Any]:
    r = api.post(f"/RestorePoints/{point_id}/action/verify", json={"drill": True})
    assert r.status_code == 200, r.text
    return api.wait_job(r.json()["jobIds"][0], timeout=300)


def _key_material(home: Path) -> list[str]:
    """Every master key of ``home`` as base64 text, for "never in output" checks."""
    files = [home / "master.key", *sorted((home / "keys").glob("*.key"))]
    return [f.read_text().strip() for f in files if f.exists()]


@pytest.fixture(scope="module")
def enc_service(tmp_path_factory) -> Iterator[Service]:
    """A service of its own: these tests rotate its master key and edit its catalog."""
    svc = Service(tmp_path_factory.mktemp("enc") / "home").start()
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def enc_api(enc_service) -> Iterator[Api]:
    api = enc_service.login()
    yield api
    api.close()


@pytest.fixture(scope="module")
def enc_target(enc_api, pg_target) -> dict[str, Any]:
    entity, job = register(enc_api, pg_target, "enc-target")
    assert enc_api.wait_job(job)["status"] == "Completed"
    return entity


def test_encrypted_backup_is_ciphertext_restores_and_drills(enc_service, enc_api, enc_target, pg, pg_target,
                                                            tmp_path):
    api = enc_api
    _create_plan(api, "sealed")
    recreate_database(pg, "enc_app")
    fill(pg, "enc_app", rows=400)
    original = fingerprint(pg, "enc_app")
    entity, job = register(api, pg, "enc-source", plan="sealed")
    done = api.wait_job(job)
    assert done["status"] == "Completed", done

    point = _point(api, job)
    assert point["encrypted"] is True
    files = {f["database"]: f for f in point["files"]}
    assert files["enc_app"]["format"] == "custom+zstd+aes256gcm"
    assert files["enc_app"]["key"].endswith(".dump.zst.enc")
    assert files[None]["format"] == "sql+aes256gcm" and files[None]["key"].endswith("globals.sql.enc")

    for f in point["files"]:
        raw = stored_path(f["location"]).read_bytes()
        assert raw[:6] == b"PGVENC"
        assert hashlib.sha256(raw).hexdigest() == f["sha256"] and len(raw) == f["bytes"]
        with pytest.raises(zstandard.ZstdError):
            zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
        for plain in (b"PGDMP", b"customer 1", b"@example.com", b"large object", b"CREATE ROLE", b"Mixed Case"):
            assert plain not in raw
    # The plan's database files are encrypted; an unencrypted plan's are not (same instance server).
    plain_entity, plain_job = register(api, pg, "enc-plain")
    assert api.wait_job(plain_job)["status"] == "Completed"
    plain_files = {f["database"]: f for f in _point(api, plain_job)["files"]}
    assert plain_files["enc_app"]["format"] == "custom+zstd" and plain_files[None]["format"] == "sql"
    api.delete(f"/Instance/{plain_entity['instanceId']}")

    # The data key lies beside the backup, sealed under the master key, and is not the plaintext key.
    folder = _folder(point)
    doc = json.loads((folder / "datakey.json").read_text())
    ring = Keyring.open_home(enc_service.home, None, create=False)
    assert doc["masterKeyId"] == ring.active_id
    data_key = open_data_key(ring, parse_data_key_document((folder / "datakey.json").read_bytes()))
    text = (folder / "datakey.json").read_bytes()
    assert data_key not in text and base64.b64encode(data_key) not in text and data_key.hex().encode() not in text

    # Restore into a fresh server: identical data.
    _drop(pg_target, "enc_app_copy")
    restored = _restore_to(api, entity, enc_target, job, "enc_app", "enc_app_copy")
    assert restored["status"] == "Completed", restored
    assert fingerprint(pg_target, "enc_app_copy") == original
    _drop(pg_target, "enc_app_copy")

    r = api.post(f"/RestorePoints/{point['restorePointId']}/action/verify", json={})
    checked = api.wait_job(r.json()["jobIds"][0])
    assert checked["status"] == "Completed" and "decrypt under the restore point's data key" in checked["message"]
    drill = _drill(api, point["restorePointId"])
    assert drill["status"] == "Completed", drill

    # Storage plus the master key, no catalog: a home holding only the key file decrypts a copied folder.
    lone = tmp_path / "lone-home"
    lone.mkdir()
    shutil.copy(enc_service.home / "master.key", lone / "master.key")
    copied = tmp_path / "copied-backup"
    shutil.copytree(folder, copied)
    db_file = copied / "databases" / Path(files["enc_app"]["key"]).name
    out = subprocess.run([sys.executable, "-m", "pgvault.cli", "decrypt", str(db_file)], capture_output=True,
                         env={**{k: v for k, v in os.environ.items() if not k.startswith("PGVAULT_")},
                              "PGVAULT_HOME": str(lone)}, timeout=120)
    assert out.returncode == 0, out.stderr
    archive = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(out.stdout)).read()
    assert archive[:5] == b"PGDMP"
    _pg_restore(pg_target, "enc_app_by_hand", archive)
    assert fingerprint(pg_target, "enc_app_by_hand") == original
    _drop(pg_target, "enc_app_by_hand")
    assert not list(lone.glob("catalog.db*"))

    api.delete(f"/Instance/{entity['instanceId']}")
    _drop(pg, "enc_app")


def _pg_restore(server, dbname: str, archive: bytes) -> None:
    from pgvault.pgtools.binaries import bundled_bin_dir

    recreate_database(server, dbname)
    env = {**os.environ, "PGPASSWORD": server.password, "PGHOST": server.host, "PGPORT": str(server.port),
           "PGUSER": server.superuser, "PGDATABASE": dbname}
    proc = subprocess.run([str(bundled_bin_dir() / "pg_restore"), "--exit-on-error", "--no-owner", "-d", dbname],
                          input=archive, env=env, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()


def test_a_wrong_data_key_fails_the_restore_before_the_target(enc_service, enc_api, enc_target, pg, pg_target):
    """Two restore points' sealed data keys swapped in the catalog: each is a valid key under the master
    key, the wrong one for its files. The restore fails in its Verify phase, naming the cause, and
    pg_restore never runs."""
    api = enc_api
    _create_plan(api, "swap")
    recreate_database(pg, "enc_swap")
    fill(pg, "enc_swap", rows=50)
    entity, first = register(api, pg, "enc-swap", plan="swap")
    assert api.wait_job(first)["status"] == "Completed"
    second = backup_now(api, entity["subclientId"])
    assert api.wait_job(second)["status"] == "Completed"
    a, b = _point(api, first)["restorePointId"], _point(api, second)["restorePointId"]

    def swap() -> None:
        db = sqlite3.connect(enc_service.home / "catalog.db", timeout=30)
        with db:
            ka = db.execute("select data_key_sealed from restore_points where id = ?", (a,)).fetchone()[0]
            kb = db.execute("select data_key_sealed from restore_points where id = ?", (b,)).fetchone()[0]
            db.execute("update restore_points set data_key_sealed = ? where id = ?", (kb, a))
            db.execute("update restore_points set data_key_sealed = ? where id = ?", (ka, b))
        db.close()

    swap()
    try:
        _drop(pg_target, "enc_swap_copy")
        failed = _restore_to(api, entity, enc_target, first, "enc_swap", "enc_swap_copy")
        assert failed["status"] == "Failed", failed
        assert "does not authenticate" in failed["message"] and "nothing on the target was touched" in failed["message"]
        with pg_target.connect() as conn:
            assert not conn.execute("select 1 from pg_database where datname in ('enc_swap_copy') "
                                    "or datname like 'pgvault_restore_%'").fetchall()
        verify = api.wait_job(api.post(f"/RestorePoints/{a}/action/verify", json={}).json()["jobIds"][0])
        assert verify["status"] == "Failed" and "does not authenticate" in verify["message"]
    finally:
        swap()
    done = _restore_to(api, entity, enc_target, first, "enc_swap", "enc_swap_copy")
    assert done["status"] == "Completed", done
    _drop(pg_target, "enc_swap_copy")
    api.delete(f"/Instance/{entity['instanceId']}")
    _drop(pg, "enc_swap")


def _wait_for(predicate, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_rotation_while_the_service_runs(enc_service, enc_api, enc_target, pg, pg_target):
    """Back up; start a backup that blocks (its data key is sealed under the old key); rotate with the CLI
    while the service runs; back up again without a restart; the straggler keeps the old key in use, so
    retire refuses; rewrap; retire; then restore every restore point and drill the oldest."""
    api, home = enc_api, enc_service.home
    _create_plan(api, "rotating")
    recreate_database(pg, "rot_app")
    fill(pg, "rot_app", rows=300)
    original = fingerprint(pg, "rot_app")
    entity, job_a = register(api, pg, "rot-source", plan="rotating")
    assert api.wait_job(job_a)["status"] == "Completed"
    k1 = _active(home)
    before = _keys(home)[k1]["seals"]
    assert before["instance passwords"] >= 2 and before["restore point data keys"] >= 1
    old_material = _key_material(home)

    # A backup held by a lock: it has sealed its data key (under k1) and written datakey.json.
    holder = pg.connect("rot_app")
    holder.execute("begin")
    holder.execute("lock table sales.orders in access exclusive mode")
    try:
        job_b = backup_now(api, entity["subclientId"])
        backups = home / "backups"
        _wait_for(lambda: list(backups.glob(f"instance-*/*-job-{job_b}/datakey.json")), what="datakey.json of B")

        rotated = _cli(home, "keys", "rotate")
        assert rotated.returncode == 0, rotated.stderr
        k2 = _active(home)
        assert k2 != k1
        assert (home / "keys" / f"{k1}.key").read_text().strip() in old_material
        assert stat.S_IMODE((home / "keys" / f"{k1}.key").stat().st_mode) == 0o600
        assert stat.S_IMODE((home / "master.key").stat().st_mode) == 0o600
        for secret in _key_material(home):
            assert secret not in rotated.stdout + rotated.stderr
        assert "restore point data keys" in rotated.stdout
    finally:
        holder.execute("rollback")
        holder.close()
    assert api.wait_job(job_b)["status"] == "Completed"

    keys = _keys(home)
    assert keys[k1]["state"] == "old" and keys[k1]["seals"] == {"restore point data keys": 1}  # B's
    assert keys[k2]["seals"]["instance passwords"] >= 2
    refused = _cli(home, "keys", "retire", k1)
    assert refused.returncode == 1
    assert "still seals 1 restore point data keys" in refused.stderr and "pgvault keys rewrap" in refused.stderr
    assert (home / "keys" / f"{k1}.key").exists()

    # No restart: the running service opens the re-wrapped instance password and seals under k2.
    job_c = backup_now(api, entity["subclientId"])
    assert api.wait_job(job_c)["status"] == "Completed"
    points = {j: _point(api, j) for j in (job_a, job_b, job_c)}
    beside = {j: json.loads((_folder(p) / "datakey.json").read_text())["masterKeyId"] for j, p in points.items()}
    assert beside == {job_a: k2, job_b: k1, job_c: k2}

    # The old key's file lost: B's restore fails clearly, and the target is untouched.
    kept = home / "keys" / f"{k1}.key"
    aside = home / f"{k1}.aside"
    kept.rename(aside)
    try:
        _drop(pg_target, "rot_b")
        lost = _restore_to(api, entity, enc_target, job_b, "rot_app", "rot_b")
        assert lost["status"] == "Failed"
        assert k1 in lost["message"] and "not in the keyring" in lost["message"]
        with pg_target.connect() as conn:
            assert not conn.execute("select 1 from pg_database where datname = 'rot_b'").fetchall()
    finally:
        aside.rename(kept)

    rewrapped = _cli(home, "keys", "rewrap")
    assert rewrapped.returncode == 0, rewrapped.stderr
    assert "1 restore point data keys" in rewrapped.stdout and "1 rewritten" in rewrapped.stdout
    assert _keys(home)[k1]["total"] == 0
    assert json.loads((_folder(points[job_b]) / "datakey.json").read_text())["masterKeyId"] == k2

    retired = _cli(home, "keys", "retire", k1)
    assert retired.returncode == 0, retired.stderr
    assert not kept.exists() and k1 not in _keys(home)
    assert _cli(home, "keys", "retire", k2).returncode == 1  # the active key is never retired

    for name, job in (("rot_a", job_a), ("rot_b", job_b), ("rot_c", job_c)):
        _drop(pg_target, name)
        done = _restore_to(api, entity, enc_target, job, "rot_app", name)
        assert done["status"] == "Completed", (name, done)
        assert fingerprint(pg_target, name) == original, name
        _drop(pg_target, name)
    for job in (job_a, job_c):
        drill = _drill(api, points[job]["restorePointId"])
        assert drill["status"] == "Completed", drill

    log = enc_service.log_text()
    for secret in old_material + _key_material(home):
        assert secret not in log
    api.delete(f"/Instance/{entity['instanceId']}")
    _drop(pg, "rot_app")


def test_environment_key_rotation_follows_the_documented_steps(tmp_path, pg):
    """PGVAULT_MASTER_KEY: `keys rotate` refuses and says how; the steps it prints work."""
    home = tmp_path / "home"
    old = base64.b64encode(os.urandom(32)).decode()
    svc = Service(home, PGVAULT_MASTER_KEY=old).start()
    try:
        api = svc.login()
        _create_plan(api, "env-sealed")
        recreate_database(pg, "env_app")
        fill(pg, "env_app", rows=40)
        entity, job = register(api, pg, "env-source", plan="env-sealed")
        assert api.wait_job(job)["status"] == "Completed"
        api.close()
    finally:
        svc.stop()
    old_id = Sealer(base64.b64decode(old)).key_id.hex()

    refused = _cli(home, "keys", "rotate", PGVAULT_MASTER_KEY=old)
    assert refused.returncode == 1 and old not in refused.stdout + refused.stderr
    assert "PGVAULT_MASTER_KEY" in refused.stderr and "pgvault keys rewrap" in refused.stderr
    assert f"keys/{old_id}.key" in refused.stderr
    assert not (home / "master.key").exists() and not (home / "keys").exists()

    # Step 1 (the printed command, run by a shell with the old key in its environment).
    step = next(line.strip() for line in refused.stderr.splitlines() if "printenv PGVAULT_MASTER_KEY" in line)
    env = {**os.environ, "PGVAULT_HOME": str(home), "PGVAULT_MASTER_KEY": old}
    subprocess.run(["sh", "-c", step], env=env, check=True)
    assert stat.S_IMODE((home / "keys" / f"{old_id}.key").stat().st_mode) == 0o600
    # Steps 2-4: a new key in the environment, restart, rewrap, retire.
    new = base64.b64encode(os.urandom(32)).decode()
    svc = Service(home, PGVAULT_MASTER_KEY=new).start()
    try:
        done = _cli(home, "keys", "rewrap", PGVAULT_MASTER_KEY=new)
        assert done.returncode == 0, done.stderr
        assert _keys(home, PGVAULT_MASTER_KEY=new)[old_id]["total"] == 0
        assert _cli(home, "keys", "retire", old_id, PGVAULT_MASTER_KEY=new).returncode == 0
        api = svc.login()
        again = backup_now(api, entity["subclientId"])
        assert api.wait_job(again)["status"] == "Completed"
        for j in (job, again):
            drill = _drill(api, _point(api, j)["restorePointId"])
            assert drill["status"] == "Completed", drill
        api.delete(f"/Instance/{entity['instanceId']}")
        api.close()
    finally:
        svc.stop()
        _drop(pg, "env_app")


def test_rewrap_is_all_or_nothing_on_both_dialects(catalog, tmp_path):
    """A value no key of the ring opens stops the re-wrap before anything is committed; without it,
    every value moves to the new key in the one transaction."""
    from pgvault.catalog.models import CloudAccount, Credential, Instance, Plan
    from pgvault.services import credentials, instances
    from pgvault.services.keys import KeyAdminError, rewrap_catalog

    home = tmp_path / "home"
    ring = Keyring.open_home(home, None, create=True)
    k1 = ring.active_id
    with catalog.transaction(write=True) as s:
        account, plan = CloudAccount(name="a", name_key="a"), Plan(name="p", name_key="p")
        for n in range(3):
            s.add(Instance(cloud_account=account, plan=plan, name=f"i{n}", name_key=f"i{n}", host="h", port=5432,
                           maintenance_db="postgres", username="u", declared_version="18", server_version="18",
                           server_version_num=180000,
                           password_sealed=ring.seal(f"pw{n}".encode(), instances.PASSWORD_CONTEXT)))
        credentials.create(s, ring, name="c", username="u", password="cred-pw")
        stranger = Sealer(os.urandom(32))
        credentials.create(s, stranger, name="lost", username="u", password="x")
    assert count_by_key_of(catalog) == {k1: {"instance passwords": 3, "credential passwords": 1},
                                        stranger.key_id.hex(): {"credential passwords": 1}}

    write_key_file(home / "keys" / f"{k1}.key", decode_master_key((home / "master.key").read_text()))
    write_key_file(home / "master.key", os.urandom(32))
    ring.reload()
    k2 = ring.active_id
    assert k2 != k1
    with pytest.raises(KeyAdminError, match=stranger.key_id.hex()), catalog.transaction(write=True) as s:
        rewrap_catalog(s, ring)
    assert count_by_key_of(catalog)[k1] == {"instance passwords": 3, "credential passwords": 1}  # rolled back

    with catalog.transaction(write=True) as s:
        s.delete(s.query(Credential).filter_by(name_key="lost").one())
    with catalog.transaction(write=True) as s:
        moved = rewrap_catalog(s, ring)
    assert moved["instance passwords"] == 3 and moved["credential passwords"] == 1
    assert count_by_key_of(catalog) == {k2: {"instance passwords": 3, "credential passwords": 1}}
    with catalog.transaction(write=True) as s:
        got = sorted(ring.open(i.password_sealed, instances.PASSWORD_CONTEXT) for i in s.query(Instance))
        assert got == [b"pw0", b"pw1", b"pw2"]
        assert credentials.password_of(credentials.find(s, "c"), ring) == "cred-pw"


def count_by_key_of(catalog) -> dict[str, dict[str, int]]:
    from pgvault.services.keys import count_by_key

    with catalog.transaction(write=True) as s:
        return {k: dict(v) for k, v in count_by_key(s).items()}
