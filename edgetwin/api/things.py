"""The Things and search HTTP API (ditto.md §1.3-1.5, §4) as a bare ASGI app, dispatched before Quart.

Why not a Quart blueprint: ``GET /api/2/things/{id}`` is the hot path and must stay within 85 % of a bare ASGI
app on the same worker; a Quart-Trio route costs about 24 %. So this module routes on the path segments
itself (no regular expressions), builds one :mod:`edgetwin.core.commands` command, awaits the service and
renders the result with orjson. ``EdgeAsgi`` sends it the requests :func:`handles` accepts.

Contract:

* Routes (all under ``/api/2``): ``/things`` (GET list or ``?ids=``, POST create), ``/things/{id}`` and every
  sub-resource at any depth (``policyId``, ``definition``, ``attributes[/{path}]``, ``features[/{fid}
  [/definition | /properties[/{path}] | /desiredProperties[/{path}]]]``), ``/search/things`` and
  ``/search/things/count`` (GET, or POST with a form body). One trailing slash is ignored, as Ditto's
  ``pathEndOrSingleSlash``. Any other shape is 404 ``resource.notfound``; a method a route does not have is
  405 ``method.notallowed`` with ``Allow``; ``HEAD`` is a ``GET`` without the body (Pekko's
  transparent HEAD, as in Ditto). Authentication comes first, as in Ditto: an anonymous request
  gets 401 whatever the route.
* What is HTTP's is validated here: route, media type (PUT/POST ``application/json``, plus
  ``application/octet-stream`` as Ditto's gateway accepts by default; PATCH only
  ``application/merge-patch+json``; else 415 ``mediatype.unsupported``), body size (thing bodies up to
  :data:`MAX_THING_BYTES`, else 413 ``things:thing.toolarge``), JSON syntax (400 ``json.invalid``),
  pointer segments (400 ``json.pointer.invalid``), ``fields`` (400 ``json.fieldselector.invalid``), ``ids``,
  ``timeout``, ``response-required`` and ``channel``. The service validates IDs, values, conditions, options
  and permissions again and raises Ditto's errors; they are rendered once, by :func:`~edgetwin.api.http.
  error_response`.
* Responses: 200 JSON with ``ETag``; 201 with the created value, ``ETag`` and an absolute ``Location``
  (scheme, ``Host`` and the request path without query; ``/api/2/things/<newId>`` for POST); 204 with
  ``ETag``; 304 without body; 202 without body when ``response-required=false`` or ``timeout=0``. Every
  response, errors included, carries ``correlation-id``.
* Conditional requests: ``If-Match``, ``If-None-Match``, ``if-equal`` (headers) and ``condition`` (header
  or query parameter) are passed to the service as :class:`~edgetwin.core.commands.Preconditions`; it
  raises ``NotModified`` (304) or ``PreconditionFailed`` (412) with the current ETag in ``err.headers``.

Live channel and messages (issue 6): a request with ``channel=live`` or ``live-channel-condition`` on a
thing resource, and ``POST .../inbox|outbox/messages/{subject}`` (thing and feature forms) and
``.../inbox/claim``, are handed to :class:`~edgetwin.api.live.LiveHttp` with the parsed command. Not handled
here: ``migrateDefinition`` (Quart) and SSE (``Accept: text/event-stream``: :mod:`edgetwin.api.sse`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import TYPE_CHECKING, Final, Protocol
from urllib.parse import parse_qsl, quote, urlencode

import orjson
import trio

from edgetwin.api.http import (
    ClientDisconnected,
    Request,
    Response,
    error_response,
    json_response,
    new_correlation_id,
    send_response,
)
from edgetwin.api.live import response_options
from edgetwin.api.whoami import WHOAMI_PATHS, whoami
from edgetwin.core.commands import (
    CountThings,
    CreateThing,
    DeletePolicy,
    DeleteThing,
    MergeThing,
    ModifyPolicy,
    ModifyThing,
    Preconditions,
    RetrievePolicy,
    RetrieveThing,
    RetrieveThings,
    SearchThings,
)
from edgetwin.errors import (
    EdgeTwinError,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from edgetwin.rql.options import DEFAULT_PAGE_SIZE, SearchOptions, format_options, parse_options
from edgetwin.twin import MAX_JSON_DEPTH, parse_fields, parse_pointer, parse_thing_id
from edgetwin.twin.things import lift_policy_specials

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from edgetwin.api.http import Headers, Receive, Scope, Send
    from edgetwin.api.live import LiveHttp
    from edgetwin.core.commands import (
        AuthContext,
        Retrieved,
        SearchResult,
        Written,
    )
    from edgetwin.core.live import LiveCommand
    from edgetwin.twin import FieldSelector, Json, Pointer

__all__ = [
    "MAX_THING_BYTES",
    "RequestAuthenticator",
    "ThingsApi",
    "ThingsService",
    "handles",
]

logger = logging.getLogger(__name__)

MAX_THING_BYTES: Final = 100 * 1024
"""Ditto's default thing size limit (``things.thing.limits.max-size = 100k``); also caps request bodies."""
MAX_FORM_BYTES: Final = 64 * 1024
"""The largest form body a ``POST /search/things[/count]`` may send."""
MAX_TIMEOUT_S: Final = 60.0
"""Ditto's maximum command ``timeout`` (ditto.md 1.11); larger is 400 ``gateway:timeout.invalid``."""

