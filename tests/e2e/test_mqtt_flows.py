"""The broker's QoS flows, flow control, expiry and limits, seen on the wire by raw-socket clients (with
paho-mqtt clients on the other side), against the real appliance in-process.
"""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

import jwt
import pytest
import trio
from paho.mqtt.packettypes import PacketTypes

from tests.e2e.mqtt_helpers import (
    DISCONNECT,
    SESSION_EXPIRY,
    USERS,
    V5,
    V311,
    Raw,
    ack_packet,
    connack_properties,
    connect_packet,
    parse_publish,
    prop_u16,
    prop_u32,
    prop_user,
    props,
    publish_packet,
    running_edgetwin,
    v5_properties,
)

pytestmark = pytest.mark.e2e

VERSIONS = [pytest.param(V311, id="3.1.1"), pytest.param(V5, id="5.0")]
RECEIVE_MAXIMUM = 0x21
TOPIC_ALIAS_MAXIMUM = 0x22
MAXIMUM_PACKET_SIZE = 0x27


def persistent(version: int, expiry: int = 60) -> dict[str, object]:
    """CONNECT arguments for a session that outlives the connection."""
    if version == V5:
        return {"version": V5, "clean": False, "properties": props(prop_u32(SESSION_EXPIRY, expiry))}
    return {"version": V311, "clean": False}


# ----------------------------------------------------------------------------------------- QoS flows


@pytest.mark.parametrize("version", VERSIONS)
async def test_unacknowledged_qos1_is_resent_with_dup_after_reconnect(tmp_path: Path, version: int) -> None:
    async with running_edgetwin(tmp_path) as b:
        pub = await b.client(version=V5)
        async with await b.raw() as raw:
            await raw.connect("dupper", **persistent(version))
            await raw.subscribe("dup/#", 1, version=version)
            for i in range(3):
                await pub.publish("dup/a", b"%d" % i, 1)
            first = [parse_publish(await raw.packet(), version) for _ in range(3)]
            assert [(m.payload, m.qos, m.dup) for m in first] == [(b"%d" % i, 1, False) for i in range(3)]
        await pub.publish("dup/a", b"3", 1)  # queued while offline
        async with await b.raw() as raw:  # reconnect without having sent PUBACK
            connack = await raw.connect("dupper", **persistent(version))
            assert connack[0] == 1  # session present
            again = [parse_publish(await raw.packet(), version) for _ in range(4)]
            # The unacknowledged ones again, in order, with DUP and their packet ids (MQTT-4.4.0-1), then the rest.
            assert [(m.payload, m.dup, m.packet_id) for m in again[:3]] == [
                (m.payload, True, m.packet_id) for m in first
            ]
            assert (again[3].payload, again[3].dup) == (b"3", False)
            for m in again:
                await raw.send(ack_packet(0x40, m.packet_id or 0))
            await pub.publish("dup/b", b"4", 1)
            fresh = parse_publish(await raw.packet(), version)
            assert (fresh.payload, fresh.dup) == (b"4", False)
            await raw.nothing()
            await raw.send(DISCONNECT)


@pytest.mark.parametrize("version", VERSIONS)
async def test_qos2_flow_resumes_with_pubrel_after_reconnect(tmp_path: Path, version: int) -> None:
    async with running_edgetwin(tmp_path) as b:
        pub = await b.client(version=V5)
        async with await b.raw() as raw:
            await raw.connect("q2", **persistent(version))
            await raw.subscribe("q2/#", 2, version=version)
            await pub.publish("q2/a", b"exactly once", 2)
            message = parse_publish(await raw.packet(), version)
            assert message.qos == 2
            packet_id = message.packet_id or 0
            await raw.send(ack_packet(0x50, packet_id))  # PUBREC
            received = await raw.packet()
            assert received is not None
            assert (received[0], received[1][:2]) == (0x62, packet_id.to_bytes(2, "big"))  # PUBREL
        async with await b.raw() as raw:  # back before PUBCOMP: the broker resends PUBREL, not the PUBLISH
            await raw.connect("q2", **persistent(version))
            received = await raw.packet()
            assert received is not None
            assert (received[0], received[1][:2]) == (0x62, packet_id.to_bytes(2, "big"))
            await raw.send(ack_packet(0x70, packet_id))  # PUBCOMP
            await raw.nothing()
            await raw.send(DISCONNECT)


