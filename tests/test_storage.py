"""The storage contract, run against every backend (the local folder and S3 through moto's server on
loopback), then what only object storage can get wrong: multipart uploads, aborts, an endpoint that
fails midway, refused keys, addressing styles."""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import stat
import time

import pytest

from pgvault.storage import LocalStorage, StorageError, open_location
from pgvault.storage.s3 import S3Storage, S3Tuning, endpoint_url

PREFIX = "backups/pgvault"
QUICK = S3Tuning(connect_timeout=2, request_timeout=20, max_retries=1, retry_timeout=5)


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    s3 = request.getfixturevalue("s3")
    return S3Storage.from_config(s3.config(s3.new_bucket(), PREFIX), s3.secret())


def test_an_object_appears_only_on_commit(storage):
    w = storage.writer("a/b/file.bin")
    w.write(b"x" * 10)
    assert not storage.exists("a/b/file.bin")
    w.commit()
    assert storage.exists("a/b/file.bin")
    assert b"".join(storage.read("a/b/file.bin")) == b"x" * 10


def test_an_aborted_write_leaves_nothing(storage):
    with pytest.raises(RuntimeError), storage.writer("a/partial.bin") as w:
        w.write(b"half")
        raise RuntimeError("pg_dump died")
    assert not storage.exists("a/partial.bin")
    assert storage.list("a") == []
    with storage.writer("a/never.bin") as w:  # leaving the block uncommitted drops it too
        w.write(b"x")
    assert storage.list("a") == []


def test_list_and_delete_prefix(storage):
    for key in ("p/1", "p/sub/2", "q/3", "pq/4"):
        with storage.writer(key) as w:
            w.write(key.encode())
            w.commit()
    assert storage.list("p") == ["p/1", "p/sub/2"]
    assert storage.delete_prefix("p") == 2
    assert storage.list("p") == [] and storage.exists("q/3") and storage.exists("pq/4")
    assert storage.delete_prefix("nothing-here") == 0


def test_folders_lists_the_folders_under_a_prefix(storage):
    """What the sweep for a crashed backup's leftovers lists: locally a folder that holds only an unfinished
    write (a hidden partial file) counts; on S3 an upload never completed is no object, so no folder."""
    for key in ("i/a/1", "i/a/sub/2", "i/b/3", "i/c", "ij/d/4"):
        with storage.writer(key) as w:
            w.write(key.encode())
            w.commit()
    with storage.writer("i/e/half") as w:
        w.write(b"x")
        local = isinstance(storage, LocalStorage)
        assert storage.folders("i") == ["i/a", "i/b"] + (["i/e"] if local else [])
        assert storage.list("i/e") == []
    assert storage.folders("i/a") == ["i/a/sub"] and storage.folders("nothing-here") == []


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/abs", "a//b", "", "a/./b", "sp ace"])
def test_unsafe_keys_are_refused(storage, key):
    with pytest.raises(StorageError):
        storage.writer(key)


def test_reading_a_missing_object_is_a_storage_error(storage):
    with pytest.raises(StorageError):
        b"".join(storage.read("missing"))


def test_uri_names_the_stored_file(storage):
    with storage.writer("x/y.dump.zst") as w:
        w.write(b"1")
        w.commit()
    uri = storage.uri("x/y.dump.zst")
    if isinstance(storage, S3Storage):
        assert uri == f"s3://{storage.bucket}/{PREFIX}/x/y.dump.zst"
    else:
        assert uri.startswith("file:///")
        assert uri.endswith("/store/x/y.dump.zst")


def test_an_empty_object_round_trips(storage):
    with storage.writer("e/empty") as w:
        w.commit()
    assert storage.exists("e/empty")
    assert list(storage.read("e/empty")) == []


def test_a_second_commit_replaces_the_object(storage):
    for data in (b"first", b"second"):
        with storage.writer("r/obj") as w:
            w.write(data)
            w.commit()
    assert b"".join(storage.read("r/obj")) == b"second"
    assert storage.list("r") == ["r/obj"]


