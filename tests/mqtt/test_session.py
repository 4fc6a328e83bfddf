"""The per-client session state machine: QoS 1/2 flows both ways, packet identifiers, the inflight window
and the queue, re-sends on resume, topic aliases both ways, Receive Maximum, Maximum Packet Size, message
expiry, persistence, and a hypothesis run of random operations against the invariants.

Everything the session writes is decoded again with the codec, as a client would see it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetwin.mqtt import session as session_module
from edgetwin.mqtt.codec import (
    Connack,
    Connect,
    Disconnect,
    EncodeError,
    Packet,
    PacketReader,
    PingResp,
    Properties,
    ProtocolError,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
    SubAck,
    Will,
)
from edgetwin.mqtt.session import Inbound, Message, Outcome, Session, SessionConfig

R = ReasonCode


def test_public_names_are_pinned() -> None:
    assert sorted(session_module.__all__) == [
        "Inbound",
        "Message",
        "Outcome",
        "Session",
        "SessionConfig",
        "SessionStatistics",
        "properties_from_json",
        "properties_to_json",
    ]


# --- helpers ------------------------------------------------------------------------------------------


def wire(session: Session, now: float | None = None) -> list[Packet]:
    """What the client receives from the session's output."""
    reader = PacketReader(role="client", protocol_level=session.protocol_level)
    reader.feed(session.outbound(now))
    packets = list(reader)
    assert reader.buffered == 0
    return packets


def attach(
    session: Session,
    level: int = 4,
    *,
    client: Properties | None = None,
    ours: Properties | None = None,
    present: bool = False,
) -> list[Packet]:
    connect = Connect(session.client_id, level, properties=client or Properties())
    connack = Connack(present, properties=ours or Properties())
    session.attach(connect, connack)
    packets = wire(session)
    assert packets[0] == connack if level == 5 else Connack(present)
    return packets[1:]


def new(level: int = 4, config: SessionConfig | None = None, **kwargs: Any) -> Session:
    session = Session("client", config)
    assert attach(session, level, **kwargs) == []
    return session


def msg(topic: str = "t", payload: bytes = b"p", qos: int = 1, **kwargs: Any) -> Message:
    return Message(topic, payload, qos, **kwargs)


def publishes(packets: list[Packet]) -> list[Publish]:
    assert all(isinstance(p, Publish) for p in packets), packets
    return packets  # type: ignore[return-value]


# --- towards the client: QoS 0, 1, 2 ------------------------------------------------------------------


def test_qos0_goes_straight_out() -> None:
    session = new()
    assert session.deliver(msg(qos=0), qos=0) is Outcome.SENT
    assert wire(session) == [Publish("t", b"p")]
    assert session.statistics().inflight == 0


def test_qos1_flow() -> None:
    session = new()
    message = msg(retain=True)
    assert session.deliver(message, qos=1, retain=True) is Outcome.SENT
    assert wire(session) == [Publish("t", b"p", 1, True, False, 1)]
    assert session.statistics().inflight == 1
    assert session.receive_ack(PubAck(2)) is None  # unknown identifier: ignored
    assert session.receive_ack(PubAck(1)) is message
    assert session.receive_ack(PubAck(1)) is None  # already done
    assert session.statistics().inflight == 0
    assert wire(session) == []


def test_qos2_flow() -> None:
    session = new()
    message = msg(qos=2)
    session.deliver(message, qos=2)
    assert wire(session) == [Publish("t", b"p", 2, packet_id=1)]
    assert session.receive_ack(PubComp(1)) is None  # PUBCOMP before PUBREC: not awaited yet
    assert session.receive_ack(PubRec(1)) is None
    assert wire(session) == [PubRel(1)]
    assert session.receive_ack(PubRec(1)) is None  # a repeated PUBREC gets PUBREL again
    assert wire(session) == [PubRel(1)]
    assert session.receive_ack(PubAck(1)) is None  # wrong ack for QoS 2: ignored
    assert session.statistics().inflight == 1
    assert session.receive_ack(PubComp(1)) is message
    assert session.statistics().inflight == 0


