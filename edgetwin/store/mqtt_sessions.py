"""Persistent MQTT sessions and the messages queued for them while their clients are away.

Contract:

* **Client key.** A client ID (MQTT allows up to 65535 bytes of UTF-8, the empty one included) becomes a
  self-delimiting key: a 2-byte big-endian length and the UTF-8 bytes when those are at most
  :data:`INLINE_CLIENT_ID_BYTES` (501) long, else ``0xFFFF`` and a 16-byte BLAKE2b digest of the bytes
  (``0xFFFF`` is never an inline length). Because it is self-delimiting, no client's key is a prefix of
  another's, and a client's key plus an 8-byte sequence number (at most 511 bytes, LMDB's key limit) keeps
  one client's queue contiguous. Two long IDs collide only if their 128-bit digests do (taken as
  impossible; session reads compare the stored ID and see a mismatch as absent).
* ``mqtt_sessions``: client key -> orjson ``{"client_id", "protocol_level", "expiry_interval",
  "subscriptions", "disconnected_at"}``. The full client ID is always stored, so any key form decodes.
* ``mqtt_queue``: client key ‖ 8-byte big-endian sequence number -> ``4-byte big-endian length ‖ orjson
  metadata ‖ raw payload`` (the payload is never base64'd). Metadata keys: ``t`` topic, ``q`` QoS, and
  only when present ``r`` retain (``true``), ``p`` the MQTT 5 message properties, ``e`` expires-at epoch
  seconds. The bare client key (no sequence number, so it sorts first) holds that client's queue length
  as 8 bytes, so :func:`queue_length` costs one read instead of a scan; it exists only while the queue is
  non-empty.
* **Sequence numbers** are global, not per client: one more than the high-water mark kept in the ``kv``
  database under ``mqtt_queue\\x00last_seq``, updated in the same transaction. They therefore increase per
  client too, and are never reused, whatever was dequeued or deleted, across restarts.
* :func:`enqueue` does not require a stored session; :func:`delete_session` removes the session and its
  whole queue either way. Session expiry and message expiry are the caller's business: this module
  stores ``disconnected_at``, ``expiry_interval`` and ``expires_at`` and never reads a clock.
* Functions are pure over the transaction they are given; iterators are lazy over a cursor and must be
  consumed inside the ``with store.read()`` block (never across an ``await``).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import orjson

from edgetwin.store.keys import MAX_KEY_BYTES

if TYPE_CHECKING:
    from collections.abc import Iterator

    from edgetwin.store.lmdb_store import ReadTxn, WriteTxn

__all__ = [
    "INLINE_CLIENT_ID_BYTES",
    "QueuedMessage",
    "SessionRecord",
    "delete_session",
    "dequeue",
    "enqueue",
    "get_session",
    "iter_queue",
    "iter_sessions",
    "put_session",
    "queue_length",
]

_SESSIONS: Final = "mqtt_sessions"
_QUEUE: Final = "mqtt_queue"
_HIGH_WATER: Final = b"mqtt_queue\x00last_seq"  # in "kv": the last sequence number ever handed out
_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_U64: Final = struct.Struct(">Q")
_DIGEST_BYTES: Final = 16
_LONG_MARK: Final = b"\xff\xff"
INLINE_CLIENT_ID_BYTES: Final = MAX_KEY_BYTES - _U16.size - _U64.size
"""Client IDs whose UTF-8 encoding is at most this long appear in their keys; longer ones are digested."""


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """The durable part of one MQTT session.

    Attributes:
        client_id: the client identifier.
        protocol_level: 3 (MQTT 3.1), 4 (3.1.1) or 5 (5.0), as in CONNECT.
        expiry_interval: seconds the session outlives a disconnect; ``0xFFFFFFFF`` = never expires.
        subscriptions: topic filter -> ``{"qos", "no_local", "retain_as_published", "retain_handling",
            "subscription_id"}`` (JSON-able).
        disconnected_at: epoch seconds of the disconnect; ``None`` while connected.
    """

    client_id: str
    protocol_level: int
    expiry_interval: int
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    disconnected_at: float | None = None


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A message waiting for a client.

    Attributes:
        topic: the topic name.
        payload: the application message, stored as is.
        qos: the delivery QoS (1 or 2 in practice; 0 is stored too).
        retain: the RETAIN flag to deliver with.
        properties: JSON-able MQTT 5 message properties, as in ``RetainedMessage.properties``.
        expires_at: absolute epoch seconds when it expires; ``None`` = never.
    """

    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    properties: dict[str, Any] = field(default_factory=dict)
    expires_at: float | None = None


def _client_key(client_id: str) -> bytes:
    encoded = client_id.encode()
    if len(encoded) <= INLINE_CLIENT_ID_BYTES:
        return _U16.pack(len(encoded)) + encoded
    return _LONG_MARK + hashlib.blake2b(encoded, digest_size=_DIGEST_BYTES).digest()


def _decode_session(raw: bytes) -> SessionRecord:
    doc = orjson.loads(raw)
    disconnected = doc.get("disconnected_at")
    return SessionRecord(
        client_id=doc["client_id"],
        protocol_level=int(doc["protocol_level"]),
        expiry_interval=int(doc["expiry_interval"]),
        subscriptions=doc.get("subscriptions", {}),
        disconnected_at=None if disconnected is None else float(disconnected),
    )


