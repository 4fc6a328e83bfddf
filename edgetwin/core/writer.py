"""The single store writer: group commit, off the event loop.

LMDB allows one write transaction at a time, so every write in the process goes through one task. Callers
``await writer.submit(fn)``; the task takes everything queued so far (up to ``storage.max_batch``), runs
the write functions in one transaction in a worker thread (fsync included), and only then wakes each
caller with its own result. Many concurrent writers therefore share one fsync: that is what makes
durable writes fast.

A write function runs *inside* the write transaction, against the latest committed state plus the
earlier functions of its batch, so read-modify-write commands are serialised without locks and no
update is lost. It must be pure over its :class:`~edgetwin.store.WriteTxn` (the batch may be replayed
after the map grows) and must not block.

``after_commit`` callbacks run on the event loop in commit order, before any waiter is woken: the event
bus publishes from there, so events are never seen before their write is durable, and always in the
order the writes were committed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import trio

from edgetwin.errors import StoreError, Unavailable
from edgetwin.store import MapFull, Outcome, Store, WriteTxn

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)

T = TypeVar("T")


class _Pending(Generic[T]):
    __slots__ = ("after_commit", "done", "error", "op", "value")

    def __init__(self, op: Callable[[WriteTxn], T], after_commit: Callable[[T], None] | None) -> None:
        self.op = op
        self.after_commit = after_commit
        self.done = trio.Event()
        self.value: T | None = None
        self.error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class WriterStatistics:
    """A snapshot of the writer's counters."""

    batches: int
    writes: int
    largest_batch: int
    queued: int


class StoreWriter:
    """Owns the store's write side. Run :meth:`serve` in the root nursery; stop it with :meth:`close`.

    Args:
        store: the open store.
        queue_size: pending writes accepted before submitters wait (``storage.write_queue``).
        max_batch: the most writes committed in one transaction (``storage.max_batch``).
    """

    def __init__(self, store: Store, *, queue_size: int, max_batch: int) -> None:
        self._store = store
        self._max_batch = max_batch
        self._send, self._receive = trio.open_memory_channel[_Pending[Any]](queue_size)
        # One thread at a time runs a transaction: LMDB write txns are single-threaded.
        self._limiter = trio.CapacityLimiter(1)
        self._batches = 0
        self._writes = 0
        self._largest = 0

    async def submit(
        self,
        op: Callable[[WriteTxn], T],
        *,
        after_commit: Callable[[T], None] | None = None,
        on_queued: Callable[[], None] | None = None,
    ) -> T:
        """Run ``op`` in the next group commit and return its result once it is durable.

        ``on_queued`` is called as soon as ``op`` has its place in the queue: writes queued in some order
        are applied in that order, so a caller that pipelines (one WebSocket sending many commands) may
        hand over the next write then, without waiting for this one to be durable.

        Raises:
            Unavailable: the writer is stopping.
            EdgeTwinError: whatever ``op`` raised; nothing of ``op`` was written.
            StoreFull: the store cannot grow any more; nothing of ``op`` was written.
        """
        pending: _Pending[T] = _Pending(op, after_commit)
        try:
            await self._send.send(pending)
        except trio.ClosedResourceError:
            raise Unavailable("The store is shutting down; the write was not applied.") from None
        if on_queued is not None:
            on_queued()
        # If the caller is cancelled now, the write may still commit: like any database, a write that
        # was handed over cannot be taken back.
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.value  # type: ignore[return-value]

    def close(self) -> None:
        """Stop taking writes. Writes already queued are still committed before :meth:`serve` returns."""
        self._send.close()

    def statistics(self) -> WriterStatistics:
        """Counters since start."""
        return WriterStatistics(
            batches=self._batches,
            writes=self._writes,
            largest_batch=self._largest,
            queued=self._receive.statistics().current_buffer_used,
        )

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Commit queued writes until :meth:`close` is called and the queue is drained."""
        task_status.started()
        async with self._receive:
            async for first in self._receive:
                batch = [first]
                while len(batch) < self._max_batch:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await self._commit(batch)

    async def _commit(self, batch: Sequence[_Pending[Any]]) -> None:
        outcomes = await self._commit_growing(batch)
        self._batches += 1
        self._writes += len(batch)
        self._largest = max(self._largest, len(batch))
        for pending, outcome in zip(batch, outcomes, strict=True):
            if outcome.error is None and pending.after_commit is not None:
                try:
                    pending.after_commit(outcome.value)
                except Exception:
                    logger.exception("after-commit callback failed")
            pending.value, pending.error = outcome.value, outcome.error
            pending.done.set()

    async def _commit_growing(self, batch: Sequence[_Pending[Any]]) -> list[Outcome[Any]]:
        ops = [p.op for p in batch]
        while True:
            try:
                # Not cancellable (abandon_on_cancel=False): a commit in progress always finishes, so
                # shutdown never leaves a caller without its answer.
                return await trio.to_thread.run_sync(self._store.commit_batch, ops, limiter=self._limiter)
            except MapFull:
                # Safe here: we are on the event loop thread and reads never span an await, so no
                # transaction of this process is open.
                if self._store.grow():
                    continue
                break
            except StoreError as err:
                logger.error("store commit failed: %s", err)
                return [Outcome(error=err) for _ in batch]
        if len(batch) == 1:
            return [Outcome(error=self._store.full_error())]
        # At the maximum size: try each write alone, so that the ones that still fit are not refused
        # because of a large neighbour.
        outcomes: list[Outcome[Any]] = []
        for pending in batch:
            outcomes.extend(await self._commit_growing([pending]))
        return outcomes
