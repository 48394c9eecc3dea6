"""The storage contract, run against every backend (the local folder for now)."""

from __future__ import annotations

import pytest

from pgvault.storage import LocalStorage, StorageError


@pytest.fixture(params=["local"])
def storage(request, tmp_path):
    return LocalStorage(tmp_path / "store")


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
    for key in ("p/1", "p/sub/2", "q/3"):
        with storage.writer(key) as w:
            w.write(key.encode())
            w.commit()
    assert storage.list("p") == ["p/1", "p/sub/2"]
    assert storage.delete_prefix("p") == 2
    assert storage.list("p") == [] and storage.exists("q/3")
    assert storage.delete_prefix("nothing-here") == 0


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
    assert storage.uri("x/y.dump.zst").startswith("file:///")
    assert storage.uri("x/y.dump.zst").endswith("/store/x/y.dump.zst")