def test_qos2_pubrec_failure_ends_the_flow_in_v5() -> None:
    session = new(5)
    message = msg(qos=2)
    session.deliver(message, qos=2)
    wire(session)
    assert session.receive_pubrec(PubRec(1, R.QUOTA_EXCEEDED)) is message
    assert wire(session) == []
    assert session.statistics().inflight == 0


def test_pubrec_for_unknown_identifier() -> None:
    v5 = new(5)
    v5.receive_pubrec(PubRec(9))
    assert wire(v5) == [PubRel(9, R.PACKET_IDENTIFIER_NOT_FOUND)]
    v4 = new(4)
    v4.receive_pubrec(PubRec(9))
    assert wire(v4) == []


def test_delivery_qos_is_the_callers_and_ids_are_ours() -> None:
    session = new()
    session.deliver(Message("t", b"", 2), qos=1)  # downgraded by the broker
    session.deliver(Message("t", b"", 1), qos=0)
    assert wire(session) == [Publish("t", b"", 1, packet_id=1), Publish("t", b"")]


# --- packet identifiers -------------------------------------------------------------------------------


def _state(next_id: int, inflight_ids: list[int]) -> dict[str, Any]:
    state = Session("client").to_state()
    state["next_packet_id"] = next_id
    state["inflight"] = [
        {
            "message": {
                "topic": "old",
                "payload": "",
                "qos": 1,
                "retain": False,
                "properties": {},
                "expires_at": None,
            },
            "qos": 1,
            "retain": False,
            "subscription_identifiers": [],
            "packet_id": packet_id,
            "state": "publish",
            "sent": True,
        }
        for packet_id in inflight_ids
    ]
    return state


def test_packet_ids_count_up_skip_inflight_and_wrap() -> None:
    session = Session.from_state(_state(65534, [1, 65535]))
    resent = attach(session)
    assert [p.packet_id for p in publishes(resent)] == [1, 65535]
    for _ in range(3):
        session.deliver(msg(), qos=1)
    # 65534, then 65535 and 1 are in flight: wrap to 2, 3
    assert [p.packet_id for p in publishes(wire(session))] == [65534, 2, 3]


def test_packet_ids_are_reused_only_after_completion() -> None:
    session = new(config=SessionConfig(max_inflight=65535))
    seen = set()
    for _ in range(70000):
        if session.statistics().inflight == 65535:
            break
        session.deliver(msg(), qos=1)
    for p in publishes(wire(session)):
        assert p.packet_id not in seen
        seen.add(p.packet_id)
    assert len(seen) == 65535
    assert session.deliver(msg(), qos=1) is Outcome.QUEUED
    session.receive_puback(PubAck(40000))
    assert [p.packet_id for p in publishes(wire(session))] == [40000]  # the only free identifier


# --- window, queue, overflow --------------------------------------------------------------------------


def test_window_and_queue() -> None:
    session = new(config=SessionConfig(max_inflight=2, max_queued=2))
    outcomes = [session.deliver(msg(payload=bytes([i])), qos=1) for i in range(5)]
    assert outcomes == [
        Outcome.SENT,
        Outcome.SENT,
        Outcome.QUEUED,
        Outcome.QUEUED,
        Outcome.DROPPED_QUEUE_FULL,
    ]
    assert [p.payload for p in publishes(wire(session))] == [b"\x00", b"\x01"]
    stats = session.statistics()
    assert (stats.inflight, stats.queued, stats.dropped_queue_full) == (2, 2, 1)
    session.receive_puback(PubAck(2))  # out of order is fine
    assert [(p.packet_id, p.payload) for p in publishes(wire(session))] == [(3, b"\x02")]
    session.receive_puback(PubAck(1))
    session.receive_puback(PubAck(3))
    assert [p.payload for p in publishes(wire(session))] == [b"\x03"]
    assert session.statistics().queued == 0


