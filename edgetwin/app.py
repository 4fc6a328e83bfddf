"""The appliance: the root nursery that owns every long-lived task.

Start-up order: open the store, start the single writer, then the MQTT listener and the HTTP server
(each with ``nursery.start``, so each is listening before the next starts and the real ports are known),
then tell systemd ``READY=1``. Shutdown (SIGTERM/SIGINT, or the caller's trigger) runs the other way:
health goes DOWN and systemd hears ``STOPPING=1``; the servers stop accepting and give in-flight requests
``http.shutdown_grace_s``; then the writer commits what was queued and the store closes. The whole
shutdown is capped so that the process exits within a few seconds.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Final

import trio

from edgetwin import __version__
from edgetwin.api.app_factory import create_app
from edgetwin.api.auth import Authenticator
from edgetwin.api.server import serve_http
from edgetwin.core.bus import EventBus
from edgetwin.core.health import Health
from edgetwin.core.live import LiveRouter
from edgetwin.core.mqtt_store import BrokerStore
from edgetwin.core.service import TwinService
from edgetwin.core.writer import StoreWriter
from edgetwin.mqtt.broker import Broker, serve_mqtt
from edgetwin.store import Store
from edgetwin.systemd import Notifier, serve_watchdog, watchdog_interval_s

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from edgetwin.config import Settings

__all__ = ["Ports", "serve"]

logger = logging.getLogger(__name__)

# Beyond http.shutdown_grace_s, what the rest of the shutdown (writer drain, store close) may take.
SHUTDOWN_SLACK_S: Final = 1.5


@dataclass(frozen=True, slots=True)
class Ports:
    """Where the appliance listens (real ports, also when 0 was configured)."""

    http: list[str]
    mqtt: list[str]


async def _wait_for_signal(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            logger.info("received %s: shutting down", signal.Signals(signum).name)
            stop.set()
            return


async def serve(
    settings: Settings,
    *,
    environ: Mapping[str, str] | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[Ports] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the appliance until SIGTERM/SIGINT (or until ``shutdown_trigger`` returns, if given).

    Args:
        settings: the validated configuration.
        environ: the process environment (systemd variables); ``None`` means ``os.environ``.
        shutdown_trigger: when given, shutdown starts when it returns and no signal handler is installed
            (tests and embedding use this).
        task_status: receives the :class:`Ports` once every service is up.

    Raises:
        EdgeTwinError: a service could not start (store unusable, port in use, ...).
    """
    environ = os.environ if environ is None else environ
    health = Health()
    notifier = Notifier.from_environ(environ)
    stop = trio.Event()
    storage = settings.storage
    with Store.open(
        storage.path, map_size_mb=storage.map_size_mb, max_map_size_mb=storage.max_map_size_mb
    ) as store:
        writer = StoreWriter(store, queue_size=storage.write_queue, max_batch=storage.max_batch)
        service = TwinService(
            store,
            writer,
            EventBus(subscriber_buffer=settings.sse.subscriber_buffer),
            journal_max_events=settings.journal.max_events,
            journal_max_age_s=settings.journal.max_age_s,
            journal_max_bytes=settings.journal.max_mb * 1024 * 1024,
        )
        # The stop watcher and the watchdog run until cancelled; their scope is cancelled on the way out so
        # that a failed start-up exits at once instead of waiting for a signal.
        helpers: list[trio.CancelScope] = []
        async with trio.open_nursery() as root:

            def start_helper(fn: Callable[[], Awaitable[object]]) -> None:
                scope = trio.CancelScope()
                helpers.append(scope)
                root.start_soon(_in_scope, scope, fn)

            if shutdown_trigger is None:
                start_helper(partial(_wait_for_signal, stop))
            else:
                start_helper(partial(_set_after, shutdown_trigger, stop))
            health.set("store", "starting")
            await root.start(writer.serve)
            health.set("store", "up")
            try:
                async with trio.open_nursery() as services:
                    health.set("mqtt", "starting")
                    health.set("http", "starting")
                    authenticator = Authenticator(settings.auth)
                    broker = Broker(settings.mqtt, authenticator, BrokerStore(store, writer, clock=time.time))
                    mqtt = await services.start(
                        partial(serve_mqtt, settings.mqtt, shutdown_trigger=stop.wait, broker=broker)
                    )
                    health.set("mqtt", "up")
                    live = LiveRouter(
                        service,
                        max_pending=settings.live.max_pending,
                        update_twin=settings.live.update_twin_with_live_response,
                    )
                    app = create_app(
                        health=health,
                        service=service,
                        auth=settings.auth,
                        sse=settings.sse,
                        live=live,
                        live_settings=settings.live,
                        authenticator=authenticator,
                        broker=broker,
                        messaging=settings.messaging,
                    )
                    http = await services.start(
                        partial(serve_http, app, settings.http, shutdown_trigger=stop.wait)
                    )
                    health.set("http", "up")
                    interval = watchdog_interval_s(environ)
                    if notifier.enabled and interval is not None:
                        start_helper(partial(serve_watchdog, notifier, interval, health))
                    await notifier.notify("READY=1\nSTATUS=serving")
                    logger.info(
                        "edgetwin %s ready: http on %s, mqtt on %s, store in %s",
                        __version__,
                        ", ".join(http),
                        ", ".join(mqtt),
                        store.path,
                    )
                    task_status.started(Ports(http=http, mqtt=mqtt))
                    await stop.wait()
                    health.stopping()
                    app.close_streams()  # SSE streams would otherwise hold the drain to its deadline
                    await notifier.notify("STOPPING=1\nSTATUS=stopping")
                    # The servers drain by themselves; this deadline is only the cap.
                    services.cancel_scope.deadline = (
                        trio.current_time() + settings.http.shutdown_grace_s + 0.5
                    )
            finally:
                for scope in helpers:
                    scope.cancel()
                # After the servers: nothing can submit any more; the writer commits what is queued.
                writer.close()
                root.cancel_scope.deadline = (
                    trio.current_time() + settings.http.shutdown_grace_s + SHUTDOWN_SLACK_S
                )
        logger.info("edgetwin stopped")


async def _in_scope(scope: trio.CancelScope, fn: Callable[[], Awaitable[object]]) -> None:
    with scope:
        await fn()


async def _set_after(trigger: Callable[[], Awaitable[None]], stop: trio.Event) -> None:
    await trigger()
    stop.set()
