"""The mqtt room: the embedded broker (issue 7).

Built so far: the pure parts. ``codec`` (MQTT 3.1.1 and 5.0 packets, sans-IO: decode/encode, one
``DecodeError`` carrying the reason code per malformed case, ``Incomplete`` for every prefix), ``session``
(the per-client state machine: packet ids, inflight window, bounded queues, QoS 1/2 flows, topic aliases,
serialisable state), ``topics`` (topic names/filters, matching, topic permissions) and ``trie`` (the
subscription trie). ``broker`` is the listener, which answers every CONNECT with "server unavailable" until
the Trio layer that joins these parts exists.
"""

from __future__ import annotations
