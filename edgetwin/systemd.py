"""systemd's notification protocol: ``READY=1``, ``WATCHDOG=1``, ``STOPPING=1`` over ``$NOTIFY_SOCKET``.

The protocol is one datagram per notification to the unix socket named by ``$NOTIFY_SOCKET`` (a leading
``@`` names an abstract socket). The watchdog interval is half of ``$WATCHDOG_USEC`` (sd_watchdog_enabled
semantics, honouring ``$WATCHDOG_PID``). Outside systemd there is no socket and every call is a no-op.
A failing notification is logged once and never stops the appliance: systemd's watchdog is what notices.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Mapping

    from edgetwin.core.health import Health

__all__ = ["Notifier", "serve_watchdog", "watchdog_interval_s"]

logger = logging.getLogger(__name__)


class Notifier:
    """Sends notifications to systemd, if it asked for them.

    Args:
        address: the value of ``$NOTIFY_SOCKET``, or ``None`` / empty when not under systemd.
    """

    def __init__(self, address: str | None) -> None:
        if address and address.startswith("@"):
            address = "\0" + address[1:]
        self._address = address or None
        self._warned = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Notifier:
        """The notifier for this process's environment."""
        return cls(environ.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        """Whether systemd listens."""
        return self._address is not None

    async def notify(self, message: str) -> None:
        """Send ``message`` (``KEY=VALUE`` lines) as one datagram."""
        if self._address is None:
            return
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            with sock:
                await sock.sendto(message.encode(), self._address)
        except OSError as err:
            if not self._warned:
                logger.warning("cannot notify systemd at %s: %s", self._address, err)
                self._warned = True


def watchdog_interval_s(environ: Mapping[str, str]) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds, or ``None`` when the watchdog is not enabled for us."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2 / 1_000_000


async def serve_watchdog(
    notifier: Notifier,
    interval_s: float,
    health: Health,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Ping the watchdog every ``interval_s`` while the appliance is healthy.

    A wedged event loop stops the pings, and so does a service that went down: in both cases systemd
    restarts the unit after ``WatchdogSec``.
    """
    task_status.started()
    while True:
        if health.snapshot().status == "UP":
            await notifier.notify("WATCHDOG=1")
        await trio.sleep(interval_s)
