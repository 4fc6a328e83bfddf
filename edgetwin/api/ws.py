"""``/ws/2``: the Ditto Protocol over one WebSocket (ditto.md §7), as a plain ASGI websocket handler.

A session is authenticated once, like HTTP (Basic, Bearer, or ``?access_token=``), and refused with 401
otherwise. Each text frame is either a control message (``START-SEND-EVENTS[?namespaces=&filter=&
extraFields=]``, ``STOP-SEND-EVENTS``, the ``...-MESSAGES`` / ``...-LIVE-COMMANDS`` / ``...-LIVE-EVENTS``
forms, ``JWT-TOKEN?jwtToken=``) or one Ditto Protocol envelope. Envelopes become the same internal
commands as HTTP (``protocol.to_command``) and go through the same core service, so enforcement,
conditions, ETags and errors are identical; responses go back on the command's topic, correlated by
``correlation-id``. A malformed frame gets a 400 error envelope and the session stays open.

Twin commands are pipelined: the reader hands a command to its own task and reads the next frame as soon as
that command's write has its place in the store writer's queue (``on_queued``), so commands are applied in
the order they were sent while their commits are grouped; at most :data:`MAX_PIPELINED` wait at once (then
the reader waits, which is TCP backpressure on the client). A read waits for the writes sent before it (a
session reads its own writes). Responses go out in the order of the commands.

Live channel (issue 6, ditto.md §7.5): ``START-SEND-LIVE-COMMANDS`` / ``-LIVE-EVENTS`` / ``-MESSAGES``
attach the session to the :class:`~edgetwin.core.live.LiveRouter` as a receiver (with ``namespaces`` and
``filter``). A frame on ``…/things/live/commands/<action>`` or ``…/things/live/messages/<subject>`` with a
``status`` (or on ``…/things/live/errors``) answers a request this session received; without a status it is
a live command or message this session sends, answered (or 408) through the router's callback and this
session's one heap of deadlines, so the reader never waits for a device and a pending request costs no task;
``…/things/live/events/<action>`` is forwarded to ``START-SEND-LIVE-EVENTS`` sessions. An
answer nobody waits for is dropped; if it asked for a response (``response-required: true``) it gets a 400
``protocoladapter:illegal.adaptable`` error naming why.

Tasks per session: the reader (frames in), the writer (frames out, bounded in bytes), the expiry watch, the
live deadlines, one task per twin command in flight, and, while events are requested, the event pump (bus → the caller's
READ view → filter → writer).
Nothing blocks a publisher: the bus drops a subscriber that falls behind, and a session whose outgoing
channel is full is told why (an error envelope, if the peer still reads at all) and closed, instead of
growing memory. A session authenticated by a JWT is closed the same way when the token expires, unless
``JWT-TOKEN`` replaced it in time with a token of the same subject (Ditto's behaviour).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs

import orjson
import trio

from edgetwin import rql
from edgetwin.api.http import Request, error_response
from edgetwin.config import LiveSettings
from edgetwin.core.commands import (
    AuthContext,
    DeletePolicy,
    DeleteThing,
    MergeThing,
    ModifyPolicy,
    ModifyThing,
    RetrievePolicy,
    RetrieveThing,
    RetrieveThings,
)
from edgetwin.core.live import LiveFilter
from edgetwin.errors import EdgeTwinError, InvalidInput, Unauthenticated
from edgetwin.protocol import (
    error_envelope,
    event_envelope,
    parse_envelope,
    response_envelope,
    to_command,
    translate_error,
    with_correlation_id,
)
from edgetwin.protocol.live import is_answer, message_of, parse_timeout
from edgetwin.twin.fields import FieldSelector, apply_fields, parse_fields
from edgetwin.twin.pointer import MISSING

if TYPE_CHECKING:
    from collections.abc import Callable

    from edgetwin.api.auth import Authenticator
    from edgetwin.core.events import ThingEvent
    from edgetwin.core.live import LiveAnswer, LiveRouter, LiveSignal, LiveTicket, Stream
    from edgetwin.core.service import TwinService
    from edgetwin.protocol import Envelope, ProtocolCommand

__all__ = ["WS_PATH", "WebSocketApi"]

logger = logging.getLogger(__name__)

WS_PATH: Final = "/ws/2"
MAX_FRAME_CHARS: Final = 256 * 1024
OUTGOING_BYTES: Final = 4 * 1024 * 1024
"""Bytes of frames a session may have waiting to be sent before it is closed as too slow: room for a burst
(thousands of live commands to one device at once) without letting a peer that stopped reading grow memory."""
FLUSH_TIMEOUT_S: Final = 1.0
"""How long a session that ends may take to send what it still has queued (and the reason it ends)."""
CLOSE_NORMAL: Final = 1000
CLOSE_POLICY_VIOLATION: Final = 1008
CLOSE_TRY_AGAIN_LATER: Final = 1013
_READS: Final = (RetrieveThing, RetrieveThings, RetrievePolicy)
MAX_PIPELINED: Final = 256
"""Twin commands of one session that may be in flight at once before the reader waits."""
_LIVE_STREAMS: Final[dict[str, Stream]] = {
    "MESSAGES": "messages",
    "LIVE-COMMANDS": "live-commands",
    "LIVE-EVENTS": "live-events",
}


@dataclass(slots=True)
class _Slot:
    """A twin command's place in the order of responses."""

    frame: str | None = None
    done: bool = False
    queued: trio.Event = field(default_factory=trio.Event)
    finished: trio.Event = field(default_factory=trio.Event)


