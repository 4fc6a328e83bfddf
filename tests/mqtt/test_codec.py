"""The MQTT codec: round trips of every packet in 3.1.1 and 5.0, prefixes, spec byte sequences, every
malformed case with its reason code, the streaming reader, and hypothesis properties (generated packets
round-trip; arbitrary and mutated bytes only ever raise Incomplete or DecodeError).
"""

from __future__ import annotations

import contextlib
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgetwin.mqtt import codec
from edgetwin.mqtt.codec import (
    NO_PROPERTIES,
    Auth,
    Connack,
    Connect,
    DecodeError,
    Disconnect,
    EncodeError,
    Incomplete,
    MqttError,
    Packet,
    PacketReader,
    PacketType,
    PingReq,
    PingResp,
    Properties,
    PropertyId,
    ProtocolError,
    PubAck,
    PubComp,
    Publish,
    PublishTemplate,
    PubRec,
    PubRel,
    ReasonCode,
    RetainHandling,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    UnsupportedProtocolVersion,
    Will,
    decode_packet,
    encode_packet,
)

R = ReasonCode


def test_public_names_are_pinned() -> None:
    assert sorted(codec.__all__) == sorted(
        [
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
    )


def test_exception_tree() -> None:
    assert issubclass(Incomplete, MqttError)
    assert not issubclass(Incomplete, DecodeError)
    assert not issubclass(DecodeError, Incomplete)
    assert issubclass(DecodeError, ProtocolError)
    assert issubclass(UnsupportedProtocolVersion, DecodeError)
    assert issubclass(EncodeError, MqttError)
    assert issubclass(EncodeError, ValueError)
    assert issubclass(ProtocolError, MqttError)


# --- helpers ------------------------------------------------------------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def s(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def assert_round_trip(pkt: Packet, level: int) -> bytes:
    data = encode_packet(pkt, protocol_level=level)
    decoded, used = decode_packet(data, protocol_level=level)
    assert decoded == pkt
    assert used == len(data)
    # Same answer from a bytearray and a memoryview, with more bytes after the packet.
    for view in (bytearray(data + b"\xc0\x00"), memoryview(data + b"\xc0")):
        assert decode_packet(view, protocol_level=level) == (pkt, len(data))
    for cut in range(len(data)):
        with pytest.raises(Incomplete):
            decode_packet(data[:cut], protocol_level=level)
    return data


# --- round trips of every packet type -----------------------------------------------------------------

ALL_PROPS = Properties(
    payload_format_indicator=1,
    message_expiry_interval=3600,
    content_type="application/json",
    response_topic="replies/1",
    correlation_data=b"\x00\x01corr",
    user_properties=(("k", "v"), ("k", "v2"), ("a", "")),
)

EXAMPLES_BOTH: list[Packet] = [
    Connect("client-1", keep_alive=60),
    Connect("", clean_start=False, username="u", password=b"p\x00w"),
    Connect("c", will=Will("last/will", b"bye", qos=1, retain=True), keep_alive=65535),
    Connack(),
    Connack(session_present=True),
    Connack(reason_code=R.NOT_AUTHORIZED),
    Publish("a/b", b"hello"),
    Publish("a/b", b"", qos=1, packet_id=1, retain=True),
    Publish("a/b", b"x" * 300, qos=2, packet_id=65535, dup=True),
    Publish("ä/ß/€", b"\x00\xff"),
    PubAck(7),
    PubRec(8),
    PubRel(9),
    PubComp(65535),
    Subscribe(1, (Subscription("a/#", 1), Subscription("+/b", 2), Subscription("c", 0))),
    SubAck(1, (R.GRANTED_QOS_1, R.GRANTED_QOS_2, R.GRANTED_QOS_0, R.UNSPECIFIED_ERROR)),
    Unsubscribe(2, ("a/#", "b")),
    UnsubAck(2),
    PingReq(),
    PingResp(),
    Disconnect(),
]

EXAMPLES_V5: list[Packet] = [
    Connect(
        "c5",
        protocol_level=5,
        keep_alive=30,
        password=b"no user name is fine in 5.0",
        will=Will("w", b"x", 2, False, ALL_PROPS._replace(correlation_data=None)._replace(content_type="t")),
        properties=Properties(
            session_expiry_interval=0xFFFFFFFF,
            receive_maximum=10,
            maximum_packet_size=1024,
            topic_alias_maximum=5,
            request_response_information=True,
            request_problem_information=False,
            authentication_method="SCRAM",
            authentication_data=b"data",
            user_properties=(("x", "y"),),
        ),
    ),
    Connect("w5", protocol_level=5, will=Will("w", properties=Properties(will_delay_interval=10))),
    Connack(
        True,
        R.SUCCESS,
        Properties(
            session_expiry_interval=60,
            receive_maximum=20,
            maximum_qos=1,
            retain_available=False,
            maximum_packet_size=65536,
            assigned_client_identifier="auto-1",
            topic_alias_maximum=10,
            reason_string="ok",
            wildcard_subscription_available=True,
            subscription_identifier_available=False,
            shared_subscription_available=False,
            server_keep_alive=120,
            response_information="resp/",
            server_reference="other:1883",
            authentication_method="m",
            authentication_data=b"d",
        ),
    ),
    Connack(reason_code=R.BAD_AUTHENTICATION_METHOD),
    Publish("t", b"p", 1, False, False, 5, ALL_PROPS),
    Publish("", b"aliased", 0, properties=Properties(topic_alias=3)),
    Publish("t", b"", 2, True, True, 6, Properties(topic_alias=1, subscription_identifiers=(1, 268435455))),
    PubAck(1, R.NO_MATCHING_SUBSCRIBERS),
    PubAck(1, R.NOT_AUTHORIZED, Properties(reason_string="no")),
    PubAck(1, R.SUCCESS, Properties(user_properties=(("a", "b"),))),
    PubRec(2, R.QUOTA_EXCEEDED),
    PubRel(3, R.PACKET_IDENTIFIER_NOT_FOUND),
    PubComp(4, R.SUCCESS, Properties(reason_string="r")),
    Subscribe(
        3,
        (
            Subscription(
                "a/+", 2, no_local=True, retain_as_published=True, retain_handling=RetainHandling(2)
            ),
            Subscription("$share/g/x", 1, retain_handling=RetainHandling.SEND_IF_NEW_SUBSCRIPTION),
        ),
        Properties(subscription_identifiers=(42,), user_properties=(("u", "p"),)),
    ),
    SubAck(3, (R.GRANTED_QOS_2, R.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED), Properties(reason_string="partly")),
    Unsubscribe(4, ("a",), Properties(user_properties=(("u", "p"),))),
    UnsubAck(4, (R.SUCCESS, R.NO_SUBSCRIPTION_EXISTED), Properties(reason_string="r")),
    Disconnect(R.DISCONNECT_WITH_WILL_MESSAGE),
    Disconnect(R.SERVER_SHUTTING_DOWN, Properties(reason_string="bye", server_reference="s")),
    Disconnect(R.NORMAL_DISCONNECTION, Properties(session_expiry_interval=0)),
    Auth(),
    Auth(R.CONTINUE_AUTHENTICATION, Properties(authentication_method="m", authentication_data=b"x")),
    Auth(R.RE_AUTHENTICATE),
]


def _at_level(pkt: Packet, level: int) -> Packet:
    if isinstance(pkt, Connect):
        return Connect(
            pkt.client_id, level, pkt.clean_start, pkt.keep_alive, pkt.username, pkt.password, pkt.will
        )
    if isinstance(pkt, UnsubAck) and level == 5:
        return UnsubAck(pkt.packet_id, (R.SUCCESS, R.SUCCESS))  # 5.0 has a reason code per filter
    return pkt


@pytest.mark.parametrize("level", [4, 5])
@pytest.mark.parametrize("pkt", EXAMPLES_BOTH, ids=repr)
def test_round_trip_both_versions(pkt: Packet, level: int) -> None:
    assert_round_trip(_at_level(pkt, level), level)


@pytest.mark.parametrize("pkt", EXAMPLES_V5, ids=repr)
def test_round_trip_v5(pkt: Packet) -> None:
    assert_round_trip(pkt, 5)


@pytest.mark.parametrize(
    "pkt", [Connect("old", protocol_level=3, keep_alive=10), Connack(), Publish("a", b"b", 1, packet_id=3)]
)
def test_round_trip_mqtt_3_1(pkt: Packet) -> None:
    data = assert_round_trip(pkt, 3)
    if isinstance(pkt, Connect):
        assert data[2:11] == s("MQIsdp") + b"\x03"


# --- known byte sequences -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pkt", "level", "hex_bytes"),
    [
        (Connack(reason_code=R.UNSUPPORTED_PROTOCOL_VERSION), 4, "20 02 00 01"),
        (Connack(reason_code=R.SERVER_UNAVAILABLE), 4, "20 02 00 03"),
        (Connack(reason_code=R.SERVER_UNAVAILABLE), 5, "20 03 00 88 00"),
        (Connack(True), 4, "20 02 01 00"),
        (Connack(True), 3, "20 02 00 00"),  # 3.1 has no session present flag
        (PingReq(), 4, "c0 00"),
        (PingResp(), 5, "d0 00"),
        (Disconnect(), 4, "e0 00"),
        (Disconnect(), 5, "e0 00"),
        (Disconnect(R.SESSION_TAKEN_OVER), 5, "e0 01 8e"),
        (PubAck(1), 4, "40 02 00 01"),
        (PubAck(1), 5, "40 02 00 01"),
        (PubAck(1, R.NO_MATCHING_SUBSCRIBERS), 5, "40 03 00 01 10"),
        (PubRel(258), 4, "62 02 01 02"),
        (SubAck(10, (R.GRANTED_QOS_1, R.UNSPECIFIED_ERROR)), 4, "90 04 00 0a 01 80"),
        (UnsubAck(10), 4, "b0 02 00 0a"),
        (Publish("a/b", b"hi"), 4, "30 07 00 03 61 2f 62 68 69"),
        (Publish("a/b", b"hi", 1, packet_id=10), 4, "32 09 00 03 61 2f 62 00 0a 68 69"),
        (Publish("a/b", b"hi"), 5, "30 08 00 03 61 2f 62 00 68 69"),
        (Connect("", keep_alive=60), 4, "10 0c 00 04 4d 51 54 54 04 02 00 3c 00 00"),
        (Subscribe(1, (Subscription("a", 1),)), 4, "82 06 00 01 00 01 61 01"),
        (Unsubscribe(1, ("a",)), 4, "a2 05 00 01 00 01 61"),
    ],
)
def test_known_bytes(pkt: Packet, level: int, hex_bytes: str) -> None:
    assert encode_packet(pkt, protocol_level=level) == bytes.fromhex(hex_bytes)