@pytest.mark.parametrize("version", VERSIONS)
async def test_inbound_qos2_duplicate_is_delivered_once(tmp_path: Path, version: int) -> None:
    async with running_edgetwin(tmp_path) as b:
        sub = await b.client("in2/#", version=V5)
        async with await b.raw() as raw:
            await raw.connect("pub2", version=version)
            data = publish_packet("in2/x", b"once", qos=2, packet_id=5, version=version)
            await raw.send(data)
            received = await raw.packet()
            assert received is not None
            assert (received[0], received[1][:2]) == (0x50, b"\x00\x05")  # PUBREC
            await raw.send(bytes([data[0] | 0x08]) + data[1:])  # the same PUBLISH again, DUP=1
            received = await raw.packet()
            assert received is not None
            assert (received[0], received[1][:2]) == (0x50, b"\x00\x05")
            await raw.send(ack_packet(0x62, 5))  # PUBREL
            received = await raw.packet()
            assert received is not None
            assert (received[0], received[1][:2]) == (0x70, b"\x00\x05")
            assert (await sub.receive()).payload == b"once"
            await sub.nothing()
            await raw.send(ack_packet(0x62, 9))  # PUBREL for an unknown id still gets PUBCOMP (5.0: 0x92)
            received = await raw.packet()
            assert received is not None
            assert (received[0], received[1][:2]) == (0x70, b"\x00\x09")
            if version == V5 and len(received[1]) > 2:
                assert received[1][2] == 0x92
            await raw.send(DISCONNECT)


async def test_unacknowledged_message_survives_a_restart(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path) as b:
        pub = await b.client(version=V311)
        async with await b.raw() as raw:
            await raw.connect("inflight", **persistent(V311))
            await raw.subscribe("inflight/#", 1)
            await pub.publish("inflight/a", b"promised", 1)
            assert parse_publish(await raw.packet()).payload == b"promised"  # and never acknowledged
    async with running_edgetwin(tmp_path) as b, await b.raw() as raw:
        connack = await raw.connect("inflight", **persistent(V311))
        assert connack[0] == 1
        again = parse_publish(await raw.packet())
        assert (again.topic, again.payload, again.qos) == ("inflight/a", b"promised", 1)
        await raw.send(ack_packet(0x40, again.packet_id or 0))
        await raw.send(DISCONNECT)


# ----------------------------------------------------------------------------------- v5 flow control


async def test_v5_receive_maximum_of_the_client_is_honoured(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path) as b, await b.raw() as raw:
        await raw.connect("slow", version=V5, properties=props(prop_u16(RECEIVE_MAXIMUM, 2)))
        await raw.subscribe("rm/#", 1, version=V5)
        pub = await b.client(version=V5)
        for i in range(5):
            await pub.publish("rm/x", b"%d" % i, 1)
        got = [parse_publish(await raw.packet(), V5) for _ in range(2)]
        await raw.nothing()  # two unacknowledged: the window is full
        for i in range(5):
            message = got[i]
            assert message.payload == b"%d" % i
            await raw.send(ack_packet(0x40, message.packet_id or 0))
            if i + 2 < 5:
                got.append(parse_publish(await raw.packet(), V5))
        await raw.nothing()
        await raw.send(DISCONNECT)


async def test_v5_maximum_packet_size_of_the_client_is_honoured(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path) as b, await b.raw() as raw:
        await raw.connect("small", version=V5, properties=props(prop_u32(MAXIMUM_PACKET_SIZE, 200)))
        await raw.subscribe("mps/#", 1, version=V5)
        pub = await b.client(version=V5)
        await pub.publish("mps/big", b"x" * 1000, 1)  # would exceed what the client accepts: not sent to it
        await pub.publish("mps/small", b"y" * 10, 1)
        message = parse_publish(await raw.packet(), V5)
        assert (message.topic, message.payload) == ("mps/small", b"y" * 10)
        await raw.send(ack_packet(0x40, message.packet_id or 0))
        await raw.nothing()
        await raw.send(DISCONNECT)


