"""Data representations of MQTT §1.5: integers, variable byte integers, UTF-8 strings, binary data.

Readers take ``(data, pos, end)`` and return ``(value, new_pos)``; ``end`` is the end of the enclosing
packet (or property block), and reading past it is a malformed packet, never a read into the next packet
or an ``IndexError``. Writers return ``bytes`` and raise :class:`EncodeError` for values the wire cannot
carry. Strings are strict UTF-8 without U+0000 both ways (MQTT-1.5.4-1/-2, 3.1.1: MQTT-1.5.3-1/-2);
Python's strict codec already rejects encoded surrogates and overlong forms.
"""

from __future__ import annotations

from typing import Final

from edgetwin.mqtt.codec._enums import ReasonCode
from edgetwin.mqtt.codec._errors import DecodeError, EncodeError

__all__ = [
    "MAX_REMAINING_LENGTH",
    "encode_binary",
    "encode_string",
    "encode_varint",
    "malformed",
    "protocol_error",
    "read_binary",
    "read_string",
    "read_u16",
    "read_u32",
    "read_varint",
]

MAX_REMAINING_LENGTH: Final = 268_435_455
"""The largest variable byte integer: four bytes of seven bits (§1.5.5)."""

_MAX_FIELD: Final = 65535


def malformed(message: str) -> DecodeError:
    """A :class:`DecodeError` with reason code 0x81 (Malformed Packet)."""
    return DecodeError(ReasonCode.MALFORMED_PACKET, message)


def protocol_error(message: str) -> DecodeError:
    """A :class:`DecodeError` with reason code 0x82 (Protocol Error)."""
    return DecodeError(ReasonCode.PROTOCOL_ERROR, message)


def read_u16(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Read a two byte integer (§1.5.2)."""
    if pos + 2 > end:
        raise malformed("two byte integer runs past the end of the packet")
    return (data[pos] << 8) | data[pos + 1], pos + 2


def read_u32(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Read a four byte integer (§1.5.3)."""
    if pos + 4 > end:
        raise malformed("four byte integer runs past the end of the packet")
    return int.from_bytes(data[pos : pos + 4], "big"), pos + 4


def read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Read a variable byte integer inside a packet (§1.5.5): at most four bytes, minimally encoded."""
    value = 0
    for shift in (0, 7, 14, 21):
        if pos >= end:
            raise malformed("variable byte integer runs past the end of the packet")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and shift:
                # MQTT-1.5.5-1: the minimum number of bytes; a trailing zero byte is a longer spelling.
                raise malformed("variable byte integer is not minimally encoded (MQTT-1.5.5-1)")
            return value, pos
    raise malformed("variable byte integer longer than four bytes (§1.5.5)")


def read_binary(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    """Read binary data: a two byte length and that many bytes (§1.5.6)."""
    if pos + 2 > end:
        raise malformed("binary data length runs past the end of the packet")
    stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if stop > end:
        raise malformed("binary data runs past the end of the packet")
    return data[pos + 2 : stop], stop


def read_string(data: bytes, pos: int, end: int) -> tuple[str, int]:
    """Read a UTF-8 encoded string (§1.5.4): strict UTF-8, no U+0000."""
    if pos + 2 > end:
        raise malformed("string length runs past the end of the packet")
    stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if stop > end:
        raise malformed("string runs past the end of the packet")
    try:
        value = data[pos + 2 : stop].decode("utf-8")
    except UnicodeDecodeError:
        raise malformed("string is not well-formed UTF-8 (MQTT-1.5.4-1, 3.1.1: MQTT-1.5.3-1)") from None
    if "\x00" in value:
        raise malformed("string contains U+0000 (MQTT-1.5.4-2, 3.1.1: MQTT-1.5.3-2)")
    return value, stop


def encode_varint(value: int) -> bytes:
    """Encode a variable byte integer (§1.5.5).

    Raises:
        EncodeError: ``value`` is negative or above 268,435,455.
    """
    # One branch per length instead of a loop: this writes the remaining length of every packet.
    if 0 <= value < 0x80:
        return bytes((value,))
    if 0x80 <= value < 0x4000:
        return bytes((value & 0x7F | 0x80, value >> 7))
    if 0x4000 <= value < 0x20_0000:
        return bytes((value & 0x7F | 0x80, (value >> 7) & 0x7F | 0x80, value >> 14))
    if 0x20_0000 <= value <= MAX_REMAINING_LENGTH:
        return bytes(
            (value & 0x7F | 0x80, (value >> 7) & 0x7F | 0x80, (value >> 14) & 0x7F | 0x80, value >> 21)
        )
    raise EncodeError(f"{value} does not fit a variable byte integer")


def encode_string(value: str) -> bytes:
    """Encode a UTF-8 string with its two byte length (§1.5.4).

    Raises:
        EncodeError: not encodable as UTF-8 (a lone surrogate), contains U+0000, or over 65535 bytes.
    """
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise EncodeError(f"{value!r} is not encodable as UTF-8 (MQTT-1.5.4-1)") from None
    if len(raw) > _MAX_FIELD:
        raise EncodeError(f"string of {len(raw)} bytes is longer than 65535")
    if b"\x00" in raw:
        raise EncodeError(f"{value!r} contains U+0000 (MQTT-1.5.4-2)")
    return len(raw).to_bytes(2, "big") + raw


def encode_binary(value: bytes) -> bytes:
    """Encode binary data with its two byte length (§1.5.6).

    Raises:
        EncodeError: longer than 65535 bytes.
    """
    if len(value) > _MAX_FIELD:
        raise EncodeError(f"binary data of {len(value)} bytes is longer than 65535")
    return len(value).to_bytes(2, "big") + bytes(value)
