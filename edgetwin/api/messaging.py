"""The DSH Messaging API over HTTP (``/data/v0/single``, ``/data/v0/multi``) as a bare ASGI app.

Retained MQTT values for devices that wake up, open one short HTTP connection, read or write the latest
value of a topic and sleep again. The values are the broker's retained messages (DESIGN "Retained values"):
a value posted here is a retained MQTT message, and one retained over MQTT is read here. ``EdgeAsgi`` sends
this app every request whose path starts with :data:`PREFIX`; like ``api.things`` it parses only what a
request needs, spawns no task and keeps no per-request state, because a sleepy device's poll is a whole TCP
connection for one request.

Contract:

* **Checks, in this order**: the request must be HTTP/1.1 (``scope["http_version"]``; else 505). Then
  authentication (Basic or a bearer JWT through the shared authenticator; 401). Then the route:
  ``/data/v0/single/tt/<stream>/<topic...>`` takes ``POST``, ``GET``, ``DELETE`` and ``/data/v0/multi``
  ``POST`` (another method: 405 with ``Allow``); any other path under the prefix is 404. Then the topic:
  the path after ``/data/v0/single`` is the MQTT topic ``/tt/<stream>/<topic...>`` with each path segment
  one topic level (percent-decoded once); an unknown stream (not in ``messaging.streams``), no topic level,
  an empty level, a wildcard, an encoded ``/`` or anything :func:`~edgetwin.mqtt.topics.validate_topic_name`
  refuses is 404. Then the topic permissions of the caller (DESIGN "Topic permissions": a user's lists or a
  JWT's DSH claims): ``publish`` for ``POST`` and ``DELETE``, ``subscribe`` for ``GET`` and ``multi``; 403.
  Only then is the request itself checked and its body read.
* ``POST single``: query parameters ``qos`` (``0`` or ``1``, default 1) and ``retained`` (``true`` or
  ``false``, default true); other values 400. ``Content-Length`` is required (absent, or
  ``Transfer-Encoding``: 411). ``Content-Type`` ``text/plain``, ``application/octet-stream`` and
  ``application/json`` publish the body as is; ``base64`` publishes the decoded body (whitespace ignored,
  padding optional; invalid base64 400); any other type, or none, 415. A payload above
  ``messaging.max_payload_kb`` is 413 (decided from ``Content-Length`` before the body is read). The
  publication is durable before the 200 (retained value set, persistent sessions' queues); MQTT subscribers
  get it with or without ``retained``. An empty body with ``retained=true`` deletes the value, as in MQTT.
* ``GET single``: 200 with the retained value, 404 when there is none. ``Accept: text/plain``,
  ``application/json``, ``application/octet-stream`` return the bytes as stored with that content type;
  ``base64`` returns them base64-encoded (``content-type: base64``); no ``Accept`` or a wildcard gives
  ``application/octet-stream``; q-values are honoured; an ``Accept`` naming none of these is 400.
  Beyond the DSH: every 200 carries a strong ``ETag`` (a hash of the representation's bytes, so the same
  value posted again keeps its tag), and ``If-None-Match`` with that tag (or ``*``) is 304 without a body.
* ``DELETE single``: removes the retained value and publishes the empty retained message that tells MQTT
  subscribers it is gone (MQTT-3.3.1-10/-11), QoS 1; 200 whether or not there was a value.
* ``POST multi``: ``Content-Type: application/json`` (else 415), ``Content-Length`` (411), a body of at
  most twice ``max_payload_kb`` plus 64 kB (413)::

      {"content-type": "text/plain" | "base64",
       "topic-filters": ["/tt/weather/1/2/#", "/tt/+/x", ...],
       "publish": [{"topic": "/tt/weather/1/2/3", "payload": "...", "content-type": "text/plain" | "base64",
                    "qos": 0 | 1, "retained": true | false}, ...]}

  answers ``[{"topic": ..., "payload": ...}, ...]``: the retained values under the filters, grouped by
  filter in request order, in topic order within a filter, each topic once; payloads as UTF-8 text
  (invalid bytes replaced) or base64. Malformed JSON, a missing or mistyped field, an invalid filter: 400;
  a ``content-type`` other than the two: 415; a filter no topic of the ``/tt/<stream>/<topic>`` layout can
  match (``/foo/#``, ``/tt/unknown/#``): 404; a filter the caller may not subscribe to (the filter as sent,
  as the broker checks a SUBSCRIBE): 403. Filters with wildcards in the first three levels (``#``,
  ``/tt/+/x``) are narrowed to each configured stream, so every lookup is a range scan of the ordered
  retained index, never a scan of all values, and only topics of the layout are returned.
  Beyond the DSH, ``publish`` (optional) lists up to :data:`MAX_PUBLISHES` publications executed in order
  **before** the reads, so a device posts its reading and fetches its pending values in one round trip.
  Each has ``topic`` and ``payload`` (required), ``content-type`` (default: the request's), ``qos`` (default
  1) and ``retained`` (default true), checked as ``POST single`` (404 topic, 403 publish permission, 413
  payload, 400 types); every publication and filter is checked before anything is published. A request
  that only publishes sends ``"topic-filters": []`` (and gets ``[]``).
* Errors are Ditto's error JSON (:func:`~edgetwin.api.http.error_response`, as the rest of the appliance;
  the DSH documents no error body): ``status``, ``error`` (``messaging:...`` codes), ``message``,
  ``description``. A failing store is 500 (or 507 when full); any other bug is 500 and logged.

Not handled here: the 408 for a connection that sends no complete request head within 10 s
(``api.server``, for every HTTP request) and ``Connection: close`` (Hypercorn closes after the response).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
from typing import TYPE_CHECKING, Final, Protocol

import orjson

from edgetwin.api.http import ClientDisconnected, Request, Response, error_response, send_response
from edgetwin.errors import (
    EdgeTwinError,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    NotModified,
    PayloadTooLarge,
    PolicyDenied,
    UnsupportedMediaType,
)
from edgetwin.mqtt.topics import TopicError, TopicPermissions, validate_topic_filter, validate_topic_name

if TYPE_CHECKING:
    from edgetwin.api.http import Receive, Scope, Send
    from edgetwin.api.things import RequestAuthenticator
    from edgetwin.config import MessagingSettings
    from edgetwin.core.commands import AuthContext
    from edgetwin.core.mqtt_store import RetainedMessage
    from edgetwin.twin import Json

__all__ = [
    "MAX_PUBLISHES",
    "MAX_TOPIC_FILTERS",
    "PREFIX",
    "MessagingApi",
    "MessagingBroker",
    "handles",
]

logger = logging.getLogger(__name__)

PREFIX: Final = "/data/v0/"
"""Every path under this prefix is the messaging API's."""
MAX_PUBLISHES: Final = 64
"""The most publications one ``multi`` request may carry."""
MAX_TOPIC_FILTERS: Final = 256
"""The most topic filters one ``multi`` request may carry."""
MULTI_EXTRA_BYTES: Final = 64 * 1024
"""A ``multi`` body may be twice the payload limit (a payload as base64 or escaped text) plus this."""
PERMISSION_CACHE_SIZE: Final = 256
"""Compiled topic-filter lists remembered (keyed by the list itself)."""

