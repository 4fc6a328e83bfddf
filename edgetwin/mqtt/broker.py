"""The MQTT broker's Trio layer: listeners, connections, routing, retained values, sessions, wills.

The protocol is the pure rooms' (``codec`` decodes and encodes, ``session`` keeps each client's packet ids,
windows, queues and QoS flows, ``trie`` says who gets a message, ``topics`` checks names and permissions);
this module moves bytes, keeps time and owns the shared state. Durable state goes through
:class:`~edgetwin.core.mqtt_store.BrokerStore`.

Contract:

* **Listeners**: TCP on ``mqtt.bind``, TLS on ``mqtt.tls_bind`` (``mqtt.tls_cert_file``/``tls_key_file``),
  MQTT over WebSocket on ``mqtt.websocket_bind`` (:mod:`edgetwin.mqtt.websocket`), in the root nursery;
  :func:`serve_mqtt` reports the bound addresses once listening. On shutdown every connection is closed;
  5.0 clients first get DISCONNECT 0x8B (server shutting down).
* **CONNECT** must come first, within :data:`CONNECT_TIMEOUT_S`; a second CONNECT, or any malformed packet,
  closes the connection (5.0: DISCONNECT with the decoder's reason code). An unknown protocol level gets
  CONNACK 1 / 0x84. An empty client id is assigned (5.0: Assigned Client Identifier), except for a 3.1.1
  persistent session (CONNACK 2, MQTT-3.1.3-8). Credentials: a built-in user's name and password, or a JWT
  as the password; without a user name only when ``mqtt.allow_anonymous`` (with ``anonymous_publish`` /
  ``anonymous_subscribe``). Refusals: CONNACK 4 / 0x86 bad credentials, 5 / 0x87 not authorised, 3 / 0x97
  beyond ``mqtt.max_connections``, 0x8C for enhanced authentication (not supported).
* **Sessions**: a connected client id that connects again is taken over (the old connection gets 5.0
  DISCONNECT 0x8E, its will is published). Clean start discards the old session. The session lives on
  after the connection for its expiry interval (5.0 Session Expiry Interval, updatable in DISCONNECT; 3.1.1
  persistent sessions never expire); sessions that outlive a connection are persisted with their
  subscriptions and their QoS 1/2 messages, and survive a restart.
* **Publishing**: a client publishes only to topics its publish filters allow (and never to ``$SYS`` or
  ``$share``); otherwise 3.1.1 drops the message (acknowledged all the same) and 5.0 answers 0x87. A
  message is routed through the trie (highest granted QoS per client, every subscription identifier,
  no-local, one member per shared group) with delivery QoS ``min(published, granted)`` and RETAIN 0 unless
  Retain As Published. PUBACK/PUBREC go out only once the message is durably queued for every persistent
  session that must get it, and the retained value is durably set or deleted (an empty retained payload
  deletes, MQTT-3.3.1-10/-11, and is still delivered).
* **Subscribing**: per filter, 0x87 (3.1.1: 0x80) when the subscribe filters do not cover it, 0x8F (0x80)
  when it is invalid; granted QoS up to 2; retained messages are sent with RETAIN 1 per Retain Handling.
  ``$SYS/broker/...`` statistics (retained in memory) are published every ``mqtt.sys_interval_s``.
* **Keep alive**: a client that sends nothing for 1.5 x its keep alive is disconnected (5.0: 0x8D) and its
  will published; a keep alive above ``mqtt.max_keep_alive_s`` is lowered to it (Server Keep Alive).
* **Wills** are published when a connection ends without a DISCONNECT (or with 5.0 reason 0x04), after the
  5.0 Will Delay Interval (at most the session expiry), unless the client is back by then.
* **Robustness**: each connection's errors end that connection only; a slow subscriber never stalls
  publishers (its session queues are bounded: overflow is counted and logged); a peer that takes nothing
  for :data:`SEND_TIMEOUT_S` is disconnected.
"""

from __future__ import annotations

import contextlib
import logging
import math
import ssl
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

import trio

from edgetwin.config import MqttSettings, parse_bind
from edgetwin.core.mqtt_store import BrokerStore, QueuedMessage, RetainedMessage, SessionRecord
from edgetwin.errors import EdgeTwinError, Unauthenticated
from edgetwin.mqtt.codec import (
    NO_PROPERTIES,
    Auth,
    Connack,
    Connect,
    DecodeError,
    Disconnect,
    EncodeError,
    PacketReader,
    PingReq,
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
    Subscribe,
    UnsubAck,
    Unsubscribe,
    UnsupportedProtocolVersion,
    encode_packet,
)
from edgetwin.mqtt.session import (
    Inbound,
    Message,
    Outcome,
    Session,
    SessionConfig,
    properties_from_json,
    properties_to_json,
)
from edgetwin.mqtt.topics import TopicError, TopicPermissions, matches
from edgetwin.mqtt.trie import SubscriptionOptions, SubscriptionTrie, literal_prefix, split_shared

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from edgetwin.core.commands import AuthContext