def test_spec_v5_connect_variable_header() -> None:
    # MQTT 5.0 §3.1.2.12, the variable header example: level 5, flags C2, keep alive 10,
    # properties: Session Expiry Interval 10.
    header = bytes.fromhex("00 04 4D 51 54 54 05 C2 00 0A 05 11 00 00 00 0A")
    data = packet(0x10, header + s("cid") + s("user") + s("pw"))
    pkt, used = decode_packet(data, protocol_level=5)
    assert used == len(data)
    assert pkt == Connect("cid", 5, True, 10, "user", b"pw", None, Properties(session_expiry_interval=10))


@pytest.mark.parametrize(
    ("value", "hex_bytes"),
    [
        (0, "00"),
        (127, "7f"),
        (128, "80 01"),
        (16383, "ff 7f"),
        (16384, "80 80 01"),
        (2097151, "ff ff 7f"),
        (2097152, "80 80 80 01"),
        (268435455, "ff ff ff 7f"),
    ],
)
def test_remaining_length_examples(value: int, hex_bytes: str) -> None:
    # §1.5.5 / 3.1.1 Table 2.4: the boundaries of one to four byte remaining lengths.
    encoded = bytes.fromhex(hex_bytes)
    assert varint(value) == encoded
    if 3 <= value < 20000:
        data = encode_packet(Publish("a", b"x" * (value - 3)), protocol_level=4)  # topic field: 3 bytes
        assert data[1 : 1 + len(encoded)] == encoded
    # The fixed header alone is enough to know the size (and refuse it when too large).
    if value:
        with pytest.raises(Incomplete) as info:
            decode_packet(b"\x30" + encoded, protocol_level=4)
        assert info.value.needed == 1 + len(encoded) + value


