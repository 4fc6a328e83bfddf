"""The live channel and messages over HTTP (ditto.md §1.10, §1.11, §5.1): the adapter between a request and
:class:`~edgetwin.core.live.LiveRouter`. :class:`~edgetwin.api.things.ThingsApi` routes here.

Contract:

* **Live commands**: ``channel=live`` (header or query) on a thing command. ``timeout`` (``500ms``, ``5s``,
  ``1m``, bare seconds) defaults to ``live.default_timeout_s`` (10 s); above ``live.max_timeout_s`` it is 400
  ``gateway:timeout.invalid``. ``timeout=0`` or ``response-required=false``: the command is delivered and
  the answer is 202 at once. The device's answer becomes the response: its status, its value as JSON, and
  the headers ``channel: live``, ``response-required: false``, ``correlation-id`` (and ``etag`` when the
  device sent one). A device error keeps its status and error JSON. No valid answer in time: 408
  ``command.timeout``.
* **Smart channel**: ``live-channel-condition=<rql>`` (retrieves only; on a modify 405
  ``things:live.channelcondition.notallowed``) is evaluated on the twin: true asks the device, false
  answers from the twin; the headers ``live-channel-condition-matched`` and ``channel`` say which.
  ``live-channel-timeout-strategy: use-twin`` answers a timed-out live retrieve from the twin (``channel:
  twin``); ``fail`` (the default) is the 408.
* ``update-twin-with-live-response: true|false`` overrides ``live.update_twin_with_live_response``.
* **Messages**: ``POST /things/{id}[/features/{fid}]/inbox|outbox/messages/{subject}`` and
  ``POST /things/{id}/inbox/claim``. Any content type: ``text/*`` travels as a string (decoded with its
  charset, UTF-8 by default), ``application/json`` and ``*+json`` as JSON (400 ``json.invalid`` if it is
  not), anything else as base64 text; no body, no value. At most :data:`MAX_MESSAGE_BYTES` (413
  ``messages:payload.toolarge``). ``timeout`` defaults to ``live.default_timeout_s`` and may be at most
  ``live.max_timeout_s`` (claims: 60 s and 10 min, as Ditto), else 400 ``timeout.invalid``. The first answer
  becomes the response: its status, its ``content-type`` and its value (a string as text, base64 decoded
  for binary types, JSON otherwise; 204 has no body).
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Final, overload

import orjson

from edgetwin.api.http import Response
from edgetwin.core.commands import Preconditions, RetrieveThing, SendMessage
from edgetwin.errors import EdgeTwinError, InvalidInput, MethodNotAllowed, PayloadTooLarge, RequestTimeout
from edgetwin.protocol.live import live_command_envelope, message_envelope, parse_timeout
from edgetwin.twin.ids import parse_feature_id
from edgetwin.twin.pointer import MISSING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from edgetwin.api.http import Headers, Request
    from edgetwin.config import LiveSettings
    from edgetwin.core.commands import AuthContext
    from edgetwin.core.live import LiveAnswer, LiveCommand, LiveRouter
    from edgetwin.twin.pointer import Json, Missing, Pointer

__all__ = [
    "CLAIM_DEFAULT_TIMEOUT_S",
    "CLAIM_MAX_TIMEOUT_S",
    "MAX_MESSAGE_BYTES",
    "LiveHttp",
    "response_options",
]

MAX_MESSAGE_BYTES: Final = 250 * 1024
"""Ditto's largest message payload (250 kB); larger is 413 ``messages:payload.toolarge``."""
CLAIM_DEFAULT_TIMEOUT_S: Final = 60.0
CLAIM_MAX_TIMEOUT_S: Final = 600.0

_STRATEGIES: Final = ("fail", "use-twin")


