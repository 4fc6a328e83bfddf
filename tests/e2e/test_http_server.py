"""The HTTP server: health, the connection set-up rule (408 and close) and graceful shutdown."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio
import trio.testing

from edgetwin import app
from edgetwin.api.server import _Server
from edgetwin.config import hypercorn_config
from tests.conftest import RunningApp, make_settings


async def test_health_is_up_with_every_service(running: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=running.base_url) as client:
        r = await client.get("/health")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "status": "UP",
        "services": {"store": {"status": "UP"}, "mqtt": {"status": "UP"}, "http": {"status": "UP"}},
    }


async def test_unknown_route_is_ditto_style_404(running: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=running.base_url) as client:
        r = await client.get("/nope")
    assert r.status_code == 404
    assert r.json()["status"] == 404
    assert r.json()["error"] == "resource.notfound"
    assert r.headers["content-type"] == "application/json"


async def _receive_all(stream: trio.SocketStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


@pytest.mark.e2e
async def test_connection_setup_rule_on_the_wall_clock(running: RunningApp) -> None:
    """Idle and slowloris connections get 408 at 10 s and are closed; a prompt request is served."""
    host, port = running.http_address
    results: dict[str, tuple[float, bytes]] = {}
    start = trio.current_time()

    async def idle() -> None:
        async with await trio.open_tcp_stream(host, port) as stream:
            data = await _receive_all(stream)
            results["idle"] = (trio.current_time() - start, data)

    async def slowloris() -> None:
        stream = await trio.open_tcp_stream(host, port)
        head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 20
        async with stream, trio.open_nursery() as nursery:

            async def trickle() -> None:
                for byte in head:
                    try:
                        await stream.send_all(bytes([byte]))
                    except trio.BrokenResourceError:
                        return  # the server closed on us: expected after the 408
                    await trio.sleep(0.5)

            nursery.start_soon(trickle)
            data = await _receive_all(stream)
            results["slowloris"] = (trio.current_time() - start, data)
            nursery.cancel_scope.cancel()

    async def prompt() -> None:
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await _prompt(stream)

    async def _prompt(stream: trio.SocketStream) -> None:
        await trio.sleep(1.0)  # connected, then a request well inside the window
        await stream.send_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = await _receive_all(stream)
        results["prompt"] = (trio.current_time() - start, data)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(idle)
            nursery.start_soon(slowloris)
            nursery.start_soon(prompt)

    for name in ("idle", "slowloris"):
        elapsed, data = results[name]
        assert 9.5 <= elapsed <= 12, (name, elapsed, data)
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), data
        assert b"\r\nConnection: close" in head
        assert b'"status":408' in body
    elapsed, data = results["prompt"]
    assert elapsed < 5
    assert data.startswith(b"HTTP/1.1 200")


async def test_setup_deadline_with_mock_clock(autojump_clock: trio.abc.Clock, settings) -> None:
    """The deadline logic itself, over a memory stream: partial head -> 408 after exactly the timeout."""
    server = _Server(app=None, config=hypercorn_config(settings.http), http=settings.http, state={})
    client, server_side = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle, server_side)
        await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        start = trio.current_time()
        data = await client.receive_some()
        assert trio.current_time() - start == pytest.approx(10, abs=0.01)
        while chunk := await client.receive_some():  # then closed (after a short linger)
            data += chunk
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n")


async def test_graceful_shutdown_finishes_in_flight_requests_and_stops_promptly(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    stop = trio.Event()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            ports = await nursery.start(
                lambda task_status: app.serve(
                    settings, environ={}, shutdown_trigger=stop.wait, task_status=task_status
                )
            )
            async with httpx.AsyncClient(base_url=f"http://{ports.http[0]}") as client:
                assert (await client.get("/health")).status_code == 200
                stop.set()
                started = trio.current_time()
            host, port = ports.http[0].rsplit(":", 1)
        # serve() returned: the listener is closed and the store too
        assert trio.current_time() - started < 5
        with pytest.raises(OSError, match="connect"):
            await trio.open_tcp_stream(host, int(port))


async def test_a_peer_that_never_reads_is_closed_after_the_send_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Hypercorn shields its sends; ours are bounded, so a stuck reader cannot hold a connection forever."""
    from edgetwin.api.server import _ReplayStream

    server_side, client_side = trio.testing.lockstep_stream_pair()  # send_all waits for the peer to read
    stream = _ReplayStream(server_side, b"", send_timeout_s=30)
    start = trio.current_time()
    with (
        trio.CancelScope(shield=True),
        pytest.raises(trio.BrokenResourceError),
    ):  # shielded, as Hypercorn does
        await stream.send_all(b"event")
    assert trio.current_time() - start == pytest.approx(30)
    with pytest.raises(trio.ClosedResourceError):
        await server_side.send_all(b"more")
    await client_side.aclose()
