"""Hypercorn's trio worker behind our own accept loop, for the connection set-up rule.

Why not ``hypercorn.trio.serve``: Hypercorn closes a connection that stays silent past its keep-alive
timeout without a word, and it has no deadline at all for a request head that trickles in (slowloris).
DESIGN asks for ``408 Request Timeout`` with ``Connection: close`` to any connection that has not delivered
a complete request head within ``http.connection_setup_timeout_s`` of connection set-up. So this module
accepts the connections itself, does the TLS handshake and reads up to the end of the first request head
(``CRLF CRLF``) under that deadline, then hands the connection, with the bytes already read replayed, to
Hypercorn's own ``TCPServer``. Everything after the first head (keep-alive, HTTP/2, WebSocket upgrade) is
Hypercorn's. This uses Hypercorn internals (``TCPServer``, ``Lifespan``, ``WorkerContext``) as its own
``worker_serve`` does; pyproject pins the minor version.
"""

from __future__ import annotations

import email.utils
import logging
import math
import ssl
import typing
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import orjson
import trio
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import wrap_app

from edgetwin.config import HttpSettings, hypercorn_config, parse_bind
from edgetwin.errors import EdgeTwinError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["serve_http"]

logger = logging.getLogger(__name__)

# A head larger than this is Hypercorn's to refuse (it answers 400/431); we stop buffering.
MAX_HEAD_BYTES: Final = 64 * 1024
RECEIVE_BYTES: Final = 64 * 1024
# After a 408, read what the client still sends for this long before closing, so that the kernel does not
# answer its unread bytes with a reset that destroys the 408 before the client reads it.
LINGER_S: Final = 1.0


