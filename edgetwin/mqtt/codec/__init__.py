"""The MQTT codec: packets of MQTT 3.1 (level 3), 3.1.1 (level 4) and 5.0 (level 5) <-> bytes. Pure, sans-IO.

Contract:

* :func:`decode_packet` decodes one packet from the start of a buffer and says how many bytes it used;
  :class:`PacketReader` does the same for a stream. Every strict prefix of a valid packet raises
  :class:`Incomplete` and nothing else; any other byte string either decodes or raises :class:`DecodeError`.
* Decoding is strict (being lax here is the commonest broker defect): reserved fixed-header flags
  (PUBREL/SUBSCRIBE/UNSUBSCRIBE carry 0b0010), PUBLISH QoS 3 or QoS 0 with DUP, packet identifier 0, a
  remaining length over four bytes or not minimally encoded, strings that are not UTF-8 or contain U+0000
  (MQTT-1.5.4-1/-2; 3.1.1: MQTT-1.5.3-1/-2), wildcards in or an empty PUBLISH topic (5.0: empty only with
  a Topic Alias), SUBSCRIBE/UNSUBSCRIBE without filters, a packet type the peer may not send, unknown,
  misplaced and duplicated properties, invalid reason codes, trailing bytes, a bad protocol name, and
  packets over ``max_packet_size`` (refused from the fixed header alone, before the body is buffered).
* :func:`encode_packet` writes what :func:`decode_packet` reads back as an equal packet, or raises
  :class:`EncodeError`. Encoding for 3.1.x drops the 5.0-only fields (see ``_encode``).
* :class:`PublishTemplate` encodes a message once and writes it per receiver with its own QoS, packet
  identifier, DUP/RETAIN flags and per-hop 5.0 properties, for fan-out.

Not handled here: anything with state across packets (packet identifiers in flight, topic alias maps,
Receive Maximum, keep alive): see :mod:`edgetwin.mqtt.session` and the broker. Topic filters in SUBSCRIBE
are not validated, because an invalid one is refused per filter in SUBACK, not by closing.

Errors (every one the peer can cause carries the 5.0 reason code to answer with)::

    MqttError
    ├── Incomplete                      more bytes needed; not an error in the data (.needed)
    ├── EncodeError (also ValueError)   a packet we built cannot be encoded
    └── ProtocolError                   the peer broke the protocol: close, in 5.0 after CONNACK/DISCONNECT
        │                               with .reason_code (0x82 Protocol Error, 0x93, 0x94 from the session)
        └── DecodeError                 bad bytes: 0x81 Malformed, 0x82, 0x90, 0x94, 0x95 Packet too large
            │                           (.packet_type, .protocol_level)
            └── UnsupportedProtocolVersion   CONNECT with an unknown level: answer CONNACK 1 (3.1.1,
                                             ``20 02 00 01``) or 0x84 (5.0); .protocol_level is the level tried
"""

from __future__ import annotations

from edgetwin.mqtt.codec._decode import Role, decode_packet
from edgetwin.mqtt.codec._encode import PublishTemplate, encode_packet
from edgetwin.mqtt.codec._enums import PacketType, PropertyId, QoS, ReasonCode, RetainHandling
from edgetwin.mqtt.codec._errors import (
    DecodeError,
    EncodeError,
    Incomplete,
    MqttError,
    ProtocolError,
    UnsupportedProtocolVersion,
)
from edgetwin.mqtt.codec._packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from edgetwin.mqtt.codec._properties import NO_PROPERTIES, Properties
from edgetwin.mqtt.codec._reader import PacketReader

__all__ = [
    "NO_PROPERTIES",
    "Auth",
    "Connack",
    "Connect",
    "DecodeError",
    "Disconnect",
    "EncodeError",
    "Incomplete",
    "MqttError",
    "Packet",
    "PacketReader",
    "PacketType",
    "PingReq",
    "PingResp",
    "Properties",
    "PropertyId",
    "ProtocolError",
    "PubAck",
    "PubComp",
    "PubRec",
    "PubRel",
    "Publish",
    "PublishTemplate",
    "QoS",
    "ReasonCode",
    "RetainHandling",
    "Role",
    "SubAck",
    "Subscribe",
    "Subscription",
    "UnsubAck",
    "Unsubscribe",
    "UnsupportedProtocolVersion",
    "Will",
    "decode_packet",
    "encode_packet",
]