def test_read_streams_in_chunks_of_the_asked_size(storage):
    with storage.writer("c/obj") as w:
        w.write(b"z" * 2500)
        w.commit()
    assert [len(c) for c in storage.read("c/obj", chunk_size=1000)] == [1000, 1000, 500]


def test_keys_keep_their_spelling(storage):
    """Dump names are percent-encoded database names: ``%``, ``+``, ``=`` and ``~`` must survive as is."""
    keys = ["k/001-my%20db.dump.zst", "k/a+b=c~d.bin", "k/x%2Fy"]
    for key in keys:
        with storage.writer(key) as w:
            w.write(key.encode())
            w.commit()
    assert storage.list("k") == sorted(keys)
    for key in keys:
        assert b"".join(storage.read(key)) == key.encode()


# What only object storage can get wrong.


def _s3_storage(s3, bucket: str, prefix: str = PREFIX, tuning: S3Tuning | None = None, **config) -> S3Storage:
    return S3Storage.from_config(s3.config(bucket, prefix, **config), s3.secret(), tuning=tuning)


def _uploads(s3, bucket: str) -> list[str]:
    return [u["Key"] for u in s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def _chunks(count: int, seed: int = 7):
    rnd = random.Random(seed)
    for _ in range(count):
        yield rnd.randbytes(1 << 20)


def test_a_large_object_streams_as_a_multipart_upload(s3):
    bucket = s3.new_bucket()
    storage = _s3_storage(s3, bucket)
    sha = hashlib.sha256()
    with storage.writer("big/db.dump.zst") as w:
        for n, chunk in enumerate(_chunks(40)):
            w.write(chunk)
            sha.update(chunk)
            if n == 35:  # one 32 MiB part is up: an upload in progress, no object yet
                assert _uploads(s3, bucket) == [f"{PREFIX}/big/db.dump.zst"]
                assert not storage.exists("big/db.dump.zst")
        w.commit()
    assert _uploads(s3, bucket) == []
    head = s3.client().head_object(Bucket=bucket, Key=f"{PREFIX}/big/db.dump.zst")
    assert head["ContentLength"] == 40 << 20
    assert head["ETag"].strip('"').endswith("-2")  # two parts of 32 MiB and 8 MiB
    back = hashlib.sha256()
    sizes = set()
    for chunk in storage.read("big/db.dump.zst"):
        back.update(chunk)
        sizes.add(len(chunk))
    assert back.hexdigest() == sha.hexdigest()
    assert sizes == {1 << 20}


def test_abort_leaves_no_object_and_no_incomplete_upload(s3):
    bucket = s3.new_bucket()
    storage = _s3_storage(s3, bucket, tuning=S3Tuning(part_size=5 << 20))
    with pytest.raises(RuntimeError), storage.writer("a/db.dump.zst") as w:
        for chunk in _chunks(12):
            w.write(chunk)
        assert _uploads(s3, bucket) == [f"{PREFIX}/a/db.dump.zst"]  # parts were uploaded
        raise RuntimeError("pg_dump died")
    assert _uploads(s3, bucket) == []
    assert s3.client().list_objects_v2(Bucket=bucket).get("Contents") is None
    w.abort()  # idempotent


def test_reads_come_in_windows_of_one_version_of_the_object(s3):
    """Each window is its own ranged GET (nothing held open while pg_restore pauses), pinned by ETag,
    so an object replaced midway fails the read instead of splicing two versions together."""
    bucket = s3.new_bucket()
    storage = _s3_storage(s3, bucket, tuning=S3Tuning(read_window=1 << 20))
    data = b"".join(_chunks(3))
    with storage.writer("w/obj") as w:
        w.write(data)
        w.commit()
    assert b"".join(storage.read("w/obj", chunk_size=300_000)) == data
    reader = storage.read("w/obj")
    assert next(reader) == data[: 1 << 20]
    with storage.writer("w/obj") as w:
        w.write(b"another backup")
        w.commit()
    with pytest.raises(StorageError, match="replaced while being read"):
        next(reader)


def test_the_aws_environment_cannot_redirect_or_unsign_a_configured_destination(s3, monkeypatch):
    bucket = s3.new_bucket()
    stranded = _stranded(s3, bucket, f"{PREFIX}/env/big")  # (the test's own boto3 client reads the environment)
    for name, value in {"AWS_ENDPOINT": "http://127.0.0.1:9", "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
                        "AWS_SKIP_SIGNATURE": "true", "AWS_UNSIGNED_PAYLOAD": "true", "AWS_REGION": "eu-west-3",
                        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "true", "AWS_ACCESS_KEY_ID": "AKIAFROMENV",
                        "AWS_SECRET_ACCESS_KEY": "from-env", "AWS_SESSION_TOKEN": "from-env",
                        "AWS_PROFILE": "nowhere", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9",
                        "AWS_S3_ADDRESSING_STYLE": "virtual", "AWS_CA_BUNDLE": "/nonexistent"}.items():
        monkeypatch.setenv(name, value)
    storage = _s3_storage(s3, bucket)
    with storage.writer("env/obj") as w:
        w.write(b"signed")
        w.commit()
    assert b"".join(storage.read("env/obj")) == b"signed"
    # botocore (the sweep of unfinished uploads) is not redirected or re-keyed either
    [upload] = storage.incomplete_uploads("env")
    assert (upload.key, upload.upload_id) == ("env/big", stranded)
    storage.abort_upload(upload)
    assert storage.incomplete_uploads("env") == []


def _stranded(s3, bucket: str, key: str) -> str:
    """An unfinished multipart upload with one part, as a killed writer leaves it; its upload id."""
    client = s3.client()
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * (5 << 20))
    return upload_id


