"""The per-client MQTT session state machine (pure: no I/O, no clock, no trio).

One :class:`Session` per client identifier holds the session state of §4.1 that outlives a connection:
QoS 1 and QoS 2 messages towards the client that are in flight or queued, and the packet identifiers of
QoS 2 messages from the client awaiting PUBREL. Subscriptions are not here: the broker owns them (and the
subscription trie). The I/O layer stays thin::

    session.attach(connect, connack)                  # CONNACK first, then resends (MQTT-4.4.0-1)
    for packet in reader:                             # codec.PacketReader
        match packet:
            case Publish():
                inbound = session.receive_publish(packet, now=now)
                reason = ReasonCode.SUCCESS if inbound.duplicate else broker.route(inbound.message)
                session.acknowledge(inbound, reason)
            case PubAck() | PubRec() | PubRel() | PubComp():
                session.receive_ack(packet)
            case PingReq():
                session.send_packet(PingResp())
    await stream.send_all(session.outbound(now=now))  # everything queued for the wire, in order
    ...
    other_session.deliver(message, qos=granted, retain=False)   # fan-out from any task
    session.detach()                                  # connection gone; in-flight state stays

Contract:

* **Packet identifiers** for PUBLISH towards the client are allocated here, never copied from the
  publisher: 1..65535, skipping identifiers still in flight, wrapping 65535 -> 1 (MQTT-2.3.1-2/-4).
* **Flow control**: at most ``min(config.max_inflight, client's Receive Maximum)`` QoS 1/2 PUBLISH are
  unacknowledged at once (5.0 §4.9, MQTT-3.3.4-9); further ones wait in a queue of ``config.max_queued``
  messages, in order; beyond that :meth:`deliver` drops the message, counts it and says so
  (:attr:`Outcome.DROPPED_QUEUE_FULL`). QoS 0 goes straight to the wire while attached (bounded by
  ``config.max_pending_qos0`` unflushed messages) and is dropped while detached, as Mosquitto does by
  default.
* **QoS 1 and 2 towards the client**: PUBACK ends a QoS 1 flow; PUBREC moves QoS 2 to PUBREL (or ends it
  with a 5.0 failure code, §4.3.3), PUBCOMP ends it. Each ending frees a slot and sends the next queued
  message. Acks for unknown identifiers are ignored (a PUBREC gets PUBREL 0x92 in 5.0).
* **Resume**: :meth:`attach` writes the CONNACK, then re-sends unacknowledged PUBLISH with DUP=1 and
  PUBREL in their original order (MQTT-4.4.0-1, MQTT-3.3.1-1), then fills the window from the queue.
* **QoS 1 and 2 from the client**: :meth:`receive_publish` resolves topic aliases and spots QoS 2
  re-sends of an identifier still awaiting PUBREL (``duplicate``: route it once only, §4.3.3; 3.1.1:
  MQTT-4.3.3-2);
  :meth:`acknowledge` answers PUBACK/PUBREC with the broker's reason code. PUBREL always gets PUBCOMP,
  for an unknown identifier too (5.0: reason 0x92).
* **Receive Maximum from the client** (5.0): a QoS 1/2 PUBLISH while as many QoS 2 flows as our Receive
  Maximum (from the CONNACK) are open raises :class:`ProtocolError` 0x93 (the client broke MQTT-3.3.4-7).
* **Topic aliases**: inbound, up to the Topic Alias Maximum in our CONNACK (MQTT-3.3.2-12; alias 0 or above
  it: 0x94; an unknown alias with an empty topic: 0x82); outbound, allocated per connection up to the
  client's Topic Alias Maximum, first come first served (MQTT-3.1.2-26, MQTT-3.3.2-11).
* **Client's Maximum Packet Size** (5.0): a PUBLISH that would exceed it is dropped as if delivered
  (MQTT-3.1.2-24/-25); other packets lose Reason String and User Properties first (e.g. MQTT-3.4.2-2/-3),
  and a client that asked for no problem information gets neither on any packet but CONNACK and
  DISCONNECT (MQTT-3.1.2-29).
* **Message expiry**: the I/O layer passes its clock as ``now``; :meth:`receive_publish` stamps
  :attr:`Message.expires_at`, and :meth:`outbound` writes the remaining interval (MQTT-3.3.2-6) and drops
  a message that expired before its first send (MQTT-3.3.2-5). Without ``now`` the original is sent.
* :meth:`to_state` / :meth:`from_state` turn the persistent part (in flight, queue, inbound QoS 2
  identifiers, next packet identifier, counters) into JSON-able data and back.

Not handled here: CONNECT handling, authentication, keep alive, will delay, session expiry, subscriptions,
retained messages, QoS downgrade (the caller passes the delivery QoS), and shared subscriptions.
"""