def test_utf8_example_from_the_spec() -> None:
    # §1.5.4 Figure 1-1: "A" U+2A6D4 is 00 05 41 F0 AA 9B 94.
    data = encode_packet(Publish("A\U0002a6d4", b""), protocol_level=4)
    assert data[2:] == bytes.fromhex("00 05 41 F0 AA 9B 94")
    assert decode_packet(data, protocol_level=4)[0] == Publish("A\U0002a6d4", b"")


def test_bom_is_not_stripped() -> None:
    # MQTT-1.5.4-3: U+FEFF is a character of the string, never skipped.
    data = packet(0x30, s("\ufeffa"))
    assert decode_packet(data, protocol_level=4)[0] == Publish("\ufeffa", b"")


def test_encoding_for_3_1_1_leaves_out_5_0_fields() -> None:
    assert encode_packet(PubAck(1, R.NOT_AUTHORIZED, Properties(reason_string="x")), protocol_level=4) == (
        b"\x40\x02\x00\x01"
    )
    assert encode_packet(Publish("t", b"", properties=ALL_PROPS), protocol_level=4) == packet(0x30, s("t"))
    assert encode_packet(Disconnect(R.SERVER_SHUTTING_DOWN), protocol_level=4) == b"\xe0\x00"
    assert encode_packet(UnsubAck(1, (R.SUCCESS,)), protocol_level=4) == b"\xb0\x02\x00\x01"
    suback = SubAck(1, (R.NOT_AUTHORIZED, R.GRANTED_QOS_1, R.TOPIC_FILTER_INVALID))
    assert encode_packet(suback, protocol_level=4) == b"\x90\x05\x00\x01\x80\x01\x80"
    for code, expected in [
        (R.CLIENT_IDENTIFIER_NOT_VALID, 2),
        (R.BAD_USER_NAME_OR_PASSWORD, 4),
        (R.SERVER_BUSY, 3),
        (R.BANNED, 5),
        (R.MALFORMED_PACKET, 3),
    ]:
        assert encode_packet(Connack(reason_code=code), protocol_level=4) == bytes([0x20, 2, 0, expected])


@pytest.mark.parametrize(
    ("pkt", "level"),
    [
        (Publish("a", qos=1), 4),  # QoS 1 without a packet identifier
        (Publish("a", qos=0, packet_id=1), 4),
        (Publish("a", qos=0, dup=True), 4),  # MQTT-3.3.1-2
        (Publish("a", qos=3, packet_id=1), 4),
        (Publish("a", qos=1, packet_id=0), 4),
        (Publish("a", qos=1, packet_id=65536), 4),
        (Publish("", b""), 4),
        (Publish("", b""), 5),  # empty topic needs an alias
        (Publish("a\x00", b""), 4),
        (Publish("\ud800", b""), 4),
        (Publish("a" * 65536, b""), 4),
        (Publish("a", properties=Properties(topic_alias=0)), 5),
        (Publish("a", properties=Properties(session_expiry_interval=1)), 5),  # not allowed on PUBLISH
        (Publish("a", properties=Properties(response_topic="a/#")), 5),
        (Publish("a", properties=Properties(message_expiry_interval=2**32)), 5),
        (Publish("a", properties=Properties(user_properties=(("k\x00", "v"),))), 5),
        (Connect("c", protocol_level=5), 4),  # level mismatch
        (Connect("c", password=b"p"), 4),  # MQTT-3.1.2-22
        (Connect("c", will=Will("w", qos=3)), 4),
        (Connect("c", keep_alive=65536), 4),
        (Connect("c", 5, properties=Properties(authentication_data=b"x")), 5),
        (Connect("c", 5, properties=Properties(receive_maximum=0)), 5),
        (Subscribe(1, ()), 4),
        (Subscribe(1, (Subscription("a", 3),)), 4),
        (Subscribe(1, (Subscription("a", 1, no_local=True),)), 4),
        (Subscribe(1, (Subscription("a", 1),), Properties(subscription_identifiers=(1, 2))), 5),
        (Unsubscribe(1, ()), 4),
        (SubAck(1, ()), 4),
        (UnsubAck(1, ()), 5),
        (PubAck(0), 4),
        (PubAck(1, R.PACKET_IDENTIFIER_NOT_FOUND), 5),  # not a PUBACK reason code
        (Connack(reason_code=R.GRANTED_QOS_1), 5),
        (Connack(True, R.NOT_AUTHORIZED), 4),  # MQTT-3.2.2-4: no session present on failure
        (Connack(True, R.NOT_AUTHORIZED), 5),
        (Auth(), 4),
        (PingReq(), 6),
    ],
    ids=repr,
)
def test_encode_errors(pkt: Packet, level: int) -> None:
    with pytest.raises(EncodeError):
        encode_packet(pkt, protocol_level=level)


# --- malformed input, each with its reason code -------------------------------------------------------

PUB5 = s("t") + u16(1)  # topic "t", packet id 1: a QoS 1 PUBLISH body before its properties


def props(raw: bytes) -> bytes:
    return varint(len(raw)) + raw


def connect_body(name: str = "MQTT", level: int = 4, flags: int = 2, rest: bytes = b"") -> bytes:
    return s(name) + bytes([level, flags]) + u16(60) + rest


