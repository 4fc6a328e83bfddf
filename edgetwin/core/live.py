"""The live channel and messages (ditto.md §1.10, §5, §7.5): signals routed to the sessions that speak for
the devices, and the correlation of their answers.

The twin is a copy; the live channel reaches the device. Every live command, live event and message goes
through one :class:`LiveRouter`, whichever adapter it came from (HTTP, WebSocket, later MQTT):

* **Receivers** are sessions that asked for a stream: ``live-commands``, ``live-events`` or ``messages``
  (``START-SEND-LIVE-COMMANDS`` / ``-LIVE-EVENTS`` / ``-MESSAGES`` on a WebSocket, a message SSE stream).
  A receiver gets a signal only when it may READ the signal's resource under the thing's current policy
  (``thing:<path>`` for commands and events, ``message:<path>`` for messages), its :class:`LiveFilter`
  accepts it (namespaces; an RQL filter evaluated on the receiver's READ view of the twin, with the
  placeholders ``topic:*``, ``entity:*``, ``resource:type`` and ``resource:path``), and it is not the sender.
  :meth:`Receiver.deliver` must not block; a receiver that cannot keep up deals with it (a WebSocket is
  closed as too slow, an SSE stream ends).
* **Senders** need permission first (policies apply on the way out): partial READ for a live retrieve
  (else 404), WRITE as on the twin for a live modify, merge or delete (403 ``…notmodifiable``), unrestricted
  WRITE on ``message:<path>`` for a message (403 ``messages:send.notallowed``), unrestricted WRITE for a live
  event (403 ``things:event.notallowed``), nothing for a claim. The thing must exist (404), and a
  ``condition`` is evaluated on the twin (412).
* **Pending requests** are kept by correlation-id. The first valid answer wins and wakes the caller; an
  answer is valid when it comes from a session the request was delivered to (a third party that guesses a
  correlation-id cannot answer in the device's place) and :func:`~edgetwin.protocol.live.answer_problem`
  finds nothing wrong with it. Late, duplicate and unknown answers are dropped, counted and logged, never
  handed to another caller. A second request with a correlation-id that is still pending is 409.
* **Deadlines** belong to the caller. :meth:`LiveRouter.start_command` / :meth:`~LiveRouter.start_message`
  register the request and return at once; the outcome goes to a callback when an answer comes, or with 408
  ``command.timeout`` (naming an invalid answer, if one came) when the caller calls :meth:`~LiveRouter.
  expire` at its deadline. A pending request is a small record, not a task: a WebSocket session keeps one
  heap of deadlines for all its requests, and :meth:`~LiveRouter.command` / :meth:`~LiveRouter.message`
  wait in the caller's task with a Trio cancel scope (a heap in the run loop). Nothing runs until a
  deadline passes. As in Ditto, the caller waits for the timeout even when no device is connected. At most
  ``max_pending`` requests wait at once; more are 429.
* **On the way back** a live retrieve's value is reduced to what the caller may READ. With
  ``update_twin`` (Ditto's ``UpdateTwinWithLiveResponse``), a successful live retrieve's value is also
  written into the twin at the command's path, as the caller (who then needs WRITE there); a failure is
  logged and does not change the live answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, Protocol

import orjson
import trio

from edgetwin import rql
from edgetwin.core.commands import DeleteThing, MergeThing, ModifyThing, RetrieveThing
from edgetwin.core.enforcement import not_modifiable
from edgetwin.errors import Conflict, EdgeTwinError, PolicyDenied, RequestTimeout
from edgetwin.protocol.live import answer_error, answer_problem, message_path
from edgetwin.twin import things as resources
from edgetwin.twin.ids import name_of, namespace_of
from edgetwin.twin.pointer import MISSING, format_pointer, parse_pointer

if TYPE_CHECKING:
    from edgetwin.core.commands import AuthContext, SendMessage
    from edgetwin.core.service import TwinService, TwinSnapshot
    from edgetwin.protocol.envelope import Envelope
    from edgetwin.twin.pointer import Json, Missing, Pointer
    from edgetwin.twin.policy import Enforcer

__all__ = [
    "STREAMS",
    "LiveAnswer",
    "LiveFilter",
    "LiveRouter",
    "LiveSignal",
    "LiveTicket",
    "OnDone",
    "Receiver",
    "Stream",
]

logger = logging.getLogger(__name__)

Stream = Literal["live-commands", "live-events", "messages"]
STREAMS: Final[tuple[Stream, ...]] = ("live-commands", "live-events", "messages")

LiveCommand = RetrieveThing | ModifyThing | MergeThing | DeleteThing


@dataclass(frozen=True, slots=True)
class LiveFilter:
    """What a receiver asked for. ``thing_id`` and ``path_prefix`` narrow a message SSE stream to one thing
    and one message path (``("inbox", "messages")``, or with a subject)."""

    namespaces: frozenset[str] | None = None
    filter: rql.Node | None = None
    thing_id: str | None = None
    path_prefix: Pointer | None = None


@dataclass(frozen=True, slots=True)
class LiveSignal:
    """A live command, live event or message on its way to the receivers.

    Attributes:
        stream: which receivers it is for.
        thing_id: the thing.
        path: the resource path (``thing:`` for commands and events, ``message:`` for messages).
        envelope: the Ditto Protocol envelope.
        frame: ``envelope`` as JSON text, encoded once for every receiver.
    """

    stream: Stream
    thing_id: str
    path: Pointer
    envelope: Envelope
    frame: str


class Receiver(Protocol):
    """A session that receives live signals."""

    @property
    def auth(self) -> AuthContext:
        """Who the session is (checked against the thing's policy for every signal)."""
        ...

    def deliver(self, signal: LiveSignal) -> None:
        """Take ``signal`` without blocking."""
        ...


@dataclass(frozen=True, slots=True)
class LiveAnswer:
    """A valid answer to a live request.

    Attributes:
        envelope: the answer as it came, with ``value`` reduced to what the caller may READ.
        status: the answer's status.
        value: its (filtered) value; :data:`~edgetwin.twin.pointer.MISSING` for none.
        content_type: its ``content-type`` header, if any.
    """

    envelope: Envelope
    status: int
    value: Json | Missing
    content_type: str | None


OnDone = Callable[[LiveAnswer | EdgeTwinError], None]


@dataclass(slots=True, eq=False)
class LiveTicket:
    """A live request waiting for its answer (:meth:`LiveRouter.start_command`)."""

    correlation_id: str
    request: Envelope
    on_done: OnDone
    finish: Callable[[Envelope], LiveAnswer]
    recipients: set[int] = field(default_factory=set)
    problem: str | None = None


@dataclass(slots=True, eq=False)
class _Waiter:
    """Where an awaiting caller's outcome lands."""

    event: trio.Event = field(default_factory=trio.Event)
    outcome: LiveAnswer | EdgeTwinError | None = None

    def set(self, outcome: LiveAnswer | EdgeTwinError) -> None:
        self.outcome = outcome
        self.event.set()


class LiveRouter:
    """Routes live signals to receivers and answers back to the waiting callers.

    Args:
        service: the twin service (the thing, its policy, conditions, and the twin update).
        max_pending: live requests that may wait for an answer at once (``live.max_pending``).
        update_twin: write successful live retrieve values into the twin by default
            (``live.update_twin_with_live_response``; the ``update-twin-with-live-response`` header overrides).
    """

    def __init__(self, service: TwinService, *, max_pending: int = 10_000, update_twin: bool = False) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self._service = service
        self._max_pending = max_pending
        self.update_twin = update_twin
        self._receivers: dict[Stream, dict[Receiver, LiveFilter]] = {stream: {} for stream in STREAMS}
        self._pending: dict[str, LiveTicket] = {}
        self.delivered = 0
        self.answered = 0
        self.dropped_answers = 0
        self.timeouts = 0

    # ------------------------------------------------------------- receivers

    def attach(self, receiver: Receiver, stream: Stream, live_filter: LiveFilter | None = None) -> None:
        """Start (or re-filter) ``receiver``'s ``stream``."""
        self._receivers[stream][receiver] = live_filter if live_filter is not None else LiveFilter()

    def detach(self, receiver: Receiver, stream: Stream | None = None) -> None:
        """Stop ``receiver``'s ``stream`` (every stream when ``None``)."""
        for name in STREAMS if stream is None else (stream,):
            self._receivers[name].pop(receiver, None)

    def receivers(self, stream: Stream) -> int:
        """How many receivers ``stream`` has."""
        return len(self._receivers[stream])

    @property
    def pending(self) -> int:
        """How many live requests are waiting for an answer."""
        return len(self._pending)

    # ------------------------------------------------------------- requests

    def condition_holds(self, thing_id: str, condition: str, auth: AuthContext) -> bool:
        """The smart channel: whether ``live-channel-condition`` holds on the twin (ditto.md §1.10).

        Raises:
            NotFound: no such thing, or the caller may not READ it.
            InvalidInput: ``things:condition.invalid``.
            PreconditionFailed: the caller may not READ the condition's fields.
        """
        snapshot = self._snapshot(thing_id)
        enforcer = self._service.enforcer(snapshot, auth)
        if enforcer is None or not enforcer.partial("thing", (), "READ"):
            raise resources.not_found(snapshot.thing_id, ())
        return self._service.live_condition_holds(snapshot, condition, enforcer)

    def start_command(
        self,
        cmd: LiveCommand,
        envelope: Envelope,
        auth: AuthContext,
        *,
        on_done: OnDone,
        response_required: bool = True,
        origin: Receiver | None = None,
    ) -> LiveTicket | None:
        """Check and deliver a live command; its outcome will go to ``on_done`` (without waiting here).

        The caller owns the deadline: it calls :meth:`expire` when it passes (``on_done`` then gets the 408),
        or :meth:`cancel` when it no longer waits. ``on_done`` runs in the context of whoever answers and
        must not block.

        Args:
            cmd: the command (for the permission checks and the READ filter of the answer).
            envelope: what the devices receive (``protocol.live_command_envelope``, or a client's own).
            auth: the caller.
            on_done: gets the :class:`LiveAnswer` (its value filtered to what the caller may READ), or the
                error: the device's error (its status and code) or the 408 from :meth:`expire`.
            response_required: ``False``: deliver only, return ``None``.
            origin: the sending session (not delivered back to it).

        Returns:
            The pending request, or ``None`` when no response was required.

        Raises:
            NotFound: no such thing, or the caller may not see it.
            PolicyDenied: the caller may not modify what the command modifies.
            PreconditionFailed / InvalidInput: the ``condition`` did not hold / is malformed.
            Conflict: a request with this correlation-id is already pending.
            EdgeTwinError: 429 ``too.many.requests`` when ``max_pending`` requests wait already.
        """
        snapshot = self._snapshot(cmd.thing_id)
        enforcer = self._service.enforcer(snapshot, auth)
        _check_command(snapshot, enforcer, cmd)
        assert enforcer is not None  # _check_command refuses a missing enforcer
        if cmd.preconditions.condition is not None:
            self._service.check_condition(snapshot, cmd.preconditions.condition, enforcer)

        def finish(answer: Envelope) -> LiveAnswer:
            value = answer.value
            if isinstance(cmd, RetrieveThing) and value is not MISSING:
                value = _readable(enforcer, cmd, value)
            return _answer(answer, value)

        return self._start(
            "live-commands", snapshot, cmd.path, "thing", envelope, response_required, origin, on_done, finish
        )

    def start_message(
        self,
        message: SendMessage,
        envelope: Envelope,
        auth: AuthContext,
        *,
        on_done: OnDone,
        response_required: bool = True,
        origin: Receiver | None = None,
    ) -> LiveTicket | None:
        """Check and deliver a message (ditto.md §5); as :meth:`start_command`.

        Raises:
            NotFound: no such thing, or the caller may see nothing of it.
            PolicyDenied: ``messages:send.notallowed`` without WRITE on the message resource.
            PreconditionFailed / InvalidInput: the ``condition`` did not hold / is malformed.
            Conflict, EdgeTwinError: as for :meth:`start_command`.
        """
        snapshot = self._snapshot(message.thing_id)
        path = message_path(message)
        if not message.claim:
            enforcer = self._service.enforcer(snapshot, auth)
            if enforcer is None or not enforcer.unrestricted("message", path, "WRITE"):
                if enforcer is None or not (
                    enforcer.partial("thing", (), "READ") or enforcer.partial("message", (), "WRITE")
                ):
                    raise resources.not_found(snapshot.thing_id, ())
                raise PolicyDenied(
                    f"You are not allowed to send messages with subject '{message.subject}' to the Thing with"
                    f" ID '{snapshot.thing_id}'.",
                    description="Check the WRITE permission on the 'message:' resource in the Thing's policy.",
                    error_code="messages:send.notallowed",
                )
            if message.preconditions.condition is not None:
                self._service.check_condition(snapshot, message.preconditions.condition, enforcer)
        return self._start(
            "messages", snapshot, path, "message", envelope, response_required, origin, on_done, _plain_answer
        )

    async def command(
        self,
        cmd: LiveCommand,
        envelope: Envelope,
        auth: AuthContext,
        *,
        timeout_s: float,
        response_required: bool = True,
        origin: Receiver | None = None,
        update_twin: bool | None = None,
    ) -> LiveAnswer | None:
        """Send a live command and wait up to ``timeout_s`` for the first valid answer.

        Returns:
            The answer, or ``None`` when no response was required.

        Raises:
            RequestTimeout: no valid answer in time (408 ``command.timeout``).
            EdgeTwinError: the device's error; and what :meth:`start_command` raises.
        """
        waiter = _Waiter()
        ticket = self.start_command(
            cmd, envelope, auth, on_done=waiter.set, response_required=response_required, origin=origin
        )
        if ticket is None:
            return None
        answer = await self._wait(ticket, waiter, timeout_s)
        if isinstance(cmd, RetrieveThing) and (update_twin if update_twin is not None else self.update_twin):
            await self.update_twin_with(cmd, answer, auth)
        return answer

    async def message(
        self,
        message: SendMessage,
        envelope: Envelope,
        auth: AuthContext,
        *,
        timeout_s: float,
        response_required: bool = True,
        origin: Receiver | None = None,
    ) -> LiveAnswer | None:
        """Send a message and wait up to ``timeout_s`` for the first answer (:meth:`start_message`)."""
        waiter = _Waiter()
        ticket = self.start_message(
            message, envelope, auth, on_done=waiter.set, response_required=response_required, origin=origin
        )
        if ticket is None:
            return None
        return await self._wait(ticket, waiter, timeout_s)

    async def _wait(self, ticket: LiveTicket, waiter: _Waiter, timeout_s: float) -> LiveAnswer:
        try:
            with trio.move_on_after(timeout_s):
                await waiter.event.wait()
            self.expire(ticket)  # a no-op when it was answered
        finally:
            self.cancel(ticket)  # the caller went away (cancelled): nothing is left behind
        outcome = waiter.outcome
        if isinstance(outcome, EdgeTwinError):
            raise outcome
        assert outcome is not None
        return outcome

    def expire(self, ticket: LiveTicket) -> None:
        """The ticket's deadline passed: unless it was answered, ``on_done`` gets the 408 now."""
        if self._pending.get(ticket.correlation_id) is not ticket:
            return
        del self._pending[ticket.correlation_id]
        self.timeouts += 1
        ticket.on_done(_timeout(ticket.problem))

    def cancel(self, ticket: LiveTicket) -> None:
        """Nobody waits for the ticket any more (its caller left): forget it; ``on_done`` is not called."""
        if self._pending.get(ticket.correlation_id) is ticket:
            del self._pending[ticket.correlation_id]

    async def update_twin_with(self, cmd: RetrieveThing, answer: LiveAnswer, auth: AuthContext) -> None:
        """Ditto's ``UpdateTwinWithLiveResponse``: write a live retrieve's value into the twin, as ``auth``.

        A field selection is not written (it is not the resource); a failure is logged, not raised.
        """
        value = answer.envelope.value
        if answer.status != 200 or value is MISSING:
            return
        if cmd.fields is not None:
            logger.info("live answer of %s not written to the twin: it was a field selection", cmd.thing_id)
            return
        try:
            await self._service.modify(ModifyThing(cmd.thing_id, cmd.path, value), auth)
        except EdgeTwinError as err:
            logger.warning(
                "live answer for %s at %s not written to the twin: %s",
                cmd.thing_id,
                format_pointer(cmd.path),
                err.message,
            )

    def event(self, envelope: Envelope, auth: AuthContext, *, origin: Receiver | None = None) -> None:
        """Forward a live event a device sent (``…/things/live/events/<action>``); it is not persisted.

        Raises:
            NotFound: no such thing, or the sender may not see it.
            PolicyDenied: ``things:event.notallowed`` without WRITE at the event's path.
        """
        thing_id = envelope.topic.entity_id or ""
        path = parse_pointer(envelope.path)
        snapshot = self._snapshot(thing_id)
        enforcer = self._service.enforcer(snapshot, auth)
        if enforcer is None or not enforcer.unrestricted("thing", path, "WRITE"):
            if enforcer is None or not enforcer.partial("thing", (), "READ"):
                raise resources.not_found(snapshot.thing_id, ())
            raise PolicyDenied(
                f"You are not allowed to send live events for the Thing with ID '{snapshot.thing_id}' at "
                f"'{format_pointer(path)}'.",
                description="Check the WRITE permission on the Thing's policy.",
                error_code="things:event.notallowed",
            )
        self._deliver(_signal("live-events", snapshot.thing_id, path, envelope), snapshot, "thing", origin)

    def answer(self, envelope: Envelope, responder: Receiver) -> str | None:
        """Hand a device's answer to the request waiting for it.

        Returns:
            ``None`` when it answered a request; else why it was dropped (also logged).
        """
        correlation_id = envelope.correlation_id
        pending = None if correlation_id is None else self._pending.get(correlation_id)
        if pending is None:
            self.dropped_answers += 1
            logger.info(
                "dropped a live answer no request waits for (late, duplicate or unknown): correlation-id %r",
                correlation_id,
            )
            return (
                "No live request waits for this answer: it timed out, was answered already, or never existed."
            )
        if id(responder) not in pending.recipients:
            self.dropped_answers += 1
            logger.warning(
                "dropped a live answer from %s, which did not receive the request %r",
                responder.auth.originator,
                correlation_id,
            )
            return "This session did not receive the request it answers."
        problem = answer_problem(pending.request, envelope)
        if problem is not None:
            self.dropped_answers += 1
            pending.problem = problem
            logger.info("dropped an invalid live answer to %r: %s", correlation_id, problem)
            return problem
        assert correlation_id is not None
        del self._pending[correlation_id]
        self.answered += 1
        errored = envelope.topic.criterion == "errors"
        pending.on_done(answer_error(envelope) if errored else pending.finish(envelope))
        return None

    # -------------------------------------------------------------- helpers

    def _snapshot(self, thing_id: str) -> TwinSnapshot:
        snapshot = self._service.snapshot(thing_id)
        if snapshot is None:
            raise resources.not_found(thing_id, ())
        return snapshot

    def _start(
        self,
        stream: Stream,
        snapshot: TwinSnapshot,
        path: Pointer,
        resource_type: str,
        envelope: Envelope,
        response_required: bool,
        origin: Receiver | None,
        on_done: OnDone,
        finish: Callable[[Envelope], LiveAnswer],
    ) -> LiveTicket | None:
        signal = _signal(stream, snapshot.thing_id, path, envelope)
        if not response_required:
            self._deliver(signal, snapshot, resource_type, origin)
            return None
        correlation_id = envelope.correlation_id
        assert correlation_id is not None, "the adapter sets a correlation-id"
        if correlation_id in self._pending:
            raise Conflict(
                f"A live request with the correlation-id '{correlation_id}' is already waiting for its answer.",
                description="Use a new correlation-id for every live command and message.",
                error_code="live.correlation.conflict",
            )
        if len(self._pending) >= self._max_pending:
            raise EdgeTwinError(
                f"{self._max_pending} live requests are already waiting for answers.",
                description="Try again later, or use shorter timeouts.",
                error_code="too.many.requests",
                status=429,
            )
        ticket = LiveTicket(correlation_id, envelope, on_done, finish)
        self._pending[correlation_id] = ticket
        ticket.recipients = self._deliver(signal, snapshot, resource_type, origin)
        return ticket

    def _deliver(
        self, signal: LiveSignal, snapshot: TwinSnapshot, resource_type: str, origin: Receiver | None
    ) -> set[int]:
        recipients: set[int] = set()
        namespace = namespace_of(snapshot.thing_id)
        for receiver, wanted in list(self._receivers[signal.stream].items()):
            if receiver is origin:
                continue
            if wanted.thing_id is not None and wanted.thing_id != snapshot.thing_id:
                continue
            prefix = wanted.path_prefix
            if prefix is not None and signal.path[: len(prefix)] != prefix:
                continue
            if wanted.namespaces is not None and namespace not in wanted.namespaces:
                continue
            enforcer = self._service.enforcer(snapshot, receiver.auth)
            if enforcer is None or not enforcer.partial(resource_type, signal.path, "READ"):
                continue
            if wanted.filter is not None and not self._matches(wanted.filter, snapshot, enforcer, signal):
                continue
            receiver.deliver(signal)
            recipients.add(id(receiver))
        self.delivered += len(recipients)
        return recipients

    def _matches(
        self, node: rql.Node, snapshot: TwinSnapshot, enforcer: Enforcer, signal: LiveSignal
    ) -> bool:
        topic = signal.envelope.topic
        placeholders: dict[str, Json] = {
            "topic:namespace": topic.namespace,
            "topic:entityName": topic.name,
            "topic:group": topic.group,
            "topic:channel": topic.channel,
            "topic:criterion": topic.criterion,
            "topic:action": topic.action,
            "topic:subject": topic.action if topic.criterion == "messages" else None,
            "entity:id": snapshot.thing_id,
            "entity:namespace": namespace_of(snapshot.thing_id),
            "entity:name": name_of(snapshot.thing_id),
            "resource:type": "message" if signal.stream == "messages" else "thing",
            "resource:path": format_pointer(signal.path),
        }
        now = str(snapshot.stored.get("_modified", ""))
        try:
            return rql.evaluate(
                node, self._service.view(snapshot, enforcer), now=now, placeholders=placeholders
            )
        except ValueError:
            return False


def _signal(stream: Stream, thing_id: str, path: Pointer, envelope: Envelope) -> LiveSignal:
    return LiveSignal(stream, thing_id, path, envelope, orjson.dumps(envelope.to_json()).decode())


def _check_command(snapshot: TwinSnapshot, enforcer: Enforcer | None, cmd: LiveCommand) -> None:
    """Who may send a live command: the twin's rules (ditto.md §3.3, step 4)."""
    thing_id = snapshot.thing_id
    if enforcer is None:
        raise resources.not_found(thing_id, ())
    if isinstance(cmd, RetrieveThing):
        if not enforcer.partial("thing", cmd.path, "READ"):
            raise resources.not_found(thing_id, cmd.path if enforcer.partial("thing", (), "READ") else ())
        return
    if not (enforcer.partial("thing", (), "READ") or enforcer.partial("thing", (), "WRITE")):
        raise resources.not_found(thing_id, ())
    allowed = (
        enforcer.may_merge(cmd.path, cmd.patch)
        if isinstance(cmd, MergeThing)
        else enforcer.unrestricted("thing", cmd.path, "WRITE")
    )
    if not allowed:
        if isinstance(cmd, DeleteThing):
            raise not_modifiable(thing_id, cmd.path, delete=True)
        raise not_modifiable(thing_id, cmd.path)


def _readable(enforcer: Enforcer, cmd: RetrieveThing, value: Json) -> Json | Missing:
    """A live retrieve's value, reduced to what the caller may READ (``thingId`` always kept)."""
    if cmd.path:
        return enforcer.readable_view(value, at=cmd.path)
    view = enforcer.readable_view(value)
    if view is value or not isinstance(value, dict):
        return view
    out: dict[str, Json] = {"thingId": value["thingId"]} if "thingId" in value else {}
    if isinstance(view, dict):
        out.update(view)
    return out


def _plain_answer(envelope: Envelope) -> LiveAnswer:
    return _answer(envelope, envelope.value)


def _answer(envelope: Envelope, value: Json | Missing) -> LiveAnswer:
    content_type = envelope.header("content-type")
    status = envelope.status if envelope.status is not None else 200
    return LiveAnswer(envelope, status, value, content_type if isinstance(content_type, str) else None)


def _timeout(problem: str | None) -> RequestTimeout:
    message = "Received no appropriate live response within the specified timeout."
    if problem is not None:
        message += f" An invalid response was received, though: {problem}"
    return RequestTimeout(
        message,
        description="Make sure the device is connected and answers in time, or send a larger 'timeout'.",
        error_code="command.timeout",
    )