# Media types accepted for PUT/POST bodies. Ditto's gateway adds application/octet-stream by default
# (`additional-accepted-media-types`, ditto.md 1.1), so Ditto clients that send it keep working.
JSON_MEDIA_TYPES: Final = frozenset({"application/json", "application/octet-stream"})
MERGE_PATCH_MEDIA_TYPE: Final = "application/merge-patch+json"
FORM_MEDIA_TYPE: Final = "application/x-www-form-urlencoded"
_MERGE_PATCH_MEDIA_TYPES: Final = frozenset({MERGE_PATCH_MEDIA_TYPE})

_THINGS_PREFIX: Final = "/api/2/things"
_POLICIES_PREFIX: Final = "/api/2/policies/"
_SEARCH_PATHS: Final = frozenset({"/api/2/search/things", "/api/2/search/things/count"})
# First segment after the thing ID (and after features/{fid}) that belongs to Quart (messages, WoT).
_NOT_OURS: Final = frozenset({"migrateDefinition"})

_ALL: Final = ("GET", "PUT", "PATCH", "DELETE")
_NO_DELETE: Final = ("GET", "PUT", "PATCH")
_COLLECTION: Final = ("GET", "POST")
_POLICY_ALL: Final = ("GET", "PUT", "DELETE")
_POLICY_GROUP: Final = ("GET", "PUT")
_POST: Final = ("POST",)
_ACTIONS: Final = {"GET": "retrieve", "PUT": "modify", "PATCH": "merge", "DELETE": "delete"}

# Route kinds.
_THINGS: Final = 0  # /things
_RESOURCE: Final = 1  # /things/{id}[/...]
_SEARCH: Final = 2  # /search/things
_COUNT: Final = 3  # /search/things/count
_POLICY: Final = 4  # /policies/{id}[/entries[/{label}[/subjects[/{sid}] | /resources[/{key}]]]]
_MESSAGE: Final = 5  # /things/{id}[/features/{fid}]/inbox|outbox/messages/{subject}, /things/{id}/inbox/claim

_EMPTY_SEARCH_OPTIONS: Final = SearchOptions()
_NO_PRECONDITIONS: Final = Preconditions()
# Request headers (or query parameters) that change how a command is run; absent in the common case.
_COMMAND_HEADERS: Final = frozenset(
    {
        b"channel",
        b"live-channel-condition",
        b"response-required",
        b"timeout",
        b"condition",
        b"if-match",
        b"if-none-match",
        b"if-equal",
    }
)


