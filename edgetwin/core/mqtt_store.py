"""The broker's durable state: retained messages (the one store the MQTT broker and the messaging API share)
and persistent MQTT sessions with the messages queued for them.

Contract:

* Reads (:meth:`BrokerStore.retained`, :meth:`~BrokerStore.scan_retained`, :meth:`~BrokerStore.
  load_sessions`) are short read transactions; expired retained messages are left out.
* :meth:`BrokerStore.commit_publish` makes one published message durable in one group commit: the retained
  value set or deleted, and the message queued for every persistent session that must get it. The broker
  acknowledges the publisher (PUBACK/PUBREC) only after it returns, so nothing acknowledged is lost.
* Acknowledged queue records are removed in batches by :meth:`BrokerStore.serve` (every
  :data:`ACK_FLUSH_S`, or at once when :data:`ACK_BATCH` are waiting): a crash in between re-sends a few
  messages, which QoS 1 allows, and no commit per acknowledgement slows subscribers down.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import trio

from edgetwin.store.mqtt_sessions import (
    QueuedMessage,
    SessionRecord,
    delete_session,
    dequeue,
    enqueue,
    iter_queue,
    iter_sessions,
    put_session,
)
from edgetwin.store.retained import (
    RetainedMessage,
    delete_retained,
    get_retained,
    iter_retained,
    put_retained,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from edgetwin.core.writer import StoreWriter
    from edgetwin.store import Store, WriteTxn

__all__ = ["ACK_BATCH", "ACK_FLUSH_S", "BrokerStore", "QueuedMessage", "RetainedMessage", "SessionRecord"]

logger = logging.getLogger(__name__)

ACK_FLUSH_S: Final = 0.05
ACK_BATCH: Final = 256


class BrokerStore:
    """Retained messages and persistent sessions through the single writer.

    Args:
        store: the open store (reads).
        writer: the single writer (writes).
        clock: seconds since the epoch (message expiry).
    """

    def __init__(self, store: Store, writer: StoreWriter, *, clock: Callable[[], float]) -> None:
        self._store = store
        self._writer = writer
        self._clock = clock
        self._acked: list[tuple[str, int]] = []
        self._ack_wanted = trio.Event()

    # ------------------------------------------------------------- retained

    def retained(self, topic: str) -> RetainedMessage | None:
        """The retained message of ``topic`` (``None``: none, or it expired)."""
        with self._store.read() as r:
            message = get_retained(r, topic)
        if message is None or _expired(message.expires_at, self._clock()):
            return None
        return message

    def scan_retained(self, prefix: str, *, limit: int | None = None) -> list[RetainedMessage]:
        """Retained messages whose topic starts with ``prefix``, in topic order, unexpired, at most ``limit``."""
        now = self._clock()
        out: list[RetainedMessage] = []
        with self._store.read() as r:
            for message in iter_retained(r, prefix):
                if _expired(message.expires_at, now):
                    continue
                out.append(message)
                if limit is not None and len(out) >= limit:
                    break
        return out

    # ------------------------------------------------------------- publish

    async def commit_publish(
        self,
        *,
        retain: RetainedMessage | str | None,
        queued: Sequence[tuple[str, QueuedMessage]] = (),
        on_queued: Callable[[], None] | None = None,
    ) -> list[int]:
        """Make a publication durable: set (a message) or delete (a topic) the retained value, and queue it
        for persistent sessions. ``on_queued`` is called once the write has its place in the writer's queue
        (see :meth:`StoreWriter.submit <edgetwin.core.writer.StoreWriter.submit>`), so a connection can hand
        over its next publication and get both into one group commit.

        Returns:
            The queue sequence numbers, in the order of ``queued``.
        """

        def write(w: WriteTxn) -> list[int]:
            if isinstance(retain, str):
                delete_retained(w, retain)
            elif retain is not None:
                put_retained(w, retain)
            return [enqueue(w, client_id, message) for client_id, message in queued]

        return await self._writer.submit(write, on_queued=on_queued)

    # ------------------------------------------------------------- sessions

    def load_sessions(self) -> list[tuple[SessionRecord, list[tuple[int, QueuedMessage]]]]:
        """Every persistent session with its queued messages (at start-up)."""
        with self._store.read() as r:
            return [(record, list(iter_queue(r, record.client_id))) for record in iter_sessions(r)]

    async def save_session(self, record: SessionRecord) -> None:
        """Store (or replace) a persistent session's record; durable on return."""

        def write(w: WriteTxn) -> None:
            put_session(w, record)

        await self._writer.submit(write)

    async def drop_session(self, client_id: str) -> None:
        """Forget a session and its queue (clean start, or its expiry)."""

        def write(w: WriteTxn) -> None:
            delete_session(w, client_id)

        await self._writer.submit(write)

    def acknowledged(self, client_id: str, seq: int) -> None:
        """A queued message reached its client: remove its record in the next batch."""
        self._acked.append((client_id, seq))
        if len(self._acked) >= ACK_BATCH:
            self._ack_wanted.set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Remove acknowledged queue records in batches until cancelled (then once more)."""
        task_status.started()
        try:
            while True:
                with trio.move_on_after(ACK_FLUSH_S):
                    await self._ack_wanted.wait()
                self._ack_wanted = trio.Event()
                await self._flush()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self._flush()

    async def _flush(self) -> None:
        if not self._acked:
            return
        batch, self._acked = self._acked, []

        def write(w: WriteTxn) -> None:
            for client_id, seq in batch:
                dequeue(w, client_id, seq)

        try:
            await self._writer.submit(write)
        except (
            Exception
        ):  # the store is stopping: the messages are re-sent after a restart (QoS 1/2 allow it)
            logger.warning("%d acknowledged MQTT messages stay queued until the next start", len(batch))


def _expired(expires_at: float | None, now: float) -> bool:
    return expires_at is not None and expires_at <= now
