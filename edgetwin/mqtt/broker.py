"""The MQTT listener.

The broker itself is not built yet (issue 7). Until it is, edgetwin still owns ``mqtt.bind`` — so a port
conflict shows at start-up and health covers the listener — and answers every CONNECT honestly with
"server unavailable" (MQTT 3.1.1 return code 3, MQTT 5 reason code 0x88) before closing, instead of
leaving clients to hang.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import trio

from edgetwin.config import MqttSettings, parse_bind
from edgetwin.errors import EdgeTwinError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["serve_mqtt"]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 10.0
CONNACK_UNAVAILABLE_V311: Final = b"\x20\x02\x00\x03"
CONNACK_UNAVAILABLE_V5: Final = b"\x20\x03\x00\x88\x00"


def _protocol_level(data: bytes) -> int | None:
    """The protocol level of a CONNECT packet's start, or ``None`` if it is not (yet) one."""
    if not data or data[0] != 0x10:
        return None
    i = 1
    while i < len(data) and data[i] & 0x80:  # variable-length remaining length (MQTT 2.2.3)
        i += 1
    i += 1
    # protocol name: 2-byte length + "MQTT" (or "MQIsdp" for 3.1), then the level byte
    if len(data) < i + 2:
        return None
    name_len = int.from_bytes(data[i : i + 2], "big")
    level_at = i + 2 + name_len
    return data[level_at] if len(data) > level_at else None


async def _refuse(stream: trio.SocketStream) -> None:
    try:
        data = b""
        with trio.move_on_after(CONNECT_TIMEOUT_S):
            while (level := _protocol_level(data)) is None and len(data) < 64:
                chunk = await stream.receive_some(256)
                if not chunk:
                    return
                data += chunk
            await stream.send_all(CONNACK_UNAVAILABLE_V5 if level == 5 else CONNACK_UNAVAILABLE_V311)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def serve_mqtt(
    settings: MqttSettings,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``mqtt.bind`` until ``shutdown_trigger`` returns; report the bound addresses.

    Raises:
        EdgeTwinError: the address cannot be bound (naming ``mqtt.bind``).
    """
    host, port = parse_bind(settings.bind, key="mqtt.bind")
    try:
        listeners: list[Any] = await trio.open_tcp_listeners(port, host=host)
    except OSError as err:
        raise EdgeTwinError(f"mqtt.bind: cannot listen on {settings.bind}: {err.strerror or err}") from None
    bound = []
    for listener in listeners:
        h, p = listener.socket.getsockname()[:2]
        bound.append(f"[{h}]:{p}" if ":" in h else f"{h}:{p}")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(trio.serve_listeners, _refuse, listeners))
        task_status.started(bound)
        await shutdown_trigger()
        nursery.cancel_scope.cancel()
    for listener in listeners:
        await listener.aclose()