def put_session(w: WriteTxn, record: SessionRecord) -> None:
    """Store ``record``, replacing the client's previous one (its queue is kept).

    Args:
        w: the write transaction.
        record: the session; ``subscriptions`` must be JSON-able (orjson).

    Raises:
        ValueError: ``expiry_interval`` is outside 0..0xFFFFFFFF.
        TypeError: ``subscriptions`` is not JSON-able.
    """
    if not 0 <= record.expiry_interval <= 0xFFFFFFFF:
        raise ValueError(f"expiry_interval must be within 0..0xFFFFFFFF, not {record.expiry_interval!r}")
    doc = {
        "client_id": record.client_id,
        "protocol_level": record.protocol_level,
        "expiry_interval": record.expiry_interval,
        "subscriptions": record.subscriptions,
        "disconnected_at": record.disconnected_at,
    }
    w.put(_SESSIONS, _client_key(record.client_id), orjson.dumps(doc))


def get_session(r: ReadTxn, client_id: str) -> SessionRecord | None:
    """The stored session of ``client_id``.

    Args:
        r: any transaction view.
        client_id: the client identifier.

    Returns:
        The session, or ``None`` when there is none.
    """
    raw = r.get(_SESSIONS, _client_key(client_id))
    if raw is None:
        return None
    record = _decode_session(raw)
    return record if record.client_id == client_id else None


def delete_session(w: WriteTxn, client_id: str) -> None:
    """Remove the session of ``client_id`` and every message queued for it (either may be absent).

    Args:
        w: the write transaction.
        client_id: the client identifier.
    """
    key = _client_key(client_id)
    w.delete(_SESSIONS, key)
    # Collect first: deleting under an open cursor of the same database is not safe to interleave.
    doomed = [queued for queued, _ in w.items(_QUEUE, prefix=key)]
    for queued in doomed:
        w.delete(_QUEUE, queued)


def iter_sessions(r: ReadTxn) -> Iterator[SessionRecord]:
    """Every stored session, in key order (by client ID length, then bytes; digested IDs last).

    Args:
        r: any transaction view.

    Returns:
        A lazy iterator over the sessions; consume it inside the read block.
    """
    for _, raw in r.items(_SESSIONS):
        yield _decode_session(raw)


def _encode_message(message: QueuedMessage) -> bytes:
    meta: dict[str, Any] = {"t": message.topic, "q": message.qos}
    if message.retain:
        meta["r"] = True
    if message.properties:
        meta["p"] = message.properties
    if message.expires_at is not None:
        meta["e"] = message.expires_at
    head = orjson.dumps(meta)
    return b"".join((_U32.pack(len(head)), head, message.payload))


def _decode_message(raw: bytes) -> QueuedMessage:
    (length,) = _U32.unpack_from(raw)
    end = _U32.size + length
    meta = orjson.loads(raw[_U32.size : end])
    expires = meta.get("e")
    return QueuedMessage(
        topic=meta["t"],
        payload=raw[end:],
        qos=int(meta["q"]),
        retain=bool(meta.get("r", False)),
        properties=meta.get("p", {}),
        expires_at=None if expires is None else float(expires),
    )


def _last_seq(r: ReadTxn) -> int:
    raw = r.get("kv", _HIGH_WATER)
    return 0 if raw is None else int(_U64.unpack(raw)[0])


def queue_length(r: ReadTxn, client_id: str) -> int:
    """How many messages are queued for ``client_id``.

    Args:
        r: any transaction view.
        client_id: the client identifier.

    Returns:
        The count, read from the queue's counter (no scan).
    """
    raw = r.get(_QUEUE, _client_key(client_id))
    return 0 if raw is None else int(_U64.unpack(raw)[0])


def enqueue(w: WriteTxn, client_id: str, message: QueuedMessage) -> int:
    """Queue ``message`` for ``client_id`` after everything already queued for it.

    Args:
        w: the write transaction.
        client_id: the client identifier.
        message: the message; ``properties`` must be JSON-able (orjson).

    Returns:
        Its sequence number: larger than every number handed out before, to any client, and never reused.

    Raises:
        ValueError: the QoS is not 0, 1 or 2.
        TypeError: ``properties`` is not JSON-able.
    """
    if message.qos not in (0, 1, 2):
        raise ValueError(f"QoS must be 0, 1 or 2, not {message.qos!r}")
    encoded = _encode_message(message)
    key = _client_key(client_id)
    seq = _last_seq(w) + 1
    w.put(_QUEUE, key + _U64.pack(seq), encoded)
    w.put("kv", _HIGH_WATER, _U64.pack(seq))
    w.put(_QUEUE, key, _U64.pack(queue_length(w, client_id) + 1))
    return seq


def dequeue(w: WriteTxn, client_id: str, seq: int) -> bool:
    """Remove the message ``seq`` from the queue of ``client_id``.

    Args:
        w: the write transaction.
        client_id: the client identifier.
        seq: the number :func:`enqueue` returned.

    Returns:
        ``True`` when it was queued.
    """
    if not 0 < seq < 1 << 64:
        return False
    key = _client_key(client_id)
    if not w.delete(_QUEUE, key + _U64.pack(seq)):
        return False
    remaining = queue_length(w, client_id) - 1
    if remaining > 0:
        w.put(_QUEUE, key, _U64.pack(remaining))
    else:
        w.delete(_QUEUE, key)
    return True


def iter_queue(r: ReadTxn, client_id: str) -> Iterator[tuple[int, QueuedMessage]]:
    """The messages queued for ``client_id``, oldest (lowest sequence number) first.

    Args:
        r: any transaction view.
        client_id: the client identifier.

    Returns:
        A lazy iterator over ``(seq, message)``; consume it inside the read block.
    """
    key = _client_key(client_id)
    for queued, raw in r.items(_QUEUE, prefix=key):
        if len(queued) == len(key):
            continue  # the counter
        yield int(_U64.unpack_from(queued, len(key))[0]), _decode_message(raw)
