"""A streaming decoder: feed received bytes, iterate the complete packets (h11's ``receive_data`` shape).

Contract:

* Packets come out in order, each exactly once; a partial packet waits for more bytes. Each received byte
  is copied a bounded number of times however it is split, so a large packet arriving in many small
  reads costs linear time, and bytes beyond a packet's end are never inspected before it is complete.
* Until a protocol level is known (none was given), the first packet must be a CONNECT (MQTT-3.1.0-1); its
  level becomes the reader's. As the server (``role="server"``), a second CONNECT is a protocol error
  (MQTT-3.1.0-2).
* The first :class:`DecodeError` breaks the reader: it is raised again on every later attempt, because
  after a malformed packet the stream cannot be re-synchronised (§4.13: close the connection).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgetwin.mqtt.codec._decode import decode_body, frame
from edgetwin.mqtt.codec._enums import PacketType
from edgetwin.mqtt.codec._errors import DecodeError, Incomplete
from edgetwin.mqtt.codec._packets import Connect
from edgetwin.mqtt.codec._primitives import protocol_error

if TYPE_CHECKING:
    from collections.abc import Iterator

    from edgetwin.mqtt.codec._decode import Role
    from edgetwin.mqtt.codec._packets import Packet

__all__ = ["PacketReader"]


class PacketReader:
    """Decode a byte stream into packets.

    Args:
        role: ``"server"`` (decoding what a client sends) or ``"client"``; ``None`` checks no direction.
        protocol_level: the level if already known (a client knows what it sent in CONNECT); ``None``
            waits for a CONNECT and takes its level.
        max_packet_size: the largest packet accepted (our Maximum Packet Size); may be changed later.
    """

    def __init__(
        self,
        *,
        role: Role | None = "server",
        protocol_level: int | None = None,
        max_packet_size: int | None = None,
    ) -> None:
        self.role = role
        self.max_packet_size = max_packet_size
        self._level = protocol_level
        self._data = b""  # the bytes being decoded, from self._pos on
        self._pos = 0
        self._held = bytearray()  # a partial packet and what followed it, once self._data is used up
        self._need = 0  # the size of the partial packet in self._held, when known
        self._error: DecodeError | None = None

    @property
    def protocol_level(self) -> int | None:
        """The connection's protocol level: given, or taken from the CONNECT; ``None`` before it."""
        return self._level

    @property
    def buffered(self) -> int:
        """How many received bytes are not yet part of a returned packet."""
        return len(self._data) - self._pos + len(self._held)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes.

        Args:
            data: the bytes, in arrival order; an empty read (end of stream) is ignored here.
        """
        if not data:
            return
        if self._held or self._pos < len(self._data):
            if self._pos < len(self._data):
                self._held += self._data[self._pos :]
                self._data = b""
                self._pos = 0
            self._held += data
        else:
            self._data = bytes(data)  # no copy when it already is bytes
            self._pos = 0

    def next_packet(self) -> Packet | None:
        """The next complete packet, or ``None`` when more bytes are needed.

        Raises:
            UnsupportedProtocolVersion: the CONNECT asks for a level we do not speak.
            DecodeError: the stream is not valid MQTT; the same error on every later call.
        """
        if self._error is not None:
            raise self._error
        if self._held:
            if len(self._held) < self._need:
                return None
            self._data = bytes(self._held)
            self._pos = 0
            self._held.clear()
            self._need = 0
        data, start = self._data, self._pos
        if start >= len(data):
            return None
        try:
            level = self._level
            if level is None:
                if data[start] >> 4 != PacketType.CONNECT:
                    raise protocol_error("the first packet is not a CONNECT (MQTT-3.1.0-1)")
                level = 4  # a CONNECT is decoded by the level it announces
            elif data[start] == 0x10 and self.role == "server":
                raise protocol_error("a second CONNECT (MQTT-3.1.0-2)")
            try:
                first, pos, end = frame(data, start, level, self.max_packet_size, self.role)
            except Incomplete:
                end = 0
            if not end or end > len(data):
                # Keep the partial packet aside until all of it has arrived.
                self._held += data[start:]
                self._need = end - start if end else 0
                self._data = b""
                self._pos = 0
                return None
            packet = decode_body(data, first, pos, end, level, self.role)
        except DecodeError as error:
            self._error = error
            raise
        self._pos = end
        if type(packet) is Connect:
            self._level = packet.protocol_level
        return packet

    def __iter__(self) -> Iterator[Packet]:
        """Yield every complete packet buffered so far (see :meth:`next_packet` for the errors)."""
        while (packet := self.next_packet()) is not None:
            yield packet
