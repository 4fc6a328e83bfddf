"""The event journal: every committed twin change, in commit order, under a monotonic sequence number.

Contract:

* The ``journal`` database maps an 8-byte big-endian sequence number (so key order is sequence order) to the
  event as compact orjson: ``action``, ``thingId``, ``path`` (a JSON pointer string), ``value``, ``revision``,
  ``timestamp`` (ISO-8601 UTC, fixed width, so timestamps compare as strings), ``policyId`` and, when the
  change carried one, ``correlationId``. The thing after the change is *not* stored: a root write would
  then cost up to 100 kB per event twice over, and nothing needs it (SSE filters work on the event's
  partial thing, as Ditto's do, and READ is re-checked against the current policy at delivery).
* :func:`append` runs in the caller's write transaction, the same one as the change, so the change and its
  journal record commit together or not at all. The next number is one more than the high-water mark kept
  in the ``kv`` database (read inside the transaction), not one more than the last key: pruning may empty
  the journal, and numbers must never be reused (a client's ``Last-Event-ID`` would otherwise point at a
  different event after a restart).
* The total size of the retained records is kept in ``kv`` too (counted once from the records when a store
  from before it has none), so the byte bound costs no scan.
* :func:`prune` removes at most ``batch`` of the oldest records beyond the retention bounds (count, age and
  bytes) per call, so a
  lowered bound is applied over the next commits instead of in one giant delete that would hold the write
  transaction (and every writer) for seconds.
* Reads (:func:`iter_from`, :func:`last_seq`, :func:`first_seq`) work in any transaction view; like every
  store function, they never span an await.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import orjson

from edgetwin.twin.pointer import format_pointer, parse_pointer

if TYPE_CHECKING:
    from collections.abc import Iterator

    from edgetwin.store.lmdb_store import ReadTxn, WriteTxn
    from edgetwin.twin.pointer import Json, Pointer

__all__ = ["JournalRecord", "append", "first_seq", "iter_from", "last_seq", "prune", "size_bytes"]

_DB: Final = "journal"
_HIGH_WATER: Final = b"journal\x00last_seq"  # in "kv": the last sequence number ever handed out
_BYTES: Final = b"journal\x00bytes"  # in "kv": the total size of the retained records
_SEQ: Final = struct.Struct(">Q")
PRUNE_BATCH: Final = 64


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """One journaled event."""

    seq: int
    action: str
    thing_id: str
    path: Pointer
    value: Json
    revision: int
    timestamp: str
    policy_id: str | None
    correlation_id: str | None = None


def _key(seq: int) -> bytes:
    return _SEQ.pack(seq)


def last_seq(r: ReadTxn) -> int:
    """The last sequence number handed out (0 when nothing was ever journaled)."""
    raw = r.get("kv", _HIGH_WATER)
    return 0 if raw is None else int(_SEQ.unpack(raw)[0])


def size_bytes(r: ReadTxn) -> int:
    """The total size of the retained records in bytes."""
    raw = r.get("kv", _BYTES)
    if raw is None:  # a journal from before the counter: count once
        return sum(len(value) for _, value in r.items(_DB))
    return int(_SEQ.unpack(raw)[0])


def first_seq(r: ReadTxn) -> int | None:
    """The oldest sequence number still retained, or ``None`` when the journal is empty."""
    for key, _ in r.items(_DB):
        return int(_SEQ.unpack(key)[0])
    return None


def append(
    w: WriteTxn,
    *,
    action: str,
    thing_id: str,
    path: Pointer,
    value: Json,
    revision: int,
    timestamp: str,
    policy_id: str | None,
    correlation_id: str | None = None,
) -> int:
    """Journal one event in the current write transaction and return its sequence number."""
    seq = last_seq(w) + 1
    record: dict[str, Any] = {
        "action": action,
        "thingId": thing_id,
        "path": format_pointer(path),
        "value": value,
        "revision": revision,
        "timestamp": timestamp,
        "policyId": policy_id,
    }
    if correlation_id is not None:
        record["correlationId"] = correlation_id
    encoded = orjson.dumps(record)
    total = size_bytes(w) + len(encoded)
    w.put(_DB, _key(seq), encoded)
    w.put("kv", _HIGH_WATER, _key(seq))
    w.put("kv", _BYTES, _SEQ.pack(total))
    return seq


def _decode(key: bytes, raw: bytes) -> JournalRecord:
    doc = orjson.loads(raw)
    return JournalRecord(
        seq=int(_SEQ.unpack(key)[0]),
        action=doc["action"],
        thing_id=doc["thingId"],
        path=parse_pointer(doc["path"]),
        value=doc["value"],
        revision=doc["revision"],
        timestamp=doc["timestamp"],
        policy_id=doc.get("policyId"),
        correlation_id=doc.get("correlationId"),
    )


def iter_from(r: ReadTxn, after_seq: int) -> Iterator[JournalRecord]:
    """The retained records with a sequence number greater than ``after_seq``, oldest first."""
    for key, raw in r.items(_DB, start=_key(max(after_seq + 1, 0))):
        yield _decode(key, raw)


def prune(
    w: WriteTxn,
    *,
    max_events: int,
    oldest_timestamp: str,
    max_bytes: int | None = None,
    batch: int = PRUNE_BATCH,
) -> int:
    """Remove up to ``batch`` of the oldest records beyond the retention bounds.

    Args:
        w: the write transaction (the one that just appended).
        max_events: the most records kept.
        oldest_timestamp: records with an older ``timestamp`` (ISO-8601, same format) are dropped.
        max_bytes: the most bytes of records kept (``None``: no byte bound).
        batch: the most records removed by this call.

    Returns:
        How many records were removed.
    """
    excess = w.count(_DB) - max_events
    total = size_bytes(w)
    limit = max_bytes if max_bytes is not None else total
    doomed: list[bytes] = []
    for key, raw in w.items(_DB):
        if len(doomed) >= batch:
            break
        if len(doomed) < excess or total > limit or _timestamp_of(raw) < oldest_timestamp:
            doomed.append(key)
            total -= len(raw)
            continue
        break  # records are in commit order, so the rest are young enough and within the bounds
    for key in doomed:
        w.delete(_DB, key)
    if doomed:
        w.put("kv", _BYTES, _SEQ.pack(max(total, 0)))
    return len(doomed)


def _timestamp_of(raw: bytes) -> str:
    return str(orjson.loads(raw)["timestamp"])