MALFORMED: list[tuple[str, bytes, int, str | None, int]] = [
    # (id, bytes, level, role, reason)
    ("PUBREL flags 0000", bytes.fromhex("60 02 00 01"), 4, None, 0x81),
    ("SUBSCRIBE flags 0000", packet(0x80, u16(1) + s("a") + b"\x00"), 4, None, 0x81),
    ("UNSUBSCRIBE flags 0000", packet(0xA0, u16(1) + s("a")), 4, None, 0x81),
    ("PUBACK flags 0001", bytes.fromhex("41 02 00 01"), 4, None, 0x81),
    ("PINGREQ flags 1000", bytes.fromhex("c8 00"), 4, None, 0x81),
    ("PUBLISH QoS 3", packet(0x36, s("a") + u16(1)), 4, None, 0x81),
    ("PUBLISH QoS 0 DUP", packet(0x38, s("a")), 4, None, 0x81),
    ("PUBLISH packet id 0", packet(0x32, s("a") + u16(0)), 4, None, 0x81),
    ("PUBACK packet id 0", bytes.fromhex("40 02 00 00"), 4, None, 0x81),
    ("SUBSCRIBE packet id 0", packet(0x82, u16(0) + s("a") + b"\x00"), 4, None, 0x81),
    ("remaining length 5 bytes", bytes.fromhex("30 ff ff ff ff 01"), 4, None, 0x81),
    ("remaining length not minimal", bytes.fromhex("c0 80 00"), 4, None, 0x81),
    ("invalid UTF-8 topic", packet(0x30, b"\x00\x02\xc3\x28"), 4, None, 0x81),
    ("encoded surrogate in topic", packet(0x30, b"\x00\x03\xed\xa0\x80"), 4, None, 0x81),
    ("overlong UTF-8", packet(0x30, b"\x00\x02\xc0\xaf"), 4, None, 0x81),
    ("U+0000 in topic", packet(0x30, b"\x00\x02a\x00"), 4, None, 0x81),
    ("U+0000 in client id", packet(0x10, connect_body(rest=b"\x00\x01\x00")), 4, None, 0x81),
    ("U+0000 in filter", packet(0x82, u16(1) + b"\x00\x01\x00" + b"\x00"), 4, None, 0x81),
    ("wildcard + in topic", packet(0x30, s("a/+")), 4, None, 0x90),
    ("wildcard # in topic", packet(0x30, s("#") + b"\x00"), 5, None, 0x90),
    ("empty topic 3.1.1", packet(0x30, s("")), 4, None, 0x82),
    ("empty topic 5.0 without alias", packet(0x30, s("") + b"\x00"), 5, None, 0x82),
    ("SUBSCRIBE without filters", packet(0x82, u16(1)), 4, None, 0x82),
    ("SUBSCRIBE 5.0 without filters", packet(0x82, u16(1) + b"\x00"), 5, None, 0x82),
    ("UNSUBSCRIBE without filters", packet(0xA2, u16(1)), 4, None, 0x82),
    ("CONNACK from a client", bytes.fromhex("20 02 00 00"), 4, "server", 0x82),
    ("SUBACK from a client", bytes.fromhex("90 03 00 01 00"), 4, "server", 0x82),
    ("UNSUBACK from a client", bytes.fromhex("b0 02 00 01"), 4, "server", 0x82),
    ("PINGRESP from a client", bytes.fromhex("d0 00"), 5, "server", 0x82),
    ("PINGREQ from a server", bytes.fromhex("c0 00"), 4, "client", 0x82),
    ("SUBSCRIBE from a server", packet(0x82, u16(1) + s("a") + b"\x00"), 4, "client", 0x82),
    ("CONNECT from a server", packet(0x10, connect_body(rest=s("c"))), 4, "client", 0x82),
    ("3.1.1 DISCONNECT from a server", bytes.fromhex("e0 00"), 4, "client", 0x82),
    ("reserved type 0", bytes.fromhex("00 00"), 4, None, 0x81),
    ("AUTH in 3.1.1", bytes.fromhex("f0 00"), 4, None, 0x81),
    ("duplicate property", packet(0x32, PUB5 + props(b"\x02\x00\x00\x00\x01" * 2)), 5, None, 0x82),
    ("duplicate session expiry", packet(0xE0, b"\x00" + props(b"\x11\x00\x00\x00\x01" * 2)), 5, None, 0x82),
    (
        "two subscription ids in SUBSCRIBE",
        packet(0x82, u16(1) + props(b"\x0b\x01\x0b\x02") + s("a") + b"\x00"),
        5,
        None,
        0x82,
    ),
    ("unknown property id", packet(0x32, PUB5 + props(b"\x05\x00")), 5, None, 0x81),
    ("property id with continuation bit", packet(0x32, PUB5 + props(b"\x82\x01\x00")), 5, None, 0x81),
    ("property not allowed on PUBLISH", packet(0x32, PUB5 + props(b"\x11\x00\x00\x00\x01")), 5, None, 0x81),
    (
        "will delay on CONNECT itself",
        packet(0x10, connect_body(level=5, rest=props(b"\x18\x00\x00\x00\x01") + s("c"))),
        5,
        None,
        0x81,
    ),
    (
        "property on PUBACK not allowed",
        packet(0x40, u16(1) + b"\x00" + props(b"\x02\x00\x00\x00\x01")),
        5,
        None,
        0x81,
    ),
    (
        "property value past property length",
        packet(0x32, PUB5 + b"\x03\x02\x00\x00" + b"\x00\x01"),
        5,
        None,
        0x81,
    ),
    ("property length past packet", packet(0x32, PUB5 + b"\x09\x01\x00"), 5, None, 0x81),
    ("topic alias 0", packet(0x30, s("a") + props(b"\x23\x00\x00")), 5, None, 0x94),
    (
        "receive maximum 0",
        packet(0x10, connect_body(level=5, rest=props(b"\x21\x00\x00") + s("c"))),
        5,
        None,
        0x82,
    ),
    (
        "maximum packet size 0",
        packet(0x10, connect_body(level=5, rest=props(b"\x27\x00\x00\x00\x00") + s("c"))),
        5,
        None,
        0x82,
    ),
    (
        "request problem information 2",
        packet(0x10, connect_body(level=5, rest=props(b"\x17\x02") + s("c"))),
        5,
        None,
        0x82,
    ),
    ("payload format indicator 2", packet(0x30, s("a") + props(b"\x01\x02")), 5, None, 0x82),
    (
        "subscription identifier 0",
        packet(0x82, u16(1) + props(b"\x0b\x00") + s("a") + b"\x00"),
        5,
        None,
        0x82,
    ),
    ("response topic with wildcard", packet(0x30, s("a") + props(b"\x08" + s("r/#"))), 5, None, 0x82),
    ("subscription id from a client", packet(0x30, s("a") + props(b"\x0b\x01")), 5, "server", 0x82),
    (
        "auth data without method",
        packet(0x10, connect_body(level=5, rest=props(b"\x16" + s("x")) + s("c"))),
        5,
        None,
        0x82,
    ),
    ("trailing byte in PUBACK", bytes.fromhex("40 03 00 01 00"), 4, None, 0x81),
    ("trailing byte in PINGREQ", bytes.fromhex("c0 01 00"), 4, None, 0x81),
    ("trailing byte in CONNACK", bytes.fromhex("20 03 00 00 00"), 4, None, 0x81),
    ("trailing byte in 5.0 PUBACK", packet(0x40, u16(1) + b"\x00\x00\x00"), 5, None, 0x81),
    ("trailing byte in CONNECT", packet(0x10, connect_body(rest=s("c") + b"\x00")), 4, None, 0x81),
    ("trailing byte in 3.1.1 UNSUBACK", bytes.fromhex("b0 03 00 01 00"), 4, None, 0x81),
    ("3.1.1 DISCONNECT with a body", bytes.fromhex("e0 01 00"), 4, None, 0x81),
    ("string past the packet end", packet(0x30, b"\x00\x05ab"), 4, None, 0x81),
    ("PUBLISH missing packet id", packet(0x32, s("a") + b"\x00"), 4, None, 0x81),
    ("bad protocol name", packet(0x10, connect_body(name="MQTX", rest=s("c"))), 4, None, 0x82),
    ("CONNECT reserved flag", packet(0x10, connect_body(flags=0x03, rest=s("c"))), 4, None, 0x81),
    ("will QoS 3", packet(0x10, connect_body(flags=0x1E, rest=s("c") + s("w") + s("x"))), 4, None, 0x81),
    ("will retain without will", packet(0x10, connect_body(flags=0x22, rest=s("c"))), 4, None, 0x81),
    ("will QoS without will", packet(0x10, connect_body(flags=0x0A, rest=s("c"))), 4, None, 0x81),
    (
        "password without user name",
        packet(0x10, connect_body(flags=0x42, rest=s("c") + s("p"))),
        4,
        None,
        0x81,
    ),
    (
        "will topic with wildcard",
        packet(0x10, connect_body(flags=0x06, rest=s("c") + s("w/+") + s("x"))),
        4,
        None,
        0x90,
    ),
    ("CONNECT without client id", packet(0x10, connect_body()), 4, None, 0x81),
    ("CONNACK reserved flags", bytes.fromhex("20 02 02 00"), 4, None, 0x81),
    ("CONNACK session present on failure", bytes.fromhex("20 02 01 05"), 4, None, 0x82),
    ("CONNACK 5.0 session present on failure", bytes.fromhex("20 03 01 87 00"), 5, None, 0x82),
    ("CONNACK return code 6", bytes.fromhex("20 02 00 06"), 4, None, 0x81),
    ("CONNACK 5.0 reason 0x01", bytes.fromhex("20 03 00 01 00"), 5, None, 0x81),
    ("SUBSCRIBE QoS 3", packet(0x82, u16(1) + s("a") + b"\x03"), 4, None, 0x81),
    ("SUBSCRIBE 3.1.1 reserved option bits", packet(0x82, u16(1) + s("a") + b"\x04"), 4, None, 0x81),
    ("SUBSCRIBE 5.0 reserved option bits", packet(0x82, u16(1) + b"\x00" + s("a") + b"\x40"), 5, None, 0x81),
    ("SUBSCRIBE retain handling 3", packet(0x82, u16(1) + b"\x00" + s("a") + b"\x30"), 5, None, 0x82),
    ("SUBSCRIBE filter without options", packet(0x82, u16(1) + s("a")), 4, None, 0x81),
    ("SUBACK 3.1.1 code 3", bytes.fromhex("90 03 00 01 03"), 4, None, 0x81),
    ("SUBACK without codes", bytes.fromhex("90 02 00 01"), 4, None, 0x82),
    ("UNSUBACK 5.0 without codes", bytes.fromhex("b0 03 00 01 00"), 5, None, 0x82),
    ("PUBACK reason 0x92", bytes.fromhex("40 03 00 01 92"), 5, None, 0x81),
    ("PUBREL reason 0x10", bytes.fromhex("62 03 00 01 10"), 5, None, 0x81),
    ("DISCONNECT reason 0x01", bytes.fromhex("e0 01 01"), 5, None, 0x81),
    ("AUTH reason 0x80", bytes.fromhex("f0 01 80"), 5, None, 0x81),
    ("SUBACK 5.0 reason 0x10", bytes.fromhex("90 04 00 01 00 10"), 5, None, 0x81),
]