__all__ = ["CONNECT_TIMEOUT_S", "Broker", "CredentialChecker", "serve_mqtt"]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 10.0
SEND_TIMEOUT_S: Final = 30.0
RECEIVE_BYTES: Final = 65536
NEVER: Final = 0xFFFFFFFF
TOPIC_ALIAS_MAXIMUM: Final = 10
PIPELINE: Final = 256
"""Publications of one connection being made durable at once before its reader waits (TCP backpressure)."""
_ANONYMOUS: Final = "anonymous"
_REASONS: Final = {
    ReasonCode.BAD_USER_NAME_OR_PASSWORD: "bad user name or password",
    ReasonCode.NOT_AUTHORIZED: "not authorized: credentials are required (mqtt.allow_anonymous is off)",
    ReasonCode.QUOTA_EXCEEDED: "too many connections (mqtt.max_connections)",
    ReasonCode.CLIENT_IDENTIFIER_NOT_VALID: "an empty client id needs a clean session",
    ReasonCode.BAD_AUTHENTICATION_METHOD: "enhanced authentication is not supported",
    ReasonCode.SERVER_SHUTTING_DOWN: "the server is shutting down",
    ReasonCode.SESSION_TAKEN_OVER: "another connection took over this client id",
    ReasonCode.KEEP_ALIVE_TIMEOUT: "nothing received for 1.5 times the keep alive",
    ReasonCode.MALFORMED_PACKET: "malformed packet",
    ReasonCode.PROTOCOL_ERROR: "protocol error",
    ReasonCode.PACKET_TOO_LARGE: "packet larger than mqtt.max_packet_size",
}
_REFUSED_311: Final = {
    ReasonCode.UNSUPPORTED_PROTOCOL_VERSION: 1,
    ReasonCode.CLIENT_IDENTIFIER_NOT_VALID: 2,
    ReasonCode.SERVER_UNAVAILABLE: 3,
    ReasonCode.QUOTA_EXCEEDED: 3,
    ReasonCode.BAD_USER_NAME_OR_PASSWORD: 4,
    ReasonCode.NOT_AUTHORIZED: 5,
}


class CredentialChecker(Protocol):
    """What the broker needs of :class:`edgetwin.api.auth.Authenticator`."""

    async def authenticate_credentials(
        self, username: str | None, password: bytes | None, *, client_host: str | None = None
    ) -> tuple[AuthContext, float]: ...


class _Closed(Exception):
    """The connection ends; ``reason`` is sent to 5.0 clients first (``None``: nothing is sent)."""

    def __init__(self, reason: ReasonCode | None, graceful: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.graceful = graceful


@dataclass(eq=False)
class _Connection:
    stream: Any
    level: int
    wake: trio.Event = field(default_factory=trio.Event)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)
    kicked: ReasonCode | None = None
    pipeline: trio.MemorySendChannel[_Publication] | None = None
    in_pipeline: int = 0


@dataclass(eq=False)
class _Plan:
    """A message's route: who gets it and how, and what must be durable first."""

    message: Message
    targets: list[tuple[_Client, int, bool, tuple[int, ...], bool]]
    retain_op: RetainedMessage | str | None
    queued: list[tuple[str, QueuedMessage]]

    @property
    def durable(self) -> bool:
        return self.retain_op is not None or bool(self.queued)


@dataclass(eq=False)
class _Publication:
    """A client's PUBLISH on its way: planned, being made durable, then delivered and acknowledged."""

    inbound: Inbound
    plan: _Plan
    done: trio.Event = field(default_factory=trio.Event)
    seqs: list[int] = field(default_factory=list)
    error: EdgeTwinError | None = None


@dataclass(eq=False)
class _Client:
    client_id: str
    session: Session
    publish: TopicPermissions
    subscribe: TopicPermissions
    expiry_interval: int = 0
    level: int = 4
    connection: _Connection | None = None
    will_scope: trio.CancelScope | None = None
    expiry_scope: trio.CancelScope | None = None
    overflowed: int = 0
    # Queue records of persisted deliveries not yet acknowledged: id(message) -> sequence numbers.
    records: dict[int, list[int]] = field(default_factory=dict)

    @property
    def persistent(self) -> bool:
        return self.expiry_interval > 0

    def wake(self) -> None:
        if self.connection is not None:
            self.connection.wake.set()


