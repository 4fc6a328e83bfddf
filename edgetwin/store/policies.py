"""Policy records: the ``policies`` database, key = policy id, value = the policy JSON.

The stored JSON carries ``policyId``, ``entries`` and the hidden ``_revision``, ``_created`` and
``_modified``. Beside it, ``policy_entries`` holds the entries alone, canonically encoded (sorted keys):
enforcement compiles and caches decisions by those bytes, so the thousands of identical default policies
of one owner share one compiled enforcer, and a changed policy can never hit a stale one. Synchronous
functions over the store's transaction views.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from edgetwin.store.lmdb_store import ReadTxn, WriteTxn

__all__ = [
    "decode_policy",
    "delete_policy",
    "get_policy",
    "get_policy_bytes",
    "get_policy_entries",
    "put_policy",
]


def get_policy(r: ReadTxn, policy_id: str) -> dict[str, Any] | None:
    """The stored policy, or ``None``."""
    raw = r.get("policies", policy_id.encode())
    if raw is None:
        return None
    policy: dict[str, Any] = orjson.loads(raw)
    return policy


def _entries_bytes(policy: dict[str, Any]) -> bytes:
    return orjson.dumps(policy.get("entries", {}), option=orjson.OPT_SORT_KEYS)


def put_policy(w: WriteTxn, policy: dict[str, Any]) -> None:
    """Store ``policy`` under its ``policyId``, and its canonical entries beside it."""
    key = str(policy["policyId"]).encode()
    w.put("policies", key, orjson.dumps(policy))
    w.put("policy_entries", key, _entries_bytes(policy))


def get_policy_entries(r: ReadTxn, policy_id: str) -> bytes | None:
    """The policy's entries as canonical JSON bytes (what enforcement caches by), or ``None``."""
    key = policy_id.encode()
    raw = r.get("policy_entries", key)
    if raw is not None:
        return raw
    full = r.get("policies", key)  # written before policy_entries existed
    return None if full is None else _entries_bytes(orjson.loads(full))


def delete_policy(w: WriteTxn, policy_id: str) -> bool:
    """Remove the policy; ``True`` when it existed."""
    w.delete("policy_entries", policy_id.encode())
    return w.delete("policies", policy_id.encode())


def get_policy_bytes(r: ReadTxn, policy_id: str) -> bytes | None:
    """The stored policy's raw JSON (cheap: enforcement caches decisions by these bytes)."""
    return r.get("policies", policy_id.encode())


def decode_policy(raw: bytes) -> dict[str, Any]:
    """Decode raw policy JSON from :func:`get_policy_bytes`."""
    policy: dict[str, Any] = orjson.loads(raw)
    return policy
