"""Helpers for the MQTT broker's end-to-end tests: the real appliance in-process, paho-mqtt clients driven from
a thread, and a raw-socket client with a tiny hand-written encoder (independent of ``edgetwin.mqtt.codec``).

Every wait is bounded: paho results are read from thread-safe queues with a timeout, raw reads run under
``trio.fail_after``.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import queue
import socket
import struct
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edgetwin import app
from edgetwin.config import Settings
from tests.conftest import make_settings

HOST = "127.0.0.1"
WAIT_S = 5.0  # the bound on any single wait for something that should happen
QUIET_S = 0.3  # how long "nothing arrives" is watched

V311 = 4
T = TypeVar("T")
V5 = 5

# ditto may do anything ("#" does not cover "$" topics, MQTT-4.7.2-1, so they are listed; $SYS stays closed to
# publishers whatever the lists say); limited may publish under allowed/ and read allowed/ and readonly/.
USERS: dict[str, Any] = {
    "users": [
        {
            "name": "ditto",
            "password": "ditto",
            "publish": ["#", "$internal/#", "$SYS/#"],
            "subscribe": ["#", "$internal/#", "$SYS/#"],
        },
        {
            "name": "limited",
            "password": "l",
            "publish": ["allowed/#"],
            "subscribe": ["allowed/#", "readonly/#"],
        },
    ]
}


# --------------------------------------------------------------------------------------------- the app


@dataclass
class Edgetwin:
    """The running appliance; clients opened through it are closed before it stops."""

    ports: app.Ports
    settings: Settings
    stop: trio.Event
    clients: list[Paho] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.ports.mqtt[0].rsplit(":", 1)[1])

    @property
    def websocket_port(self) -> int:
        return int(self.ports.mqtt[-1].rsplit(":", 1)[1])

    def paho(self, **kwargs: Any) -> Paho:
        client = Paho(self.port, **kwargs)
        self.clients.append(client)
        return client

    async def client(self, *topics: str | tuple[str, Any], **kwargs: Any) -> Paho:
        """A connected paho client (ditto's credentials by default), subscribed to ``topics`` at QoS 2."""
        client = self.paho(**kwargs)
        await client.connect()
        if topics:
            subs = [(t, 2) if isinstance(t, str) else t for t in topics]
            codes = await client.subscribe(*subs)
            assert all(code < 0x80 for code in codes), codes
        return client

    async def raw(self) -> Raw:
        return await Raw.open(self.port)


def edgetwin_settings(tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    sections.setdefault("auth", USERS)
    sections["http"] = {"bind": "127.0.0.1:0", "shutdown_grace_s": 0.2, **sections.get("http", {})}
    sections["mqtt"] = {"bind": "127.0.0.1:0", **sections.get("mqtt", {})}
    return make_settings(tmp_path, **sections)


@contextlib.asynccontextmanager
async def running_edgetwin(tmp_path: Path, **sections: dict[str, Any]) -> AsyncIterator[Edgetwin]:
    """edgetwin on port 0 with its store under ``tmp_path`` (the same ``tmp_path`` again: the same store)."""
    settings = edgetwin_settings(tmp_path, **sections)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        with trio.fail_after(WAIT_S):
            ports = await nursery.start(
                lambda task_status: app.serve(
                    settings, environ={}, shutdown_trigger=stop.wait, task_status=task_status
                )
            )
        running = Edgetwin(ports, settings, stop)
        try:
            yield running
        finally:
            with trio.CancelScope(shield=True):
                for client in running.clients:
                    await client.aclose()
                stop.set()
                nursery.cancel_scope.deadline = trio.current_time() + 10  # a hung shutdown fails the test


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key), valid for a day; also its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "mqtt-cert.pem", directory / "mqtt-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


# ------------------------------------------------------------------------------------------------- paho


def v5_properties(packet_type: int, **values: Any) -> Properties:
    props = Properties(packet_type)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(props, name, value)
    return props


@dataclass(frozen=True)
class ConnackResult:
    session_present: bool
    reason_code: int
    properties: Any


class Paho:
    """A paho-mqtt 2.2 client with its network thread; results are awaited from Trio with bounded waits.

    Auto-reconnect is off: a client the broker drops stays dropped (no take-over ping-pong).
    """

    def __init__(
        self,
        port: int,
        *,
        version: int = V5,
        client_id: str = "",
        clean: bool = True,
        username: str | None = "ditto",
        password: str | None = "ditto",
        session_expiry: int | None = None,
        keepalive: int = 60,
        transport: str = "tcp",
        will: tuple[str, bytes, int, bool] | None = None,
        will_properties: Properties | None = None,
        tls_ca: Path | None = None,
    ) -> None:
        self.version = version
        self.port = port
        self.keepalive = keepalive
        self.clean = clean
        self.session_expiry = session_expiry
        protocol = MQTTProtocolVersion.MQTTv5 if version == V5 else MQTTProtocolVersion.MQTTv311
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            clean_session=clean if version == V311 else None,
            transport=transport,  # type: ignore[arg-type]
            reconnect_on_failure=False,
        )
        if tls_ca is not None:
            self.client.tls_set(ca_certs=str(tls_ca))
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos, retain, will_properties)
        self.connacks: queue.Queue[ConnackResult] = queue.Queue()
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.disconnects: queue.Queue[int] = queue.Queue()
        self._acks: dict[int, list[int]] = {}
        self._ack_cond = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_ack_list
        self.client.on_unsubscribe = self._on_ack_list
        self.client.on_publish = self._on_publish
        self._started = False
        self._closed = False

    # callbacks (network thread)
    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, properties: Any = None) -> None:
        self.connacks.put(ConnackResult(bool(flags.session_present), int(rc.value), properties))

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.put(message)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, properties: Any = None) -> None:
        self.disconnects.put(int(rc.value))

    def _on_ack_list(self, client: Any, userdata: Any, mid: int, codes: Any, properties: Any = None) -> None:
        with self._ack_cond:
            self._acks[mid] = [int(code.value) for code in codes]
            self._ack_cond.notify_all()

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, properties: Any = None) -> None:
        with self._ack_cond:
            self._acks[mid] = [int(rc.value)]
            self._ack_cond.notify_all()

    def _wait_ack(self, mid: int, timeout: float) -> list[int]:
        with self._ack_cond:
            if not self._ack_cond.wait_for(lambda: mid in self._acks, timeout):
                raise AssertionError(f"no acknowledgement for packet {mid} within {timeout} s")
            return self._acks.pop(mid)

    # operations
    async def connect(self, *, expect_success: bool = True) -> ConnackResult:
        properties = None
        if self.version == V5:
            properties = v5_properties(PacketTypes.CONNECT)
            if self.session_expiry is not None:
                properties.SessionExpiryInterval = self.session_expiry

        def connect() -> None:
            kwargs: dict[str, Any] = {"keepalive": self.keepalive}
            if self.version == V5:
                kwargs.update(clean_start=self.clean, properties=properties)
            self.client.connect(HOST, self.port, **kwargs)
            self.client.loop_start()

        await trio.to_thread.run_sync(connect)
        self._started = True
        connack = await self._get(self.connacks, "CONNACK")
        if expect_success:
            assert connack.reason_code == 0, connack
        return connack

    async def subscribe(
        self, *subscriptions: tuple[str, int | SubscribeOptions], properties: Any = None
    ) -> list[int]:
        """Granted QoS / reason codes, one per filter."""
        subs: list[tuple[str, Any]] = [
            (t, o if isinstance(o, SubscribeOptions) else SubscribeOptions(qos=o)) for t, o in subscriptions
        ]
        if self.version == V311:  # paho takes only a QoS for 3.1.1
            subs = [(t, o.QoS) for t, o in subs]
        result, mid = self.client.subscribe(subs, properties=properties)
        assert result == mqtt.MQTT_ERR_SUCCESS, result
        assert mid is not None
        return await trio.to_thread.run_sync(self._wait_ack, mid, WAIT_S)

    async def unsubscribe(self, *topics: str) -> list[int]:
        result, mid = self.client.unsubscribe(list(topics))
        assert result == mqtt.MQTT_ERR_SUCCESS, result
        assert mid is not None
        return await trio.to_thread.run_sync(self._wait_ack, mid, WAIT_S)

    async def publish(
        self, topic: str, payload: bytes = b"", qos: int = 0, retain: bool = False, properties: Any = None
    ) -> int:
        """Publish and wait for the flow to end (QoS 0: sent); returns the PUBACK/PUBCOMP reason code."""
        info = self.client.publish(topic, payload, qos, retain, properties)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, info.rc
        return (await trio.to_thread.run_sync(self._wait_ack, info.mid, WAIT_S))[0]

    async def receive(self, within: float = WAIT_S) -> mqtt.MQTTMessage:
        return await self._get(self.messages, "a message", within)

    async def receive_many(self, n: int, within: float = WAIT_S) -> list[mqtt.MQTTMessage]:
        with trio.fail_after(within + 1):
            return [await self.receive(within) for _ in range(n)]

    async def nothing(self, within: float = QUIET_S) -> None:
        """Assert that no message arrives within ``within`` seconds."""
        with contextlib.suppress(queue.Empty):
            message = await trio.to_thread.run_sync(self.messages.get, True, within)
            raise AssertionError(f"unexpected message on {message.topic}: {message.payload!r}")

    async def disconnected(self, within: float = WAIT_S) -> int:
        """The reason code of the broker-side end of the connection (paho's on_disconnect)."""
        return await self._get(self.disconnects, "the end of the connection", within)

    async def disconnect(self, reasoncode: Any = None, properties: Any = None) -> None:
        """A clean DISCONNECT."""
        self.client.disconnect(reasoncode, properties)
        await self._get(self.disconnects, "the end of the connection")
        await self._stop_loop()

    async def drop(self) -> None:
        """End the connection abruptly: the socket is shut down without a DISCONNECT."""
        sock = self.client.socket()
        assert sock is not None
        sock = getattr(sock, "_socket", sock)  # paho's WebSocket wrapper keeps the TCP socket there
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        await self._get(self.disconnects, "the end of the connection")
        await self._stop_loop()

    async def _stop_loop(self) -> None:
        if self._started:
            self._started = False
            await trio.to_thread.run_sync(self.client.loop_stop)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self.client.disconnect()
        await self._stop_loop()
        # paho closes its socket and its wake-up socket pair only in __del__, which a reference cycle
        # may run after the sockets' own finalizers (a ResourceWarning, an error here): close them now.
        self.client._reset_sockets()

    async def _get(self, q: queue.Queue[T], what: str, within: float = WAIT_S) -> T:
        try:
            return await trio.to_thread.run_sync(q.get, True, within)
        except queue.Empty:
            raise AssertionError(f"no {what} within {within} s") from None


