"""Service states behind ``GET /health`` and the systemd readiness notification.

Each long-lived service registers itself as ``starting``, reports ``up`` once it serves, and
``stopping`` on shutdown. The appliance is ``UP`` only while every registered service is up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Health", "HealthSnapshot", "ServiceState"]

ServiceState = Literal["starting", "up", "stopping", "down"]


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """The appliance's state: ``UP`` when every service is up, else ``DOWN``."""

    status: Literal["UP", "DOWN"]
    services: dict[str, ServiceState]

    def to_json(self) -> dict[str, object]:
        """The ``/health`` body."""
        return {
            "status": self.status,
            "services": {name: {"status": state.upper()} for name, state in self.services.items()},
        }


class Health:
    """Mutable registry of service states, owned by the app's root task."""

    def __init__(self) -> None:
        self._states: dict[str, ServiceState] = {}
        self._stopping = False

    def set(self, service: str, state: ServiceState) -> None:
        """Record ``service``'s state (registering it on first use)."""
        self._states[service] = state

    def stopping(self) -> None:
        """The whole appliance is shutting down: health is DOWN from now on."""
        self._stopping = True
        for name in self._states:
            self._states[name] = "stopping"

    def snapshot(self) -> HealthSnapshot:
        """The current state of every service."""
        up = bool(self._states) and not self._stopping and all(s == "up" for s in self._states.values())
        return HealthSnapshot(status="UP" if up else "DOWN", services=dict(self._states))
