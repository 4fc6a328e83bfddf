"""The single writer: group commit, durability before wake-up, order, growth and a full store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from edgetwin.core.writer import StoreWriter
from edgetwin.errors import PreconditionFailed, StoreFull, Unavailable
from edgetwin.store import Store, WriteTxn


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    with Store.open(tmp_path, map_size_mb=1, max_map_size_mb=4) as s:
        yield s


@pytest.fixture
async def writer(store: Store) -> AsyncIterator[StoreWriter]:
    w = StoreWriter(store, queue_size=1024, max_batch=512)
    async with trio.open_nursery() as nursery:
        await nursery.start(w.serve)
        yield w
        w.close()


def append(key: bytes, item: bytes):
    """Read-modify-write: append ``item`` to the list stored under ``key``; returns the new length."""

    def op(txn: WriteTxn) -> int:
        current = txn.get("kv", key) or b""
        value = current + item + b","
        txn.put("kv", key, value)
        return value.count(b",")

    return op


async def test_concurrent_writers_are_all_durable_and_share_commits(
    store: Store, writer: StoreWriter
) -> None:
    results: dict[int, int] = {}

    async def one(i: int) -> None:
        results[i] = await writer.submit(append(b"k", b"%d" % i))
        # Woken only after commit: the write is visible to a fresh read transaction already.
        with store.read() as r:
            assert b"%d," % i in (r.get("kv", b"k") or b"")

    async with trio.open_nursery() as nursery:
        for i in range(256):
            nursery.start_soon(one, i)
    # No update lost: every read-modify-write saw the one before.
    assert sorted(results.values()) == list(range(1, 257))
    with store.read() as r:
        assert len((r.get("kv", b"k") or b"").split(b",")) == 257
    stats = writer.statistics()
    assert stats.writes == 256
    assert stats.batches < 256 / 4  # group commit: many writes per transaction
    assert store.statistics().commits == stats.batches


async def test_per_key_order_follows_submission_order(store: Store, writer: StoreWriter) -> None:
    # One task submitting in sequence: each write lands after the previous one.
    for i in range(20):
        await writer.submit(append(b"seq", b"%d" % i))
    with store.read() as r:
        assert r.get("kv", b"seq") == b"".join(b"%d," % i for i in range(20))


async def test_after_commit_runs_in_commit_order_before_wakeup(store: Store, writer: StoreWriter) -> None:
    seen: list[int] = []

    async def one(i: int) -> None:
        n = await writer.submit(append(b"o", b"x"), after_commit=seen.append)
        assert n in seen  # the callback (the event bus, later) ran before the caller woke

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(one, i)
    assert seen == list(range(1, 51))


async def test_a_failing_write_fails_alone(store: Store, writer: StoreWriter) -> None:
    def refuse(txn: WriteTxn) -> None:
        txn.put("kv", b"refused", b"x")
        raise PreconditionFailed("condition not met")

    async def bad() -> None:
        with pytest.raises(PreconditionFailed):
            await writer.submit(refuse)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(bad)
        for i in range(10):
            nursery.start_soon(writer.submit, append(b"good", b"%d" % i))
    with store.read() as r:
        assert r.get("kv", b"refused") is None
        assert (r.get("kv", b"good") or b"").count(b",") == 10


async def test_map_grows_when_full(store: Store, writer: StoreWriter) -> None:
    def big(i: int):
        def op(txn: WriteTxn) -> None:
            txn.put("kv", b"big%d" % i, b"x" * 200_000)

        return op

    async with trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(writer.submit, big(i))
    assert store.statistics().map_size_bytes > 1024 * 1024
    with store.read() as r:
        assert all(r.get("kv", b"big%d" % i) for i in range(8))


async def test_full_store_refuses_writes_and_keeps_data(store: Store, writer: StoreWriter) -> None:
    await writer.submit(append(b"precious", b"1"))

    def huge(txn: WriteTxn) -> None:
        txn.put("kv", b"huge", b"x" * (6 * 1024 * 1024))

    with pytest.raises(StoreFull, match=r"storage\.max_map_size_mb"):
        await writer.submit(huge)
    # Small writes still fit, and nothing stored before was harmed.
    assert await writer.submit(append(b"precious", b"2")) == 2
    with store.read() as r:
        assert r.get("kv", b"precious") == b"1,2,"
        assert r.get("kv", b"huge") is None


async def test_close_drains_queue_then_refuses(store: Store) -> None:
    w = StoreWriter(store, queue_size=100, max_batch=4)
    done: list[int] = []

    async def one(i: int) -> None:
        done.append(await w.submit(append(b"d", b"%d" % i)))

    async with trio.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(one, i)
        await trio.testing.wait_all_tasks_blocked()
        w.close()  # queued before close: still committed
        nursery.start_soon(w.serve)
    assert sorted(done) == list(range(1, 11))
    with pytest.raises(Unavailable):
        await w.submit(append(b"d", b"late"))
