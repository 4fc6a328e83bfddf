"""The core room: the one way in for every change.

Every adapter (HTTP, WebSocket, MQTT, messaging, connectors) turns what it receives into a command and
hands it to the command service, which authenticates, enforces the policy, evaluates conditions, applies
the change with the pure ``twin`` functions, persists it through the single store writer, and publishes
the resulting event only after the write is durable. The core knows ``twin``, ``rql`` and ``store``; it
knows nothing of HTTP, MQTT or WebSocket.

Modules: ``writer`` (the single LMDB writer task, group commit), ``health`` (service states behind
``GET /health``), ``passwords`` (scrypt hashes for built-in users).
"""

from __future__ import annotations