_SINGLE_ALLOW: Final = "POST, GET, DELETE"
_MULTI_ALLOW: Final = "POST"
_STREAM_PREFIX: Final = "tt"
_RAW_TYPES: Final = frozenset({"text/plain", "application/octet-stream", "application/json"})
_BASE64: Final = "base64"
_MULTI_TYPES: Final = ("text/plain", _BASE64)
_OCTET: Final = (b"application/octet-stream", False)
# Accept media ranges we can answer: (response content type, base64-encode?).
_REPRESENTATIONS: Final[dict[str, tuple[bytes, bool]]] = {
    "text/plain": (b"text/plain", False),
    "application/json": (b"application/json", False),
    "application/octet-stream": _OCTET,
    _BASE64: (b"base64", True),
    "*/*": _OCTET,
    "application/*": _OCTET,
    "text/*": (b"text/plain", False),
}
_WHITESPACE: Final = b" \t\r\n\f\v"


class MessagingBroker(Protocol):
    """What this adapter needs of :class:`edgetwin.mqtt.broker.Broker` (the retained-value store)."""

    async def publish(self, topic: str, payload: bytes, *, qos: int = ..., retain: bool = ...) -> int:
        """Publish durably (an empty retained payload deletes the retained value); receivers count."""
        ...

    def retained(self, topic: str) -> RetainedMessage | None:
        """The retained message of ``topic``, or ``None``."""
        ...

    def retained_matching(
        self, topic_filters: list[str], *, limit: int | None = None
    ) -> list[RetainedMessage]:
        """Every retained message under any of the filters, each topic once, in topic order."""
        ...