def payloads(messages: Iterable[mqtt.MQTTMessage]) -> list[bytes]:
    return [bytes(m.payload) for m in messages]


# ------------------------------------------------------------------------------------ raw MQTT encoding


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_str(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(data)) + data


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def props(*items: bytes) -> bytes:
    """A v5 property block from encoded properties (see ``prop_*``)."""
    data = b"".join(items)
    return varint(len(data)) + data


def prop_u32(identifier: int, value: int) -> bytes:
    return bytes([identifier]) + struct.pack("!I", value)


def prop_u16(identifier: int, value: int) -> bytes:
    return bytes([identifier]) + struct.pack("!H", value)


def prop_user(key: str, value: str) -> bytes:
    return b"\x26" + mqtt_str(key) + mqtt_str(value)


SESSION_EXPIRY = 0x11
WILL_DELAY = 0x18
TOPIC_ALIAS = 0x23


def connect_packet(
    client_id: str = "",
    *,
    version: int = V311,
    clean: bool = True,
    keepalive: int = 60,
    username: str | None = "ditto",
    password: str | bytes | None = "ditto",
    will: tuple[str, bytes, int, bool] | None = None,
    properties: bytes = b"\x00",
    will_properties: bytes = b"\x00",
) -> bytes:
    flags = 0x02 if clean else 0
    payload = mqtt_str(client_id)
    if will is not None:
        topic, message, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        if version == V5:
            payload += will_properties
        payload += mqtt_str(topic) + mqtt_str(message)
    if username is not None:
        flags |= 0x80
        payload += mqtt_str(username)
    if password is not None:
        flags |= 0x40
        payload += mqtt_str(password)
    header = mqtt_str("MQTT") + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == V5:
        header += properties
    return packet(0x10, header + payload)