def test_unfinished_uploads_are_listed_under_the_storage_prefix_only_and_aborted(s3):
    bucket = s3.new_bucket()
    storage = _s3_storage(s3, bucket)
    mine = _stranded(s3, bucket, f"{PREFIX}/run/databases/a.dump.zst")
    _stranded(s3, bucket, f"{PREFIX}/run-2/b.dump.zst")  # a sibling folder whose name starts the same
    _stranded(s3, bucket, "run/databases/a.dump.zst")  # outside the storage's prefix
    _stranded(s3, bucket, f"{PREFIX}-other/run/a.dump.zst")
    with storage.writer("run/done.json") as w:  # a finished object is no upload
        w.write(b"{}")
        w.commit()
    [upload] = storage.incomplete_uploads("run")
    assert (upload.key, upload.upload_id) == ("run/databases/a.dump.zst", mine)
    assert upload.initiated.tzinfo is not None
    storage.abort_upload(upload)
    storage.abort_upload(upload)  # gone already: not an error
    assert storage.incomplete_uploads("run") == []
    assert sorted(_uploads(s3, bucket)) == sorted([f"{PREFIX}/run-2/b.dump.zst", "run/databases/a.dump.zst",
                                                   f"{PREFIX}-other/run/a.dump.zst"])
    assert storage.list("run") == ["run/done.json"]
    whole = _s3_storage(s3, bucket, prefix="")  # a destination at the bucket's root
    assert [u.key for u in whole.incomplete_uploads("run")] == ["run/databases/a.dump.zst"]
    with pytest.raises(StorageError, match="invalid object key"):
        storage.incomplete_uploads("../x")


