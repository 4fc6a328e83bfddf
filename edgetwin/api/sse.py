"""Server-Sent Events of thing changes (ditto.md §6.1), as a plain ASGI handler dispatched by ``EdgeAsgi``.

Why not Quart: a stream lives for hours; Quart would cost a request context and two tasks per stream, and
its ``RESPONSE_TIMEOUT`` would cut the stream. This handler writes the ASGI messages itself, from one
plain async function (no generator, so nothing ever yields inside a cancel scope: PEP 789, ASYNC119).

Contract:

* ``GET /api/2/things``, ``/api/2/things/{id}`` and ``/api/2/things/{id}/{pointer}`` with ``Accept:
  text/event-stream`` (:func:`handles`). Authenticated like HTTP (401 otherwise); bad parameters are a
  400 before the stream starts. Parameters: ``ids``, ``namespaces``, ``filter`` (RQL, evaluated as Ditto
  does on the event's partial thing merged with ``extraFields``), ``fields`` (``_revision``,
  ``_modified``, ``_context`` selectable), ``extraFields``.
* Each event: ``data:<json>`` then ``id:<seq>`` then a blank line. ``data`` is the partial thing
  (``thingId`` + the changed part at its place, only the leaves the subscriber may READ now;
  ``{"thingId": ...}`` for a deletion) or, on a pointer stream, the raw value at the pointer. Events
  with nothing readable (or nothing at the pointer) are skipped.
* Beyond Ditto: ``id:`` is the event journal's sequence number. A client reconnecting with
  ``Last-Event-ID`` first gets every retained event after it from the journal, then live events, in
  order and without duplicates: the stream subscribes to the bus *before* reading the journal and skips
  live events it already replayed. If events it asked for were pruned, a comment says so.
* An SSE comment (``:`` line) after ``sse.heartbeat_s`` without an event. A stream that falls
  ``sse.subscriber_buffer`` events behind (the bus drops it) gets a comment saying why and is closed; a
  client that takes nothing for ``sse.send_timeout_s`` is disconnected. Publishing never waits for a
  stream. :meth:`SseApi.close` ends every stream (shutdown).

Message streams (ditto.md §6.2): ``GET /api/2/things/{id}[/features/{fid}]/inbox|outbox/messages[/<subject>]``
with ``Accept: text/event-stream`` receives the messages sent there (by HTTP or WebSocket) that the caller
may READ (``message:`` resource): ``data:<payload>`` (text as it is, one ``data:`` line per line; JSON and
base64 payloads as their JSON text) and ``event:<subject>``. Receive-only: it never answers. A thing that
does not exist is 404 before the stream starts; a stream more than ``sse.subscriber_buffer`` messages
behind is told so in a comment and closed.

Search stream (ditto.md §6.3): ``GET /api/2/search/things`` with ``Accept: text/event-stream`` and the
parameters ``filter``, ``namespaces``, ``option`` (``sort``; ``size`` is the internal page size; ``cursor``
and ``limit`` are refused), ``fields``. One ``data:<thing JSON>`` ``id:<thingId>`` per matching thing the
caller may read, in the sort order, then the stream ends. ``Last-Event-ID: <thingId>`` continues after that
thing: by comparison when sorted by ``thingId`` only (the default), else after the thing's position in the
results (nothing follows if it no longer matches). A failure while streaming is a final ``data:<error JSON>``;
bad parameters are a 400 before the stream starts.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Final, Protocol

import orjson
import trio

from edgetwin import rql
from edgetwin.api.http import Request, error_response, send_response
from edgetwin.config import SseSettings
from edgetwin.core.commands import SearchThings
from edgetwin.core.live import LiveFilter, LiveSignal
from edgetwin.errors import EdgeTwinError, InvalidInput
from edgetwin.rql.options import SearchOptions, SortKey, format_options, parse_options
from edgetwin.twin import parse_fields, parse_pointer, parse_thing_id
from edgetwin.twin.fields import apply_fields
from edgetwin.twin.ids import is_valid_namespace, namespace_of, parse_feature_id
from edgetwin.twin.pointer import MISSING, format_pointer, get_at
from edgetwin.twin.things import not_found

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable
    from contextlib import AbstractContextManager

    from edgetwin.api.http import Receive, Scope, Send
    from edgetwin.core.commands import AuthContext, SearchResult
    from edgetwin.core.events import ThingEvent
    from edgetwin.core.live import LiveRouter
    from edgetwin.core.service import JournalPage, TwinSnapshot
    from edgetwin.twin import FieldSelector, Json, Pointer

__all__ = ["EventService", "SseApi", "handles"]

logger = logging.getLogger(__name__)

_PREFIX: Final = "/api/2/things"
_SEARCH_PATHS: Final = frozenset({"/api/2/search/things", "/api/2/search/things/"})
SEARCH_PAGE: Final = 200
"""Things read per page (one short read transaction each) by a search stream without ``size``."""
_MESSAGES: Final = frozenset({"inbox", "outbox"})  # message streams (ditto.md §6.2)
REPLAY_PAGE: Final = 256
"""Journal events read per read transaction while replaying (keeps each transaction short)."""


class EventService(Protocol):
    """What this adapter needs of :class:`edgetwin.core.service.TwinService`."""

    def subscribe(
        self, *, buffer: int | None = None
    ) -> AbstractContextManager[trio.MemoryReceiveChannel[ThingEvent]]: ...
    def replay(self, after_seq: int, *, limit: int) -> JournalPage: ...
    def partial_thing(
        self, event: ThingEvent, auth: AuthContext, *, extra_fields: FieldSelector | None = None
    ) -> dict[str, Json] | None: ...
    async def search(self, cmd: SearchThings, auth: AuthContext) -> SearchResult: ...
    def snapshot(self, thing_id: str) -> TwinSnapshot | None: ...


class _Authenticator(Protocol):
    async def authenticate(self, request: Request) -> AuthContext: ...


def handles(method: str, path: str, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether a request is a thing or search SSE stream (a ``GET`` accepting ``text/event-stream``).

    ``*/*`` does not count (ditto.md §6). Message streams (``.../inbox|outbox/messages...``) are ours too.
    """
    if method == "GET" and path in _SEARCH_PATHS:
        return _accepts_event_stream(headers)
    if method != "GET" or not (path == _PREFIX or path.startswith(_PREFIX + "/")):
        return False
    return _accepts_event_stream(headers)


