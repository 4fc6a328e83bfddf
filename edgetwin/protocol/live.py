"""The live channel and messages in the Ditto Protocol (ditto.md §1.10, §5.2, §7.5): what a device is sent,
and whether what it sends back answers it.

Contract:

* :func:`live_command_envelope` renders a core thing command as the live command a device receives
  (``<ns>/<name>/things/live/commands/<action>``, the twin command's path and value), with the headers
  Ditto sends: ``correlation-id``, ``response-required``, ``requested-acks`` (``["live-response"]`` or
  ``[]``), ``timeout``, ``channel: live``, ``ditto-originator``.
* :func:`message_of` reads a message a WebSocket client sends (topic ``…/things/live/messages/<subject>``,
  path ``[/features/<fid>]/inbox|outbox/messages[/<subject>]``; a bad feature ID is ``json.key.invalid``);
  :func:`message_envelope` renders a :class:`~edgetwin.core.commands.SendMessage` the same way, with
  Ditto's ``ditto-message-*`` headers.
  :func:`message_path` is a message's policy resource path (``message:/inbox/messages/<subject>``, whose
  subject may contain ``/``).
* :func:`answer_problem` says why an envelope does not answer a request (``None`` when it does): a command
  answer keeps the command's topic action and path and has a status Ditto allows for that response type
  (retrieve 200; modify 201/204; merge 201/204; delete 204; create 201); a message answer keeps the subject
  and has any status; an error (``…/things/live/errors``) with a status from 400 to 599 answers anything.
  :func:`answer_error` turns such an error into the :class:`~edgetwin.errors.EdgeTwinError` the caller gets.
* :func:`format_timeout` / :func:`parse_timeout` read and write Ditto's durations (``500ms``, ``10s``,
  ``1m``, ``1h``, bare seconds).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Final

from edgetwin.core.commands import DeleteThing, MergeThing, ModifyThing, RetrieveThing, SendMessage
from edgetwin.errors import EdgeTwinError, InvalidInput
from edgetwin.protocol.envelope import Envelope, Topic
from edgetwin.twin.ids import name_of, namespace_of, parse_feature_id
from edgetwin.twin.pointer import MISSING, format_pointer, parse_pointer

if TYPE_CHECKING:
    from edgetwin.twin.pointer import Json, Pointer

__all__ = [
    "ALLOWED_STATUSES",
    "LIVE_RESPONSE_ACK",
    "answer_error",
    "answer_problem",
    "format_timeout",
    "is_answer",
    "live_command_envelope",
    "message_envelope",
    "message_of",
    "message_path",
    "parse_timeout",
    "with_headers",
]

LIVE_RESPONSE_ACK: Final = "live-response"
"""The acknowledgement label a live command or message requests by default (ditto.md §1.11)."""

ALLOWED_STATUSES: Final[dict[str, frozenset[int]]] = {
    "retrieve": frozenset({200}),
    "modify": frozenset({201, 204}),
    "merge": frozenset({201, 204}),
    "delete": frozenset({204}),
    "create": frozenset({201}),
}
"""The statuses Ditto accepts in a live command response, per command action (ditto.md §1.10, §7.3)."""

_DIRECTIONS: Final = ("inbox", "outbox")
_TIMEOUT_UNITS: Final = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))

LiveCommand = RetrieveThing | ModifyThing | MergeThing | DeleteThing


def live_command_envelope(
    command: LiveCommand,
    *,
    action: str,
    correlation_id: str,
    response_required: bool,
    timeout_s: float,
    originator: str,
    headers: dict[str, Json] | None = None,
) -> Envelope:
    """The live command a device receives for ``command`` (ditto.md §7.5).

    Args:
        command: the thing command (its thing, path and value).
        action: the topic action (``retrieve``, ``modify``, ``merge``, ``delete``, ``create``).
        correlation_id: the request's correlation-id; the device answers with it.
        response_required: whether the caller waits for an answer.
        timeout_s: how long the caller waits.
        originator: the caller's first subject (``ditto-originator``).
        headers: further headers to pass on (custom headers of the request); ours win.

    Returns:
        The envelope.
    """
    thing_id = command.thing_id
    topic = Topic(namespace_of(thing_id), name_of(thing_id), "things", "live", "commands", action)
    out: dict[str, Json] = dict(headers or {})
    out.update(
        {
            "correlation-id": correlation_id,
            "response-required": response_required,
            "requested-acks": [LIVE_RESPONSE_ACK] if response_required else [],
            "timeout": format_timeout(timeout_s),
            "channel": "live",
            "ditto-originator": originator,
        }
    )
    value: Json | object = MISSING
    if isinstance(command, ModifyThing):
        value = command.value
    elif isinstance(command, MergeThing):
        value = command.patch
        out["content-type"] = "application/merge-patch+json"
    fields = command.fields.text if isinstance(command, RetrieveThing) and command.fields else None
    return Envelope(topic, format_pointer(command.path), value, out, fields=fields)  # type: ignore[arg-type]


def message_path(message: SendMessage) -> Pointer:
    """The message's resource path: ``[features/<fid>/]<inbox|outbox>/messages/<subject levels>``."""
    base: Pointer = ("features", message.feature_id) if message.feature_id is not None else ()
    return (*base, message.direction, "messages", *message.subject.split("/"))


