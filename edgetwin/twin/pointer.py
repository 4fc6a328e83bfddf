"""JSON values and Ditto JSON pointers: read, write and delete one place in a document.

Contract:

* A JSON value is plain Python (:data:`Json`): ``dict`` with ``str`` keys, ``list``, ``str``, ``int``,
  ``float``, ``bool`` or ``None``. Every function here is pure: it never mutates its arguments and returns new
  containers along the path it changes. Unchanged sub-trees are *shared* between input and output, so callers
  treat every JSON value as immutable once built.
* A pointer is a tuple of keys (:data:`Pointer`); ``()`` is the document root. Ditto pointers address object
  members only, never array elements, and Ditto keys never contain ``/``, so only ``~`` is escaped (``~0``).
* Absence is a value, not an exception: :func:`get_at` returns the :data:`MISSING` sentinel.
* Nesting is bounded by :data:`MAX_JSON_DEPTH` (a pointer's length plus the depth of the value below it), so
  the recursive functions of this room can never hit Python's recursion limit and orjson can always serialize
  what we stored (it refuses to nest deeper than 254).

Not handled here: URL decoding (the HTTP adapter decodes a path once), resource-specific "not found" codes
(``things:attribute.notfound`` ...; callers test :func:`get_at` for :data:`MISSING` and raise their own).
"""

from __future__ import annotations

import enum
import re
from typing import Final, TypeAlias

from edgetwin.errors import InvalidInput, NotFound

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_KEY_LENGTH",
    "MISSING",
    "Json",
    "Missing",
    "Pointer",
    "check_key",
    "check_keys",
    "delete_at",
    "format_pointer",
    "get_at",
    "json_equal",
    "parse_pointer",
    "put_at",
]

Json: TypeAlias = "dict[str, Json] | list[Json] | str | int | float | bool | None"
"""A JSON value as the standard library and orjson decode it."""

Pointer: TypeAlias = tuple[str, ...]
"""A parsed JSON pointer: the keys from the root down; ``()`` is the root itself."""


class Missing(enum.Enum):
    """Type of :data:`MISSING`; a one-member enum so that ``x is MISSING`` narrows types under mypy."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = Missing.MISSING
"""Returned where a JSON value is absent (``None`` cannot say that: it is JSON ``null``)."""

MAX_JSON_DEPTH: Final = 128
"""Deepest nesting a stored document may reach, counted in containers below the root value."""

MAX_KEY_LENGTH: Final = 256
"""Longest JSON key, in UTF-16 code units as Ditto's ``AbstractPatternValidator`` counts them."""

# Ditto RegexPatterns.NO_CONTROL_CHARS_NO_SLASHES_PATTERN: besides the C0/C1 controls, Ditto's class also bans
# U+00A0..U+00FF (so "ü" or "°" in a key is rejected, as in Ditto); code points above U+00FF are allowed.
_KEY_FORBIDDEN: Final = re.compile(r"[\x00-\x1F\x7F-\xFF/]")

_KEY_DESCRIPTION: Final = "Neither slashes nor any control characters are allowed."
_POINTER_DESCRIPTION: Final = "Check, for example, if the JSON Pointer is not empty."
_NOT_FOUND_CODE: Final = "edgetwin:pointer.notfound"


def _utf16_length(text: str) -> int:
    # Java strings count UTF-16 code units, so a character above U+FFFF counts twice toward Ditto's limits.
    if text.isascii():
        return len(text)
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def parse_pointer(text: str) -> Pointer:
    """Parse a Ditto JSON pointer as it appears in a URL path (already URL-decoded).

    The leading slash is optional and one trailing slash is ignored; ``""`` and ``"/"`` are the root.
    ``~0`` decodes to ``~`` (Ditto ``ImmutableJsonPointer.ofParsed``).

    Args:
        text: the pointer, e.g. ``"attributes/location/latitude"`` or ``"/features/lamp"``.

    Returns:
        The keys from the root down.

    Raises:
        InvalidInput: ``json.pointer.invalid`` for an empty segment (``a//b``) or a pointer deeper than
            :data:`MAX_JSON_DEPTH`.
    """
    if "//" in text:
        raise InvalidInput(
            f"The JSON pointer is invalid: '{text}'!",
            description="Consecutive slashes in JSON pointers are not supported.",
            error_code="json.pointer.invalid",
        )
    body = text.removeprefix("/").removesuffix("/")
    if not body:
        return ()
    segments = body.split("/")
    if len(segments) > MAX_JSON_DEPTH:
        raise InvalidInput(
            f"The JSON pointer is invalid: '{text[:80]}...'!",
            description=f"A JSON pointer may have at most {MAX_JSON_DEPTH} levels.",
            error_code="json.pointer.invalid",
        )
    return tuple(segment.replace("~0", "~") for segment in segments)


