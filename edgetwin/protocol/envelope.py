"""The Ditto Protocol envelope and its topic (ditto.md §7.3): parse a JSON value, render one back.

Contract:

* :func:`parse_envelope` takes an already-decoded JSON value (the WebSocket/MQTT adapter decodes text with
  orjson; an undecodable frame is the adapter's ``json.invalid``) and returns an :class:`Envelope`, or raises
  :class:`~edgetwin.errors.InvalidInput` with Ditto's code. :meth:`Envelope.to_json` inverts it exactly:
  ``parse_envelope(e.to_json()) == e``.
* The topic is parsed into a :class:`Topic`; the grammar accepted is::

      <ns>/<name>/things/<twin|live>/<commands|events|acks|search|announcements>/<action>
      <ns>/<name>/things/<twin|live>/messages/<subject, may contain '/'>
      <ns>/<name>/things/<twin|live>/errors
      <ns>/<name>/things/<twin|live>/acks                       (aggregated acknowledgements)
      <ns>/<name>/policies/<commands|announcements>/<action>
      <ns>/<name>/policies/errors

  ``_`` stands for "any" namespace or name (multi-retrieve ``<ns>/_/…``, search ``_/_/…``); otherwise
  ``<ns>:<name>`` must be a valid entity ID (``things:id.invalid`` / ``policies:id.invalid``). Command and
  event actions are checked against Ditto's lists. ``connections`` topics are not supported.
* Header names are case-insensitive and case-preserving: :meth:`Envelope.header` looks a header up
  case-insensitively; the dict keeps the client's spelling.
* ``path`` stays the text the client sent (policy resource keys such as ``thing:/`` contain slashes, so the
  command mapping splits it per entity kind); it is checked to be a JSON pointer. A missing ``path`` is read
  as ``/`` (Ditto requires it, but every client-side message we have seen sends it).

Error codes (Ditto's): a non-object message or a field of the wrong JSON type ``json.invalid``; a missing
``topic`` ``json.field.missing``; a topic that is not in the grammar ``protocoladapter:unknown.topicpath``
(Ditto: "The topic path '…' is not supported." / "Action name <…> is unknown."); a bad pointer
``json.pointer.invalid``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal, TypeVar

from edgetwin.errors import InvalidInput
from edgetwin.twin.ids import is_valid_namespace, parse_policy_id, parse_thing_id
from edgetwin.twin.pointer import MISSING, Json, Missing, parse_pointer

__all__ = [
    "COMMAND_ACTIONS",
    "EVENT_ACTIONS",
    "PLACEHOLDER",
    "Envelope",
    "Topic",
    "parse_envelope",
    "parse_topic",
]

PLACEHOLDER: Final = "_"
"""The topic's "any namespace / any name" placeholder (``org.eclipse.ditto/_/things/twin/commands/retrieve``)."""

COMMAND_ACTIONS: Final = frozenset({"create", "retrieve", "modify", "merge", "delete", "migrate"})
"""Ditto's command actions (ditto.md §7.3); ``migrate`` is recognised but not mapped to a command."""

EVENT_ACTIONS: Final = frozenset({"created", "modified", "merged", "deleted", "migrated"})
"""Ditto's event actions (ditto.md §7.3)."""

_SEARCH_ACTIONS: Final = frozenset(
    {"subscribe", "request", "cancel", "created", "next", "complete", "failed"}
)
_THING_CRITERIA: Final = frozenset(
    {"commands", "events", "messages", "search", "errors", "acks", "announcements"}
)
_POLICY_CRITERIA: Final = frozenset({"commands", "errors", "announcements"})

_T = TypeVar("_T")