def message_of(envelope: Envelope) -> SendMessage:
    """The message a client sends as ``envelope`` (topic ``…/things/live/messages/<subject>``).

    Raises:
        InvalidInput: ``messages:subject.invalid`` (no subject, or the path's subject differs from the
            topic's), ``json.key.invalid`` (feature ID), ``protocoladapter:unknown.path`` (a path that is no
            message path).
    """
    topic = envelope.topic
    thing_id = topic.entity_id
    subject = topic.action or ""
    if thing_id is None or topic.channel != "live" or topic.criterion != "messages":
        raise InvalidInput(
            f"The topic path '{topic}' is not a message topic.",
            description="Send messages as '<namespace>/<name>/things/live/messages/<subject>'.",
            error_code="protocoladapter:unknown.topicpath",
        )
    if not subject:
        raise _subject_invalid(subject)
    path = envelope.path.strip("/").split("/")
    feature_id = None
    if len(path) >= 2 and path[0] == "features":
        feature_id = parse_feature_id(path[1])
        path = path[2:]
    if len(path) < 2 or path[0] not in _DIRECTIONS or path[1] != "messages":
        raise InvalidInput(
            f"The path '{envelope.path}' is not a message path.",
            description="Use '/inbox/messages/<subject>', '/outbox/messages/<subject>' or their "
            "'/features/<featureId>/...' forms.",
            error_code="protocoladapter:unknown.path",
        )
    if len(path) > 2 and "/".join(path[2:]) != subject:
        raise _subject_invalid("/".join(path[2:]))
    content_type = envelope.header("content-type")
    return SendMessage(
        thing_id,
        path[0],  # type: ignore[arg-type]
        subject,
        envelope.value,
        content_type if isinstance(content_type, str) else None,
        feature_id,
    )


def _subject_invalid(subject: str) -> InvalidInput:
    return InvalidInput(
        f"The message subject '{subject}' is not valid.",
        description="Send a non-empty subject that matches the topic's.",
        error_code="messages:subject.invalid",
    )


def message_envelope(
    message: SendMessage,
    *,
    correlation_id: str,
    response_required: bool,
    timeout_s: float,
    originator: str,
    headers: dict[str, Json] | None = None,
) -> Envelope:
    """The envelope receivers of ``message`` get (ditto.md §5.2).

    Args:
        message: the message.
        correlation_id: the request's correlation-id; the receiver answers with it.
        response_required: whether the sender waits for an answer.
        timeout_s: how long the sender waits.
        originator: the sender's first subject (``ditto-originator``).
        headers: further headers to pass on (custom request headers); ours win.

    Returns:
        The envelope: path ``[/features/<fid>]/<inbox|outbox>/messages/<subject>``, value the payload.
    """
    thing_id = message.thing_id
    topic = Topic(namespace_of(thing_id), name_of(thing_id), "things", "live", "messages", message.subject)
    out: dict[str, Json] = dict(headers or {})
    out.update(
        {
            "content-type": message.content_type or "application/octet-stream",
            "correlation-id": correlation_id,
            "timeout": format_timeout(timeout_s),
            "channel": "live",
            "response-required": response_required,
            "requested-acks": [LIVE_RESPONSE_ACK] if response_required else [],
            "ditto-originator": originator,
            "ditto-message-direction": "TO" if message.direction == "inbox" else "FROM",
            "ditto-message-subject": message.subject,
            "ditto-message-thing-id": thing_id,
        }
    )
    if message.feature_id is not None:
        out["ditto-message-feature-id"] = message.feature_id
    if message.content_type is None:
        del out["content-type"]
    path = "/" + "/".join(message_path(message))
    return Envelope(topic, path, message.value, out)