class LiveHttp:
    """Live commands, the smart channel and messages for the HTTP API.

    Args:
        router: the live router.
        settings: ``[live]``.
    """

    def __init__(self, router: LiveRouter, settings: LiveSettings) -> None:
        self._router = router
        self._settings = settings

    async def command(
        self,
        request: Request,
        auth: AuthContext,
        cmd: LiveCommand,
        *,
        action: str,
        condition: str | None,
        twin: Callable[[], Awaitable[Response]],
    ) -> Response:
        """Run ``cmd`` on the live channel (or on the twin, as the smart channel decides).

        Args:
            request: the request (timeout, strategy and update headers).
            auth: the caller.
            cmd: the thing command.
            action: its Ditto Protocol action.
            condition: the ``live-channel-condition``, if any.
            twin: answers the same request from the twin.
        """
        retrieve = isinstance(cmd, RetrieveThing)
        if condition is not None and not retrieve:
            raise MethodNotAllowed(
                "The live channel condition is only allowed for retrieving commands.",
                description="Remove the 'live-channel-condition' header or send a GET.",
                error_code="things:live.channelcondition.notallowed",
            )
        strategy = (request.header_or_query("live-channel-timeout-strategy") or "fail").strip().lower()
        if strategy not in _STRATEGIES:
            raise _header_invalid("live-channel-timeout-strategy", strategy, "'fail' or 'use-twin'")
        timeout_s, respond = response_options(
            request,
            default=self._settings.default_timeout_s,
            maximum=self._settings.max_timeout_s,
            code="gateway:timeout.invalid",
        )
        update = _boolean(request, "update-twin-with-live-response")
        headers: Headers = []
        if condition is not None:
            if not self._router.condition_holds(cmd.thing_id, condition, auth):
                response = await twin()
                response.headers += [(b"live-channel-condition-matched", b"false"), (b"channel", b"twin")]
                return response
            headers.append((b"live-channel-condition-matched", b"true"))
        envelope = live_command_envelope(
            cmd,
            action=action,
            correlation_id=request.correlation_id,
            response_required=respond,
            timeout_s=timeout_s,
            originator=auth.originator,
        )
        timed_out = False
        try:
            answer = await self._router.command(
                cmd, envelope, auth, timeout_s=timeout_s, response_required=respond, update_twin=update
            )
        except RequestTimeout as err:
            if not (strategy == "use-twin" and retrieve):
                _add_headers(err, headers)
                raise
            timed_out, answer = True, None
        except EdgeTwinError as err:
            _add_headers(err, headers)
            raise
        if timed_out:  # use-twin: the twin answers instead
            response = await twin()
            response.headers += [*headers, (b"channel", b"twin")]
            return response
        headers += [(b"channel", b"live"), (b"response-required", b"false")]
        if answer is None:
            return Response(202, headers)
        etag = answer.envelope.header("etag")
        if isinstance(etag, str):
            headers.append((b"etag", etag.encode("latin-1", "replace")))
        if answer.value is MISSING or answer.status == 204:
            return Response(answer.status, headers)
        headers.append((b"content-type", b"application/json"))
        return Response(answer.status, headers, orjson.dumps(answer.value))

    async def message(self, request: Request, auth: AuthContext, thing_id: str, path: Pointer) -> Response:
        """``POST`` a message (``path`` is the route's: ``[features, fid,] inbox|outbox, messages, …subject``
        or ``inbox, claim``)."""
        message = _message(thing_id, path)
        if message.claim:
            default, maximum = CLAIM_DEFAULT_TIMEOUT_S, CLAIM_MAX_TIMEOUT_S
        else:
            default, maximum = self._settings.default_timeout_s, self._settings.max_timeout_s
        timeout_s, respond = response_options(
            request, default=default, maximum=maximum, code="timeout.invalid"
        )
        body = await request.body(MAX_MESSAGE_BYTES, too_large=_payload_too_large)
        content_type = request.header("content-type")
        condition = request.header_or_query("condition")
        message = SendMessage(
            message.thing_id,
            message.direction,
            message.subject,
            _payload(body, content_type),
            content_type,
            message.feature_id,
            message.preconditions if condition is None else Preconditions(condition=condition),
            message.claim,
        )
        envelope = message_envelope(
            message,
            correlation_id=request.correlation_id,
            response_required=respond,
            timeout_s=timeout_s,
            originator=auth.originator,
        )
        answer = await self._router.message(
            message, envelope, auth, timeout_s=timeout_s, response_required=respond
        )
        if answer is None:
            return Response(202)
        return _message_response(answer)


def _message(thing_id: str, path: Pointer) -> SendMessage:
    feature_id = None
    if path[0] == "features":
        feature_id = parse_feature_id(path[1])
        path = path[2:]
    if path == ("inbox", "claim"):
        return SendMessage(thing_id, "inbox", "claim", MISSING, claim=True)
    subject = "/".join(path[2:])
    if not subject or "" in path[2:]:
        raise InvalidInput(
            f"The message subject '{subject}' is not valid.",
            description="Send the message to '.../inbox/messages/<subject>' with a non-empty subject.",
            error_code="messages:subject.invalid",
        )
    return SendMessage(thing_id, path[0], subject, MISSING, feature_id=feature_id)  # type: ignore[arg-type]