def test_queue_keeps_order_behind_the_window() -> None:
    session = new(config=SessionConfig(max_inflight=1))
    for i in range(4):
        session.deliver(msg(payload=bytes([i]), qos=2), qos=2)
    got = []
    for _ in range(4):
        (p,) = publishes(wire(session))
        got.append(p.payload)
        session.receive_pubrec(PubRec(p.packet_id or 0))
        assert wire(session) == [PubRel(p.packet_id or 0)]
        session.receive_pubcomp(PubComp(p.packet_id or 0))
    assert got == [b"\x00", b"\x01", b"\x02", b"\x03"]


def test_client_receive_maximum_narrows_the_window() -> None:
    session = new(5, client=Properties(receive_maximum=1))
    assert session.deliver(msg(), qos=1) is Outcome.SENT
    assert session.deliver(msg(), qos=1) is Outcome.QUEUED
    assert session.deliver(msg(qos=0), qos=0) is Outcome.SENT  # QoS 0 is not flow controlled
    assert len(wire(session)) == 2


def test_qos0_backlog_is_bounded() -> None:
    session = new(config=SessionConfig(max_queued=0, max_pending_qos0=2))
    outcomes = [session.deliver(msg(qos=0), qos=0) for _ in range(3)]
    assert outcomes == [Outcome.SENT, Outcome.SENT, Outcome.DROPPED_QUEUE_FULL]
    assert len(wire(session)) == 2
    assert session.deliver(msg(qos=0), qos=0) is Outcome.SENT  # flushed: room again
    assert session.statistics().dropped_queue_full == 1


def test_offline_delivery() -> None:
    session = Session("client")
    assert session.deliver(msg(qos=0), qos=0) is Outcome.DROPPED_OFFLINE
    assert session.deliver(msg(payload=b"1"), qos=1) is Outcome.QUEUED
    assert session.statistics().dropped_offline == 1
    with pytest.raises(RuntimeError):
        session.send_packet(PingResp())
    assert [p.payload for p in publishes(attach(session))] == [b"1"]  # after the CONNACK


# --- resume: DUP re-sends in order --------------------------------------------------------------------


def test_resend_in_original_order_with_dup() -> None:
    session = new(config=SessionConfig(max_inflight=4))
    for i in range(3):
        session.deliver(msg(payload=bytes([i])), qos=1)
    session.deliver(msg(payload=b"q2", qos=2), qos=2)
    session.deliver(msg(payload=b"queued"), qos=1)
    wire(session)
    session.receive_pubrec(PubRec(2 + 2))  # the QoS 2 message moves on to PUBREL
    session.receive_puback(PubAck(2))
    session.detach()
    assert not session.attached
    session.deliver(msg(payload=b"while away"), qos=1)
    resent = attach(session, present=True)
    assert resent == [
        Publish("t", b"\x00", 1, dup=True, packet_id=1),
        Publish("t", b"\x02", 1, dup=True, packet_id=3),
        PubRel(4),  # MQTT-4.4.0-1: PUBREL is re-sent, not the PUBLISH
        Publish("t", b"queued", 1, packet_id=5),  # admitted on the old connection, sent now
    ]
    assert session.statistics().queued == 1  # "while away": the window of 4 is full
    # A second reconnect: now all were sent once.
    session.detach()
    assert [getattr(p, "dup", None) for p in attach(session)] == [True, True, None, True]
    session.receive_puback(PubAck(1))
    assert wire(session) == [Publish("t", b"while away", 1, packet_id=6)]


def test_unflushed_messages_are_not_marked_dup() -> None:
    session = new()
    session.deliver(msg(), qos=1)
    session.detach()  # never written
    assert attach(session) == [Publish("t", b"p", 1, packet_id=1)]


