"""The ASGI entry point: a thin front that answers ``/health`` itself, routes the Things API and the
messaging API (``/data/v0/...``) to our own routers, and hands the rest to Quart.

Why a front: measured with wrk at 32 connections, a Quart-Trio route costs about a quarter of the
throughput of a bare ASGI app on the same Hypercorn worker (request context, routing, two tasks per
request). ``/health`` is what systemd, load balancers and monitoring poll; it must stay cheap and must
answer even when the framework is busy, so it is served here, before Quart. Everything else, including
the ASGI lifespan, goes to the Quart-Trio app unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from edgetwin.api.messaging import handles as messaging_handles
from edgetwin.api.sse import handles as sse_handles
from edgetwin.api.things import handles as things_handles
from edgetwin.api.ws import WS_PATH

if TYPE_CHECKING:
    from edgetwin.api.messaging import MessagingApi
    from edgetwin.api.sse import SseApi
    from edgetwin.api.things import ThingsApi
    from edgetwin.api.ws import WebSocketApi
    from edgetwin.core.health import Health

__all__ = ["EdgeAsgi"]

Scope = dict[str, Any]
Receive = Any
Send = Any

_JSON_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


class EdgeAsgi:
    """The ASGI application Hypercorn serves.

    Args:
        app: the Quart-Trio application for every other route.
        health: the service states that ``GET /health`` reports.
        things: the Things and search API (our own thin router, for the same reason as ``/health``).
        sse: thing change streams (``Accept: text/event-stream``; long-lived, so not Quart's either).
        ws: ``/ws/2`` Ditto Protocol sessions.
        messaging: the DSH messaging API, every path under ``/data/v0/`` (the sleepy devices' short
            connections: no framework on their path).
    """

    def __init__(
        self,
        app: Any,
        health: Health,
        things: ThingsApi | None = None,
        sse: SseApi | None = None,
        ws: WebSocketApi | None = None,
        messaging: MessagingApi | None = None,
    ) -> None:
        self._app = app
        self._health = health
        self._things = things
        self._sse = sse
        self._ws = ws
        self._messaging = messaging

    def close_streams(self) -> None:
        """End every SSE stream and WebSocket session (shutdown), so that draining does not wait for them."""
        if self._sse is not None:
            self._sse.close()
        if self._ws is not None:
            self._ws.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == "/health":
                await self._health_response(scope, send)
                return
            if self._messaging is not None and messaging_handles(path):
                await self._messaging(scope, receive, send)
                return
            if self._sse is not None and sse_handles(scope["method"], path, scope["headers"]):
                await self._sse(scope, receive, send)
                return
            if self._things is not None and things_handles(path, scope["headers"]):
                await self._things(scope, receive, send)
                return
        elif scope["type"] == "websocket" and self._ws is not None and scope["path"] == WS_PATH:
            await self._ws(scope, receive, send)
            return
        await self._app(scope, receive, send)

    async def _health_response(self, scope: Scope, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            body = orjson.dumps(
                {"status": 405, "error": "method.notallowed", "message": "Use GET or HEAD on /health."}
            )
            headers = [*_JSON_HEADERS, (b"allow", b"GET, HEAD")]
            await _respond(send, 405, headers, body)
            return
        snapshot = self._health.snapshot()
        body = orjson.dumps(snapshot.to_json())
        status = 200 if snapshot.status == "UP" else 503
        await _respond(send, status, _JSON_HEADERS, b"" if scope["method"] == "HEAD" else body, len(body))


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes, length: int | None = None
) -> None:
    length = len(body) if length is None else length
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(length).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