class _ReplayStream(trio.abc.Stream):
    """A stream that first returns bytes already read from ``stream``, then reads from it.

    Sends are bounded by ``send_timeout_s``: Hypercorn shields every ``send_all`` from cancellation, so a
    peer that never reads would hold its connection (and the server's shutdown) forever. After the timeout
    the connection is aborted and the send fails as a broken peer, which Hypercorn handles as a close.
    """

    def __init__(self, stream: Any, prefix: bytes, send_timeout_s: float = math.inf) -> None:
        self._stream = stream
        self._prefix = prefix
        self._send_timeout_s = send_timeout_s

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            await trio.lowlevel.checkpoint()
            n = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:n], self._prefix[n:]
            return data
        return bytes(await self._stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with trio.move_on_after(self._send_timeout_s) as scope:
            await self._stream.send_all(data)
        if scope.cancelled_caught:
            logger.info("a peer took nothing for %gs: connection closed", self._send_timeout_s)
            await trio.aclose_forcefully(self._stream)
            raise trio.BrokenResourceError("the peer stopped reading")

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        # Shielded: Hypercorn closes a `Connection: close` connection from inside the request's task,
        # which Quart-Trio cancels right after the response; unshielded, the checkpoint in send_eof raises
        # Cancelled, aclose is never reached and the connection stays open (seen with plain
        # hypercorn.trio.serve + quart-trio 0.12 too). SSLStream has no send_eof: the AttributeError is
        # what Hypercorn expects then.
        send_eof = self._stream.send_eof
        with trio.CancelScope(shield=True):
            await send_eof()

    async def aclose(self) -> None:
        # Bounded: a TLS close_notify to a peer that does not read must not hold the connection forever
        # (a cancelled aclose still closes the transport).
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + LINGER_S
            await self._stream.aclose()

    @property
    def socket(self) -> trio.socket.SocketType:
        return self._stream.socket  # type: ignore[no-any-return]


class _ReplayTLSStream(_ReplayStream):
    """The TLS variant: Hypercorn sees an SSLStream whose handshake is already done."""

    async def do_handshake(self) -> None:
        await trio.lowlevel.checkpoint()

    def selected_alpn_protocol(self) -> str | None:
        return self._stream.selected_alpn_protocol()  # type: ignore[no-any-return]

    @property
    def transport_stream(self) -> Any:
        return self._stream.transport_stream


def _timeout_response(timeout_s: float) -> bytes:
    body = orjson.dumps(
        {
            "status": 408,
            "error": "request.timeout",
            "message": f"No complete request was received within {timeout_s:g} s of connection set-up.",
            "description": "Send the request line and all headers promptly after connecting.",
        }
    )
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        f"Date: {email.utils.formatdate(usegmt=True)}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


async def _read_head(stream: trio.abc.Stream) -> bytes | None:
    """Read until the end of the first request head; ``None`` if the peer closed first."""
    buf = bytearray()
    while True:
        data = await stream.receive_some(RECEIVE_BYTES)
        if not data:
            return None
        searched_from = max(0, len(buf) - 3)
        buf += data
        if b"\r\n\r\n" in buf[searched_from:] or len(buf) >= MAX_HEAD_BYTES:
            return bytes(buf)


def _with_host(buffered: bytes) -> bytes:
    """The first request head with an empty ``Host`` added when an HTTP/1.1 request has none.

    Hypercorn's parser (h11) answers 400 to an HTTP/1.1 request without ``Host`` (RFC 9112 §3.2), but the
    DSH Messaging API's own examples send none, and sleepy devices written against it must work unchanged;
    an empty ``Host`` is what RFC 9112 prescribes for a target without an authority. Bytes after the head
    (a body) are kept as they are.
    """
    end = buffered.find(b"\r\n\r\n")
    if end < 0:
        return buffered
    line_end = buffered.find(b"\r\n")
    if not buffered[:line_end].endswith(b" HTTP/1.1"):
        return buffered
    for line in buffered[line_end + 2 : end].split(b"\r\n"):
        if line[:5].lower() == b"host:":
            return buffered
    return buffered[: line_end + 2] + b"Host: \r\n" + buffered[line_end + 2 :]


async def _refuse_slow(stream: trio.abc.Stream, timeout_s: float) -> None:
    with trio.move_on_after(LINGER_S):
        await stream.send_all(_timeout_response(timeout_s))
        if isinstance(stream, trio.SocketStream):
            await stream.send_eof()
        while await stream.receive_some(RECEIVE_BYTES):
            pass


class _Server:
    def __init__(self, app: Any, config: Any, http: HttpSettings, state: dict[str, Any]) -> None:
        self.app = app
        self.config = config
        self.http = http
        self.context = WorkerContext(None)
        self.state = state

    async def handle(self, stream: Any) -> None:
        """One connection: enforce the set-up deadline, then let Hypercorn serve it."""
        timeout = self.http.connection_setup_timeout_s
        handed_over = False
        try:
            head: bytes | None = None
            with trio.move_on_after(timeout) as setup:
                if isinstance(stream, trio.SSLStream):
                    await stream.do_handshake()
                head = await _read_head(stream)
            if setup.cancelled_caught:
                logger.debug("connection set-up timed out after %gs: 408", timeout)
                await _refuse_slow(stream, timeout)
                return
            if head is None:
                return
            wrapper_cls = _ReplayTLSStream if isinstance(stream, trio.SSLStream) else _ReplayStream
            handed_over = True
            await TCPServer(
                self.app,
                self.config,
                self.context,
                ConnectionState(self.state.copy()),
                typing.cast("Any", wrapper_cls(stream, _with_host(head), self.http.send_timeout_s)),
            )
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
            pass  # the peer went away; nothing to answer
        except Exception:
            # serve_listeners crashes the server on a handler's exception (its docstring): contain it.
            logger.exception("HTTP connection failed")
        finally:
            if not handed_over:
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(stream)


async def _open_listeners(http: HttpSettings, config: Any) -> list[trio.abc.Listener[Any]]:
    host, port = parse_bind(http.bind, key="http.bind")
    try:
        listeners: list[Any] = await trio.open_tcp_listeners(port, host=host)
    except OSError as err:
        raise EdgeTwinError(f"http.bind: cannot listen on {http.bind}: {err.strerror or err}") from None
    if http.tls_cert_file:
        try:
            context = config.create_ssl_context()
        except (OSError, ssl.SSLError) as err:
            raise EdgeTwinError(
                f"http.tls_cert_file: cannot load the TLS certificate or key: {err}"
            ) from None
        listeners = [trio.SSLListener(listener, context, https_compatible=True) for listener in listeners]
    return listeners


def _bound(listener: Any) -> str:
    """``host:port`` of a SocketListener, or of the SocketListener under an SSLListener."""
    sock = getattr(listener, "transport_listener", listener).socket
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve_http(
    asgi_app: Any,
    http: HttpSettings,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``asgi_app`` on ``http.bind`` until ``shutdown_trigger`` returns.

    Reports the bound addresses (``host:port``, the real port when 0 was asked for) through
    ``task_status`` once listening. On shutdown it stops accepting, closes idle connections and gives
    in-flight requests ``http.shutdown_grace_s`` to finish.

    Raises:
        EdgeTwinError: the address cannot be bound (naming ``http.bind``) or the TLS files do not load.
    """
    config = hypercorn_config(http)
    app = wrap_app(asgi_app, config.wsgi_max_body_size, None)
    lifespan_state: dict[str, Any] = {}
    lifespan = Lifespan(app, config, lifespan_state)
    listeners = await _open_listeners(http, config)
    server = _Server(app, config, http, lifespan_state)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as accepting:
                accepting.start_soon(
                    partial(trio.serve_listeners, server.handle, listeners, handler_nursery=connections)
                )
                task_status.started([_bound(listener) for listener in listeners])
                await shutdown_trigger()
                accepting.cancel_scope.cancel()
            # Idle keep-alive connections close now; in-flight requests get the grace period.
            await server.context.terminated.set()
            connections.cancel_scope.deadline = trio.current_time() + http.shutdown_grace_s
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
