"""ETags and RFC 7232 preconditions exactly as Ditto evaluates them (ditto.md 1.8).

Contract:

* ETags are strong and quoted: ``"rev:<revision>"`` for a thing or policy (:func:`thing_etag`), and
  ``"hash:<16 hex digits>"`` for a sub-resource (:func:`value_etag`: SHA-256 of canonical JSON, so it is the
  same in every process and every run).
* :func:`check_preconditions` is Ditto's ``ConditionalHeadersValidator``: both headers are parsed first
  (malformed → 400 ``header.invalid``); with no current resource, GET, HEAD and DELETE skip the checks (the
  caller answers 404); then ``If-Match`` and after it ``If-None-Match`` are evaluated. A failed
  ``If-None-Match`` on a read is 304, every other failure 412. Comparison is strong: ``W/"x"`` in a header
  never matches our strong tags (Ditto compares weakly only when the *current* tag is weak, which it never
  is).
* :func:`check_if_equal` is the ``if-equal`` header (``update`` | ``skip`` | ``skip-minimizing-merge``).

Not handled here: the ``_policy`` field exemption (a GET whose ``fields`` select ``_policy`` simply does not
call :func:`check_preconditions`), the RQL ``condition`` header, and putting the current ``ETag`` on 304/412
responses (the API layer knows it; the exceptions do not carry headers).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Final, Literal

from edgetwin.errors import InvalidInput, NotModified, PreconditionFailed
from edgetwin.twin.patch import diff_merge_patch, merge_patch
from edgetwin.twin.pointer import MISSING, Json, Missing, json_equal

__all__ = [
    "IF_EQUAL_MODES",
    "check_if_equal",
    "check_preconditions",
    "parse_etag_list",
    "thing_etag",
    "value_etag",
]

IF_EQUAL_MODES: Final = ("update", "skip", "skip-minimizing-merge")
"""The values of the ``if-equal`` header; ``update`` is the default."""

# Ditto EntityTag.Regex: an optional weak prefix and a quoted opaque tag without '"' or '*'.
_ENTITY_TAG: Final = re.compile(r'(?:W/)?"[^"*]*"')
# Ditto EntityTagMatchers.ENTITY_TAG_MATCHERS_PATTERN.
_LIST_SEPARATOR: Final = re.compile(r"\s*,\s*")
_QUERY_METHODS: Final = frozenset({"GET", "HEAD"})
_SKIP_WHEN_ABSENT_METHODS: Final = frozenset({"GET", "HEAD", "DELETE"})


def thing_etag(revision: int) -> str:
    """The ETag of a whole thing (or policy) at a revision.

    Args:
        revision: the entity's ``_revision``.

    Returns:
        E.g. ``'"rev:2"'``, quotes included.
    """
    return f'"rev:{revision}"'


def value_etag(value: Json) -> str:
    """The ETag of a sub-resource value (an attribute, a feature, a property ...).

    Args:
        value: the JSON value.

    Returns:
        ``'"hash:<hex>"'``: the first 16 hex digits of SHA-256 over the value's canonical JSON (sorted keys,
        no whitespace), so equal values get equal tags across processes. Member order does not matter;
        ``1`` and ``1.0`` are different values here, as their JSON text differs.

    Raises:
        InvalidInput: ``json.invalid`` for a value nested too deep to serialize.
    """
    try:
        canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except RecursionError as err:
        raise InvalidInput("The JSON value nests too deeply.", error_code="json.invalid") from err
    # surrogatepass: the json module (unlike orjson) lets a lone surrogate into a str; hash it, do not crash.
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
    return f'"hash:{digest[:16]}"'


def parse_etag_list(header: str, *, header_name: str = "if-match") -> list[str] | Literal["*"]:
    """Parse an ``If-Match`` / ``If-None-Match`` value.

    Args:
        header: the header value, e.g. ``'"rev:1", W/"rev:2"'`` or ``"*"``.
        header_name: the header's name, for the error message.

    Returns:
        ``"*"`` if the list contains ``*`` (which matches any current tag), else the entity tags as written,
        ``W/`` prefixes included.

    Raises:
        InvalidInput: ``header.invalid`` if the value is empty or an element is neither ``*`` nor a quoted
            entity tag.
    """
    items = _parse_matchers(header, header_name)
    return "*" if "*" in items else list(items)


def _parse_matchers(header: str, header_name: str) -> tuple[str, ...]:
    items = _LIST_SEPARATOR.split(header.strip())
    # Java's String.split drops trailing empty strings, so Ditto accepts a trailing comma.
    while len(items) > 1 and not items[-1]:
        items.pop()
    for item in items:
        if item != "*" and _ENTITY_TAG.fullmatch(item) is None:
            raise InvalidInput(
                f"The value '{header}' of the header '{header_name}' is not a valid entity-tag.",
                description=f"Verify that the value of the header '{header_name}' is a valid 'entity-tag' "
                "and try again.",
                error_code="header.invalid",
            )
    return tuple(items)


def _matches(matcher: str, current: str) -> bool:
    if matcher == "*":
        return True
    if current.startswith("W/"):
        return matcher.removeprefix("W/") == current.removeprefix("W/")  # RFC 7232 §2.3.2 weak comparison
    return matcher == current  # strong comparison: a W/ matcher can never equal a strong tag


def check_preconditions(
    *,
    method: str,
    current_etag: str | None,
    if_match: str | None,
    if_none_match: str | None,
    resource_kind: str = "Thing",
    code_prefix: str = "things",
) -> None:
    """Evaluate ``If-Match`` and ``If-None-Match`` against the current entity tag.

    Args:
        method: the HTTP method (or its equivalent for WS/MQTT commands: GET for retrieve, DELETE for delete,
            PUT/PATCH/POST for the rest).
        current_etag: the ETag of the addressed resource now, or ``None`` if it does not exist.
        if_match: the ``If-Match`` header value, or ``None`` if absent.
        if_none_match: the ``If-None-Match`` header value, or ``None`` if absent.
        resource_kind: ``"Thing"`` or ``"Policy"``, as it appears in the messages.
        code_prefix: ``"things"`` or ``"policies"``, the prefix of the error codes.

    Raises:
        InvalidInput: ``header.invalid`` for a malformed header (even when the checks are skipped).
        NotModified: ``<prefix>:precondition.notmodified`` when ``If-None-Match`` matches on GET or HEAD.
        PreconditionFailed: ``<prefix>:precondition.failed`` for every other failed precondition.
    """
    matchers = None if if_match is None else _parse_matchers(if_match, "if-match")
    none_matchers = None if if_none_match is None else _parse_matchers(if_none_match, "if-none-match")
    method = method.upper()
    if current_etag is None and method in _SKIP_WHEN_ABSENT_METHODS:
        return
    if matchers is not None and (
        current_etag is None or not any(_matches(matcher, current_etag) for matcher in matchers)
    ):
        raise _precondition_failed("if-match", matchers, current_etag, resource_kind, code_prefix)
    if (
        none_matchers is not None
        and current_etag is not None
        and any(_matches(matcher, current_etag) for matcher in none_matchers)
    ):
        if method in _QUERY_METHODS:
            value = ",".join(none_matchers)
            raise NotModified(
                f"The comparison of precondition header 'if-none-match' for the requested {resource_kind} "
                f"resource evaluated to false. Expected: '{value}' not to match actual: '{current_etag}'.",
                description="The comparison of the provided precondition header 'if-none-match' with the "
                f"current ETag value of the requested {resource_kind} resource evaluated to false. Check the "
                "value of your conditional header value.",
                error_code=f"{code_prefix}:precondition.notmodified",
            )
        raise _precondition_failed("if-none-match", none_matchers, current_etag, resource_kind, code_prefix)


def _precondition_failed(
    header_name: str,
    matchers: tuple[str, ...],
    current_etag: str | None,
    resource_kind: str,
    code_prefix: str,
) -> PreconditionFailed:
    # Ditto prints the matchers joined by "," and String.valueOf(null) for an absent resource.
    value = ",".join(matchers)
    actual = "null" if current_etag is None else current_etag
    return PreconditionFailed(
        f"The comparison of precondition header '{header_name}' for the requested {resource_kind} resource "
        f"evaluated to false. Header value: '{value}', actual entity-tag: '{actual}'.",
        description="The comparison of the provided precondition header with the current ETag value of the "
        f"requested {resource_kind} resource evaluated to false. Check the value of your conditional header "
        "value.",
        error_code=f"{code_prefix}:precondition.failed",
    )


def check_if_equal(
    mode: str | None, current: Json | Missing, new: Json, *, merge: bool = False, code_prefix: str = "things"
) -> Json:
    """Apply the ``if-equal`` header to a modify (PUT) or merge (PATCH) command.

    Values compare as JSON (:func:`~edgetwin.twin.pointer.json_equal`). At the thing root the caller passes
    comparable views: Ditto leaves hidden fields, ``thingId`` and ``policyId`` out of ``current`` and
    ``_``-keys out of ``new``.

    Args:
        mode: the header value; ``None`` (absent) means ``update``.
        current: the resource's value now, or :data:`~edgetwin.twin.pointer.MISSING` if it does not exist
            (which never counts as equal).
        new: the PUT body, or the merge patch if ``merge``.
        merge: ``new`` is a merge patch; "equal" then means applying it would change nothing.
        code_prefix: ``"things"`` or ``"policies"``.

    Returns:
        The value to apply: ``new``, except for ``skip-minimizing-merge`` on a merge, where it is the smallest
        merge patch with the same effect (only the members that actually change).

    Raises:
        InvalidInput: ``header.invalid`` if ``mode`` is not one of :data:`IF_EQUAL_MODES`.
        PreconditionFailed: ``<prefix>:precondition.failed`` if ``mode`` is ``skip`` or
            ``skip-minimizing-merge`` and the command would not change the resource.
    """
    mode = "update" if mode is None else mode
    if mode not in IF_EQUAL_MODES:
        raise InvalidInput(
            f"The value '{mode}' of the header 'if-equal' is not a valid if-equal option.",
            description="Verify that the value of the header 'if-equal' is one of 'update', 'skip' or "
            "'skip-minimizing-merge' and try again.",
            error_code="header.invalid",
        )
    if mode == "update" or current is MISSING:
        return new
    after = merge_patch(current, new) if merge else new
    if json_equal(after, current):
        raise PreconditionFailed(
            "The previous value was equal to the new value and the 'if-equal' header was set to 'skip'.",
            description="Your changes were not applied, which is probably the expected outcome.",
            error_code=f"{code_prefix}:precondition.failed",
        )
    if merge and mode == "skip-minimizing-merge":
        minimized = diff_merge_patch(current, after)
        return new if minimized is MISSING else minimized
    return new
