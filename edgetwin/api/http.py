"""A minimal ASGI request/response layer for the routes served without Quart (the Things API).

Why not Quart here: a Quart-Trio route costs about a quarter of the throughput of a bare ASGI app on the same
Hypercorn worker (request context, routing, two tasks per request). The Things API is the hot path, so it
parses only what a route needs, spawns no task per request and serialises with orjson.

Contract:

* :class:`Request` is built from the ASGI scope. The path is split on ``/`` from ``scope["raw_path"]`` and
  *then* each segment is percent-decoded once, so an encoded ``%2F`` stays inside its segment (a thing ID or
  a JSON key may not contain ``/``, but the request still addresses one segment). The query string is parsed
  lazily into a multi-map that keeps blank values. Headers are looked up by lower-case name
  (:meth:`Request.header`; ASGI servers deliver lower-case names) and decoded only when asked for;
  repeated field lines are joined with ``", "``.
* :meth:`Request.header_or_query` is Ditto's "query parameters read as headers" rule (ditto.md 1.1:
  ``condition``, ``timeout``, ``response-required``, ``correlation-id``, ...): the header wins.
* :attr:`Request.correlation_id` is ``x-correlation-id`` or ``correlation-id`` (header, then query), else a
  fresh UUID; the caller echoes it on every response.
* :meth:`Request.body` reads the ``http.request`` messages up to a byte limit and raises
  :class:`~edgetwin.errors.PayloadTooLarge` past it, before reading further.
* :func:`error_response` is the single rendering of an :class:`~edgetwin.errors.EdgeTwinError` on this layer:
  Ditto's error JSON, no body for a 304, ``WWW-Authenticate`` on a 401, plus the error's own ``headers``
  (the current ``ETag`` the service puts on a 304 or 412, ``Allow`` on a 405).

Not handled here: routing, authentication and commands (``api.things``, ``api.auth``).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Final, TypeAlias
from urllib.parse import parse_qsl, unquote

import orjson

from edgetwin.errors import EdgeTwinError, InvalidInput, PayloadTooLarge, Unauthenticated

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

__all__ = [
    "ClientDisconnected",
    "Headers",
    "Receive",
    "Request",
    "Response",
    "Scope",
    "Send",
    "error_response",
    "json_response",
    "new_correlation_id",
    "send_response",
]

Scope: TypeAlias = "MutableMapping[str, Any]"
Receive: TypeAlias = "Callable[[], Awaitable[MutableMapping[str, Any]]]"
Send: TypeAlias = "Callable[[MutableMapping[str, Any]], Awaitable[None]]"
Headers: TypeAlias = list[tuple[bytes, bytes]]
"""Response headers as ASGI wants them: lower-case names, raw bytes."""

JSON_TYPE: Final = b"application/json"
WWW_AUTHENTICATE: Final = b'Basic realm="edgetwin"'
_CONTENT_TYPE_JSON: Final = (b"content-type", JSON_TYPE)
# A generator of our own (seeded from os.urandom), so that nobody's random.seed() makes ids repeat.
_random_bits: Final = random.Random().getrandbits


def new_correlation_id() -> str:
    """A random version-4 UUID string, as Ditto generates for a request that brought none.

    Uses :mod:`random`, not ``os.urandom``: a correlation id must be unique, not unguessable, and this is
    on every request's path (``str(uuid.uuid4())`` costs a system call and an object).
    """
    n = (_random_bits(128) & ~(0xF000 << 64 | 0xC000 << 48)) | (0x4000 << 64 | 0x8000 << 48)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class ClientDisconnected(Exception):
    """The client went away before its request body was complete; there is nobody to answer."""


class Request:
    """One HTTP request, parsed just enough for routing.

    Args:
        scope: the ASGI HTTP scope.
        receive: the ASGI receive callable (for the body).

    Raises:
        InvalidInput: 400 ``request.invalid`` if a path segment is not valid UTF-8 after percent-decoding.
    """

    __slots__ = (
        "_correlation_id",
        "_headers",
        "_query",
        "_receive",
        "client_host",
        "method",
        "raw_path",
        "scope",
        "segments",
    )

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self._receive = receive
        self.method: str = scope["method"]
        raw = scope.get("raw_path")
        raw_path: str = raw.decode("latin-1") if raw else _quote_fallback(scope["path"])
        if not raw_path.startswith("/"):
            # An absolute-form request target (``GET http://host/api/2/...``): keep its path only.
            raw_path = "/" + raw_path.partition("//")[2].partition("/")[2]
        self.raw_path = raw_path
        self.segments: list[str] = [_decode_segment(s) if "%" in s else s for s in raw_path.split("/")]
        raw_headers = scope["headers"]  # a list of [name, value] pairs from every ASGI server we use
        # ASGI header names are lower-case bytes; a C-level dict() is the cheap common case.
        self._headers: dict[bytes, bytes] = dict(raw_headers)
        if len(self._headers) != len(raw_headers):
            self._headers = _joined_headers(raw_headers)
        client = scope.get("client")
        self.client_host: str | None = client[0] if client else None
        self._query: dict[str, list[str]] | None = None
        self._correlation_id: str | None = None

    @property
    def query(self) -> dict[str, list[str]]:
        """The query parameters: name to every value in order, blank values kept (``ids=`` is ``[""]``)."""
        if self._query is None:
            query: dict[str, list[str]] = {}
            raw = self.scope.get("query_string", b"")
            if raw:
                text = raw.decode("utf-8", "replace")
                for name, value in parse_qsl(text, keep_blank_values=True, errors="replace"):
                    query.setdefault(name, []).append(value)
            self._query = query
        return self._query

    def query_one(self, name: str) -> str | None:
        """The first value of a query parameter, or ``None`` if it is absent."""
        values = self.query.get(name)
        return values[0] if values else None

    @property
    def has_query(self) -> bool:
        """Whether the request has a query string at all."""
        return bool(self.scope.get("query_string"))

    def has_any_header(self, names: frozenset[bytes]) -> bool:
        """Whether any of ``names`` (lower-case bytes) is among the request headers; one C-level check."""
        return not self._headers.keys().isdisjoint(names)

    def header(self, name: str) -> str | None:
        """A request header's value (repeated field lines joined with ``", "``), or ``None``.

        Args:
            name: the lower-case header name.
        """
        value = self._headers.get(name.encode("latin-1"))
        return None if value is None else value.decode("latin-1")

    @property
    def headers(self) -> dict[str, str]:
        """Every request header, by lower-case name (built on each access: prefer :meth:`header`)."""
        return {name.decode("latin-1"): value.decode("latin-1") for name, value in self._headers.items()}

    def header_or_query(self, name: str) -> str | None:
        """A Ditto header that may also be sent as a query parameter (ditto.md 1.1); the header wins.

        Args:
            name: the lower-case header name, which is also the query parameter's name.

        Returns:
            The value, or ``None`` if neither is present.
        """
        value = self._headers.get(name.encode("latin-1"))
        if value is not None:
            return value.decode("latin-1")
        if not self.scope.get("query_string"):
            return None
        return self.query_one(name)

    @property
    def correlation_id(self) -> str:
        """``x-correlation-id`` / ``correlation-id`` (header, then query), else a fresh UUID; fixed once read."""
        if self._correlation_id is None:
            cid = self.header("x-correlation-id") or self.header_or_query("correlation-id")
            self._correlation_id = cid if cid else new_correlation_id()
        return self._correlation_id

    @property
    def content_type(self) -> str | None:
        """The media type of the body, lower-case and without parameters (``; charset=...``)."""
        value = self.header("content-type")
        if value is None:
            return None
        return value.partition(";")[0].strip().lower()

    def base_url(self) -> str:
        """``scheme://host`` of this request, from the ``Host`` header (else the server address)."""
        scheme = self.scope.get("scheme", "http")
        host = self.header("host")
        if not host:
            server = self.scope.get("server")
            if server:
                server_host, port = server[0], server[1]
                host = f"[{server_host}]:{port}" if ":" in server_host else f"{server_host}:{port}"
            else:
                host = "localhost"
        return f"{scheme}://{host}"

    async def body(self, limit: int, *, too_large: Callable[[int], EdgeTwinError] | None = None) -> bytes:
        """Read the whole request body, refusing it once it exceeds ``limit`` bytes.

        Args:
            limit: the most bytes accepted.
            too_large: builds the error for a body of (at least) the given size; a generic 413
                :class:`~edgetwin.errors.PayloadTooLarge` when omitted.

        Returns:
            The body (``b""`` when there is none).

        Raises:
            PayloadTooLarge: (or what ``too_large`` builds) as soon as the declared ``Content-Length`` or the
                bytes received exceed ``limit``; the rest is not read.
            ClientDisconnected: the client went away first.
        """
        declared = self.header("content-length")
        if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise _too_large(int(declared), limit, too_large)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise _too_large(size, limit, too_large)
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _joined_headers(raw: Any) -> dict[bytes, bytes]:
    # RFC 9110 §5.3: repeated field lines are one comma-separated list.
    headers: dict[bytes, bytes] = {}
    for name, value in raw:
        previous = headers.get(name)
        headers[name] = value if previous is None else previous + b", " + value
    return headers