def publish_packet(
    topic: str,
    payload: bytes,
    *,
    qos: int = 0,
    packet_id: int = 1,
    retain: bool = False,
    version: int = V311,
    properties: bytes = b"\x00",
) -> bytes:
    body = mqtt_str(topic)
    if qos:
        body += struct.pack("!H", packet_id)
    if version == V5:
        body += properties
    return packet(0x30 | (qos << 1) | (1 if retain else 0), body + payload)


def subscribe_packet(packet_id: int, filters: Sequence[tuple[str, int]], *, version: int = V311) -> bytes:
    body = struct.pack("!H", packet_id) + (b"\x00" if version == V5 else b"")
    for topic_filter, options in filters:
        body += mqtt_str(topic_filter) + bytes([options])
    return packet(0x82, body)


PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


class Raw:
    """A raw TCP MQTT client: bytes out, whole packets in, EOF seen."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.eof = False

    @classmethod
    async def open(cls, port: int) -> Raw:
        with trio.fail_after(WAIT_S):
            return cls(await trio.open_tcp_stream(HOST, port))

    async def __aenter__(self) -> Raw:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stream.aclose()

    async def send(self, data: bytes) -> None:
        with trio.fail_after(WAIT_S):
            await self.stream.send_all(data)

    def _parse(self) -> tuple[int, bytes] | None:
        buf = self.buffer
        length, multiplier, i = 0, 1, 1
        while True:
            if i >= len(buf):
                return None
            length += (buf[i] & 0x7F) * multiplier
            multiplier *= 128
            i += 1
            if not buf[i - 1] & 0x80:
                break
        if len(buf) < i + length:
            return None
        first, body = buf[0], bytes(buf[i : i + length])
        del buf[: i + length]
        return first, body

    async def packet(self, within: float = WAIT_S) -> tuple[int, bytes] | None:
        """The next packet as (first byte, body); ``None`` when the broker closed the connection."""
        with trio.fail_after(within):
            while True:
                parsed = self._parse()
                if parsed is not None:
                    return parsed
                if self.eof:
                    return None
                try:
                    data = await self.stream.receive_some(65536)
                except trio.BrokenResourceError:
                    data = b""
                if not data:
                    self.eof = True
                self.buffer += data

    async def connect(self, client_id: str, **kwargs: Any) -> bytes:
        """CONNECT (see :func:`connect_packet`) and expect success; the CONNACK's body."""
        await self.send(connect_packet(client_id, **kwargs))
        received = await self.packet()
        assert received is not None, "closed instead of CONNACK"
        first, body = received
        assert (first, body[1]) == (0x20, 0), received
        return body

    async def subscribe(
        self, topic_filter: str, qos: int, *, version: int = V311, packet_id: int = 1
    ) -> None:
        await self.send(subscribe_packet(packet_id, [(topic_filter, qos)], version=version))
        received = await self.packet()
        assert received is not None
        assert received[0] == 0x90, received
        assert received[1][-1] == qos, received

    async def nothing(self, within: float = QUIET_S) -> None:
        """Assert that no packet arrives within ``within`` seconds (and the connection stays open)."""
        with trio.move_on_after(within):
            received = await self.packet(within + 1)
            raise AssertionError(f"unexpected {received!r}")

    async def until_closed(self, within: float = WAIT_S) -> list[tuple[int, bytes]]:
        """Every packet until the broker closes the connection."""
        packets = []
        while (p := await self.packet(within)) is not None:
            packets.append(p)
        return packets