def format_pointer(pointer: Pointer) -> str:
    """Render a pointer the way Ditto prints one: ``"/a/b"``, and ``"/"`` for the root.

    Args:
        pointer: the keys from the root down.

    Returns:
        The slash-separated pointer with ``~`` escaped as ``~0``; :func:`parse_pointer` inverts it.
    """
    return "/" + "/".join(key.replace("~", "~0") for key in pointer)


def check_key(key: str) -> None:
    """Validate one JSON object key (also a feature ID or one pointer segment) by Ditto's rules.

    Args:
        key: the key.

    Raises:
        InvalidInput: ``json.key.invalid`` if the key is empty, longer than :data:`MAX_KEY_LENGTH`, or
            contains ``/`` or a character in U+0000..U+001F or U+007F..U+00FF.
    """
    if _utf16_length(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"The JSON key <{key}> is invalid!",
            description=f"Not allowed to exceed length of {MAX_KEY_LENGTH}.",
            error_code="json.key.invalid",
        )
    if not key or _KEY_FORBIDDEN.search(key):
        raise InvalidInput(
            f"The JSON key <{key}> is invalid!", description=_KEY_DESCRIPTION, error_code="json.key.invalid"
        )


def check_keys(value: Json, *, at_depth: int = 0) -> None:
    """Validate every object key of a value about to be stored, and its nesting depth.

    Keys are checked in objects nested in objects, as Ditto's ``validateJsonKeys`` does; objects inside arrays
    are not key-checked (no Ditto pointer can address them), but they count toward the depth.

    Args:
        value: the value to store.
        at_depth: the length of the pointer the value will be stored at, so that pointer and value together
            stay within :data:`MAX_JSON_DEPTH`.

    Raises:
        InvalidInput: ``json.key.invalid`` for a bad key (see :func:`check_key`), ``json.invalid`` when the
            value nests deeper than allowed.
    """
    # An explicit stack instead of recursion: this runs on untrusted input of any depth.
    stack: list[tuple[Json, int, bool]] = [(value, at_depth, True)]
    while stack:
        node, depth, keyed = stack.pop()
        if isinstance(node, dict):
            _check_depth(depth + 1)
            for key, child in node.items():
                if keyed:
                    check_key(key)
                stack.append((child, depth + 1, keyed))
        elif isinstance(node, list):
            _check_depth(depth + 1)
            stack.extend((child, depth + 1, False) for child in node)


