"""A device for live-channel tests: a live receiver that records what it gets and answers through the router
(the device side of the protocol, not a stand-in for any edgetwin component)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trio

from edgetwin.core.commands import AuthContext
from edgetwin.core.live import LiveRouter, LiveSignal
from edgetwin.protocol import parse_envelope
from edgetwin.twin.pointer import MISSING

OWNER = AuthContext(("nginx:ditto",))


@dataclass
class Device:
    """A session that speaks for the device: it records what it receives and answers through the router."""

    router: LiveRouter
    auth: AuthContext = OWNER
    signals: list[LiveSignal] = field(default_factory=list)
    arrived: trio.Event = field(default_factory=trio.Event)

    def deliver(self, signal: LiveSignal) -> None:
        self.signals.append(signal)
        self.arrived.set()

    async def next(self) -> LiveSignal:
        while not self.signals:
            self.arrived = trio.Event()
            await self.arrived.wait()
        return self.signals.pop(0)

    def answer(self, signal: LiveSignal, status: int, value: Any = MISSING, **overrides: Any) -> str | None:
        request = signal.envelope.to_json()
        obj: dict[str, Any] = {
            "topic": overrides.pop("topic", request["topic"]),
            "path": overrides.pop("path", request["path"]),
            "headers": {
                "correlation-id": request["headers"]["correlation-id"],
                **overrides.pop("headers", {}),
            },
            "status": status,
        }
        if value is not MISSING:
            obj["value"] = value
        return self.router.answer(parse_envelope(obj), self)

    __hash__ = object.__hash__
