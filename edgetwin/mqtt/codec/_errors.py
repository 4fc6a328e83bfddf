"""The MQTT exception tree (drawn in the package docstring of :mod:`edgetwin.mqtt.codec`).

Every error the peer can cause carries the MQTT 5.0 reason code the broker should answer with, so the I/O
layer maps errors in one place: ``except ProtocolError as err`` -> CONNACK or DISCONNECT with
``err.reason_code`` (v5), or just close (3.1.1).
"""

from __future__ import annotations

from edgetwin.mqtt.codec._enums import PacketType, ReasonCode

__all__ = [
    "DecodeError",
    "EncodeError",
    "Incomplete",
    "MqttError",
    "ProtocolError",
    "UnsupportedProtocolVersion",
]


class MqttError(Exception):
    """Root of every error raised by the pure MQTT layer (codec and session)."""


class Incomplete(MqttError):
    """More bytes are needed before a packet can be decoded; nothing is wrong with the bytes so far.

    Not a :class:`DecodeError`: catching ``DecodeError`` never swallows a short read.

    Args:
        needed: the size of the whole packet in bytes, once the fixed header says it; ``None`` before.
    """

    def __init__(self, needed: int | None = None) -> None:
        super().__init__("incomplete packet" if needed is None else f"incomplete packet of {needed} bytes")
        self.needed = needed


class EncodeError(MqttError, ValueError):
    """A packet cannot be encoded: a value is out of range or not representable (our bug, not the peer's)."""


class ProtocolError(MqttError):
    """The peer broke the protocol: close the connection, for MQTT 5.0 after sending ``reason_code``.

    Args:
        reason_code: the MQTT 5.0 reason code to send in CONNACK (during CONNECT) or DISCONNECT.
        message: what is wrong, for the log; cites the normative statement where there is one.
    """

    def __init__(self, reason_code: ReasonCode, message: str) -> None:
        super().__init__(f"{message} (reason code 0x{reason_code:02X} {reason_code.name})")
        self.reason_code = reason_code
        self.message = message


class DecodeError(ProtocolError):
    """The bytes are not a valid packet (malformed, a protocol error visible in one packet, or too large).

    Args:
        reason_code: ``MALFORMED_PACKET`` (0x81), ``PROTOCOL_ERROR`` (0x82), ``PACKET_TOO_LARGE`` (0x95),
            ``TOPIC_NAME_INVALID`` (0x90), ``TOPIC_ALIAS_INVALID`` (0x94) or ``UNSUPPORTED_PROTOCOL_VERSION``
            (0x84).
        message: what is wrong.
        packet_type: the type from the fixed header, when it was read.
        protocol_level: the level in effect; for a CONNECT the level it announced, once read.
    """

    def __init__(
        self,
        reason_code: ReasonCode,
        message: str,
        *,
        packet_type: PacketType | None = None,
        protocol_level: int | None = None,
    ) -> None:
        super().__init__(reason_code, message)
        self.packet_type = packet_type
        self.protocol_level = protocol_level


class UnsupportedProtocolVersion(DecodeError):
    """A CONNECT named MQTT (or MQIsdp) with a protocol level this codec does not speak.

    The broker answers with CONNACK return code 1 (3.1.1, MQTT-3.1.2-2: ``20 02 00 01``) or reason code
    0x84 (5.0) and closes; :attr:`protocol_level` is the level that was attempted.

    Args:
        protocol_name: the protocol name the client sent.
        protocol_level: the protocol level the client sent.
    """

    def __init__(self, protocol_name: str, protocol_level: int) -> None:
        super().__init__(
            ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
            f"unsupported protocol level {protocol_level} for {protocol_name!r} (MQTT-3.1.2-2)",
            packet_type=PacketType.CONNECT,
            protocol_level=protocol_level,
        )
        self.protocol_name = protocol_name
