"""Policy records: the ``policies`` database, key = policy id, value = the policy JSON.

The stored JSON carries ``policyId``, ``entries`` and the hidden ``_revision``, ``_created`` and
``_modified``. Synchronous functions over the store's transaction views.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from edgetwin.store.lmdb_store import ReadTxn, WriteTxn

__all__ = ["decode_policy", "delete_policy", "get_policy", "get_policy_bytes", "put_policy"]


def get_policy(r: ReadTxn, policy_id: str) -> dict[str, Any] | None:
    """The stored policy, or ``None``."""
    raw = r.get("policies", policy_id.encode())
    if raw is None:
        return None
    policy: dict[str, Any] = orjson.loads(raw)
    return policy


def put_policy(w: WriteTxn, policy: dict[str, Any]) -> None:
    """Store ``policy`` under its ``policyId``."""
    w.put("policies", str(policy["policyId"]).encode(), orjson.dumps(policy))


def delete_policy(w: WriteTxn, policy_id: str) -> bool:
    """Remove the policy; ``True`` when it existed."""
    return w.delete("policies", policy_id.encode())


def get_policy_bytes(r: ReadTxn, policy_id: str) -> bytes | None:
    """The stored policy's raw JSON (cheap: enforcement caches decisions by these bytes)."""
    return r.get("policies", policy_id.encode())


def decode_policy(raw: bytes) -> dict[str, Any]:
    """Decode raw policy JSON from :func:`get_policy_bytes`."""
    policy: dict[str, Any] = orjson.loads(raw)
    return policy