def _message_prefix(segments: list[str]) -> tuple[str, Pointer] | None:
    """The thing and message path of a message stream (``segments`` after ``/api/2/things``), else ``None``."""
    if segments and segments[-1] == "":
        segments = segments[:-1]
    if len(segments) < 3:
        return None
    base: Pointer = ()
    rest = segments[1:]
    if rest[0] == "features" and len(rest) >= 4:
        base, rest = ("features", rest[1]), rest[2:]
    if rest[0] not in _MESSAGES or len(rest) < 2 or rest[1] != "messages":
        return None
    return segments[0], (*base, *rest)


def _accepts_event_stream(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    return any(name == b"accept" and b"text/event-stream" in value for name, value in headers)


class _Stream:
    """One validated subscription."""

    __slots__ = ("extra_fields", "fields", "filter", "ids", "namespaces", "pointer")

    def __init__(self, request: Request) -> None:
        segments = request.segments[4:]
        if segments and segments[-1] == "":
            segments.pop()  # one trailing slash is ignored
        ids: frozenset[str] | None = None
        self.pointer: Pointer | None = None
        if segments:
            ids = frozenset({parse_thing_id(segments[0])})
            if len(segments) > 1:
                self.pointer = parse_pointer("/" + "/".join(segments[1:]))
        listed = _list(request, "ids")
        if listed is not None:
            named = frozenset(parse_thing_id(i) for i in listed)
            ids = named if ids is None else ids & named
        self.ids = ids
        namespaces = _list(request, "namespaces")
        if namespaces is not None:
            for namespace in namespaces:
                if not is_valid_namespace(namespace):
                    raise InvalidInput(
                        f"The namespace '{namespace}' is not valid.", error_code="namespace.invalid"
                    )
        self.namespaces = None if namespaces is None else frozenset(namespaces)
        text = request.query_one("filter")
        self.filter = rql.parse_filter(text) if text and text.strip() else None
        fields = request.query_one("fields")
        self.fields = parse_fields(fields) if fields else None
        extra = request.query_one("extraFields")
        self.extra_fields = parse_fields(extra) if extra else None

    def wants(self, event: ThingEvent) -> bool:
        if self.ids is not None and event.thing_id not in self.ids:
            return False
        return self.namespaces is None or namespace_of(event.thing_id) in self.namespaces

    def data(self, event: ThingEvent, view: dict[str, Json]) -> bytes | None:
        """The ``data`` of ``event`` for this stream (``None``: skip it)."""
        hidden: dict[str, Json] = {
            "_revision": event.revision,
            "_modified": event.timestamp,
            "_namespace": namespace_of(event.thing_id),
        }
        if self.filter is not None and not rql.evaluate(self.filter, {**view, **hidden}, now=event.timestamp):
            return None
        if self.pointer is not None:
            value = get_at(view, self.pointer)
            if value is MISSING or event.action == "deleted":
                return None
            if self.fields is not None and isinstance(value, dict):
                value = apply_fields(value, self.fields)
            return orjson.dumps(value)
        out: dict[str, Json] = view
        if self.fields is not None:
            at = get_at(view, event.path) if event.action != "deleted" else None
            context: dict[str, Json] = {
                "topic": _topic(event),
                "path": format_pointer(event.path),
                "value": None if at is MISSING else at,
                "headers": {} if event.correlation_id is None else {"correlation-id": event.correlation_id},
            }
            out = apply_fields({**view, **hidden, "_context": context}, self.fields)
            if not out:
                return None
        return orjson.dumps(out)


class _Search:
    """One validated search stream."""

    __slots__ = ("after", "by_id", "fetch_fields", "fields", "filter", "namespaces", "options")

    def __init__(self, request: Request) -> None:
        filters = [f for f in request.query.get("filter", ()) if f]
        self.filter = (
            None if not filters else filters[0] if len(filters) == 1 else f"and({','.join(filters)})"
        )
        if self.filter is not None:
            rql.parse_filter(self.filter)  # a 400 before the stream starts
        namespaces = _list(request, "namespaces")
        self.namespaces = tuple(namespaces) if namespaces else None
        option = ",".join(v for v in request.query.get("option", ()) if v)
        options = parse_options(option) if option else SearchOptions()
        if options.cursor is not None or options.limit is not None:
            raise InvalidInput(
                "A search stream takes no cursor() or limit() option.",
                description="The stream sends every result; resume with Last-Event-ID.",
                error_code="thing-search:search.option.invalid",
            )
        self.options = replace(options, size=options.size or SEARCH_PAGE)
        fields = ",".join(v for v in request.query.get("fields", ()) if v)
        self.fields = parse_fields(fields) if fields else None
        # thingId is always fetched (it is the event id); it is left out of data if not selected.
        self.fetch_fields = parse_fields(fields + ",thingId") if fields else None
        last = request.header("last-event-id")
        self.after = parse_thing_id(last.strip()) if last is not None and last.strip() else None
        sort = options.effective_sort
        # +1 / -1: sorted by thingId alone, ascending / descending; 0: by something else.
        self.by_id = 1 if sort == (SortKey("thingId"),) else -1 if sort == (SortKey("thingId", True),) else 0

    def command(self, cursor: str | None) -> SearchThings:
        options = self.options if cursor is None else replace(self.options, cursor=cursor)
        return SearchThings(self.filter, self.namespaces, format_options(options), self.fetch_fields)

    def skip(self, thing_id: str) -> bool:
        """Whether ``thing_id`` is at or before ``Last-Event-ID``."""
        after = self.after
        if after is None:
            return False
        if (self.by_id > 0 and thing_id > after) or (self.by_id < 0 and thing_id < after):
            self.after = None
            return False
        if self.by_id == 0 and thing_id == after:
            self.after = None
        return True

    def chunk(self, item: Json) -> bytes | None:
        if not isinstance(item, dict) or not isinstance(thing_id := item.get("thingId"), str):
            return None
        if self.skip(thing_id):
            return None
        data = apply_fields(item, self.fields) if self.fields is not None else item
        return b"data:" + orjson.dumps(data) + b"\nid:" + thing_id.encode() + b"\n\n"


def _topic(event: ThingEvent) -> str:
    namespace, _, name = event.thing_id.partition(":")
    return f"{namespace}/{name}/things/twin/events/{event.action}"


def _list(request: Request, name: str) -> list[str] | None:
    values = request.query.get(name)
    if values is None:
        return None
    items = [item for value in values for item in value.split(",") if item]
    return items


class _Dropped(Exception):
    """The bus dropped the stream: it fell too far behind."""


class SseApi:
    """The ASGI handler of thing SSE streams.

    Args:
        service: the twin service (live events, the journal, the subscriber's READ view).
        authenticator: turns a request into an :class:`~edgetwin.core.commands.AuthContext`.
        settings: ``[sse]``.
    """

    def __init__(
        self,
        service: EventService,
        authenticator: _Authenticator,
        settings: SseSettings | None = None,
        *,
        live: LiveRouter | None = None,
    ) -> None:
        self._service = service
        self._authenticator = authenticator
        self._live = live
        self._settings = settings if settings is not None else SseSettings()
        self._closing = trio.Event()
        self.open_streams = 0

    def close(self) -> None:
        """End every stream (with a comment saying why) and refuse new ones: the server is stopping."""
        self._closing.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one SSE request until the client leaves, falls behind, or :meth:`close` is called."""
        if scope["path"] in _SEARCH_PATHS:
            await self._search(scope, receive, send)
            return
        try:
            message_stream = _message_prefix(Request(scope, receive).segments[4:])
        except EdgeTwinError as err:
            await send_response(send, error_response(err))
            return
        if message_stream is not None:
            await self._messages(scope, receive, send, *message_stream)
            return
        try:
            request = Request(scope, receive)
            auth = await self._authenticator.authenticate(request)
            stream = _Stream(request)
            last_id = _last_event_id(request)
            correlation_id = request.correlation_id
        except EdgeTwinError as err:
            await send_response(send, error_response(err))
            return
        if self._closing.is_set():
            await send_response(
                send,
                error_response(EdgeTwinError("The server is stopping.", error_code="gateway:unavailable")),
            )
            return
        await self._run_stream(
            receive, partial(self._stream, send, auth, stream, last_id, correlation_id), scope.get("path")
        )

    async def _run_stream(
        self, receive: Receive, stream: Callable[[], Awaitable[None]], what: object
    ) -> None:
        """Run one stream until it ends or the client disconnects, counted in :attr:`open_streams`."""
        self.open_streams += 1
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
                await stream()
                nursery.cancel_scope.cancel()
        except Exception:
            # One stream's bug must not take the server down (serve_listeners' rule): log it, end the stream.
            logger.exception("SSE stream %s failed", what)
        finally:
            self.open_streams -= 1

    async def _stream(
        self, send: Send, auth: AuthContext, stream: _Stream, last_id: int | None, correlation_id: str
    ) -> None:
        settings = self._settings
        timeout = settings.send_timeout_s
        last_emit = trio.current_time()

        async def emit(chunk: bytes, *, more: bool = True) -> None:
            nonlocal last_emit
            with trio.fail_after(timeout):
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
            last_emit = trio.current_time()

        # Subscribe before reading the journal: whatever commits after the journal read is then on the
        # channel (nothing is missed), and whatever is in both is skipped by its sequence number.
        with self._service.subscribe(buffer=settings.subscriber_buffer) as events:
            sent = 0
            try:
                await _start(send, correlation_id, timeout)
                if last_id is not None:
                    sent = await self._replay(emit, auth, stream, last_id, events)
                while True:
                    if self._closing.is_set():
                        await emit(b": closed: the server is stopping\n\n", more=False)
                        return
                    if events.statistics().open_send_channels == 0:
                        raise _Dropped
                    event = None
                    with trio.move_on_at(last_emit + settings.heartbeat_s):
                        try:
                            event = await events.receive()
                        except trio.EndOfChannel:
                            raise _Dropped from None
                    if event is None:
                        await emit(b":\n\n")  # idle: heartbeat
                        continue
                    if event.seq <= sent:
                        continue  # already replayed from the journal
                    sent = event.seq
                    chunk = self._render(event, auth, stream)
                    if chunk is not None:
                        await emit(chunk)
            except _Dropped:
                logger.info("SSE stream of %s fell behind and was closed", auth.originator)
                reason = (
                    f": closed: this stream fell more than {settings.subscriber_buffer} events behind;"
                    f" reconnect with Last-Event-ID to resume\n\n"
                )
                with trio.move_on_after(timeout):
                    await send({"type": "http.response.body", "body": reason.encode(), "more_body": False})
            except trio.TooSlowError:
                logger.info("SSE client of %s took nothing for %gs: disconnected", auth.originator, timeout)

    async def _messages(
        self, scope: Scope, receive: Receive, send: Send, thing_id: str, path: Pointer
    ) -> None:
        live = self._live
        try:
            request = Request(scope, receive)
            auth = await self._authenticator.authenticate(request)
            if live is None:
                raise InvalidInput("Message streams are not available.", error_code="live.unavailable")
            thing_id = parse_thing_id(thing_id)
            if len(path) > 1 and path[0] == "features":
                parse_feature_id(path[1], for_write=False)
            if self._service.snapshot(thing_id) is None:
                raise not_found(thing_id, ())
            correlation_id = request.correlation_id
        except EdgeTwinError as err:
            await send_response(send, error_response(err))
            return
        receiver = _MessageReceiver(auth, self._settings.subscriber_buffer)
        live.attach(receiver, "messages", LiveFilter(thing_id=thing_id, path_prefix=path))
        try:
            await self._run_stream(
                receive, partial(self._message_stream, send, receiver, correlation_id), scope.get("path")
            )
        finally:
            live.detach(receiver)

    async def _message_stream(self, send: Send, receiver: _MessageReceiver, correlation_id: str) -> None:
        settings = self._settings
        timeout = settings.send_timeout_s
        try:
            await _start(send, correlation_id, timeout)
            while True:
                if self._closing.is_set():
                    chunk, more = b": closed: the server is stopping\n\n", False
                else:
                    chunk, more = await self._next_message(receiver)
                with trio.fail_after(timeout):
                    await send({"type": "http.response.body", "body": chunk, "more_body": more})
                if not more:
                    return
        except trio.TooSlowError:
            logger.info(
                "SSE message client of %s took nothing for %gs: disconnected",
                receiver.auth.originator,
                timeout,
            )

    async def _next_message(self, receiver: _MessageReceiver) -> tuple[bytes, bool]:
        """The next chunk of a message stream and whether more follow: a message, a heartbeat when idle, or
        the reason it ends (it fell behind)."""
        heartbeat = self._settings.heartbeat_s
        try:
            with trio.fail_after(heartbeat):
                signal = await receiver.signals.receive()
        except trio.TooSlowError:
            return b":\n\n", True
        except trio.EndOfChannel:
            behind = self._settings.subscriber_buffer
            return f": closed: this stream fell more than {behind} messages behind\n\n".encode(), False
        return _message_event(signal), True

    async def _search(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            request = Request(scope, receive)
            auth = await self._authenticator.authenticate(request)
            search = _Search(request)
            # The first page before the stream starts: a bad filter or option is still a plain 400.
            page = await self._service.search(search.command(None), auth)
            correlation_id = request.correlation_id
        except EdgeTwinError as err:
            await send_response(send, error_response(err))
            return
        await self._run_stream(
            receive, partial(self._search_stream, send, auth, search, page, correlation_id), scope.get("path")
        )

    async def _search_stream(
        self, send: Send, auth: AuthContext, search: _Search, page: SearchResult, correlation_id: str
    ) -> None:
        timeout = self._settings.send_timeout_s
        try:
            await _start(send, correlation_id, timeout)
            while True:
                for item in page.items:
                    chunk = search.chunk(item)
                    if chunk is not None:
                        with trio.fail_after(timeout):
                            await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if page.cursor is None:
                    break
                if self._closing.is_set():
                    with trio.fail_after(timeout):
                        await send(
                            {
                                "type": "http.response.body",
                                "body": b": closed: the server is stopping\n\n",
                                "more_body": False,
                            }
                        )
                    return
                await trio.lowlevel.checkpoint()  # a page of skipped things must not hog the loop
                try:
                    page = await self._service.search(search.command(page.cursor), auth)
                except EdgeTwinError as err:
                    chunk = b"data:" + error_response(err).body + b"\n\n"
                    with trio.fail_after(timeout):
                        await send({"type": "http.response.body", "body": chunk, "more_body": False})
                    return
            with trio.fail_after(timeout):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except trio.TooSlowError:
            logger.info(
                "SSE search client of %s took nothing for %gs: disconnected", auth.originator, timeout
            )

    async def _replay(
        self,
        emit: _Emit,
        auth: AuthContext,
        stream: _Stream,
        after: int,
        events: trio.MemoryReceiveChannel[ThingEvent],
    ) -> int:
        """Send the journaled events after ``after``; returns the last sequence number covered."""
        page = self._service.replay(after, limit=REPLAY_PAGE)
        if after > page.last_seq:
            # Not an id of this journal (another appliance, or a restored backup): live events only.
            await emit(f": event {after} is unknown here; sending live events only\n\n".encode())
            return page.last_seq
        if after < page.last_seq and (page.first_seq is None or page.first_seq > after + 1):
            missed_to = page.last_seq if page.first_seq is None else page.first_seq - 1
            await emit(f": events {after + 1} to {missed_to} are no longer retained\n\n".encode())
        sent = after
        while page.events:
            for event in page.events:
                sent = event.seq
                chunk = self._render(event, auth, stream)
                if chunk is not None:
                    await emit(chunk)
            if events.statistics().open_send_channels == 0:
                raise _Dropped  # live events piled up while replaying; the client resumes from here
            page = self._service.replay(sent, limit=REPLAY_PAGE)
        return sent

    def _render(self, event: ThingEvent, auth: AuthContext, stream: _Stream) -> bytes | None:
        if not stream.wants(event):
            return None
        view = self._service.partial_thing(event, auth, extra_fields=stream.extra_fields)
        if view is None:
            return None
        data = stream.data(event, view)
        if data is None:
            return None
        return b"data:" + data + b"\nid:" + str(event.seq).encode() + b"\n\n"


async def _start(send: Send, correlation_id: str, send_timeout_s: float) -> None:
    """The head of an event stream, then a first comment, which puts the head on the wire now (the server
    would otherwise hold it until the first event); ``TooSlowError`` after ``send_timeout_s``."""
    headers = [
        (b"content-type", b"text/event-stream"),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
        (b"correlation-id", correlation_id.encode("latin-1", "replace")),
    ]
    with trio.fail_after(send_timeout_s):
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b":\n\n", "more_body": True})


class _MessageReceiver:
    """A message stream as a live receiver: a bounded channel; one that overflows is closed."""

    def __init__(self, auth: AuthContext, buffer: int) -> None:
        self.auth = auth
        self._send, self.signals = trio.open_memory_channel[LiveSignal](buffer)

    def deliver(self, signal: LiveSignal) -> None:
        try:
            self._send.send_nowait(signal)
        except trio.WouldBlock:
            self._send.close()  # the stream sees EndOfChannel after what is queued, and says why
        except trio.ClosedResourceError:
            pass


def _message_event(signal: LiveSignal) -> bytes:
    """``data:<payload>`` (one line per line of text) and ``event:<subject>`` (ditto.md §6.2)."""
    envelope = signal.envelope
    value = envelope.value
    text = "" if value is MISSING else value if isinstance(value, str) else orjson.dumps(value).decode()
    data = "".join(f"data:{line}\n" for line in text.split("\n"))
    subject = (envelope.topic.action or "").replace("\n", " ")
    return f"{data}event:{subject}\n\n".encode()


class _Emit(Protocol):
    async def __call__(self, chunk: bytes) -> None: ...


def _last_event_id(request: Request) -> int | None:
    value = request.header("last-event-id")
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        raise InvalidInput(
            f"The Last-Event-ID '{value}' is not an event id of this stream.",
            description="Send the id of the last event received (a number), or no Last-Event-ID.",
            error_code="header.invalid",
        )
    return int(value)


async def _cancel_on_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return