@pytest.mark.parametrize(
    ("data", "level", "role", "reason"),
    [pytest.param(data, level, role, reason, id=name) for name, data, level, role, reason in MALFORMED],
)
def test_malformed(data: bytes, level: int, role: codec.Role | None, reason: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_packet(data, protocol_level=level, role=role)
    assert info.value.reason_code == reason
    assert isinstance(info.value.reason_code, ReasonCode)
    assert info.value.packet_type in (None, *PacketType)


def test_v5_empty_topic_with_alias_is_fine() -> None:
    data = packet(0x30, s("") + props(b"\x23\x00\x07") + b"pay")
    assert decode_packet(data, protocol_level=5)[0] == Publish(
        "", b"pay", properties=Properties(topic_alias=7)
    )


def test_decode_error_knows_the_packet_type_and_level() -> None:
    with pytest.raises(DecodeError) as info:
        decode_packet(bytes.fromhex("40 03 00 01 92"), protocol_level=5)
    assert info.value.packet_type is PacketType.PUBACK
    assert info.value.protocol_level == 5
    with pytest.raises(DecodeError) as info:
        decode_packet(packet(0x10, connect_body(level=5, flags=0x03, rest=s("c"))), protocol_level=4)
    assert info.value.packet_type is PacketType.CONNECT
    assert info.value.protocol_level == 5  # the level the CONNECT announced
    assert "0x81" in str(info.value)


@pytest.mark.parametrize(
    ("name", "level"), [("MQTT", 6), ("MQTT", 3), ("MQIsdp", 4), ("MQTT", 0), ("MQIsdp", 5)]
)
def test_unsupported_protocol_version(name: str, level: int) -> None:
    data = packet(0x10, connect_body(name=name, level=level, rest=s("c")))
    with pytest.raises(UnsupportedProtocolVersion) as info:
        decode_packet(data, protocol_level=4)
    assert info.value.reason_code == R.UNSUPPORTED_PROTOCOL_VERSION
    assert info.value.protocol_level == level
    assert info.value.protocol_name == name
    # What the broker answers a 3.1.1-style client (MQTT-3.1.2-2):
    assert encode_packet(Connack(reason_code=info.value.reason_code), protocol_level=4) == b"\x20\x02\x00\x01"


def test_too_large_is_refused_from_the_fixed_header() -> None:
    big = encode_packet(Publish("a", b"x" * 200), protocol_level=4)
    for cut in (3, 10, len(big)):
        with pytest.raises(DecodeError) as info:
            decode_packet(big[:cut], protocol_level=4, max_packet_size=100)
        assert info.value.reason_code == R.PACKET_TOO_LARGE
    # The limit counts the whole packet, fixed header included (§3.1.2.11.4).
    assert decode_packet(big, protocol_level=4, max_packet_size=len(big))[1] == len(big)
    with pytest.raises(DecodeError):
        decode_packet(big, protocol_level=4, max_packet_size=len(big) - 1)


def test_incomplete_is_not_raised_for_bad_first_bytes() -> None:
    for first in (0x00, 0x36, 0x38, 0x60, 0x80, 0xA0, 0x41):
        with pytest.raises(DecodeError):
            decode_packet(bytes([first]), protocol_level=4)
    with pytest.raises(Incomplete):
        decode_packet(b"", protocol_level=4)


# --- the streaming reader -----------------------------------------------------------------------------

STREAM: list[Packet] = [
    Connect("c", 5, keep_alive=5),
    Publish("a", b"x" * 200, 1, packet_id=1, properties=Properties(message_expiry_interval=5)),
    PubAck(1),
    Subscribe(2, (Subscription("a/#", 1),)),
    Publish("b", b"", 0),
    PingReq(),
    Disconnect(),
]
STREAM_BYTES = b"".join(encode_packet(p, protocol_level=5) for p in STREAM)


@given(cuts=st.lists(st.integers(0, len(STREAM_BYTES)), max_size=12))
def test_reader_is_independent_of_chunking(cuts: list[int]) -> None:
    reader = PacketReader()
    out: list[Packet] = []
    bounds = [0, *sorted(cuts), len(STREAM_BYTES)]
    for start, stop in itertools.pairwise(bounds):
        reader.feed(STREAM_BYTES[start:stop])
        out.extend(reader)
    assert out == STREAM
    assert reader.protocol_level == 5
    assert reader.buffered == 0


def test_reader_byte_by_byte_and_bulk() -> None:
    reader = PacketReader()
    out = []
    for i in range(len(STREAM_BYTES)):
        reader.feed(memoryview(STREAM_BYTES)[i : i + 1])
        out += list(reader)
    assert out == STREAM
    bulk = PacketReader()
    bulk.feed(bytearray(STREAM_BYTES[:10]))
    bulk.feed(STREAM_BYTES[10:])  # fed twice before reading
    assert list(bulk) == STREAM


def test_reader_first_packet_must_be_connect() -> None:
    reader = PacketReader()
    reader.feed(b"\xc0\x00")
    with pytest.raises(DecodeError) as info:
        reader.next_packet()
    assert info.value.reason_code == R.PROTOCOL_ERROR
    with pytest.raises(DecodeError):  # broken for good
        reader.next_packet()


def test_reader_second_connect_is_a_protocol_error() -> None:
    reader = PacketReader()
    reader.feed(encode_packet(Connect("c"), protocol_level=4) * 2)
    assert reader.next_packet() == Connect("c")
    assert reader.protocol_level == 4
    with pytest.raises(DecodeError) as info:
        reader.next_packet()
    assert info.value.reason_code == R.PROTOCOL_ERROR


def test_reader_uses_the_level_of_the_connect() -> None:
    reader = PacketReader()
    # In 3.1.1 this PUBLISH would have the topic "a" and the payload "\x00..."; in 5.0 "\x00" is the
    # property length.
    reader.feed(encode_packet(Connect("c", 5), protocol_level=5) + packet(0x30, s("a") + b"\x00pay"))
    assert list(reader) == [Connect("c", 5), Publish("a", b"pay")]


def test_reader_refuses_oversized_packets_early() -> None:
    reader = PacketReader(max_packet_size=50)
    reader.feed(encode_packet(Connect("c"), protocol_level=4))
    assert isinstance(reader.next_packet(), Connect)
    reader.feed(b"\x30\xff\x7f")  # announces 16383 bytes
    with pytest.raises(DecodeError) as info:
        reader.next_packet()
    assert info.value.reason_code == R.PACKET_TOO_LARGE


def test_reader_as_client() -> None:
    reader = PacketReader(role="client", protocol_level=4)
    reader.feed(b"\x20\x02\x00\x00\xd0\x00")
    assert list(reader) == [Connack(), PingResp()]
    reader.feed(b"\xc0\x00")
    with pytest.raises(DecodeError):
        list(reader)


def test_reader_unsupported_version() -> None:
    reader = PacketReader()
    reader.feed(packet(0x10, connect_body(level=7, rest=s("c"))))
    with pytest.raises(UnsupportedProtocolVersion) as info:
        reader.next_packet()
    assert info.value.protocol_level == 7


def test_reader_large_packet_in_small_pieces() -> None:
    big = encode_packet(Publish("a", b"y" * 100_000, 1, packet_id=3), protocol_level=4)
    reader = PacketReader(protocol_level=4)
    for i in range(0, len(big), 1000):
        reader.feed(big[i : i + 1000])
        if i + 1000 < len(big):
            assert reader.next_packet() is None
    assert reader.next_packet() == Publish("a", b"y" * 100_000, 1, packet_id=3)


# --- PublishTemplate ----------------------------------------------------------------------------------


@pytest.mark.parametrize("level", [3, 4, 5])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_template_matches_encode_packet(level: int, qos: int) -> None:
    message_props = ALL_PROPS._replace(message_expiry_interval=None)
    template = PublishTemplate.create("a/b", b"payload" * 30, ALL_PROPS)  # the expiry is per hop: left out
    packet_id = 77 if qos else None
    for dup, retain in [(False, False), (qos > 0, True)]:
        data = template.encode(protocol_level=level, qos=qos, packet_id=packet_id, dup=dup, retain=retain)
        expected = Publish("a/b", b"payload" * 30, qos, retain, dup, packet_id, message_props)
        if level != 5:
            expected = Publish("a/b", b"payload" * 30, qos, retain, dup, packet_id)
        assert decode_packet(data, protocol_level=level)[0] == expected
        assert data == encode_packet(expected, protocol_level=level)


def test_template_per_hop_properties() -> None:
    template = PublishTemplate.create(
        "a/b", b"p", Properties(content_type="c", message_expiry_interval=99, topic_alias=4)
    )
    data = template.encode(
        protocol_level=5,
        qos=1,
        packet_id=2,
        message_expiry_interval=10,
        topic_alias=3,
        subscription_identifiers=(5, 1000),
    )
    expected = Properties(
        content_type="c", message_expiry_interval=10, topic_alias=3, subscription_identifiers=(5, 1000)
    )
    assert decode_packet(data, protocol_level=5)[0] == Publish(
        "a/b", b"p", 1, packet_id=2, properties=expected
    )
    aliased = template.encode(protocol_level=5, topic_alias=3, alias_only=True)
    assert decode_packet(aliased, protocol_level=5)[0] == Publish(
        "", b"p", properties=Properties(content_type="c", topic_alias=3)
    )
    with pytest.raises(EncodeError):
        template.encode(protocol_level=5, alias_only=True)
    with pytest.raises(EncodeError):
        template.encode(protocol_level=5, qos=1)
    with pytest.raises(EncodeError):
        PublishTemplate.create("", b"")


# --- hypothesis: generated packets round-trip ---------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
TOPIC = st.text(st.characters(codec="utf-8", exclude_characters="\x00+#"), min_size=1, max_size=12)
BINARY = st.binary(max_size=16)
U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFF_FFFF)
PACKET_ID = st.integers(1, 0xFFFF)
QOS = st.integers(0, 2)