async def test_v5_topic_aliases_toward_the_client(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path) as b, await b.raw() as raw:
        await raw.connect("aliased", version=V5, properties=props(prop_u16(TOPIC_ALIAS_MAXIMUM, 2)))
        await raw.subscribe("ta/#", 0, version=V5)
        pub = await b.client(version=V5)
        sent = ["ta/a", "ta/a", "ta/b", "ta/c", "ta/b", "ta/c"]
        for i, topic in enumerate(sent):
            await pub.publish(topic, b"%d" % i, 0)
        aliases: dict[int, str] = {}
        for i, topic in enumerate(sent):
            message = parse_publish(await raw.packet(), V5)
            assert message.payload == b"%d" % i
            alias = message.properties.get(0x23, [None])[0]
            if alias is None:
                assert message.topic == topic
                continue
            assert 1 <= alias <= 2
            if message.topic:
                aliases[alias] = message.topic
            assert aliases.get(alias) == topic, (i, message)
        await raw.send(DISCONNECT)


# --------------------------------------------------------------------------------------------- expiry


async def test_v5_message_and_session_expiry(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path) as b:
        pub = await b.client(version=V5)
        # "offline": keeps its session for 60 s and gets messages that have not expired.
        offline = b.paho(version=V5, client_id="offline", clean=False, session_expiry=60)
        await offline.connect()
        await offline.subscribe(("exp/#", 1))
        await offline.disconnect()
        # "short": its session expires 1 s after the connection ends.
        short = b.paho(version=V5, client_id="short", clean=False, session_expiry=1)
        await short.connect()
        await short.subscribe(("exp/#", 1))
        await short.disconnect()
        # "now": sets its session expiry to 0 in DISCONNECT: the session ends at once.
        now = b.paho(version=V5, client_id="now", clean=False, session_expiry=60)
        await now.connect()
        await now.subscribe(("exp/#", 1))
        await now.disconnect(properties=v5_properties(PacketTypes.DISCONNECT, SessionExpiryInterval=0))

        expiring = v5_properties(PacketTypes.PUBLISH, MessageExpiryInterval=1)
        await pub.publish("rexp/soon", b"expires", 1, retain=True, properties=expiring)
        await pub.publish("rexp/kept", b"kept", 1, retain=True)
        await pub.publish("exp/soon", b"expires", 1, properties=expiring)
        await pub.publish(
            "exp/later", b"stays", 1, properties=v5_properties(PacketTypes.PUBLISH, MessageExpiryInterval=60)
        )
        await pub.publish("exp/never", b"forever", 1)
        await trio.sleep(1.3)

        offline = b.paho(version=V5, client_id="offline", clean=False, session_expiry=60)
        assert (await offline.connect()).session_present is True
        messages = await offline.receive_many(2)
        assert [m.payload for m in messages] == [b"stays", b"forever"]
        remaining = getattr(messages[0].properties, "MessageExpiryInterval", None)
        assert isinstance(remaining, int)
        assert remaining <= 59  # the time it waited is taken off
        await offline.nothing()
        for name in ("short", "now"):
            client = b.paho(version=V5, client_id=name, clean=False, session_expiry=60)
            assert (await client.connect()).session_present is False, name
            await client.nothing(0)
        # An expired retained message is gone too.
        late = await b.client("rexp/#", version=V5)
        assert (await late.receive()).payload == b"kept"
        await late.nothing()


# --------------------------------------------------------------------------------------------- limits


async def test_max_connections(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path, mqtt={"max_connections": 2}) as b:
        raws = [await b.raw() for _ in range(4)]
        try:
            await raws[0].connect("one")
            await raws[1].connect("two", version=V5)
            await raws[2].send(connect_packet("three", version=V311))
            assert await raws[2].until_closed() == [(0x20, b"\x00\x03")]  # server unavailable
            await raws[3].send(connect_packet("four", version=V5))
            packets = await raws[3].until_closed()
            assert [(p[0], p[1][:2]) for p in packets] == [(0x20, b"\x00\x97")]  # quota exceeded
            await raws[0].send(DISCONNECT)
            assert await raws[0].until_closed() == []
            async with await b.raw() as again:  # room again
                await again.connect("five")
                await again.send(DISCONNECT)
            await raws[1].send(DISCONNECT)
        finally:
            for raw in raws:
                await raw.stream.aclose()