def test_smaller_receive_maximum_after_reconnect() -> None:
    session = new(5)
    for i in range(3):
        session.deliver(msg(payload=bytes([i])), qos=1)
    wire(session)
    session.detach()
    resent = attach(session, 5, client=Properties(receive_maximum=1))
    assert [(p.packet_id, p.dup) for p in publishes(resent)] == [(1, True)]
    session.receive_puback(PubAck(1))
    assert [(p.packet_id, p.dup) for p in publishes(wire(session))] == [(2, True)]
    assert session.deliver(msg(), qos=1) is Outcome.QUEUED


# --- from the client: QoS 1 and 2, Receive Maximum ----------------------------------------------------


def test_inbound_qos0_and_qos1() -> None:
    session = new()
    inbound = session.receive_publish(Publish("a", b"0"))
    assert inbound == Inbound(Message("a", b"0"), 0, None)
    session.acknowledge(inbound)
    inbound = session.receive_publish(Publish("a", b"1", 1, True, False, 7))
    assert inbound.message == Message("a", b"1", 1, True)
    session.acknowledge(inbound)
    assert wire(session) == [PubAck(7)]


def test_inbound_qos1_refused_in_v5() -> None:
    session = new(5)
    session.acknowledge(session.receive_publish(Publish("a", b"", 1, packet_id=3)), R.NOT_AUTHORIZED)
    assert wire(session) == [PubAck(3, R.NOT_AUTHORIZED)]


def test_inbound_qos2_exactly_once() -> None:
    session = new()
    first = session.receive_publish(Publish("a", b"x", 2, packet_id=5))
    assert not first.duplicate
    session.acknowledge(first)
    assert wire(session) == [PubRec(5)]
    again = session.receive_publish(Publish("a", b"x", 2, dup=True, packet_id=5))
    assert again.duplicate  # MQTT-4.3.3: not delivered twice
    session.acknowledge(again, R.NO_MATCHING_SUBSCRIBERS)
    assert wire(session) == [PubRec(5)]
    session.receive_ack(PubRel(5))
    assert wire(session) == [PubComp(5)]
    assert session.statistics().inbound_qos2 == 0
    assert not session.receive_publish(Publish("a", b"y", 2, packet_id=5)).duplicate  # a new message


def test_pubrel_for_unknown_identifier_still_gets_pubcomp() -> None:
    v4 = new(4)
    v4.receive_pubrel(PubRel(99))
    assert wire(v4) == [PubComp(99)]
    v5 = new(5)
    v5.receive_pubrel(PubRel(99))
    assert wire(v5) == [PubComp(99, R.PACKET_IDENTIFIER_NOT_FOUND)]


def test_inbound_qos2_refused_in_v5_does_not_wait_for_pubrel() -> None:
    session = new(5)
    session.acknowledge(session.receive_publish(Publish("a", b"", 2, packet_id=4)), R.NOT_AUTHORIZED)
    assert wire(session) == [PubRec(4, R.NOT_AUTHORIZED)]
    assert session.statistics().inbound_qos2 == 0


def test_inbound_qos2_state_survives_reconnect() -> None:
    session = new()
    session.acknowledge(session.receive_publish(Publish("a", b"", 2, packet_id=4)))
    wire(session)
    session.detach()
    attach(session, present=True)
    assert session.receive_publish(Publish("a", b"", 2, dup=True, packet_id=4)).duplicate


def test_receive_maximum_overflow_is_a_protocol_error() -> None:
    session = new(5, ours=Properties(receive_maximum=2))
    for packet_id in (1, 2):
        session.acknowledge(session.receive_publish(Publish("a", b"", 2, packet_id=packet_id)))
    # A re-send of an open flow is not a new one.
    assert session.receive_publish(Publish("a", b"", 2, dup=True, packet_id=2)).duplicate
    assert session.receive_publish(Publish("a", b"", 0)).qos == 0  # QoS 0 is not counted
    for qos in (1, 2):
        with pytest.raises(ProtocolError) as info:
            session.receive_publish(Publish("a", b"", qos, packet_id=3))
        assert info.value.reason_code == R.RECEIVE_MAXIMUM_EXCEEDED
    session.receive_pubrel(PubRel(1))
    session.receive_publish(Publish("a", b"", 2, packet_id=3))  # room again