class Broker:
    """The broker's state and connection handling.

    Args:
        settings: ``[mqtt]``.
        authenticator: checks CONNECT credentials.
        store: retained messages and persistent sessions.
        clock: seconds since the epoch (message and session expiry).
    """

    def __init__(
        self,
        settings: MqttSettings,
        authenticator: CredentialChecker,
        store: BrokerStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._auth = authenticator
        self._store = store
        self._clock = clock
        self._trie: SubscriptionTrie[str] = SubscriptionTrie()
        self._clients: dict[str, _Client] = {}
        self._connections: set[_Connection] = set()
        self._session_config = SessionConfig(
            max_inflight=settings.max_inflight,
            max_queued=settings.max_queued,
            # QoS 0 written but not yet on the wire: room for bursts to a subscriber that keeps up.
            max_pending_qos0=10 * settings.max_queued,
        )
        self._anonymous = (
            TopicPermissions.compile(settings.anonymous_publish),
            TopicPermissions.compile(settings.anonymous_subscribe),
        )
        self._sys: dict[str, bytes] = {}
        self._nursery: trio.Nursery | None = None
        self._pending_expiries: dict[str, float] = {}
        self._attaching: dict[str, trio.Lock] = {}
        self._stopping = False
        self.received = 0
        self.sent = 0
        self.dropped = 0
        self.started_at = clock()

    # --------------------------------------------------------------- running

    def restore(self) -> int:
        """Load the persisted sessions (before listening). Returns how many."""
        now = self._clock()
        restored = 0
        for record, queued in self._store.load_sessions():
            client = _Client(
                record.client_id,
                Session(record.client_id, self._session_config),
                TopicPermissions.compile(()),
                TopicPermissions.compile(()),
                record.expiry_interval,
                record.protocol_level,
            )
            self._clients[record.client_id] = client
            for topic_filter, options in record.subscriptions.items():
                with contextlib.suppress(TopicError, ValueError):
                    self._trie.subscribe(topic_filter, record.client_id, SubscriptionOptions(**options))
            for seq, item in queued:
                properties = properties_from_json(item.properties)
                message = Message(
                    item.topic, item.payload, item.qos, item.retain, properties, item.expires_at
                )
                outcome = client.session.deliver(message, qos=item.qos, retain=item.retain)
                if outcome is Outcome.QUEUED or outcome is Outcome.SENT:
                    client.records.setdefault(id(message), []).append(seq)
                else:
                    self._store.acknowledged(record.client_id, seq)
            if record.expiry_interval != NEVER and record.disconnected_at is not None:
                remaining = record.disconnected_at + record.expiry_interval - now
                self._schedule_expiry_later(client, max(remaining, 0.0))
            restored += 1
        return restored

    async def run(self, nursery: trio.Nursery) -> None:
        """Background work: the queue-record batches and ``$SYS`` statistics (until cancelled)."""
        self._nursery = nursery
        for client_id, delay in self._pending_expiries.items():  # restored sessions' remaining lifetimes
            if client_id in self._clients:
                self._schedule_expiry(self._clients[client_id], delay)
        self._pending_expiries.clear()
        nursery.start_soon(self._store.serve)
        if self._settings.sys_interval_s > 0:
            nursery.start_soon(self._publish_sys)

    def _schedule_expiry_later(self, client: _Client, delay: float) -> None:
        if self._nursery is None:
            self._pending_expiries[client.client_id] = delay
        else:
            self._schedule_expiry(client, delay)

    def close_all(self) -> None:
        """Shutdown: end every connection (5.0 clients get DISCONNECT 0x8B first)."""
        self._stopping = True
        for connection in list(self._connections):
            connection.kicked = ReasonCode.SERVER_SHUTTING_DOWN
            connection.scope.cancel()

    async def wait_closed(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until every connection has ended."""
        with trio.move_on_after(timeout_s):
            await trio.lowlevel.checkpoint()
            while self._connections:
                await next(iter(self._connections)).done.wait()

    # ----------------------------------------------------------- connection

    async def handle(self, stream: Any) -> None:
        """Serve one client connection until it ends; never raises."""
        connection: _Connection | None = None
        try:
            connection = await self._serve(stream)
        except Exception:
            logger.exception("MQTT connection failed")
        finally:
            if connection is not None:
                self._connections.discard(connection)
                connection.done.set()
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await stream.aclose()

    async def _serve(self, stream: Any) -> _Connection | None:
        reader = PacketReader(role="server", max_packet_size=self._settings.max_packet_size)
        try:
            connect = await self._read_connect(stream, reader)
        except UnsupportedProtocolVersion:
            await _send(stream, b"\x20\x02\x00\x01")  # same bytes for 3.1.1 and 5.0 clients (MQTT-3.1.2-2)
            return None
        except (DecodeError, _Closed, trio.TooSlowError):
            return None
        level = connect.protocol_level
        host = _peer_host(stream)
        refusal, auth = await self._authenticate(connect, host)
        if refusal is None and len(self._connections) >= self._settings.max_connections:
            refusal = ReasonCode.QUOTA_EXCEEDED
            logger.warning("MQTT connection from %s refused: mqtt.max_connections reached", host)
        client_id = connect.client_id
        assigned = None
        if refusal is None and not client_id:
            if level != 5 and not connect.clean_start:
                refusal = ReasonCode.CLIENT_IDENTIFIER_NOT_VALID  # MQTT-3.1.3-8
            else:
                client_id = assigned = f"edgetwin-{uuid.uuid4().hex[:16]}"
        if refusal is not None:
            why = Properties(reason_string=_REASONS.get(refusal, "refused"))
            await _send(stream, _connack_bytes(Connack(False, refusal, why), level))
            return None
        assert auth is not None
        connection = _Connection(stream, level)
        self._connections.add(connection)
        client, present = await self._attach(connect, client_id, auth, connection)
        keep_alive = connect.keep_alive
        props: dict[str, Any] = {}
        if level == 5:
            props = {
                "receive_maximum": self._settings.max_inflight,
                "topic_alias_maximum": TOPIC_ALIAS_MAXIMUM,
                "maximum_packet_size": self._settings.max_packet_size,
            }
            if assigned is not None:
                props["assigned_client_identifier"] = assigned
            if keep_alive > self._settings.max_keep_alive_s:
                keep_alive = self._settings.max_keep_alive_s
                props["server_keep_alive"] = keep_alive
        elif keep_alive > self._settings.max_keep_alive_s:
            keep_alive = self._settings.max_keep_alive_s
        client.session.attach(connect, Connack(present, ReasonCode.SUCCESS, Properties(**props)))
        graceful = False
        will = connect.will
        try:
            with connection.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer, client, connection)
                    connection.pipeline, completions = trio.open_memory_channel[_Publication](PIPELINE)
                    nursery.start_soon(self._complete, client, connection, completions)
                    connection.wake.set()
                    try:
                        graceful, will = await self._reader(client, connection, reader, keep_alive, will)
                    except _Closed as closed:
                        graceful = closed.graceful
                        connection.kicked = connection.kicked or closed.reason
                    nursery.cancel_scope.cancel()
            # After the writer stopped: one task sends on a stream at a time.
            if connection.kicked is not None:
                await self._say_goodbye(client, connection, connection.kicked)
        finally:
            with trio.CancelScope(shield=True):
                await self._detach(client, connection, None if graceful else will)
        return connection

    async def _read_connect(self, stream: Any, reader: PacketReader) -> Connect:
        with trio.fail_after(CONNECT_TIMEOUT_S):
            while True:
                packet = reader.next_packet()
                if packet is not None:
                    if not isinstance(packet, Connect):
                        raise _Closed(None)  # MQTT-3.1.0-1
                    return packet
                data = await _receive(stream)
                if not data:
                    raise _Closed(None)
                reader.feed(data)

    async def _authenticate(
        self, connect: Connect, host: str | None
    ) -> tuple[ReasonCode | None, AuthContext | None]:
        if connect.properties.authentication_method is not None:
            return ReasonCode.BAD_AUTHENTICATION_METHOD, None
        if connect.username is None and connect.password is None:
            if not self._settings.allow_anonymous:
                return ReasonCode.NOT_AUTHORIZED, None
            from edgetwin.core.commands import AuthContext

            settings = self._settings
            return None, AuthContext(
                (_ANONYMOUS,), None, settings.anonymous_publish, settings.anonymous_subscribe
            )
        try:
            auth, _ = await self._auth.authenticate_credentials(
                connect.username, connect.password, client_host=host
            )
        except Unauthenticated:
            return ReasonCode.BAD_USER_NAME_OR_PASSWORD, None
        return None, auth

    async def _attach(
        self, connect: Connect, client_id: str, auth: AuthContext, connection: _Connection
    ) -> tuple[_Client, bool]:
        """Take over or resume the client id's session (or start one); returns it and "session present".

        CONNECTs racing for one client id are taken one at a time: each takes over from the one before.
        """
        lock = self._attaching.setdefault(client_id, trio.Lock())
        try:
            async with lock:
                return await self._attach_locked(connect, client_id, auth, connection)
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._attaching.pop(client_id, None)

    async def _attach_locked(
        self, connect: Connect, client_id: str, auth: AuthContext, connection: _Connection
    ) -> tuple[_Client, bool]:
        old = self._clients.get(client_id)
        if old is not None and old.connection is not None:
            previous = old.connection
            previous.kicked = ReasonCode.SESSION_TAKEN_OVER  # MQTT-3.1.4-2
            previous.scope.cancel()
            with trio.move_on_after(5):
                await previous.done.wait()
            old = self._clients.get(client_id)
        if old is not None:
            _cancel(old.will_scope)  # back before its will was due: no will (MQTT-3.1.3-9, will delay)
            _cancel(old.expiry_scope)
            old.will_scope = old.expiry_scope = None
        expiry = _expiry_interval(connect)
        if old is not None and connect.clean_start:
            await self._forget(old)
            old = None
        present = old is not None
        client = old or _Client(
            client_id,
            Session(client_id, self._session_config),
            TopicPermissions.compile(()),
            TopicPermissions.compile(()),
        )
        client.publish = TopicPermissions.compile(auth.publish)
        client.subscribe = TopicPermissions.compile(auth.subscribe)
        client.expiry_interval = expiry
        client.level = connect.protocol_level
        client.connection = connection
        self._clients[client_id] = client
        if client.persistent:
            await self._save(client, connected=True)
        return client, present

    async def _reader(
        self, client: _Client, connection: _Connection, reader: PacketReader, keep_alive: int, will: Any
    ) -> tuple[bool, Any]:
        """Packets in, until a DISCONNECT (returns ``(True, will)``) or the end of the connection."""
        limit = keep_alive * 1.5 if keep_alive else math.inf
        session = client.session
        handled = 0
        while True:  # noqa: ASYNC913 (a checkpoint every 64 packets, and every receive is one)
            handled += 1
            if handled % 64 == 0:
                await trio.lowlevel.checkpoint()  # a buffer full of small packets must not hog the loop
            try:
                packet = reader.next_packet()
            except ProtocolError as err:
                logger.info("MQTT client %s sent a bad packet: %s", client.client_id, err)
                raise _Closed(err.reason_code) from None
            if packet is None:
                with trio.move_on_after(limit) as idle:
                    data = await _receive(connection.stream)
                if idle.cancelled_caught:
                    logger.info("MQTT client %s: keep alive expired", client.client_id)
                    raise _Closed(ReasonCode.KEEP_ALIVE_TIMEOUT)  # MQTT-3.1.2-24
                if not data:
                    raise _Closed(None)
                reader.feed(data)
                continue
            self.received += 1
            try:
                if isinstance(packet, Publish):
                    await self._on_publish(client, packet)
                elif isinstance(packet, (PubAck, PubRec, PubComp)):
                    done = session.receive_ack(packet)
                    if done is not None:
                        self._settled(client, done)
                elif isinstance(packet, PubRel):
                    session.receive_pubrel(packet)
                elif isinstance(packet, Subscribe):
                    await self._on_subscribe(client, packet)
                elif isinstance(packet, Unsubscribe):
                    await self._on_unsubscribe(client, packet)
                elif isinstance(packet, PingReq):
                    session.send_packet(PingResp())
                elif isinstance(packet, Disconnect):
                    if packet.properties.session_expiry_interval is not None and client.level == 5:
                        if client.expiry_interval == 0 and packet.properties.session_expiry_interval:
                            raise _Closed(ReasonCode.PROTOCOL_ERROR)  # MQTT-3.14.2-2
                        client.expiry_interval = packet.properties.session_expiry_interval
                    keep_will = packet.reason_code == ReasonCode.DISCONNECT_WITH_WILL_MESSAGE
                    return not keep_will, will if keep_will else None
                elif isinstance(packet, (Connect, Auth)):
                    raise _Closed(ReasonCode.PROTOCOL_ERROR)  # MQTT-3.1.0-2; enhanced auth unsupported
                else:
                    raise _Closed(ReasonCode.PROTOCOL_ERROR)
            except ProtocolError as err:
                raise _Closed(err.reason_code) from None
            client.wake()

    async def _writer(self, client: _Client, connection: _Connection) -> None:
        while True:
            await connection.wake.wait()
            # One round of the other tasks first: whatever they add for this client goes out in the same write.
            await trio.lowlevel.cancel_shielded_checkpoint()
            connection.wake = trio.Event()
            data = client.session.outbound(now=self._clock())
            if data:
                try:
                    with trio.fail_after(SEND_TIMEOUT_S):
                        await connection.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, OSError):
                    connection.scope.cancel()
                    return

    async def _say_goodbye(self, client: _Client, connection: _Connection, reason: ReasonCode | None) -> None:
        """A 5.0 client is told why the server ends its connection (best effort, bounded)."""
        if reason is None or connection.level != 5:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            why = Properties(reason_string=_REASONS.get(reason, reason.name.lower().replace("_", " ")))
            data = client.session.outbound(now=self._clock()) + encode_packet(
                Disconnect(reason, why), protocol_level=5
            )
            await _send(connection.stream, data)

    async def _detach(self, client: _Client, connection: _Connection, will: Any) -> None:
        """The connection ended: publish or schedule the will, keep or end the session."""
        if self._clients.get(client.client_id) is not client or client.connection is not connection:
            return  # taken over: the new connection owns the session now
        client.connection = None
        client.session.detach()
        if will is not None:
            delay = float(will.properties.will_delay_interval or 0)
            if client.expiry_interval != NEVER:
                delay = min(delay, float(client.expiry_interval))
            if delay > 0 and self._nursery is not None:
                client.will_scope = trio.CancelScope()
                self._nursery.start_soon(self._delayed_will, client, will, delay, client.will_scope)
            else:
                await self._publish_will(client, will)
        if self._stopping and client.persistent:
            await self._save(client, connected=False)
            return
        if client.expiry_interval == 0:
            await self._forget(client)
        else:
            await self._save(client, connected=False)
            if client.expiry_interval != NEVER:
                self._schedule_expiry(client, float(client.expiry_interval))

    async def _delayed_will(self, client: _Client, will: Any, delay: float, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep(delay)
            client.will_scope = None
            await self._publish_will(client, will)

    async def _publish_will(self, client: _Client, will: Any) -> None:
        message = Message.from_will(will, now=self._clock())
        if not client.publish.allows(message.topic) or _reserved(message.topic):
            logger.info("will of %s to %s not published: not allowed", client.client_id, message.topic)
            return
        try:
            await self._route(message, client.client_id)
        except EdgeTwinError as err:
            logger.warning("will of %s not published: %s", client.client_id, err.message)

    def _schedule_expiry(self, client: _Client, delay: float) -> None:
        if self._nursery is None:
            return
        _cancel(client.expiry_scope)
        client.expiry_scope = trio.CancelScope()
        self._nursery.start_soon(self._expire, client, delay, client.expiry_scope)

    async def _expire(self, client: _Client, delay: float, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep(delay)
            if client.connection is None and self._clients.get(client.client_id) is client:
                logger.info("MQTT session %s expired", client.client_id)
                await self._forget(client)

    async def _forget(self, client: _Client) -> None:
        """End a session: its subscriptions, its queue and its persisted record."""
        self._trie.remove_key(client.client_id)
        if self._clients.get(client.client_id) is client:
            del self._clients[client.client_id]
        _cancel(client.expiry_scope)
        if client.persistent or client.records:
            await self._store.drop_session(client.client_id)
        client.records.clear()

    async def _save(self, client: _Client, *, connected: bool) -> None:
        subscriptions = {
            topic_filter: {
                "qos": options.qos,
                "no_local": options.no_local,
                "retain_as_published": options.retain_as_published,
                "retain_handling": options.retain_handling,
                "subscription_id": options.subscription_id,
            }
            for topic_filter, options in self._trie.subscriptions(client.client_id).items()
        }
        record = SessionRecord(
            client.client_id,
            client.level,
            client.expiry_interval,
            subscriptions,
            None if connected else self._clock(),
        )
        await self._store.save_session(record)

    # -------------------------------------------------------------- publish

    async def _on_publish(self, client: _Client, packet: Publish) -> None:
        session = client.session
        inbound = session.receive_publish(packet, now=self._clock())
        if inbound.duplicate:
            session.acknowledge(inbound)
            return
        message = inbound.message
        if _reserved(message.topic) or not client.publish.allows(message.topic):
            logger.info("MQTT client %s may not publish to %s", client.client_id, message.topic)
            # 3.1.1 has no way to say no: the message is dropped and acknowledged (as Mosquitto does).
            session.acknowledge(
                inbound,
                ReasonCode.NOT_AUTHORIZED if client.level == 5 else ReasonCode.SUCCESS,
                f"not allowed to publish to {message.topic}",
            )
            return
        connection = client.connection
        assert connection is not None
        assert connection.pipeline is not None
        item = _Publication(inbound, self._plan(message, client.client_id))
        if not item.plan.durable and connection.in_pipeline == 0:
            session.acknowledge(inbound, self._finish(client, item))  # nothing before it: at once
            return
        if item.plan.durable and self._nursery is not None:
            # Returns once the write has its place in the writer's queue: the next PUBLISH of this connection
            # is read meanwhile, so a pipelining publisher's messages share group commits; the completer
            # delivers and acknowledges them in order once each is durable.
            await self._nursery.start(self._commit, item)
        elif item.plan.durable:
            await self._commit(item)
        else:
            item.done.set()
        connection.in_pipeline += 1
        await connection.pipeline.send(item)

    async def _commit(
        self, item: _Publication, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Make a publication durable (in the broker's nursery: a connection that ends does not cancel it)."""
        queued = False

        def on_queued() -> None:
            nonlocal queued
            queued = True
            task_status.started()

        try:
            plan = item.plan
            item.seqs = await self._store.commit_publish(
                retain=plan.retain_op, queued=plan.queued, on_queued=on_queued
            )
        except EdgeTwinError as err:
            item.error = err
        finally:
            item.done.set()
            if not queued:
                task_status.started()

    async def _complete(
        self, client: _Client, connection: _Connection, receive: trio.MemoryReceiveChannel[_Publication]
    ) -> None:
        """Deliver and acknowledge a connection's publications in the order they came, each once durable.

        Publications already handed over are still delivered when the connection ends (only their
        acknowledgements are lost, and the client re-sends those)."""
        session = client.session
        try:
            async for item in receive:
                await item.done.wait()
                session.acknowledge(item.inbound, self._finish(client, item))
                client.wake()
                connection.in_pipeline -= 1
        finally:
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(5),
                contextlib.suppress(trio.WouldBlock, trio.EndOfChannel),
            ):
                while True:
                    item = receive.receive_nowait()
                    await item.done.wait()
                    self._finish(client, item)

    def _finish(self, client: _Client, item: _Publication) -> ReasonCode:
        if item.error is not None:
            logger.warning("a message to %s was not stored: %s", item.plan.message.topic, item.error.message)
            return ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR if client.level == 5 else ReasonCode.SUCCESS
        delivered = self._carry_out(item.plan, item.seqs)
        if not delivered and client.level == 5 and item.inbound.qos > 0:
            return ReasonCode.NO_MATCHING_SUBSCRIBERS
        return ReasonCode.SUCCESS

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties = NO_PROPERTIES,
    ) -> int:
        """Publish a message that comes from outside MQTT (the messaging API): as a client's PUBLISH, it
        is retained (or, empty and retained, deletes the retained value) and queued for persistent sessions
        durably before this returns, then delivered. The caller has checked the topic and permissions.

        Returns:
            How many subscribers it was delivered (or queued) to.

        Raises:
            EdgeTwinError: the store could not take it (nothing was delivered).
        """
        message = Message.stamped(topic, payload, qos, retain, properties, now=self._clock())
        self.received += 1
        return await self._route(message, None)

    def retained(self, topic: str) -> RetainedMessage | None:
        """The retained message of ``topic`` (``None``: none, or expired)."""
        return self._store.retained(topic)

    def retained_matching(
        self, topic_filters: list[str], *, limit: int | None = None
    ) -> list[RetainedMessage]:
        """Every unexpired retained message under any of ``topic_filters`` (valid filters), each topic once,
        in topic order; found by a range scan of each filter's literal prefix, not a scan of all values."""
        found: dict[str, RetainedMessage] = {}
        for topic_filter in topic_filters:
            for stored in self._store.scan_retained(literal_prefix(topic_filter)):
                if stored.topic not in found and matches(topic_filter, stored.topic):
                    found[stored.topic] = stored
        out = [found[topic] for topic in sorted(found)]
        return out if limit is None else out[:limit]

    async def _route(self, message: Message, publisher: str | None) -> int:
        """Deliver ``message`` (durable first: retained value and persistent queues). Returns receivers."""
        plan = self._plan(message, publisher)
        seqs: list[int] = []
        if plan.durable:
            seqs = await self._store.commit_publish(retain=plan.retain_op, queued=plan.queued)
        return self._carry_out(plan, seqs)

    def _plan(self, message: Message, publisher: str | None) -> _Plan:
        """Who gets ``message`` and how, and what must be durable before anyone does."""
        result = self._trie.match(message.topic, publisher=publisher, available=self._connected)
        targets = [(key, delivery) for key, delivery in result.normal.items()]
        targets += [(shared.key, shared.delivery) for shared in result.shared]
        plans = []
        queued: list[tuple[str, QueuedMessage]] = []
        for key, delivery in targets:
            client = self._clients.get(key)
            if client is None:
                continue
            qos = min(message.qos, delivery.qos)
            retain = message.retain and delivery.retain_as_published
            persist = client.persistent and qos > 0
            plans.append((client, qos, retain, delivery.subscription_ids, persist))
            if persist:
                queued.append((key, _queued(message, qos, retain)))
        retain_op: RetainedMessage | str | None = None
        if message.retain:
            retain_op = message.topic if not message.payload else _retained(message, self._clock())
        return _Plan(message, plans, retain_op, queued)

    def _carry_out(self, plan: _Plan, seqs: list[int]) -> int:
        """Deliver a planned message (after its durable part committed, with its queue record numbers)."""
        seq_iter = iter(seqs)
        for client, qos, retain, ids, persist in plan.targets:
            seq = next(seq_iter) if persist else None
            self._deliver(client, plan.message, qos, retain, ids, seq)
        return len(plan.targets)

    def _deliver(
        self, client: _Client, message: Message, qos: int, retain: bool, ids: tuple[int, ...], seq: int | None
    ) -> None:
        try:
            outcome = client.session.deliver(message, qos=qos, retain=retain, subscription_identifiers=ids)
        except (EncodeError, ValueError) as err:
            logger.warning("message to %s not delivered to %s: %s", message.topic, client.client_id, err)
            outcome = Outcome.DROPPED_QUEUE_FULL
        if outcome is Outcome.DROPPED_QUEUE_FULL or outcome is Outcome.DROPPED_OFFLINE:
            self.dropped += 1
            if outcome is Outcome.DROPPED_QUEUE_FULL:
                client.overflowed += 1
                # Counted, never silent, but not a log line per message.
                if client.overflowed in (1, 10, 100) or client.overflowed % 1000 == 0:
                    logger.warning(
                        "MQTT session %s is full (mqtt.max_queued): %d messages dropped so far, the last to %s",
                        client.client_id,
                        client.overflowed,
                        message.topic,
                    )
            if seq is not None:
                self._store.acknowledged(client.client_id, seq)
            return
        self.sent += 1
        if seq is not None:
            client.records.setdefault(id(message), []).append(seq)
        client.wake()

    def _settled(self, client: _Client, message: Message) -> None:
        """A QoS 1/2 message reached its client: its queue record goes."""
        seqs = client.records.get(id(message))
        if seqs:
            self._store.acknowledged(client.client_id, seqs.pop(0))
            if not seqs:
                del client.records[id(message)]

    def _connected(self, key: str) -> bool:
        client = self._clients.get(key)
        return client is not None and client.connection is not None

    # ------------------------------------------------------------ subscribe

    async def _on_subscribe(self, client: _Client, packet: Subscribe) -> None:
        codes: list[ReasonCode] = []
        retained: list[tuple[str, SubscriptionOptions]] = []
        ids = packet.properties.subscription_identifiers
        subscription_id = ids[0] if ids else None
        for sub in packet.subscriptions:
            try:
                share, topic_filter = split_shared(sub.topic_filter)  # $share for 3.1.1 too, as Mosquitto
            except TopicError:
                codes.append(
                    ReasonCode.TOPIC_FILTER_INVALID if client.level == 5 else ReasonCode.UNSPECIFIED_ERROR
                )
                continue
            if not client.subscribe.allows_filter(topic_filter):
                codes.append(ReasonCode.NOT_AUTHORIZED if client.level == 5 else ReasonCode.UNSPECIFIED_ERROR)
                continue
            granted = min(sub.qos, 2)
            options = SubscriptionOptions(
                granted,
                sub.no_local,
                sub.retain_as_published,
                int(sub.retain_handling),
                subscription_id,
            )
            try:
                existed = self._trie.subscribe(sub.topic_filter, client.client_id, options)
            except TopicError:
                raise _Closed(ReasonCode.PROTOCOL_ERROR) from None  # no-local on a shared one, MQTT-3.8.3-4
            codes.append(ReasonCode(granted))
            handling = int(sub.retain_handling)
            if share is None and (handling == 0 or (handling == 1 and not existed)):
                retained.append((topic_filter, options))
        refused = [code for code in codes if code.is_failure]
        properties = NO_PROPERTIES
        if refused and client.level == 5:
            why = "not allowed" if ReasonCode.NOT_AUTHORIZED in refused else "invalid topic filter"
            properties = Properties(
                reason_string=f"{len(refused)} of {len(codes)} subscriptions refused: {why}"
            )
        client.session.send_packet(SubAck(packet.packet_id, tuple(codes), properties))
        for topic_filter, options in retained:
            self._send_retained(client, topic_filter, options)
        if client.persistent:
            await self._save(client, connected=True)

    def _send_retained(self, client: _Client, topic_filter: str, options: SubscriptionOptions) -> None:
        """Retained messages for a new subscription, with RETAIN 1 (MQTT-3.3.1-8)."""
        ids = (options.subscription_id,) if options.subscription_id is not None else ()
        if topic_filter.startswith("$"):  # a leading wildcard never matches $SYS (MQTT-4.7.2-1)
            for topic, payload in list(self._sys.items()):
                if matches(topic_filter, topic):
                    self._deliver(client, Message(topic, payload, 0, True), 0, True, ids, None)
        for stored in self.retained_matching([topic_filter]):
            message = _from_retained(stored)
            self._deliver(client, message, min(stored.qos, options.qos), True, ids, None)

    async def _on_unsubscribe(self, client: _Client, packet: Unsubscribe) -> None:
        codes = []
        for topic_filter in packet.topic_filters:
            existed = self._trie.unsubscribe(topic_filter, client.client_id)
            codes.append(ReasonCode.SUCCESS if existed else ReasonCode.NO_SUBSCRIPTION_EXISTED)
        client.session.send_packet(UnsubAck(packet.packet_id, tuple(codes) if client.level == 5 else ()))
        if client.persistent:
            await self._save(client, connected=True)

    # ------------------------------------------------------------------ $SYS

    async def _publish_sys(self) -> None:
        while True:
            stats = self._trie.statistics()
            values = {
                "$SYS/broker/version": b"edgetwin",
                "$SYS/broker/uptime": f"{int(self._clock() - self.started_at)} seconds".encode(),
                "$SYS/broker/clients/connected": str(len(self._connections)).encode(),
                "$SYS/broker/clients/total": str(len(self._clients)).encode(),
                "$SYS/broker/subscriptions/count": str(stats.subscriptions).encode(),
                "$SYS/broker/messages/received": str(self.received).encode(),
                "$SYS/broker/messages/sent": str(self.sent).encode(),
                "$SYS/broker/messages/dropped": str(self.dropped).encode(),
            }
            self._sys.update(values)
            for topic, payload in values.items():
                with contextlib.suppress(EdgeTwinError):
                    await self._route(Message(topic, payload, 0, False), None)
            await trio.sleep(self._settings.sys_interval_s)


