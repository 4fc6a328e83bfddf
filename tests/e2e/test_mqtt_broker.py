"""The embedded MQTT broker as users try it (issue 7, "Done when"): the real appliance in-process on port 0,
paho-mqtt 2.2 clients (MQTT 3.1.1 and 5.0) driven from threads, raw sockets where exact bytes matter.

Each test starts its own edgetwin (milliseconds) with a store under ``tmp_path``, bounds every wait, and
stops it. mosquitto_pub/mosquitto_sub are in ``test_mqtt_cli_clients.py``, QoS flows on the wire, flow control,
expiry, limits and JWTs in ``test_mqtt_flows.py``, malformed packets and fuzzing in ``test_mqtt_fuzz.py``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import trio
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from tests.e2e.mqtt_helpers import (
    DISCONNECT,
    PINGREQ,
    QUIET_S,
    SESSION_EXPIRY,
    TOPIC_ALIAS,
    V5,
    V311,
    Paho,
    ack_packet,
    connect_packet,
    mqtt_str,
    packet,
    parse_publish,
    payloads,
    prop_u16,
    prop_u32,
    props,
    publish_packet,
    read_properties,
    running_edgetwin,
    self_signed_certificate,
    subscribe_packet,
    v5_properties,
)

pytestmark = pytest.mark.e2e

VERSIONS = [pytest.param(V311, id="3.1.1"), pytest.param(V5, id="5.0")]
NOT_AUTHORIZED = {V311: 0x80, V5: 0x87}  # SUBACK code for a forbidden filter
REASON_STRING = 0x1F


async def drain(client: Paho, quiet: float = QUIET_S) -> list[bytes]:
    """Payloads received until nothing more arrives for ``quiet`` seconds."""
    out = []
    while True:
        try:
            out.append(bytes((await client.receive(within=quiet)).payload))
        except AssertionError:
            return out


def prop(message: object, name: str) -> object:
    """A v5 property of a received message (``None`` when absent)."""
    return getattr(getattr(message, "properties", None), name, None)


# ------------------------------------------------------------------------- connect, subscribe, publish


@pytest.mark.parametrize(
    ("sub_version", "pub_version"),
    [(V311, V311), (V5, V5), (V311, V5), (V5, V311)],
    ids=["3.1.1-3.1.1", "5.0-5.0", "3.1.1-sub-5.0-pub", "5.0-sub-3.1.1-pub"],
)
async def test_publish_and_subscribe_at_every_qos(tmp_path: Path, sub_version: int, pub_version: int) -> None:
    async with running_edgetwin(tmp_path) as b:
        sub = await b.client(("qos/#", 2), ("down/#", 1), ("zero/#", 0), version=sub_version)
        pub = await b.client(version=pub_version)
        for qos in (0, 1, 2):
            assert await pub.publish(f"qos/{qos}", b"m%d" % qos, qos) == 0
            m = await sub.receive()
            assert (m.topic, m.payload, m.qos, m.retain, m.dup) == (
                f"qos/{qos}",
                b"m%d" % qos,
                qos,
                False,
                False,
            )
        # Delivered QoS = min(published, granted) (MQTT-3.8.4-6), never upgraded.
        for granted, prefix in ((1, "down"), (0, "zero")):
            for qos in (0, 1, 2):
                await pub.publish(f"{prefix}/{qos}", b"x", qos)
                m = await sub.receive()
                assert (m.topic, m.qos) == (f"{prefix}/{qos}", min(qos, granted))
        # Order per topic (MQTT-4.6.0), also past paho's and the broker's inflight windows.
        for qos in (1, 2):
            infos = [pub.client.publish("qos/order", b"%d" % i, qos) for i in range(40)]
            with trio.fail_after(10):
                for info in infos:
                    await trio.to_thread.run_sync(info.wait_for_publish, 5)
            assert payloads(await sub.receive_many(40)) == [b"%d" % i for i in range(40)]
        # Unsubscribed: nothing more on that filter; the others stay.
        codes = await sub.unsubscribe("qos/#")
        if sub_version == V5:
            assert codes == [0]
        await pub.publish("qos/after", b"gone", 1)
        await pub.publish("down/after", b"here", 1)
        m = await sub.receive()
        assert (m.topic, m.payload) == ("down/after", b"here")
        await sub.nothing()


@pytest.mark.parametrize("version", VERSIONS)
async def test_overlapping_subscriptions_deliver_once_at_the_highest_qos(
    tmp_path: Path, version: int
) -> None:
    async with running_edgetwin(tmp_path) as b:
        sub = await b.client(("ov/#", 1), ("ov/+", 2), ("ov/a", 0), version=version)
        pub = await b.client(version=version)
        await pub.publish("ov/a", b"once", 2)
        m = await sub.receive()
        assert (m.payload, m.qos) == (b"once", 2)  # MQTT-3.3.5-1
        await sub.nothing()


async def test_wildcards(tmp_path: Path) -> None:
    topics = [
        "sport",
        "sport/tennis",
        "sport/tennis/player1",
        "sport/tennis/",
        "sport/tennis/a/b",
        "sports",
        "/finance",
        "Sport/tennis",
        "$internal/x",
    ]
    expected = {
        "sport/tennis/+": {"sport/tennis/player1", "sport/tennis/"},
        "sport/#": {"sport", "sport/tennis", "sport/tennis/player1", "sport/tennis/", "sport/tennis/a/b"},
        "+/+": {"sport/tennis", "/finance", "Sport/tennis"},
        "+": {"sport", "sports"},
        "#": set(topics) - {"$internal/x"},  # a leading wildcard never matches a $ topic (MQTT-4.7.2-1)
        "+/x": set(),
        "$internal/+": {"$internal/x"},
        "/+": {"/finance"},
    }
    async with running_edgetwin(tmp_path) as b:
        subscribers = {
            topic_filter: await b.client((topic_filter, 1), ("end", 1), version=V5 if i % 2 else V311)
            for i, topic_filter in enumerate(expected)
        }
        pub = await b.client(version=V5)
        for topic in topics:
            await pub.publish(topic, topic.encode(), 1)
        await pub.publish("end", b"end", 1)
        for topic_filter, client in subscribers.items():
            got = set()
            while (m := await client.receive()).topic != "end":
                got.add(m.topic)
            assert got == expected[topic_filter], topic_filter


@pytest.mark.parametrize("version", VERSIONS)
async def test_invalid_filters_are_refused_per_filter(tmp_path: Path, version: int) -> None:
    # Raw: paho refuses to send invalid filters.
    async with running_edgetwin(tmp_path) as b, await b.raw() as raw:
        await raw.connect("filters", version=version)
        filters = [("a/b#", 1), ("ok/+", 1), ("a/#/b", 0), ("+a", 2), ("$share/g", 1)]
        await raw.send(subscribe_packet(1, filters, version=version))
        first, body = await raw.packet() or (0, b"")
        invalid = 0x8F if version == V5 else 0x80
        codes = (
            body[read_properties(body, 2)[1] :] if version == V5 else body[2:]
        )  # v5: after the reason string
        assert (first, list(codes)) == (0x90, [invalid, 1, invalid, invalid, invalid])
        # The connection stays and the valid filter works.
        await raw.send(publish_packet("ok/x", b"still connected", qos=1, packet_id=2, version=version))
        got = [await raw.packet(), await raw.packet()]
        assert any(p is not None and p[0] == 0x40 for p in got)
        message = parse_publish(next(p for p in got if p is not None and p[0] >> 4 == 3), version)
        assert message.payload == b"still connected"
        await raw.send(ack_packet(0x40, message.packet_id or 0))
        if version == V5:  # UNSUBACK: 0x11 for a filter that had no subscription
            await raw.send(packet(0xA2, b"\x00\x03\x00" + mqtt_str("never/subscribed") + mqtt_str("ok/+")))
            assert await raw.packet() == (0xB0, b"\x00\x03\x00\x11\x00")
        await raw.send(DISCONNECT)


async def test_sys_topics_are_seen_by_sys_filters_only(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path, mqtt={"sys_interval_s": 0.1}) as b:
        everything = await b.client("#", version=V5)
        plus = await b.client("+/broker/#", "+/+/+", version=V311)
        sys = await b.client("$SYS/#", version=V5)
        seen = {(await sys.receive()).topic for _ in range(20)}
        assert "$SYS/broker/clients/connected" in seen
        assert all(topic.startswith("$SYS/broker/") for topic in seen)
        await everything.nothing(0.3)
        await plus.nothing(0)
        # A later subscriber gets the current values at once, with RETAIN 1.
        late = await b.client(("$SYS/broker/version", 0), version=V311)
        m = await late.receive()
        assert (m.topic, m.payload, m.retain) == ("$SYS/broker/version", b"edgetwin", True)
        connected = await b.client(("$SYS/broker/clients/connected", 0), version=V5)
        assert int((await connected.receive()).payload) >= 3
        # Clients may not publish to $SYS: 5.0 is told so, 3.1.1 is acknowledged and dropped.
        v5 = await b.client(version=V5)
        assert await v5.publish("$SYS/broker/version", b"fake", 1) == 0x87
        v311 = await b.client(version=V311)
        assert await v311.publish("$SYS/broker/version", b"fake", 1) == 0
        await trio.sleep(0.2)
        fresh = await b.client(("$SYS/broker/version", 0), version=V5)
        assert (await fresh.receive()).payload == b"edgetwin"


# ------------------------------------------------------------------------------------------- retained


@pytest.mark.parametrize("version", VERSIONS)
async def test_retained_messages(tmp_path: Path, version: int) -> None:
    async with running_edgetwin(tmp_path) as b:
        existing = await b.client("ret/#", version=version)
        pub = await b.client(version=version)
        await pub.publish("ret/a", b"v1", qos=1, retain=True)
        m = await existing.receive()
        assert (m.payload, m.retain) == (b"v1", False)  # existing subscription: RETAIN 0 (MQTT-3.3.1-9)

        new = await b.client("ret/#", version=version)
        m = await new.receive()
        assert (m.topic, m.payload, m.retain, m.qos) == ("ret/a", b"v1", True, 1)  # MQTT-3.3.1-8
        await new.nothing()
        qos0 = await b.client(("ret/+", 0), version=version)
        m = await qos0.receive()
        assert (m.payload, m.retain, m.qos) == (b"v1", True, 0)

        await pub.publish("ret/a", b"v2", qos=0, retain=True)  # replaces
        assert (await existing.receive()).payload == b"v2"
        m = await (await b.client("ret/a", version=version)).receive()
        assert (m.payload, m.retain, m.qos) == (b"v2", True, 0)

        # Re-subscribing to the same filter sends the retained messages again (MQTT-3.8.4-3).
        assert await existing.subscribe(("ret/#", 2)) == [2]
        m = await existing.receive()
        assert (m.payload, m.retain) == (b"v2", True)

        # An empty retained payload deletes (MQTT-3.3.1-10/-11) and still reaches current subscribers.
        await pub.publish("ret/a", b"", qos=1, retain=True)
        m = await existing.receive()
        assert (m.topic, m.payload, m.retain) == ("ret/a", b"", False)
        late = await b.client("ret/#", "#", version=version)
        await late.nothing()
        # A non-retained message does not replace the retained value.
        await pub.publish("ret/b", b"kept", qos=1, retain=True)
        await pub.publish("ret/b", b"passing", qos=1)
        m = await (await b.client("ret/b", version=version)).receive()
        assert (m.payload, m.retain) == (b"kept", True)


async def test_v5_retain_as_published_and_retain_handling(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path) as b:
        rap = await b.client(("rap/#", SubscribeOptions(qos=1, retainAsPublished=True)), version=V5)
        pub = await b.client(version=V5)
        await pub.publish("rap/x", b"r", qos=1, retain=True)
        assert (await rap.receive()).retain is True
        await pub.publish("rap/y", b"n", qos=1)
        assert (await rap.receive()).retain is False

        never = await b.client(version=V5)
        await never.subscribe(
            ("rap/#", SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND))
        )
        await never.nothing()

        if_new = await b.client(version=V5)
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        await if_new.subscribe(("rap/#", options))
        assert payloads([await if_new.receive()]) == [b"r"]
        await if_new.subscribe(("rap/#", options))  # exists already: no retained messages
        await if_new.nothing()


# ------------------------------------------------------------------------------------ v5 extras


def _all_properties() -> object:
    return v5_properties(
        PacketTypes.PUBLISH,
        UserProperty=[("a", "1"), ("b", "2"), ("a", "3")],
        ContentType="application/json",
        ResponseTopic="reply/here",
        CorrelationData=b"\x00\x01corr",
        PayloadFormatIndicator=1,
        MessageExpiryInterval=120,
    )


async def test_v5_properties_are_passed_through(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path) as b:
        sub = await b.client("props/#", version=V5)
        pub = await b.client(version=V5)
        for qos in (0, 1, 2):
            await pub.publish(f"props/{qos}", b'{"v":1}', qos=qos, properties=_all_properties())
            m = await sub.receive()
            assert m.payload == b'{"v":1}'
            assert prop(m, "UserProperty") == [("a", "1"), ("b", "2"), ("a", "3")]
            assert prop(m, "ContentType") == "application/json"
            assert prop(m, "ResponseTopic") == "reply/here"
            assert prop(m, "CorrelationData") == b"\x00\x01corr"
            assert prop(m, "PayloadFormatIndicator") == 1
            expiry = prop(m, "MessageExpiryInterval")
            assert isinstance(expiry, int)
            assert 0 < expiry <= 120
        # A 3.1.1 subscriber gets the same message without properties.
        old = await b.client("props/#", version=V311)
        await pub.publish("props/old", b"p", qos=1, properties=_all_properties())
        assert (await old.receive()).payload == b"p"
        assert (await sub.receive()).payload == b"p"


async def test_v5_retained_message_keeps_its_properties(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path) as b:
        pub = await b.client(version=V5)
        await pub.publish("rprops/x", b"v", qos=1, retain=True, properties=_all_properties())
        m = await (await b.client("rprops/#", version=V5)).receive()
        assert m.retain is True
        assert prop(m, "UserProperty") == [("a", "1"), ("b", "2"), ("a", "3")]
        assert prop(m, "ContentType") == "application/json"
        assert prop(m, "ResponseTopic") == "reply/here"
        assert prop(m, "PayloadFormatIndicator") == 1


async def test_v5_retained_message_keeps_its_correlation_data(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path) as b:
        pub = await b.client(version=V5)
        await pub.publish("rprops/x", b"v", qos=1, retain=True, properties=_all_properties())
        m = await (await b.client("rprops/#", version=V5)).receive()
        assert prop(m, "CorrelationData") == b"\x00\x01corr"


async def test_v5_no_local(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path) as b:
        me = await b.client(("chat/#", SubscribeOptions(qos=1, noLocal=True)), version=V5)
        other = await b.client("chat/#", version=V5)
        await me.publish("chat/1", b"mine", 1)
        assert (await other.receive()).payload == b"mine"
        await me.nothing()
        await other.publish("chat/2", b"theirs", 1)
        assert (await me.receive()).payload == b"theirs"


async def test_v5_subscription_identifiers(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path) as b:
        pub = await b.client(version=V5)
        await pub.publish("sid/retained", b"r", qos=1, retain=True)
        sub = await b.client(version=V5)
        await sub.subscribe(
            ("sid/+", 1), properties=v5_properties(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=7)
        )
        m = (
            await sub.receive()
        )  # the retained message carries the identifier of the subscription that sent it
        assert (m.payload, prop(m, "SubscriptionIdentifier")) == (b"r", [7])
        await sub.subscribe(
            ("sid/#", 1), properties=v5_properties(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=9)
        )
        assert (await sub.receive()).payload == b"r"
        await sub.subscribe(("other/#", 1))
        await pub.publish("sid/x", b"both", 1)
        m = await sub.receive()  # one delivery carrying every matching identifier
        assert m.payload == b"both"
        ids = prop(m, "SubscriptionIdentifier")
        assert isinstance(ids, list)
        assert sorted(ids) == [7, 9]
        await sub.nothing()
        await pub.publish("other/x", b"none", 1)
        m = await sub.receive()
        assert (m.payload, prop(m, "SubscriptionIdentifier")) == (b"none", None)


async def test_shared_subscriptions(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path) as b:
        members = [
            await b.client(("$share/g/work/#", 1), version=V5),
            await b.client(("$share/g/work/#", 1), version=V311),
            await b.client(("$share/g/work/#", 1), version=V5),
        ]
        other_group = await b.client(("$share/h/work/+", 1), version=V5)
        plain = await b.client(("work/#", 1), version=V5)
        pub = await b.client(version=V5)
        sent = [b"%d" % i for i in range(30)]
        for payload in sent:
            await pub.publish("work/item", payload, 1)
        assert payloads(await plain.receive_many(30)) == sent
        assert payloads(await other_group.receive_many(30)) == sent
        got = [payload for member in members for payload in await drain(member)]
        assert sorted(got) == sorted(sent)  # each message to exactly one member of group g


async def test_v5_topic_alias_from_the_client(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path) as b:
        sub = await b.client("alias/#", version=V5)
        pub = b.paho(version=V5)
        connack = await pub.connect()
        maximum = prop(connack, "TopicAliasMaximum")
        assert isinstance(maximum, int)
        assert maximum >= 2
        alias = v5_properties(PacketTypes.PUBLISH, TopicAlias=1)
        await pub.publish("alias/long/topic/name", b"1", 1, properties=alias)
        await pub.publish("", b"2", 1, properties=alias)
        await pub.publish("", b"3", 0, properties=alias)
        messages = await sub.receive_many(3)
        assert [(m.topic, m.payload) for m in messages] == [
            ("alias/long/topic/name", b"%d" % i) for i in (1, 2, 3)
        ]
        # A second alias, then the first one re-mapped.
        await pub.publish("alias/two", b"4", 1, properties=v5_properties(PacketTypes.PUBLISH, TopicAlias=2))
        await pub.publish("alias/one", b"5", 1, properties=alias)
        await pub.publish("", b"6", 1, properties=alias)
        await pub.publish("", b"7", 1, properties=v5_properties(PacketTypes.PUBLISH, TopicAlias=2))
        got = [(m.topic, m.payload) for m in await sub.receive_many(4)]
        assert got == [("alias/two", b"4"), ("alias/one", b"5"), ("alias/one", b"6"), ("alias/two", b"7")]


async def test_v5_topic_alias_beyond_the_maximum_is_a_protocol_error(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path) as b, await b.raw() as raw:
        await raw.send(connect_packet("alias", version=V5))
        first, body = await raw.packet() or (0, b"")
        assert (first, body[1]) == (0x20, 0)
        await raw.send(
            publish_packet("a/b", b"x", version=V5, properties=props(prop_u16(TOPIC_ALIAS, 0xFFFF)))
        )
        packets = await raw.until_closed()
        assert [(p[0], p[1][:1]) for p in packets] == [(0xE0, b"\x94")]  # Topic Alias invalid


# ------------------------------------------------------------------------------------------ restart


@pytest.mark.parametrize("version", VERSIONS)
async def test_retained_values_and_queued_messages_survive_a_restart(tmp_path: Path, version: int) -> None:
    # 3.1.1: clean session 0; 5.0: clean start 0 with a session expiry interval.
    keeper_args = {"version": version, "client_id": "keeper", "clean": False, "session_expiry": 3600}
    async with running_edgetwin(tmp_path) as b:
        keeper = b.paho(**keeper_args)
        assert (await keeper.connect()).session_present is False
        await keeper.subscribe(("persist/#", 1))
        await keeper.disconnect()
        if version == V5:
            ephemeral = b.paho(
                version=V5, client_id="ephemeral", clean=False
            )  # no expiry: ends with the connection
            await ephemeral.connect()
            await ephemeral.subscribe(("persist/#", 1))
            await ephemeral.disconnect()
        pub = await b.client(version=version)
        for i in range(5):
            assert await pub.publish("persist/q", b"q%d" % i, qos=1) == 0  # acknowledged = durably queued
        await pub.publish("persist/r", b"r", qos=2)
        await pub.publish("persist/retained", b"kept", qos=1, retain=True)
        await pub.publish("persist/zero", b"qos0 is not queued offline", qos=0)
    async with running_edgetwin(tmp_path) as b:
        keeper = b.paho(**keeper_args)
        assert (await keeper.connect()).session_present is True
        messages = await keeper.receive_many(7)
        assert [(m.topic, m.payload, m.qos, m.retain) for m in messages] == [
            *[("persist/q", b"q%d" % i, 1, False) for i in range(5)],
            ("persist/r", b"r", 1, False),
            ("persist/retained", b"kept", 1, False),
        ]
        await keeper.nothing()
        # The restored subscription is live.
        pub = await b.client(version=version)
        await pub.publish("persist/after", b"after", 1)
        assert (await keeper.receive()).payload == b"after"
        # The retained value survived too, and a new subscriber gets it with RETAIN 1.
        m = await (await b.client("persist/#", version=version)).receive()
        assert (m.topic, m.payload, m.retain) == ("persist/retained", b"kept", True)
        if version == V5:
            ephemeral = b.paho(version=V5, client_id="ephemeral", clean=False)
            assert (await ephemeral.connect()).session_present is False
            await ephemeral.nothing()
    # Delivered and acknowledged: nothing is delivered again after another restart.
    async with running_edgetwin(tmp_path) as b:
        keeper = b.paho(**keeper_args)
        assert (await keeper.connect()).session_present is True
        await keeper.nothing()


async def test_a_session_that_was_connected_at_shutdown_survives_a_restart(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path) as b:
        keeper = b.paho(version=V5, client_id="online", clean=False, session_expiry=3600)
        await keeper.connect()
        await keeper.subscribe(("online/#", 1))
        b.stop.set()
        assert await keeper.disconnected() == 0x8B  # server shutting down
    async with running_edgetwin(tmp_path) as b:
        pub = await b.client(version=V5)
        await pub.publish("online/x", b"queued after the restart", 1)
        keeper = b.paho(version=V5, client_id="online", clean=False, session_expiry=3600)
        assert (await keeper.connect()).session_present is True
        assert (await keeper.receive()).payload == b"queued after the restart"


async def test_v5_properties_of_queued_messages_survive_a_restart(tmp_path: Path) -> None:
    args = {"version": V5, "client_id": "keeper", "clean": False, "session_expiry": 3600}
    async with running_edgetwin(tmp_path) as b:
        keeper = b.paho(**args)
        await keeper.connect()
        await keeper.subscribe(("persist/#", 1))
        await keeper.disconnect()
        pub = await b.client(version=V5)
        await pub.publish("persist/p", b"p", qos=1, properties=_all_properties())
    async with running_edgetwin(tmp_path) as b:
        keeper = b.paho(**args)
        await keeper.connect()
        m = await keeper.receive()
        assert prop(m, "UserProperty") == [("a", "1"), ("b", "2"), ("a", "3")]
        assert prop(m, "ContentType") == "application/json"
        assert prop(m, "CorrelationData") == b"\x00\x01corr"


@pytest.mark.parametrize("version", VERSIONS)
async def test_queued_messages_reach_a_reconnecting_persistent_session(tmp_path: Path, version: int) -> None:
    args = {"version": version, "client_id": "back", "clean": False, "session_expiry": 60}
    async with running_edgetwin(tmp_path) as b:
        client = b.paho(**args)
        await client.connect()
        await client.subscribe(("back/#", 2))
        await client.drop()
        pub = await b.client(version=version)
        for qos in (1, 2):
            await pub.publish(f"back/{qos}", b"%d" % qos, qos)
        client = b.paho(**args)
        assert (await client.connect()).session_present is True
        assert [(m.topic, m.qos) for m in await client.receive_many(2)] == [("back/1", 1), ("back/2", 2)]
        # Clean start / clean session discards it.
        await client.disconnect()
        await pub.publish("back/1", b"dropped", 1)
        fresh = b.paho(**{**args, "clean": True})
        assert (await fresh.connect()).session_present is False
        await fresh.nothing()


# --------------------------------------------------------------------------------------------- wills


@pytest.mark.parametrize("version", VERSIONS)
async def test_will_fires_on_abrupt_disconnect_only(tmp_path: Path, version: int) -> None:
    async with running_edgetwin(tmp_path) as b:
        watcher = await b.client("will/#", version=V5)
        abrupt = b.paho(version=version, client_id="abrupt", will=("will/abrupt", b"gone", 1, False))
        await abrupt.connect()
        await abrupt.drop()
        m = await watcher.receive()
        assert (m.topic, m.payload, m.qos, m.retain) == ("will/abrupt", b"gone", 1, False)

        clean = b.paho(version=version, client_id="clean", will=("will/clean", b"never", 1, False))
        await clean.connect()
        await clean.disconnect()
        await watcher.nothing(0.5)  # MQTT-3.1.2-10

        # A retained will becomes the retained value.
        retained = b.paho(version=version, client_id="retained", will=("will/retained", b"offline", 1, True))
        await retained.connect()
        await retained.drop()
        assert (await watcher.receive()).payload == b"offline"
        m = await (await b.client("will/retained", version=version)).receive()
        assert (m.payload, m.retain) == (b"offline", True)


async def test_v5_will_properties_and_disconnect_with_will_message(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path) as b:
        watcher = await b.client("will/#", version=V5)
        will_props = v5_properties(
            PacketTypes.WILLMESSAGE,
            UserProperty=[("why", "test")],
            ContentType="text/plain",
            ResponseTopic="will/reply",
            CorrelationData=b"cd",
        )
        client = b.paho(
            version=V5, client_id="w5", will=("will/w5", b"bye", 1, False), will_properties=will_props
        )
        await client.connect()
        await client.disconnect(ReasonCode(PacketTypes.DISCONNECT, identifier=0x04))  # with will message
        m = await watcher.receive()
        assert m.payload == b"bye"
        assert prop(m, "UserProperty") == [("why", "test")]
        assert prop(m, "ContentType") == "text/plain"
        assert prop(m, "ResponseTopic") == "will/reply"
        assert prop(m, "CorrelationData") == b"cd"


async def test_v5_will_delay(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path) as b:
        watcher = await b.client("delay/#", version=V5)

        def client(name: str, delay: int, expiry: int | None) -> Paho:
            return b.paho(
                version=V5,
                client_id=name,
                clean=False,
                session_expiry=expiry,
                will=(f"delay/{name}", name.encode(), 1, False),
                will_properties=v5_properties(PacketTypes.WILLMESSAGE, WillDelayInterval=delay),
            )

        delayed, back, capped = client("delayed", 1, 60), client("back", 1, 60), client("capped", 30, None)
        for c in (delayed, back, capped):
            await c.connect()
        start = trio.current_time()
        for c in (delayed, back, capped):
            await c.drop()
        # The session ends with the connection (no expiry): the will cannot wait for it (at most the expiry).
        m = await watcher.receive()
        assert m.payload == b"capped"
        assert trio.current_time() - start < 0.8
        # "back" returns before its delay: no will (MQTT-3.1.3-9).
        again = client("back", 1, 60)
        assert (await again.connect()).session_present is True
        m = await watcher.receive(within=3)
        assert m.payload == b"delayed"
        assert 0.9 <= trio.current_time() - start <= 2.5
        await watcher.nothing(0.6)


# ----------------------------------------------------------------------------------------- keep alive


async def test_keep_alive_is_enforced(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path) as b:
        watcher = await b.client("ka/#", version=V5)
        results: dict[str, tuple[float, list[tuple[int, bytes]]]] = {}

        async def idle(version: int) -> None:
            async with await b.raw() as raw:
                will = (f"ka/{version}", b"timed out", 0, False)
                await raw.send(connect_packet(f"idle{version}", version=version, keepalive=1, will=will))
                first, body = await raw.packet() or (0, b"")
                assert (first, body[1]) == (0x20, 0)
                if version == V5:  # Server Keep Alive only when the client's value is above the cap
                    assert 0x13 not in read_properties(body, 2)[0]
                start = trio.current_time()
                packets = await raw.until_closed()
                results[f"idle{version}"] = (trio.current_time() - start, packets)

        async def pinging() -> None:
            async with await b.raw() as raw:
                await raw.send(connect_packet("pinger", version=V311, keepalive=1))
                assert (await raw.packet() or (0,))[0] == 0x20
                for _ in range(4):  # 2.8 s with a 1 s keep alive: alive thanks to PINGREQ
                    await trio.sleep(0.7)
                    await raw.send(PINGREQ)
                    assert await raw.packet() == (0xD0, b"")
                await raw.send(DISCONNECT)
                assert await raw.until_closed() == []

        async with trio.open_nursery() as nursery:
            nursery.start_soon(idle, V311)
            nursery.start_soon(idle, V5)
            nursery.start_soon(pinging)
        for name, (elapsed, _) in results.items():
            assert 1.3 <= elapsed <= 2.5, (name, elapsed)  # 1.5 x keep alive (MQTT-3.1.2-24)
        assert results["idle4"][1] == []
        assert [(p[0], p[1][:1]) for p in results["idle5"][1]] == [(0xE0, b"\x8d")]  # keep alive timeout
        wills = sorted([(await watcher.receive()).topic for _ in range(2)])
        assert wills == ["ka/4", "ka/5"]


async def test_server_keep_alive_lowers_a_v5_clients_keep_alive(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path, mqtt={"max_keep_alive_s": 1}) as b, await b.raw() as raw:
        await raw.send(connect_packet("long", version=V5, keepalive=600))
        first, body = await raw.packet() or (0, b"")
        assert (first, body[1]) == (0x20, 0)
        assert b"\x13\x00\x01" in body[2:]  # Server Keep Alive = 1
        start = trio.current_time()
        packets = await raw.until_closed()
        assert 1.3 <= trio.current_time() - start <= 2.5
        assert [(p[0], p[1][:1]) for p in packets] == [(0xE0, b"\x8d")]


# ---------------------------------------------------------------------------------------- permissions


@pytest.mark.parametrize("version", VERSIONS)
async def test_subscribe_permissions(tmp_path: Path, version: int) -> None:
    async with running_edgetwin(tmp_path) as b:
        limited = await b.client(version=version, username="limited", password="l")
        codes = await limited.subscribe(
            ("allowed/x", 1), ("secret/#", 1), ("readonly/y", 2), ("#", 0), ("$share/g/allowed/+", 1)
        )
        assert codes == [1, NOT_AUTHORIZED[version], 2, NOT_AUTHORIZED[version], 1]
        ditto = await b.client(version=version)
        for topic in ("secret/a", "readonly/z", "allowed/x", "readonly/y", "allowed/shared"):
            await ditto.publish(topic, topic.encode(), 1)
        got = sorted(await drain(limited))
        # allowed/x matches a subscription and the shared one: one copy for each (MQTT 5.0 §4.8.2).
        assert got == [b"allowed/shared", b"allowed/x", b"allowed/x", b"readonly/y"]


@pytest.mark.parametrize("version", VERSIONS)
async def test_publish_permissions(tmp_path: Path, version: int) -> None:
    async with running_edgetwin(tmp_path) as b:
        watcher = await b.client("#", version=V5)
        limited = await b.client(version=version, username="limited", password="l")
        refused = 0x87 if version == V5 else 0  # 3.1.1 cannot say no: acknowledged and dropped
        assert await limited.publish("readonly/x", b"no", 0) == 0
        assert await limited.publish("readonly/x", b"no", 1) == refused
        await limited.publish("readonly/x", b"no", 2)  # paho ignores PUBREC's reason code: see the raw test
        assert await limited.publish("secret/r", b"no", 1, retain=True) == refused
        await watcher.nothing()
        assert await limited.publish("allowed/x", b"yes", 1) == 0
        assert (await watcher.receive()).payload == b"yes"
        await (await b.client("secret/r", version=version)).nothing(0.2)  # no retained value was set


async def test_a_forbidden_v5_qos2_publish_gets_pubrec_0x87(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path) as b, await b.raw() as raw:
        await raw.send(connect_packet("r", version=V5, username="limited", password="l"))
        assert (await raw.packet() or (0,))[0] == 0x20
        await raw.send(publish_packet("secret/x", b"no", qos=2, packet_id=7, version=V5))
        first, body = await raw.packet() or (0, b"")
        assert (first, body[:3]) == (0x50, b"\x00\x07\x87")  # PUBREC, packet 7, not authorized
        await raw.send(b"\x62\x02\x00\x07")  # PUBREL: the flow still ends with PUBCOMP
        first, body = await raw.packet() or (0, b"")
        assert (first, body[:2]) == (0x70, b"\x00\x07")


async def test_v5_refusals_carry_a_reason_string(tmp_path: Path) -> None:
    without: list[str] = []
    async with running_edgetwin(tmp_path) as b:
        async with await b.raw() as raw:
            await raw.send(connect_packet("c", version=V5, password="wrong"))
            first, body = (await raw.until_closed())[0]
            assert (first, body[1]) == (0x20, 0x86)
            if REASON_STRING not in read_properties(body, 2)[0]:
                without.append(f"CONNACK {body[1]:#x}")
        async with await b.raw() as raw:
            await raw.connect("limited", version=V5, username="limited", password="l")
            await raw.send(subscribe_packet(1, [("secret/#", 1)], version=V5))
            first, body = await raw.packet() or (0, b"")
            assert (first, body[-1]) == (0x90, 0x87)
            if REASON_STRING not in read_properties(body, 2)[0]:
                without.append("SUBACK 0x87")
            await raw.send(publish_packet("secret/x", b"no", qos=1, packet_id=2, version=V5))
            first, body = await raw.packet() or (0, b"")
            assert (first, body[2]) == (0x40, 0x87)
            if len(body) < 4 or REASON_STRING not in read_properties(body, 3)[0]:
                without.append("PUBACK 0x87")
            await raw.send(b"\x30\xff\xff\xff\xff\x01")  # malformed
            first, body = (await raw.until_closed())[0]
            assert (first, body[0]) == (0xE0, 0x81)
            if len(body) < 2 or REASON_STRING not in read_properties(body, 1)[0]:
                without.append(f"DISCONNECT {body[0]:#x}")
    assert without == []


@pytest.mark.parametrize(
    ("version", "username", "password", "code"),
    [
        (V311, "ditto", "wrong", 4),
        (V311, "nobody", "x", 4),
        (V311, None, None, 5),
        (V5, "ditto", "wrong", 0x86),
        (V5, "nobody", "x", 0x86),
        (V5, None, None, 0x87),
    ],
)
async def test_bad_credentials_are_refused(
    tmp_path: Path, version: int, username: str | None, password: str | None, code: int
) -> None:
    async with running_edgetwin(tmp_path) as b:
        async with await b.raw() as raw:
            await raw.send(connect_packet("c", version=version, username=username, password=password))
            packets = await raw.until_closed()
            assert len(packets) == 1
            first, body = packets[0]
            assert (first, body[:2]) == (0x20, bytes([0, code]))
        client = b.paho(version=version, client_id="p", username=username, password=password)
        connack = await client.connect(expect_success=False)
        assert connack.reason_code == {4: 0x86, 5: 0x87}.get(code, code)  # paho maps 3.1.1's codes to 5.0's


async def test_anonymous_clients_when_allowed(tmp_path: Path) -> None:
    mqtt = {"allow_anonymous": True, "anonymous_publish": ["public/#"], "anonymous_subscribe": ["public/#"]}
    async with running_edgetwin(tmp_path, mqtt=mqtt) as b:
        anon = await b.client(version=V5, username=None, password=None)
        assert await anon.subscribe(("public/#", 1), ("private/#", 1)) == [1, 0x87]
        assert await anon.publish("private/x", b"no", 1) == 0x87
        assert await anon.publish("public/x", b"yes", 1) == 0
        assert (await anon.receive()).payload == b"yes"
        await anon.nothing()
        # A user name still means a password check.
        wrong = b.paho(version=V311, username="ditto", password="nope")
        assert (await wrong.connect(expect_success=False)).reason_code == 0x86


# ----------------------------------------------------------------------------------- client identity


@pytest.mark.parametrize("version", VERSIONS)
async def test_takeover_by_the_same_client_id(tmp_path: Path, version: int) -> None:
    async with running_edgetwin(tmp_path) as b:
        watcher = await b.client("takeover/#", version=V5)
        first = b.paho(version=version, client_id="dup", will=("takeover/will", b"first gone", 0, False))
        await first.connect()
        await first.subscribe(("takeover/x", 1))
        second = b.paho(version=version, client_id="dup")
        await second.connect()
        code = await first.disconnected()
        if version == V5:
            assert code == 0x8E  # session taken over
        m = await watcher.receive()  # the old connection's will (MQTT-3.1.4-3)
        assert (m.topic, m.payload) == ("takeover/will", b"first gone")
        await second.subscribe(("takeover/x", 1))
        await watcher.publish("takeover/x", b"to the second", 1)
        assert (await second.receive()).payload == b"to the second"
        assert (await watcher.receive()).payload == b"to the second"
        await first.nothing(0)


async def test_connections_racing_for_one_client_id(tmp_path: Path) -> None:
    async with (
        running_edgetwin(tmp_path) as b,
        await b.raw() as old,
        await b.raw() as one,
        await b.raw() as two,
    ):
        await old.connect("same", clean=False)  # persistent: its end takes a store write
        await one.send(connect_packet("same", version=V5, clean=False))
        await two.send(connect_packet("same", version=V5, clean=False))
        for raw in (one, two):  # each newcomer gets its own CONNACK, at once
            first, body = await raw.packet(within=1) or (0, b"")
            assert (first, body[1:2]) == (0x20, b"\x00")
        assert await old.until_closed() == []
        # The later one took the session over from the earlier one (DISCONNECT 0x8E): exactly one is left.
        states = []
        for raw in (one, two):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await raw.send(PINGREQ)
            try:
                received = await raw.packet(within=1)
            except trio.TooSlowError:
                received = (0, b"silent")
            states.append(
                "alive" if received == (0xD0, b"") else repr(received and (received[0], received[1][:1]))
            )
        assert sorted(states) == sorted(["alive", repr((0xE0, b"\x8e"))])


async def test_empty_client_ids(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path) as b:
        # 3.1.1 with clean session: accepted (every common client sends an empty id by default).
        old = await b.client(("empty/#", 1), version=V311)
        await old.publish("empty/a", b"a", 1)
        assert (await old.receive()).payload == b"a"
        # 5.0: accepted with an Assigned Client Identifier, a different one each time.
        ids = []
        for _ in range(2):
            client = b.paho(version=V5)
            connack = await client.connect()
            ids.append(prop(connack, "AssignedClientIdentifier"))
        assert all(isinstance(i, str) and i for i in ids)
        assert ids[0] != ids[1]
        # 3.1.1 persistent session without an id: identifier rejected (MQTT-3.1.3-8).
        async with await b.raw() as raw:
            await raw.send(connect_packet("", version=V311, clean=False))
            assert await raw.until_closed() == [(0x20, b"\x00\x02")]
        # 5.0 clean start 0 with an empty id: assigned (and a session expiry is allowed).
        async with await b.raw() as raw:
            await raw.send(
                connect_packet("", version=V5, clean=False, properties=props(prop_u32(SESSION_EXPIRY, 60)))
            )
            first, body = await raw.packet() or (0, b"")
            assert (first, body[:2]) == (0x20, b"\x00\x00")
            assert b"\x12" in body[2:]  # Assigned Client Identifier
            await raw.send(DISCONNECT)


# --------------------------------------------------------------------------------------- WebSocket


@pytest.mark.parametrize("version", VERSIONS)
async def test_mqtt_over_websocket(tmp_path: Path, version: int) -> None:
    async with running_edgetwin(tmp_path, mqtt={"websocket_bind": "127.0.0.1:0"}) as b:
        assert len(b.ports.mqtt) == 2
        ws = Paho(b.websocket_port, version=version, transport="websockets")
        b.clients.append(ws)
        await ws.connect()
        assert await ws.subscribe(("ws/#", 2)) == [2]
        tcp = await b.client("ws/#", version=V5)
        await tcp.publish("ws/from-tcp", b"t" * 70_000, 1)  # a large message
        m = await ws.receive()
        assert (m.topic, len(m.payload), m.qos) == ("ws/from-tcp", 70_000, 1)
        await ws.publish("ws/from-ws", b"w", 2, retain=True)
        assert {(await tcp.receive()).topic for _ in range(2)} == {"ws/from-tcp", "ws/from-ws"}
        assert (await ws.receive()).payload == b"w"
        # Retained over WebSocket, wills too.
        late = Paho(
            b.websocket_port, version=version, transport="websockets", will=("ws/will", b"w", 0, False)
        )
        b.clients.append(late)
        await late.connect()
        await late.subscribe(("ws/from-ws", 1))
        m = await late.receive()
        assert (m.payload, m.retain) == (b"w", True)
        await late.drop()
        assert (await tcp.receive()).topic == "ws/will"


# ---------------------------------------------------------------------------------------------- TLS


@pytest.mark.parametrize("version", VERSIONS)
async def test_mqtt_over_tls(tmp_path: Path, version: int) -> None:
    cert, key = self_signed_certificate(tmp_path)
    mqtt = {"tls_bind": "127.0.0.1:0", "tls_cert_file": str(cert), "tls_key_file": str(key)}
    async with running_edgetwin(tmp_path, mqtt=mqtt) as b:
        assert len(b.ports.mqtt) == 2
        tls = Paho(int(b.ports.mqtt[1].rsplit(":", 1)[1]), version=version, tls_ca=cert)
        b.clients.append(tls)
        await tls.connect()
        assert await tls.subscribe(("tls/#", 1)) == [1]
        tcp = await b.client("tls/#", version=V5)
        await tcp.publish("tls/x", b"over tcp", 1)
        assert (await tls.receive()).payload == b"over tcp"
        await tls.publish("tls/y", b"over tls", 2)
        assert {(await tcp.receive()).payload for _ in range(2)} == {b"over tcp", b"over tls"}
        assert (await tls.receive()).payload == b"over tls"


# ------------------------------------------------------------------------------------------ shutdown


async def test_stopping_edgetwin_with_clients_connected(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path) as b, await b.raw() as raw:
        v5 = await b.client(version=V5)
        v311 = await b.client(version=V311)
        await raw.send(connect_packet("raw", version=V5))
        assert (await raw.packet() or (0,))[0] == 0x20
        b.stop.set()
        assert await v5.disconnected() == 0x8B  # server shutting down
        await v311.disconnected()
        assert [(p[0], p[1][:1]) for p in await raw.until_closed()] == [(0xE0, b"\x8b")]
    # ... and app.serve returned normally (the nursery above raised nothing).


def test_helpers_encode_like_the_spec() -> None:
    # The raw client's CONNECT is the spec's example shape: fixed header, "MQTT", level, flags, keep alive.
    data = connect_packet("c", version=V311, username=None, password=None, keepalive=60)
    assert data == b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c"
    assert publish_packet("a", b"x", qos=1, packet_id=0x102) == b"\x32\x06\x00\x01a\x01\x02x"
