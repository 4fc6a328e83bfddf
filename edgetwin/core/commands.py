"""Internal commands and their results: what every adapter hands to the core service.

Pure values (frozen dataclasses). HTTP, WebSocket, MQTT and connectors all build these; the
:class:`~edgetwin.core.service.TwinService` is the only thing that executes them. A command carries the
caller's :class:`AuthContext`, so the policy issue plugs enforcement into the service without any adapter
changing.

Paths are :data:`~edgetwin.twin.pointer.Pointer` tuples relative to the thing (``()`` is the whole thing,
``("attributes", "location")``, ``("features", "lamp", "properties", "on")``). Adapters only build the path
shapes Ditto routes (thing, policyId, definition, attributes[/...], features[/fid[/definition |
/properties[/...] | /desiredProperties[/...]]]); the service validates values per resource kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from edgetwin.twin.fields import FieldSelector
    from edgetwin.twin.pointer import Json, Missing, Pointer

__all__ = [
    "AuthContext",
    "Command",
    "CountThings",
    "CreateThing",
    "DeletePolicy",
    "DeleteThing",
    "MergeThing",
    "ModifyPolicy",
    "ModifyThing",
    "Preconditions",
    "RetrievePolicy",
    "RetrieveThing",
    "RetrieveThings",
    "Retrieved",
    "SearchResult",
    "SearchThings",
    "SendMessage",
    "Written",
]


@dataclass(frozen=True, slots=True)
class AuthContext:
    """Who is asking: the authenticated policy subjects, the first one being the originator.

    ``publish`` / ``subscribe`` are the MQTT topic filters the identity may publish to / subscribe to
    (DESIGN "Topic permissions": a built-in user's lists, or a JWT's DSH claims turned into filters). The
    broker and the messaging API compile them with ``mqtt.topics``; no filter, no access.
    """

    subjects: tuple[str, ...]
    correlation_id: str | None = None
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()

    @property
    def originator(self) -> str:
        """The subject a default policy is created for (Ditto: the first authenticated subject)."""
        return self.subjects[0]


@dataclass(frozen=True, slots=True)
class Preconditions:
    """Conditional-request inputs (ditto.md §1.8, §1.9), as received; the service validates them.

    ``condition`` is raw RQL text (header or query parameter); a malformed one is a 400
    ``things:condition.invalid`` raised by the service.
    """

    if_match: str | None = None
    if_none_match: str | None = None
    if_equal: str | None = None
    condition: str | None = None


NO_PRECONDITIONS = Preconditions()


@dataclass(frozen=True, slots=True)
class RetrieveThing:
    """``GET /things/{id}[/path]``."""

    thing_id: str
    path: Pointer = ()
    fields: FieldSelector | None = None
    preconditions: Preconditions = NO_PRECONDITIONS


@dataclass(frozen=True, slots=True)
class RetrieveThings:
    """``GET /things?ids=...``: unknown or unreadable ids are silently left out."""

    thing_ids: tuple[str, ...]
    fields: FieldSelector | None = None


@dataclass(frozen=True, slots=True)
class ModifyThing:
    """``PUT /things/{id}[/path]``: create (201) or replace (204) the resource at ``path``.

    ``initial_policy`` / ``copy_policy_from`` are the write-side special fields ``_policy`` and
    ``_copyPolicyFrom`` of a thing body (creation only); the adapter lifts them out of ``value``.
    """

    thing_id: str
    path: Pointer
    value: Json
    preconditions: Preconditions = NO_PRECONDITIONS
    initial_policy: Json | None = None
    copy_policy_from: str | None = None


@dataclass(frozen=True, slots=True)
class CreateThing:
    """``POST /things``: create with a generated id in ``namespace`` (Ditto's default when ``None``)."""

    value: Json
    namespace: str | None = None
    initial_policy: Json | None = None
    copy_policy_from: str | None = None


@dataclass(frozen=True, slots=True)
class MergeThing:
    """``PATCH /things/{id}[/path]`` with ``application/merge-patch+json`` (RFC 7396)."""

    thing_id: str
    path: Pointer
    patch: Json
    preconditions: Preconditions = NO_PRECONDITIONS


@dataclass(frozen=True, slots=True)
class DeleteThing:
    """``DELETE /things/{id}[/path]``."""

    thing_id: str
    path: Pointer = ()
    preconditions: Preconditions = NO_PRECONDITIONS


@dataclass(frozen=True, slots=True)
class RetrievePolicy:
    """``GET /policies/{id}[/entries[/{label}[/subjects[/{sid}] | /resources[/{key}]]]]``."""

    policy_id: str
    path: Pointer = ()
    fields: FieldSelector | None = None
    preconditions: Preconditions = NO_PRECONDITIONS


@dataclass(frozen=True, slots=True)
class ModifyPolicy:
    """``PUT /policies/{id}[/path]``: create (201) or replace (204).

    ``allow_lockout`` is Ditto's ``allow-policy-lockout`` header: create a policy that does not give the
    creator WRITE on ``policy:/``.
    """

    policy_id: str
    path: Pointer
    value: Json
    preconditions: Preconditions = NO_PRECONDITIONS
    allow_lockout: bool = False


@dataclass(frozen=True, slots=True)
class DeletePolicy:
    """``DELETE /policies/{id}[/path]``."""

    policy_id: str
    path: Pointer = ()
    preconditions: Preconditions = NO_PRECONDITIONS


@dataclass(frozen=True, slots=True)
class SearchThings:
    """``GET|POST /search/things`` (and ``GET /things`` without ids, which has no filter)."""

    filter: str | None = None
    namespaces: tuple[str, ...] | None = None
    option: str | None = None
    fields: FieldSelector | None = None


@dataclass(frozen=True, slots=True)
class CountThings:
    """``GET|POST /search/things/count``."""

    filter: str | None = None
    namespaces: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class SendMessage:
    """``POST /things/{id}[/features/{fid}]/inbox|outbox/messages/{subject}`` and ``.../inbox/claim``
    (ditto.md §5): a message to (``inbox``) or from (``outbox``) the thing, routed to live receivers.

    ``value`` is the payload as the Ditto Protocol carries it: a string for ``text/*``, the JSON value for
    ``application/json``, base64 text for anything else; :data:`~edgetwin.twin.pointer.MISSING` when the
    request had no body. ``subject`` may contain ``/``. A ``claim`` needs no permission.
    """

    thing_id: str
    direction: Literal["inbox", "outbox"]
    subject: str
    value: Json | Missing
    content_type: str | None = None
    feature_id: str | None = None
    preconditions: Preconditions = NO_PRECONDITIONS
    claim: bool = False


Command = (
    RetrievePolicy
    | ModifyPolicy
    | DeletePolicy
    | RetrieveThing
    | RetrieveThings
    | ModifyThing
    | CreateThing
    | MergeThing
    | DeleteThing
    | SearchThings
    | CountThings
)


@dataclass(frozen=True, slots=True)
class Retrieved:
    """A read's answer: the (field-selected) value and the resource's ETag."""

    value: Json
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class Written:
    """A write's answer.

    ``status`` is 201 (created: ``value`` is the created resource, ``entity_id`` names the thing or policy
    for the ``Location`` header) or 204 (modified, merged or deleted: no body). ``etag`` is the new ETag of
    the written resource (``None`` after a delete).
    """

    status: Literal[201, 204]
    entity_id: str
    revision: int
    etag: str | None = None
    value: Json | None = None


@dataclass(frozen=True, slots=True)
class SearchResult:
    """A search page: items (already field-selected) and the cursor of the next page, if any."""

    items: list[Json] = field(default_factory=list)
    cursor: str | None = None
