"""The event journal: atomic with the change, monotonic across restarts, bounded by count and age."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from edgetwin.core.bus import EventBus
from edgetwin.core.commands import AuthContext, DeleteThing, MergeThing, ModifyThing, Preconditions
from edgetwin.core.events import ThingEvent
from edgetwin.core.service import TwinService
from edgetwin.core.writer import StoreWriter
from edgetwin.errors import PreconditionFailed
from edgetwin.store import Store, WriteTxn, journal

AUTH = AuthContext(("nginx:ditto",))
T = "org.eclipse.ditto:t1"


@dataclass
class Env:
    service: TwinService
    store: Store
    events: trio.MemoryReceiveChannel[ThingEvent]
    clock: list[float]


@asynccontextmanager
async def open_env(path: Path, clock: list[float], **journal_settings: float) -> AsyncIterator[Env]:
    with Store.open(path, map_size_mb=16, max_map_size_mb=64) as store:
        writer = StoreWriter(store, queue_size=64, max_batch=64)
        bus = EventBus(subscriber_buffer=1000)
        service = TwinService(store, writer, bus, now=lambda: clock[0], **journal_settings)  # type: ignore[arg-type]
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.serve)
            with bus.subscribe() as events:
                yield Env(service, store, events, clock)
            writer.close()


def _records(store: Store, after: int = 0) -> list[journal.JournalRecord]:
    with store.read() as r:
        return list(journal.iter_from(r, after))


async def _put(env: Env, path: tuple[str, ...], value: object, **pre: str) -> None:
    await env.service.modify(ModifyThing(T, path, value, Preconditions(**pre)), AUTH)  # type: ignore[arg-type]


async def test_every_change_is_journaled_with_its_seq_in_commit_order(tmp_path: Path) -> None:
    async with open_env(tmp_path, [1_700_000_000.0]) as env:
        await _put(env, (), {"attributes": {"a": 1}})
        await env.service.merge(MergeThing(T, ("attributes",), {"b": 2}, Preconditions()), AUTH)
        await env.service.delete(DeleteThing(T, (), Preconditions()), AUTH)
        published = [await env.events.receive() for _ in range(3)]
        records = _records(env.store)
    assert [e.seq for e in published] == [r.seq for r in records] == [1, 2, 3]
    assert [r.action for r in records] == ["created", "merged", "deleted"]
    assert records[1].path == ("attributes",)
    assert records[1].value == {"b": 2}
    assert records[1].revision == 2
    assert records[1].timestamp == published[1].timestamp
    # Deleting the whole thing journals too, with the policy that governed it (for READ checks later).
    assert records[2].policy_id == T == published[2].policy_id
    assert published[2].thing is None


async def test_a_refused_write_journals_nothing(tmp_path: Path) -> None:
    async with open_env(tmp_path, [1_700_000_000.0]) as env:
        await _put(env, (), {"attributes": {"a": 1}})
        with pytest.raises(PreconditionFailed):
            await _put(env, ("attributes", "a"), 2, if_match='"rev:99"')
        with env.store.read() as r:
            assert journal.last_seq(r) == 1
        assert [r.seq for r in _records(env.store)] == [1]


async def test_sequence_numbers_continue_across_a_restart_and_are_never_reused(tmp_path: Path) -> None:
    clock = [1_700_000_000.0]
    async with open_env(tmp_path, clock, journal_max_events=1) as env:
        await _put(env, (), {"attributes": {"a": 1}})
        await _put(env, ("attributes", "a"), 2)
    async with open_env(tmp_path, clock, journal_max_events=1) as env:
        await _put(env, ("attributes", "a"), 3)
        event = await env.events.receive()
        records = _records(env.store)
    assert event.seq == 3
    assert [(r.seq, r.value) for r in records] == [(3, 3)]  # pruned to one, numbering untouched


async def test_retention_by_count(tmp_path: Path) -> None:
    async with open_env(tmp_path, [1_700_000_000.0], journal_max_events=3) as env:
        await _put(env, (), {"attributes": {"a": 0}})
        for i in range(1, 10):
            await _put(env, ("attributes", "a"), i)
        assert [r.seq for r in _records(env.store)] == [8, 9, 10]
        with env.store.read() as r:
            assert journal.first_seq(r) == 8
            assert journal.last_seq(r) == 10
        page = env.service.replay(0, limit=100)
        assert (page.first_seq, page.last_seq, [e.seq for e in page.events]) == (8, 10, [8, 9, 10])


async def test_retention_by_age_uses_the_service_clock(tmp_path: Path) -> None:
    clock = [1_700_000_000.0]
    async with open_env(tmp_path, clock, journal_max_age_s=100) as env:
        await _put(env, (), {"attributes": {"a": 0}})
        clock[0] += 60
        await _put(env, ("attributes", "a"), 1)
        clock[0] += 60  # the first event is now 120 s old
        await _put(env, ("attributes", "a"), 2)
        assert [r.seq for r in _records(env.store)] == [2, 3]
        # Replay also leaves out events that aged out while no write came to prune them.
        clock[0] += 90
        assert [e.seq for e in env.service.replay(0, limit=10).events] == [3]


def test_pruning_removes_a_small_batch_per_commit(tmp_path: Path) -> None:
    with Store.open(tmp_path, map_size_mb=16, max_map_size_mb=64) as store:

        def fill(w: WriteTxn) -> None:
            for i in range(200):
                journal.append(
                    w,
                    action="modified",
                    thing_id=T,
                    path=("attributes", "a"),
                    value=i,
                    revision=i + 1,
                    timestamp="2024-01-01T00:00:00.000000Z",
                    policy_id=T,
                )

        def prune(w: WriteTxn) -> int:
            return journal.prune(w, max_events=10, oldest_timestamp="2000-01-01T00:00:00.000000Z")

        store.commit_batch([fill])
        removed = [store.commit_batch([prune])[0].value for _ in range(4)]
        with store.read() as r:
            assert journal.first_seq(r) == 191
            assert journal.last_seq(r) == 200
    assert removed == [journal.PRUNE_BATCH, journal.PRUNE_BATCH, 190 - 2 * journal.PRUNE_BATCH, 0]


def test_retention_by_size_keeps_the_newest_bytes(tmp_path: Path) -> None:
    with Store.open(tmp_path, map_size_mb=16, max_map_size_mb=64) as store:

        def append(i: int) -> Callable[[WriteTxn], int]:
            def write(w: WriteTxn) -> int:
                seq = journal.append(
                    w,
                    action="modified",
                    thing_id=T,
                    path=("attributes", "blob"),
                    value="x" * 1000,
                    revision=i + 1,
                    timestamp="2024-01-01T00:00:00.000000Z",
                    policy_id=T,
                )
                journal.prune(
                    w, max_events=1000, oldest_timestamp="2000-01-01T00:00:00.000000Z", max_bytes=10_000
                )
                return seq

            return write

        for i in range(30):
            store.commit_batch([append(i)])
        with store.read() as r:
            size = journal.size_bytes(r)
            records = list(journal.iter_from(r, 0))
            assert size == sum(len(raw) for _, raw in r.items("journal"))  # the counter is exact
        assert size <= 10_000 < size + size // len(records)  # as many as fit, not one fewer
        assert [rec.seq for rec in records] == list(range(31 - len(records), 31))  # the newest ones
