"""Packets -> bytes (§2, §3): :func:`encode_packet` and :class:`PublishTemplate` for fan-out.

Contract: what is encoded decodes back to an equal packet (at the same protocol level), or
:class:`EncodeError` is raised. Checked: ranges (QoS, packet identifiers, integers), packet identifier
present exactly when QoS > 0, no DUP on QoS 0, string and binary lengths, UTF-8 without U+0000, the
remaining length limit, properties allowed on the packet, reason codes valid for the packet, SUBSCRIBE and
UNSUBSCRIBE not empty. Not checked: topic syntax beyond that (build packets from names checked with
:mod:`edgetwin.mqtt.topics`; the decoder does check it on the way in).

Encoding for 3.1.x drops what 3.1.x cannot carry, so the broker builds one packet for both versions:
properties and the reason codes of PUBACK/PUBREC/PUBREL/PUBCOMP, UNSUBACK and DISCONNECT are left out;
CONNACK reason codes map to the 3.1.1 return codes (unmappable failures to 3, Server unavailable);
SUBACK failures map to 0x80. AUTH has no 3.1.x form and raises.

Each packet is written in its shortest form: an ack with reason code 0x00 and no properties is two bytes
(§3.4.2.1), a DISCONNECT or AUTH without either is empty (§3.14.2.1, §3.15.2.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from edgetwin.mqtt.codec._decode import CONNACK_RETURN_CODES, SUBACK_RETURN_CODES, VALID_REASON_CODES
from edgetwin.mqtt.codec._enums import PacketType, ReasonCode
from edgetwin.mqtt.codec._errors import EncodeError
from edgetwin.mqtt.codec._packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
)
from edgetwin.mqtt.codec._primitives import MAX_REMAINING_LENGTH, encode_binary, encode_string, encode_varint
from edgetwin.mqtt.codec._properties import (
    ALLOWED_PROPERTIES,
    NO_PROPERTIES,
    WILL_PROPERTIES,
    Properties,
    encode_properties,
    encode_property_values,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from edgetwin.mqtt.codec._packets import Packet

__all__ = ["PublishTemplate", "encode_packet"]

_PUBLISH_PROPERTIES: Final = ALLOWED_PROPERTIES[PacketType.PUBLISH]
_V3_CONNACK: Final[dict[int, int]] = {int(code): i for i, code in enumerate(CONNACK_RETURN_CODES)} | {
    ReasonCode.SERVER_BUSY: 3,
    ReasonCode.BANNED: 5,
    ReasonCode.BAD_AUTHENTICATION_METHOD: 4,
}
_V3_SUBACK: Final[frozenset[int]] = frozenset(SUBACK_RETURN_CODES)


def encode_packet(packet: Packet, *, protocol_level: int) -> bytes:
    """Encode one packet.

    Args:
        packet: the packet.
        protocol_level: the connection's level: 3, 4 or 5. A :class:`Connect` must carry the same level.

    Returns:
        The packet's bytes, fixed header included.

    Raises:
        EncodeError: the packet cannot be encoded (see the module contract).
    """
    if protocol_level not in (3, 4, 5):
        raise EncodeError(f"unknown protocol level {protocol_level}")
    encoder = _ENCODERS.get(type(packet))
    if encoder is None:
        raise EncodeError(f"not an MQTT packet: {packet!r}")
    return encoder(packet, protocol_level)


def _frame(first: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes((first, size)) + body
    if size > MAX_REMAINING_LENGTH:
        raise EncodeError(f"packet body of {size} bytes is over the limit of {MAX_REMAINING_LENGTH}")
    return bytes((first,)) + encode_varint(size) + body


def _packet_id(packet_id: object) -> bytes:
    if not isinstance(packet_id, int) or not 0 < packet_id <= 0xFFFF:
        raise EncodeError(f"packet identifier {packet_id!r} is not in 1..65535 (MQTT-2.3.1-1)")
    return packet_id.to_bytes(2, "big")


def _u16(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise EncodeError(f"{what} {value} is not in 0..65535")
    return value.to_bytes(2, "big")


def _check_reason(kind: PacketType, code: ReasonCode) -> int:
    if code not in VALID_REASON_CODES[kind]:
        raise EncodeError(f"reason code {code!r} is not valid in {kind.name} (§2.4)")
    return int(code)


def _check_qos(qos: int, what: str) -> None:
    if qos not in (0, 1, 2):
        raise EncodeError(f"{what} QoS {qos!r} is not 0, 1 or 2")


def _topic_field(topic: str) -> bytes:
    try:
        raw = topic.encode("utf-8")
    except UnicodeEncodeError:
        raise EncodeError(f"topic {topic!r} is not encodable as UTF-8 (MQTT-1.5.4-1)") from None
    if len(raw) > 0xFFFF or b"\x00" in raw:
        raise EncodeError(f"topic {topic!r} is longer than 65535 bytes or contains U+0000")
    return len(raw).to_bytes(2, "big") + raw


def _publish_bytes(
    qos: int,
    retain: bool,
    dup: bool,
    packet_id: int | None,
    topic_field: bytes,
    properties: bytes,
    payload: bytes,
) -> bytes:
    """Assemble a PUBLISH from already encoded parts; ``properties`` includes its length (or is empty)."""
    if qos:
        if qos > 2 or qos < 0:
            raise EncodeError(f"PUBLISH QoS {qos!r} is not 0, 1 or 2")
        if packet_id is None or not 0 < packet_id <= 0xFFFF:
            raise EncodeError(
                f"PUBLISH with QoS {qos} needs a packet identifier in 1..65535, not {packet_id!r}"
            )
        ident = packet_id.to_bytes(2, "big")
    else:
        if packet_id is not None or dup:
            raise EncodeError("a QoS 0 PUBLISH has no packet identifier and no DUP flag (MQTT-3.3.1-2)")
        ident = b""
    size = len(topic_field) + len(ident) + len(properties) + len(payload)
    first = 0x30 | (dup << 3) | (qos << 1) | retain
    if size < 0x80:
        return bytes((first, size)) + topic_field + ident + properties + payload
    if size < 0x4000:
        return bytes((first, size & 0x7F | 0x80, size >> 7)) + topic_field + ident + properties + payload
    if size > MAX_REMAINING_LENGTH:
        raise EncodeError(f"PUBLISH body of {size} bytes is over the limit of {MAX_REMAINING_LENGTH}")
    return b"".join((bytes((first,)), encode_varint(size), topic_field, ident, properties, payload))


def _publish(packet: Publish, protocol_level: int) -> bytes:
    properties = b""
    if protocol_level == 5:
        props = packet.properties
        if not packet.topic and props.topic_alias is None:
            raise EncodeError("an empty topic needs a topic alias (MQTT-3.3.2-1)")
        properties = b"\x00" if props is NO_PROPERTIES else encode_properties(props, _PUBLISH_PROPERTIES)
    elif not packet.topic:
        raise EncodeError("the topic of a 3.1.1 PUBLISH must not be empty (MQTT-4.7.3-1)")
    return _publish_bytes(
        packet.qos,
        packet.retain,
        packet.dup,
        packet.packet_id,
        _topic_field(packet.topic),
        properties,
        packet.payload,
    )


def _connect(packet: Connect, protocol_level: int) -> bytes:
    level = packet.protocol_level
    if level != protocol_level:
        raise EncodeError(f"CONNECT of level {level} encoded at protocol level {protocol_level}")
    if level != 5 and packet.password is not None and packet.username is None:
        raise EncodeError("a password without a user name needs MQTT 5.0 (MQTT-3.1.2-22)")
    flags = 0x02 if packet.clean_start else 0
    parts = [encode_string(packet.protocol_name), bytes((level,)), b"", _u16(packet.keep_alive, "keep alive")]
    if level == 5:
        if (
            packet.properties.authentication_data is not None
            and packet.properties.authentication_method is None
        ):
            raise EncodeError("authentication data without an authentication method (§3.1.2.11.10)")
        parts.append(encode_properties(packet.properties, ALLOWED_PROPERTIES[PacketType.CONNECT]))
    parts.append(encode_string(packet.client_id))
    will = packet.will
    if will is not None:
        _check_qos(will.qos, "will")
        if not will.topic:
            raise EncodeError("the will topic must not be empty (MQTT-4.7.3-1)")
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        if level == 5:
            parts.append(encode_properties(will.properties, ALLOWED_PROPERTIES[WILL_PROPERTIES]))
        parts += (encode_string(will.topic), encode_binary(will.payload))
    if packet.username is not None:
        flags |= 0x80
        parts.append(encode_string(packet.username))
    if packet.password is not None:
        flags |= 0x40
        parts.append(encode_binary(packet.password))
    parts[2] = bytes((flags,))
    return _frame(0x10, b"".join(parts))


def _connack(packet: Connack, protocol_level: int) -> bytes:
    if packet.session_present and packet.reason_code:
        raise EncodeError("a refusing CONNACK has no session present (MQTT-3.2.2-4, 5.0: MQTT-3.2.2-6)")
    if protocol_level != 5:
        code = _V3_CONNACK.get(packet.reason_code)
        if code is None:
            code = 3 if packet.reason_code.is_failure else 0
        # 3.1 has no session present flag: its acknowledge byte is unused.
        present = packet.session_present and protocol_level == 4
        return bytes((0x20, 2, int(present), code))
    code = _check_reason(PacketType.CONNACK, packet.reason_code)
    properties = encode_properties(packet.properties, ALLOWED_PROPERTIES[PacketType.CONNACK])
    return _frame(0x20, bytes((int(packet.session_present), code)) + properties)


def _ack(first: int, kind: PacketType) -> Callable[[Any, int], bytes]:
    allowed = ALLOWED_PROPERTIES[kind]

    def encode(packet: PubAck | PubRec | PubRel | PubComp, protocol_level: int) -> bytes:
        ident = _packet_id(packet.packet_id)
        if protocol_level != 5:
            return bytes((first, 2)) + ident
        code = _check_reason(kind, packet.reason_code)
        if packet.properties is NO_PROPERTIES or not packet.properties:
            if code == 0:
                return bytes((first, 2)) + ident
            return bytes((first, 3)) + ident + bytes((code,))
        return _frame(first, ident + bytes((code,)) + encode_properties(packet.properties, allowed))

    return encode


def _subscribe(packet: Subscribe, protocol_level: int) -> bytes:
    if not packet.subscriptions:
        raise EncodeError("SUBSCRIBE needs at least one subscription (MQTT-3.8.3-3)")
    parts = [_packet_id(packet.packet_id)]
    if protocol_level == 5:
        if len(packet.properties.subscription_identifiers) > 1:
            raise EncodeError("SUBSCRIBE carries at most one subscription identifier (§3.8.2.1.2)")
        parts.append(encode_properties(packet.properties, ALLOWED_PROPERTIES[PacketType.SUBSCRIBE]))
    for sub in packet.subscriptions:
        _check_qos(sub.qos, "subscription")
        options = sub.qos
        if protocol_level == 5:
            if sub.retain_handling not in (0, 1, 2):
                raise EncodeError(f"retain handling {sub.retain_handling!r} is not 0, 1 or 2")
            options |= (sub.no_local << 2) | (sub.retain_as_published << 3) | (sub.retain_handling << 4)
        elif sub.no_local or sub.retain_as_published or sub.retain_handling:
            raise EncodeError("subscription options other than QoS need MQTT 5.0")
        parts += (encode_string(sub.topic_filter), bytes((options,)))
    return _frame(0x82, b"".join(parts))


def _suback(packet: SubAck, protocol_level: int) -> bytes:
    if not packet.reason_codes:
        raise EncodeError("SUBACK needs at least one reason code (§3.9.3)")
    if protocol_level != 5:
        codes = bytes(code if code in _V3_SUBACK else 0x80 for code in packet.reason_codes)
        return _frame(0x90, _packet_id(packet.packet_id) + codes)
    codes = bytes(_check_reason(PacketType.SUBACK, code) for code in packet.reason_codes)
    properties = encode_properties(packet.properties, ALLOWED_PROPERTIES[PacketType.SUBACK])
    return _frame(0x90, _packet_id(packet.packet_id) + properties + codes)


def _unsubscribe(packet: Unsubscribe, protocol_level: int) -> bytes:
    if not packet.topic_filters:
        raise EncodeError("UNSUBSCRIBE needs at least one topic filter (MQTT-3.10.3-2)")
    parts = [_packet_id(packet.packet_id)]
    if protocol_level == 5:
        parts.append(encode_properties(packet.properties, ALLOWED_PROPERTIES[PacketType.UNSUBSCRIBE]))
    parts += (encode_string(topic_filter) for topic_filter in packet.topic_filters)
    return _frame(0xA2, b"".join(parts))


def _unsuback(packet: UnsubAck, protocol_level: int) -> bytes:
    if protocol_level != 5:
        return bytes((0xB0, 2)) + _packet_id(packet.packet_id)
    if not packet.reason_codes:
        raise EncodeError("a 5.0 UNSUBACK needs one reason code per topic filter (§3.11.3)")
    codes = bytes(_check_reason(PacketType.UNSUBACK, code) for code in packet.reason_codes)
    properties = encode_properties(packet.properties, ALLOWED_PROPERTIES[PacketType.UNSUBACK])
    return _frame(0xB0, _packet_id(packet.packet_id) + properties + codes)


def _reason_only(first: int, kind: PacketType) -> Callable[[Any, int], bytes]:
    allowed = ALLOWED_PROPERTIES[kind]

    def encode(packet: Disconnect | Auth, protocol_level: int) -> bytes:
        if protocol_level != 5:
            if kind == PacketType.AUTH:
                raise EncodeError("AUTH needs MQTT 5.0")
            return bytes((first, 0))
        code = _check_reason(kind, packet.reason_code)
        if not packet.properties:
            return bytes((first, 0)) if code == 0 else bytes((first, 1, code))
        return _frame(first, bytes((code,)) + encode_properties(packet.properties, allowed))

    return encode


def _fixed(raw: bytes) -> Callable[[Any, int], bytes]:
    def encode(packet: PingReq | PingResp, protocol_level: int) -> bytes:
        return raw

    return encode


_ENCODERS: Final[dict[type, Callable[[Any, int], bytes]]] = {
    Connect: _connect,
    Connack: _connack,
    Publish: _publish,
    PubAck: _ack(0x40, PacketType.PUBACK),
    PubRec: _ack(0x50, PacketType.PUBREC),
    PubRel: _ack(0x62, PacketType.PUBREL),
    PubComp: _ack(0x70, PacketType.PUBCOMP),
    Subscribe: _subscribe,
    SubAck: _suback,
    Unsubscribe: _unsubscribe,
    UnsubAck: _unsuback,
    PingReq: _fixed(b"\xc0\x00"),
    PingResp: _fixed(b"\xd0\x00"),
    Disconnect: _reason_only(0xE0, PacketType.DISCONNECT),
    Auth: _reason_only(0xF0, PacketType.AUTH),
}


@dataclass(frozen=True, slots=True)
class PublishTemplate:
    """One application message encoded once, written per receiver by :meth:`encode`.

    Fan-out sends the same topic, payload and message properties to every subscriber; only the fixed header
    flags (QoS, DUP, RETAIN), the packet identifier and the per-hop 5.0 properties differ: Message Expiry
    Interval (the remaining time, MQTT-3.3.2-6), Topic Alias (per connection) and Subscription Identifiers
    (per subscriber, MQTT-3.3.4-3). So the template keeps the encoded topic, the encoded message properties
    without those three, and the payload, and :meth:`encode` joins them with the per-receiver parts: one
    ``bytes`` join instead of a full encode per subscriber.

    Build it with :meth:`create`. Attributes are the encoded parts; do not build one by hand.
    """

    topic: str
    topic_field: bytes
    message_properties: bytes
    payload: bytes

    @classmethod
    def create(cls, topic: str, payload: bytes, properties: Properties = NO_PROPERTIES) -> PublishTemplate:
        """Encode the shared parts of a message.

        Args:
            topic: the topic name (not empty).
            payload: the application payload.
            properties: the message's 5.0 properties; Message Expiry Interval, Topic Alias and Subscription
                Identifiers are ignored here and given per receiver to :meth:`encode`.

        Returns:
            The template.

        Raises:
            EncodeError: the topic or a property cannot be encoded.
        """
        if not topic:
            raise EncodeError("a message topic must not be empty (MQTT-4.7.3-1)")
        encoded = b""
        if properties is not NO_PROPERTIES:
            shared = properties._replace(
                message_expiry_interval=None, topic_alias=None, subscription_identifiers=()
            )
            encoded = encode_property_values(shared, _PUBLISH_PROPERTIES)
        return cls(topic, _topic_field(topic), encoded, bytes(payload))

    def encode(
        self,
        *,
        protocol_level: int,
        qos: int = 0,
        packet_id: int | None = None,
        dup: bool = False,
        retain: bool = False,
        message_expiry_interval: int | None = None,
        topic_alias: int | None = None,
        alias_only: bool = False,
        subscription_identifiers: Sequence[int] = (),
    ) -> bytes:
        """Write the PUBLISH for one receiver.

        Args:
            protocol_level: the receiver's level; 3.1.x drops all properties.
            qos: the delivery QoS.
            packet_id: required exactly when ``qos`` > 0.
            dup: the DUP flag (a re-delivery, MQTT-3.3.1-1).
            retain: the RETAIN flag as delivered (MQTT-3.3.1-8/-9, Retain As Published).
            message_expiry_interval: the remaining lifetime in seconds, or ``None`` for none.
            topic_alias: a Topic Alias to send (5.0; 1..the receiver's Topic Alias Maximum).
            alias_only: send an empty topic and only ``topic_alias`` (the alias is already set up).
            subscription_identifiers: the identifiers of the receiver's matching subscriptions.

        Returns:
            The encoded PUBLISH.

        Raises:
            EncodeError: the values cannot be encoded.
        """
        if protocol_level != 5:
            return _publish_bytes(qos, retain, dup, packet_id, self.topic_field, b"", self.payload)
        props = self.message_properties
        if message_expiry_interval is not None or topic_alias is not None or subscription_identifiers:
            extra = []
            if message_expiry_interval is not None:
                if not 0 <= message_expiry_interval <= 0xFFFF_FFFF:
                    raise EncodeError(f"message expiry interval {message_expiry_interval} out of range")
                extra.append(b"\x02" + message_expiry_interval.to_bytes(4, "big"))
            for sid in subscription_identifiers:
                if not 0 < sid <= MAX_REMAINING_LENGTH:
                    raise EncodeError(f"subscription identifier {sid} is not in 1..268435455")
                extra.append(b"\x0b" + encode_varint(sid))
            if topic_alias is not None:
                if not 0 < topic_alias <= 0xFFFF:
                    raise EncodeError(f"topic alias {topic_alias} is not in 1..65535 (MQTT-3.3.2-8)")
                extra.append(b"\x23" + topic_alias.to_bytes(2, "big"))
            props = props + b"".join(extra)
        if alias_only and topic_alias is None:
            raise EncodeError("an empty topic needs a topic alias (MQTT-3.3.2-1)")
        size = len(props)
        block = (bytes((size,)) if size < 0x80 else encode_varint(size)) + props
        topic_field = b"\x00\x00" if alias_only else self.topic_field
        return _publish_bytes(qos, retain, dup, packet_id, topic_field, block, self.payload)