def _reserved(topic: str) -> bool:
    """Topics clients may not publish to: the broker's ``$SYS`` and the shared-subscription prefix."""
    return topic.startswith(("$SYS", "$share"))


def _expiry_interval(connect: Connect) -> int:
    if connect.protocol_level == 5:
        return connect.properties.session_expiry_interval or 0
    return 0 if connect.clean_start else NEVER  # 3.1.1: a persistent session never expires


def _queued(message: Message, qos: int, retain: bool) -> QueuedMessage:
    return QueuedMessage(
        message.topic,
        message.payload,
        qos,
        retain,
        properties_to_json(message.properties),
        message.expires_at,
    )


def _retained(message: Message, now: float) -> RetainedMessage:
    properties = properties_to_json(message.properties)
    return RetainedMessage(message.topic, message.payload, message.qos, properties, now, message.expires_at)


def _from_retained(stored: RetainedMessage) -> Message:
    properties = properties_from_json(stored.properties)
    return Message(stored.topic, stored.payload, stored.qos, True, properties, stored.expires_at)


def _connack_bytes(connack: Connack, level: int) -> bytes:
    if level != 5:
        code = _REFUSED_311.get(connack.reason_code, 3)
        return bytes((0x20, 0x02, 0x00, code))
    return encode_packet(connack, protocol_level=5)