def _payload(body: bytes, content_type: str | None) -> Json | Missing:
    """The payload as the Ditto Protocol carries it (module docstring)."""
    if not body:
        return MISSING
    media, _, params = (content_type or "application/octet-stream").partition(";")
    media = media.strip().lower()
    if media.startswith("text/"):
        return body.decode(_charset(params), "replace")
    if media == "application/json" or media.endswith("+json"):
        try:
            value: Json = orjson.loads(body)
        except orjson.JSONDecodeError as err:
            raise InvalidInput(
                "The message payload is not valid JSON, though its content type says so.",
                description=f"Send valid JSON, or another content type - {err}",
                error_code="json.invalid",
            ) from None
        return value
    return base64.b64encode(body).decode("ascii")


def _charset(params: str) -> str:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
            try:
                "".encode(charset)
            except LookupError:
                return "utf-8"
            return charset
    return "utf-8"


def _message_response(answer: LiveAnswer) -> Response:
    """The HTTP response for a message answer: its status, content type and value (module docstring)."""
    status = answer.status
    value = answer.value
    if value is MISSING or status == 204:
        return Response(status)
    content_type = answer.content_type
    media, _, params = (content_type or "").partition(";")
    media = media.strip().lower()
    body: bytes
    if isinstance(value, str) and media.startswith("text/"):
        body = value.encode(_charset(params), "replace")
    elif isinstance(value, str) and media and media != "application/json" and not media.endswith("+json"):
        try:
            body = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            body = value.encode("utf-8")
    else:
        body = orjson.dumps(value)
        content_type = content_type or "application/json"
    headers: Headers = []
    if content_type:
        headers.append((b"content-type", content_type.encode("latin-1", "replace")))
    return Response(status, headers, body)


@overload
def response_options(
    request: Request, *, default: float, maximum: float, code: str
) -> tuple[float, bool]: ...
@overload
def response_options(
    request: Request, *, default: None, maximum: float, code: str
) -> tuple[float | None, bool]: ...
def response_options(
    request: Request, *, default: float | None, maximum: float, code: str
) -> tuple[float | None, bool]:
    """``timeout`` and ``response-required`` (ditto.md §1.11), for twin and live requests alike.

    Args:
        request: the request (header or query parameter).
        default: the timeout without a ``timeout`` (``None``: the twin's "no deadline of our own").
        maximum: the largest ``timeout`` accepted.
        code: the error code of a larger one (``gateway:timeout.invalid`` for commands).

    Returns:
        The timeout in seconds, and whether an answer is awaited (``timeout=0`` is fire and forget: the
        default timeout and ``False``).

    Raises:
        InvalidInput: ``header.invalid`` for a malformed value, or ``timeout=0`` with
            ``response-required=true``; ``code`` for a timeout above ``maximum``.
    """
    respond = _boolean(request, "response-required")
    raw = request.header_or_query("timeout")
    timeout_s = default if raw is None else parse_timeout(raw, maximum=maximum, error_code=code)
    if timeout_s == 0:
        if respond:
            raise InvalidInput(
                "The headers 'timeout=0' and 'response-required=true' contradict each other.",
                description="A response cannot be awaited with a timeout of 0.",
                error_code="header.invalid",
            )
        return default, False
    return timeout_s, respond is not False


def _boolean(request: Request, name: str) -> bool | None:
    raw = request.header_or_query(name)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise InvalidInput(
            f"The value '{raw}' of the header '{name}' is not a valid boolean.",
            description="Use 'true' or 'false'.",
            error_code="header.invalid",
        )
    return value == "true"


def _header_invalid(name: str, value: str, expected: str) -> InvalidInput:
    return InvalidInput(
        f"The value '{value}' of the header '{name}' is invalid.",
        description=f"Use {expected}.",
        error_code="header.invalid",
    )


def _add_headers(err: EdgeTwinError, headers: Headers) -> None:
    err.headers.setdefault("channel", "live")
    for name, value in headers:
        err.headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))


def _payload_too_large(size: int) -> EdgeTwinError:
    return PayloadTooLarge(
        f"The message payload of {size} bytes exceeds the maximal allowed size of {MAX_MESSAGE_BYTES} bytes.",
        description="Send a smaller payload.",
        error_code="messages:payload.toolarge",
    )