def handles(path: str) -> bool:
    """Whether a request path belongs to :class:`MessagingApi`.

    Args:
        path: the ASGI ``scope["path"]``.

    Returns:
        ``True`` for every path under ``/data/v0/``.
    """
    return path.startswith(PREFIX)


class _Publication:
    """One validated publication (``POST single``, or an entry of ``multi``'s ``publish``)."""

    __slots__ = ("payload", "qos", "retain", "topic")

    def __init__(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain


class MessagingApi:
    """The ASGI app of ``/data/v0/single`` and ``/data/v0/multi``.

    Args:
        broker: the broker whose retained messages are the values.
        authenticator: turns a request into an :class:`~edgetwin.core.commands.AuthContext` with topic
            filters.
        settings: ``[messaging]``: the streams and the payload limit.
    """

    def __init__(
        self, broker: MessagingBroker, authenticator: RequestAuthenticator, settings: MessagingSettings
    ) -> None:
        self._broker = broker
        self._authenticator = authenticator
        self._streams = frozenset(settings.streams)
        self._stream_order = tuple(dict.fromkeys(settings.streams))
        self._max_payload = settings.max_payload_kb * 1024
        encoded = (self._max_payload + 2) // 3 * 4
        # base64 text as most tools write it: lines of 64 or 76 characters, each with a CRLF.
        self._max_base64_body = encoded + (encoded // 64 + 1) * 2
        self._max_multi_body = 2 * self._max_payload + MULTI_EXTRA_BYTES
        self._permissions: dict[tuple[str, ...], TopicPermissions] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request (``scope["type"] == "http"``)."""
        try:
            response = await self._handle(scope, receive)
        except EdgeTwinError as err:
            response = error_response(err)
        except ClientDisconnected:
            return
        except Exception:
            # One request's bug must not take the connection (or the server) down: answer 500 and log it.
            logger.exception("request %s %s failed", scope.get("method"), scope.get("path"))
            response = error_response(
                EdgeTwinError("An unexpected error occurred; it has been logged.", error_code="internalerror")
            )
        # A HEAD (405 here) gets the headers without the body (RFC 9110 §9.3.2).
        await send_response(send, response, head=scope["method"] == "HEAD")

    async def _handle(self, scope: Scope, receive: Receive) -> Response:
        version = scope.get("http_version")
        if version != "1.1":
            raise InvalidInput(
                f"The HTTP version {version} is not supported.",
                description="Use HTTP/1.1.",
                error_code="messaging:httpversion.notsupported",
                status=505,
            )
        request = Request(scope, receive)
        auth = await self._authenticator.authenticate(request)
        segments = request.segments  # ["", "data", "v0", "single" | "multi", ...]
        # An encoded "/" in the first segments (/data%2Fv0/...) is one segment: not a route.
        endpoint = segments[3] if len(segments) > 3 and segments[1:3] == ["data", "v0"] else ""
        method = request.method
        if endpoint == "single" and len(segments) > 4:
            if method == "GET":
                topic = self._topic(segments[4:])
                self._require(auth.subscribe, topic, "subscribe to")
                return self._get(request, topic)
            if method == "POST":
                topic = self._topic(segments[4:])
                self._require(auth.publish, topic, "publish to")
                publication = await self._single_publication(request, topic)
                await self._broker.publish(
                    topic, publication.payload, qos=publication.qos, retain=publication.retain
                )
                return Response(200)
            if method == "DELETE":
                topic = self._topic(segments[4:])
                self._require(auth.publish, topic, "publish to")
                await self._broker.publish(topic, b"", qos=1, retain=True)
                return Response(200)
            raise _method_not_allowed(method, _SINGLE_ALLOW)
        if endpoint == "multi" and len(segments) == 4:
            if method != "POST":
                raise _method_not_allowed(method, _MULTI_ALLOW)
            return await self._multi(request, auth)
        raise NotFound(
            "The requested resource could not be found.",
            description="Use /data/v0/single/tt/<stream>/<topic> or /data/v0/multi.",
            error_code="resource.notfound",
        )

    # ------------------------------------------------------------------------------------------- single

    def _topic(self, levels: list[str]) -> str:
        """The MQTT topic ``/tt/<stream>/<topic...>`` of its levels after the leading ``/`` (the path segments
        after ``/data/v0/single``).

        Raises:
            NotFound: not a topic of the layout, or an unknown stream.
        """
        if len(levels) < 3 or levels[0] != _STREAM_PREFIX:
            raise _topic_not_found(f"/{'/'.join(levels)}", "The topic must be /tt/<stream>/<topic>.")
        if levels[1] not in self._streams:
            raise _stream_not_found(levels[1])
        topic = "/" + "/".join(levels)
        for level in levels[2:]:
            # An empty level, a wildcard or an encoded "/" (which would change the levels) is not a topic.
            if not level or "+" in level or "#" in level or "/" in level:
                raise _topic_not_found(topic, "Use a topic without wildcards or empty levels.")
        try:
            validate_topic_name(topic)
        except TopicError as err:
            raise _topic_not_found(topic, str(err)) from None
        return topic

    def _get(self, request: Request, topic: str) -> Response:
        accept = request.header("accept")
        content_type, encode = _OCTET if accept is None else _representation(accept)
        message = self._broker.retained(topic)
        if message is None:
            raise NotFound(
                f"The topic '{topic}' has no retained value.",
                description="Publish a retained value first.",
                error_code="messaging:value.notfound",
            )
        payload = base64.b64encode(message.payload) if encode else message.payload
        etag = _etag(payload, encode)
        condition = request.header("if-none-match")
        if condition is not None and _none_match(condition, etag):
            raise NotModified(
                f"The value of '{topic}' was not modified.", headers={"etag": etag.decode("latin-1")}
            )
        return Response(200, [(b"content-type", content_type), (b"etag", etag)], payload)

    async def _single_publication(self, request: Request, topic: str) -> _Publication:
        qos, retain = _publish_options(request)
        _require_length(request)
        content_type = request.content_type
        if content_type in _RAW_TYPES:
            payload = await request.body(self._max_payload, too_large=self._too_large)
        elif content_type == _BASE64:
            text = await request.body(self._max_base64_body, too_large=self._too_large)
            payload = _decode_base64(text)
            if len(payload) > self._max_payload:
                raise self._too_large(len(payload))
        else:
            raise UnsupportedMediaType(
                f"The Media-Type <{request.header('content-type') or 'none'}> is not supported.",
                description="Use text/plain, base64, application/octet-stream or application/json.",
            )
        return _Publication(topic, payload, qos, retain)

    # -------------------------------------------------------------------------------------------- multi

    async def _multi(self, request: Request, auth: AuthContext) -> Response:
        _require_length(request)
        if request.content_type != "application/json":
            raise UnsupportedMediaType(
                f"The Media-Type <{request.header('content-type') or 'none'}> is not supported.",
                description="Send the multi request as application/json.",
            )
        body = await request.body(self._max_multi_body)
        try:
            document: Json = orjson.loads(body)
        except orjson.JSONDecodeError as err:
            raise InvalidInput(
                "The request body is not valid JSON.", description=str(err), error_code="json.invalid"
            ) from None
        if not isinstance(document, dict):
            raise _invalid_request("The request body must be a JSON object.")
        content_type = _body_content_type(document.get("content-type"), "content-type", required=True)
        filters = document.get("topic-filters")
        if not isinstance(filters, list) or not all(isinstance(f, str) for f in filters):
            raise _invalid_request("'topic-filters' must be a list of topic filter strings.")
        if len(filters) > MAX_TOPIC_FILTERS:
            raise _invalid_request(f"At most {MAX_TOPIC_FILTERS} topic filters are allowed in one request.")
        topic_filters: list[str] = [f for f in filters if isinstance(f, str)]
        for topic_filter in topic_filters:
            try:
                validate_topic_filter(topic_filter)
            except TopicError as err:
                raise InvalidInput(
                    f"The topic filter '{topic_filter}' is invalid: {err}",
                    description="Send valid MQTT topic filters.",
                    error_code="messaging:topicfilter.invalid",
                ) from None
        publications = self._multi_publications(document.get("publish"), content_type)
        narrowed = [self._narrow(topic_filter) for topic_filter in topic_filters]
        for publication in publications:
            self._require(auth.publish, publication.topic, "publish to")
        if topic_filters:
            subscribe = self._compiled(auth.subscribe)
            for topic_filter in topic_filters:
                if not subscribe.allows_filter(topic_filter):
                    raise _forbidden(topic_filter, "subscribe to")
        for publication in publications:
            await self._broker.publish(
                publication.topic, publication.payload, qos=publication.qos, retain=publication.retain
            )
        items: list[Json] = []
        seen: set[str] = set()
        for scans in narrowed:
            if not scans:
                continue
            for message in self._broker.retained_matching(scans):
                topic = message.topic
                if topic in seen or not self._in_layout(topic):
                    continue
                seen.add(topic)
                if content_type == _BASE64:
                    payload = base64.b64encode(message.payload).decode("ascii")
                else:
                    payload = message.payload.decode("utf-8", "replace")
                items.append({"topic": topic, "payload": payload})
        return Response(200, [(b"content-type", b"application/json")], orjson.dumps(items))

    def _multi_publications(self, value: Json | None, default_type: str) -> list[_Publication]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise _invalid_request("'publish' must be a list of publications.")
        if len(value) > MAX_PUBLISHES:
            raise _invalid_request(f"At most {MAX_PUBLISHES} publications are allowed in one request.")
        out: list[_Publication] = []
        for i, entry in enumerate(value):
            where = f"publish[{i}]"
            if not isinstance(entry, dict):
                raise _invalid_request(f"'{where}' must be an object.")
            topic = entry.get("topic")
            payload = entry.get("payload")
            if not isinstance(topic, str) or not isinstance(payload, str):
                raise _invalid_request(f"'{where}' needs the strings 'topic' and 'payload'.")
            content_type = (
                _body_content_type(entry.get("content-type"), f"{where}.content-type") or default_type
            )
            qos = entry.get("qos", 1)
            if qos not in (0, 1) or isinstance(qos, bool):
                raise InvalidInput(
                    f"'{where}.qos' must be 0 or 1.",
                    description="The messaging API supports QoS 0 and 1.",
                    error_code="messaging:qos.invalid",
                )
            retain = entry.get("retained", True)
            if not isinstance(retain, bool):
                raise InvalidInput(
                    f"'{where}.retained' must be true or false.",
                    description="Send a JSON boolean.",
                    error_code="messaging:retained.invalid",
                )
            levels = topic.split("/")
            if levels[0]:
                raise _topic_not_found(topic, "The topic must be /tt/<stream>/<topic>.")
            self._topic(levels[1:])
            data = (
                _decode_base64(payload.encode("ascii", "replace"))
                if content_type == _BASE64
                else payload.encode()
            )
            if len(data) > self._max_payload:
                raise self._too_large(len(data))
            out.append(_Publication(topic, data, int(qos), retain))
        return out

    def _narrow(self, topic_filter: str) -> list[str]:
        """Filters under ``/tt/<stream>/`` that together match exactly the layout topics ``topic_filter``
        matches (a wildcard among the first three levels becomes one filter per stream).

        Raises:
            NotFound: no topic of the layout can match (wrong prefix, unknown stream, too few levels).
        """
        levels = topic_filter.split("/")
        for i, expected in enumerate(("", _STREAM_PREFIX)):
            if i >= len(levels):
                raise _filter_not_found(topic_filter)
            level = levels[i]
            if level == "#":
                return [f"/{_STREAM_PREFIX}/{stream}/#" for stream in self._stream_order]
            if level not in ("+", expected):
                raise _filter_not_found(topic_filter)
        if len(levels) < 3:
            raise _filter_not_found(topic_filter)
        stream = levels[2]
        if stream == "#":
            return [f"/{_STREAM_PREFIX}/{s}/#" for s in self._stream_order]
        if len(levels) < 4:
            raise _filter_not_found(topic_filter)
        rest = "/".join(levels[3:])
        if stream == "+":
            return [f"/{_STREAM_PREFIX}/{s}/{rest}" for s in self._stream_order]
        if stream not in self._streams:
            raise _stream_not_found(stream)
        return [f"/{_STREAM_PREFIX}/{stream}/{rest}"]

    def _in_layout(self, topic: str) -> bool:
        levels = topic.split("/")
        return (
            len(levels) > 3 and levels[1] == _STREAM_PREFIX and levels[2] in self._streams and all(levels[3:])
        )

    # -------------------------------------------------------------------------------------- permissions

    def _compiled(self, filters: tuple[str, ...]) -> TopicPermissions:
        permissions = self._permissions.get(filters)
        if permissions is None:
            if len(self._permissions) >= PERMISSION_CACHE_SIZE:
                self._permissions.clear()
            permissions = TopicPermissions.compile(filters)
            self._permissions[filters] = permissions
        return permissions

    def _require(self, filters: tuple[str, ...], topic: str, action: str) -> None:
        if not self._compiled(filters).allows(topic):
            raise _forbidden(topic, action)

    def _too_large(self, size: int) -> EdgeTwinError:
        return PayloadTooLarge(
            f"The payload of at least {math.ceil(size / 1024)} kB exceeds the limit of "
            f"{self._max_payload // 1024} kB.",
            description="Send a smaller payload (messaging.max_payload_kb).",
            error_code="messaging:payload.toolarge",
        )


def _require_length(request: Request) -> None:
    # The DSH's 411: the body must be announced by Content-Length (chunked bodies are refused).
    if request.header("content-length") is None or request.header("transfer-encoding") is not None:
        raise InvalidInput(
            "The Content-Length header is missing.",
            description="Send the body with a Content-Length header (not chunked).",
            error_code="messaging:contentlength.required",
            status=411,
        )


def _publish_options(request: Request) -> tuple[int, bool]:
    if not request.has_query:
        return 1, True
    qos = 1
    raw_qos = request.query_one("qos")
    if raw_qos is not None:
        if raw_qos not in ("0", "1"):
            raise InvalidInput(
                f"The value '{raw_qos}' of the parameter 'qos' is invalid.",
                description="Use 0 or 1.",
                error_code="messaging:qos.invalid",
            )
        qos = int(raw_qos)
    retain = True
    raw_retained = request.query_one("retained")
    if raw_retained is not None:
        lowered = raw_retained.lower()
        if lowered not in ("true", "false"):
            raise InvalidInput(
                f"The value '{raw_retained}' of the parameter 'retained' is invalid.",
                description="Use true or false.",
                error_code="messaging:retained.invalid",
            )
        retain = lowered == "true"
    return qos, retain


def _body_content_type(value: Json | None, where: str, *, required: bool = False) -> str:
    """A ``content-type`` field of a multi request: ``text/plain`` or ``base64`` (``""`` when absent)."""
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise _invalid_request(f'\'{where}\' must be the string "text/plain" or "base64".')
    if value not in _MULTI_TYPES:
        raise UnsupportedMediaType(
            f"The content type '{value}' in '{where}' is not supported.",
            description="Use text/plain or base64.",
            error_code="messaging:contenttype.unsupported",
        )
    return value


def _decode_base64(text: bytes) -> bytes:
    """Standard base64, whitespace ignored and padding optional."""
    data = text.translate(None, _WHITESPACE)
    if len(data) % 4:
        data += b"=" * (-len(data) % 4)
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except binascii.Error:
        raise InvalidInput(
            "The payload is not valid base64.",
            description="Send standard base64 (RFC 4648 §4), or another content type.",
            error_code="messaging:payload.invalid",
        ) from None


def _representation(accept: str) -> tuple[bytes, bool]:
    """The response's content type and whether to base64-encode, from ``Accept`` (RFC 9110 §12.5.1)."""
    exact = _REPRESENTATIONS.get(accept.strip().lower())
    if exact is not None:
        return exact
    best: tuple[bytes, bool] | None = None
    best_q = 0.0
    for part in accept.split(","):
        media, *params = part.split(";")
        choice = _REPRESENTATIONS.get(media.strip().lower())
        if choice is None:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        if q > best_q:
            best, best_q = choice, q
    if best is None:
        raise InvalidInput(
            f"None of the media types in 'Accept: {accept}' can be served.",
            description="Accept text/plain, application/json, application/octet-stream or base64.",
            error_code="messaging:accept.invalid",
        )
    return best


def _etag(representation: bytes, encoded: bool) -> bytes:
    digest = hashlib.blake2b(representation, digest_size=12).hexdigest()
    return f'"{digest}-b64"'.encode() if encoded else f'"{digest}"'.encode()


def _none_match(condition: str, etag: bytes) -> bool:
    """``If-None-Match`` with weak comparison (RFC 9110 §13.1.2): ``*`` or one of the listed tags."""
    tag = etag.decode("ascii")
    for candidate in condition.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == tag:
            return True
    return False


def _method_not_allowed(method: str, allow: str) -> MethodNotAllowed:
    return MethodNotAllowed(
        f"The method {method} is not allowed on this resource.",
        description=f"Use one of: {allow}.",
        headers={"allow": allow},
    )


def _topic_not_found(topic: str, description: str) -> NotFound:
    return NotFound(
        f"The MQTT topic '{topic}' is not supported.",
        description=description,
        error_code="messaging:topic.invalid",
    )


def _stream_not_found(stream: str) -> NotFound:
    return NotFound(
        f"The DSH stream '{stream}' is unknown.",
        description="Use one of the streams in messaging.streams.",
        error_code="messaging:stream.notfound",
    )


def _filter_not_found(topic_filter: str) -> NotFound:
    return NotFound(
        f"The topic filter '{topic_filter}' matches no topic of the layout /tt/<stream>/<topic>.",
        description="Use filters under /tt/<stream>/ of a configured stream.",
        error_code="messaging:topic.invalid",
    )


def _forbidden(topic: str, action: str) -> PolicyDenied:
    return PolicyDenied(
        f"The client is not allowed to {action} '{topic}'.",
        description="Check the topic permissions of the user or the token's claims.",
        error_code="messaging:topic.forbidden",
    )


def _invalid_request(message: str) -> InvalidInput:
    return InvalidInput(
        message,
        description='Send {"content-type": "text/plain" | "base64", "topic-filters": [...]}.',
        error_code="messaging:request.invalid",
    )