def test_no_receive_maximum_in_3_1_1() -> None:
    session = new(4)
    for packet_id in range(1, 200):
        session.acknowledge(session.receive_publish(Publish("a", b"", 2, packet_id=packet_id)))
    assert session.statistics().inbound_qos2 == 199


# --- topic aliases ------------------------------------------------------------------------------------


def test_inbound_topic_aliases() -> None:
    session = new(5, ours=Properties(topic_alias_maximum=2))
    first = session.receive_publish(
        Publish("a/b", b"1", properties=Properties(topic_alias=1, content_type="c"))
    )
    assert first.message == Message("a/b", b"1", properties=Properties(content_type="c"))
    assert (
        session.receive_publish(Publish("", b"2", properties=Properties(topic_alias=1))).message.topic
        == "a/b"
    )
    session.receive_publish(Publish("c", b"3", properties=Properties(topic_alias=1)))  # re-mapped
    assert (
        session.receive_publish(Publish("", b"4", properties=Properties(topic_alias=1))).message.topic == "c"
    )
    with pytest.raises(ProtocolError) as info:
        session.receive_publish(Publish("x", b"", properties=Properties(topic_alias=3)))
    assert info.value.reason_code == R.TOPIC_ALIAS_INVALID
    with pytest.raises(ProtocolError) as info:
        session.receive_publish(Publish("", b"", properties=Properties(topic_alias=2)))
    assert info.value.reason_code == R.PROTOCOL_ERROR
    # Aliases belong to the connection (MQTT-3.3.2-7 / §3.3.2.3.4).
    session.detach()
    attach(session, 5, ours=Properties(topic_alias_maximum=2))
    with pytest.raises(ProtocolError):
        session.receive_publish(Publish("", b"", properties=Properties(topic_alias=1)))


def test_inbound_alias_refused_without_our_maximum() -> None:
    session = new(5)
    with pytest.raises(ProtocolError) as info:
        session.receive_publish(Publish("a", b"", properties=Properties(topic_alias=1)))
    assert info.value.reason_code == R.TOPIC_ALIAS_INVALID


def test_outbound_topic_aliases() -> None:
    session = new(5, client=Properties(topic_alias_maximum=1))
    for topic in ("x", "x", "y", "x"):
        session.deliver(Message(topic, b""), qos=0)
    assert wire(session) == [
        Publish("x", b"", properties=Properties(topic_alias=1)),
        Publish("", b"", properties=Properties(topic_alias=1)),
        Publish("y", b""),  # no alias left
        Publish("", b"", properties=Properties(topic_alias=1)),
    ]
    # A new connection starts without aliases; a re-send sets the alias up again.
    session.deliver(Message("x", b"q"), qos=1)
    wire(session)
    session.detach()
    assert attach(session, 5, client=Properties(topic_alias_maximum=1)) == [
        Publish("x", b"q", 1, dup=True, packet_id=1, properties=Properties(topic_alias=1))
    ]


def test_no_outbound_aliases_unless_the_client_allows_them() -> None:
    session = new(5)
    session.deliver(Message("x", b""), qos=0)
    session.deliver(Message("x", b""), qos=0)
    assert wire(session) == [Publish("x", b""), Publish("x", b"")]


# --- the client's Maximum Packet Size -----------------------------------------------------------------


def test_oversized_publish_is_dropped_as_if_delivered() -> None:
    session = new(5, config=SessionConfig(max_inflight=1), client=Properties(maximum_packet_size=40))
    session.deliver(Message("t", b"x" * 100), qos=1)
    session.deliver(Message("t", b"small"), qos=1)
    assert session.statistics().queued == 1
    assert wire(session) == [Publish("t", b"small", 1, packet_id=2)]  # the slot was freed at once
    assert session.statistics().dropped_too_large == 1