def is_answer(envelope: Envelope) -> bool:
    """Whether a live envelope a client sends answers a request (it has a ``status``, or is an error)."""
    return envelope.status is not None or envelope.topic.criterion == "errors"


def answer_problem(request: Envelope, answer: Envelope) -> str | None:
    """Why ``answer`` does not answer ``request``; ``None`` when it does (module docstring).

    Args:
        request: the live command or message that was sent.
        answer: what came back with the same correlation-id.

    Returns:
        A sentence for the log and for the caller's 408, or ``None``.
    """
    status = answer.status
    topic = answer.topic
    if topic.entity_id != request.topic.entity_id:
        return f"The live response is for '{topic.entity_id}', not for '{request.topic.entity_id}'."
    if topic.criterion == "errors":
        if status is None or not 400 <= status <= 599:
            return f"The live error response has the status {status}, which is not an error status."
        return None
    if status is None:
        return "The live response has no status."
    if request.topic.criterion == "messages":
        if topic.criterion != "messages" or topic.action != request.topic.action:
            return f"Type of live response <{topic}> is not related to the message <{request.topic}>."
        if not 100 <= status <= 599:
            return f"The live message response has the invalid status {status}."
        return None
    action = request.topic.action or ""
    if topic.criterion != "commands" or topic.action != action or not _same_path(answer.path, request.path):
        return (
            f"Type of live response <{topic}:{answer.path}> is not related to type of command "
            f"<{request.topic}:{request.path}>."
        )
    if status not in ALLOWED_STATUSES.get(action, frozenset()):
        allowed = ", ".join(str(s) for s in sorted(ALLOWED_STATUSES.get(action, ())))
        return f"The status {status} is not allowed for a live {action} response (allowed: {allowed})."
    return None


def _same_path(a: str, b: str) -> bool:
    try:
        return parse_pointer(a) == parse_pointer(b)
    except EdgeTwinError:
        return False


def answer_error(answer: Envelope) -> EdgeTwinError:
    """The error a device answered with (topic ``…/errors``), as the caller's error (ditto.md §7.5)."""
    value = answer.value
    body = value if isinstance(value, dict) else {}
    message = body.get("message")
    description = body.get("description")
    code = body.get("error")
    status = answer.status if answer.status is not None else 500
    return EdgeTwinError(
        message if isinstance(message, str) else f"The device answered with the error status {status}.",
        description=description if isinstance(description, str) else None,
        error_code=code if isinstance(code, str) else "live.response.error",
        status=status,
    )


def with_headers(envelope: Envelope, headers: dict[str, Json]) -> Envelope:
    """``envelope`` with ``headers`` added (they win)."""
    return replace(envelope, headers={**envelope.headers, **headers})


def format_timeout(seconds: float) -> str:
    """Ditto's duration text: whole seconds as ``10s``, anything else in milliseconds (``500ms``)."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def parse_timeout(text: str, *, maximum: float, error_code: str = "timeout.invalid") -> float:
    """Read a Ditto duration (``500ms``, ``10s``, ``1m``, ``1h``, or bare seconds).

    Args:
        text: the header or query value.
        maximum: the largest accepted value in seconds.
        error_code: the code of the error for a value above ``maximum``.

    Returns:
        Seconds.

    Raises:
        InvalidInput: ``header.invalid`` for a malformed value, ``error_code`` for one above ``maximum``.
    """
    value = text.strip()
    factor = 1.0
    for suffix, unit in _TIMEOUT_UNITS:
        if value.endswith(suffix):
            value, factor = value[: -len(suffix)], unit
            break
    if not (value.isascii() and value.isdigit()) or len(value) > 12:
        raise InvalidInput(
            f"The value '{text}' of the header 'timeout' is not a valid duration.",
            description="Use e.g. '500ms', '10s', '1m' or a number of seconds.",
            error_code="header.invalid",
        )
    seconds = int(value) * factor
    if seconds > maximum:
        raise InvalidInput(
            f"The timeout '{text}' is greater than the allowed maximum of {maximum:g} s.",
            description=f"Use a timeout of at most {maximum:g} s.",
            error_code=error_code,
        )
    return seconds