_VALUES: dict[str, st.SearchStrategy[object]] = {
    "payload_format_indicator": st.integers(0, 1),
    "message_expiry_interval": U32,
    "content_type": TEXT,
    "response_topic": TOPIC,
    "correlation_data": BINARY,
    "subscription_identifiers": st.lists(st.integers(1, 268_435_455), min_size=1, max_size=3).map(tuple),
    "session_expiry_interval": U32,
    "assigned_client_identifier": TEXT,
    "server_keep_alive": U16,
    "authentication_method": TEXT,
    "authentication_data": BINARY,
    "request_problem_information": st.booleans(),
    "will_delay_interval": U32,
    "request_response_information": st.booleans(),
    "response_information": TEXT,
    "server_reference": TEXT,
    "reason_string": TEXT,
    "receive_maximum": st.integers(1, 0xFFFF),
    "topic_alias_maximum": U16,
    "topic_alias": st.integers(1, 0xFFFF),
    "maximum_qos": st.integers(0, 1),
    "retain_available": st.booleans(),
    "user_properties": st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=3).map(tuple),
    "maximum_packet_size": st.integers(1, 0xFFFF_FFFF),
    "wildcard_subscription_available": st.booleans(),
    "subscription_identifier_available": st.booleans(),
    "shared_subscription_available": st.booleans(),
}
_FIELD = {
    pid: (
        "subscription_identifiers"
        if pid == PropertyId.SUBSCRIPTION_IDENTIFIER
        else "user_properties"
        if pid == PropertyId.USER_PROPERTY
        else pid.name.lower()
    )
    for pid in PropertyId
}
_ALLOWED = {
    PacketType.CONNECT: {0x11, 0x15, 0x16, 0x17, 0x19, 0x21, 0x22, 0x26, 0x27},
    "will": {0x01, 0x02, 0x03, 0x08, 0x09, 0x18, 0x26},
    PacketType.CONNACK: {
        0x11,
        0x12,
        0x13,
        0x15,
        0x16,
        0x1A,
        0x1C,
        0x1F,
        0x21,
        0x22,
        0x24,
        0x25,
        0x26,
        0x27,
        0x28,
        0x29,
        0x2A,
    },
    PacketType.PUBLISH: {0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x23, 0x26},
    "ack": {0x1F, 0x26},
    PacketType.SUBSCRIBE: {0x0B, 0x26},
    PacketType.UNSUBSCRIBE: {0x26},
    PacketType.DISCONNECT: {0x11, 0x1C, 0x1F, 0x26},
    PacketType.AUTH: {0x15, 0x16, 0x1F, 0x26},
}


