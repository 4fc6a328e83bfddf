"""The protocol room: Ditto Protocol envelopes <-> edgetwin's core commands, results and events.

Contract:

* **Pure.** Standard library plus ``edgetwin.core.commands``, ``edgetwin.core.events``, ``edgetwin.twin``
  and ``edgetwin.errors`` only: no trio, no orjson, no clock, no randomness. It takes and returns *parsed*
  JSON values; the WebSocket, MQTT and SSE adapters decode and encode text at their edge.
* ``envelope``: :class:`Envelope` and :class:`Topic` (ditto.md §7.3). :func:`parse_envelope` validates a
  decoded message and raises :class:`~edgetwin.errors.InvalidInput` with Ditto's codes (``json.invalid``,
  ``json.field.missing``, ``protocoladapter:unknown.topicpath``, ``things:id.invalid``,
  ``policies:id.invalid``, ``json.pointer.invalid``); :meth:`Envelope.to_json` inverts it.
* ``things``: :func:`to_command` maps twin commands on things and policies to core commands;
  :func:`response_envelope`, :func:`error_envelope` and :func:`event_envelope` render the answers and the
  events; :func:`translate_error` turns a ``create`` of an existing entity into Ditto's 409.

How an adapter uses it, per incoming frame::

    try:
        request = with_correlation_id(parse_envelope(obj), new_id)
        mapped = to_command(request)              # live/messages/acks: route the envelope instead
        result = await service.<method>(mapped.command, auth)
        reply = response_envelope(request, result)
    except EdgeTwinError as err:
        reply = error_envelope(request_or_none, translate_error(mapped, err) if mapped else err)
    if mapped.response_required: send(reply)

* ``live`` (:mod:`edgetwin.protocol.live`): the live commands and messages devices receive, whether an
  envelope answers one (``answer_problem``), and Ditto's durations. ``to_command(envelope, channel="live")``
  maps a live thing command; live events and messages are forwarded as envelopes.

Not supported: search over the protocol (``_/_/things/twin/search/...``: refused with
``protocoladapter:unknown.topicpath``), ``migrate``, ``connections`` topics, policy announcements and
acknowledgements other than the built-in ``live-response``.
"""

from __future__ import annotations

from edgetwin.protocol.envelope import (
    COMMAND_ACTIONS,
    EVENT_ACTIONS,
    PLACEHOLDER,
    Envelope,
    Topic,
    parse_envelope,
    parse_topic,
)
from edgetwin.protocol.things import (
    MERGE_PATCH_CONTENT_TYPE,
    UNKNOWN_ERROR_TOPIC,
    ProtocolCommand,
    error_envelope,
    event_envelope,
    response_envelope,
    to_command,
    translate_error,
    with_correlation_id,
)

__all__ = [
    "COMMAND_ACTIONS",
    "EVENT_ACTIONS",
    "MERGE_PATCH_CONTENT_TYPE",
    "PLACEHOLDER",
    "UNKNOWN_ERROR_TOPIC",
    "Envelope",
    "ProtocolCommand",
    "Topic",
    "error_envelope",
    "event_envelope",
    "parse_envelope",
    "parse_topic",
    "response_envelope",
    "to_command",
    "translate_error",
    "with_correlation_id",
]
