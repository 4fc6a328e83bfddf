"""Ditto policies, pure: validate policy JSON, and decide what a set of subjects may read, write or execute.

Contract:

* **Validation** (:func:`parse_policy`, :func:`parse_entries`, :func:`parse_entry`, :func:`parse_subjects`,
  :func:`parse_subject`, :func:`parse_resources`, :func:`parse_resource`) takes the JSON of a ``PUT`` on
  ``/policies/{id}[/entries[/{label}[/subjects[/{sid}] | /resources[/{key}]]]]`` and returns it normalised:
  unknown and hidden (``_``) members dropped, resource keys in canonical form (``thing:/features/lamp``),
  permission lists de-duplicated, subject expiries in UTC (``2030-01-01T00:00:00Z``). Errors are
  :class:`~edgetwin.errors.InvalidInput` (400) with Ditto's codes (``json.invalid``, ``json.field.missing``,
  ``json.pointer.invalid``, ``policies:id.invalid``, ``policies:id.notsettable``, ``policies:entry.invalid``,
  ``policies:label.invalid``, ``policies:subjectid.invalid``, ``policies:subjectexpiry.invalid``,
  ``policies:subjectannouncement.invalid``), plus ``policies:import.invalid`` for policy imports, which
  edgetwin does not support.
* **The lock-out rule** (:func:`check_policy_manageable`, Ditto ``PoliciesValidator``): some permanent
  subject must keep WRITE on ``policy:/``; else 403 ``policies:policy.modificationinvalid``.
* **Evaluation** (:class:`Enforcer`, ditto.md §3.3, Ditto's tree enforcer): a policy is compiled once for one
  set of subjects, one namespace and one instant into a trie per resource type whose nodes carry the
  permissions granted and revoked there; every check then walks only the path it asks about. The weight of a
  grant or revoke is the depth of its path, and on equal weight the revoke wins, across entries and subjects.
  An enforcer is immutable and may be shared and cached (the core service caches it per policy revision,
  subjects and namespace).
* **Default policy** (:func:`default_policy`): the ``DEFAULT`` entry Ditto creates with a thing (ditto.md §1.6).

Not handled here: the policy ``imports``/``references`` mechanics, the rounding of subject expiries to a
configured granularity, removing expired subjects from stored policies, and which 403/404 code a denied
thing command owes the client (the core service decides that).

Pure: standard library only, no clock (instants come in as ISO-8601 strings), inputs are never mutated.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from edgetwin.errors import InvalidInput, PolicyDenied
from edgetwin.twin.ids import is_valid_namespace, parse_policy_id
from edgetwin.twin.pointer import (
    MAX_KEY_LENGTH,
    MISSING,
    Json,
    Missing,
    Pointer,
    format_pointer,
    parse_pointer,
)

__all__ = [
    "Enforcer",
    "check_policy_manageable",
    "default_policy",
    "parse_entries",
    "parse_entry",
    "parse_policy",
    "parse_resource",
    "parse_resources",
    "parse_subject",
    "parse_subjects",
]

# Ditto's permissions (ditto.md §3.2), as bits so that one node answers for all three at once.
_PERMISSION_BITS: Final = {"READ": 1, "WRITE": 2, "EXECUTE": 4}
_READ: Final = 1

# The resource types Ditto knows (``PoliciesResourceType``). Ditto itself stores keys of any other type and
# never evaluates them; edgetwin refuses them, since such an entry could only be a typo.
_RESOURCE_TYPES: Final = ("thing", "policy", "message")

# Ditto's RegexPatterns: labels use NO_CONTROL_CHARS_NO_SLASHES, subject IDs and resource keys
# NO_CONTROL_CHARS. Besides the C0/C1 controls the class bans U+00A0..U+00FF (see ``pointer.check_key``).
_LABEL_FORBIDDEN: Final = re.compile(r"[\x00-\x1F\x7F-\xFF/]")
_TEXT_FORBIDDEN: Final = re.compile(r"[\x00-\x1F\x7F-\xFF]")
# Ditto ``ImmutableLabel.of``: user labels must not use the prefix of labels imported from other policies.
_IMPORTED_LABEL_PREFIX: Final = "imported"

# Ditto ``Placeholders``: a subject ID with a placeholder needs no issuer (it is resolved later).
_PLACEHOLDER: Final = re.compile(r"\{\{.*\}\}", re.DOTALL)

# Java ``Instant.parse`` (ISO_INSTANT): date, 'T', time with seconds, optional fraction, 'Z' or an offset.
_INSTANT: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")

# Ditto ``ImmutableSubjectAnnouncement``: ``beforeExpiry`` is a DittoDuration in s, m or h (bare = seconds).
_BEFORE_EXPIRY: Final = re.compile(r"\d+[smh]?")

_IMPORTABLE: Final = ("implicit", "explicit", "never")
_ALLOWED_ADDITIONS: Final = ("subjects", "resources", "namespaces")

# Ditto's merge-patch deletion key (``twin.patch``): ``{"{{ ~regex~ }}": null}`` deletes matching members.
_REGEX_KEY: Final = re.compile(r"\{\{\s*~(.*)~\s*\}\}", re.DOTALL)

# Hidden fields a condition may always reference (ditto.md §3.3 step 4 keeps them in every view).
_ALWAYS_READABLE: Final = frozenset({"thingId", "_namespace", "_revision", "_modified", "_created"})

_JSON_DESCRIPTION: Final = "Check if the JSON was valid and if it was in the required format."
_MISSING_DESCRIPTION: Final = "Check if all required JSON fields were set."
_ENTRY_DESCRIPTION: Final = "Policy entry does not contain any known permission like 'READ' or 'WRITE'"
_LOCKOUT_DESCRIPTION: Final = (
    "There must always be at least one PolicyEntry with 'WRITE' permissions on resource 'policy:/'."
)


# --------------------------------------------------------------------------------------------------------------
# Validation


def parse_policy(value: Json, *, policy_id: str, now: str | None = None) -> dict[str, Json]:
    """Validate the body of ``PUT /policies/{policyId}``.

    Args:
        value: the request body.
        policy_id: the policy ID from the URL.
        now: the current instant (ISO-8601); when given, a subject ``expiry`` in the past is refused, as
            Ditto refuses it on modifying commands.

    Returns:
        ``{"policyId": policy_id, "entries": {...}}``, normalised (see :func:`parse_entries`).

    Raises:
        InvalidInput: ``policies:id.invalid`` for a bad ``policy_id``; ``json.invalid`` if the body is not an
            object; ``policies:id.notsettable`` if the body's ``policyId`` differs from ``policy_id``;
            ``policies:import.invalid`` for non-empty ``imports``; the codes of :func:`parse_entries`.
    """
    parse_policy_id(policy_id)
    body = _object(value, "policy")
    if "policyId" in body and body["policyId"] != policy_id:
        raise InvalidInput(
            "The Policy ID in the request body is not equal to the Policy ID in the request URL.",
            description="Either delete the Policy ID from the request body or use the same Policy ID as in the"
            " request URL.",
            error_code="policies:id.notsettable",
        )
    if body.get("imports"):
        raise InvalidInput(
            f"The Policy with ID '{policy_id}' declares policy imports, which are not supported.",
            description="Copy the entries of the policy to import into this policy instead.",
            error_code="policies:import.invalid",
        )
    # Ditto 3.9 ``ImmutablePolicy.fromJson``: absent entries are no entries (the lock-out rule then refuses).
    entries = body.get("entries")
    return {"policyId": policy_id, "entries": {} if entries is None else parse_entries(entries, now=now)}


def parse_entries(value: Json, *, now: str | None = None) -> dict[str, Json]:
    """Validate the body of ``PUT /policies/{id}/entries``: an object of entries keyed by label.

    Args:
        value: the entries object.
        now: see :func:`parse_policy`.

    Returns:
        The normalised entries, in input order.

    Raises:
        InvalidInput: ``json.invalid`` if it is not an object; the codes of :func:`parse_entry`.
    """
    entries = _object(value, "entries")
    return {label: parse_entry(label, entry, now=now) for label, entry in entries.items()}


def parse_entry(label: str, value: Json, *, now: str | None = None) -> dict[str, Json]:
    """Validate one policy entry (``PUT /policies/{id}/entries/{label}``).

    ``subjects`` and ``resources`` default to empty objects (Ditto 3.9). ``namespaces``, ``importable`` and
    ``allowedAdditions`` are kept when given; other members are dropped.

    Args:
        label: the entry's label.
        value: the entry object.
        now: see :func:`parse_policy`.

    Returns:
        ``{"subjects": {...}, "resources": {...}}`` plus the optional members that were given.

    Raises:
        InvalidInput: ``policies:entry.invalid`` for an empty label or one with ``/`` or control characters,
            bad ``namespaces`` / ``importable`` / ``allowedAdditions``, or entry ``references`` (not
            supported); ``policies:label.invalid`` for a label starting with ``imported``; ``json.invalid`` if
            the entry is not an object; the codes of :func:`parse_subjects` and :func:`parse_resources`.
    """
    _check_label(label)
    entry = _object(value, "entry")
    subjects = entry.get("subjects")
    resources = entry.get("resources")
    result: dict[str, Json] = {
        "subjects": {} if subjects is None else parse_subjects(subjects, now=now),
        "resources": {} if resources is None else parse_resources(resources),
    }
    namespaces = entry.get("namespaces")
    if namespaces is not None:
        result["namespaces"] = _parse_namespaces(namespaces)
    importable = entry.get("importable")
    if importable is not None:
        if importable not in _IMPORTABLE:
            raise _entry_invalid(
                f"The value '{_text(importable)}' of field '/importable' is not valid. Valid values are:"
                f" {list(_IMPORTABLE)}"
            )
        result["importable"] = importable
    additions = entry.get("allowedAdditions")
    if additions is not None:
        if not isinstance(additions, list) or any(item not in _ALLOWED_ADDITIONS for item in additions):
            raise _entry_invalid(
                f"The value '{_text(additions)}' of field '/allowedAdditions' is not valid. Valid values are:"
                f" {list(_ALLOWED_ADDITIONS)}"
            )
        result["allowedAdditions"] = list(dict.fromkeys(additions))
    if entry.get("references"):
        raise _entry_invalid(f"The PolicyEntry '{label}' declares 'references', which are not supported.")
    return result


def parse_subjects(value: Json, *, now: str | None = None) -> dict[str, Json]:
    """Validate a subjects object (``PUT …/entries/{label}/subjects``), keyed by subject ID.

    Args:
        value: the subjects object.
        now: see :func:`parse_policy`.

    Returns:
        The normalised subjects.

    Raises:
        InvalidInput: ``json.invalid`` if it is not an object; the codes of :func:`parse_subject`.
    """
    subjects = _object(value, "subjects")
    result: dict[str, Json] = {}
    for subject_id, subject in subjects.items():
        result.update(parse_subject(subject_id, subject, now=now))
    return result


def parse_subject(subject_id: str, value: Json, *, now: str | None = None) -> dict[str, Json]:
    """Validate one subject (``PUT …/entries/{label}/subjects/{subjectId}``).

    Args:
        subject_id: ``<issuer>:<subject>``, e.g. ``nginx:ditto`` (Ditto ``SubjectId``).
        value: ``{"type": str, "expiry"?: ISO-8601, "announcement"?: object}``.
        now: see :func:`parse_policy`.

    Returns:
        ``{subject_id: normalised_subject}`` (one member, ready to merge into a subjects object).

    Raises:
        InvalidInput: ``policies:subjectid.invalid`` for an ID without ``:`` issuer separator (and no
            placeholder), with an empty subject part, control characters or more than 256 characters;
            ``json.invalid`` if the value is not an object or a member has the wrong type;
            ``json.field.missing`` without ``type``; ``policies:subjectexpiry.invalid`` for an expiry that is
            not ISO-8601 with a zone, or (with ``now``) lies in the past;
            ``policies:subjectannouncement.invalid`` for a bad ``beforeExpiry``.
    """
    _check_subject_id(subject_id)
    subject = _object(value, "subject")
    subject_type = subject.get("type")
    if subject_type is None:
        raise InvalidInput(
            "The 'type' for the 'subject' is missing.",
            description=_MISSING_DESCRIPTION,
            error_code="json.field.missing",
        )
    result: dict[str, Json] = {"type": _typed(subject_type, str, "/type", "String")}
    expiry = subject.get("expiry")
    if expiry is not None:
        result["expiry"] = _parse_expiry(_typed(expiry, str, "/expiry", "String"), now)
    announcement = subject.get("announcement")
    if announcement is not None:
        result["announcement"] = _parse_announcement(announcement)
    return {subject_id: result}


def parse_resources(value: Json) -> dict[str, Json]:
    """Validate a resources object (``PUT …/entries/{label}/resources``), keyed by resource key.

    Args:
        value: the resources object.

    Returns:
        The normalised resources, keyed by canonical resource key.

    Raises:
        InvalidInput: ``json.invalid`` if it is not an object; ``policies:entry.invalid`` when two keys name
            the same resource (``thing:/a`` and ``thing:a``); the codes of :func:`parse_resource`.
    """
    resources = _object(value, "resources")
    result: dict[str, Json] = {}
    for key, permissions in resources.items():
        parsed = parse_resource(key, permissions)
        for canonical in parsed:
            if canonical in result:
                raise _entry_invalid(f"There is more than one Resource with the path <{canonical}>!")
        result.update(parsed)
    return result


def parse_resource(resource_key: str, value: Json) -> dict[str, Json]:
    """Validate one resource (``PUT …/entries/{label}/resources/{resourcePath}``).

    Args:
        resource_key: ``<type>:<path>`` with type ``thing``, ``policy`` or ``message``; the path's leading
            slash is optional (``thing:features/lamp`` is ``thing:/features/lamp``).
        value: ``{"grant": [...], "revoke": [...]}``, both required arrays of ``READ``/``WRITE``/``EXECUTE``
            (``null`` counts as empty).

    Returns:
        ``{canonical_key: {"grant": [...], "revoke": [...]}}`` (one member), permissions de-duplicated.

    Raises:
        InvalidInput: ``json.invalid`` for a key without ``:`` or a value that is not an object or has
            non-array ``grant``/``revoke``; ``json.field.missing`` without ``grant`` or ``revoke``;
            ``json.pointer.invalid`` for an empty path segment (``thing:/a//b``); ``policies:entry.invalid``
            for an unknown resource type or permission, control characters or more than 256 characters.
    """
    canonical = _canonical_resource_key(resource_key)
    if not isinstance(value, dict):
        raise InvalidInput(
            f"The JSON object for the 'permissions' (grant/revoke) of the 'resource' '{canonical}' is missing"
            " or not an object.",
            description=_JSON_DESCRIPTION,
            error_code="json.invalid",
        )
    effects: dict[str, Json] = {}
    for effect in ("grant", "revoke"):
        if effect not in value:
            raise InvalidInput(
                f"JSON did not include required </{effect}> field!",
                description=_MISSING_DESCRIPTION,
                error_code="json.field.missing",
            )
        listed = value[effect]
        # Ditto reads a JSON null as a null array, i.e. no permissions (the OpenAPI example shows "revoke": null).
        permissions = [] if listed is None else _typed(listed, list, f"/{effect}", "JsonArray")
        for permission in permissions:
            if not isinstance(permission, str) or permission not in _PERMISSION_BITS:
                raise InvalidInput(
                    f"The permission <{_text(permission)}> of the Resource <{canonical}> is unknown.",
                    description=_ENTRY_DESCRIPTION,
                    error_code="policies:entry.invalid",
                )
        effects[effect] = list(dict.fromkeys(permissions))
    return {canonical: effects}


def _check_label(label: str) -> None:
    if not label or _LABEL_FORBIDDEN.search(label) or _utf16_length(label) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"The Policy Label {label} is invalid",
            description="Neither slashes nor any control characters are allowed, and a label must be 1 to"
            f" {MAX_KEY_LENGTH} characters long.",
            error_code="policies:entry.invalid",
        )
    if label.startswith(_IMPORTED_LABEL_PREFIX):
        raise InvalidInput(
            f"Label '{label}' is not valid!",
            description=f"It must not start with the blocklisted '{_IMPORTED_LABEL_PREFIX}' prefix.",
            error_code="policies:label.invalid",
        )


def _check_subject_id(subject_id: str) -> None:
    # Ditto ``ImmutableSubjectId.of``: the issuer ends at the first ':' (after a '://', if any).
    if _PLACEHOLDER.search(subject_id):
        valid = True
    else:
        scheme = subject_id.find("://")
        colon = subject_id.find(":", scheme + 3) if scheme >= 0 else subject_id.find(":")
        valid = colon >= 0 and colon < len(subject_id) - 1
    if not valid or _TEXT_FORBIDDEN.search(subject_id) or _utf16_length(subject_id) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"Subject ID '{subject_id}' is not valid!",
            description="It must contain an issuer as prefix separated by a colon ':' from the actual subject",
            error_code="policies:subjectid.invalid",
        )


def _parse_expiry(text: str, now: str | None) -> str:
    instant = _instant(text)
    if instant is None:
        raise InvalidInput(
            f"Subject expiry timestamp '{text}' is not valid.",
            description="It must be provided as ISO-8601 formatted char sequence.",
            error_code="policies:subjectexpiry.invalid",
        )
    current = None if now is None else _instant(now)
    if current is not None and instant < current:
        raise InvalidInput(
            f"Subject expiry timestamp '{text}' is not valid.",
            description="It must not be in the past, please adjust to a timestamp in the future.",
            error_code="policies:subjectexpiry.invalid",
        )
    return _format_instant(instant)


def _parse_announcement(value: Json) -> dict[str, Json]:
    announcement = _object(value, "announcement")
    result: dict[str, Json] = {}
    before = announcement.get("beforeExpiry")
    if before is not None:
        if not isinstance(before, str) or not _BEFORE_EXPIRY.fullmatch(before):
            raise InvalidInput(
                f"The 'beforeExpiry' duration '{_text(before)}' is not valid.",
                description="It must be a positive integer followed by 'h' (hours), 'm' (minutes) or 's'"
                " (seconds).",
                error_code="policies:subjectannouncement.invalid",
            )
        result["beforeExpiry"] = before
    when_deleted = announcement.get("whenDeleted")
    result["whenDeleted"] = (
        False if when_deleted is None else _typed(when_deleted, bool, "/whenDeleted", "boolean")
    )
    acks = announcement.get("requestedAcks")
    if acks is not None:
        result["requestedAcks"] = _typed(acks, dict, "/requestedAcks", "JsonObject")
    interval = announcement.get("randomizationInterval")
    if interval is not None:
        result["randomizationInterval"] = _typed(interval, str, "/randomizationInterval", "String")
    return result


def _parse_namespaces(value: Json) -> list[Json]:
    # Ditto ``PolicyEntryNamespaces``: exact namespaces ("com.acme") or prefix patterns ("com.acme.*").
    patterns = _typed(value, list, "/namespaces", "JsonArray")
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise _entry_invalid(
                f"The 'namespaces' array must only contain string values, but contained: {_text(pattern)}."
            )
        namespace = pattern.removesuffix(".*")
        if not namespace or not is_valid_namespace(namespace):
            raise _entry_invalid(
                f"The value '{pattern}' is not a valid namespace pattern. Valid patterns are namespaces like"
                " 'com.acme' or wildcard patterns like 'com.acme.*'."
            )
    return list(patterns)


def _canonical_resource_key(key: str) -> str:
    if _TEXT_FORBIDDEN.search(key) or _utf16_length(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"The Policy Resource {key} is invalid",
            description="No control characters are allowed, and a resource key is at most"
            f" {MAX_KEY_LENGTH} characters long.",
            error_code="policies:entry.invalid",
        )
    resource_type, colon, path = key.partition(":")
    if not colon or not resource_type:
        raise InvalidInput(
            "The provided string was not in the expected format 'type:path'",
            description=_JSON_DESCRIPTION,
            error_code="json.invalid",
        )
    if resource_type not in _RESOURCE_TYPES:
        raise _entry_invalid(
            f"The Resource <{key}> has the unknown type <{resource_type}>; known types are"
            f" {', '.join(_RESOURCE_TYPES)}."
        )
    return f"{resource_type}:{format_pointer(parse_pointer(path))}"


def _entry_invalid(description: str) -> InvalidInput:
    return InvalidInput(
        "The Policy Entry is invalid.", description=description, error_code="policies:entry.invalid"
    )


def _object(value: Json, what: str) -> dict[str, Json]:
    if not isinstance(value, dict):
        raise InvalidInput(
            f"<{_text(value)}> is not a JSON object!",
            description=f"The {what} must be a JSON object. {_JSON_DESCRIPTION}",
            error_code="json.invalid",
        )
    return value


def _typed(value: Json, kind: type[Any], pointer: str, java_name: str) -> Any:
    # ``isinstance(True, int)`` holds in Python, but no field here is numeric, so bool needs no special case.
    if not isinstance(value, kind):
        raise InvalidInput(
            f"Value <{_text(value)}> for <{pointer}> is not of type <{java_name}>!",
            description=_JSON_DESCRIPTION,
            error_code="json.invalid",
        )
    return value


def _text(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= 200 else text[:200] + "…"


def _utf16_length(text: str) -> int:
    # Java counts UTF-16 code units; a character above U+FFFF counts twice toward Ditto's 256.
    return len(text) if text.isascii() else len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def _instant(text: str) -> datetime.datetime | None:
    """Parse an ISO-8601 instant (zone required, as Java ``Instant.parse``); ``None`` if it is not one."""
    if not _INSTANT.fullmatch(text):
        return None
    try:
        # Python 3.11 reads 'Z' and up to 9 fraction digits (truncated to microseconds).
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.astimezone(datetime.UTC)


def _format_instant(instant: datetime.datetime) -> str:
    # Java ``Instant.toString``: UTC, 'Z', the fraction in groups of three digits and only when non-zero.
    text = instant.strftime("%Y-%m-%dT%H:%M:%S")
    micros = instant.microsecond
    if micros:
        text += f".{micros // 1000:03d}" if micros % 1000 == 0 else f".{micros:06d}"
    return text + "Z"


# --------------------------------------------------------------------------------------------------------------
# The lock-out rule and the default policy


def check_policy_manageable(
    policy: Mapping[str, Any], *, now: str | None = None, label: str | None = None
) -> None:
    """Refuse a policy nobody could manage any more (Ditto ``PoliciesValidator``).

    The rule, as Ditto's: some subject without ``expiry`` is granted WRITE on exactly ``policy:/`` by an
    entry, and no entry revokes WRITE on ``policy:/`` from that subject. Revokes *below* ``policy:/``
    (``policy:/entries/owner``) do not count, ``namespaces`` restrictions are not considered, and expiring
    subjects never count, however far their expiry lies ahead.

    Args:
        policy: the resulting (normalised) policy JSON.
        now: accepted for symmetry with :meth:`Enforcer.build`; the rule disregards every expiring subject,
            so the clock does not enter the decision.
        label: the entry a sub-resource command modified; selects Ditto's entry-level error.

    Raises:
        PolicyDenied: 403 ``policies:policy.modificationinvalid`` (``policies:entry.modificationinvalid`` with
            ``label``).
    """
    del now  # see the docstring: kept so that callers need not know which rules are time-dependent
    granted: set[str] = set()
    revoked: set[str] = set()
    entries = policy.get("entries")
    for entry in entries.values() if isinstance(entries, Mapping) else ():
        if not isinstance(entry, Mapping):
            continue
        subjects = entry.get("subjects")
        resources = entry.get("resources")
        if not isinstance(subjects, Mapping) or not isinstance(resources, Mapping):
            continue
        for key, permissions in resources.items():
            if _split_resource_key(key) != ("policy", ()) or not isinstance(permissions, Mapping):
                continue
            if "WRITE" in _strings(permissions.get("grant")):
                granted.update(
                    sid
                    for sid, subject in subjects.items()
                    if not (isinstance(subject, Mapping) and "expiry" in subject)
                )
            if "WRITE" in _strings(permissions.get("revoke")):
                revoked.update(subjects)
    if granted - revoked:
        return
    policy_id = policy.get("policyId")
    if label is None:
        raise PolicyDenied(
            f"The Policy with ID '{policy_id}' could not be modified as the resulting Policy would be invalid.",
            description=_LOCKOUT_DESCRIPTION,
            error_code="policies:policy.modificationinvalid",
            status=403,
        )
    raise PolicyDenied(
        f"The PolicyEntry with Label '{label}' on the Policy with ID '{policy_id}' could not be modified as the"
        " resulting Policy would be invalid.",
        description=_LOCKOUT_DESCRIPTION,
        error_code="policies:entry.modificationinvalid",
        status=403,
    )


def default_policy(policy_id: str, subject: str) -> dict[str, Json]:
    """The policy Ditto creates with a thing that names none (ditto.md §1.6).

    Args:
        policy_id: the new policy's ID (the thing's ID).
        subject: the creating subject (Ditto: the first authenticated subject, e.g. ``nginx:ditto``).

    Returns:
        ``{"policyId": policy_id, "entries": {"DEFAULT": ...}}`` granting ``subject`` READ and WRITE on
        ``thing:/``, ``policy:/`` and ``message:/``; a fresh object on every call.
    """
    resources: dict[str, Json] = {
        f"{resource_type}:/": {"grant": ["READ", "WRITE"], "revoke": []} for resource_type in _RESOURCE_TYPES
    }
    return {
        "policyId": policy_id,
        "entries": {"DEFAULT": {"subjects": {subject: {"type": "generated"}}, "resources": resources}},
    }


# --------------------------------------------------------------------------------------------------------------
# Evaluation


class _Node:
    """One path of one resource type: the permission bits granted and revoked exactly here, and (after
    compilation) those granted and revoked anywhere strictly below."""

    __slots__ = ("below_grant", "below_revoke", "children", "grant", "revoke")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.grant = 0
        self.revoke = 0
        self.below_grant = 0
        self.below_revoke = 0

    def finish(self) -> tuple[int, int]:
        """Fill in the ``below_*`` bits of this sub-trie; return this node's bits at or below it."""
        for child in self.children.values():
            grant, revoke = child.finish()
            self.below_grant |= grant
            self.below_revoke |= revoke
        return self.grant | self.below_grant, self.revoke | self.below_revoke