def test_oversized_first_aliased_publish_does_not_leave_a_dangling_alias() -> None:
    session = new(5, client=Properties(maximum_packet_size=30, topic_alias_maximum=5))
    session.deliver(Message("topic", b"x" * 50), qos=0)
    session.deliver(Message("topic", b"x"), qos=0)
    assert wire(session) == [Publish("topic", b"x", properties=Properties(topic_alias=1))]


def test_oversized_control_packet_loses_reason_string_first() -> None:
    session = new(5, client=Properties(maximum_packet_size=20))
    session.send_packet(SubAck(1, (R.GRANTED_QOS_1,), Properties(reason_string="r" * 40)))
    assert wire(session) == [SubAck(1, (R.GRANTED_QOS_1,))]


def test_no_problem_information_unless_requested() -> None:
    session = new(5, client=Properties(request_problem_information=False))
    noisy = Properties(reason_string="why", user_properties=(("k", "v"),))
    session.send_packet(SubAck(1, (R.NOT_AUTHORIZED,), noisy))
    session.send_packet(Disconnect(R.SERVER_SHUTTING_DOWN, noisy))
    # MQTT-3.1.2-29: only CONNACK, DISCONNECT (and PUBLISH) may still carry them.
    assert wire(session) == [SubAck(1, (R.NOT_AUTHORIZED,)), Disconnect(R.SERVER_SHUTTING_DOWN, noisy)]


# --- message expiry -----------------------------------------------------------------------------------


def test_message_expiry_is_decremented_and_enforced() -> None:
    session = new(5)
    inbound = session.receive_publish(
        Publish("t", b"", 1, packet_id=1, properties=Properties(message_expiry_interval=10)), now=100.0
    )
    message = inbound.message
    assert message.expires_at == 110.0
    assert message.properties.message_expiry_interval == 10  # the original travels with it
    receiver = new(5, config=SessionConfig(max_inflight=1))
    receiver.deliver(message, qos=1)
    receiver.deliver(message, qos=1)
    assert wire(receiver, now=104.5) == [
        Publish("t", b"", 1, packet_id=1, properties=Properties(message_expiry_interval=6))
    ]
    receiver.receive_puback(PubAck(1))
    assert wire(receiver, now=111.0) == []  # expired before its first send (MQTT-3.3.2-5)
    assert receiver.statistics().dropped_expired == 1
    # Without a clock, the original interval is forwarded.
    receiver.deliver(message, qos=0)
    assert wire(receiver) == [Publish("t", b"", properties=Properties(message_expiry_interval=10))]


def test_expired_resend_is_still_sent() -> None:
    session = new(5)
    session.deliver(
        Message("t", b"", 1, properties=Properties(message_expiry_interval=5), expires_at=5.0), qos=1
    )
    wire(session, now=1.0)
    session.detach()
    session.attach(Connect("client", 5), Connack(True))
    packets = wire(session, now=50.0)
    assert packets[1] == Publish(
        "t", b"", 1, dup=True, packet_id=1, properties=Properties(message_expiry_interval=0)
    )


# --- 5.0 delivery details -----------------------------------------------------------------------------


def test_subscription_identifiers_and_retain_per_delivery() -> None:
    session = new(5)
    message = Message("t", b"", 1, True, Properties(user_properties=(("a", "1"), ("a", "2"))))
    session.deliver(message, qos=1, retain=True, subscription_identifiers=(3, 9))
    assert wire(session) == [
        Publish(
            "t",
            b"",
            1,
            True,
            False,
            1,
            Properties(subscription_identifiers=(3, 9), user_properties=(("a", "1"), ("a", "2"))),
        )
    ]


def test_v311_receiver_of_a_v5_message() -> None:
    session = new(4)
    session.deliver(
        Message("t", b"", 1, properties=Properties(content_type="c")), qos=1, subscription_identifiers=(1,)
    )
    assert wire(session) == [Publish("t", b"", 1, packet_id=1)]