def _check_depth(depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise InvalidInput(
            f"The JSON value nests deeper than {MAX_JSON_DEPTH} levels.",
            description="Flatten the structure of the JSON value.",
            error_code="json.invalid",
        )


def get_at(doc: Json, pointer: Pointer) -> Json | Missing:
    """Read the value a pointer addresses.

    Args:
        doc: the document.
        pointer: the keys from the root down; ``()`` returns ``doc`` itself.

    Returns:
        The value (possibly ``None`` for JSON ``null``), or :data:`MISSING` if any key on the way is absent or
        passes through something that is not an object.
    """
    node: Json = doc
    for key in pointer:
        if not isinstance(node, dict) or key not in node:
            return MISSING
        node = node[key]
    return node


def put_at(doc: Json, pointer: Pointer, value: Json, *, create_parents: bool) -> Json:
    """Return a copy of ``doc`` with ``value`` stored at ``pointer`` (added or replaced).

    Args:
        doc: the document.
        pointer: where to store; ``()`` replaces the whole document, i.e. returns ``value``.
        value: the value to store (shared, not copied).
        create_parents: create missing intermediate objects, and replace intermediate non-objects with objects
            (Ditto ``JsonObject.setValue``: ``PUT attributes/a/b`` creates ``a``); if false, every parent must
            already be an object.

    Returns:
        The new document; ``doc`` is unchanged.

    Raises:
        NotFound: ``edgetwin:pointer.notfound`` if a parent is missing and ``create_parents`` is false.
            Callers that owe the client a specific Ditto code check the parent with :func:`get_at` first.
    """
    if not pointer:
        return value
    # Walk down collecting the objects on the path, then rebuild them bottom-up as fresh dicts.
    chain: list[dict[str, Json]] = []
    node: Json = doc
    for depth, key in enumerate(pointer):
        if not isinstance(node, dict):
            if not create_parents:
                raise _pointer_not_found(pointer[:depth])
            node = {}
        chain.append(node)
        if depth < len(pointer) - 1:
            node = node.get(key)
    rebuilt = value
    for parent, key in zip(reversed(chain), reversed(pointer), strict=True):
        rebuilt = {**parent, key: rebuilt}
    return rebuilt


def delete_at(doc: Json, pointer: Pointer) -> Json:
    """Return a copy of ``doc`` without the member ``pointer`` addresses.

    Args:
        doc: the document.
        pointer: the member to remove; must not be the root.

    Returns:
        The new document; ``doc`` is unchanged.

    Raises:
        InvalidInput: ``json.pointer.invalid`` for the root pointer (a document cannot delete itself).
        NotFound: ``edgetwin:pointer.notfound`` if there is nothing at ``pointer``. Callers that owe the
            client a specific Ditto code check with :func:`get_at` first.
    """
    if not pointer:
        raise InvalidInput(
            "The JSON pointer is invalid: '/'!",
            description="The root of a document cannot be deleted from the document.",
            error_code="json.pointer.invalid",
        )
    chain: list[dict[str, Json]] = []
    node: Json = doc
    for key in pointer:
        if not isinstance(node, dict) or key not in node:
            raise _pointer_not_found(pointer)
        chain.append(node)
        node = node[key]
    leaf_parent = chain[-1]
    rebuilt: Json = {k: v for k, v in leaf_parent.items() if k != pointer[-1]}
    for parent, key in zip(reversed(chain[:-1]), reversed(pointer[:-1]), strict=True):
        rebuilt = {**parent, key: rebuilt}
    return rebuilt


def json_equal(left: Json | Missing, right: Json | Missing) -> bool:
    """Compare two JSON values as JSON, not as Python.

    Python says ``True == 1`` and ``{"a": 1} == {"a": True}``; JSON does not. Numbers compare by value
    (``1`` equals ``1.0``), booleans only equal booleans, and object member order does not matter.

    Args:
        left: a value or :data:`MISSING`.
        right: a value or :data:`MISSING`.

    Returns:
        Whether both are the same JSON value (two :data:`MISSING` are equal).
    """
    # Iterative, so that comparing two deep documents cannot exhaust the stack.
    pairs: list[tuple[Json | Missing, Json | Missing]] = [(left, right)]
    while pairs:
        a, b = pairs.pop()
        if isinstance(a, bool) or isinstance(b, bool):
            if a is not b:
                return False
        elif isinstance(a, int | float) and isinstance(b, int | float):
            if a != b:
                return False
        elif isinstance(a, dict) and isinstance(b, dict):
            if a.keys() != b.keys():
                return False
            pairs.extend((a[key], b[key]) for key in a)
        elif isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                return False
            pairs.extend(zip(a, b, strict=True))
        elif type(a) is not type(b) or a != b:
            return False
    return True


def _pointer_not_found(pointer: Pointer) -> NotFound:
    return NotFound(
        f"The JSON pointer '{format_pointer(pointer)}' does not point to an existing object.",
        description="Create the parent resource first.",
        error_code=_NOT_FOUND_CODE,
    )