@dataclass(frozen=True, slots=True)
class _EventSubscription:
    namespaces: frozenset[str] | None
    filter: rql.Node | None
    extra_fields: FieldSelector | None


class WebSocketApi:
    """The ASGI handler of ``/ws/2``.

    Args:
        service: the core service (commands, committed events and the caller's view of them).
        authenticator: the same authenticator as HTTP.
        live: the live router (live commands, live events and messages); without it they are refused.
        live_settings: ``[live]`` (timeouts of the live requests a session sends).
        outgoing_bytes: bytes of frames a session may have queued for its peer before it is closed as too slow.
        clock: seconds since the epoch, compared with a token's ``exp`` (tests may shift it).
    """

    def __init__(
        self,
        service: TwinService,
        authenticator: Authenticator,
        *,
        live: LiveRouter | None = None,
        live_settings: LiveSettings | None = None,
        outgoing_bytes: int = OUTGOING_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if outgoing_bytes < 1:
            raise ValueError("outgoing_bytes must be at least 1")
        self._service = service
        self._authenticator = authenticator
        self._live = live
        self._live_settings = live_settings if live_settings is not None else LiveSettings()
        self._outgoing_bytes = outgoing_bytes
        self._clock = clock
        self._closing = trio.Event()

    def close(self) -> None:
        """End every session (shutdown), so that draining the server does not wait for them."""
        self._closing.set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Serve one WebSocket connection (``scope["type"] == "websocket"``)."""
        if (await receive())["type"] != "websocket.connect":
            return
        request = Request({**scope, "method": "GET"}, receive)
        try:
            token = request.query_one("access_token")
            if token:
                auth, expires_at = await self._authenticator.authenticate_token_expiring(
                    token, client_host=request.client_host
                )
            else:
                auth, expires_at = await self._authenticator.authenticate_expiring(request)
        except Unauthenticated as err:
            await _refuse(scope, send, err)
            return
        await send({"type": "websocket.accept"})
        session = _Session(
            self._service,
            self._authenticator,
            auth,
            expires_at,
            request.client_host,
            live=self._live,
            live_settings=self._live_settings,
            buffer=self._outgoing_bytes,
            clock=self._clock,
        )
        await session.run(receive, send, self._closing)


async def _refuse(scope: dict[str, Any], send: Any, err: EdgeTwinError) -> None:
    """401 with Ditto's error JSON where the server can send an HTTP response, else a plain close."""
    if "websocket.http.response" in scope.get("extensions", {}):
        response = error_response(err)  # the same 401 (and WWW-Authenticate) as HTTP
        headers = [*response.headers, (b"content-length", str(len(response.body)).encode())]
        await send({"type": "websocket.http.response.start", "status": response.status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": response.body})
    else:
        await send({"type": "websocket.close", "code": 1008})


class _Session:
    def __init__(
        self,
        service: TwinService,
        authenticator: Authenticator,
        auth: AuthContext,
        expires_at: float,
        host: str | None,
        *,
        live: LiveRouter | None,
        live_settings: LiveSettings,
        buffer: int,
        clock: Callable[[], float],
    ) -> None:
        self._service = service
        self._authenticator = authenticator
        self._live = live
        self._live_settings = live_settings
        self._auth = auth
        self._expires_at = expires_at
        self._token_changed = trio.Event()
        self._clock = clock
        self._host = host
        # Unbounded as a channel, bounded in bytes by _emit: a frame count would be either too small for a
        # burst of small frames or too large for big ones.
        self._out_send, self._out_receive = trio.open_memory_channel[str](math.inf)
        self._out_limit = buffer
        self._out_bytes = 0
        self._events: _EventSubscription | None = None
        self._in_flight = trio.Semaphore(MAX_PIPELINED)
        self._order: deque[_Slot] = deque()
        self._last_write: _Slot | None = None
        # This session's live requests: (deadline, order, ticket), earliest first.
        self._deadlines: list[tuple[float, int, LiveTicket]] = []
        self._deadline_order = itertools.count()
        self._deadline_moved = trio.Event()
        self._events_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._failure: EdgeTwinError | None = None
        self._close_code = CLOSE_NORMAL

    async def run(self, receive: Any, send: Any, closing: trio.Event) -> None:
        async with trio.open_nursery() as outer:
            # The writer outlives the work below, to flush the last frames; if the peer is gone it ends all.
            outer.start_soon(self._writer, send, outer.cancel_scope)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(_cancel_when, closing, nursery.cancel_scope)
                nursery.start_soon(self._watch_expiry)
                if self._live is not None:
                    nursery.start_soon(self._expire_live_requests, self._live)
                try:
                    await self._reader(receive)
                finally:
                    if self._live is not None:
                        self._live.detach(self)
                nursery.cancel_scope.cancel()
            self._finish()
            outer.cancel_scope.deadline = trio.current_time() + FLUSH_TIMEOUT_S
        # Failed, shut down, or the peer left: close (a no-op if the peer already did).
        # Shielded and bounded: the close must go out even when the session was cancelled, and must not hang.
        with trio.move_on_after(1) as scope:
            scope.shield = True
            await _close(send, self._close_code)

    @property
    def auth(self) -> AuthContext:
        """Who the session is (a live receiver is checked against each thing's policy with it)."""
        return self._auth

    def deliver(self, signal: LiveSignal) -> None:
        """A live command, live event or message for this session's device (never blocks)."""
        self._emit(signal.frame)

    def _fail(self, err: EdgeTwinError, close_code: int) -> None:
        """End the session: the work stops, ``err`` is sent (if the peer still reads), then the close."""
        if self._failure is None:
            self._failure = err
            self._close_code = close_code
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    def _finish(self) -> None:
        """No more frames: after a failure, what is queued is dropped (a slow peer would never get to the
        error) and the error goes last."""
        if self._failure is not None:
            with contextlib.suppress(trio.WouldBlock):
                while True:
                    self._out_receive.receive_nowait()
            self._out_bytes = 0
            self._out_send.send_nowait(orjson.dumps(error_envelope(None, self._failure)).decode())
        self._out_send.close()

    # -------------------------------------------------------------- frames

    def _emit(self, frame: str) -> None:
        if self._failure is not None:
            return
        if self._out_bytes + len(frame) > self._out_limit:
            self._fail(_too_slow(), CLOSE_TRY_AGAIN_LATER)
            return
        self._out_bytes += len(frame)
        self._out_send.send_nowait(frame)

    async def _writer(self, send: Any, scope: trio.CancelScope) -> None:
        async for frame in self._out_receive:
            try:
                await send({"type": "websocket.send", "text": frame})
            except Exception:  # the peer is gone: end the session
                scope.cancel()
                return
            self._out_bytes -= len(frame)

    async def _reader(self, receive: Any) -> None:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                return
            if kind != "websocket.receive":
                continue
            text = message.get("text")
            if text is None:
                self._error(None, InvalidInput("Binary frames are not supported; send JSON text frames."))
                continue
            if len(text) > MAX_FRAME_CHARS:
                self._error(None, InvalidInput(f"A frame may carry at most {MAX_FRAME_CHARS} characters."))
                continue
            try:
                if text[:1] in ("{", "[", " ", "\n") or not text[:1].isalpha():
                    await self._command(text)
                else:
                    await self._control(text.strip())
            except Exception:
                logger.exception("WebSocket frame failed")
                self._error(None, EdgeTwinError("An unexpected error occurred; it has been logged."))

    def _error(self, envelope: Any, err: EdgeTwinError, correlation_id: str | None = None) -> None:
        self._emit(orjson.dumps(error_envelope(envelope, err, correlation_id=correlation_id)).decode())

    # ----------------------------------------------------------- commands

    async def _command(self, text: str) -> None:
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            self._error(
                None, InvalidInput(f"The frame is not valid JSON: '{text[:80]}'", error_code="json.invalid")
            )
            return
        try:
            envelope = parse_envelope(obj)
        except EdgeTwinError as err:
            correlation = _correlation_of(obj)
            self._error(None, err, correlation)
            return
        topic = envelope.topic
        if topic.group == "things" and topic.channel == "live" and topic.criterion != "search":
            self._live_frame(envelope)
            return
        if envelope.correlation_id is None:
            envelope = with_correlation_id(envelope, str(uuid.uuid4()))
        try:
            translated = to_command(envelope)
        except EdgeTwinError as err:
            self._error(envelope, err)
            return
        auth = AuthContext(
            self._auth.subjects, envelope.correlation_id, self._auth.publish, self._auth.subscribe
        )
        if isinstance(translated.command, _READS):
            last = self._last_write
            if last is not None and not last.done:
                # Read your writes: a read waits for the writes sent before it (they commit in order).
                await last.finished.wait()
        await self._in_flight.acquire()  # backpressure: at most MAX_PIPELINED commands in flight
        slot = _Slot()
        self._order.append(slot)
        if not isinstance(translated.command, _READS):
            self._last_write = slot
        assert self._nursery is not None
        # Go on once the command's write is queued (or it is done): the next frame is then applied after it.
        self._nursery.start_soon(self._run_command, envelope, translated, auth, slot)
        await slot.queued.wait()

    async def _run_command(
        self,
        envelope: Envelope,
        translated: ProtocolCommand,
        auth: AuthContext,
        slot: _Slot,
    ) -> None:
        try:
            try:
                result = await self._dispatch(translated.command, auth, slot.queued.set)
            except EdgeTwinError as err:
                slot.frame = orjson.dumps(error_envelope(envelope, translate_error(translated, err))).decode()
            except Exception:
                logger.exception("WebSocket command failed")
                unexpected = EdgeTwinError("An unexpected error occurred; it has been logged.")
                slot.frame = orjson.dumps(error_envelope(envelope, unexpected)).decode()
            else:
                if translated.response_required:
                    slot.frame = orjson.dumps(response_envelope(envelope, result)).decode()
        finally:
            slot.done = True
            slot.finished.set()
            self._in_flight.release()
            slot.queued.set()  # a read, or a command that failed before its write was queued
            self._flush_in_order()

    def _flush_in_order(self) -> None:
        """Send the responses that are ready, in the order of their commands."""
        order = self._order
        while order and order[0].done:
            frame = order.popleft().frame
            if frame is not None:
                self._emit(frame)

    async def _dispatch(self, command: Any, auth: AuthContext, on_queued: Callable[[], None]) -> Any:
        service = self._service
        if isinstance(command, RetrieveThing):
            return await service.retrieve(command, auth)
        if isinstance(command, RetrieveThings):
            return await service.retrieve_many(command, auth)
        if isinstance(command, ModifyThing):
            return await service.modify(command, auth, on_queued=on_queued)
        if isinstance(command, MergeThing):
            return await service.merge(command, auth, on_queued=on_queued)
        if isinstance(command, DeleteThing):
            return await service.delete(command, auth, on_queued=on_queued)
        if isinstance(command, RetrievePolicy):
            return await service.retrieve_policy(command, auth)
        if isinstance(command, ModifyPolicy):
            return await service.modify_policy(command, auth, on_queued=on_queued)
        if isinstance(command, DeletePolicy):
            return await service.delete_policy(command, auth, on_queued=on_queued)
        raise InvalidInput(f"The command {type(command).__name__} is not supported over the WebSocket.")

    # --------------------------------------------------------------- live

    def _live_frame(self, envelope: Envelope) -> None:
        """A frame on the live channel: an answer, a live event, or a live command or message to send."""
        live = self._live
        if live is None:
            self._error(
                envelope, InvalidInput("The live channel is not available.", error_code="live.unavailable")
            )
            return
        if is_answer(envelope):
            problem = live.answer(envelope, self)
            if problem is not None and envelope.header("response-required") in (True, "true"):
                self._error(
                    envelope,
                    InvalidInput(
                        f"The live response was not accepted: {problem}",
                        description="Answer with the request's correlation-id, topic, path and an allowed status.",
                        error_code="protocoladapter:illegal.adaptable",
                    ),
                )
            return
        criterion = envelope.topic.criterion
        try:
            if criterion == "events":
                live.event(envelope, self._auth, origin=self)
                return
            if criterion not in ("commands", "messages"):
                raise InvalidInput(
                    f"The topic path '{envelope.topic}' is not supported on the live channel.",
                    description="Send live commands, live events, messages or answers to them.",
                    error_code="protocoladapter:unknown.topicpath",
                )
            if envelope.correlation_id is None:
                envelope = with_correlation_id(envelope, str(uuid.uuid4()))
            timeout_s = self._live_timeout(envelope)
        except EdgeTwinError as err:
            self._error(envelope, err)
            return
        self._live_request(live, envelope, timeout_s)

    def _live_timeout(self, envelope: Envelope) -> float:
        raw = envelope.header("timeout")
        if raw is MISSING or raw is None:
            return self._live_settings.default_timeout_s
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            raw = f"{raw}"
        if not isinstance(raw, str):
            raise InvalidInput(
                "The header 'timeout' must be a string such as '10s'.", error_code="header.invalid"
            )
        return parse_timeout(raw, maximum=self._live_settings.max_timeout_s, error_code="timeout.invalid")

    def _live_request(self, live: LiveRouter, envelope: Envelope, timeout_s: float) -> None:
        """Send a live command or message; its answer (or the 408 at its deadline) comes back to this session.

        Nothing waits here: the request is a ticket in the router and a deadline in this session's heap.
        """
        required = envelope.header("response-required") not in (False, "false") and timeout_s > 0
        auth = self._auth
        outgoing = replace(
            envelope, headers={**envelope.headers, "ditto-originator": auth.originator, "channel": "live"}
        )
        cmd = None
        try:
            if envelope.topic.criterion == "messages":
                ticket = live.start_message(
                    message_of(envelope),
                    outgoing,
                    auth,
                    on_done=partial(self._live_done, envelope, None),
                    response_required=required,
                    origin=self,
                )
            else:
                cmd = to_command(envelope, channel="live").command
                ticket = live.start_command(
                    cmd,  # type: ignore[arg-type]
                    outgoing,
                    auth,
                    on_done=partial(self._live_done, envelope, cmd),
                    response_required=required,
                    origin=self,
                )
        except EdgeTwinError as err:
            self._error(envelope, err)
            return
        if ticket is not None:
            deadline = trio.current_time() + timeout_s
            if not self._deadlines or deadline < self._deadlines[0][0]:
                self._deadline_moved.set()
            heapq.heappush(self._deadlines, (deadline, next(self._deadline_order), ticket))

    def _live_done(self, envelope: Envelope, cmd: object, outcome: LiveAnswer | EdgeTwinError) -> None:
        """The outcome of a live request this session sent: relay it (called by whoever answered)."""
        if isinstance(outcome, EdgeTwinError):
            self._error(envelope, outcome)
            return
        self._emit(orjson.dumps(replace(outcome.envelope, value=outcome.value).to_json()).decode())
        live = self._live
        if (
            isinstance(cmd, RetrieveThing)
            and live is not None
            and live.update_twin
            and self._nursery is not None
        ):
            self._nursery.start_soon(live.update_twin_with, cmd, outcome, self._auth)

    async def _expire_live_requests(self, live: LiveRouter) -> None:
        """One task for all of this session's live deadlines: sleeps until the earliest, then expires it."""
        try:
            while True:
                now = trio.current_time()
                while self._deadlines and self._deadlines[0][0] <= now:
                    live.expire(heapq.heappop(self._deadlines)[2])  # a no-op for an answered request
                self._deadline_moved = trio.Event()
                with trio.move_on_at(self._deadlines[0][0] if self._deadlines else math.inf):
                    await self._deadline_moved.wait()
        finally:
            for _, _, ticket in self._deadlines:  # the session ends: nobody waits for these any more
                live.cancel(ticket)
            self._deadlines.clear()

    # ------------------------------------------------------------ control

    async def _control(self, text: str) -> None:
        name, _, query = text.partition("?")
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        if name == "JWT-TOKEN":
            await self._refresh_token(params.get("jwtToken", ""))
            return
        verb, _, stream = name.partition("-SEND-")
        if verb not in ("START", "STOP") or (stream != "EVENTS" and stream not in _LIVE_STREAMS):
            self._error(
                None,
                InvalidInput(
                    f"Unknown control message '{name}'.",
                    description="Send a Ditto Protocol JSON envelope or a control message such as "
                    "START-SEND-EVENTS.",
                    error_code="protocoladapter:unknown.topicpath",
                ),
            )
            return
        if stream == "EVENTS":
            if verb == "START":
                try:
                    subscription = _event_subscription(params)
                except EdgeTwinError as err:
                    self._error(None, err)  # an invalid filter: an error and no ACK
                    return
                self._start_events(subscription)
            else:
                self._stop_events()
        elif self._live is None:
            self._error(
                None, InvalidInput("The live channel is not available.", error_code="live.unavailable")
            )
            return
        elif verb == "START":
            try:
                subscription = _event_subscription(params)
            except EdgeTwinError as err:
                self._error(None, err)  # an invalid filter: an error and no ACK
                return
            self._live.attach(
                self, _LIVE_STREAMS[stream], LiveFilter(subscription.namespaces, subscription.filter)
            )
        else:
            self._live.detach(self, _LIVE_STREAMS[stream])
        self._emit(f"{name}:ACK")

    async def _refresh_token(self, token: str) -> None:
        try:
            refreshed, expires_at = await self._authenticator.authenticate_token_expiring(
                token, client_host=self._host
            )
        except Unauthenticated as err:
            self._error(None, err)  # the session keeps its current token (and its expiry)
            return
        if refreshed.subjects[:1] != self._auth.subjects[:1]:
            # Ditto: the new token must be for the same subject, otherwise the session is closed.
            self._fail(
                Unauthenticated(
                    "The new JWT is for another subject than the session's.",
                    description="Refresh a session only with a token for the same subject.",
                ),
                CLOSE_POLICY_VIOLATION,
            )
            return
        self._auth = refreshed
        self._expires_at = expires_at
        self._token_changed.set()

    async def _watch_expiry(self) -> None:
        while True:
            remaining = self._expires_at - self._clock()
            if remaining <= 0:
                self._fail(
                    Unauthenticated(
                        "The JWT of this session has expired.",
                        description="Send JWT-TOKEN?jwtToken=<a new token> before the current one expires.",
                    ),
                    CLOSE_POLICY_VIOLATION,
                )
                return
            with trio.move_on_after(remaining):  # inf: a token that never expires
                await self._token_changed.wait()
            self._token_changed = trio.Event()

    def _start_events(self, subscription: _EventSubscription) -> None:
        self._stop_events()
        self._events = subscription
        scope = trio.CancelScope()
        self._events_scope = scope
        assert self._nursery is not None
        self._nursery.start_soon(self._pump_events, subscription, scope)

    def _stop_events(self) -> None:
        if self._events_scope is not None:
            self._events_scope.cancel()
        self._events_scope = None
        self._events = None

    async def _pump_events(self, subscription: _EventSubscription, scope: trio.CancelScope) -> None:
        with scope, self._service.subscribe() as events:
            async for event in events:
                frame = self._event_frame(event, subscription)
                if frame is not None:
                    self._emit(frame)
            # The bus dropped us: we fell too far behind.
            self._fail(_too_slow(), CLOSE_TRY_AGAIN_LATER)

    def _event_frame(self, event: ThingEvent, subscription: _EventSubscription) -> str | None:
        if (
            subscription.namespaces is not None
            and event.thing_id.partition(":")[0] not in subscription.namespaces
        ):
            return None
        view = self._service.event_view(event, self._auth)
        if view is None:
            return None
        event_for_caller, thing_view = view
        if subscription.filter is not None and (
            thing_view is None or not rql.evaluate(subscription.filter, thing_view, now=event.timestamp)
        ):
            return None
        extra = None
        if subscription.extra_fields is not None and thing_view is not None:
            extra = apply_fields(thing_view, subscription.extra_fields)
        return orjson.dumps(event_envelope(event_for_caller, extra=extra)).decode()


async def _close(send: Any, code: int) -> None:
    try:
        await send({"type": "websocket.close", "code": code})
    except Exception:  # the connection is already gone
        logger.debug("WebSocket already closed")


def _too_slow() -> EdgeTwinError:
    return EdgeTwinError(
        "The session could not keep up with its frames and was closed.",
        description="Read the WebSocket continuously, or subscribe to fewer events (namespaces, filter).",
        error_code="too.many.requests",
        status=429,
    )


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


def _event_subscription(params: dict[str, str]) -> _EventSubscription:
    namespaces = params.get("namespaces")
    text = params.get("filter")
    # Ditto: an invalid filter is refused (an error, no ACK) and the subscription is not started.
    node = rql.parse_filter(text) if text else None
    extra = params.get("extraFields")
    return _EventSubscription(
        frozenset(n for n in namespaces.split(",") if n) if namespaces else None,
        node,
        parse_fields(extra) if extra else None,
    )


def _correlation_of(obj: Any) -> str | None:
    if isinstance(obj, dict) and isinstance(obj.get("headers"), dict):
        value = obj["headers"].get("correlation-id")
        return value if isinstance(value, str) else None
    return None