@st.composite
def properties(draw: st.DrawFn, kind: object) -> Properties:
    names = [_FIELD[PropertyId(pid)] for pid in sorted(_ALLOWED[kind])]
    chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=4))
    values = {name: draw(_VALUES[name]) for name in chosen}
    if kind == PacketType.SUBSCRIBE and "subscription_identifiers" in values:
        values["subscription_identifiers"] = values["subscription_identifiers"][:1]
    if "authentication_data" in values and "authentication_method" not in values:
        values["authentication_method"] = "m"
    return Properties(**values) if values else NO_PROPERTIES  # type: ignore[arg-type]


def reasons(kind: PacketType) -> st.SearchStrategy[ReasonCode]:
    from edgetwin.mqtt.codec._decode import VALID_REASON_CODES

    return st.sampled_from(sorted(ReasonCode(code) for code in VALID_REASON_CODES[kind]))


@st.composite
def packets(draw: st.DrawFn, level: int) -> Packet:
    v5 = level == 5

    def props(kind: object) -> Properties:
        return draw(properties(kind)) if v5 else NO_PROPERTIES

    kind = draw(st.sampled_from([t for t in PacketType if v5 or t != PacketType.AUTH]))
    if kind == PacketType.CONNECT:
        will = None
        if draw(st.booleans()):
            will = Will(draw(TOPIC), draw(BINARY), draw(QOS), draw(st.booleans()), props("will"))
        username = draw(st.none() | TEXT)
        password = draw(st.none() | BINARY) if (v5 or username is not None) else None
        return Connect(
            draw(TEXT), level, draw(st.booleans()), draw(U16), username, password, will, props(kind)
        )
    if kind == PacketType.CONNACK:
        if v5:
            code = draw(reasons(kind))
            return Connack(draw(st.booleans()) and not code, code, props(kind))
        from edgetwin.mqtt.codec._decode import CONNACK_RETURN_CODES

        code = draw(st.sampled_from(CONNACK_RETURN_CODES))
        return Connack(draw(st.booleans()) and code == 0 and level == 4, code)
    if kind == PacketType.PUBLISH:
        qos = draw(QOS)
        publish_props = props(kind)
        topic = draw(TOPIC)
        if publish_props.topic_alias is not None and draw(st.booleans()):
            topic = ""
        return Publish(
            topic,
            draw(st.binary(max_size=300)),
            qos,
            draw(st.booleans()),
            qos > 0 and draw(st.booleans()),
            draw(PACKET_ID) if qos else None,
            publish_props,
        )
    if kind in (PacketType.PUBACK, PacketType.PUBREC, PacketType.PUBREL, PacketType.PUBCOMP):
        acks: dict[int, type[PubAck | PubRec | PubRel | PubComp]] = {
            4: PubAck,
            5: PubRec,
            6: PubRel,
            7: PubComp,
        }
        cls = acks[kind]
        if not v5:
            return cls(draw(PACKET_ID))
        return cls(draw(PACKET_ID), draw(reasons(kind)), props("ack"))
    if kind == PacketType.SUBSCRIBE:
        subs = draw(
            st.lists(
                st.builds(
                    Subscription,
                    TEXT,
                    QOS,
                    st.booleans() if v5 else st.just(False),
                    st.booleans() if v5 else st.just(False),
                    st.sampled_from(RetainHandling) if v5 else st.just(RetainHandling.SEND_ON_SUBSCRIBE),
                ),
                min_size=1,
                max_size=4,
            )
        )
        return Subscribe(draw(PACKET_ID), tuple(subs), props(kind))
    if kind == PacketType.SUBACK:
        codes = (
            reasons(kind)
            if v5
            else st.sampled_from([R.GRANTED_QOS_0, R.GRANTED_QOS_1, R.GRANTED_QOS_2, R.UNSPECIFIED_ERROR])
        )
        return SubAck(draw(PACKET_ID), tuple(draw(st.lists(codes, min_size=1, max_size=4))), props("ack"))
    if kind == PacketType.UNSUBSCRIBE:
        return Unsubscribe(draw(PACKET_ID), tuple(draw(st.lists(TEXT, min_size=1, max_size=4))), props(kind))
    if kind == PacketType.UNSUBACK:
        if not v5:
            return UnsubAck(draw(PACKET_ID))
        unsub_codes = tuple(draw(st.lists(reasons(kind), min_size=1, max_size=4)))
        return UnsubAck(draw(PACKET_ID), unsub_codes, props("ack"))
    if kind == PacketType.PINGREQ:
        return PingReq()
    if kind == PacketType.PINGRESP:
        return PingResp()
    if kind == PacketType.DISCONNECT:
        return Disconnect(draw(reasons(kind)), props(kind)) if v5 else Disconnect()
    return Auth(draw(reasons(PacketType.AUTH)), props(PacketType.AUTH))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), level=st.sampled_from([3, 4, 5]))
