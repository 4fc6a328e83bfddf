"""Retained MQTT messages (shared by the broker and the DSH messaging API), one per topic name.

Contract:

* The ``retained`` database holds at most one message per topic name. Its **key** is the topic's UTF-8
  encoding when that is at most :data:`INLINE_TOPIC_BYTES` (495) bytes long. A longer topic (MQTT allows
  65535 bytes, LMDB keys stop at 511) is keyed by its first 495 bytes followed by a 16-byte BLAKE2b digest
  of the whole encoding, and the full topic is kept in the value. An inline key is at most 495 bytes and a
  digest key is exactly 511, so the two kinds never collide, and two long topics collide only if their
  128-bit digests do (taken as impossible; reads still compare the stored topic and see a mismatch as
  absent).
* **Prefix scans stay exact.** A prefix of a topic encodes to a prefix of its encoding, and a digest key
  starts with the topic's first 495 bytes, so scanning the keys that start with the first 495 bytes of the
  wanted prefix finds every candidate; digest keys are then checked against the full topic. Keys that
  share their first 495 bytes are either that stem itself (an inline topic of exactly 495 bytes, which
  sorts first in both orders) or digest keys, whose order is the digests'; :func:`iter_retained` sorts such
  a run by topic, so results come in **topic byte order** (which for UTF-8 is code-point order). Only the
  topics of such a run are buffered, never payloads, and a run needs two long topics with the same
  first 495 bytes.
* The **value** is ``4-byte big-endian length ‖ orjson metadata ‖ raw payload`` (the payload is never
  base64'd or copied into JSON). Metadata keys: ``q`` QoS, ``s`` stored-at epoch seconds, and only when
  present ``e`` expires-at epoch seconds, ``p`` the MQTT 5 message properties (a JSON object) and ``t`` the
  full topic (digest keys only).
* Message expiry is the caller's business: this module stores ``expires_at`` and never reads a clock. A
  reader skips (and a writer deletes) what has expired by its own clock.
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
    "INLINE_TOPIC_BYTES",
    "RetainedMessage",
    "count_retained",
    "delete_retained",
    "get_retained",
    "iter_retained",
    "put_retained",
]

_DB: Final = "retained"
_DIGEST_BYTES: Final = 16
INLINE_TOPIC_BYTES: Final = MAX_KEY_BYTES - _DIGEST_BYTES
"""Topics whose UTF-8 encoding is at most this long are their own key; longer ones get a digest key."""
_LENGTH: Final = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class RetainedMessage:
    """One retained message.

    Attributes:
        topic: the topic name (valid per ``mqtt.topics``; not re-validated here).
        payload: the application message, stored as is.
        qos: the QoS it was published with (0, 1 or 2).
        properties: JSON-able MQTT 5 message properties (``content_type``, ``payload_format_indicator``,
            ``response_topic``, ``correlation_data`` as base64 text, ``user_properties`` as
            ``[[k, v], ...]``); ``{}`` when there are none.
        stored_at: epoch seconds when it was retained.
        expires_at: absolute epoch seconds when it expires (MQTT 5 message expiry); ``None`` = never.
    """

    topic: str
    payload: bytes
    qos: int
    properties: dict[str, Any] = field(default_factory=dict)
    stored_at: float = 0.0
    expires_at: float | None = None


def _key(encoded_topic: bytes) -> bytes:
    if len(encoded_topic) <= INLINE_TOPIC_BYTES:
        return encoded_topic
    digest = hashlib.blake2b(encoded_topic, digest_size=_DIGEST_BYTES).digest()
    return encoded_topic[:INLINE_TOPIC_BYTES] + digest


def _is_digest_key(key: bytes) -> bool:
    return len(key) > INLINE_TOPIC_BYTES


def _encode(message: RetainedMessage, encoded_topic: bytes) -> bytes:
    meta: dict[str, Any] = {"q": message.qos, "s": message.stored_at}
    if message.expires_at is not None:
        meta["e"] = message.expires_at
    if message.properties:
        meta["p"] = message.properties
    if len(encoded_topic) > INLINE_TOPIC_BYTES:
        meta["t"] = message.topic
    head = orjson.dumps(meta)
    return b"".join((_LENGTH.pack(len(head)), head, message.payload))


def _meta(raw: bytes) -> tuple[dict[str, Any], int]:
    (length,) = _LENGTH.unpack_from(raw)
    end = _LENGTH.size + length
    meta: dict[str, Any] = orjson.loads(raw[_LENGTH.size : end])
    return meta, end


def _decode(key: bytes, raw: bytes) -> RetainedMessage:
    meta, end = _meta(raw)
    expires = meta.get("e")
    return RetainedMessage(
        topic=meta["t"] if _is_digest_key(key) else key.decode(),
        payload=raw[end:],
        qos=int(meta["q"]),
        properties=meta.get("p", {}),
        stored_at=float(meta["s"]),
        expires_at=None if expires is None else float(expires),
    )


def _stored_topic(key: bytes, raw: bytes) -> bytes:
    """The UTF-8 topic a record belongs to, without decoding the rest."""
    if not _is_digest_key(key):
        return key
    topic: str = _meta(raw)[0]["t"]
    return topic.encode()


def put_retained(w: WriteTxn, message: RetainedMessage) -> None:
    """Retain ``message`` for its topic, replacing whatever was retained there.

    A publish with an empty payload means "delete the retained message" (MQTT-3.3.1-6); that decision is
    the broker's: call :func:`delete_retained` for it. This function stores an empty payload as given.

    Args:
        w: the write transaction.
        message: the message; ``properties`` must be JSON-able (orjson).

    Raises:
        ValueError: the topic is empty or the QoS is not 0, 1 or 2.
        TypeError: ``properties`` is not JSON-able.
    """
    if not message.topic:
        raise ValueError("a retained message needs a non-empty topic")
    if message.qos not in (0, 1, 2):
        raise ValueError(f"QoS must be 0, 1 or 2, not {message.qos!r}")
    encoded = message.topic.encode()
    w.put(_DB, _key(encoded), _encode(message, encoded))


def delete_retained(w: WriteTxn, topic: str) -> bool:
    """Forget the message retained for ``topic``.

    Args:
        w: the write transaction.
        topic: the exact topic name.

    Returns:
        ``True`` when there was one.
    """
    encoded = topic.encode()
    key = _key(encoded)
    if _is_digest_key(key):
        raw = w.get(_DB, key)
        if raw is None or _stored_topic(key, raw) != encoded:
            return False
    return w.delete(_DB, key)


def get_retained(r: ReadTxn, topic: str) -> RetainedMessage | None:
    """The message retained for ``topic``, expired or not.

    Args:
        r: any transaction view.
        topic: the exact topic name.

    Returns:
        The message, or ``None`` when nothing is retained for ``topic``.
    """
    if not topic:
        return None
    encoded = topic.encode()
    key = _key(encoded)
    raw = r.get(_DB, key)
    if raw is None or _stored_topic(key, raw) != encoded:
        return None
    return _decode(key, raw)


def iter_retained(r: ReadTxn, prefix: str = "") -> Iterator[RetainedMessage]:
    """Every retained message whose topic starts with ``prefix``, in topic byte order, expired or not.

    For a subscription, pass ``trie.literal_prefix(filter)`` and keep the messages the filter matches.
    Consume the iterator inside the read block; it never spans an ``await``.

    Args:
        r: any transaction view.
        prefix: a string every returned topic starts with; ``""`` returns them all.

    Returns:
        A lazy iterator over the messages.
    """
    wanted = prefix.encode()
    # Digest keys sharing a stem come in digest order: collect such a run's (topic, key) pairs, then sort.
    stem: bytes | None = None
    run: list[tuple[bytes, bytes]] = []
    for key, raw in r.items(_DB, prefix=wanted[:INLINE_TOPIC_BYTES]):
        if not _is_digest_key(key):
            # An inline key sorts before the digest keys of its own stem, so it ends any earlier run.
            yield from _sorted_run(r, run)
            run, stem = [], None
            if key.startswith(wanted):
                yield _decode(key, raw)
            continue
        if key[:INLINE_TOPIC_BYTES] != stem:
            yield from _sorted_run(r, run)
            run, stem = [], key[:INLINE_TOPIC_BYTES]
        topic = _stored_topic(key, raw)
        if topic.startswith(wanted):
            run.append((topic, key))
    yield from _sorted_run(r, run)


def _sorted_run(r: ReadTxn, run: list[tuple[bytes, bytes]]) -> Iterator[RetainedMessage]:
    for _, key in sorted(run):
        raw = r.get(_DB, key)
        if raw is not None:
            yield _decode(key, raw)


def count_retained(r: ReadTxn) -> int:
    """The number of retained messages (expired ones included).

    Args:
        r: any transaction view.

    Returns:
        The count, read from the database statistics (no scan).
    """
    return r.count(_DB)