class ThingsService(Protocol):
    """What this adapter needs of :class:`edgetwin.core.service.TwinService`."""

    async def retrieve(self, cmd: RetrieveThing, auth: AuthContext) -> Retrieved: ...
    async def retrieve_many(self, cmd: RetrieveThings, auth: AuthContext) -> list[Json]: ...
    async def modify(self, cmd: ModifyThing, auth: AuthContext) -> Written: ...
    async def create(self, cmd: CreateThing, auth: AuthContext) -> Written: ...
    async def merge(self, cmd: MergeThing, auth: AuthContext) -> Written: ...
    async def delete(self, cmd: DeleteThing, auth: AuthContext) -> Written: ...
    async def search(self, cmd: SearchThings, auth: AuthContext) -> SearchResult: ...
    async def count(self, cmd: CountThings, auth: AuthContext) -> int: ...
    async def retrieve_policy(self, cmd: RetrievePolicy, auth: AuthContext) -> Retrieved: ...
    async def modify_policy(self, cmd: ModifyPolicy, auth: AuthContext) -> Written: ...
    async def delete_policy(self, cmd: DeletePolicy, auth: AuthContext) -> Written: ...


class RequestAuthenticator(Protocol):
    """What this adapter needs of :class:`edgetwin.api.auth.Authenticator`."""

    async def authenticate(self, request: Request) -> AuthContext: ...