class Enforcer:
    """A policy compiled for one set of subjects, one namespace and one instant (ditto.md §3.3).

    Build it with :meth:`Enforcer.build`. It holds one trie per resource type (``thing``, ``policy``,
    ``message``) merging the resources of every entry that applies; each check walks one path of one trie.
    Immutable once built, so it may be cached and shared.
    """

    __slots__ = ("_tries",)

    def __init__(self, tries: dict[str, _Node]) -> None:
        self._tries = tries

    @classmethod
    def build(
        cls, policy: Mapping[str, Any], subjects: Iterable[str], *, namespace: str | None = None, now: str
    ) -> Enforcer:
        """Compile ``policy`` for the authenticated ``subjects``.

        An entry applies when it names one of ``subjects`` that has not expired (a subject whose ``expiry``
        lies before ``now`` is gone, as Ditto deletes it; an unreadable expiry counts as expired), and, if it
        lists ``namespaces``, when ``namespace`` matches one of them (``com.acme`` exactly, ``com.acme.*`` any
        namespace below ``com.acme`` but not ``com.acme`` itself). With ``namespace=None`` (no thing
        namespace applies) entries restricted to namespaces never apply.

        Args:
            policy: the policy JSON as stored (it was validated when written; malformed parts are skipped).
            subjects: the caller's subject IDs, e.g. ``["nginx:ditto"]``.
            namespace: the namespace of the entity accessed (for a policy: its own ID's namespace).
            now: the current instant, ISO-8601 (e.g. ``2024-05-01T10:00:00.000000Z``).

        Returns:
            The enforcer.
        """
        wanted = tuple(dict.fromkeys(subjects))
        tries: dict[str, _Node] = {}
        entries = policy.get("entries")
        if not wanted or not isinstance(entries, Mapping):
            return cls(tries)
        clock: list[datetime.datetime | None] = []  # parsed on first use: most policies have no expiry
        for entry in entries.values():
            if not isinstance(entry, Mapping) or not _entry_applies(entry, wanted, namespace, now, clock):
                continue
            resources = entry.get("resources")
            if not isinstance(resources, Mapping):
                continue
            for key, permissions in resources.items():
                split = _split_resource_key(key) if isinstance(key, str) else None
                if split is None or not isinstance(permissions, Mapping):
                    continue
                grant = _bits(permissions.get("grant"))
                revoke = _bits(permissions.get("revoke"))
                if not grant and not revoke:
                    continue
                node = tries.get(split[0])
                if node is None:
                    node = tries[split[0]] = _Node()
                for segment in split[1]:
                    child = node.children.get(segment)
                    if child is None:
                        child = node.children[segment] = _Node()
                    node = child
                node.grant |= grant
                node.revoke |= revoke
        for root in tries.values():
            root.finish()
        return cls(tries)

    def unrestricted(self, resource_type: str, path: Pointer, permission: str) -> bool:
        """Whether the subjects have ``permission`` on the whole resource at ``path``, everything below included.

        Ditto ``hasUnrestrictedPermissions``: the deepest grant at or above ``path`` must be deeper than every
        revoke at or above it, and nothing below ``path`` may be revoked (a revoke below is always deeper).

        Args:
            resource_type: ``thing``, ``policy`` or ``message``.
            path: the resource path, e.g. ``("features", "lamp")``.
            permission: ``READ``, ``WRITE`` or ``EXECUTE``.

        Returns:
            Whether the permission is granted without restriction.

        Raises:
            ValueError: for an unknown permission (a programming error).
        """
        bit = _bit(permission)
        grant, revoke, node = self._weights(resource_type, path, bit)
        if node is not None and node.below_revoke & bit:
            return False
        return grant > revoke

    def partial(self, resource_type: str, path: Pointer, permission: str) -> bool:
        """Whether the subjects have ``permission`` on at least some part of the resource at ``path``.

        Ditto ``hasPartialPermissions``: as :meth:`unrestricted`, but a grant anywhere below ``path`` suffices
        (it is always deeper than the revokes at or above), and revokes below do not count.

        Args:
            resource_type: ``thing``, ``policy`` or ``message``.
            path: the resource path.
            permission: ``READ``, ``WRITE`` or ``EXECUTE``.

        Returns:
            Whether some part of the resource at ``path`` carries the permission.

        Raises:
            ValueError: for an unknown permission.
        """
        bit = _bit(permission)
        grant, revoke, node = self._weights(resource_type, path, bit)
        if node is not None and node.below_grant & bit:
            return True
        return grant > revoke

    def readable_view(self, value: Json, *, resource_type: str = "thing", at: Pointer = ()) -> Json | Missing:
        """Ditto's ``buildJsonView``: ``value`` reduced to the leaves the subjects may READ.

        A leaf (a non-object, or an empty object) is readable if the deepest grant or revoke of READ on its
        path, from the resource root down to the leaf, is a grant (a revoke wins on the same path). Grants
        deeper than a leaf do not make it readable. An object none of whose leaves is readable disappears.
        Unchanged sub-trees are shared with ``value``; with unrestricted READ at ``at``, ``value`` itself is
        returned.

        Args:
            value: the JSON found at ``at`` of the resource.
            resource_type: the resource type of the trie to use.
            at: where ``value`` sits in the resource (``()`` for the whole thing).

        Returns:
            The readable part of ``value``, or :data:`~edgetwin.twin.pointer.MISSING` if nothing is readable.
        """
        node = self._tries.get(resource_type)
        if node is None:
            return MISSING
        readable = bool(node.grant & _READ) and not node.revoke & _READ
        for key in at:
            child = node.children.get(key)
            if child is None:  # nothing decided at or below here: the state reached so far holds throughout
                return value if readable else MISSING
            node = child
            if node.grant & _READ:
                readable = True
            if node.revoke & _READ:
                readable = False
        return _view(value, node, readable)

    def may_merge(self, path: Pointer, patch: Json) -> bool:
        """Whether the subjects may apply the merge ``patch`` at ``path`` of a thing (ditto.md §3.3 step 4).

        Allowed with unrestricted WRITE at ``path``, or with partial WRITE at ``path`` plus unrestricted WRITE
        on every leaf of the patch. A leaf is a non-object (``null`` included) or an empty object (Ditto
        skips empty objects; counting them closes the gap of a ``{}`` replacing a value one may not write).
        A ``{{ ~regex~ }}: null`` member deletes siblings it cannot name, so it needs unrestricted WRITE on
        the object that contains it.

        Args:
            path: where the patch applies, relative to the thing.
            patch: the merge patch.

        Returns:
            Whether the merge is allowed.
        """
        if self.unrestricted("thing", path, "WRITE"):
            return True
        if not self.partial("thing", path, "WRITE"):
            return False
        # An explicit stack: the patch nests at most MAX_JSON_DEPTH deep, but needs no recursion at all.
        stack: list[tuple[Pointer, Json]] = [(path, patch)]
        while stack:
            where, value = stack.pop()
            if isinstance(value, dict) and value:
                for key, member in value.items():
                    if member is None and _REGEX_KEY.fullmatch(key):
                        if not self.unrestricted("thing", where, "WRITE"):
                            return False
                    else:
                        stack.append(((*where, key), member))
            elif not self.unrestricted("thing", where, "WRITE"):
                return False
        return True

    def may_read_fields(self, fields: Iterable[str]) -> bool:
        """Whether a condition may reference ``fields`` (ditto.md §1.9): unrestricted READ on each.

        Ditto (``ThingCommandEnforcement.enforceReadPermissionOnCondition``) requires unrestricted READ on
        ``thing:/<field>`` for every field of the condition. ``thingId``, ``_namespace``, ``_revision``,
        ``_modified`` and ``_created`` are always allowed (they are in every view). A ``*`` segment (the
        ``features/*/…`` wildcard) must be readable for every key the policy names at that place as well as
        for any other key, so that a wildcard cannot probe a revoked feature.

        Args:
            fields: the RQL field paths, e.g. ``attributes/location`` or ``features/lamp/properties/on``.

        Returns:
            Whether every field is readable.

        Raises:
            InvalidInput: ``things:condition.invalid`` for a field with an empty segment (``attributes//x``).
        """
        for field in fields:
            try:
                pointer = parse_pointer(field)
            except InvalidInput:
                raise InvalidInput(
                    f"The specified condition is invalid: the field '{field}' is not a valid JSON pointer.",
                    description="Check the condition's field paths: empty path segments are not allowed.",
                    error_code="things:condition.invalid",
                ) from None
            if len(pointer) == 1 and pointer[0] in _ALWAYS_READABLE:
                continue
            if not self._may_read((), pointer):
                return False
        return True

    def _may_read(self, head: Pointer, rest: Pointer) -> bool:
        if "*" not in rest:
            return self.unrestricted("thing", (*head, *rest), "READ")
        star = rest.index("*")
        prefix = (*head, *rest[:star])
        node = self._node_at("thing", prefix)
        keys = ["*"] if node is None else ["*", *(key for key in node.children if key != "*")]
        return all(self._may_read((*prefix, key), rest[star + 1 :]) for key in keys)

    def _node_at(self, resource_type: str, path: Pointer) -> _Node | None:
        node = self._tries.get(resource_type)
        for key in path:
            if node is None:
                return None
            node = node.children.get(key)
        return node

    def _weights(self, resource_type: str, path: Pointer, bit: int) -> tuple[int, int, _Node | None]:
        """The weights (depth + 1; 0 for none) of the deepest grant and revoke at or above ``path``, and the
        trie node at ``path`` itself (``None`` when the policy says nothing at or below it)."""
        node = self._tries.get(resource_type)
        if node is None:
            return 0, 0, None
        grant = 1 if node.grant & bit else 0
        revoke = 1 if node.revoke & bit else 0
        for depth, key in enumerate(path, 2):
            child = node.children.get(key)
            if child is None:
                return grant, revoke, None
            node = child
            if node.grant & bit:
                grant = depth
            if node.revoke & bit:
                revoke = depth
        return grant, revoke, node