def _too_large(size: int, limit: int, factory: Callable[[int], EdgeTwinError] | None) -> EdgeTwinError:
    if factory is not None:
        return factory(size)
    return PayloadTooLarge(
        f"The request body of at least {size} bytes exceeds the limit of {limit} bytes.",
        description="Send a smaller request body.",
        error_code="request.toolarge",
    )


def _decode_segment(segment: str) -> str:
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise InvalidInput(
            f"The request path segment '{segment}' is not valid UTF-8 after percent-decoding.",
            description="Percent-encode the path as UTF-8.",
            error_code="request.invalid",
        ) from None


def _quote_fallback(path: str) -> str:
    # Only for servers that omit raw_path: the decoded path is all there is, so an encoded "/" is lost.
    return path.replace("%", "%25")


class Response:
    """An HTTP response: status, headers and the complete body.

    Args:
        status: the status code.
        headers: ASGI headers (``content-length`` is added when sending).
        body: the body bytes.
    """

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Headers | None = None, body: bytes = b"") -> None:
        self.status = status
        self.headers: Headers = headers if headers is not None else []
        self.body = body

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.headers!r}, {self.body[:60]!r})"


def json_response(value: Any, status: int = 200, headers: Headers | None = None) -> Response:
    """A JSON response serialised with orjson.

    Args:
        value: the JSON value.
        status: the status code.
        headers: further headers; ``content-type: application/json`` is added.

    Returns:
        The response.
    """
    out: Headers = [_CONTENT_TYPE_JSON]
    if headers:
        out.extend(headers)
    return Response(status, out, orjson.dumps(value))