Group = Literal["things", "policies"]
Channel = Literal["twin", "live"]


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed Ditto Protocol topic.

    Attributes:
        namespace: the entity namespace, or ``"_"``.
        name: the entity name, or ``"_"``.
        group: ``"things"`` or ``"policies"``.
        channel: ``"twin"`` or ``"live"`` for things; ``None`` for policies.
        criterion: ``commands``, ``events``, ``messages``, ``errors``, ``acks``, ``search``, ``announcements``.
        action: the command/event action, message subject, ack label or search action; ``None`` for
            ``errors`` and aggregated ``acks``.
    """

    namespace: str
    name: str
    group: Group
    channel: Channel | None
    criterion: str
    action: str | None = None

    @property
    def entity_id(self) -> str | None:
        """``<namespace>:<name>``, or ``None`` when either part is the ``_`` placeholder."""
        if PLACEHOLDER in (self.namespace, self.name):
            return None
        return f"{self.namespace}:{self.name}"

    def with_criterion(self, criterion: str, action: str | None = None) -> Topic:
        """The same entity and channel with another criterion/action (a command's ``errors`` topic)."""
        return Topic(self.namespace, self.name, self.group, self.channel, criterion, action)

    def __str__(self) -> str:
        parts = [self.namespace, self.name, self.group]
        if self.channel is not None:
            parts.append(self.channel)
        parts.append(self.criterion)
        if self.action is not None:
            parts.append(self.action)
        return "/".join(parts)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One Ditto Protocol message (ditto.md §7.3).

    Attributes:
        topic: the parsed topic.
        path: the JSON pointer text, ``"/"`` for the whole entity.
        value: the payload, :data:`~edgetwin.twin.pointer.MISSING` when absent (``None`` is JSON ``null``).
        headers: the Ditto headers as sent (names case-preserved; look them up with :meth:`header`).
        status: the HTTP-like status of responses, errors and acks.
        revision: the entity revision of events.
        timestamp: the ISO-8601 timestamp of events.
        fields: the raw ``fields`` selector of retrieve commands.
        extra: the ``extra`` enrichment object of events (``extraFields``).
    """

    topic: Topic
    path: str = "/"
    value: Json | Missing = MISSING
    headers: dict[str, Json] = field(default_factory=dict)
    status: int | None = None
    revision: int | None = None
    timestamp: str | None = None
    fields: str | None = None
    extra: dict[str, Json] | None = None

    def header(self, name: str) -> Json | Missing:
        """A header's value by case-insensitive name; :data:`MISSING` when absent."""
        if name in self.headers:
            return self.headers[name]
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return MISSING

    @property
    def correlation_id(self) -> str | None:
        """The ``correlation-id`` header when it is a string, else ``None``."""
        value = self.header("correlation-id")
        return value if isinstance(value, str) else None

    def to_json(self) -> dict[str, Json]:
        """The envelope as a JSON object; absent optional members are left out, ``headers`` always present."""
        out: dict[str, Json] = {"topic": str(self.topic), "headers": dict(self.headers), "path": self.path}
        if self.value is not MISSING:
            out["value"] = self.value
        if self.fields is not None:
            out["fields"] = self.fields
        if self.status is not None:
            out["status"] = self.status
        if self.revision is not None:
            out["revision"] = self.revision
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp
        if self.extra is not None:
            out["extra"] = dict(self.extra)
        return out


def parse_topic(text: str) -> Topic:
    """Parse and validate a Ditto Protocol topic.

    Args:
        text: e.g. ``"org.eclipse.ditto/fancy-thing/things/twin/commands/modify"``.

    Returns:
        The topic.

    Raises:
        InvalidInput: ``protocoladapter:unknown.topicpath`` if the topic is outside the grammar (module
            docstring), ``things:id.invalid`` / ``policies:id.invalid`` if ``<ns>:<name>`` is not a valid ID.
    """
    parts = text.split("/")
    if len(parts) < 4:
        raise _unknown_topic(text)
    namespace, name, group = parts[0], parts[1], parts[2]
    if group == "things":
        topic = _thing_topic(text, namespace, name, parts[3:])
    elif group == "policies":
        topic = _policy_topic(text, namespace, name, parts[3:])
    else:
        raise _unknown_topic(text)
    _check_entity(topic)
    return topic


def _thing_topic(text: str, namespace: str, name: str, rest: list[str]) -> Topic:
    if rest[0] not in ("twin", "live") or len(rest) < 2:
        raise _unknown_topic(text)
    channel: Channel = "twin" if rest[0] == "twin" else "live"
    criterion = rest[1]
    if criterion not in _THING_CRITERIA:
        raise _unknown_topic(text)
    tail = rest[2:]
    if criterion == "messages":
        # The subject is the rest of the topic and may itself contain slashes (ditto.md §5.2).
        subject = "/".join(tail)
        if not subject:
            raise _unknown_topic(text)
        return Topic(namespace, name, "things", channel, criterion, subject)
    if criterion == "errors" or (criterion == "acks" and not tail):
        if tail:
            raise _unknown_topic(text)
        return Topic(namespace, name, "things", channel, criterion)
    if len(tail) != 1 or not tail[0]:
        raise _unknown_topic(text)
    action = tail[0]
    _check_action(criterion, action)
    return Topic(namespace, name, "things", channel, criterion, action)


def _policy_topic(text: str, namespace: str, name: str, rest: list[str]) -> Topic:
    criterion = rest[0]
    if criterion not in _POLICY_CRITERIA:
        raise _unknown_topic(text)
    if criterion == "errors":
        if len(rest) != 1:
            raise _unknown_topic(text)
        return Topic(namespace, name, "policies", None, criterion)
    if len(rest) != 2 or not rest[1]:
        raise _unknown_topic(text)
    action = rest[1]
    _check_action(criterion, action)
    return Topic(namespace, name, "policies", None, criterion, action)


def _check_action(criterion: str, action: str) -> None:
    allowed = {"commands": COMMAND_ACTIONS, "events": EVENT_ACTIONS, "search": _SEARCH_ACTIONS}.get(criterion)
    if allowed is not None and action not in allowed:
        # Ditto's ProtocolAdapter text for an unknown action (observed: "Action name <aggregate> is unknown.").
        raise InvalidInput(
            f"Action name <{action}> is unknown.",
            description="Check if the topic path is correct.",
            error_code="protocoladapter:unknown.topicpath",
        )


def _check_entity(topic: Topic) -> None:
    if topic.namespace != PLACEHOLDER and not is_valid_namespace(topic.namespace):
        _invalid_id(topic, f"{topic.namespace}:{topic.name}")
    entity_id = topic.entity_id
    if entity_id is not None:
        _invalid_id(topic, entity_id)


def _invalid_id(topic: Topic, entity_id: str) -> None:
    if topic.group == "policies":
        parse_policy_id(entity_id)
    else:
        parse_thing_id(entity_id)


def _unknown_topic(text: str) -> InvalidInput:
    return InvalidInput(
        f"The topic path '{text}' is not supported.",
        description="Check if the topic path is correct.",
        error_code="protocoladapter:unknown.topicpath",
    )


def parse_envelope(obj: Json) -> Envelope:
    """Validate a decoded Ditto Protocol message and build its :class:`Envelope`.

    Unknown top-level members (``metadata`` ...) are ignored.

    Args:
        obj: the decoded JSON value of one WebSocket text frame / MQTT payload.

    Returns:
        The envelope.

    Raises:
        InvalidInput: ``json.invalid`` (not an object, a member of the wrong type), ``json.field.missing``
            (no ``topic``), ``protocoladapter:unknown.topicpath``, ``things:id.invalid``,
            ``policies:id.invalid``, ``json.pointer.invalid``.
    """
    if not isinstance(obj, dict):
        raise InvalidInput(
            "The Ditto Protocol message must be a JSON object.",
            description="Send one JSON object with at least 'topic', 'headers' and 'path'.",
            error_code="json.invalid",
        )
    if "topic" not in obj:
        raise InvalidInput(
            "JSON did not include required </topic> field!",
            description="Check if all required JSON fields were set.",
            error_code="json.field.missing",
        )
    topic_text = _typed(obj, "topic", str, "JsonString")
    assert topic_text is not None  # present, checked above
    topic = parse_topic(topic_text)
    headers = _typed(obj, "headers", dict, "JsonObject")
    path = _typed(obj, "path", str, "JsonString")
    if path is None:
        path = "/"
    else:
        parse_pointer(path)  # raises json.pointer.invalid; the text itself is kept (see module docstring)
    extra = _typed(obj, "extra", dict, "JsonObject")
    return Envelope(
        topic=topic,
        path=path,
        value=obj.get("value", MISSING),
        headers=dict(headers) if headers is not None else {},
        status=_integer(obj, "status"),
        revision=_integer(obj, "revision"),
        timestamp=_typed(obj, "timestamp", str, "JsonString"),
        fields=_typed(obj, "fields", str, "JsonString"),
        extra=dict(extra) if extra is not None else None,
    )


def _typed(obj: dict[str, Json], name: str, kind: type[_T], kind_name: str) -> _T | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, kind):
        raise _wrong_type(name, value, kind_name)
    return value


def _integer(obj: dict[str, Json], name: str) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    # bool is an int in Python, never in JSON.
    if not isinstance(value, int) or isinstance(value, bool):
        raise _wrong_type(name, value, "JsonNumber (integer)")
    return value


def _wrong_type(name: str, value: Json, kind_name: str) -> InvalidInput:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    # Ditto's JsonParseException text for a field of the wrong type.
    return InvalidInput(
        f"Value <{shown}> for </{name}> is not of type <{kind_name}>!",
        description="Check the Ditto Protocol specification for the type of each field.",
        error_code="json.invalid",
    )