def test_an_endpoint_that_goes_away_midway_fails_the_write_and_leaves_no_object(s3, caplog):
    from moto.server import ThreadedMotoServer

    bucket = s3.new_bucket()
    doomed = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    doomed.start()
    url = "http://{}:{}".format(*doomed.get_host_and_port())
    storage = _s3_storage(s3, bucket, tuning=S3Tuning(part_size=5 << 20, connect_timeout=2, request_timeout=20,
                                                      max_retries=1, retry_timeout=5), endpoint=url)
    chunks = _chunks(30)
    stopped = False
    try:
        with pytest.raises(StorageError) as caught, storage.writer("gone/db.dump.zst") as w:
            for _ in range(12):
                w.write(next(chunks))
            doomed.stop()
            stopped = True
            for chunk in chunks:
                w.write(chunk)
            w.commit()
    finally:
        if not stopped:
            doomed.stop()
    message = str(caught.value)
    assert f"cannot reach {url}" in message and f"s3://{bucket}/{PREFIX}/gone/db.dump.zst" in message
    assert s3.secret_access_key not in message
    survivor = _s3_storage(s3, bucket)  # the same bucket through the endpoint that stayed
    assert not survivor.exists("gone/db.dump.zst") and survivor.list("gone") == []
    # The abort could not reach the endpoint either: the parts wait for Data Aging (or a lifecycle rule).
    assert "incomplete multipart upload may remain" in caplog.text
    assert _uploads(s3, bucket) == [f"{PREFIX}/gone/db.dump.zst"]
    [upload] = survivor.incomplete_uploads("gone")
    survivor.abort_upload(upload)
    assert _uploads(s3, bucket) == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(("case", "reason"), [
    ("wrong secret", "the secret access key does not match the access key id"),
    ("unknown key id", "the endpoint does not know the access key id"),
    ("missing bucket", "does not exist at http://127.0.0.1"),
    ("key without rights", "access denied"),
    ("unreachable endpoint", "cannot reach http://127.0.0.1"),
])
def test_refusals_are_storage_errors_without_the_secret(s3, case, reason):
    bucket = s3.new_bucket()
    wrong = "wrong-secret-0123456789abcdefghijklmnopqrstuv"
    config, secret = s3.config(bucket, PREFIX), s3.secret()
    if case == "wrong secret":
        secret["secretAccessKey"] = wrong
    elif case == "unknown key id":
        secret = {"accessKeyId": "AKIAUNKNOWNPGVAULT00", "secretAccessKey": wrong}
    elif case == "missing bucket":
        config["bucket"] = "pgvault-no-such-bucket"
    elif case == "key without rights":
        iam = s3.client("iam")
        iam.create_user(UserName=f"other-{bucket}")
        iam.put_user_policy(UserName=f"other-{bucket}", PolicyName="elsewhere", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::some-other-bucket/*"}]}))
        key = iam.create_access_key(UserName=f"other-{bucket}")["AccessKey"]
        secret = {"accessKeyId": key["AccessKeyId"], "secretAccessKey": key["SecretAccessKey"]}
    else:
        config["endpoint"] = f"http://127.0.0.1:{_closed_port()}"
    storage = S3Storage.from_config(config, secret, tuning=QUICK)
    attempts = [
        lambda: storage.writer("x/obj").commit(),
        lambda: b"".join(storage.read("x/obj")),
        lambda: storage.list("x"),
        lambda: storage.delete_prefix("x"),
        lambda: storage.incomplete_uploads("x"),  # through botocore
    ]
    for attempt in attempts:
        with pytest.raises(StorageError) as caught:
            attempt()
        message = str(caught.value)
        assert reason in message, message
        for secret_value in (wrong, s3.secret_access_key, secret["secretAccessKey"]):
            assert secret_value not in message
            assert secret_value not in repr(storage)


def test_virtual_hosted_addressing_puts_the_bucket_in_the_host_name(s3):
    """Loopback has no wildcard DNS, so the requests go through moto as an HTTP proxy: the host name
    never has to resolve, and moto finds the bucket in the Host header, which it only does for
    virtual-hosted requests (a path-style request would name a bucket ``obj`` here)."""
    bucket = s3.new_bucket()
    port = s3.url.rsplit(":", 1)[1]
    storage = _s3_storage(s3, bucket, endpoint=f"http://s3.pgvault.test:{port}", virtualHosted=True,
                          allowHttp=True, proxyUrl=s3.url)
    assert storage.endpoint_url == f"http://{bucket}.s3.pgvault.test:{port}"
    with storage.writer("v/obj") as w:
        w.write(b"virtual")
        w.commit()
    assert b"".join(storage.read("v/obj")) == b"virtual"
    assert storage.list("v") == ["v/obj"]
    path_style = _s3_storage(s3, bucket)  # the same object, addressed path-style
    assert path_style.endpoint_url == s3.url
    assert b"".join(path_style.read("v/obj")) == b"virtual"
    assert storage.delete_prefix("v") == 1 and path_style.list("v") == []
    stranded = _stranded(s3, bucket, f"{PREFIX}/v/big")  # botocore addresses the bucket the same way
    [upload] = storage.incomplete_uploads("v")
    assert upload.upload_id == stranded
    storage.abort_upload(upload)
    assert _uploads(s3, bucket) == []


def test_a_bucket_without_prefix_and_open_location(s3):
    bucket = s3.new_bucket()
    storage = open_location("s3", s3.config(bucket), s3.secret())
    assert isinstance(storage, S3Storage)
    with storage.writer("top/obj") as w:
        w.write(b"1")
        w.commit()
    assert storage.uri("top/obj") == f"s3://{bucket}/top/obj"
    assert [o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket)["Contents"]] == ["top/obj"]


@pytest.mark.parametrize(("endpoint", "region", "virtual", "expected"), [
    (None, "eu-west-1", False, "https://s3.eu-west-1.amazonaws.com"),
    (None, "eu-west-1", True, "https://bkt.s3.eu-west-1.amazonaws.com"),
    ("oss-cn-hangzhou.aliyuncs.com", "oss-cn-hangzhou", True, "https://bkt.oss-cn-hangzhou.aliyuncs.com"),
    ("https://bkt.oss-cn-hangzhou.aliyuncs.com", "oss-cn-hangzhou", True, "https://bkt.oss-cn-hangzhou.aliyuncs.com"),
    ("http://minio.lan:9000/", "us-east-1", False, "http://minio.lan:9000"),
    ("https://minio.lan:9000", "us-east-1", True, "https://bkt.minio.lan:9000"),
])
def test_endpoint_and_addressing_mapping(endpoint, region, virtual, expected):
    assert endpoint_url(endpoint, region, "bkt", virtual) == expected


@pytest.mark.parametrize(("config", "secret", "error"), [
    ({"bucket": "bkt", "endpoint": "https://minio.lan/some/path"}, {}, "without a path"),
    ({"bucket": "bkt", "endpoint": "https://10.0.0.5:9000", "virtualHosted": True}, {}, "IP address"),
    ({"bucket": "bkt", "endpoint": "http://minio.lan:9000"}, {}, "plain HTTP"),
    ({"bucket": "Not_A_Bucket"}, {}, "invalid S3 bucket name"),
    ({"bucket": "bkt", "prefix": "a/../b"}, {}, "invalid object key"),
    ({"endpoint": "https://minio.lan"}, {}, "needs a bucket"),
    ({"bucket": "bkt"}, {"accessKeyId": "AKIA"}, "or neither"),
])
def test_bad_configurations_are_refused_up_front(config, secret, error):
    with pytest.raises(StorageError, match=error):
        S3Storage.from_config(config, secret)


def test_plain_http_is_allowed_to_loopback_and_when_asked():
    assert S3Storage.from_config({"bucket": "bkt", "endpoint": "http://127.0.0.1:9000"}, {}).endpoint_url \
        == "http://127.0.0.1:9000"
    assert S3Storage.from_config({"bucket": "bkt", "endpoint": "http://localhost:9000"}, {})
    assert S3Storage.from_config({"bucket": "bkt", "endpoint": "http://minio.lan:9000", "allowHttp": True}, {})
    storage = S3Storage.from_config({"bucket": "bkt", "prefix": "/a/b/"}, {"accessKeyId": "AKIA",
                                                                          "secretAccessKey": "s3cr3t-value"})
    assert storage.location == "s3://bkt/a/b" and "s3cr3t-value" not in repr(storage)


@pytest.mark.skipif(not os.environ.get("PGVAULT_STORAGE_THROUGHPUT"),
                    reason="a measurement, not a check: set PGVAULT_STORAGE_THROUGHPUT=1 and run with -s")
def test_throughput_of_a_200_mb_stream(s3, tmp_path):
    block = random.Random(1).randbytes(1 << 20)
    for name, storage in (("local", LocalStorage(tmp_path / "store")),
                          ("s3 (moto, in-process)", _s3_storage(s3, s3.new_bucket()))):
        started = time.perf_counter()
        with storage.writer("bench/obj") as w:
            for _ in range(200):
                w.write(block)
            w.commit()
        up = time.perf_counter() - started
        started = time.perf_counter()
        size = sum(len(c) for c in storage.read("bench/obj"))
        down = time.perf_counter() - started
        assert size == 200 << 20
        print(f"\n{name}: upload {200 / up:.0f} MiB/s, download {200 / down:.0f} MiB/s")


def test_delete_one_object(storage):
    for key in ("d/x", "d/y"):
        with storage.writer(key) as w:
            w.write(b"1")
            w.commit()
    storage.delete("d/x")
    assert not storage.exists("d/x") and storage.exists("d/y")
    storage.delete("d/never-there")  # not an error


def test_a_fan_out_write_that_fails_on_one_destination_leaves_it_on_none(tmp_path):
    from pgvault.storage import FanOutStorage
    from pgvault.storage.base import ObjectWriter

    class _Refusing(ObjectWriter):
        def write(self, data: bytes) -> None:
            pass

        def commit(self) -> None:
            raise StorageError("the disk is full")

        def abort(self) -> None:
            pass

    class _Full(LocalStorage):
        def writer(self, key: str) -> ObjectWriter:
            return _Refusing()

    first = LocalStorage(tmp_path / "first")
    fan = FanOutStorage([first, _Full(tmp_path / "second")])
    w = fan.writer("backup/file")
    w.write(b"data")
    with pytest.raises(StorageError, match="full"):
        w.commit()
    assert not first.exists("backup/file")


def test_an_object_read_twice_is_downloaded_once(tmp_path):
    """restore.archive.readable_twice: a remote storage's object is copied once into pgvault's private
    runtime folder (removed afterwards); a local storage is read where it is; a copy that cannot be
    written is a ToolError (this host's problem, not the backup's); a kill stops the download."""
    from pgvault.backup.manifest import FileEntry
    from pgvault.errors import ToolError
    from pgvault.pgtools import runner
    from pgvault.restore.archive import readable_twice

    class CountingRemote(LocalStorage):
        remote = True

        def __init__(self, root):
            super().__init__(root)
            self.reads = 0

        def read(self, key, chunk_size=1 << 20):
            self.reads += 1
            yield from super().read(key, chunk_size)

    remote = CountingRemote(tmp_path / "bucket")
    data = os.urandom(3 << 20)
    with remote.writer("p/databases/000-app.dump.zst") as w:
        w.write(data)
        w.commit()
    entry = FileEntry(key="p/databases/000-app.dump.zst", bytes=len(data), sha256="", format="custom+zstd")
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    with readable_twice(remote, entry, runtime_dir=run_dir) as local:
        assert not local.remote and remote.reads == 1
        (copy_dir,) = run_dir.iterdir()
        assert copy_dir.name.startswith("pgvault-") and stat.S_IMODE(copy_dir.stat().st_mode) == 0o700
        assert b"".join(local.read(entry.key)) == data and b"".join(local.read(entry.key)) == data
    assert remote.reads == 1 and list(run_dir.iterdir()) == []
    on_disk = LocalStorage(tmp_path / "bucket")
    with readable_twice(on_disk, entry, runtime_dir=run_dir) as same:
        assert same is on_disk and list(run_dir.iterdir()) == []

    cancel = runner.CancelToken()
    cancel.cancel()
    with pytest.raises(runner.Cancelled), readable_twice(remote, entry, cancel, run_dir):
        pass
    assert list(run_dir.iterdir()) == []
    missing = tmp_path / "missing" / "run"
    with pytest.raises(ToolError, match="no room for a local copy"), readable_twice(remote, entry, runtime_dir=missing):
        pass