def test_will_becomes_a_message() -> None:
    will = Will(
        "w", b"bye", 1, True, Properties(will_delay_interval=5, message_expiry_interval=3, content_type="c")
    )
    message = Message.from_will(will, now=10.0)
    assert message == Message(
        "w", b"bye", 1, True, Properties(message_expiry_interval=3, content_type="c"), 13.0
    )
    assert message.template() is message.template()  # encoded once, cached


def test_deliver_checks_its_arguments() -> None:
    session = new(5)
    with pytest.raises(ValueError, match="QoS"):
        session.deliver(msg(), qos=3)
    with pytest.raises(ValueError, match="subscription identifiers"):
        session.deliver(msg(), qos=1, subscription_identifiers=(0,))
    with pytest.raises(EncodeError):
        session.deliver(Message("a\x00b", b""), qos=0)
    assert session.statistics().inflight == 0
    assert wire(session) == []


def test_attach_refuses_a_failed_connack() -> None:
    with pytest.raises(ValueError, match="successful"):
        Session("c").attach(Connect("c"), Connack(reason_code=R.NOT_AUTHORIZED))


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="max_inflight"):
        SessionConfig(max_inflight=0)
    with pytest.raises(ValueError, match="max_queued"):
        SessionConfig(max_queued=-1)
    with pytest.raises(ValueError, match="max_pending_qos0"):
        SessionConfig(max_pending_qos0=-1)


# --- persistence --------------------------------------------------------------------------------------


def _busy_session() -> Session:
    session = new(5, config=SessionConfig(max_inflight=3, max_queued=5))
    props = Properties(
        payload_format_indicator=1,
        content_type="c",
        response_topic="r",
        correlation_data=b"\x00\xff",
        user_properties=(("k", "v"), ("k", "w")),
        message_expiry_interval=60,
    )
    session.deliver(Message("a", b"\x00\x01", 1, False, props, 1000.5), qos=1, subscription_identifiers=(7,))
    session.deliver(Message("b", b"two", 2), qos=2, retain=True)
    session.deliver(Message("c", b"three", 1), qos=1)
    wire(session)
    session.receive_pubrec(PubRec(2))
    session.deliver(Message("d", b"queued", 2), qos=1)
    session.acknowledge(session.receive_publish(Publish("in", b"", 2, packet_id=77)))
    session.deliver(Message("e", b"", 0), qos=0)
    session.detach()
    session.deliver(Message("f", b"", 0), qos=0)  # dropped offline: counted
    return session


def test_state_round_trip_through_json() -> None:
    session = _busy_session()
    state = session.to_state()
    restored = Session.from_state(json.loads(json.dumps(state)), session.config)
    assert restored.to_state() == state
    assert restored.statistics() == session.statistics()
    assert restored.statistics().inflight == 3
    assert restored.statistics().queued == 1
    assert restored.statistics().inbound_qos2 == 1
    assert restored.statistics().dropped_offline == 1
    # Both resume the same way.
    assert attach(restored, 5, present=True) == attach(session, 5, present=True)
    assert restored.receive_publish(Publish("in", b"", 2, dup=True, packet_id=77)).duplicate


def test_restored_session_resumes_with_dup_and_pubrel() -> None:
    busy = _busy_session()
    restored = Session.from_state(json.loads(json.dumps(busy.to_state())), busy.config)
    resent = attach(restored, 5, present=True)
    assert [type(p).__name__ for p in resent] == ["Publish", "PubRel", "Publish"]
    first = resent[0]
    assert isinstance(first, Publish)
    assert first.dup
    assert first.properties.subscription_identifiers == (7,)
    assert first.properties.user_properties == (("k", "v"), ("k", "w"))
    assert first.properties.correlation_data == b"\x00\xff"
    restored.receive_puback(PubAck(1))
    assert [p.topic for p in publishes(wire(restored))] == ["d"]


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.update(version=2),
        lambda s: s.pop("inflight"),
        lambda s: s.update(next_packet_id=0),
        lambda s: s["inflight"][0].update(state="nonsense"),
        lambda s: s["inflight"][0].update(qos=0),
        lambda s: s["inflight"][1].update(packet_id=s["inflight"][0]["packet_id"]),
        lambda s: s["inflight"][0]["message"]["properties"].update(nonsense=1),
        lambda s: s["inflight"][0].update(packet_id=65536),
    ],
)
def test_bad_state_is_refused(change: Any) -> None:
    state = _busy_session().to_state()
    change(state)
    with pytest.raises(ValueError, match=r"state|packet identifier|propert|QoS"):
        Session.from_state(state)


