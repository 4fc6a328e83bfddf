"""Builds the Quart-Trio application: routes of every adapter, and error handling in one place."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from edgetwin.api.asgi import EdgeAsgi
from edgetwin.api.auth import Authenticator
from edgetwin.api.live import LiveHttp
from edgetwin.api.messaging import MessagingApi
from edgetwin.api.render import error_response
from edgetwin.api.sse import SseApi
from edgetwin.api.things import ThingsApi
from edgetwin.api.ws import WebSocketApi
from edgetwin.config import AuthSettings, LiveSettings, MessagingSettings, SseSettings, quart_config
from edgetwin.core.live import LiveRouter
from edgetwin.errors import EdgeTwinError

if TYPE_CHECKING:
    from quart import Response

    from edgetwin.api.messaging import MessagingBroker
    from edgetwin.core.health import Health
    from edgetwin.core.service import TwinService

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


def create_app(
    *,
    health: Health,
    service: TwinService | None = None,
    auth: AuthSettings | None = None,
    sse: SseSettings | None = None,
    live: LiveRouter | None = None,
    live_settings: LiveSettings | None = None,
    authenticator: Authenticator | None = None,
    broker: MessagingBroker | None = None,
    messaging: MessagingSettings | None = None,
) -> EdgeAsgi:
    """The ASGI application served by ``api.server``: the front (``/health``, the Things and messaging APIs)
    before Quart.

    Args:
        health: the service states that ``GET /health`` reports.
        service: the core service behind the Things API (without it only ``/health`` and Quart serve).
        auth: who may authenticate (``[auth]``).
        sse: thing change streams (``[sse]``).
        live: the live router (one is made for ``service`` when omitted).
        live_settings: ``[live]``.
        authenticator: the authenticator shared with the broker (one is made from ``auth`` when omitted).
        broker: the MQTT broker whose retained values the messaging API (``/data/v0/...``) serves; without
            it that API is not served.
        messaging: ``[messaging]`` (streams, payload limit).
    """
    app = QuartTrio("edgetwin")
    app.config.update(quart_config())

    @app.errorhandler(EdgeTwinError)
    async def on_edgetwin_error(err: EdgeTwinError) -> Response:
        return error_response(err)

    @app.errorhandler(HTTPException)
    async def on_http_exception(err: HTTPException) -> Response:
        status = err.code or 500
        code = {404: "resource.notfound", 405: "method.notallowed"}.get(status, "request.invalid")
        return error_response(EdgeTwinError(err.description or err.name, error_code=code, status=status))

    @app.errorhandler(Exception)
    async def on_unexpected(err: Exception) -> Any:
        logger.exception("request failed")
        return error_response(
            EdgeTwinError(
                "An unexpected error occurred; it has been logged.",
                error_code="internalerror",
                status=500,
            )
        )

    things = None
    streams = None
    sessions = None
    messaging_api = None
    if authenticator is None and (service is not None or broker is not None):
        authenticator = Authenticator(auth if auth is not None else AuthSettings())
    if broker is not None and authenticator is not None:
        messaging_api = MessagingApi(
            broker, authenticator, messaging if messaging is not None else MessagingSettings()
        )
    if service is not None and authenticator is not None:
        live_settings = live_settings if live_settings is not None else LiveSettings()
        if live is None:
            live = LiveRouter(
                service,
                max_pending=live_settings.max_pending,
                update_twin=live_settings.update_twin_with_live_response,
            )
        things = ThingsApi(service, authenticator, live=LiveHttp(live, live_settings))
        streams = SseApi(service, authenticator, sse, live=live)
        sessions = WebSocketApi(service, authenticator, live=live, live_settings=live_settings)
    return EdgeAsgi(app, health, things, streams, sessions, messaging_api)