# ------------------------------------------------------------------------------------ raw MQTT decoding

# v5 property identifier -> its wire type (the ones a broker sends to a subscriber or in CONNACK).
_PROPERTY_TYPES = {
    0x01: "byte",  # payload format indicator
    0x02: "u32",  # message expiry interval
    0x03: "str",  # content type
    0x08: "str",  # response topic
    0x09: "bin",  # correlation data
    0x0B: "varint",  # subscription identifier
    0x11: "u32",  # session expiry interval
    0x12: "str",  # assigned client identifier
    0x13: "u16",  # server keep alive
    0x1F: "str",  # reason string
    0x21: "u16",  # receive maximum
    0x22: "u16",  # topic alias maximum
    0x23: "u16",  # topic alias
    0x24: "byte",  # maximum qos
    0x25: "byte",  # retain available
    0x26: "pair",  # user property
    0x27: "u32",  # maximum packet size
    0x28: "byte",  # wildcard subscription available
    0x29: "byte",  # subscription identifiers available
    0x2A: "byte",  # shared subscription available
}


def read_varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def _read_str(data: bytes, i: int) -> tuple[bytes, int]:
    (n,) = struct.unpack_from("!H", data, i)
    return data[i + 2 : i + 2 + n], i + 2 + n


def read_properties(data: bytes, i: int) -> tuple[dict[int, list[Any]], int]:
    """A v5 property block at ``data[i:]``: identifier -> values (a list: some repeat), and the end."""
    length, i = read_varint(data, i)
    end = i + length
    out: dict[int, list[Any]] = {}
    while i < end:
        identifier = data[i]
        kind = _PROPERTY_TYPES[identifier]
        i += 1
        value: Any
        if kind == "byte":
            value, i = data[i], i + 1
        elif kind == "u16":
            value, i = struct.unpack_from("!H", data, i)[0], i + 2
        elif kind == "u32":
            value, i = struct.unpack_from("!I", data, i)[0], i + 4
        elif kind == "varint":
            value, i = read_varint(data, i)
        elif kind == "pair":
            key, i = _read_str(data, i)
            val, i = _read_str(data, i)
            value = (key.decode(), val.decode())
        else:
            raw, i = _read_str(data, i)
            value = raw.decode() if kind == "str" else raw
        out.setdefault(identifier, []).append(value)
    return out, end


@dataclass(frozen=True)
class RawPublish:
    topic: str
    payload: bytes
    qos: int
    dup: bool
    retain: bool
    packet_id: int | None
    properties: dict[int, list[Any]]


def parse_publish(received: tuple[int, bytes] | None, version: int = V311) -> RawPublish:
    assert received is not None, "the connection closed instead"
    first, body = received
    assert first >> 4 == 3, f"not a PUBLISH: {first:#x}"
    qos = (first >> 1) & 3
    topic, i = _read_str(body, 0)
    packet_id = None
    if qos:
        (packet_id,) = struct.unpack_from("!H", body, i)
        i += 2
    properties: dict[int, list[Any]] = {}
    if version == V5:
        properties, i = read_properties(body, i)
    return RawPublish(topic.decode(), body[i:], qos, bool(first & 8), bool(first & 1), packet_id, properties)


def connack_properties(body: bytes) -> dict[int, list[Any]]:
    return read_properties(body, 2)[0]


def ack_packet(kind: int, packet_id: int) -> bytes:
    """PUBACK (0x40), PUBREC (0x50), PUBREL (0x62) or PUBCOMP (0x70) for ``packet_id``."""
    return packet(kind, struct.pack("!H", packet_id))