def _cancel(scope: trio.CancelScope | None) -> None:
    if scope is not None:
        scope.cancel()


def _peer_host(stream: Any) -> str | None:
    with contextlib.suppress(Exception):
        sock = stream.socket if hasattr(stream, "socket") else stream.transport_stream.socket
        return str(sock.getpeername()[0])
    return None


async def _receive(stream: Any) -> bytes:
    try:
        return bytes(await stream.receive_some(RECEIVE_BYTES))
    except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
        return b""


async def _send(stream: Any, data: bytes) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
        with trio.move_on_after(5):
            await stream.send_all(data)


def _bound(listeners: list[Any]) -> list[str]:
    out = []
    for listener in listeners:
        sock = listener.socket if hasattr(listener, "socket") else listener.transport_listener.socket
        h, p = sock.getsockname()[:2]
        out.append(f"[{h}]:{p}" if ":" in h else f"{h}:{p}")
    return out


async def _accept(
    scope: trio.CancelScope, broker: Broker, listeners: list[Any], nursery: trio.Nursery
) -> None:
    with scope:  # cancelled before the listeners are closed: no accept() runs on a closed socket
        await trio.serve_listeners(broker.handle, listeners, handler_nursery=nursery)


async def serve_mqtt(
    settings: MqttSettings,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
    broker: Broker | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``mqtt.bind`` (and ``mqtt.tls_bind``) until ``shutdown_trigger`` returns; report the bound
    addresses once listening.

    Raises:
        EdgeTwinError: an address cannot be bound or the TLS files cannot be loaded (naming the key).
    """
    if broker is None:
        raise EdgeTwinError("serve_mqtt needs a broker")
    host, port = parse_bind(settings.bind, key="mqtt.bind")
    try:
        listeners: list[Any] = await trio.open_tcp_listeners(port, host=host)
    except OSError as err:
        raise EdgeTwinError(f"mqtt.bind: cannot listen on {settings.bind}: {err.strerror or err}") from None
    if settings.tls_bind:
        tls_host, tls_port = parse_bind(settings.tls_bind, key="mqtt.tls_bind")
        try:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
        except (OSError, ssl.SSLError) as err:
            raise EdgeTwinError(
                f"mqtt.tls_cert_file: cannot load the TLS certificate or key: {err}"
            ) from None
        try:
            listeners += await trio.open_ssl_over_tcp_listeners(
                tls_port, context, host=tls_host, https_compatible=True
            )
        except OSError as err:
            raise EdgeTwinError(
                f"mqtt.tls_bind: cannot listen on {settings.tls_bind}: {err.strerror or err}"
            ) from None
    bound = _bound(listeners)
    restored = broker.restore()
    if restored:
        logger.info("restored %d persistent MQTT sessions", restored)
    async with trio.open_nursery() as nursery:
        await broker.run(nursery)
        async with trio.open_nursery() as connections:
            accepting = trio.CancelScope()
            connections.start_soon(_accept, accepting, broker, listeners, connections)
            if settings.websocket_bind:
                from edgetwin.mqtt.websocket import serve_mqtt_websocket

                bound.append(await connections.start(serve_mqtt_websocket, settings.websocket_bind, broker))
            task_status.started(bound)
            await shutdown_trigger()
            # Stop accepting, then let every connection say goodbye (bounded) before the rest is cancelled.
            accepting.cancel()
            for listener in listeners:
                with contextlib.suppress(Exception):
                    await listener.aclose()
            broker.close_all()
            await broker.wait_closed(2.0)
            connections.cancel_scope.cancel()
        nursery.cancel_scope.cancel()
