"""Ditto Protocol twin commands, responses, errors and events <-> edgetwin's core values.

Contract:

* :func:`to_command` maps a twin command envelope (``things/twin/commands/<action>`` and
  ``policies/commands/<action>``) to a core :data:`~edgetwin.core.commands.Command`, wrapped in a
  :class:`ProtocolCommand` that also carries what the core command cannot say: the topic action, whether the
  entity must not exist yet, ``response-required`` and the ``correlation-id``.
* **create vs modify** (ditto.md §7.4): ``modify`` at ``/`` is create-or-replace, which is exactly
  :class:`~edgetwin.core.commands.ModifyThing`. ``create`` must fail with 409 ``things:thing.conflict`` if
  the thing exists; it is mapped to the same ``ModifyThing`` with ``If-None-Match: *`` added to the
  preconditions and ``must_not_exist=True``. The service then answers 412 for an existing thing; the caller
  passes every error of a command through :func:`translate_error`, which turns that 412 into Ditto's 409
  (``policies:policy.conflict`` for policies). The 412 is translated only when the client sent no
  precondition of its own, so a client's failing ``If-Match``/``condition`` keeps its 412. ``create`` is
  only accepted at path ``/`` (Ditto has no create command for parts of a thing).
* :func:`response_envelope` renders a :class:`~edgetwin.core.commands.Retrieved` (200 + value),
  :class:`~edgetwin.core.commands.Written` (201 + value, or 204) or a multi-retrieve list (200) on the
  command's own topic and path with the ``correlation-id`` echoed; :func:`error_envelope` renders an
  :class:`~edgetwin.errors.EdgeTwinError` on ``<ns>/<name>/things/<channel>/errors`` (``policies/errors``)
  with path ``/``, or on ``unknown/unknown/things/twin/errors`` when the request could not be parsed.
* :func:`event_envelope` renders a :class:`~edgetwin.core.events.ThingEvent` (ditto.md §7.3/§7.4).

Header values (``correlation-id``, ``if-match``, ``if-none-match``, ``if-equal``, ``condition``) must be
strings and ``response-required`` / ``allow-policy-lockout`` booleans (or ``"true"``/``"false"``), else 400
``header.invalid``. A missing ``correlation-id`` is *not* generated here (this room has no randomness): the
adapter calls :func:`with_correlation_id` first, as Ditto generates one for the response.

Not handled here (the adapter routes them, or refuses them with :func:`to_command`'s
``protocoladapter:unknown.topicpath``): live commands/events (forwarded to devices as envelopes, ditto.md
§7.5), messages (§5.2), acknowledgements, ``migrate``, and search over the protocol (``_/_/things/twin/
search/...``, §7.6), which edgetwin does not support.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final, cast

from edgetwin.core.commands import (
    DeletePolicy,
    DeleteThing,
    MergeThing,
    ModifyPolicy,
    ModifyThing,
    Preconditions,
    Retrieved,
    RetrievePolicy,
    RetrieveThing,
    RetrieveThings,
    Written,
)
from edgetwin.errors import Conflict, InvalidInput, PreconditionFailed
from edgetwin.protocol.envelope import PLACEHOLDER, Channel, Envelope, Topic
from edgetwin.twin.fields import parse_fields
from edgetwin.twin.ids import name_of, namespace_of, parse_feature_id, parse_thing_id
from edgetwin.twin.pointer import MISSING, Json, Missing, Pointer, format_pointer, parse_pointer
from edgetwin.twin.things import lift_policy_specials

if TYPE_CHECKING:
    from edgetwin.core.commands import Command
    from edgetwin.core.events import ThingEvent
    from edgetwin.errors import EdgeTwinError
    from edgetwin.twin.fields import FieldSelector

__all__ = [
    "MERGE_PATCH_CONTENT_TYPE",
    "UNKNOWN_ERROR_TOPIC",
    "ProtocolCommand",
    "error_envelope",
    "event_envelope",
    "response_envelope",
    "to_command",
    "translate_error",
    "with_correlation_id",
]

MERGE_PATCH_CONTENT_TYPE: Final = "application/merge-patch+json"
"""``content-type`` of ``merged`` events (RFC 7396)."""

UNKNOWN_ERROR_TOPIC: Final = "unknown/unknown/things/twin/errors"
"""The topic of errors about a message whose topic is unknown (ditto.md §7.1)."""

_JSON_CONTENT_TYPE: Final = "application/json"
_NO_PRECONDITIONS: Final = Preconditions()


@dataclass(frozen=True, slots=True)
class ProtocolCommand:
    """A twin command envelope, mapped.

    Attributes:
        command: the core command to execute.
        action: the topic action (``create``, ``retrieve``, ``modify``, ``merge``, ``delete``).
        must_not_exist: ``create``: ``If-None-Match: *`` was added; pass errors through
            :func:`translate_error`.
        response_required: the ``response-required`` header (default ``True``); when ``False`` the adapter
            sends no response (errors included, as Ditto does).
        correlation_id: the ``correlation-id`` header, if any.
        client_preconditions: the client sent a precondition header of its own.
    """

    command: Command
    action: str
    must_not_exist: bool = False
    response_required: bool = True
    correlation_id: str | None = None
    client_preconditions: bool = False


def to_command(envelope: Envelope, *, channel: Channel = "twin") -> ProtocolCommand:
    """Map a twin command envelope (or, with ``channel="live"``, a live thing command) to a core command.

    Args:
        envelope: a parsed envelope whose topic is ``…/things/twin/commands/<action>`` or
            ``…/policies/commands/<action>``; with ``channel="live"``, ``…/things/live/commands/<action>``
            (the command a device is asked to carry out: same paths and values as on the twin).
        channel: which channel the topic must be on.

    Returns:
        The mapped command and its protocol-level flags.

    Raises:
        InvalidInput: ``protocoladapter:unknown.topicpath`` (not a twin command, live channel, search,
            ``migrate``, placeholder entity), ``protocoladapter:unknown.path`` (a path no command of that
            kind addresses), ``json.field.missing`` (no ``value`` where one is required), ``json.invalid``
            (a value of the wrong type), ``things:id.invalid`` (a bad ID in ``thingIds``),
            ``json.pointer.invalid``, ``json.key.invalid``, ``json.fieldselector.invalid``,
            ``header.invalid``.
    """
    topic = envelope.topic
    wanted = channel if topic.group == "things" else None
    if (
        topic.criterion != "commands"
        or topic.channel != wanted
        or (wanted is None and channel == "live")  # policies have no live channel
        or topic.action in (None, "migrate")
    ):
        raise _not_a_twin_command(topic)
    action = topic.action
    assert action is not None  # checked above
    pre = _preconditions(envelope)
    response_required = _bool_header(envelope, "response-required", default=True)
    correlation_id = _string_header(envelope, "correlation-id")
    if topic.group == "policies":
        command, must_not_exist = _policy_command(envelope, topic, action, pre)
    else:
        command, must_not_exist = _thing_command(envelope, topic, action, pre)
    return ProtocolCommand(
        command,
        action,
        must_not_exist=must_not_exist,
        response_required=response_required,
        correlation_id=correlation_id,
        client_preconditions=pre != _NO_PRECONDITIONS,
    )


def _thing_command(envelope: Envelope, topic: Topic, action: str, pre: Preconditions) -> tuple[Command, bool]:
    fields = _fields(envelope)
    if topic.name == PLACEHOLDER and action == "retrieve":
        return RetrieveThings(_thing_ids(envelope), fields), False
    thing_id = topic.entity_id
    if thing_id is None:
        raise _not_a_twin_command(topic)
    path = _thing_path(envelope.path, action)
    if action == "retrieve":
        return RetrieveThing(thing_id, path, fields, pre), False
    if action == "delete":
        return DeleteThing(thing_id, path, pre), False
    value = _value(envelope)
    if action == "merge":
        return MergeThing(thing_id, path, value, pre), False
    initial_policy: Json | None = None
    copy_policy_from: str | None = None
    if not path and isinstance(value, dict):
        value, initial_policy, copy_policy_from = lift_policy_specials(value)
    if action == "create":
        pre = replace(pre, if_none_match="*")
    return ModifyThing(thing_id, path, value, pre, initial_policy, copy_policy_from), action == "create"


def _policy_command(
    envelope: Envelope, topic: Topic, action: str, pre: Preconditions
) -> tuple[Command, bool]:
    policy_id = topic.entity_id
    if policy_id is None:
        raise _not_a_twin_command(topic)
    path = _policy_path(envelope.path, action)
    if action == "retrieve":
        return RetrievePolicy(policy_id, path, _fields(envelope), pre), False
    if action == "delete":
        return DeletePolicy(policy_id, path, pre), False
    if action == "merge":
        # Ditto has no policy merge command (no PATCH on policies either).
        raise _unknown_path(envelope.path)
    value = _value(envelope)
    if action == "create":
        pre = replace(pre, if_none_match="*")
    allow_lockout = _bool_header(envelope, "allow-policy-lockout", default=False)
    return ModifyPolicy(policy_id, path, value, pre, allow_lockout), action == "create"


def _thing_path(text: str, action: str) -> Pointer:
    """The pointer of a thing command; only the shapes Ditto routes (see core.commands)."""
    path = parse_pointer(text)
    if action == "create" and path:
        raise _unknown_path(text)
    n = len(path)
    if n == 0:
        return path
    root = path[0]
    if root == "attributes":
        return path
    if n == 1 and root in ("definition", "features"):
        return path
    if n == 1 and root == "policyId" and action != "delete":
        return path
    if root != "features":
        raise _unknown_path(text)
    parse_feature_id(path[1], for_write=action not in ("retrieve", "delete"))
    if n == 2 or (n == 3 and path[2] == "definition") or path[2] in ("properties", "desiredProperties"):
        return path
    raise _unknown_path(text)


def _policy_path(text: str, action: str) -> Pointer:
    """``/``, ``/entries[/<label>[/subjects[/<sid>] | /resources[/<key>]]]``.

    A resource key (``thing:/features/lamp``, ``thing:/``) contains slashes, so everything after
    ``/resources/`` is one key, trailing slash included (ditto.md §3.1).
    """
    if action == "create" and text not in ("", "/"):
        raise _unknown_path(text)
    body = text.removeprefix("/")
    if not body:
        return ()
    parts = body.split("/", 3)
    if parts[-1] == "" and len(parts) < 4:
        parts.pop()  # one trailing slash, as parse_pointer ignores it
    if parts[0] != "entries" or any(not part for part in parts):
        raise _unknown_path(text)
    if len(parts) <= 2:
        return tuple(parts)
    if parts[2] not in ("subjects", "resources"):
        raise _unknown_path(text)
    if len(parts) == 4 and parts[2] == "subjects" and "/" in parts[3]:
        raise _unknown_path(text)
    return tuple(parts)


def _thing_ids(envelope: Envelope) -> tuple[str, ...]:
    value = _value(envelope)
    ids = value.get("thingIds", MISSING) if isinstance(value, dict) else MISSING
    if ids is MISSING:
        raise InvalidInput(
            "JSON did not include required </thingIds> field!",
            description="Send the thing IDs to retrieve as 'value': {'thingIds': [...]}.",
            error_code="json.field.missing",
        )
    if not isinstance(ids, list) or not all(isinstance(one, str) for one in ids):
        raise InvalidInput(
            "The value of 'thingIds' must be an array of strings.",
            description="Send the thing IDs to retrieve as 'value': {'thingIds': [...]}.",
            error_code="json.invalid",
        )
    return tuple(parse_thing_id(one) for one in ids if isinstance(one, str))


def _value(envelope: Envelope) -> Json:
    if envelope.value is MISSING:
        raise InvalidInput(
            "JSON did not include required </value> field!",
            description=f"A '{envelope.topic.action}' command needs a value.",
            error_code="json.field.missing",
        )
    return envelope.value


def _fields(envelope: Envelope) -> FieldSelector | None:
    return None if envelope.fields is None else parse_fields(envelope.fields)


def _preconditions(envelope: Envelope) -> Preconditions:
    pre = Preconditions(
        if_match=_string_header(envelope, "if-match"),
        if_none_match=_string_header(envelope, "if-none-match"),
        if_equal=_string_header(envelope, "if-equal"),
        condition=_string_header(envelope, "condition"),
    )
    return _NO_PRECONDITIONS if pre == _NO_PRECONDITIONS else pre


def _string_header(envelope: Envelope, name: str) -> str | None:
    value = envelope.header(name)
    if value is MISSING:
        return None
    if not isinstance(value, str):
        raise _invalid_header(name, value, "a string")
    return value


def _bool_header(envelope: Envelope, name: str, *, default: bool) -> bool:
    value = envelope.header(name)
    if value is MISSING:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _invalid_header(name, value, "a boolean")


def _invalid_header(name: str, value: Json, kind: str) -> InvalidInput:
    return InvalidInput(
        f"The value '{value}' of the header '{name}' is not {kind}.",
        description=f"Verify that the value of the header '{name}' is {kind}.",
        error_code="header.invalid",
    )


def _not_a_twin_command(topic: Topic) -> InvalidInput:
    if topic.criterion == "search":
        message = (
            f"The topic path '{topic}' is not supported: edgetwin has no search over the Ditto Protocol."
        )
        description = "Use the HTTP search API (GET /api/2/search/things) or SSE."
    elif topic.channel == "live":
        message = f"The topic path '{topic}' is not a twin command: live signals are routed to devices."
        description = "Send twin commands on the 'twin' channel."
    else:
        message = f"The topic path '{topic}' is not supported."
        description = "Check if the topic path is correct."
    return InvalidInput(message, description=description, error_code="protocoladapter:unknown.topicpath")


def _unknown_path(text: str) -> InvalidInput:
    return InvalidInput(
        f"The path '{text}' does not correspond to any known command, response or event.",
        description="Check if the path is correct.",
        error_code="protocoladapter:unknown.path",
    )


def translate_error(command: ProtocolCommand, err: EdgeTwinError) -> EdgeTwinError:
    """Turn the 412 of a ``create``'s injected ``If-None-Match: *`` into Ditto's 409 (module docstring).

    Args:
        command: the mapped command the error came from.
        err: the error the service raised.

    Returns:
        ``Conflict`` (``things:thing.conflict`` / ``policies:policy.conflict``) for a create of an existing
        entity; ``err`` itself otherwise.
    """
    if not command.must_not_exist or command.client_preconditions or not isinstance(err, PreconditionFailed):
        return err
    cmd = command.command
    if isinstance(cmd, ModifyPolicy):
        return Conflict(
            f"The Policy with ID '{cmd.policy_id}' already exists",
            description="Choose another Policy ID.",
            error_code="policies:policy.conflict",
        )
    if isinstance(cmd, ModifyThing):
        return Conflict(
            f"The Thing with ID '{cmd.thing_id}' already exists",
            description="Choose another Thing ID.",
            error_code="things:thing.conflict",
        )
    return err


def with_correlation_id(envelope: Envelope, correlation_id: str) -> Envelope:
    """The envelope with ``correlation-id`` set if it had none (Ditto generates one for the response).

    Args:
        envelope: the request.
        correlation_id: the generated ID, used only when the request carries none.

    Returns:
        ``envelope`` itself when it has a ``correlation-id`` header, else a copy with one.
    """
    if envelope.header("correlation-id") is not MISSING:
        return envelope
    return replace(envelope, headers={**envelope.headers, "correlation-id": correlation_id})


def response_envelope(request: Envelope, result: Retrieved | Written | list[Json]) -> dict[str, Json]:
    """The Ditto Protocol response to a twin command (ditto.md §7.3/§7.4).

    Retrieve: status 200 with the value, headers ``correlation-id`` only. Multi-retrieve: 200 with the array.
    Write: ``response-required: false`` as Ditto marks responses; 201 adds the value, ``content-type`` and
    ``etag``; 204 has no value.

    Args:
        request: the command envelope (its topic and path are reused).
        result: the service's answer.

    Returns:
        The response envelope as a JSON object.
    """
    headers = _correlation(request)
    value: Json | Missing = MISSING
    if isinstance(result, list):
        status = 200
        value = result
    elif isinstance(result, Retrieved):
        status = 200
        value = result.value
    else:
        status = result.status
        headers["response-required"] = False
        if result.status == 201:
            value = result.value
            headers["content-type"] = _JSON_CONTENT_TYPE
            if result.etag is not None:
                headers["etag"] = result.etag
    return Envelope(request.topic, request.path, value, headers, status=status).to_json()


def error_envelope(
    request: Envelope | None, err: EdgeTwinError, *, correlation_id: str | None = None
) -> dict[str, Json]:
    """The Ditto Protocol error for a failed request (ditto.md §2, §7.1, §7.4).

    Args:
        request: the parsed request, or ``None`` when it could not be parsed.
        err: the error.
        correlation_id: used when ``request`` is ``None`` or has none (e.g. read from the raw JSON).

    Returns:
        ``{"topic": "<ns>/<name>/things/<channel>/errors", "headers": {...}, "path": "/", "value": <error
        JSON>, "status": <status>}``; the error's own headers (an ``etag`` on 412) are added.
    """
    if request is None:
        topic_text = UNKNOWN_ERROR_TOPIC
        headers: dict[str, Json] = {}
    else:
        topic_text = str(request.topic.with_criterion("errors"))
        headers = _correlation(request)
    if "correlation-id" not in headers and correlation_id is not None:
        headers["correlation-id"] = correlation_id
    for name, header_value in err.headers.items():
        headers.setdefault(name, header_value)
    # EdgeTwinError.to_json builds JSON (status, codes, texts); it is typed loosely as dict[str, object].
    value = cast("dict[str, Json]", err.to_json())
    return {"topic": topic_text, "headers": headers, "path": "/", "value": value, "status": err.status}


def _correlation(request: Envelope) -> dict[str, Json]:
    correlation_id = request.header("correlation-id")
    return {} if correlation_id is MISSING else {"correlation-id": correlation_id}


def event_envelope(
    event: ThingEvent, *, extra_headers: dict[str, Json] | None = None, extra: dict[str, Json] | None = None
) -> dict[str, Json]:
    """The Ditto Protocol twin event for a committed change (ditto.md §7.3/§7.4).

    Headers: ``correlation-id`` of the originating command (when known), ``response-required: false`` and
    ``requested-acks: []`` as Ditto 3.x sends them, ``content-type: application/merge-patch+json`` for
    ``merged``, then ``extra_headers`` (e.g. ``ditto-originator``), which win.

    Args:
        event: the event.
        extra_headers: headers to add (``ditto-originator``, custom headers).
        extra: the ``extra`` enrichment object (``extraFields``), left out when ``None``.

    Returns:
        The event envelope as a JSON object: value = the new value (the patch for ``merged``), none for
        ``deleted``.
    """
    topic = Topic(
        namespace_of(event.thing_id), name_of(event.thing_id), "things", "twin", "events", event.action
    )
    headers: dict[str, Json] = {}
    if event.correlation_id is not None:
        headers["correlation-id"] = event.correlation_id
    headers["response-required"] = False
    headers["requested-acks"] = []
    if event.action == "merged":
        headers["content-type"] = MERGE_PATCH_CONTENT_TYPE
    if extra_headers:
        headers.update(extra_headers)
    value: Json | Missing = MISSING if event.action == "deleted" else event.value
    envelope = Envelope(
        topic,
        format_pointer(event.path),
        value,
        headers,
        revision=event.revision,
        timestamp=event.timestamp,
        extra=extra,
    )
    return envelope.to_json()
