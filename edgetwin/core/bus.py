"""The in-process event bus: fan-out of committed events to bounded subscribers.

Publishers never block: the writer publishes from its after-commit hook with ``publish_nowait``. Each
subscriber has a bounded buffer; one that falls behind is dropped (its channel is closed, so it sees
``EndOfChannel``) instead of growing memory or stalling everyone else. Its adapter then tells its client
(resync or close), which is DESIGN's "bounded everything".
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

import trio

from edgetwin.core.events import ThingEvent

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["EventBus"]

logger = logging.getLogger(__name__)


class EventBus:
    """Fan-out of :class:`ThingEvent` to subscribers.

    Args:
        subscriber_buffer: events a subscriber may have pending before it is dropped.
    """

    def __init__(self, *, subscriber_buffer: int = 1024) -> None:
        self._buffer = subscriber_buffer
        self._subscribers: set[trio.MemorySendChannel[ThingEvent]] = set()
        self.published = 0
        self.dropped = 0

    def publish_nowait(self, event: ThingEvent) -> None:
        """Deliver ``event`` to every subscriber without waiting; drop any that cannot take it."""
        self.published += 1
        for channel in list(self._subscribers):
            try:
                channel.send_nowait(event)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self._drop(channel)

    def _drop(self, channel: trio.MemorySendChannel[ThingEvent]) -> None:
        self._subscribers.discard(channel)
        self.dropped += 1
        logger.warning(
            "event subscriber fell %d events behind and was dropped", channel.statistics().max_buffer_size
        )
        channel.close()

    @contextlib.contextmanager
    def subscribe(self, *, buffer: int | None = None) -> Iterator[trio.MemoryReceiveChannel[ThingEvent]]:
        """Receive every event published while the block is open (``EndOfChannel`` if dropped).

        Args:
            buffer: this subscriber's buffer (default: the bus's ``subscriber_buffer``). A dropped
                subscriber can tell at once, before draining what is buffered: the channel's
                ``statistics().open_send_channels`` is 0.
        """
        size = self._buffer if buffer is None else buffer
        if size < 1:
            raise ValueError("a subscriber buffer must hold at least one event")
        send, receive = trio.open_memory_channel[ThingEvent](size)
        self._subscribers.add(send)
        try:
            with receive:
                yield receive
        finally:
            self._subscribers.discard(send)
            send.close()

    @property
    def subscribers(self) -> int:
        """How many subscribers are attached."""
        return len(self._subscribers)
