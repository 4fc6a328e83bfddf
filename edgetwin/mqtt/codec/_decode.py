"""Bytes -> packets (§2, §3): :func:`decode_packet` and the framing the :class:`PacketReader` shares.

Order of checks, so that every strict prefix of a valid packet raises :class:`Incomplete` and bad input is
refused as early as it is visible: the first byte (packet type allowed for this version and direction,
reserved flag bits), then the remaining length (at most four bytes, minimally encoded), then the size
limit (so an oversized packet is refused before it is buffered), and only once the whole packet is there,
its body. Every body must be consumed exactly (no trailing bytes, no field running past the end).

Hot path: PUBLISH reads its fields with slicing and shifts, takes a shortcut for an empty 5.0 property
block, and is built without the frozen-dataclass ``__init__`` (see :func:`new_publish`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal, TypeAlias

from edgetwin.mqtt.codec._enums import PacketType, ReasonCode, RetainHandling
from edgetwin.mqtt.codec._errors import DecodeError, Incomplete, UnsupportedProtocolVersion
from edgetwin.mqtt.codec._packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
    new_publish,
)
from edgetwin.mqtt.codec._primitives import (
    malformed,
    protocol_error,
    read_binary,
    read_string,
    read_u16,
)
from edgetwin.mqtt.codec._properties import (
    ALLOWED_PROPERTIES,
    NO_PROPERTIES,
    WILL_PROPERTIES,
    Properties,
    decode_properties,
)
from edgetwin.mqtt.topics import TopicError, validate_topic_name

if TYPE_CHECKING:
    from collections.abc import Callable

    from edgetwin.mqtt.codec._packets import Packet

__all__ = [
    "CONNACK_RETURN_CODES",
    "SUBACK_RETURN_CODES",
    "VALID_REASON_CODES",
    "Role",
    "decode_body",
    "decode_packet",
    "frame",
]

Role: TypeAlias = Literal["server", "client"]
"""Who is decoding: ``"server"`` decodes what a client sent (and refuses server-only packets)."""

_R = ReasonCode
CONNACK_RETURN_CODES: Final[tuple[ReasonCode, ...]] = (
    _R.SUCCESS,  # 0 Connection accepted
    _R.UNSUPPORTED_PROTOCOL_VERSION,  # 1 unacceptable protocol version
    _R.CLIENT_IDENTIFIER_NOT_VALID,  # 2 identifier rejected
    _R.SERVER_UNAVAILABLE,  # 3 server unavailable
    _R.BAD_USER_NAME_OR_PASSWORD,  # 4 bad user name or password
    _R.NOT_AUTHORIZED,  # 5 not authorized
)
"""3.1.1 CONNACK return codes 0-5 (§3.2.2.3) as the 5.0 reason codes with the same meaning."""

SUBACK_RETURN_CODES: Final[dict[int, ReasonCode]] = {
    0x00: _R.GRANTED_QOS_0,
    0x01: _R.GRANTED_QOS_1,
    0x02: _R.GRANTED_QOS_2,
    0x80: _R.UNSPECIFIED_ERROR,
}
"""3.1.1 SUBACK return codes (§3.9.3) as reason codes."""

_ACK_CODES: Final = frozenset({0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99})
VALID_REASON_CODES: Final[dict[PacketType, frozenset[int]]] = {
    PacketType.CONNACK: frozenset(
        {0x00, *range(0x80, 0x8B), 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F}
    ),
    PacketType.PUBACK: _ACK_CODES,
    PacketType.PUBREC: _ACK_CODES,
    PacketType.PUBREL: frozenset({0x00, 0x92}),
    PacketType.PUBCOMP: frozenset({0x00, 0x92}),
    PacketType.SUBACK: frozenset({0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2}),
    PacketType.UNSUBACK: frozenset({0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91}),
    PacketType.DISCONNECT: frozenset(
        {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, *range(0x8F, 0xA3)} - {0x91, 0x92}
    ),
    PacketType.AUTH: frozenset({0x00, 0x18, 0x19}),
}
"""The 5.0 reason codes each packet may carry (§3.2.2.2, §3.4.2.1, ...); others are malformed."""

# Fixed header flags (§2.1.3): PUBREL, SUBSCRIBE and UNSUBSCRIBE carry 0b0010 (MQTT-3.6.1-1, MQTT-3.8.1-1,
# MQTT-3.10.1-1), PUBLISH its own flags, every other type 0b0000; anything else is malformed (5.0:
# MQTT-2.1.3-1; 3.1.1: MQTT-2.2.2-1/-2).
_REQUIRED_FLAGS: Final = (None, 0, 0, None, 0, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, 0)
# A server never accepts these from a client, a client never from a server (§3: "Direction of flow").
_SERVER_SENDS: Final = frozenset(
    {PacketType.CONNACK, PacketType.SUBACK, PacketType.UNSUBACK, PacketType.PINGRESP}
)
_CLIENT_SENDS: Final = frozenset(
    {PacketType.CONNECT, PacketType.SUBSCRIBE, PacketType.UNSUBSCRIBE, PacketType.PINGREQ}
)
_ONE_WAY: Final = _SERVER_SENDS | _CLIENT_SENDS | {PacketType.DISCONNECT}
_PUBLISH_PROPERTIES: Final = ALLOWED_PROPERTIES[PacketType.PUBLISH]


def frame(
    buffer: bytes | bytearray | memoryview,
    start: int,
    protocol_level: int,
    max_packet_size: int | None,
    role: Role | None,
) -> tuple[int, int, int]:
    """Read and check the fixed header at ``start``.

    Args:
        buffer: received bytes.
        start: where the packet starts.
        protocol_level: 3, 4 or 5.
        max_packet_size: the largest packet accepted, fixed header included; ``None`` for the protocol's
            own limit.
        role: who is decoding, for the direction check; ``None`` skips it.

    Returns:
        The first byte, where the body starts, and where the packet ends (possibly beyond the buffer).

    Raises:
        Incomplete: the fixed header is not complete yet.
        DecodeError: the fixed header is invalid, or the packet is larger than ``max_packet_size``.
    """
    size = len(buffer)
    if start >= size:
        raise Incomplete
    first = buffer[start]
    kind = first >> 4
    if kind == 3:
        if first & 0x06 == 0x06:
            raise _labelled(malformed("PUBLISH with QoS 3 (MQTT-3.3.1-4)"), kind, protocol_level)
        if first & 0x0E == 0x08:
            raise _labelled(malformed("PUBLISH with QoS 0 and DUP set (MQTT-3.3.1-2)"), kind, protocol_level)
    elif kind == 0 or (kind == 15 and protocol_level != 5):
        raise _labelled(malformed(f"reserved packet type {kind} (§2.1.2)"), None, protocol_level)
    elif first & 0x0F != _REQUIRED_FLAGS[kind]:
        error = malformed(f"reserved flags 0b{first & 0x0F:04b} in {PacketType(kind).name} (§2.1.3)")
        raise _labelled(error, kind, protocol_level)
    if role is not None and kind in _ONE_WAY:
        _check_direction(kind, protocol_level, role)
    pos = start + 1
    if pos >= size:
        raise Incomplete
    byte = buffer[pos]
    pos += 1
    if byte < 0x80:
        length = byte
    else:
        length = byte & 0x7F
        for shift in (7, 14, 21):
            if pos >= size:
                raise Incomplete
            byte = buffer[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            if byte < 0x80:
                if not byte:
                    error = malformed("remaining length is not minimally encoded (MQTT-1.5.5-1)")
                    raise _labelled(error, kind, protocol_level)
                break
        else:
            error = malformed("remaining length longer than four bytes (§2.1.4)")
            raise _labelled(error, kind, protocol_level)
    end = pos + length
    if max_packet_size is not None and end - start > max_packet_size:
        error = DecodeError(
            ReasonCode.PACKET_TOO_LARGE,
            f"packet of {end - start} bytes is larger than the maximum of {max_packet_size}",
        )
        raise _labelled(error, kind, protocol_level)
    return first, pos, end


def _check_direction(kind: int, protocol_level: int, role: Role) -> None:
    if role == "server":
        if kind in _SERVER_SENDS:
            error = protocol_error(f"{PacketType(kind).name} from a client")
            raise _labelled(error, kind, protocol_level)
    elif kind in _CLIENT_SENDS or (kind == PacketType.DISCONNECT and protocol_level != 5):
        # In 3.1.1 only the client sends DISCONNECT (§3.14); 5.0 lets the server send it too.
        error = protocol_error(f"{PacketType(kind).name} from a server")
        raise _labelled(error, kind, protocol_level)


def _labelled(error: DecodeError, kind: int | None, protocol_level: int) -> DecodeError:
    if error.packet_type is None and kind is not None:
        error.packet_type = PacketType(kind)
    # A CONNECT brings its own level (set once read); the connection's level means nothing for it.
    if error.protocol_level is None and kind != PacketType.CONNECT:
        error.protocol_level = protocol_level
    return error


def decode_body(
    data: bytes, first: int, pos: int, end: int, protocol_level: int, role: Role | None
) -> Packet:
    """Decode the packet whose fixed header :func:`frame` read; ``data[pos:end]`` is its whole body.

    Raises:
        DecodeError: the body is not valid (labelled with the packet type and protocol level).
    """
    try:
        if first >> 4 == 3:
            return _publish(data, first, pos, end, protocol_level, role)
        return _DECODERS[first >> 4](data, first, pos, end, protocol_level)
    except DecodeError as error:
        raise _labelled(error, first >> 4, protocol_level) from None


def decode_packet(
    buffer: bytes | bytearray | memoryview,
    *,
    protocol_level: int,
    max_packet_size: int | None = None,
    role: Role | None = None,
) -> tuple[Packet, int]:
    """Decode the packet at the start of ``buffer``.

    Args:
        buffer: received bytes; it may hold more than one packet.
        protocol_level: the connection's level: 3 (MQTT 3.1), 4 (3.1.1) or 5 (5.0). A CONNECT is decoded by
            the level it announces itself.
        max_packet_size: the largest packet accepted, fixed header included (our Maximum Packet Size).
        role: ``"server"`` to refuse packets only a server may send (CONNACK, SUBACK, UNSUBACK, PINGRESP),
            ``"client"`` for the reverse; ``None`` accepts both directions.

    Returns:
        The packet and the number of bytes it took from ``buffer``.

    Raises:
        Incomplete: ``buffer`` holds only part of a packet (every strict prefix of a valid packet).
        UnsupportedProtocolVersion: a CONNECT with a level other than 3, 4 or 5.
        DecodeError: the bytes are not a valid packet; ``reason_code`` says what to answer.
    """
    first, pos, end = frame(buffer, 0, protocol_level, max_packet_size, role)
    if end > len(buffer):
        raise Incomplete(end)
    if isinstance(buffer, bytes):
        return decode_body(buffer, first, pos, end, protocol_level, role), end
    # Copy just this packet, so every decoded field is an independent ``bytes``/``str``.
    return decode_body(bytes(buffer[:end]), first, pos, end, protocol_level, role), end


def _topic_error(error: TopicError) -> DecodeError:
    if error.clause == "MQTT-4.7.1-1":
        # Wildcards: a well-formed string that is not a topic name (5.0 §2.4: Topic Name invalid).
        return DecodeError(ReasonCode.TOPIC_NAME_INVALID, str(error))
    if error.clause == "MQTT-4.7.3-1":
        return protocol_error(f"{error} (5.0: MQTT-3.3.2-1 needs a topic alias for an empty topic)")
    return malformed(str(error))


def _publish(data: bytes, first: int, pos: int, end: int, protocol_level: int, role: Role | None) -> Packet:
    qos = (first >> 1) & 3
    if pos + 2 > end:
        raise malformed("PUBLISH topic length runs past the end of the packet")
    stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if stop > end:
        raise malformed("PUBLISH topic runs past the end of the packet")
    try:
        topic = data[pos + 2 : stop].decode("utf-8")
    except UnicodeDecodeError:
        raise malformed("PUBLISH topic is not well-formed UTF-8 (MQTT-1.5.4-1)") from None
    pos = stop
    packet_id: int | None = None
    if qos:
        if pos + 2 > end:
            raise malformed("PUBLISH packet identifier runs past the end of the packet")
        packet_id = (data[pos] << 8) | data[pos + 1]
        if not packet_id:
            raise malformed("PUBLISH with QoS > 0 and packet identifier 0 (MQTT-2.3.1-1)")
        pos += 2
    properties: Properties = NO_PROPERTIES
    if protocol_level == 5:
        if pos < end and not data[pos]:
            pos += 1  # the common empty property block, without a call
        else:
            properties, pos = decode_properties(
                data, pos, end, _PUBLISH_PROPERTIES, repeat_subscription_ids=True
            )
            if properties.subscription_identifiers and role == "server":
                raise protocol_error("PUBLISH from a client with a subscription identifier (MQTT-3.3.4-6)")
    if topic or properties.topic_alias is None:
        try:
            validate_topic_name(topic)
        except TopicError as error:
            raise _topic_error(error) from None
    return new_publish(topic, data[pos:end], qos, bool(first & 1), bool(first & 8), packet_id, properties)


def _packet_id(data: bytes, pos: int, end: int) -> tuple[int, int]:
    packet_id, pos = read_u16(data, pos, end)
    if not packet_id:
        raise malformed("packet identifier 0 (MQTT-2.3.1-1, 5.0: MQTT-2.2.1-3)")
    return packet_id, pos


def _reason(kind: PacketType, code: int) -> ReasonCode:
    if code not in VALID_REASON_CODES[kind]:
        raise malformed(f"reason code 0x{code:02X} is not valid in {kind.name} (§2.4)")
    return ReasonCode(code)


def _trailing(pos: int, end: int) -> None:
    if pos != end:
        raise malformed(f"{end - pos} unexpected bytes at the end of the packet")


def _connect(data: bytes, first: int, pos: int, end: int, protocol_level: int) -> Packet:
    name, pos = read_string(data, pos, end)
    if pos >= end:
        raise malformed("CONNECT ends before the protocol level")
    level = data[pos]
    pos += 1
    if name == "MQTT":
        if level not in (4, 5):
            raise UnsupportedProtocolVersion(name, level)
    elif name == "MQIsdp":
        if level != 3:
            raise UnsupportedProtocolVersion(name, level)
    else:
        raise protocol_error(f"protocol name {name!r} is neither 'MQTT' nor 'MQIsdp' (MQTT-3.1.2-1)")
    try:
        return _connect_rest(data, pos, end, level)
    except DecodeError as error:
        error.protocol_level = level
        raise


def _connect_rest(data: bytes, pos: int, end: int, level: int) -> Connect:
    if pos + 3 > end:
        raise malformed("CONNECT ends before the keep alive")
    flags = data[pos]
    keep_alive = (data[pos + 1] << 8) | data[pos + 2]
    pos += 3
    if flags & 0x01:
        raise malformed("CONNECT reserved flag is set (MQTT-3.1.2-3)")
    will_flag = bool(flags & 0x04)
    will_qos = (flags >> 3) & 0x03
    will_retain = bool(flags & 0x20)
    if will_qos == 3:
        raise malformed("will QoS 3 (MQTT-3.1.2-14, 5.0: MQTT-3.1.2-12)")
    if not will_flag and (will_qos or will_retain):
        raise malformed("will QoS or will retain without a will (MQTT-3.1.2-13/-15, 5.0: MQTT-3.1.2-11/-13)")
    has_password = bool(flags & 0x40)
    has_username = bool(flags & 0x80)
    if has_password and not has_username and level != 5:
        raise malformed("password without a user name (MQTT-3.1.2-22)")
    properties = NO_PROPERTIES
    if level == 5:
        properties, pos = decode_properties(data, pos, end, ALLOWED_PROPERTIES[PacketType.CONNECT])
        if properties.authentication_data is not None and properties.authentication_method is None:
            raise protocol_error("authentication data without an authentication method (§3.1.2.11.10)")
    client_id, pos = read_string(data, pos, end)
    will = None
    if will_flag:
        will_properties = NO_PROPERTIES
        if level == 5:
            will_properties, pos = decode_properties(data, pos, end, ALLOWED_PROPERTIES[WILL_PROPERTIES])
        will_topic, pos = read_string(data, pos, end)
        try:
            validate_topic_name(will_topic)
        except TopicError as error:
            raise _topic_error(error) from None
        will_payload, pos = read_binary(data, pos, end)
        will = Will(will_topic, will_payload, will_qos, will_retain, will_properties)
    username = password = None
    if has_username:
        username, pos = read_string(data, pos, end)
    if has_password:
        password, pos = read_binary(data, pos, end)
    _trailing(pos, end)
    return Connect(client_id, level, bool(flags & 0x02), keep_alive, username, password, will, properties)


def _connack(data: bytes, first: int, pos: int, end: int, protocol_level: int) -> Packet:
    if pos + 2 > end:
        raise malformed("CONNACK shorter than two bytes")
    flags, code = data[pos], data[pos + 1]
    pos += 2
    if flags & 0xFE and protocol_level != 3:
        raise malformed("CONNACK reserved acknowledge flags are set (MQTT-3.2.2-1)")
    if flags & 1 and code:
        # MQTT-3.2.2-4 (5.0: MQTT-3.2.2-6): a refusal never has a session.
        raise protocol_error("CONNACK with session present and a non-zero return code (MQTT-3.2.2-4)")
    if protocol_level != 5:
        _trailing(pos, end)
        if code >= len(CONNACK_RETURN_CODES):
            raise malformed(f"CONNACK return code {code} (§3.2.2.3)")
        # 3.1 has no session present flag: its acknowledge byte is unused.
        return Connack(bool(flags & 1) and protocol_level == 4, CONNACK_RETURN_CODES[code])
    reason = _reason(PacketType.CONNACK, code)
    properties, pos = decode_properties(data, pos, end, ALLOWED_PROPERTIES[PacketType.CONNACK])
    _trailing(pos, end)
    return Connack(bool(flags & 1), reason, properties)


def _ack(cls: type[PubAck | PubRec | PubRel | PubComp]) -> Callable[[bytes, int, int, int, int], Packet]:
    kind = cls.packet_type
    allowed = ALLOWED_PROPERTIES[kind]

    def decode(data: bytes, first: int, pos: int, end: int, protocol_level: int) -> Packet:
        packet_id, pos = _packet_id(data, pos, end)
        if pos == end:
            return cls(packet_id)
        if protocol_level != 5:
            raise malformed(f"{kind.name} longer than two bytes")
        reason = _reason(kind, data[pos])
        properties = NO_PROPERTIES
        if pos + 1 < end:
            # The property length is omitted when the remaining length is 3 (§3.4.2.2).
            properties, pos = decode_properties(data, pos + 1, end, allowed)
            _trailing(pos, end)
        return cls(packet_id, reason, properties)

    return decode


def _subscribe(data: bytes, first: int, pos: int, end: int, protocol_level: int) -> Packet:
    packet_id, pos = _packet_id(data, pos, end)
    properties = NO_PROPERTIES
    if protocol_level == 5:
        properties, pos = decode_properties(data, pos, end, ALLOWED_PROPERTIES[PacketType.SUBSCRIBE])
    subscriptions = []
    while pos < end:
        topic_filter, pos = read_string(data, pos, end)
        if pos >= end:
            raise malformed("SUBSCRIBE topic filter without subscription options")
        options = data[pos]
        pos += 1
        qos = options & 0x03
        if qos == 3:
            raise malformed("SUBSCRIBE with QoS 3 (MQTT-3-8.3-4, 5.0: MQTT-3.8.3-5)")
        if protocol_level != 5:
            if options & 0xFC:
                raise malformed("SUBSCRIBE reserved option bits are set (MQTT-3-8.3-4)")
            subscriptions.append(Subscription(topic_filter, qos))
            continue
        if options & 0xC0:
            raise malformed("SUBSCRIBE reserved option bits are set (MQTT-3.8.3-5)")
        retain_handling = (options >> 4) & 0x03
        if retain_handling == 3:
            raise protocol_error("SUBSCRIBE with retain handling 3 (§3.8.3.1)")
        subscriptions.append(
            Subscription(
                topic_filter, qos, bool(options & 0x04), bool(options & 0x08), RetainHandling(retain_handling)
            )
        )
    if not subscriptions:
        raise protocol_error("SUBSCRIBE without a topic filter (MQTT-3.8.3-3, 5.0: MQTT-3.8.3-2)")
    return Subscribe(packet_id, tuple(subscriptions), properties)


def _suback(data: bytes, first: int, pos: int, end: int, protocol_level: int) -> Packet:
    packet_id, pos = _packet_id(data, pos, end)
    properties = NO_PROPERTIES
    if protocol_level == 5:
        properties, pos = decode_properties(data, pos, end, ALLOWED_PROPERTIES[PacketType.SUBACK])
        codes = tuple(_reason(PacketType.SUBACK, code) for code in data[pos:end])
    else:
        try:
            codes = tuple(SUBACK_RETURN_CODES[code] for code in data[pos:end])
        except KeyError as error:
            raise malformed(f"SUBACK return code {error.args[0]} (§3.9.3)") from None
    if not codes:
        raise protocol_error("SUBACK without a reason code (§3.9.3)")
    return SubAck(packet_id, codes, properties)


def _unsubscribe(data: bytes, first: int, pos: int, end: int, protocol_level: int) -> Packet:
    packet_id, pos = _packet_id(data, pos, end)
    properties = NO_PROPERTIES
    if protocol_level == 5:
        properties, pos = decode_properties(data, pos, end, ALLOWED_PROPERTIES[PacketType.UNSUBSCRIBE])
    topic_filters = []
    while pos < end:
        topic_filter, pos = read_string(data, pos, end)
        topic_filters.append(topic_filter)
    if not topic_filters:
        raise protocol_error("UNSUBSCRIBE without a topic filter (MQTT-3.10.3-2)")
    return Unsubscribe(packet_id, tuple(topic_filters), properties)


def _unsuback(data: bytes, first: int, pos: int, end: int, protocol_level: int) -> Packet:
    packet_id, pos = _packet_id(data, pos, end)
    if protocol_level != 5:
        _trailing(pos, end)
        return UnsubAck(packet_id)
    properties, pos = decode_properties(data, pos, end, ALLOWED_PROPERTIES[PacketType.UNSUBACK])
    codes = tuple(_reason(PacketType.UNSUBACK, code) for code in data[pos:end])
    if not codes:
        raise protocol_error("UNSUBACK without a reason code (§3.11.3)")
    return UnsubAck(packet_id, codes, properties)


def _empty(cls: type[PingReq | PingResp]) -> Callable[[bytes, int, int, int, int], Packet]:
    packet = cls()

    def decode(data: bytes, first: int, pos: int, end: int, protocol_level: int) -> Packet:
        _trailing(pos, end)
        return packet

    return decode


def _reason_only(cls: type[Disconnect | Auth]) -> Callable[[bytes, int, int, int, int], Packet]:
    kind = cls.packet_type
    allowed = ALLOWED_PROPERTIES[kind]

    def decode(data: bytes, first: int, pos: int, end: int, protocol_level: int) -> Packet:
        if pos == end:
            return cls()  # reason code 0x00 and no properties may be left out (§3.14.2.1, §3.15.2.1)
        if protocol_level != 5:
            raise malformed(f"{kind.name} with a body in MQTT 3.1.1")
        reason = _reason(kind, data[pos])
        properties = NO_PROPERTIES
        if pos + 1 < end:
            properties, pos = decode_properties(data, pos + 1, end, allowed)
            _trailing(pos, end)
        return cls(reason, properties)

    return decode


def _unused(data: bytes, first: int, pos: int, end: int, protocol_level: int) -> Packet:
    raise AssertionError("PUBLISH and reserved types are handled before the table")  # pragma: no cover


_DECODERS: Final[tuple[Callable[[bytes, int, int, int, int], Packet], ...]] = (
    _unused,
    _connect,
    _connack,
    _unused,
    _ack(PubAck),
    _ack(PubRec),
    _ack(PubRel),
    _ack(PubComp),
    _subscribe,
    _suback,
    _unsubscribe,
    _unsuback,
    _empty(PingReq),
    _empty(PingResp),
    _reason_only(Disconnect),
    _reason_only(Auth),
)