def _view(value: Json, node: _Node, readable: bool) -> Json | Missing:
    """The readable part of ``value`` at trie ``node``, ``readable`` being the state decided above it."""
    if readable:
        if not node.below_revoke & _READ:
            return value  # nothing is revoked below: all of it is readable, shared as is
    elif not node.below_grant & _READ:
        return MISSING  # nothing is granted below: none of it is readable
    if not isinstance(value, dict) or not value:
        # A leaf: only the decisions on its own path count, not those deeper in the policy.
        return value if readable else MISSING
    children = node.children
    out: dict[str, Json] = {}
    for key, member in value.items():
        child = children.get(key)
        if child is None:
            if readable:
                out[key] = member
            continue
        member_readable = readable
        if child.grant & _READ:
            member_readable = True
        if child.revoke & _READ:  # after the grant: on the same path the revoke wins
            member_readable = False
        sub = _view(member, child, member_readable)
        if sub is not MISSING:
            out[key] = sub
    return out if out else MISSING


def _entry_applies(
    entry: Mapping[str, Any],
    wanted: tuple[str, ...],
    namespace: str | None,
    now: str,
    clock: list[datetime.datetime | None],
) -> bool:
    subjects = entry.get("subjects")
    if not isinstance(subjects, Mapping):
        return False
    patterns = entry.get("namespaces")
    if patterns and (namespace is None or not any(_namespace_matches(p, namespace) for p in patterns)):
        return False
    for subject_id in wanted:
        subject = subjects.get(subject_id)
        if subject is None:
            continue
        expiry = subject.get("expiry") if isinstance(subject, Mapping) else None
        if expiry is None:
            return True
        if not clock:
            clock.append(_instant(now))
        expires = _instant(expiry) if isinstance(expiry, str) else None
        current = clock[0]
        # Ditto ``SubjectExpiry.isExpired``: expired once the expiry lies before now.
        if expires is not None and current is not None and not expires < current:
            return True
    return False


def _namespace_matches(pattern: Any, namespace: str) -> bool:
    # Ditto ``PolicyEntryNamespaces.matchesPattern``: "com.acme.*" matches "com.acme.x", not "com.acme".
    if not isinstance(pattern, str):
        return False
    if pattern.endswith(".*"):
        return namespace.startswith(pattern[:-1])
    return namespace == pattern


@functools.lru_cache(maxsize=4096)
def _split_resource_key(key: str) -> tuple[str, Pointer] | None:
    """``"thing:/features/lamp"`` → ``("thing", ("features", "lamp"))``; ``None`` if it is no resource key.

    Cached: the same few keys are compiled again for every policy revision and subject set.
    """
    resource_type, colon, path = key.partition(":")
    if not colon:
        return None
    try:
        return resource_type, parse_pointer(path)
    except InvalidInput:
        return None


def _bits(permissions: Any) -> int:
    bits = 0
    if isinstance(permissions, list):
        for permission in permissions:
            bits |= _PERMISSION_BITS.get(permission, 0) if isinstance(permission, str) else 0
    return bits


def _bit(permission: str) -> int:
    try:
        return _PERMISSION_BITS[permission]
    except KeyError:
        raise ValueError(f"unknown permission {permission!r}") from None


def _strings(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []
