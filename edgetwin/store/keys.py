"""Pure key encodings for the ``things`` and ``index`` databases (no lmdb here, so it is testable alone).

Contract:

* **Thing key** = the thing ID in UTF-8. LMDB orders keys bytewise, so the ``things`` database iterates in
  code-point order of the IDs, which is the order ``sort(+thingId)`` returns.
* **Index key** = ``path ‖ class ‖ value ‖ thing ID``, one key per (path, scalar value, thing); the value
  stored under it is empty. Byte order of index keys is:

  - grouped by path, exactly: the path is escaped and terminated, so the prefix for ``attributes/a``
    never matches ``attributes/ab``, and :func:`subtree_prefix` (``attributes/a/``) finds only paths
    strictly below;
  - then by value class: ``null < bool < number < string < present`` (ditto.md §4 names no cross-type
    order for filters; this one is just fixed and documented);
  - then by value, in value order within the class: ``false < true``; numbers by an order-preserving
    IEEE-754 double (``int`` and ``float`` compare numerically; integers beyond 2**53 lose precision,
    which only makes a scan return a few more candidates: the search re-checks every candidate exactly);
    strings by code point (UTF-8 bytes);
  - then by thing ID.

* **Escaping.** Paths and strings are UTF-8 with ``0x00`` escaped as ``0x00 0xFF`` and terminated by
  ``0x00 0x01`` (FoundationDB's tuple-layer trick). A terminator cannot occur inside an escaped body, so
  terminated prefixes are exact, and a shorter string still sorts before its extensions.
* **Size.** LMDB refuses keys above :data:`MAX_KEY_BYTES`. A string value whose escaped form exceeds
  :data:`MAX_STRING_BYTES` is cut to that length and terminated by ``0x00 0x02`` instead: the cut keeps
  the order monotone (never wrong, sometimes tied), and all strings sharing the cut share one index value.
  A path whose escaped form exceeds :data:`MAX_PATH_BYTES` is not indexed at all
  (:func:`path_is_indexable`); the caller indexes a :data:`PRESENT` marker at its longest indexable
  ancestor instead, and searches on such a path scan the things.
* **The present class** holds :data:`PRESENT` markers: "something is at this path that is no comparable
  scalar" (an empty object or array, an array of arrays, a number that does not fit a double). It exists
  so that an ``exists`` scan of a path finds every thing that has it.

This module knows byte layouts only. Which values a document contributes (array elements, numeric strings)
is :mod:`edgetwin.store.things`' business; which ranges a filter needs is the search planner's.
"""

from __future__ import annotations

import enum
import math
import re
import struct
from decimal import Decimal
from typing import Final, TypeAlias

__all__ = [
    "MAX_ID_BYTES",
    "MAX_KEY_BYTES",
    "MAX_PATH_BYTES",
    "MAX_STRING_BYTES",
    "PRESENT",
    "IndexValue",
    "Present",
    "ValueClass",
    "class_prefix",
    "decode_index_key",
    "encode_index_key",
    "encode_number",
    "index_thing_id",
    "path_is_indexable",
    "path_prefix",
    "string_as_number",
    "string_prefix",
    "subtree_prefix",
    "thing_id_from_key",
    "thing_key",
    "value_prefix",
    "value_range",
]

MAX_KEY_BYTES: Final = 511
"""LMDB's compiled-in key size limit (``mdb_env_get_maxkeysize`` of the py-lmdb build)."""

MAX_PATH_BYTES: Final = 120
"""Longest escaped path that is indexed."""

MAX_STRING_BYTES: Final = 60
"""Longest escaped string value kept whole in an index key; longer ones are cut to this many bytes."""

MAX_ID_BYTES: Final = MAX_KEY_BYTES - (MAX_PATH_BYTES + 2) - 1 - (MAX_STRING_BYTES + 2)
"""Longest thing ID, in UTF-8 bytes, that fits every index key (326; any ASCII ID of 256 characters fits)."""

_TERMINATOR: Final = b"\x00\x01"
_CUT_TERMINATOR: Final = b"\x00\x02"
_ESCAPED_NUL: Final = b"\x00\xff"
# No UTF-8 byte is 0xFF and a body byte after 0x00 is always 0xFF, so this sorts after every continuation
# of a prefix: "prefix + _AFTER" bounds a prefix range from above.
_AFTER: Final = b"\xff"
_DOUBLE: Final = struct.Struct(">d")
_UINT64: Final = struct.Struct(">Q")
_SIGN_BIT: Final = 1 << 63
_ALL_BITS: Final = (1 << 64) - 1
# java.math.BigDecimal(String), as edgetwin.rql.evaluate reads a string that faces a number. Duplicated on
# purpose: the store room may not import rql; tests check that both agree.
_BIG_DECIMAL: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+))?")
_MAX_EXPONENT_DIGITS: Final = 10
_INT_MAX: Final = 2**31 - 1


class ValueClass(enum.IntEnum):
    """The value classes, in index order; the number is the class byte in the key."""

    NULL = 0x10
    BOOL = 0x20
    NUMBER = 0x30
    STRING = 0x40
    PRESENT = 0x50


class Present(enum.Enum):
    """Type of :data:`PRESENT`."""

    PRESENT = "PRESENT"

    def __repr__(self) -> str:
        return "PRESENT"


PRESENT: Final = Present.PRESENT
"""The index value of "something non-comparable is here" (see the module docstring)."""

IndexValue: TypeAlias = "bool | int | float | str | Present | None"
"""What one index key holds: a JSON scalar or :data:`PRESENT`."""


# ---- things ------------------------------------------------------------------------------------------


def thing_key(thing_id: str) -> bytes:
    """The ``things`` database key of a thing.

    Args:
        thing_id: the thing ID.

    Returns:
        Its UTF-8 bytes.
    """
    return thing_id.encode()


def thing_id_from_key(key: bytes) -> str:
    """Inverse of :func:`thing_key`."""
    return key.decode()


# ---- index keys --------------------------------------------------------------------------------------


def path_is_indexable(path: str) -> bool:
    """Whether index keys are written for ``path`` (its escaped form fits :data:`MAX_PATH_BYTES`)."""
    return len(_escape(_utf8(path))) <= MAX_PATH_BYTES


def path_prefix(path: str) -> bytes:
    """The prefix of every index key of exactly ``path`` (all classes, all values, all things)."""
    return _escape(_utf8(path)) + _TERMINATOR


def subtree_prefix(path: str) -> bytes:
    """The prefix of every index key of a path strictly below ``path`` (``path`` + ``/`` + anything)."""
    return _escape(_utf8(path)) + b"/"


def class_prefix(path: str, value_class: ValueClass) -> bytes:
    """The prefix of every index key of ``path`` whose value is of ``value_class``."""
    return path_prefix(path) + bytes((value_class,))


def value_prefix(path: str, value: IndexValue) -> bytes:
    """The prefix of every index key of ``path`` whose value equals ``value`` (point scan).

    For a string longer than :data:`MAX_STRING_BYTES` this also covers the other strings with the same
    cut; for numbers it covers every value with the same double.

    Args:
        path: the RQL field, e.g. ``attributes/location/lat``.
        value: a JSON scalar or :data:`PRESENT`.

    Returns:
        ``path ‖ class ‖ value``; every such key continues with a thing ID.
    """
    value_class, encoded = _encode_value(value)
    return path_prefix(path) + bytes((value_class,)) + encoded


def value_range(path: str, low: IndexValue, high: IndexValue) -> tuple[bytes, bytes]:
    """Key bounds ``(start, stop)`` of the entries of ``path`` with ``low <= value < high``.

    Both values must be of one class. Scan keys ``start <= key < stop``. Exact for values kept whole;
    values that share ``high``'s double or string cut fall out together with ``high``, those sharing
    ``low``'s fall in together with ``low`` (callers that need every match widen and re-check).

    Args:
        path: the RQL field.
        low: the inclusive lower value.
        high: the exclusive upper value.

    Returns:
        The two bounds.

    Raises:
        ValueError: the two values are of different classes.
    """
    low_class, low_value = _encode_value(low)
    high_class, high_value = _encode_value(high)
    if low_class is not high_class:
        raise ValueError(f"a range needs one value class, not {low_class.name} and {high_class.name}")
    start = path_prefix(path) + bytes((low_class,))
    return start + low_value, start + high_value


def string_prefix(path: str, prefix: str) -> bytes:
    """The prefix of every index key of ``path`` whose value is a string starting with ``prefix``.

    The result also bounds string ranges: every string ``>= prefix`` has a key ``>=`` it, and every
    string ``<= prefix`` or starting with it has a key ``<`` it ``+ b"\\xff"``.

    Args:
        path: the RQL field.
        prefix: the literal start of the strings.

    Returns:
        ``path ‖ string class ‖ escaped prefix`` (cut like stored values, without terminator).
    """
    return class_prefix(path, ValueClass.STRING) + _cut(_escape(_utf8(prefix)))


def encode_index_key(path: str, value: IndexValue, thing_id: str) -> bytes:
    """The index key of one (path, value, thing) entry.

    Args:
        path: the RQL field (must satisfy :func:`path_is_indexable`).
        value: a JSON scalar, or :data:`PRESENT`. NaN and integers beyond the double range go to the
            present class, as Ditto cannot compare them either.
        thing_id: the thing ID (at most :data:`MAX_ID_BYTES` in UTF-8).

    Returns:
        The key; keys of one path and value class sort in value order, ties in thing-ID order.
    """
    return value_prefix(path, value) + thing_id.encode()


def decode_index_key(key: bytes) -> tuple[str, ValueClass, str]:
    """Split an index key into its path, value class and thing ID (the value itself is not recovered).

    Args:
        key: a key written by :func:`encode_index_key`.

    Returns:
        ``(path, value class, thing ID)``.

    Raises:
        ValueError: the key is not an index key.
    """
    path_end = key.find(_TERMINATOR)
    if path_end < 0:
        raise ValueError("not an index key: no path terminator")
    path = key[:path_end].replace(_ESCAPED_NUL, b"\x00").decode("utf-8", "surrogatepass")
    value_class = ValueClass(key[path_end + 2])
    return path, value_class, _thing_id_after(key, path_end + 3, value_class)


def index_thing_id(key: bytes) -> str:
    """The thing ID of an index key (the fast part of :func:`decode_index_key`)."""
    path_end = key.find(_TERMINATOR)
    return _thing_id_after(key, path_end + 3, ValueClass(key[path_end + 2]))


def _thing_id_after(key: bytes, start: int, value_class: ValueClass) -> str:
    if value_class is ValueClass.NUMBER:
        return key[start + 8 :].decode()
    if value_class is ValueClass.BOOL:
        return key[start + 1 :].decode()
    if value_class is ValueClass.STRING:
        # The first 0x00 that does not start an escaped NUL starts the (cut) terminator.
        nul = key.index(b"\x00", start)
        while key[nul + 1] == 0xFF:
            nul = key.index(b"\x00", nul + 2)
        return key[nul + 2 :].decode()
    return key[start:].decode()


# ---- values ------------------------------------------------------------------------------------------


def encode_number(number: float) -> bytes:
    """8 bytes whose byte order is the numeric order of doubles (``-0.0`` is ``0.0``).

    Positive doubles get the sign bit set; negative ones are inverted bit by bit, so larger magnitudes
    sort first among them.

    Args:
        number: a finite or infinite double, not NaN.

    Returns:
        The order-preserving encoding.
    """
    if number == 0:
        number = 0.0
    (bits,) = _UINT64.unpack(_DOUBLE.pack(number))
    bits = bits ^ _ALL_BITS if bits & _SIGN_BIT else bits | _SIGN_BIT
    return _UINT64.pack(bits)


def string_as_number(text: str) -> float | None:
    """The double a numeric string is indexed under as well, or ``None`` for a non-numeric string.

    Ditto compares a string with a number numerically when the string parses as a ``BigDecimal``
    (``gt(temp,"20")`` holds for ``20.8``), so a numeric string also gets a number-class entry.

    Args:
        text: any string.

    Returns:
        ``float(Decimal(text))`` (possibly infinite for a huge exponent) if Java's ``new BigDecimal``
        accepts it, else ``None``.
    """
    match = _BIG_DECIMAL.fullmatch(text)
    if match is None:
        return None
    exponent = match.group(1)
    if exponent is not None:
        digits = exponent.lstrip("+-").lstrip("0")
        if len(digits) > _MAX_EXPONENT_DIGITS or not -_INT_MAX <= int(exponent) <= _INT_MAX:
            return None
    return float(Decimal(text))


def _encode_value(value: IndexValue) -> tuple[ValueClass, bytes]:
    if value is None:
        return ValueClass.NULL, b""
    if value is PRESENT:
        return ValueClass.PRESENT, b""
    if isinstance(value, bool):
        return ValueClass.BOOL, b"\x01" if value else b"\x00"
    if isinstance(value, int):
        # As Ditto: an integer is compared as a number, one beyond Java's long as a double, and one that no
        # double holds not at all.
        try:
            value = float(value)
        except OverflowError:
            return ValueClass.PRESENT, b""
    if isinstance(value, float):
        # Infinity keeps its place among the numbers: it is what a numeric string like "1e99999" becomes.
        if math.isnan(value):
            return ValueClass.PRESENT, b""
        return ValueClass.NUMBER, encode_number(value)
    body = _escape(_utf8(value))
    cut = _cut(body)
    return ValueClass.STRING, cut + (_TERMINATOR if len(cut) == len(body) else _CUT_TERMINATOR)


def _utf8(text: str) -> bytes:
    # A lone surrogate (possible in an RQL literal, never in stored JSON) keeps its code-point position.
    return text.encode("utf-8", "surrogatepass")


def _escape(raw: bytes) -> bytes:
    return raw.replace(b"\x00", _ESCAPED_NUL) if b"\x00" in raw else raw


def _cut(body: bytes) -> bytes:
    """Cut an escaped body to :data:`MAX_STRING_BYTES` without splitting an escaped NUL."""
    if len(body) <= MAX_STRING_BYTES:
        return body
    # A 0x00 in an escaped body always starts a pair; never keep half of one.
    end = MAX_STRING_BYTES - 1 if body[MAX_STRING_BYTES - 1] == 0 else MAX_STRING_BYTES
    return body[:end]