# --- hypothesis: random operations keep the invariants ------------------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("deliver"), st.integers(0, 2)),
        st.tuples(st.just("ack"), st.integers(0, 100)),
        st.tuples(st.just("flush"), st.just(0)),
        st.tuples(st.just("reconnect"), st.integers(1, 4)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(ops=OPS, max_inflight=st.integers(1, 4), max_queued=st.integers(0, 4), level=st.sampled_from([4, 5]))
def test_random_operations_keep_the_invariants(
    ops: list[tuple[str, int]], max_inflight: int, max_queued: int, level: int
) -> None:
    session = new(level, config=SessionConfig(max_inflight=max_inflight, max_queued=max_queued))
    window = max_inflight
    client_inflight: dict[int, tuple[int, bytes]] = {}  # on this connection, not yet acknowledged
    seen: dict[int, bytes] = {}  # every packet identifier the client saw, with its payload
    delivered: list[bytes] = []  # accepted QoS 1/2 payloads
    completed: list[bytes] = []
    dropped = 0
    counter = 0

    def receive(packets: list[Packet]) -> None:
        for p in packets:
            assert isinstance(p, Publish), p  # PUBREL is only answered inside complete()
            if p.qos:
                assert p.packet_id is not None
                assert p.packet_id not in client_inflight  # never two flows on one identifier
                if p.packet_id in seen:
                    assert p.dup  # a re-send, with the same message
                    assert seen[p.packet_id] == p.payload
                seen[p.packet_id] = p.payload
                client_inflight[p.packet_id] = (p.qos, p.payload)
        # Receive Maximum / max inflight: never more unacknowledged than the window.
        assert len(client_inflight) <= window

    def complete(packet_id: int) -> None:
        qos, payload = client_inflight.pop(packet_id)
        del seen[packet_id]
        if qos == 1:
            assert session.receive_puback(PubAck(packet_id)) is not None
        else:
            session.receive_pubrec(PubRec(packet_id))
            out = wire(session)
            assert out[0] == PubRel(packet_id)
            assert session.receive_pubcomp(PubComp(packet_id)) is not None
            receive(out[1:])
        completed.append(payload)

    for op, arg in ops:
        if op == "deliver":
            counter += 1
            payload = counter.to_bytes(2, "big")
            outcome = session.deliver(Message("t", payload, arg), qos=arg)
            if outcome is Outcome.DROPPED_QUEUE_FULL:
                dropped += 1
            elif arg:
                delivered.append(payload)
        elif op == "flush":
            receive(wire(session))
        elif op == "ack" and client_inflight:
            receive(wire(session))  # what the session wrote before the ack arrives
            complete(sorted(client_inflight)[arg % len(client_inflight)])
        elif op == "reconnect":
            session.detach()
            client_inflight.clear()
            window = min(max_inflight, arg) if level == 5 else max_inflight
            receive(attach(session, level, client=Properties(receive_maximum=arg) if level == 5 else None))
        stats = session.statistics()
        assert stats.queued <= max_queued
        assert stats.inflight + stats.queued + len(completed) == len(delivered)
        assert stats.dropped_queue_full == dropped
    # Drain: every accepted QoS 1/2 message arrives, and completes exactly once.
    receive(wire(session))
    while client_inflight:
        complete(min(client_inflight))
        receive(wire(session))
    assert sorted(completed) == sorted(delivered)
    assert len(set(completed)) == len(completed)
    assert session.statistics().inflight == session.statistics().queued == 0
