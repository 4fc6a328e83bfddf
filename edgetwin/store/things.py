"""Thing persistence with its secondary index, as synchronous functions over the store's transaction views.

Contract:

* The ``things`` database maps :func:`~edgetwin.store.keys.thing_key` to the thing as orjson: ``thingId``,
  ``policyId``, optional ``definition``, ``attributes``, ``features``, and the hidden ``_revision`` (int),
  ``_created`` and ``_modified`` (ISO-8601 UTC strings). ``_namespace`` is derived from the ID and never
  stored (:func:`put_thing` drops it if given).
* The ``index`` database holds one empty-valued key per (field, value, thing), encoded by
  :mod:`edgetwin.store.keys`, for:

  - ``thingId``, ``policyId``, ``definition``, ``_namespace``, ``_revision``, ``_created``, ``_modified``;
  - every scalar leaf under ``attributes`` and ``features``, under its RQL field
    (``features/lamp/properties/on``). As in Ditto's RQL, arrays add no path segment: each scalar element
    is indexed under the array's own path and objects inside arrays are walked with that path too
    (``attributes/rooms/name`` for ``{"rooms": [{"name": "hall"}]}``); arrays inside arrays are not
    reachable by RQL and are not indexed;
  - a string that Ditto would read as a number when it faces one (``"20"``, ``"2.5e1"``) additionally under
    its number, so a numeric range scan finds it;
  - a :data:`~edgetwin.store.keys.PRESENT` marker where a path holds nothing indexable (``{}``, ``[]``,
    ``[[1]]``, a number beyond double range) and at the longest indexable ancestor of a path too long to
    index, so that an ``exists`` scan of a path (its own keys plus :func:`~edgetwin.store.keys.subtree_prefix`)
    finds every thing that has it.

* Writes update the index by difference: :func:`put_thing` computes the key sets of the previous and the
  new thing and touches only the keys that changed, so a one-property update costs a few key writes.
  ``previous`` must be what is stored now (read in the same transaction): the index is only as right as it.
* The functions run in the caller's transaction (the single writer's, or a read transaction); they never
  commit, never block on anything but LMDB, and never hold state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import orjson

from edgetwin.errors import InvalidInput
from edgetwin.store.keys import (
    MAX_ID_BYTES,
    PRESENT,
    encode_index_key,
    path_is_indexable,
    string_as_number,
    thing_id_from_key,
    thing_key,
)
from edgetwin.twin.ids import namespace_of

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from edgetwin.store.lmdb_store import ReadTxn, WriteTxn

__all__ = [
    "INDEXED_SIMPLE_FIELDS",
    "INDEXED_TREES",
    "count_things",
    "decode_thing",
    "delete_thing",
    "get_thing",
    "get_thing_bytes",
    "index_keys",
    "iter_index",
    "iter_thing_entries",
    "iter_things",
    "put_thing",
]

THINGS: Final = "things"
INDEX: Final = "index"

INDEXED_SIMPLE_FIELDS: Final = frozenset(
    {"thingId", "policyId", "definition", "_namespace", "_revision", "_created", "_modified"}
)
"""Top-level fields indexed as a whole (``_namespace`` derived from ``thingId``)."""

INDEXED_TREES: Final = ("attributes", "features")
"""Top-level objects whose every leaf is indexed."""

_STORED_SIMPLE_FIELDS: Final = tuple(sorted(INDEXED_SIMPLE_FIELDS - {"_namespace"}))


def get_thing(r: ReadTxn, thing_id: str) -> dict[str, Any] | None:
    """The stored thing, or ``None`` if there is none with this ID.

    Args:
        r: a read (or write) view.
        thing_id: the thing ID.

    Returns:
        The stored JSON, hidden ``_revision``/``_created``/``_modified`` included, ``_namespace`` not.
    """
    raw = get_thing_bytes(r, thing_id)
    return None if raw is None else decode_thing(raw)


def get_thing_bytes(r: ReadTxn, thing_id: str) -> bytes | None:
    """The stored bytes of a thing (decode with :func:`decode_thing`), or ``None``."""
    return r.get(THINGS, thing_key(thing_id))


def decode_thing(raw: bytes) -> dict[str, Any]:
    """Decode a stored thing (a value of the ``things`` database)."""
    thing: dict[str, Any] = orjson.loads(raw)
    return thing


def put_thing(w: WriteTxn, thing: Mapping[str, Any], *, previous: Mapping[str, Any] | None) -> None:
    """Create or replace a thing and bring its index entries up to date.

    Args:
        w: the write view of the writer's transaction.
        thing: the full new thing; ``thingId`` is required. A ``_namespace`` member is not stored.
        previous: the thing stored under this ID now (``None`` when creating). Its index keys that the
            new thing does not have are removed; only keys that differ are written.

    Raises:
        InvalidInput: ``things:id.invalid`` when the ID's UTF-8 form exceeds
            :data:`~edgetwin.store.keys.MAX_ID_BYTES` and cannot be indexed.
        ValueError: ``previous`` is of another thing (a programming error).
    """
    thing_id = thing["thingId"]
    if previous is not None and previous.get("thingId") != thing_id:
        raise ValueError(f"previous is thing {previous.get('thingId')!r}, not {thing_id!r}")
    if len(thing_id.encode()) > MAX_ID_BYTES:
        raise InvalidInput(
            f"Thing ID '{thing_id}' is too long to be stored: its UTF-8 form exceeds {MAX_ID_BYTES} bytes.",
            error_code="things:id.invalid",
        )
    stored = {key: value for key, value in thing.items() if key != "_namespace"}
    w.put(THINGS, thing_key(thing_id), orjson.dumps(stored))
    new_keys = index_keys(stored)
    old_keys = index_keys(previous) if previous is not None else frozenset()
    for key in old_keys - new_keys:
        w.delete(INDEX, key)
    for key in new_keys - old_keys:
        w.put(INDEX, key, b"")


def delete_thing(w: WriteTxn, thing_id: str, *, previous: Mapping[str, Any]) -> None:
    """Remove a thing and all its index entries.

    Args:
        w: the write view of the writer's transaction.
        thing_id: the thing ID.
        previous: the thing stored under this ID now; its index keys are removed.
    """
    w.delete(THINGS, thing_key(thing_id))
    for key in index_keys(previous):
        w.delete(INDEX, key)


def iter_things(r: ReadTxn, *, start_after: str | None = None) -> Iterator[dict[str, Any]]:
    """Every stored thing, in thing-ID order (code points).

    Args:
        r: a read view; consume the iterator inside its ``with`` block.
        start_after: begin with the first thing whose ID sorts after this one.

    Yields:
        The stored things, decoded.
    """
    for _, raw in iter_thing_entries(r, start_after=start_after):
        yield decode_thing(raw)


def iter_thing_entries(r: ReadTxn, *, start_after: str | None = None) -> Iterator[tuple[str, bytes]]:
    """Like :func:`iter_things` but undecoded: ``(thing ID, stored bytes)``, for callers that can skip a
    thing by its ID before paying for the decode."""
    start = None if start_after is None else thing_key(start_after)
    for key, raw in r.items(THINGS, start=start):
        if key == start:
            continue
        yield thing_id_from_key(key), raw


def count_things(r: ReadTxn) -> int:
    """How many things are stored (LMDB keeps the count; nothing is scanned)."""
    return r.count(THINGS)


def iter_index(r: ReadTxn, *, prefix: bytes, start: bytes | None = None) -> Iterator[bytes]:
    """Index keys starting with ``prefix``, in key order, from ``start`` (inclusive) on.

    Args:
        r: a read view.
        prefix: only keys with this prefix (e.g. :func:`~edgetwin.store.keys.value_prefix`).
        start: the first key to consider; ``None`` starts at ``prefix``.

    Yields:
        The keys; decode them with :func:`~edgetwin.store.keys.index_thing_id`.
    """
    for key, _ in r.items(INDEX, prefix=prefix, start=start):
        yield key


def index_keys(thing: Mapping[str, Any]) -> frozenset[bytes]:
    """Every index key of a thing (see the module docstring for what is indexed).

    Args:
        thing: a thing with ``thingId``; ``_namespace`` is derived, whatever the mapping says.

    Returns:
        The keys, as a set so that updates can be applied as a difference.
    """
    thing_id: str = thing["thingId"]
    keys: set[bytes] = {encode_index_key("_namespace", namespace_of(thing_id), thing_id)}
    for field in _STORED_SIMPLE_FIELDS:
        if field in thing:
            _walk(keys, field, thing[field], thing_id)
    for root in INDEXED_TREES:
        if root in thing:
            _walk(keys, root, thing[root], thing_id)
    return frozenset(keys)


def _walk(keys: set[bytes], path: str, value: Any, thing_id: str) -> None:
    """Add the keys of ``value`` found at ``path`` (which is indexable)."""
    if isinstance(value, dict):
        if not value:
            keys.add(encode_index_key(path, PRESENT, thing_id))
        for member, child in value.items():
            child_path = f"{path}/{member}"
            if path_is_indexable(child_path):
                _walk(keys, child_path, child, thing_id)
            else:
                # Everything below is too long to index; the marker keeps exists() on this path right.
                keys.add(encode_index_key(path, PRESENT, thing_id))
    elif isinstance(value, list):
        reachable = False
        for element in value:
            # RQL walks objects in arrays with the array's own path; arrays in arrays it never reaches.
            if isinstance(element, dict):
                _walk(keys, path, element, thing_id)
                reachable = True
            elif not isinstance(element, list):
                _add_scalar(keys, path, element, thing_id)
                reachable = True
        if not reachable:
            keys.add(encode_index_key(path, PRESENT, thing_id))
    else:
        _add_scalar(keys, path, value, thing_id)


def _add_scalar(keys: set[bytes], path: str, value: Any, thing_id: str) -> None:
    keys.add(encode_index_key(path, value, thing_id))
    if isinstance(value, str):
        number = string_as_number(value)
        if number is not None:
            keys.add(encode_index_key(path, number, thing_id))