from __future__ import annotations

import base64
import math
from collections import deque
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, cast

from edgetwin.mqtt.codec import (
    NO_PROPERTIES,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Properties,
    ProtocolError,
    PubAck,
    PubComp,
    Publish,
    PublishTemplate,
    PubRec,
    PubRel,
    ReasonCode,
    Will,
    encode_packet,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "Inbound",
    "Message",
    "Outcome",
    "Session",
    "SessionConfig",
    "SessionStatistics",
    "properties_from_json",
    "properties_to_json",
]

_MAX_PACKET_ID: Final = 65535
_STATE_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Limits of one session (defaults as Mosquitto's).

    Attributes:
        max_inflight: the most unacknowledged QoS 1/2 PUBLISH towards the client; the client's Receive
            Maximum lowers it further.
        max_queued: the most QoS 1/2 messages waiting beyond the window.
        max_pending_qos0: the most QoS 0 messages written but not yet taken by :meth:`Session.outbound`;
            beyond it QoS 0 is dropped, so a consumer that does not read cannot grow memory without bound.
    """

    max_inflight: int = 20
    max_queued: int = 1000
    max_pending_qos0: int = 1000

    def __post_init__(self) -> None:
        """Refuse limits the protocol cannot honour."""
        if not 1 <= self.max_inflight <= _MAX_PACKET_ID:
            raise ValueError(f"max_inflight must be in 1..65535, not {self.max_inflight}")
        if self.max_queued < 0 or self.max_pending_qos0 < 0:
            raise ValueError(f"max_queued and max_pending_qos0 must not be negative: {self!r}")


@dataclass(frozen=True, slots=True)
class Message:
    """An application message as the broker routes it, shared by every receiver.

    Attributes:
        topic: the topic name (aliases resolved).
        payload: the payload.
        qos: the QoS it was published with (the delivery QoS is the receiver's, see :meth:`Session.deliver`).
        retain: the RETAIN flag it was published with.
        properties: its 5.0 properties, forwarded unchanged (user properties in order, MQTT-3.3.2-17/-18);
            ``message_expiry_interval`` is the original interval. Topic Alias and Subscription Identifiers
            are per hop and never stored here.
        expires_at: when it expires, in the clock of the ``now`` given to :meth:`Session.receive_publish`
            (which sets it); ``None`` for never. Persisted sessions need a wall clock here.
    """

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties = NO_PROPERTIES
    expires_at: float | None = None
    _template: PublishTemplate | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def stamped(
        cls,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: Properties = NO_PROPERTIES,
        *,
        now: float | None,
    ) -> Message:
        """A message published now (by the broker on a client's behalf): its expiry stamped from ``now``.

        Args:
            topic: the topic name.
            payload: the payload.
            qos: the QoS it is published with.
            retain: the RETAIN flag.
            properties: its 5.0 properties (Message Expiry Interval counts from ``now``).
            now: the caller's clock; ``None`` leaves the expiry unset.

        Returns:
            The message.
        """
        return cls(topic, payload, qos, retain, properties, _expiry(properties, now))

    @classmethod
    def from_will(cls, will: Will, *, now: float | None = None) -> Message:
        """The message a will becomes when it is published (§3.1.2.5).

        Args:
            will: the will from the CONNECT.
            now: the caller's clock, to stamp the expiry; ``None`` leaves it unset.

        Returns:
            The message (Will Delay Interval dropped: it is not a message property).
        """
        properties = will.properties
        if properties.will_delay_interval is not None:
            properties = properties._replace(will_delay_interval=None)
        return cls.stamped(will.topic, will.payload, will.qos, will.retain, properties, now=now)

    def template(self) -> PublishTemplate:
        """The message encoded once for all its receivers (built on first use, then cached).

        Raises:
            EncodeError: the topic or a property cannot be encoded.
        """
        template = self._template
        if template is None:
            template = PublishTemplate.create(self.topic, self.payload, self.properties)
            object.__setattr__(self, "_template", template)  # a cache, not state: frozen stays frozen
        return template


def _expiry(properties: Properties, now: float | None) -> float | None:
    interval = properties.message_expiry_interval
    return None if interval is None or now is None else now + interval


@dataclass(frozen=True, slots=True)
class Inbound:
    """A PUBLISH received from the client, as :meth:`Session.receive_publish` resolved it.

    Attributes:
        message: the message to route (topic alias resolved, per-hop properties removed).
        qos: the QoS it arrived with.
        packet_id: its packet identifier (``None`` for QoS 0).
        duplicate: a QoS 2 re-send of a message already accepted and not yet released: acknowledge it,
            but do not route it again (exactly once, §4.3.3).
    """

    message: Message
    qos: int
    packet_id: int | None
    duplicate: bool = False


class Outcome(Enum):
    """What :meth:`Session.deliver` did with a message."""

    SENT = "sent"
    """Written for the wire (QoS 0) or in flight (QoS 1/2)."""
    QUEUED = "queued"
    """Waiting for a free slot in the window, or for the client to come back."""
    DROPPED_QUEUE_FULL = "dropped_queue_full"
    """Not kept: the queue (or the QoS 0 backlog) is full."""
    DROPPED_OFFLINE = "dropped_offline"
    """Not kept: a QoS 0 message while no connection is attached."""


@dataclass(frozen=True, slots=True)
class SessionStatistics:
    """A snapshot of a session's counters (trio's ``statistics()`` convention).

    Attributes:
        inflight: QoS 1/2 messages towards the client holding a packet identifier.
        queued: messages waiting beyond the window.
        inbound_qos2: QoS 2 messages from the client awaiting PUBREL.
        dropped_queue_full: messages dropped because the queue was full.
        dropped_offline: QoS 0 messages dropped while detached.
        dropped_expired: messages dropped because they expired before their first send.
        dropped_too_large: packets dropped because they exceed the client's Maximum Packet Size.
    """

    inflight: int
    queued: int
    inbound_qos2: int
    dropped_queue_full: int
    dropped_offline: int
    dropped_expired: int
    dropped_too_large: int


_AWAIT_ACK: Final = "publish"  # PUBLISH sent (or to be sent); waiting for PUBACK / PUBREC
_AWAIT_COMP: Final = "pubrel"  # PUBREL sent; waiting for PUBCOMP


@dataclass(slots=True)
class _Outgoing:
    """One delivery of a message to this client (mutable, private)."""

    message: Message
    qos: int
    retain: bool
    subscription_identifiers: tuple[int, ...]
    packet_id: int | None = None
    state: str = _AWAIT_ACK
    sent: bool = False  # the PUBLISH went out at least once: a re-send carries DUP=1
    on_wire: bool = False  # written (or queued for writing) on the current connection


class Session:
    """The state of one client's session; see the module contract.

    Args:
        client_id: the client identifier (informational; the broker keys sessions by it).
        config: the limits.
    """

    def __init__(self, client_id: str, config: SessionConfig | None = None) -> None:
        self.client_id = client_id
        self.config = config if config is not None else SessionConfig()
        self._inflight: dict[int, _Outgoing] = {}  # packet id -> delivery, in send order
        self._queue: deque[_Outgoing] = deque()
        self._inbound_qos2: set[int] = set()  # packet ids from PUBREC until PUBREL (§4.3.3)
        self._next_id = 1
        self._dropped_queue_full = 0
        self._dropped_offline = 0
        self._dropped_expired = 0
        self._dropped_too_large = 0
        # Per connection (reset by attach/detach):
        self._level: int | None = None
        self._pending: list[bytes | _Outgoing] = []
        self._pending_qos0 = 0
        self._on_wire = 0
        self._window = 0
        self._receive_maximum = 65535  # ours, from the CONNACK
        self._alias_maximum_in = 0  # ours, from the CONNACK
        self._alias_maximum_out = 0  # the client's, from the CONNECT
        self._max_packet_size: int | None = None  # the client's, from the CONNECT
        self._problem_information = True  # the client's Request Problem Information, from the CONNECT
        self._aliases_in: dict[int, str] = {}
        self._aliases_out: dict[str, int] = {}

    # --- connection lifecycle ------------------------------------------------------------------------

    @property
    def attached(self) -> bool:
        """Whether a connection is attached."""
        return self._level is not None

    @property
    def protocol_level(self) -> int | None:
        """The attached connection's protocol level, ``None`` while detached."""
        return self._level

    def attach(self, connect: Connect, connack: Connack) -> None:
        """Start a connection: queue the CONNACK, then the re-sends, then queued messages.

        Args:
            connect: the client's CONNECT (its level, Receive Maximum, Topic Alias Maximum and Maximum
                Packet Size govern what we send).
            connack: our successful CONNACK (its Receive Maximum and Topic Alias Maximum govern what we
                accept).

        Raises:
            ValueError: the CONNACK reports a failure; a refused client gets no session.
        """
        if connack.reason_code.is_failure:
            raise ValueError("attach needs a successful CONNACK")
        if self._level is not None:
            self.detach()
        level = connect.protocol_level
        self._level = level
        client = connect.properties if level == 5 else NO_PROPERTIES
        ours = connack.properties if level == 5 else NO_PROPERTIES
        self._window = min(self.config.max_inflight, client.receive_maximum or _MAX_PACKET_ID)
        self._alias_maximum_out = client.topic_alias_maximum or 0
        self._max_packet_size = client.maximum_packet_size
        self._problem_information = client.request_problem_information is not False
        self._receive_maximum = ours.receive_maximum or _MAX_PACKET_ID
        self._alias_maximum_in = ours.topic_alias_maximum or 0
        self.send_packet(connack)
        for entry in self._inflight.values():
            if self._on_wire >= self._window:
                break  # a smaller Receive Maximum than last time: the rest follow as acks free slots
            self._put_on_wire(entry)
        self._fill()

    def detach(self) -> None:
        """End the connection: unsent output is discarded, in-flight and queued messages stay."""
        self._level = None
        self._pending.clear()
        self._pending_qos0 = 0
        self._on_wire = 0
        self._aliases_in.clear()
        self._aliases_out.clear()
        for entry in self._inflight.values():
            entry.on_wire = False

    # --- output --------------------------------------------------------------------------------------

    def send_packet(self, packet: Packet) -> None:
        """Queue a packet for the wire after everything queued before it.

        For PUBLISH use :meth:`deliver` (it owns packet identifiers and aliases).

        Args:
            packet: the packet, e.g. SUBACK, UNSUBACK, PINGRESP, DISCONNECT, AUTH.

        Raises:
            RuntimeError: no connection is attached.
            EncodeError: the packet cannot be encoded.
        """
        level = self._level
        if level is None:
            raise RuntimeError(f"session {self.client_id!r} has no connection to send {packet!r} on")
        properties: Properties = getattr(packet, "properties", NO_PROPERTIES)
        if (
            properties is not NO_PROPERTIES
            and not self._problem_information
            and (properties.reason_string is not None or properties.user_properties)
            and not isinstance(packet, Connack | Disconnect)
        ):
            # MQTT-3.1.2-29: the client asked for no Reason String or User Properties on this packet.
            packet = _with_properties(packet, properties._replace(reason_string=None, user_properties=()))
        data = encode_packet(packet, protocol_level=level)
        limit = self._max_packet_size
        if limit is not None and len(data) > limit:
            data = self._shrink(packet, level, limit)
            if not data:
                return
        self._pending.append(data)

    def _shrink(self, packet: Packet, level: int, limit: int) -> bytes:
        # Leave out Reason String and User Properties rather than exceed the client's Maximum Packet Size
        # (MQTT-3.2.2-19/-20, MQTT-3.4.2-2/-3 and the like per packet); if that is not enough, the packet
        # is not sent (MQTT-3.1.2-24/-25).
        properties: Properties | None = getattr(packet, "properties", None)
        if properties:
            smaller = properties._replace(reason_string=None, user_properties=())
            data = encode_packet(_with_properties(packet, smaller), protocol_level=level)
            if len(data) <= limit:
                return data
        self._dropped_too_large += 1
        return b""

    def outbound(self, now: float | None = None) -> bytes:
        """Take everything queued for the wire, encoded, in order.

        Args:
            now: the I/O layer's clock (the one given to :meth:`receive_publish`): messages that expired
                before their first send are dropped, the others carry their remaining expiry interval.
                ``None`` sends the original intervals.

        Returns:
            The bytes to write (empty when there is nothing to send).
        """
        pending = self._pending
        if not pending:
            return b""
        out: list[bytes] = []
        i = 0
        # Dropping an in-flight message frees a slot, which may append more entries while we iterate.
        while i < len(pending):
            item = pending[i]
            i += 1
            if type(item) is bytes:
                out.append(item)
            else:
                data = self._encode_publish(item, now)  # type: ignore[arg-type]
                if data:
                    out.append(data)
        pending.clear()
        self._pending_qos0 = 0
        return b"".join(out)

    def _encode_publish(self, entry: _Outgoing, now: float | None) -> bytes:
        message = entry.message
        level = self._level
        assert level is not None  # pending is cleared on detach
        packet_id = entry.packet_id
        if entry.qos and (
            packet_id is None or self._inflight.get(packet_id) is not entry or entry.state != _AWAIT_ACK
        ):
            return b""  # acknowledged (by a confused client) or dropped while waiting to be written
        expiry = message.properties.message_expiry_interval
        if message.expires_at is not None and now is not None:
            remaining = message.expires_at - now
            if remaining <= 0 and not entry.sent:
                # MQTT-3.3.2-5: not yet on its way to this subscriber, so it is deleted.
                self._dropped_expired += 1
                self._complete(entry)
                return b""
            expiry = max(0, math.ceil(remaining))
        alias = None
        alias_only = False
        new_alias = False
        if self._alias_maximum_out and level == 5:
            alias = self._aliases_out.get(message.topic)
            if alias is not None:
                alias_only = True
            elif len(self._aliases_out) < self._alias_maximum_out:
                alias = len(self._aliases_out) + 1
                self._aliases_out[message.topic] = alias
                new_alias = True
        data = message.template().encode(
            protocol_level=level,
            qos=entry.qos,
            packet_id=entry.packet_id,
            dup=entry.sent and entry.qos > 0,
            retain=entry.retain,
            message_expiry_interval=expiry,
            topic_alias=alias,
            alias_only=alias_only,
            subscription_identifiers=entry.subscription_identifiers,
        )
        limit = self._max_packet_size
        if limit is not None and len(data) > limit:
            if new_alias:
                del self._aliases_out[message.topic]  # the client never saw it
            # MQTT-3.1.2-24/-25: never send it; discard it and behave as if it had been delivered.
            self._dropped_too_large += 1
            self._complete(entry)
            return b""
        entry.sent = True
        return data

    # --- towards the client --------------------------------------------------------------------------

    def deliver(
        self,
        message: Message,
        *,
        qos: int,
        retain: bool = False,
        subscription_identifiers: Sequence[int] = (),
    ) -> Outcome:
        """Send ``message`` to this client, now or when the window or the connection allows.

        Args:
            message: the message (shared by all receivers; never changed).
            qos: the delivery QoS: the caller has already taken the minimum of the message's QoS and the
                subscription's (MQTT-3.8.4-6).
            retain: the RETAIN flag to deliver with (MQTT-3.3.1-8/-9, Retain As Published).
            subscription_identifiers: the identifiers of the client's matching subscriptions (5.0).

        Returns:
            What happened to it.

        Raises:
            ValueError: ``qos`` or a subscription identifier is out of range.
            EncodeError: the message cannot be encoded (checked here, once per message, so that
                :meth:`outbound` cannot fail half-way).
        """
        if qos not in (0, 1, 2):
            raise ValueError(f"delivery QoS {qos!r} is not 0, 1 or 2")
        if subscription_identifiers and not all(0 < sid <= 268_435_455 for sid in subscription_identifiers):
            raise ValueError(f"subscription identifiers {subscription_identifiers!r} are not in 1..268435455")
        message.template()  # encodes the shared parts now, for every receiver
        entry = _Outgoing(message, qos, retain, tuple(subscription_identifiers))
        if qos == 0:
            if self._level is None:
                self._dropped_offline += 1
                return Outcome.DROPPED_OFFLINE
            if self._pending_qos0 >= self.config.max_pending_qos0:
                self._dropped_queue_full += 1
                return Outcome.DROPPED_QUEUE_FULL
            self._pending_qos0 += 1
            self._pending.append(entry)
            return Outcome.SENT
        if self._level is not None and not self._queue and len(self._inflight) < self._window:
            self._admit(entry)
            return Outcome.SENT
        if len(self._queue) >= self.config.max_queued:
            self._dropped_queue_full += 1
            return Outcome.DROPPED_QUEUE_FULL
        self._queue.append(entry)
        return Outcome.QUEUED

    def _allocate_packet_id(self) -> int:
        packet_id = self._next_id
        inflight = self._inflight
        while packet_id in inflight:  # MQTT-2.3.1-2: never reuse an identifier still in flight
            packet_id = packet_id % _MAX_PACKET_ID + 1
        self._next_id = packet_id % _MAX_PACKET_ID + 1  # 65535 wraps to 1: 0 is not an identifier
        return packet_id

    def _admit(self, entry: _Outgoing) -> None:
        entry.packet_id = self._allocate_packet_id()
        self._inflight[entry.packet_id] = entry
        self._put_on_wire(entry)

    def _put_on_wire(self, entry: _Outgoing) -> None:
        entry.on_wire = True
        self._on_wire += 1
        if entry.state == _AWAIT_ACK:
            self._pending.append(entry)
        else:
            assert entry.packet_id is not None
            self.send_packet(PubRel(entry.packet_id))

    def _complete(self, entry: _Outgoing) -> None:
        """End a QoS 1/2 flow (or a dropped QoS 0 write) and refill the window."""
        if entry.packet_id is None:
            return
        del self._inflight[entry.packet_id]
        if entry.on_wire:
            self._on_wire -= 1
        self._fill()

    def _fill(self) -> None:
        if self._level is None:
            return
        if self._on_wire < len(self._inflight):
            for entry in self._inflight.values():
                if self._on_wire >= self._window:
                    return
                if not entry.on_wire:
                    self._put_on_wire(entry)
        queue = self._queue
        while queue and len(self._inflight) < self._window:
            self._admit(queue.popleft())

    # --- acknowledgements from the client ------------------------------------------------------------

    def receive_ack(self, packet: PubAck | PubRec | PubRel | PubComp) -> Message | None:
        """Handle any of PUBACK, PUBREC, PUBREL, PUBCOMP from the client.

        Args:
            packet: the acknowledgement.

        Returns:
            The message whose delivery to the client just completed, if one did.
        """
        if isinstance(packet, PubAck):
            return self.receive_puback(packet)
        if isinstance(packet, PubRec):
            return self.receive_pubrec(packet)
        if isinstance(packet, PubRel):
            self.receive_pubrel(packet)
            return None
        return self.receive_pubcomp(packet)

    def receive_puback(self, packet: PubAck) -> Message | None:
        """PUBACK: a QoS 1 delivery is done (§4.3.2).

        Returns:
            The acknowledged message, or ``None`` for an identifier not awaiting PUBACK.
        """
        entry = self._inflight.get(packet.packet_id)
        if entry is None or entry.qos != 1:
            return None
        self._complete(entry)
        return entry.message

    def receive_pubrec(self, packet: PubRec) -> Message | None:
        """PUBREC: answer PUBREL, or end the flow on a 5.0 failure code (§4.3.3).

        Returns:
            The message if the flow ended here (failure code), else ``None``.
        """
        entry = self._inflight.get(packet.packet_id)
        if entry is None or entry.qos != 2:
            if self._level == 5:
                self.send_packet(PubRel(packet.packet_id, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND))
            return None
        if packet.reason_code.is_failure:
            self._complete(entry)
            return entry.message
        entry.state = _AWAIT_COMP  # a repeated PUBREC just gets PUBREL again
        self.send_packet(PubRel(packet.packet_id))
        return None

    def receive_pubcomp(self, packet: PubComp) -> Message | None:
        """PUBCOMP: a QoS 2 delivery is done (§4.3.3).

        Returns:
            The completed message, or ``None`` for an identifier not awaiting PUBCOMP.
        """
        entry = self._inflight.get(packet.packet_id)
        if entry is None or entry.state != _AWAIT_COMP:
            return None
        self._complete(entry)
        return entry.message

    # --- publications from the client ----------------------------------------------------------------

    def receive_publish(self, packet: Publish, *, now: float | None = None) -> Inbound:
        """Take a PUBLISH from the client; answer it with :meth:`acknowledge` after routing it.

        Args:
            packet: the decoded PUBLISH.
            now: the I/O layer's clock, to stamp :attr:`Message.expires_at`; ``None`` leaves it unset.

        Returns:
            The resolved message and whether it is a QoS 2 duplicate.

        Raises:
            ProtocolError: topic alias 0 or above our maximum (0x94), an unknown alias with an empty topic
                (0x82), or more unacknowledged QoS 1/2 messages than our Receive Maximum (0x93).
        """
        topic = packet.topic
        properties = packet.properties
        if properties is not NO_PROPERTIES:
            alias = properties.topic_alias
            if alias is not None:
                if not 0 < alias <= self._alias_maximum_in:
                    raise ProtocolError(
                        ReasonCode.TOPIC_ALIAS_INVALID,
                        f"topic alias {alias} is not in 1..{self._alias_maximum_in} (MQTT-3.3.2-12)",
                    )
                if topic:
                    self._aliases_in[alias] = topic
                else:
                    known = self._aliases_in.get(alias)
                    if known is None:
                        raise ProtocolError(ReasonCode.PROTOCOL_ERROR, f"topic alias {alias} is not set up")
                    topic = known
            if alias is not None or properties.subscription_identifiers:
                properties = properties._replace(topic_alias=None, subscription_identifiers=())
        qos = packet.qos
        duplicate = False
        if qos:
            duplicate = qos == 2 and packet.packet_id in self._inbound_qos2
            if not duplicate and self._level == 5 and len(self._inbound_qos2) >= self._receive_maximum:
                raise ProtocolError(
                    ReasonCode.RECEIVE_MAXIMUM_EXCEEDED,
                    f"more than {self._receive_maximum} unacknowledged QoS 1/2 PUBLISH (MQTT-3.3.4-7)",
                )
        message = Message(topic, packet.payload, qos, packet.retain, properties, _expiry(properties, now))
        return Inbound(message, qos, packet.packet_id, duplicate)

    def acknowledge(
        self, inbound: Inbound, reason_code: ReasonCode = ReasonCode.SUCCESS, reason_string: str | None = None
    ) -> None:
        """Answer a received PUBLISH: PUBACK for QoS 1, PUBREC for QoS 2, nothing for QoS 0.

        Args:
            inbound: what :meth:`receive_publish` returned.
            reason_code: the outcome (5.0): e.g. ``NOT_AUTHORIZED`` or ``NO_MATCHING_SUBSCRIBERS``; a 3.1.1
                client only sees an acknowledgement. A QoS 2 duplicate is always acknowledged with success.
            reason_string: why (5.0 Reason String), sent with a failure code.
        """
        properties = (
            Properties(reason_string=reason_string)
            if reason_string and reason_code.is_failure
            else NO_PROPERTIES
        )
        packet_id = inbound.packet_id
        if packet_id is None:
            return
        if inbound.qos == 1:
            if reason_code == ReasonCode.SUCCESS or self._level != 5:
                # The common case, written directly: the same four bytes encode_packet would produce.
                self._pending.append(b"\x40\x02" + packet_id.to_bytes(2, "big"))
            else:
                self.send_packet(PubAck(packet_id, reason_code, properties))
            return
        if inbound.duplicate:
            reason_code = ReasonCode.SUCCESS
        elif not reason_code.is_failure or self._level != 5:
            # A 5.0 PUBREC with a failure code ends the flow (§4.3.3); otherwise wait for PUBREL.
            self._inbound_qos2.add(packet_id)
        self.send_packet(PubRec(packet_id, reason_code, properties))

    def receive_pubrel(self, packet: PubRel) -> None:
        """PUBREL: release the identifier and answer PUBCOMP, for an unknown identifier too (§4.3.3)."""
        if packet.packet_id in self._inbound_qos2:
            self._inbound_qos2.discard(packet.packet_id)
            self.send_packet(PubComp(packet.packet_id))
        else:
            self.send_packet(PubComp(packet.packet_id, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND))

    # --- inspection and persistence ------------------------------------------------------------------

    def statistics(self) -> SessionStatistics:
        """A snapshot of the counters."""
        return SessionStatistics(
            inflight=len(self._inflight),
            queued=len(self._queue),
            inbound_qos2=len(self._inbound_qos2),
            dropped_queue_full=self._dropped_queue_full,
            dropped_offline=self._dropped_offline,
            dropped_expired=self._dropped_expired,
            dropped_too_large=self._dropped_too_large,
        )

    def to_state(self) -> dict[str, Any]:
        """The persistent session state as JSON-able data (dicts, lists, str, int, float, bool, None).

        Returns:
            The state; bytes are base64 text. Per-connection state (aliases, unsent output) is not in it.
        """
        return {
            "version": _STATE_VERSION,
            "client_id": self.client_id,
            "next_packet_id": self._next_id,
            "inflight": [_entry_to_json(entry) for entry in self._inflight.values()],
            "queue": [_entry_to_json(entry) for entry in self._queue],
            "inbound_qos2": sorted(self._inbound_qos2),
            "dropped": {
                "queue_full": self._dropped_queue_full,
                "offline": self._dropped_offline,
                "expired": self._dropped_expired,
                "too_large": self._dropped_too_large,
            },
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], config: SessionConfig | None = None) -> Session:
        """Rebuild a detached session from :meth:`to_state` data.

        Args:
            state: the data.
            config: the limits now in force (the queue is kept whole even if it is now longer).

        Returns:
            The session, detached.

        Raises:
            ValueError: the data is not a session state this version understands.
        """
        try:
            if state["version"] != _STATE_VERSION:
                raise ValueError(f"unknown session state version {state['version']!r}")
            session = cls(str(state["client_id"]), config)
            session._next_id = int(state["next_packet_id"])
            for item in state["inflight"]:
                entry = _entry_from_json(item)
                packet_id = entry.packet_id
                if packet_id is None or not 0 < packet_id <= _MAX_PACKET_ID or packet_id in session._inflight:
                    raise ValueError(f"in-flight entry with packet identifier {packet_id!r}")
                session._inflight[packet_id] = entry
            session._queue.extend(_entry_from_json(item) for item in state["queue"])
            session._inbound_qos2.update(int(ident) for ident in state["inbound_qos2"])
            dropped = state["dropped"]
            session._dropped_queue_full = int(dropped["queue_full"])
            session._dropped_offline = int(dropped["offline"])
            session._dropped_expired = int(dropped["expired"])
            session._dropped_too_large = int(dropped["too_large"])
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not a session state: {error!r}") from None
        if not 1 <= session._next_id <= _MAX_PACKET_ID:
            raise ValueError(f"next packet identifier {session._next_id} is not in 1..65535")
        return session


def _with_properties(packet: Packet, properties: Properties) -> Packet:
    changed: Packet = replace(cast("Any", packet), properties=properties)
    return changed


_BINARY_PROPERTIES: Final = frozenset({"correlation_data", "authentication_data"})


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def properties_to_json(properties: Properties) -> dict[str, Any]:
    """5.0 properties as JSON-able data (the fields that are set; binary values as base64 text), as a
    persisted session, a queued message or a retained value stores them. Inverse of
    :func:`properties_from_json`."""
    out: dict[str, Any] = {}
    value: Any
    for name, value in zip(properties._fields, properties, strict=True):
        if value is None or value == ():
            continue
        if name in _BINARY_PROPERTIES:
            value = _b64(value)
        elif name == "user_properties":
            value = [[key, text] for key, text in value]
        elif name == "subscription_identifiers":
            value = list(value)
        out[name] = value
    return out


def properties_from_json(data: dict[str, Any]) -> Properties:
    """The properties :func:`properties_to_json` wrote.

    Raises:
        ValueError: an unknown property name.
    """
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name not in Properties._fields:
            raise ValueError(f"unknown property {name!r}")
        if name in _BINARY_PROPERTIES:
            value = base64.b64decode(value)
        elif name == "user_properties":
            value = tuple((str(key), str(text)) for key, text in value)
        elif name == "subscription_identifiers":
            value = tuple(int(sid) for sid in value)
        values[name] = value
    return Properties(**values) if values else NO_PROPERTIES


def _message_to_json(message: Message) -> dict[str, Any]:
    return {
        "topic": message.topic,
        "payload": _b64(message.payload),
        "qos": message.qos,
        "retain": message.retain,
        "properties": properties_to_json(message.properties),
        "expires_at": message.expires_at,
    }


def _message_from_json(data: dict[str, Any]) -> Message:
    expires_at = data["expires_at"]
    return Message(
        str(data["topic"]),
        base64.b64decode(data["payload"]),
        int(data["qos"]),
        bool(data["retain"]),
        properties_from_json(data["properties"]),
        None if expires_at is None else float(expires_at),
    )


def _entry_to_json(entry: _Outgoing) -> dict[str, Any]:
    return {
        "message": _message_to_json(entry.message),
        "qos": entry.qos,
        "retain": entry.retain,
        "subscription_identifiers": list(entry.subscription_identifiers),
        "packet_id": entry.packet_id,
        "state": entry.state,
        "sent": entry.sent,
    }


def _entry_from_json(data: dict[str, Any]) -> _Outgoing:
    state = data["state"]
    if state not in (_AWAIT_ACK, _AWAIT_COMP):
        raise ValueError(f"unknown delivery state {state!r}")
    qos = int(data["qos"])
    if qos not in (1, 2):
        raise ValueError(f"a persisted delivery has QoS 1 or 2, not {qos}")
    packet_id = data["packet_id"]
    return _Outgoing(
        _message_from_json(data["message"]),
        qos,
        bool(data["retain"]),
        tuple(int(sid) for sid in data["subscription_identifiers"]),
        None if packet_id is None else int(packet_id),
        state,
        bool(data["sent"]),
    )
