"""The LMDB store: schema versions, batch isolation, map growth and a full store."""

from __future__ import annotations

from pathlib import Path

import lmdb
import pytest

from edgetwin.errors import InvalidInput, StoreError, StoreVersionError
from edgetwin.store import SCHEMA_VERSION, MapFull, Store, WriteTxn


def open_store(path: Path, size: int = 1, maximum: int = 4):
    return Store.open(path, map_size_mb=size, max_map_size_mb=maximum)


def put(key: bytes, value: bytes):
    def op(txn: WriteTxn) -> bytes:
        txn.put("kv", key, value)
        return key

    return op


def test_creates_directory_and_records_schema(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b"
    with open_store(path) as store, store.read() as r:
        assert r.get("meta", b"schema_version") == str(SCHEMA_VERSION).encode()
    assert (path / "data.mdb").exists()


def test_refuses_store_from_newer_schema(tmp_path: Path) -> None:
    with open_store(tmp_path):
        pass
    env = lmdb.open(str(tmp_path), max_dbs=10)
    with env.begin(write=True, db=env.open_db(b"meta")) as txn:
        txn.put(b"schema_version", str(SCHEMA_VERSION + 1).encode())
    env.close()
    with pytest.raises(StoreVersionError, match="newer edgetwin"), open_store(tmp_path):
        pass


def test_unusable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with (
        pytest.raises(StoreError, match=r"^storage\.path: cannot create .*file/sub"),
        open_store(blocker / "sub"),
    ):
        pass


def test_batch_commits_together_and_isolates_failures(tmp_path: Path) -> None:
    def bad(txn: WriteTxn) -> None:
        txn.put("kv", b"bad", b"partial")
        raise InvalidInput("no")

    def buggy(txn: WriteTxn) -> None:
        raise RuntimeError("bug")

    with open_store(tmp_path) as store:
        outcomes = store.commit_batch([put(b"a", b"1"), bad, buggy, put(b"b", b"2")])
        assert [o.value for o in outcomes] == [b"a", None, None, b"b"]
        assert isinstance(outcomes[1].error, InvalidInput)
        assert isinstance(outcomes[2].error, RuntimeError)
        with store.read() as r:
            assert r.get("kv", b"a") == b"1"
            assert r.get("kv", b"b") == b"2"
            assert r.get("kv", b"bad") is None  # the failed op's own writes were rolled back
        stats = store.statistics()
        assert (stats.commits, stats.writes, stats.failed_writes) == (1, 2, 2)


def test_later_ops_of_a_batch_see_earlier_ones(tmp_path: Path) -> None:
    def increment(txn: WriteTxn) -> int:
        n = int(txn.get("kv", b"n") or b"0") + 1
        txn.put("kv", b"n", str(n).encode())
        return n

    with open_store(tmp_path) as store:
        assert [o.value for o in store.commit_batch([increment] * 5)] == [1, 2, 3, 4, 5]


def test_items_by_prefix(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.commit_batch([put(k, k) for k in (b"a1", b"b1", b"b2", b"b3", b"c1")])
        with store.read() as r:
            assert [k for k, _ in r.items("kv", prefix=b"b")] == [b"b1", b"b2", b"b3"]
            assert [k for k, _ in r.items("kv", prefix=b"b", start=b"b2")] == [b"b2", b"b3"]
            assert r.count("kv") == 5


def test_map_full_refuses_the_whole_batch_then_grows(tmp_path: Path) -> None:
    big = b"x" * 300_000
    with open_store(tmp_path, size=1, maximum=4) as store:
        store.commit_batch([put(b"keep", b"safe")])
        with pytest.raises(MapFull):
            store.commit_batch([put(b"k%d" % i, big) for i in range(6)])
        with store.read() as r:
            assert r.get("kv", b"k0") is None
            assert r.get("kv", b"keep") == b"safe"
        assert store.grow()
        assert store.grow()
        assert not store.grow()  # at the 4 MiB maximum
        assert store.statistics().map_size_bytes == 4 * 1024 * 1024
        store.commit_batch([put(b"k%d" % i, big) for i in range(6)])
        with store.read() as r:
            assert r.get("kv", b"k5") == big


def test_store_larger_than_initial_map_reopens(tmp_path: Path) -> None:
    big = b"x" * 300_000
    with open_store(tmp_path, size=1, maximum=8) as store:
        store.grow()
        store.grow()
        store.commit_batch([put(b"k%d" % i, big) for i in range(8)])
    with open_store(tmp_path, size=1, maximum=8) as store, store.read() as r:
        assert all(r.get("kv", b"k%d" % i) == big for i in range(8))
        assert store.statistics().map_size_bytes >= 8 * 300_000
