"""Ditto entity IDs (things, policies) and feature IDs: validation and generation.

Contract: an entity ID is ``<namespace>:<name>`` (ditto.md 1.1, Ditto ``RegexPatterns.ID_REGEX``):

* the namespace is everything before the **first** colon and matches ``(|[a-zA-Z]\\w*(?:[.-][a-zA-Z]\\w*)*)``
  with an ASCII ``\\w``, as in Java (it may be empty: ``:thing`` is valid);
* the name is everything after it, one or more characters outside ``\\x00-\\x1F``, ``\\x7F-\\xFF`` and ``/``
  (so it may contain further colons: ``ns:a:b`` has the name ``a:b``);
* the whole ID has at most 256 UTF-16 code units.

The parse functions take already URL-decoded text and return it unchanged, typed as :class:`ThingId` or
:class:`PolicyId` (both plain ``str`` at runtime). Feature IDs follow Ditto's JSON key rules; ``*`` is
reserved as the field-selector wildcard and refused for writes.
"""

from __future__ import annotations

import re
import uuid
from typing import Final, NewType

from edgetwin.errors import InvalidInput
from edgetwin.twin.pointer import check_key

__all__ = [
    "MAX_ID_LENGTH",
    "PolicyId",
    "ThingId",
    "generate_thing_id",
    "is_valid_namespace",
    "name_of",
    "namespace_of",
    "parse_feature_id",
    "parse_policy_id",
    "parse_thing_id",
]

ThingId = NewType("ThingId", str)
"""A validated thing ID."""

PolicyId = NewType("PolicyId", str)
"""A validated policy ID."""

MAX_ID_LENGTH: Final = 256
"""Longest entity ID, in UTF-16 code units (Ditto ``AbstractPatternValidator.MAX_LENGTH``)."""

# re.ASCII: Java's \w is [a-zA-Z0-9_]; Python's would also accept every Unicode letter and digit.
_NAMESPACE: Final = re.compile(r"(?:[a-zA-Z]\w*(?:[.-][a-zA-Z]\w*)*)?", re.ASCII)
_NAME: Final = re.compile(r"[^\x00-\x1F\x7F-\xFF/]+")

_ID_DESCRIPTION: Final = "It must conform to the namespaced entity ID notation (see Ditto documentation)"


def _is_valid_entity_id(text: str) -> bool:
    # The namespace alphabet has no colon, so Ditto's regex always splits at the first colon.
    namespace, colon, name = text.partition(":")
    if not colon:
        return False
    # ASCII ids (nearly all) need no per-character UTF-16 count: it is a hot path of every request.
    if len(text) > MAX_ID_LENGTH or (
        not text.isascii() and len(text) + sum(1 for char in text if ord(char) > 0xFFFF) > MAX_ID_LENGTH
    ):
        return False
    return _NAMESPACE.fullmatch(namespace) is not None and _NAME.fullmatch(name) is not None


def is_valid_namespace(namespace: str) -> bool:
    """Tell whether a string is a valid namespace (the empty namespace is valid).

    Args:
        namespace: the candidate, e.g. ``"org.eclipse.ditto"``.

    Returns:
        Whether it matches Ditto's namespace pattern.
    """
    return _NAMESPACE.fullmatch(namespace) is not None


def parse_thing_id(text: str) -> ThingId:
    """Validate a thing ID.

    Args:
        text: the URL-decoded ID, e.g. ``"org.eclipse.ditto:fancy-thing"``.

    Returns:
        The same string, typed as a :class:`ThingId`.

    Raises:
        InvalidInput: ``things:id.invalid`` ("Thing ID 'invalid id' is not valid!").
    """
    if not _is_valid_entity_id(text):
        raise InvalidInput(
            f"Thing ID '{text}' is not valid!", description=_ID_DESCRIPTION, error_code="things:id.invalid"
        )
    return ThingId(text)


def parse_policy_id(text: str) -> PolicyId:
    """Validate a policy ID; the rules are those of thing IDs.

    Args:
        text: the URL-decoded ID.

    Returns:
        The same string, typed as a :class:`PolicyId`.

    Raises:
        InvalidInput: ``policies:id.invalid`` ("Policy ID '…' is not valid!").
    """
    if not _is_valid_entity_id(text):
        raise InvalidInput(
            f"Policy ID '{text}' is not valid!", description=_ID_DESCRIPTION, error_code="policies:id.invalid"
        )
    return PolicyId(text)


def namespace_of(entity_id: str) -> str:
    """The namespace of a validated thing or policy ID (before the first colon).

    Args:
        entity_id: a validated ID.

    Returns:
        The namespace, possibly ``""``.

    Raises:
        ValueError: if the string has no colon, i.e. was never validated (a programming error).
    """
    namespace, colon, _ = entity_id.partition(":")
    if not colon:
        raise ValueError(f"not a namespaced entity ID: {entity_id!r}")
    return namespace


def name_of(entity_id: str) -> str:
    """The name of a validated thing or policy ID (after the first colon).

    Args:
        entity_id: a validated ID.

    Returns:
        The name, which may itself contain colons.

    Raises:
        ValueError: if the string has no colon, i.e. was never validated (a programming error).
    """
    _, colon, name = entity_id.partition(":")
    if not colon:
        raise ValueError(f"not a namespaced entity ID: {entity_id!r}")
    return name


def generate_thing_id(namespace: str) -> ThingId:
    """Make a fresh thing ID ``<namespace>:<uuid4>``, as ``POST /things`` does (ditto.md 1.5).

    Args:
        namespace: the namespace (``?namespace=`` or the configured default).

    Returns:
        The new ID.

    Raises:
        InvalidInput: ``things:id.invalid`` if the namespace is not valid.
    """
    return parse_thing_id(f"{namespace}:{uuid.uuid4()}")


def parse_feature_id(text: str, *, for_write: bool = True) -> str:
    """Validate a feature ID (a JSON key under ``features``).

    Args:
        text: the URL-decoded feature ID.
        for_write: refuse ``*``, which Ditto reserves as the wildcard of field selectors (ditto.md 1.2). Reads
            may pass ``False``: no feature can be called ``*``, so the lookup simply finds nothing.

    Returns:
        The same string.

    Raises:
        InvalidInput: ``json.key.invalid`` if it is empty, contains ``/`` or control characters, is too long,
            or is ``*`` for a write.
    """
    check_key(text)
    if for_write and text == "*":
        raise InvalidInput(
            "The JSON key <*> is invalid!",
            description="The feature ID '*' is reserved as the wildcard of field selectors.",
            error_code="json.key.invalid",
        )
    return text