def error_response(err: EdgeTwinError) -> Response:
    """Ditto's error JSON for ``err`` with its status (ditto.md §2).

    The error's own ``headers`` are sent along (the service puts the current ``etag`` on a 304 or 412); a
    304 has no body; a 401 carries ``WWW-Authenticate``.

    Args:
        err: the error.

    Returns:
        The response.
    """
    headers: Headers = [
        (name.lower().encode("latin-1", "replace"), value.encode("latin-1", "replace"))
        for name, value in err.headers.items()
    ]
    if err.status == 304:
        return Response(304, headers)
    if isinstance(err, Unauthenticated) and "www-authenticate" not in err.headers:
        headers.append((b"www-authenticate", WWW_AUTHENTICATE))
    return json_response(err.to_json(), err.status, headers)


async def send_response(send: Send, response: Response, *, head: bool = False) -> None:
    """Send ``response`` as one ``http.response.start`` and one ``http.response.body`` message.

    Args:
        send: the ASGI send callable.
        response: the response; ``content-length`` is added here, except on a 204 (RFC 9110 §8.6 forbids
            it) and a 304 (where it would have to be the length of the unsent representation).
        head: answer a ``HEAD`` request: the same headers, ``content-length`` included, and no body
            (RFC 9110 §9.3.2).
    """
    body = response.body
    headers = response.headers
    if response.status not in _NO_CONTENT_LENGTH:
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


_NO_CONTENT_LENGTH: Final = frozenset({204, 304})