async def test_offline_queue_is_bounded_and_the_overflow_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edgetwin")
    async with running_edgetwin(tmp_path, mqtt={"max_queued": 5}) as b:
        keeper = b.paho(version=V311, client_id="bounded", clean=False)
        await keeper.connect()
        await keeper.subscribe(("bound/#", 1))
        await keeper.disconnect()
        pub = await b.client(version=V311)
        for i in range(12):
            assert await pub.publish("bound/x", b"%d" % i, 1) == 0
        keeper = b.paho(version=V311, client_id="bounded", clean=False)
        await keeper.connect()
        got = [int(m.payload) for m in await keeper.receive_many(5)]
        assert got == sorted(got)
        await keeper.nothing()
    assert any("bounded" in r.getMessage() and r.levelno >= logging.WARNING for r in caplog.records)


async def test_a_slow_subscriber_does_not_stall_publishers(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path) as b, await b.raw() as stuck:
        await stuck.connect("stuck")
        await stuck.subscribe("flood/#", 0)  # and never reads again: its socket buffers fill up
        fast = await b.client(("flood/#", 1), version=V5)
        pub = await b.client(version=V5)
        payload = b"z" * 900_000
        start = trio.current_time()
        for _ in range(80):  # 72 MB, beyond the stuck client's socket buffers (up to 32 MB + 4 MB here)
            await pub.publish("flood/x", payload, 1)
        assert len(await fast.receive_many(80)) == 80
        assert trio.current_time() - start < 10


# ------------------------------------------------------------------------------------------------ JWT


JWT_SECRET = "a-test-secret-of-at-least-32-bytes!"
ISSUER = "https://issuer.example"


def _token(claims: list[dict[str, object]], *, lifetime_s: float = 300) -> str:
    now = datetime.datetime.now(datetime.UTC).timestamp()
    return jwt.encode(
        {"iss": ISSUER, "sub": "device-1", "iat": int(now), "exp": int(now + lifetime_s), "claims": claims},
        JWT_SECRET,
        algorithm="HS256",
    )


def _claim(action: str, topic: str) -> dict[str, object]:
    return {
        "action": action,
        "resource": {"type": "topic", "prefix": "/tt", "stream": "weather", "topic": topic},
    }


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_jwt_as_the_password(tmp_path: Path, version: int) -> None:
    auth = {**USERS, "jwt": [{"prefix": "hs", "issuer": ISSUER, "secret": JWT_SECRET, "leeway_s": 0}]}
    token = _token([_claim("publish", "station/#"), _claim("subscribe", "station/+/temp")])
    async with running_edgetwin(tmp_path, auth=auth) as b:
        device = await b.client(version=version, username="device-1", password=token)
        codes = await device.subscribe(("/tt/weather/station/+/temp", 1), ("/tt/weather/#", 1))
        assert codes == [1, 0x87 if version == V5 else 0x80]
        assert await device.publish("/tt/weather/station/7/temp", b"21.5", 1) == 0
        assert (await device.receive()).payload == b"21.5"
        assert await device.publish("/tt/other/x", b"no", 1) == (0x87 if version == V5 else 0)
        await device.nothing()
        expired = b.paho(version=version, username="device-1", password=_token([], lifetime_s=-60))
        assert (await expired.connect(expect_success=False)).reason_code == 0x86


async def test_raw_helpers_decode_properties() -> None:
    raw = Raw.__new__(Raw)
    raw.buffer = bytearray(
        publish_packet("t", b"p", version=V5, properties=props(prop_u16(0x23, 2), prop_user("", "")))
    )
    raw.eof = False
    message = parse_publish(await raw.packet(), V5)
    assert (message.topic, message.payload, message.properties) == ("t", b"p", {0x23: [2], 0x26: [("", "")]})
    assert connack_properties(b"\x00\x00\x03\x21\x00\x05") == {0x21: [5]}