def handles(path: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> bool:
    """Whether a request belongs to :class:`ThingsApi` (the rest goes to Quart).

    Args:
        path: the ASGI ``scope["path"]``.
        headers: the ASGI ``scope["headers"]``; a request accepting ``text/event-stream`` is SSE, which is
            Quart's.

    Returns:
        ``True`` for ``/api/2/things[/...]`` (messages included) and ``/api/2/search/things[/count]``, except
        ``migrateDefinition`` and SSE requests.
    """
    if path in WHOAMI_PATHS or path.startswith(_POLICIES_PREFIX):
        return True
    if path.startswith(_THINGS_PREFIX):
        rest = path[len(_THINGS_PREFIX) :]
        if rest and rest[0] != "/":
            return False  # /api/2/thingsfoo
        parts = rest.split("/", 5)  # ["", id, sub, fid, sub2, ...]
        if len(parts) > 2 and parts[2] in _NOT_OURS:
            return False
        if len(parts) > 4 and parts[2] == "features" and parts[4] in _NOT_OURS:
            return False
    elif path not in _SEARCH_PATHS and path.rstrip("/") not in _SEARCH_PATHS:
        return False
    return not any(name == b"accept" and b"text/event-stream" in value for name, value in headers)


class ThingsApi:
    """The ASGI app of the Things and search routes.

    Args:
        service: the twin service that executes the commands.
        authenticator: turns a request into an :class:`~edgetwin.core.commands.AuthContext`.
        max_thing_bytes: the largest body accepted on the thing routes.
    """

    def __init__(
        self,
        service: ThingsService,
        authenticator: RequestAuthenticator,
        *,
        live: LiveHttp | None = None,
        max_thing_bytes: int = MAX_THING_BYTES,
    ) -> None:
        self._service = service
        self._authenticator = authenticator
        self._live = live
        self._max_thing_bytes = max_thing_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request (``scope["type"] == "http"``)."""
        correlation_id: str | None = None
        try:
            request = Request(scope, receive)
            correlation_id = request.correlation_id
            response = await self._handle(request)
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
        if correlation_id is None:
            correlation_id = _fallback_correlation_id(scope)
        response.headers.append((b"correlation-id", correlation_id.encode("latin-1", "replace")))
        await send_response(send, response, head=scope["method"] == "HEAD")

    async def _handle(self, request: Request) -> Response:
        if request.raw_path in WHOAMI_PATHS:
            return await whoami(request, self._authenticator)
        auth = await self._authenticator.authenticate(request)
        kind, allow, thing_id, path = _route(request.segments)
        method = request.method
        if method == "HEAD" and "GET" in allow:
            method = "GET"  # Pekko's transparent-head-requests, as in Ditto: a GET without the body
        if method not in allow:
            raise _method_not_allowed(method, allow)
        if kind == _MESSAGE:
            if self._live is None:
                raise _route_not_found()
            return await self._live.message(request, auth, thing_id, path)  # its own timeout rules
        if not request.has_query and not request.has_any_header(_COMMAND_HEADERS):
            # The common case (a plain GET/PUT): none of the Ditto headers below is present.
            return await self._dispatch(request, auth, kind, method, thing_id, path, _NO_PRECONDITIONS)
        channel = request.header_or_query("channel")
        if channel is not None and channel not in ("twin", "live"):
            raise InvalidInput(
                f"The value '{channel}' of the header 'channel' is invalid.",
                description="Use 'twin' or 'live'.",
                error_code="header.invalid",
            )
        condition = request.header_or_query("live-channel-condition")
        if channel == "live" or condition is not None:
            return await self._live_command(request, auth, kind, method, thing_id, path, condition)
        # Fire and forget (timeout=0) still runs the command to its end (it is local and fast): only the
        # answer is 202.
        timeout_s, respond = response_options(
            request, default=None, maximum=MAX_TIMEOUT_S, code="gateway:timeout.invalid"
        )
        pre = _preconditions(request)
        if timeout_s is None:
            # No deadline of our own by default: the only wait is the local single writer, whose commits
            # finish anyway (a cancel scope per request would cost ~5 % of the hot GET's throughput).
            response = await self._dispatch(request, auth, kind, method, thing_id, path, pre)
        else:
            with trio.move_on_after(timeout_s) as deadline:
                response = await self._dispatch(request, auth, kind, method, thing_id, path, pre)
            if deadline.cancelled_caught:
                raise RequestTimeout(
                    f"The request was not answered within the timeout of {timeout_s:g} s.",
                    description="Try again, or send a larger 'timeout' (at most 60 s).",
                )
        if not respond:
            return Response(202)
        return response

    async def _dispatch(
        self,
        request: Request,
        auth: AuthContext,
        kind: int,
        method: str,
        thing_id: str,
        path: Pointer,
        pre: Preconditions,
    ) -> Response:
        if kind == _POLICY:
            return await self._policy(request, auth, method, thing_id, path, pre)
        if kind == _RESOURCE:
            if method == "GET":
                retrieved = await self._service.retrieve(
                    RetrieveThing(thing_id, path, _fields(request), pre), auth
                )
                return _retrieved(retrieved)
            cmd = await self._thing_command(request, method, thing_id, path, pre)
            if isinstance(cmd, ModifyThing):
                return _written(await self._service.modify(cmd, auth), request)
            if isinstance(cmd, MergeThing):
                return _written(await self._service.merge(cmd, auth), request)
            assert isinstance(cmd, DeleteThing)
            return _written(await self._service.delete(cmd, auth), request)
        if kind == _THINGS:
            if method == "POST":
                return await self._create(request, auth)
            ids = request.query.get("ids")
            if ids is not None:
                return await self._retrieve_many(request, auth, ids)
            return await self._list(request, auth)
        params = await _search_params(request) if method == "POST" else request.query
        filter_ = _search_filter(params)
        namespaces = _namespaces(params)
        if kind == _COUNT:
            count = await self._service.count(CountThings(filter_, namespaces), auth)
            return Response(200, [(b"content-type", b"application/json")], orjson.dumps(count))
        option = _joined(params, "option")
        options = parse_options(option) if option else _EMPTY_SEARCH_OPTIONS
        result = await self._service.search(
            SearchThings(filter_, namespaces, option, _fields_from(params)), auth
        )
        return json_response(_search_body(result, options))

    async def _thing_command(
        self, request: Request, method: str, thing_id: str, path: Pointer, pre: Preconditions
    ) -> LiveCommand:
        """The command of a request on a thing resource (the body read and checked)."""
        if method == "GET":
            return RetrieveThing(thing_id, path, _fields(request), pre)
        if method == "PUT":
            value = await self._json_body(request, JSON_MEDIA_TYPES)
            initial_policy, copy_policy_from = None, None
            if not path and isinstance(value, dict):
                value, initial_policy, copy_policy_from = lift_policy_specials(value)
            return ModifyThing(thing_id, path, value, pre, initial_policy, copy_policy_from)
        if method == "PATCH":
            return MergeThing(thing_id, path, await self._json_body(request, _MERGE_PATCH_MEDIA_TYPES), pre)
        return DeleteThing(thing_id, path, pre)

    async def _live_command(
        self,
        request: Request,
        auth: AuthContext,
        kind: int,
        method: str,
        thing_id: str,
        path: Pointer,
        condition: str | None,
    ) -> Response:
        """``channel=live`` or ``live-channel-condition`` (ditto.md §1.10), handed to :class:`LiveHttp`."""
        if kind == _THINGS and method == "POST":
            raise MethodNotAllowed(
                "Thing could not be created via channel <live>.",
                description="Create the thing via the twin channel.",
                error_code="things:thing.notcreatable",
            )
        if kind != _RESOURCE or self._live is None:
            raise InvalidInput(
                "The live channel applies to the commands of one thing.",
                description="Send live commands to '/api/2/things/{thingId}[/...]'.",
                error_code="header.invalid",
            )
        pre = _preconditions(request)
        cmd = await self._thing_command(request, method, thing_id, path, pre)

        async def twin() -> Response:
            return await self._dispatch(request, auth, kind, method, thing_id, path, pre)

        return await self._live.command(
            request, auth, cmd, action=_ACTIONS[method], condition=condition, twin=twin
        )

    async def _policy(
        self,
        request: Request,
        auth: AuthContext,
        method: str,
        policy_id: str,
        path: Pointer,
        pre: Preconditions,
    ) -> Response:
        if method == "GET":
            retrieved = await self._service.retrieve_policy(
                RetrievePolicy(policy_id, path, _fields(request), pre), auth
            )
            return _retrieved(retrieved)
        if method == "PUT":
            value = await self._json_body(request, JSON_MEDIA_TYPES, too_large=_policy_too_large)
            lockout = (request.header_or_query("allow-policy-lockout") or "").lower() == "true"
            written = await self._service.modify_policy(
                ModifyPolicy(policy_id, path, value, pre, lockout), auth
            )
            return _written(written, request)
        written = await self._service.delete_policy(DeletePolicy(policy_id, path, pre), auth)
        return _written(written, request)

    async def _create(self, request: Request, auth: AuthContext) -> Response:
        # The body is optional: no body creates an empty thing (ditto.md 1.5).
        value = await self._json_body(request, JSON_MEDIA_TYPES, optional=True)
        initial_policy, copy_policy_from = None, None
        if isinstance(value, dict):
            value, initial_policy, copy_policy_from = lift_policy_specials(value)
        namespace = request.query_one("namespace")
        written = await self._service.create(
            CreateThing(value, namespace, initial_policy, copy_policy_from), auth
        )
        location = f"{request.base_url()}{_THINGS_PREFIX}/{quote(written.entity_id, safe=_ID_SAFE)}"
        return _written(written, request, location=location)

    async def _retrieve_many(self, request: Request, auth: AuthContext, values: list[str]) -> Response:
        ids: list[str] = []
        for value in values:
            if not value:
                raise InvalidInput(
                    "The query parameter 'ids' must not be empty.",
                    description="Send a comma-separated list of thing IDs, e.g. 'ids=ns:a,ns:b'.",
                    error_code="things:id.invalid",
                )
            ids.extend(parse_thing_id(item) for item in value.split(","))
        things = await self._service.retrieve_many(RetrieveThings(tuple(ids), _fields(request)), auth)
        return json_response(things)

    async def _list(self, request: Request, auth: AuthContext) -> Response:
        # Ditto 2.4+: GET /things without ids is a search without filter, answered as a plain array.
        params = request.query
        option = _joined(params, "option")
        options = parse_options(option) if option else _EMPTY_SEARCH_OPTIONS
        result = await self._service.search(
            SearchThings(None, _namespaces(params), option, _fields_from(params)), auth
        )
        canonical = f"{request.base_url()}{request.raw_path}"
        query = request.scope.get("query_string", b"")
        if query:
            canonical += "?" + query.decode("latin-1")
        links: Headers = [(b"link", f'<{canonical}>; rel="canonical"'.encode("latin-1", "replace"))]
        if result.cursor is not None:
            links.append((b"link", _next_link(params, options, result.cursor).encode("latin-1", "replace")))
        return json_response(result.items, headers=links)

    async def _json_body(
        self,
        request: Request,
        media_types: frozenset[str],
        *,
        optional: bool = False,
        too_large: Callable[[int], EdgeTwinError] | None = None,
    ) -> Json:
        """The parsed JSON body; with ``optional``, a missing body (and media type) is ``{}``."""
        content_type = request.content_type
        if content_type not in media_types and not (optional and content_type is None):
            raise _unsupported_media_type(request.header("content-type"), media_types)
        body = await request.body(self._max_thing_bytes, too_large=too_large or self._thing_too_large)
        if optional and not body:
            return {}
        if content_type is None:
            raise _unsupported_media_type(None, media_types)
        try:
            value: Json = orjson.loads(body)
        except orjson.JSONDecodeError as err:
            raise InvalidInput(
                f"Failed to parse JSON string '{_excerpt(body)}'!",
                description=f"Check if the JSON was valid (e.g. on https://jsonlint.com) - {err}",
                error_code="json.invalid",
            ) from None
        return value

    def _thing_too_large(self, size: int) -> EdgeTwinError:
        return PayloadTooLarge(
            f"The size of '{math.ceil(size / 1024)}' kB exceeds the maximal allowed Thing size of "
            f"'{self._max_thing_bytes // 1024}' kB.",
            description="Reduce the Thing size in the bounds of the specified limit.",
            error_code="things:thing.toolarge",
        )


# Characters that may stay unescaped in a path segment (RFC 3986 pchar); ":" is in every thing ID.
_ID_SAFE: Final = ":@!$&'()*+,;=-._~"


def _route(segments: list[str]) -> tuple[int, tuple[str, ...], str, Pointer]:
    """Match the path segments (``["", "api", "2", ...]``): kind, allowed methods, thing ID, pointer.

    Raises:
        NotFound: ``resource.notfound`` for a shape that is not a route.
        InvalidInput: ``json.pointer.invalid`` for an empty segment inside a JSON pointer.
    """
    n = len(segments)
    if n > 4 and segments[-1] == "":
        n -= 1  # one trailing slash: Ditto's pathEndOrSingleSlash
    if n < 4 or segments[1] != "api" or segments[2] != "2":
        raise _route_not_found()
    top = segments[3]
    if top == "policies":
        return _policy_route(segments, n)
    if top == "search":
        if n >= 5 and segments[4] == "things":
            if n == 5:
                return _SEARCH, _COLLECTION, "", ()
            if n == 6 and segments[5] == "count":
                return _COUNT, _COLLECTION, "", ()
        raise _route_not_found()
    if top != "things":
        raise _route_not_found()
    if n == 4:
        return _THINGS, _COLLECTION, "", ()
    thing_id = segments[4]
    if not thing_id:
        raise _route_not_found()
    if n == 5:
        return _RESOURCE, _ALL, thing_id, ()
    sub = segments[5]
    if sub in ("inbox", "outbox"):
        return _message_route(segments, 5, n, thing_id, ())
    if sub == "attributes":
        return _RESOURCE, _ALL, thing_id, ("attributes", *_pointer(segments, 6, n))
    if n == 6:
        if sub == "policyId":
            return _RESOURCE, _NO_DELETE, thing_id, ("policyId",)
        if sub == "definition":
            return _RESOURCE, _ALL, thing_id, ("definition",)
        if sub == "features":
            return _RESOURCE, _ALL, thing_id, ("features",)
        raise _route_not_found()
    if sub != "features" or not segments[6]:
        raise _route_not_found()
    feature_id = segments[6]
    if n == 7:
        return _RESOURCE, _ALL, thing_id, ("features", feature_id)
    part = segments[7]
    if part in ("inbox", "outbox"):
        return _message_route(segments, 7, n, thing_id, ("features", feature_id))
    if part in ("properties", "desiredProperties"):
        return _RESOURCE, _ALL, thing_id, ("features", feature_id, part, *_pointer(segments, 8, n))
    if part == "definition" and n == 8:
        return _RESOURCE, _ALL, thing_id, ("features", feature_id, "definition")
    raise _route_not_found()


def _message_route(
    segments: list[str], i: int, n: int, thing_id: str, base: Pointer
) -> tuple[int, tuple[str, ...], str, Pointer]:
    """``inbox|outbox/messages/{subject...}`` (the subject may contain ``/``) and ``inbox/claim``."""
    direction = segments[i]
    if n == i + 2 and not base and direction == "inbox" and segments[i + 1] == "claim":
        return _MESSAGE, _POST, thing_id, ("inbox", "claim")
    if n < i + 2 or segments[i + 1] != "messages":
        raise _route_not_found()
    # An empty subject is the adapter's 400 messages:subject.invalid, not a 404.
    return _MESSAGE, _POST, thing_id, (*base, direction, "messages", *segments[i + 2 : n])


def _policy_route(segments: list[str], n: int) -> tuple[int, tuple[str, ...], str, Pointer]:
    """``/api/2/policies/{id}[/entries[/{label}[/subjects[/{sid}] | /resources[/{key}]]]]``.

    A resource key such as ``thing:/features/lamp`` appears raw in the URL (ditto.md §3.1), so everything
    after ``/resources/`` is one key, including a trailing slash (``thing:/``).
    """
    if n < 5 or not segments[4]:
        raise _route_not_found()
    policy_id = segments[4]
    if n == 5:
        return _POLICY, _POLICY_ALL, policy_id, ()
    if segments[5] != "entries":
        raise _route_not_found()
    if n == 6:
        return _POLICY, _POLICY_GROUP, policy_id, ("entries",)
    label = segments[6]
    if not label:
        raise _route_not_found()
    if n == 7:
        return _POLICY, _POLICY_ALL, policy_id, ("entries", label)
    group = segments[7]
    if group not in ("subjects", "resources"):
        raise _route_not_found()
    if n == 8:
        return _POLICY, _POLICY_GROUP, policy_id, ("entries", label, group)
    key = "/".join(segments[8:]) if group == "resources" else segments[8]
    if not key or (group == "subjects" and n != 9):
        raise _route_not_found()
    return _POLICY, _POLICY_ALL, policy_id, ("entries", label, group, key)


def _pointer(segments: list[str], start: int, end: int) -> Pointer:
    """The JSON pointer made of ``segments[start:end]``, each segment one key (``%2F`` stays inside)."""
    keys = segments[start:end]
    if "" in keys:
        # The text and code of parse_pointer's error for "a//b" (Ditto: json.pointer.invalid).
        raise InvalidInput(
            f"The JSON pointer is invalid: '/{'/'.join(keys)}'!",
            description="Consecutive slashes in JSON pointers are not supported.",
            error_code="json.pointer.invalid",
        )
    if len(keys) > MAX_JSON_DEPTH:
        parse_pointer("/".join(keys))  # raises json.pointer.invalid for the depth
    return tuple(key.replace("~0", "~") if "~" in key else key for key in keys)


def _route_not_found() -> NotFound:
    return NotFound(
        "The requested resource could not be found.",
        description="Check the request path; see the Ditto HTTP API v2.",
        error_code="resource.notfound",
    )


def _method_not_allowed(method: str, allow: tuple[str, ...]) -> MethodNotAllowed:
    names = ", ".join(allow)
    return MethodNotAllowed(
        f"The method {method} is not allowed on this resource.",
        description=f"Use one of: {names}.",
        headers={"allow": names},
    )


def _preconditions(request: Request) -> Preconditions:
    condition = request.header_or_query("condition")
    if_match = request.header("if-match")
    if_none_match = request.header("if-none-match")
    if_equal = request.header("if-equal")
    if condition is None and if_match is None and if_none_match is None and if_equal is None:
        return _NO_PRECONDITIONS
    return Preconditions(if_match, if_none_match, if_equal, condition)


def _fields(request: Request) -> FieldSelector | None:
    if not request.has_query:
        return None
    return _fields_from(request.query)


def _fields_from(params: dict[str, list[str]]) -> FieldSelector | None:
    values = params.get("fields")
    if values is None:
        return None
    return parse_fields(",".join(values))


def _joined(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if values is None:
        return None
    return ",".join(v for v in values if v) or None


def _search_filter(params: dict[str, list[str]]) -> str | None:
    # Several filter parameters are AND-combined (ditto.md 4.1).
    filters = [f for f in params.get("filter", ()) if f]
    if not filters:
        return None
    if len(filters) == 1:
        return filters[0]
    return f"and({','.join(filters)})"


def _namespaces(params: dict[str, list[str]]) -> tuple[str, ...] | None:
    values = params.get("namespaces")
    if values is None:
        return None
    namespaces = tuple(ns for value in values for ns in value.split(",") if ns)
    return namespaces or None


async def _search_params(request: Request) -> dict[str, list[str]]:
    """The query parameters plus those of an ``application/x-www-form-urlencoded`` body (POST search)."""
    params = {name: list(values) for name, values in request.query.items()}
    content_type = request.content_type
    if content_type not in (FORM_MEDIA_TYPE, None):
        raise _unsupported_media_type(request.header("content-type"), frozenset({FORM_MEDIA_TYPE}))
    body = await request.body(MAX_FORM_BYTES)
    if not body:
        return params  # POST without a body: the query alone
    if content_type is None:
        raise _unsupported_media_type(None, frozenset({FORM_MEDIA_TYPE}))
    for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True, errors="replace"):
        params.setdefault(name, []).append(value)
    return params


def _search_body(result: SearchResult, options: SearchOptions) -> dict[str, Json]:
    """Ditto's search result shape (ditto.md 4.3), from the service's items and next cursor."""
    body: dict[str, Json] = {"items": result.items}
    more = result.cursor is not None
    if options.limit is not None:
        body["nextPageOffset"] = options.limit.offset + options.limit.count if more else -1
    elif options.size is not None or options.cursor is not None:
        if more:
            body["cursor"] = result.cursor
    else:
        body["nextPageOffset"] = DEFAULT_PAGE_SIZE if more else -1
        if more:
            body["cursor"] = result.cursor
    return body


def _next_link(params: dict[str, list[str]], options: SearchOptions, cursor: str) -> str:
    """``Link`` to the next page of ``GET /things``: same parameters, the option's cursor replaced."""
    query: list[tuple[str, str]] = [
        (name, value) for name, values in params.items() if name != "option" for value in values
    ]
    query.append(("option", format_options(replace(options, cursor=cursor))))
    return f'<{_THINGS_PREFIX}?{urlencode(query, quote_via=quote, safe=",()/:")}>; rel="next"'


def _retrieved(retrieved: Retrieved) -> Response:
    headers: Headers = [(b"content-type", b"application/json")]
    if retrieved.etag is not None:
        headers.append((b"etag", retrieved.etag.encode("latin-1", "replace")))
    return Response(200, headers, orjson.dumps(retrieved.value))


def _written(written: Written, request: Request, *, location: str | None = None) -> Response:
    headers: Headers = []
    if written.etag is not None:
        headers.append((b"etag", written.etag.encode("latin-1", "replace")))
    if written.status != 201:
        return Response(204, headers)
    if location is None:
        location = f"{request.base_url()}{request.raw_path}"
    headers.append((b"location", location.encode("latin-1", "replace")))
    headers.append((b"content-type", b"application/json"))
    return Response(201, headers, orjson.dumps(written.value))


def _policy_too_large(size: int) -> EdgeTwinError:
    return PayloadTooLarge(
        f"The size of '{math.ceil(size / 1024)}' kB exceeds the maximal allowed Policy size of "
        f"'{MAX_THING_BYTES // 1024}' kB.",
        description="Reduce the Policy size in the bounds of the specified limit.",
        error_code="policies:policy.toolarge",
    )


def _unsupported_media_type(sent: str | None, accepted: frozenset[str]) -> UnsupportedMediaType:
    names = ", ".join(sorted(accepted))
    return UnsupportedMediaType(
        f"The Media-Type <{sent or 'none'}> is not supported by this resource.",
        description=f"Send the request with one of the supported Media-Types: <{names}>.",
    )


def _excerpt(body: bytes) -> str:
    text = body[:100].decode("utf-8", "replace")
    return text + ("..." if len(body) > 100 else "")


def _fallback_correlation_id(scope: Scope) -> str:
    """A correlation ID when the request could not even be parsed (e.g. a path that is not UTF-8)."""
    for name, value in scope.get("headers", ()):
        if name in (b"x-correlation-id", b"correlation-id") and value:
            return str(value.decode("latin-1"))
    return new_correlation_id()