def test_generated_packets_round_trip(data: st.DataObject, level: int) -> None:
    assert_round_trip(data.draw(packets(level)), level)


@settings(max_examples=150, deadline=None)
@given(stream=st.lists(packets(5), min_size=1, max_size=6), cuts=st.lists(st.integers(0, 4000), max_size=6))
def test_generated_streams_through_the_reader(stream: list[Packet], cuts: list[int]) -> None:
    data = b"".join(encode_packet(p, protocol_level=5) for p in stream)
    reader = PacketReader(role=None, protocol_level=5)
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    out: list[Packet] = []
    for start, stop in itertools.pairwise(bounds):
        reader.feed(data[start:stop])
        out += list(reader)
    assert out == stream


# --- hypothesis: arbitrary bytes only ever raise Incomplete or DecodeError ----------------------------


def _decode_all(data: bytes, level: int, role: codec.Role | None) -> None:
    pos = 0
    while pos < len(data):
        try:
            pkt, used = decode_packet(data[pos:], protocol_level=level, role=role)
        except (Incomplete, DecodeError):
            return
        assert used > 0
        # Whatever decodes must encode again (and decode to the same packet).
        level_of = pkt.protocol_level if isinstance(pkt, Connect) else level
        assert decode_packet(encode_packet(pkt, protocol_level=level_of), protocol_level=level_of)[0] == pkt
        pos += used


@settings(max_examples=400, deadline=None)
@given(
    data=st.binary(max_size=64),
    first=st.integers(0, 255),
    level=st.sampled_from([4, 5]),
    role=st.sampled_from([None, "server", "client"]),
)
def test_random_bytes_never_raise_anything_else(
    data: bytes, first: int, level: int, role: str | None
) -> None:
    _decode_all(bytes([first]) + data, level, role)  # type: ignore[arg-type]
    _decode_all(bytes([first, len(data)]) + data, level, role)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(data=st.data(), level=st.sampled_from([4, 5]))
def test_mutated_packets_never_raise_anything_else(data: st.DataObject, level: int) -> None:
    encoded = bytearray(encode_packet(data.draw(packets(level)), protocol_level=level))
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.integers(0, len(encoded) - 1))
        encoded[where] = data.draw(st.integers(0, 255))
    _decode_all(bytes(encoded), level, None)
    reader = PacketReader(role=None, protocol_level=level)
    reader.feed(encoded)
    with contextlib.suppress(DecodeError):
        list(reader)
