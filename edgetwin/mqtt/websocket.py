"""MQTT over WebSocket (``mqtt.websocket_bind``): binary frames carry the MQTT byte stream (MQTT 5.0 §6).

The WebSocket handshake must offer the subprotocol ``mqtt`` (MQTT-6.0.0-3; ``mqttv3.1`` is accepted too, as
old clients send it); other requests are refused with 400. Each accepted connection is handed to
:meth:`Broker.handle <edgetwin.mqtt.broker.Broker.handle>` as a stream: frames in are bytes in (a packet may
span frames, and a frame may hold several packets, MQTT-6.0.0-2), bytes out are one binary frame per write.
A text frame is a protocol violation and closes the connection (MQTT-6.0.0-1).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from edgetwin.config import parse_bind
from edgetwin.errors import EdgeTwinError

if TYPE_CHECKING:
    from edgetwin.mqtt.broker import Broker

__all__ = ["SUBPROTOCOLS", "WebSocketStream", "serve_mqtt_websocket"]

logger = logging.getLogger(__name__)

SUBPROTOCOLS: Final = ("mqtt", "mqttv3.1")


class WebSocketStream:
    """A WebSocket connection as the byte stream the broker reads and writes."""

    def __init__(self, connection: WebSocketConnection) -> None:
        self._connection = connection

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """The next binary frame's bytes; ``b""`` once the connection is closed."""
        try:
            message = await self._connection.get_message()
        except ConnectionClosed:
            return b""
        if isinstance(message, str):
            logger.info("MQTT over WebSocket: a text frame; closing (MQTT-6.0.0-1)")
            await self._connection.aclose(code=1003, reason="MQTT needs binary frames")
            return b""
        return bytes(message)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """One binary frame."""
        try:
            await self._connection.send_message(bytes(data))
        except ConnectionClosed:
            raise trio.BrokenResourceError("the WebSocket is closed") from None

    async def aclose(self) -> None:
        await self._connection.aclose()

    @property
    def socket(self) -> Any:
        """The underlying socket (for the peer's address)."""
        return self._connection._stream.socket  # type: ignore[attr-defined]


async def serve_mqtt_websocket(
    bind: str, broker: Broker, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve MQTT over WebSocket on ``bind`` until cancelled; reports the bound address.

    Raises:
        EdgeTwinError: the address cannot be bound (naming ``mqtt.websocket_bind``).
    """
    host, port = parse_bind(bind, key="mqtt.websocket_bind")

    async def handler(request: WebSocketRequest) -> None:
        offered = request.proposed_subprotocols
        chosen = next((p for p in offered if p in SUBPROTOCOLS), None)
        if chosen is None:
            await request.reject(400, body=b"MQTT over WebSocket needs the subprotocol 'mqtt'")
            return
        connection = await request.accept(subprotocol=chosen)
        await broker.handle(WebSocketStream(connection))

    async with trio.open_nursery() as nursery:
        try:
            ws_server = await nursery.start(
                lambda task_status: serve_websocket(
                    handler,
                    host,
                    port,
                    None,
                    handler_nursery=nursery,
                    max_message_size=16 * 1024 * 1024,
                    task_status=task_status,
                )
            )
        except OSError as err:
            raise EdgeTwinError(
                f"mqtt.websocket_bind: cannot listen on {bind}: {err.strerror or err}"
            ) from None
        endpoint = ws_server.listeners[0]
        h, p = str(endpoint.address), endpoint.port
        task_status.started(f"[{h}]:{p}" if ":" in h else f"{h}:{p}")
        await trio.sleep_forever()
