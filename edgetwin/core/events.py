"""Events: what a committed change tells the rest of the appliance.

Published on the :class:`~edgetwin.core.bus.EventBus` only after the write is durable, in commit order,
with the thing's new revision. Later issues turn them into Ditto Protocol events (WebSocket), SSE
messages, MQTT publications and connector payloads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from edgetwin.twin.pointer import Json, Pointer

__all__ = ["ThingEvent"]


@dataclass(frozen=True, slots=True)
class ThingEvent:
    """A thing (or a part of it) was created, modified, merged or deleted.

    ``value`` is the new value at ``path`` (the merge patch for ``merged``; ``None`` for ``deleted``).
    ``thing`` is the whole thing after the change (``None`` after deleting the whole thing): subscribers
    filter and project from it without reading the store.

    ``seq`` is the event's number in the event journal (``edgetwin.store.journal``): monotonic, never reused,
    assigned in the write transaction of the change (0 for an event that was never journaled).
    ``policy_id`` is the policy that governed the thing at the change, kept also when ``thing`` is ``None``,
    so that subscribers can check READ on a deleted thing's event.
    """

    action: Literal["created", "modified", "merged", "deleted"]
    thing_id: str
    path: Pointer
    value: Json
    revision: int
    timestamp: str
    thing: dict[str, Json] | None
    correlation_id: str | None = None
    seq: int = 0
    policy_id: str | None = None
